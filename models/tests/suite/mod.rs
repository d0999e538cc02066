//! Behaviour of the seed's two models, `tasks` and `memories`, as `STORAGE_AND_CORTEX.md`
//! describes them: the writes, the queries, replay after a restart, NetDb snapshot and
//! restore, and watches — the same suite on every log backend. `tests/tasks_and_memories.rs`
//! runs it on RedEX; `netdb-tests`' `tests/jetstream_models.rs` (feature `jetstream`) on
//! NATS JetStream, a server per backend.
//!
//! The including crate supplies the backends as `super::fixture`:
//!
//! * `Fixture::start() -> Option<Fixture>`, once per test; `None` when the backend is not
//!   available and the test is skipped (`NETDB_SKIP_JETSTREAM=1`).
//! * `Fixture::fresh(&self) -> Backend`: a new, empty backend, sharing nothing with any
//!   other (RedEX in memory; a JetStream server of its own).
//! * `Fixture::durable(&self) -> Durable` and `Durable::open(&self) -> Backend`: a store
//!   whose logs outlive the backends opened on it; each `open` is a new backend on the same
//!   logs, as a restarted process would open them (RedEX on a persistent directory; a new
//!   connection to the same JetStream server).
//! * `Backend: LogBackend + Clone + 'static`, which keeps what it needs (a server) alive
//!   for as long as it or a log opened on it is.
//!
//! Reads follow writes through `wait_for_seq` / `catch_up`, never a sleep. Row timestamps
//! are the log's: most tests read them from a log whose clock is a step per event
//! ([`SteppedClock`]), so the orderings by `Created` / `Updated` are exact and distinct from
//! the id order; the others compare them with the timestamps the log reports.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use netdb_models::memories::{self, Memory, MemoryFilter};
use netdb_models::tasks::{OrderBy, Task, TaskFilter, TaskStatus};
use netdb_models::{MemoriesAdapter, NetDb, TasksAdapter};
use netdb_runtime::cortex::{
    CortexAdapter, CortexConfig, CortexError, CortexLog, CortexModel, LogBackend, LogTail,
    RestoreOutcome, SnapshotError, WatchStream,
};
use netdb_runtime::redex::{ChannelName, RedexError, RedexEvent};

use super::fixture::Fixture;

type TestResult = Result<(), Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------------------
// Helpers

/// The timestamp [`SteppedClock`] gives event `seq`.
fn ts(seq: u64) -> u64 {
    1_000_000_000 + seq * 1_000
}

/// A log whose events read back with the timestamp [`ts`]`(seq)`: a clock that moves one
/// step per event, so every event of a test has its own, known timestamp.
#[derive(Debug)]
struct SteppedClock(Arc<dyn CortexLog>);

fn restamp(mut e: RedexEvent) -> RedexEvent {
    e.timestamp_ns = ts(e.seq);
    e
}

impl CortexLog for SteppedClock {
    fn append(&self, payload: &[u8]) -> Result<u64, RedexError> {
        self.0.append(payload)
    }
    fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<u64>, RedexError> {
        self.0.append_batch(payloads)
    }
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RedexEvent>, RedexError> {
        Ok(self
            .0
            .read_range(start, end)?
            .into_iter()
            .map(restamp)
            .collect())
    }
    fn tail(&self, from: u64) -> LogTail {
        Box::pin(self.0.tail(from).map(|e| e.map(restamp)))
    }
    fn next_seq(&self) -> u64 {
        self.0.next_seq()
    }
    fn first_seq(&self) -> u64 {
        self.0.first_seq()
    }
    fn sync(&self) -> Result<(), RedexError> {
        self.0.sync()
    }
    fn close(&self) -> Result<(), RedexError> {
        self.0.close()
    }
}

/// Model `M` over its log on a fresh backend, with the stepped clock.
fn stepped<M: CortexModel>(fx: &Fixture) -> Result<CortexAdapter<M>, CortexError> {
    let channel = ChannelName::new(M::CHANNEL).expect("a valid channel");
    let log = fx
        .fresh()
        .open_model_log(&channel, &CortexConfig::default())?
        .log;
    CortexAdapter::open_on_log(Arc::new(SteppedClock(log)), 1, CortexConfig::default())
}

fn stepped_tasks(fx: &Fixture) -> Result<TasksAdapter, CortexError> {
    stepped::<Task>(fx).map(TasksAdapter::from)
}

fn stepped_memories(fx: &Fixture) -> Result<MemoriesAdapter, CortexError> {
    stepped::<Memory>(fx).map(MemoriesAdapter::from)
}

fn task_ids<'a>(rows: impl IntoIterator<Item = &'a Task>) -> Vec<u64> {
    rows.into_iter().map(|t| t.id).collect()
}

fn memory_ids<'a>(rows: impl IntoIterator<Item = &'a Memory>) -> Vec<u64> {
    rows.into_iter().map(|m| m.id).collect()
}

fn tags(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

fn task(tasks: &TasksAdapter, id: u64) -> Option<Task> {
    tasks.state().read().find_unique(&id).cloned()
}

fn memory(memories: &MemoriesAdapter, id: u64) -> Option<Memory> {
    memories.state().read().find_unique(&id).cloned()
}

fn all_tasks(tasks: &TasksAdapter) -> Vec<Task> {
    tasks.state().read().query().collect()
}

fn all_memories(memories: &MemoriesAdapter) -> Vec<Memory> {
    memories.state().read().query().collect()
}

/// The fold applied everything without an error and still runs.
fn assert_clean<M: CortexModel>(adapter: &CortexAdapter<M>) {
    let errors = adapter.fold_errors();
    assert_eq!((errors.skipped, &errors.stopped), (0, &None), "{errors:?}");
    assert!(adapter.is_folding());
}

/// Fails the test instead of hanging it when a stream item never comes. Not a
/// synchronisation: nothing waits on the clock.
async fn no_hang<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the test hung")
}

/// The next result of a task watch, as ids.
async fn next_tasks(stream: &mut WatchStream<Task>) -> Vec<u64> {
    task_ids(&no_hang(stream.next()).await.expect("a result"))
}

// ---------------------------------------------------------------------------------------
// Tasks

#[tokio::test]
async fn task_create_rename_complete_delete() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let tasks = stepped_tasks(&fx)?;
    assert_eq!(tasks.create(1, "write the docs")?, 0);
    assert_eq!(tasks.create(2, "ship it")?, 1);
    tasks.wait_for_seq(1).await?;
    let created = task(&tasks, 1).expect("created");
    assert_eq!(
        created,
        Task {
            id: 1,
            title: "write the docs".into(),
            status: TaskStatus::Pending,
            created_ns: ts(0),
            updated_ns: ts(0),
        }
    );

    // Rename: the title and updated_ns change, created_ns stays.
    let seq = tasks.rename(1, "write the guide")?;
    tasks.wait_for_seq(seq).await?;
    let renamed = task(&tasks, 1).expect("still there");
    assert_eq!(renamed.title, "write the guide");
    assert_eq!(renamed.status, TaskStatus::Pending);
    assert_eq!((renamed.created_ns, renamed.updated_ns), (ts(0), ts(seq)));

    // Complete: Pending → Completed, updated_ns moves again, created_ns stays.
    let seq = tasks.complete(1)?;
    tasks.wait_for_seq(seq).await?;
    let done = task(&tasks, 1).expect("still there");
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.title, "write the guide");
    assert_eq!((done.created_ns, done.updated_ns), (ts(0), ts(seq)));
    assert!(done.updated_ns > renamed.updated_ns);
    // The other task was not touched.
    assert_eq!(task(&tasks, 2).expect("task 2").updated_ns, ts(1));

    // Delete.
    let seq = tasks.delete(1)?;
    tasks.wait_for_seq(seq).await?;
    assert_eq!(task(&tasks, 1), None);
    assert_eq!(task_ids(&all_tasks(&tasks)), [2]);
    assert_clean(&tasks);
    Ok(())
}

#[tokio::test]
async fn task_writes_to_a_missing_id_are_no_ops() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let tasks = stepped_tasks(&fx)?;
    let seq = tasks.create(1, "write the docs")?;
    tasks.wait_for_seq(seq).await?;
    let before = all_tasks(&tasks);

    tasks.rename(42, "nobody")?;
    tasks.complete(42)?;
    let seq = tasks.delete(42)?;
    tasks.wait_for_seq(seq).await?;

    assert_eq!(all_tasks(&tasks), before);
    assert_eq!(task(&tasks, 42), None);
    // Not an error: the fold goes on.
    assert_clean(&tasks);
    let seq = tasks.rename(1, "still works")?;
    tasks.wait_for_seq(seq).await?;
    assert_eq!(task(&tasks, 1).expect("task 1").title, "still works");
    Ok(())
}

#[tokio::test]
async fn task_create_of_an_existing_id_replaces_it() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let tasks = stepped_tasks(&fx)?;
    tasks.create(1, "draft")?;
    tasks.create(2, "other")?;
    tasks.complete(1)?;
    let seq = tasks.create(1, "write the guide")?;
    tasks.wait_for_seq(seq).await?;

    assert_eq!(
        task(&tasks, 1),
        Some(Task {
            id: 1,
            title: "write the guide".into(),
            status: TaskStatus::Pending,
            created_ns: ts(seq),
            updated_ns: ts(seq),
        })
    );
    assert_eq!(tasks.state().read().len(), 2);
    assert_eq!(
        tasks
            .state()
            .read()
            .query()
            .where_title_contains("draft")
            .count(),
        0
    );
    assert_clean(&tasks);
    Ok(())
}

/// Five tasks created out of id order, three changed afterwards:
///
/// | id | created | updated | status    | title             |
/// |----|---------|---------|-----------|-------------------|
/// | 5  | ts(0)   | ts(7)   | Completed | Plan the release  |
/// | 3  | ts(1)   | ts(5)   | Completed | Write the docs    |
/// | 1  | ts(2)   | ts(2)   | Pending   | Review the DOCS   |
/// | 4  | ts(3)   | ts(3)   | Pending   | Fix the build     |
/// | 2  | ts(4)   | ts(6)   | Pending   | Announce the docs |
async fn five_tasks(fx: &Fixture) -> Result<TasksAdapter, CortexError> {
    let tasks = stepped_tasks(fx)?;
    tasks.create(5, "Plan the release")?;
    tasks.create(3, "Write the docs")?;
    tasks.create(1, "Review the DOCS")?;
    tasks.create(4, "Fix the build")?;
    tasks.create(2, "Announce it")?;
    tasks.complete(3)?;
    tasks.rename(2, "Announce the docs")?;
    let seq = tasks.complete(5)?;
    assert_eq!(seq, 7);
    tasks.wait_for_seq(seq).await?;
    Ok(tasks)
}

#[tokio::test]
async fn task_queries_by_status_title_and_created_range() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let tasks = five_tasks(&fx).await?;
    let state = tasks.state();
    let t = state.read();

    // Status (the default order is id ascending).
    assert_eq!(
        task_ids(t.query().where_status(TaskStatus::Pending).iter()),
        [1, 2, 4]
    );
    assert_eq!(
        task_ids(t.query().where_status(TaskStatus::Completed).iter()),
        [3, 5]
    );
    assert_eq!(
        t.query()
            .where_status_in([TaskStatus::Pending, TaskStatus::Completed])
            .count(),
        5
    );

    // Title contains: a substring, ignoring case.
    assert_eq!(
        task_ids(t.query().where_title_contains("docs").iter()),
        [1, 2, 3]
    );
    assert_eq!(
        task_ids(t.query().where_title_contains("BUILD").iter()),
        [4]
    );
    assert_eq!(t.query().where_title_contains("nothing like it").count(), 0);

    // Created range: both ends of `between` included.
    assert_eq!(
        task_ids(t.query().where_created_ns_between(ts(1), ts(3)).iter()),
        [1, 3, 4]
    );
    assert_eq!(
        task_ids(t.query().where_created_ns_gte(ts(3)).iter()),
        [2, 4]
    );
    assert_eq!(task_ids(t.query().where_created_ns_gt(ts(3)).iter()), [2]);
    assert_eq!(task_ids(t.query().where_created_ns_lt(ts(1)).iter()), [5]);
    assert_eq!(
        task_ids(t.query().where_created_ns_lte(ts(1)).iter()),
        [3, 5]
    );
    assert_eq!(
        task_ids(t.query().where_updated_ns_gte(ts(5)).iter()),
        [2, 3, 5]
    );

    // Clauses combine with "and".
    assert_eq!(
        task_ids(
            t.query()
                .where_status(TaskStatus::Pending)
                .where_title_contains("docs")
                .where_created_ns_lte(ts(2))
                .iter()
        ),
        [1]
    );

    // The same filters as plain data.
    let pending = TaskFilter {
        status: Some(TaskStatus::Pending),
        ..Default::default()
    };
    assert_eq!(task_ids(t.find_many(&pending)), [1, 2, 4]);
    assert_eq!(t.count_where(&pending), 3);
    assert!(!t.exists_where(&TaskFilter {
        title_contains: Some("release".into()),
        ..pending.clone()
    }));
    Ok(())
}

#[tokio::test]
async fn task_orderings_by_created_and_updated() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let tasks = five_tasks(&fx).await?;
    let state = tasks.state();
    let t = state.read();
    let order = |o: OrderBy| task_ids(t.query().order_by(o).iter());

    assert_eq!(order(OrderBy::CreatedAsc), [5, 3, 1, 4, 2]);
    assert_eq!(order(OrderBy::CreatedDesc), [2, 4, 1, 3, 5]);
    assert_eq!(order(OrderBy::UpdatedAsc), [1, 4, 3, 2, 5]);
    assert_eq!(order(OrderBy::UpdatedDesc), [5, 2, 3, 4, 1]);
    assert_eq!(order(OrderBy::IdAsc), [1, 2, 3, 4, 5]);
    assert_eq!(order(OrderBy::IdDesc), [5, 4, 3, 2, 1]);

    // The seed's pending query: newest pending first, limited.
    let pending: Vec<Task> = t
        .query()
        .where_status(TaskStatus::Pending)
        .order_by(OrderBy::CreatedDesc)
        .limit(2)
        .collect();
    assert_eq!(task_ids(&pending), [2, 4]);
    // Paging.
    assert_eq!(
        task_ids(
            t.query()
                .order_by(OrderBy::UpdatedDesc)
                .offset(1)
                .limit(2)
                .iter()
        ),
        [2, 3]
    );
    assert_eq!(
        t.query()
            .where_status(TaskStatus::Completed)
            .order_by(OrderBy::UpdatedAsc)
            .first()
            .map(|t| t.id),
        Some(3)
    );
    Ok(())
}

/// The rows a query must return, by brute force: filter, sort (ties by id, in the
/// ordering's direction), offset, limit.
fn expected_ids(
    rows: &[Task],
    status: Option<TaskStatus>,
    order: OrderBy,
    offset: usize,
    limit: usize,
) -> Vec<u64> {
    let mut rows: Vec<&Task> = rows
        .iter()
        .filter(|t| status.is_none_or(|s| t.status == s))
        .collect();
    let key = |t: &Task| match order {
        OrderBy::CreatedAsc | OrderBy::CreatedDesc => (t.created_ns, t.id),
        OrderBy::UpdatedAsc | OrderBy::UpdatedDesc => (t.updated_ns, t.id),
        _ => (0, t.id),
    };
    rows.sort_by_key(|t| key(t));
    if matches!(
        order,
        OrderBy::CreatedDesc | OrderBy::UpdatedDesc | OrderBy::IdDesc
    ) {
        rows.reverse();
    }
    rows.into_iter()
        .skip(offset)
        .take(limit)
        .map(|t| t.id)
        .collect()
}

/// Checks every ordering, with and without a status filter, at several pages, against
/// [`expected_ids`].
fn check_orderings(tasks: &TasksAdapter) {
    let state = tasks.state();
    let t = state.read();
    let all: Vec<Task> = t.query().collect();
    for order in [
        OrderBy::CreatedDesc,
        OrderBy::CreatedAsc,
        OrderBy::UpdatedDesc,
        OrderBy::UpdatedAsc,
        OrderBy::IdDesc,
    ] {
        for (offset, limit) in [(0, 20), (100, 20), (7, 500), (0, usize::MAX)] {
            for status in [None, Some(TaskStatus::Pending), Some(TaskStatus::Completed)] {
                let mut q = t.query().order_by(order).offset(offset).limit(limit);
                if let Some(s) = status {
                    q = q.where_status(s);
                }
                assert_eq!(
                    task_ids(q.iter()),
                    expected_ids(&all, status, order, offset, limit),
                    "{order:?}, offset {offset}, limit {limit}, {status:?}"
                );
            }
        }
    }
}

/// Writes 3000 tasks in a scrambled id order, completes a third and renames some.
async fn many_tasks(tasks: &TasksAdapter) -> Result<(), CortexError> {
    for i in 0..3000u64 {
        let id = (i * 7919) % 3001; // 3001 is prime: 3000 distinct ids
        tasks.create(id, format!("task {id}"))?;
        if i % 3 == 0 {
            tasks.complete(id)?;
        }
        if i % 5 == 0 {
            tasks.rename((i * 31) % 3001, "renamed")?; // some ids do not exist yet: no-ops
        }
    }
    tasks.catch_up().await
}

#[tokio::test]
async fn task_orderings_on_a_large_table_match_a_full_sort() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    // Large enough for the planner to walk the ordered index on `created_ns`.
    // Distinct timestamps (the stepped clock)...
    let tasks = stepped_tasks(&fx)?;
    many_tasks(&tasks).await?;
    check_orderings(&tasks);
    // ... and the log's own clock (RedEX's is coarse: many equal timestamps, ties broken by
    // id).
    let backend = fx.fresh();
    let tasks = TasksAdapter::open(&backend, 1)?;
    many_tasks(&tasks).await?;
    check_orderings(&tasks);
    // The same after a restore from a snapshot (the indexes are rebuilt).
    let (bytes, last_seq) = tasks.snapshot()?;
    // The last seq must be the one the snapshot recorded.
    assert!(matches!(
        TasksAdapter::open_from_snapshot(&backend, 1, &bytes, None),
        Err(CortexError::Snapshot(SnapshotError::SeqMismatch { .. }))
    ));
    drop(tasks);
    let restored = TasksAdapter::open_from_snapshot(&backend, 1, &bytes, last_seq)?;
    restored.catch_up().await?;
    check_orderings(&restored);
    Ok(())
}

#[tokio::test]
async fn task_timestamps_are_the_logs() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    // The log's own clock: created_ns / updated_ns are the stored timestamps of the events
    // (RedEX's clock, or the JetStream server's).
    let db = NetDb::open(&fx.fresh(), 1)?;
    let created = db.tasks().create(1, "write the docs")?;
    let renamed = db.tasks().rename(1, "write the guide")?;
    let completed = db.tasks().complete(1)?;
    db.tasks().wait_for_seq(completed).await?;
    let stamp = |seq: u64| -> Result<u64, RedexError> {
        Ok(db.tasks().log().read_range(seq, seq + 1)?[0].timestamp_ns)
    };
    let row = task(db.tasks(), 1).expect("task 1");
    assert_eq!(row.created_ns, stamp(created)?);
    assert_eq!(row.updated_ns, stamp(completed)?);
    assert!(stamp(created)? <= stamp(renamed)? && stamp(renamed)? <= stamp(completed)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Memories

#[tokio::test]
async fn memory_store_retag_pin_unpin_delete() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let memories = stepped_memories(&fx)?;
    let seq = memories.store(1, "ship on Friday", tags(&["release", "plan"]), "chat")?;
    memories.wait_for_seq(seq).await?;
    assert_eq!(
        memory(&memories, 1),
        Some(Memory {
            id: 1,
            content: "ship on Friday".into(),
            tags: tags(&["release", "plan"]),
            source: "chat".into(),
            pinned: false,
            created_ns: ts(0),
            updated_ns: ts(0),
        })
    );

    let seq = memories.retag(1, tags(&["release"]))?;
    memories.wait_for_seq(seq).await?;
    let m = memory(&memories, 1).expect("memory 1");
    assert_eq!(m.tags, ["release"]);
    assert_eq!((m.created_ns, m.updated_ns), (ts(0), ts(seq)));

    let seq = memories.pin(1)?;
    memories.wait_for_seq(seq).await?;
    let m = memory(&memories, 1).expect("memory 1");
    assert!(m.pinned);
    assert_eq!((m.created_ns, m.updated_ns), (ts(0), ts(seq)));

    let seq = memories.unpin(1)?;
    memories.wait_for_seq(seq).await?;
    let m = memory(&memories, 1).expect("memory 1");
    assert!(!m.pinned);
    assert_eq!((m.created_ns, m.updated_ns), (ts(0), ts(seq)));
    // The content and source never changed.
    assert_eq!(
        (m.content.as_str(), m.source.as_str()),
        ("ship on Friday", "chat")
    );

    let seq = memories.delete(1)?;
    memories.wait_for_seq(seq).await?;
    assert_eq!(memory(&memories, 1), None);
    assert!(memories.state().read().is_empty());
    assert_clean(&memories);
    Ok(())
}

#[tokio::test]
async fn memory_writes_to_a_missing_id_are_no_ops_and_store_replaces() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let memories = stepped_memories(&fx)?;
    memories.store(1, "first", tags(&["a"]), "chat")?;
    let seq = memories.pin(1)?;
    memories.wait_for_seq(seq).await?;
    let before = all_memories(&memories);

    memories.retag(9, tags(&["x"]))?;
    memories.pin(9)?;
    memories.unpin(9)?;
    let seq = memories.delete(9)?;
    memories.wait_for_seq(seq).await?;
    assert_eq!(all_memories(&memories), before);
    assert_clean(&memories);

    // Storing an existing id replaces the memory: a new, unpinned one.
    let seq = memories.store(1, "second", tags(&["b"]), "docs")?;
    memories.wait_for_seq(seq).await?;
    let m = memory(&memories, 1).expect("memory 1");
    assert_eq!(
        (m.content.as_str(), m.source.as_str(), m.pinned),
        ("second", "docs", false)
    );
    assert_eq!((m.created_ns, m.updated_ns), (ts(seq), ts(seq)));
    let state = memories.state();
    let t = state.read();
    assert_eq!(t.len(), 1);
    // The indexes forgot the replaced row's values.
    assert_eq!(t.query().where_tag("a").count(), 0);
    assert_eq!(memory_ids(t.query().where_tag("b").iter()), [1]);
    assert_eq!(t.query().where_source("chat").count(), 0);
    Ok(())
}

/// | id | tags           | source | pinned | content                    |
/// |----|----------------|--------|--------|----------------------------|
/// | 1  | rust, build    | docs   | yes    | Rust 1.95 is the MSRV      |
/// | 2  | ci, build      | chat   | no     | The CI runs on two cores   |
/// | 3  | rust, serde    | chat   | yes    | Prefer postcard to bincode |
/// | 4  | (none)         | chat   | no     | Lunch is at noon           |
async fn four_memories(fx: &Fixture) -> Result<MemoriesAdapter, CortexError> {
    let memories = stepped_memories(fx)?;
    memories.store(1, "Rust 1.95 is the MSRV", tags(&["rust", "build"]), "docs")?;
    memories.store(
        2,
        "The CI runs on two cores",
        tags(&["ci", "build"]),
        "chat",
    )?;
    memories.store(
        3,
        "Prefer postcard to bincode",
        tags(&["rust", "serde"]),
        "chat",
    )?;
    memories.store(4, "Lunch is at noon", Vec::new(), "chat")?;
    memories.pin(1)?;
    let seq = memories.pin(3)?;
    memories.wait_for_seq(seq).await?;
    Ok(memories)
}

#[tokio::test]
async fn memory_queries_by_tag_source_pinned_and_content() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let memories = four_memories(&fx).await?;
    {
        let state = memories.state();
        let t = state.read();
        let q = || t.query();

        // Tags.
        assert_eq!(memory_ids(q().where_tag("rust").iter()), [1, 3]);
        assert_eq!(memory_ids(q().where_tag("build").iter()), [1, 2]);
        assert_eq!(q().where_tag("nope").count(), 0);
        assert_eq!(
            memory_ids(q().where_any_tag(["ci", "serde"]).iter()),
            [2, 3]
        );
        assert_eq!(memory_ids(q().where_any_tag(["serde", "nope"]).iter()), [3]);
        assert_eq!(
            memory_ids(q().where_all_tags(["rust", "build"]).iter()),
            [1]
        );
        assert_eq!(q().where_all_tags(["rust", "ci"]).count(), 0);

        // Source.
        assert_eq!(memory_ids(q().where_source("chat").iter()), [2, 3, 4]);
        assert_eq!(memory_ids(q().where_source_in(["docs", "web"]).iter()), [1]);

        // Pinned.
        assert_eq!(memory_ids(q().where_pinned(true).iter()), [1, 3]);
        assert_eq!(memory_ids(q().where_pinned(false).iter()), [2, 4]);

        // Content: a substring, ignoring case.
        assert_eq!(memory_ids(q().where_content_contains("rust").iter()), [1]);
        assert_eq!(memory_ids(q().where_content_contains("THE").iter()), [1, 2]);

        // Combined.
        assert_eq!(
            memory_ids(
                q().where_tag("rust")
                    .where_pinned(true)
                    .where_source("chat")
                    .iter()
            ),
            [3]
        );
        assert_eq!(
            memory_ids(
                q().where_tag("build")
                    .order_by(memories::OrderBy::CreatedDesc)
                    .iter()
            ),
            [2, 1]
        );
        let filter = MemoryFilter {
            any_tag: Some(tags(&["rust", "ci"])),
            pinned: Some(false),
            ..Default::default()
        };
        assert_eq!(memory_ids(t.find_many(&filter)), [2]);
        assert_eq!(t.count_where(&filter), 1);
    }

    // After changes, the queries (and the indexes behind them) follow.
    memories.retag(1, tags(&["docs"]))?;
    memories.unpin(3)?;
    let seq = memories.delete(2)?;
    memories.wait_for_seq(seq).await?;
    let state = memories.state();
    let t = state.read();
    assert_eq!(memory_ids(t.query().where_tag("rust").iter()), [3]);
    assert_eq!(memory_ids(t.query().where_tag("docs").iter()), [1]);
    assert_eq!(t.query().where_tag("build").count(), 0);
    assert_eq!(t.query().where_any_tag(["ci", "build"]).count(), 0);
    assert_eq!(memory_ids(t.query().where_source("chat").iter()), [3, 4]);
    assert_eq!(memory_ids(t.query().where_pinned(true).iter()), [1]);
    assert_eq!(t.query().where_content_contains("CI runs").count(), 0);
    Ok(())
}

#[tokio::test]
async fn memory_orderings_by_created_and_updated() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let memories = four_memories(&fx).await?;
    // Seqs: stores 0..=3, pin 1 at 4, pin 3 at 5; now retag 2 at 6.
    let seq = memories.retag(2, tags(&["ci"]))?;
    memories.wait_for_seq(seq).await?;
    let state = memories.state();
    let t = state.read();
    let order = |o: memories::OrderBy| memory_ids(t.query().order_by(o).iter());
    assert_eq!(order(memories::OrderBy::CreatedAsc), [1, 2, 3, 4]);
    assert_eq!(order(memories::OrderBy::CreatedDesc), [4, 3, 2, 1]);
    // updated: 1 → ts(4), 2 → ts(6), 3 → ts(5), 4 → ts(3)
    assert_eq!(order(memories::OrderBy::UpdatedAsc), [4, 1, 3, 2]);
    assert_eq!(order(memories::OrderBy::UpdatedDesc), [2, 3, 1, 4]);
    assert_eq!(
        memory_ids(
            t.query()
                .where_source("chat")
                .order_by(memories::OrderBy::UpdatedDesc)
                .limit(2)
                .iter()
        ),
        [2, 3]
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Restart, snapshot and restore

/// Writes to both models of `db` and waits for them.
async fn write_some(db: &NetDb, base: u64) -> Result<(), CortexError> {
    let t = db.tasks();
    t.create(base + 1, format!("task {}", base + 1))?;
    t.create(base + 2, format!("task {}", base + 2))?;
    t.rename(base + 1, "renamed")?;
    t.complete(base + 2)?;
    t.create(base + 3, "to delete")?;
    t.delete(base + 3)?;
    t.catch_up().await?;
    let m = db.memories();
    m.store(base + 1, "a memory", tags(&["x", "y"]), "chat")?;
    m.store(base + 2, "another", tags(&["y"]), "docs")?;
    m.pin(base + 1)?;
    m.retag(base + 2, tags(&["z"]))?;
    m.catch_up().await
}

#[tokio::test]
async fn replay_after_close_and_reopen_gives_the_same_state() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let store = fx.durable();
    let (tasks_before, memories_before, next) = {
        let db = NetDb::open(&store.open(), 1)?;
        write_some(&db, 0).await?;
        write_some(&db, 10).await?;
        let before = (all_tasks(db.tasks()), all_memories(db.memories()));
        let next = (db.tasks().log().next_seq(), db.memories().log().next_seq());
        db.close()?;
        (before.0, before.1, next)
    };
    assert_eq!(tasks_before.len(), 4);
    assert_eq!(memories_before.len(), 4);

    // A new process: a new backend on the same logs, every event replayed.
    let backend = store.open();
    let db = NetDb::open(&backend, 1)?;
    db.tasks().catch_up().await?;
    db.memories().catch_up().await?;
    assert_eq!(db.tasks().restore_outcome(), &RestoreOutcome::Fresh);
    // Timestamps come from the log: the rows are identical, not just alike.
    assert_eq!(all_tasks(db.tasks()), tasks_before);
    assert_eq!(all_memories(db.memories()), memories_before);
    // Queries over the replayed state (and its indexes).
    {
        let state = db.memories().state();
        let t = state.read();
        assert_eq!(memory_ids(t.query().where_tag("y").iter()), [1, 11]);
        assert_eq!(memory_ids(t.query().where_pinned(true).iter()), [1, 11]);
    }
    // The logs go on where they were.
    assert_eq!(db.tasks().create(100, "after the restart")?, next.0);
    assert_eq!(db.memories().pin(2)?, next.1);
    db.tasks().catch_up().await?;
    db.memories().catch_up().await?;
    let (tasks_after, memories_after) = (all_tasks(db.tasks()), all_memories(db.memories()));
    db.close()?;
    drop((db, backend));

    // And once more, through the adapters directly.
    let backend = store.open();
    let tasks = TasksAdapter::open(&backend, 1)?;
    let memories = MemoriesAdapter::open(&backend, 1)?;
    tasks.catch_up().await?;
    memories.catch_up().await?;
    assert_eq!(all_tasks(&tasks), tasks_after);
    assert_eq!(all_memories(&memories), memories_after);
    Ok(())
}

#[tokio::test]
async fn netdb_snapshot_and_restore_covers_both_models() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let store = fx.durable();
    let (bundle, marks, tasks_before, memories_before) = {
        let db = NetDb::open(&store.open(), 1)?;
        write_some(&db, 0).await?;
        let bundle = db.snapshot()?;
        let marks = (
            db.tasks().folded_through_seq(),
            db.memories().folded_through_seq(),
        );
        // After the bundle, in both models.
        write_some(&db, 10).await?;
        let before = (all_tasks(db.tasks()), all_memories(db.memories()));
        db.close()?;
        (bundle, marks, before.0, before.1)
    };

    let db = NetDb::open_from_snapshot(&store.open(), 1, &bundle)?;
    match (
        db.tasks().restore_outcome(),
        db.memories().restore_outcome(),
    ) {
        (RestoreOutcome::Snapshot(t), RestoreOutcome::Snapshot(m)) => {
            assert_eq!((t.last_seq, m.last_seq), marks);
            assert_eq!((t.rows, m.rows), (2, 2));
            assert_eq!(
                (t.channel.as_str(), m.channel.as_str()),
                ("cortex/tasks", "cortex/memories")
            );
        }
        other => panic!("not restored from the bundle: {other:?}"),
    }
    db.tasks().catch_up().await?;
    db.memories().catch_up().await?;
    assert_eq!(all_tasks(db.tasks()), tasks_before);
    assert_eq!(all_memories(db.memories()), memories_before);
    {
        let state = db.memories().state();
        let t = state.read();
        assert_eq!(memory_ids(t.query().where_tag("y").iter()), [1, 11]);
        assert_eq!(memory_ids(t.query().where_tag("z").iter()), [2, 12]);
    }
    // The restored db writes on.
    let seq = db.tasks().complete(1)?;
    db.tasks().wait_for_seq(seq).await?;
    assert_eq!(
        task(db.tasks(), 1).expect("task 1").status,
        TaskStatus::Completed
    );
    db.close()?;
    Ok(())
}

#[tokio::test]
async fn a_restored_snapshot_folds_only_the_later_events() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    // Tasks 1, 2 and 3 (seqs 0..=2), snapshotted.
    let db = NetDb::open(&fx.fresh(), 1)?;
    for id in 1..=3 {
        db.tasks().create(id, format!("task {id}"))?;
    }
    db.tasks().catch_up().await?;
    let (bytes, last_seq) = db.tasks().snapshot()?;
    assert_eq!(last_seq, Some(2));

    // Another log whose seqs 0..=2 are other events, then task 4 at seq 3. Restored from the
    // snapshot, the fold reads only seq 3: tasks 10..=12 must not appear.
    let other = fx.fresh();
    let db2 = NetDb::open(&other, 1)?;
    for id in 10..=12 {
        db2.tasks().create(id, format!("task {id}"))?;
    }
    db2.tasks().create(4, "task 4")?;
    drop(db2);
    let tasks = TasksAdapter::open_from_snapshot(&other, 1, &bytes, last_seq)?;
    tasks.catch_up().await?;
    assert_eq!(task_ids(&all_tasks(&tasks)), [1, 2, 3, 4]);

    // A snapshot claiming a seq the log has not reached is refused.
    let empty = fx.fresh();
    match TasksAdapter::open_from_snapshot(&empty, 1, &bytes, last_seq) {
        Err(CortexError::Snapshot(SnapshotError::AheadOfLog { .. })) => {}
        other => panic!("expected AheadOfLog, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_bundle_without_a_model_does_not_restore_the_netdb() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let backend = fx.fresh();
    let tasks_only = netdb_runtime::netdb::NetDb::builder()
        .origin_hash(1)
        .model::<Task>()
        .open(&backend)?;
    let bundle = tasks_only.snapshot()?;
    drop(tasks_only);
    match NetDb::open_from_snapshot(&backend, 1, &bundle) {
        Err(CortexError::Snapshot(SnapshotError::MissingModel { channel })) => {
            assert_eq!(channel, "cortex/memories");
        }
        other => panic!("expected MissingModel, got {other:?}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Watches

#[tokio::test]
async fn task_watch_follows_its_filter_order_and_limit() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let tasks = stepped_tasks(&fx)?;
    tasks.create(1, "Write the docs")?;
    tasks.create(2, "Review the docs")?;
    let seq = tasks.create(3, "Fix the build")?;
    tasks.wait_for_seq(seq).await?;

    let mut docs = tasks
        .watch()
        .where_title_contains("docs")
        .order_by(OrderBy::UpdatedDesc)
        .limit(2)
        .stream();
    // The current result first.
    assert_eq!(next_tasks(&mut docs).await, [2, 1]);

    // A change to a row the filter leaves out: nothing to yield.
    let seq = tasks.rename(3, "Fix the build again")?;
    tasks.wait_for_seq(seq).await?;
    assert!(docs.next().now_or_never().is_none());

    // Task 1 changes: it moves to the front.
    let seq = tasks.rename(1, "Write the docs well")?;
    tasks.wait_for_seq(seq).await?;
    assert_eq!(next_tasks(&mut docs).await, [1, 2]);
    // A new match pushes task 2 past the limit.
    tasks.create(4, "More docs")?;
    assert_eq!(next_tasks(&mut docs).await, [4, 1]);
    // Task 2, outside the last result, changes and comes back in.
    tasks.complete(2)?;
    assert_eq!(next_tasks(&mut docs).await, [2, 4]);
    tasks.delete(2)?;
    assert_eq!(next_tasks(&mut docs).await, [4, 1]);
    // A row entering the filter by a rename.
    tasks.rename(3, "Fix the docs build")?;
    assert_eq!(next_tasks(&mut docs).await, [3, 4]);

    // Two changes before the consumer looks: it sees only the latest result.
    tasks.delete(3)?;
    let seq = tasks.delete(4)?;
    tasks.wait_for_seq(seq).await?;
    assert_eq!(next_tasks(&mut docs).await, [1]);
    assert!(docs.next().now_or_never().is_none());
    assert_eq!(docs.folded_seq(), Some(seq));

    // Closing the adapter ends the stream.
    tasks.close()?;
    assert_eq!(no_hang(docs.next()).await, None);
    Ok(())
}

#[tokio::test]
async fn task_watches_with_order_and_limit_track_the_query_on_a_large_table() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let tasks = stepped_tasks(&fx)?;
    many_tasks(&tasks).await?;
    let newest_pending = || {
        tasks
            .watch()
            .where_status(TaskStatus::Pending)
            .order_by(OrderBy::CreatedDesc)
            .limit(5)
    };
    let recently_updated = || {
        tasks
            .watch()
            .order_by(OrderBy::UpdatedDesc)
            .offset(2)
            .limit(5)
    };
    let query_pending = || {
        let state = tasks.state();
        let t = state.read();
        task_ids(
            t.query()
                .where_status(TaskStatus::Pending)
                .order_by(OrderBy::CreatedDesc)
                .limit(5)
                .iter(),
        )
    };
    let query_updated = || {
        let state = tasks.state();
        let t = state.read();
        task_ids(
            t.query()
                .order_by(OrderBy::UpdatedDesc)
                .offset(2)
                .limit(5)
                .iter(),
        )
    };
    let mut pending = newest_pending().stream();
    let mut updated = recently_updated().stream();
    let mut seen_pending = next_tasks(&mut pending).await;
    let mut seen_updated = next_tasks(&mut updated).await;
    assert_eq!(seen_pending, query_pending());
    assert_eq!(seen_updated, query_updated());

    // A fixed pseudo-random walk of writes; after each, once the fold has applied it, the
    // latest result each stream holds is the query's.
    let mut x: u64 = 12345;
    let mut next_id = 5000;
    for step in 0..300 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = x >> 33;
        // A row of the pending window (or any id when it is empty).
        let in_window = seen_pending
            .get(r as usize % 5)
            .copied()
            .unwrap_or(r % 3001);
        let seq = match r % 6 {
            0 => tasks.complete(in_window)?,
            1 => tasks.rename(in_window, format!("step {step}"))?,
            2 => tasks.delete(r % 3001)?,
            3 => {
                next_id += 1;
                tasks.create(next_id, "new")?
            }
            4 => tasks.rename(r % 3001, "anywhere")?,
            _ => tasks.create(r % 3001, "again")?,
        };
        tasks.wait_for_seq(seq).await?;
        if let Some(rows) = pending.next().now_or_never() {
            seen_pending = task_ids(&rows.expect("open"));
        }
        if let Some(rows) = updated.next().now_or_never() {
            seen_updated = task_ids(&rows.expect("open"));
        }
        assert_eq!(seen_pending, query_pending(), "step {step}");
        assert_eq!(seen_updated, query_updated(), "step {step}");
        assert!(pending.next().now_or_never().is_none(), "step {step}");
        assert!(updated.next().now_or_never().is_none(), "step {step}");
    }
    // A fresh watch agrees with the long-lived ones.
    let (now, _) = tasks.snapshot_and_watch(newest_pending());
    assert_eq!(task_ids(&now), seen_pending);
    let (now, _) = tasks.snapshot_and_watch(recently_updated());
    assert_eq!(task_ids(&now), seen_updated);
    Ok(())
}

#[tokio::test]
async fn memory_watch_by_tag_and_pinned() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let memories = stepped_memories(&fx)?;
    memories.store(1, "first", tags(&["rust"]), "chat")?;
    memories.store(2, "second", tags(&["rust"]), "docs")?;
    let seq = memories.pin(2)?;
    memories.wait_for_seq(seq).await?;

    // No order_by: id ascending.
    let mut pinned_rust = memories
        .watch()
        .where_tag("rust")
        .where_pinned(true)
        .stream();
    assert_eq!(
        memory_ids(&no_hang(pinned_rust.next()).await.expect("first")),
        [2]
    );

    // Changes the filter leaves out.
    memories.store(3, "third", tags(&["go"]), "chat")?;
    memories.pin(3)?;
    let seq = memories.unpin(1)?; // already unpinned: it stays out
    memories.wait_for_seq(seq).await?;
    assert!(pinned_rust.next().now_or_never().is_none());

    // Pinning 1 brings it in.
    memories.pin(1)?;
    assert_eq!(
        memory_ids(&no_hang(pinned_rust.next()).await.expect("item")),
        [1, 2]
    );
    // A retag that keeps the tag: the row changed, so the result did.
    let seq = memories.retag(2, tags(&["rust", "serde"]))?;
    let rows = no_hang(pinned_rust.next()).await.expect("item");
    assert_eq!(memory_ids(&rows), [1, 2]);
    assert_eq!(rows[1].tags, ["rust", "serde"]);
    assert_eq!(pinned_rust.folded_seq(), Some(seq));
    // Retagged away, unpinned: out.
    memories.retag(1, tags(&["go"]))?;
    assert_eq!(
        memory_ids(&no_hang(pinned_rust.next()).await.expect("item")),
        [2]
    );
    memories.unpin(2)?;
    assert!(no_hang(pinned_rust.next()).await.expect("item").is_empty());
    // Retagged back in (3 is pinned).
    memories.retag(3, tags(&["go", "rust"]))?;
    assert_eq!(
        memory_ids(&no_hang(pinned_rust.next()).await.expect("item")),
        [3]
    );

    // Snapshot + watch: the current result, then only later changes.
    let (now, mut chat) = memories.snapshot_and_watch(memories.watch().where_source("chat"));
    assert_eq!(memory_ids(&now), [1, 3]);
    assert!(chat.next().now_or_never().is_none());
    memories.store(4, "fourth", Vec::new(), "chat")?;
    assert_eq!(
        memory_ids(&no_hang(chat.next()).await.expect("item")),
        [1, 3, 4]
    );
    memories.delete(1)?;
    assert_eq!(
        memory_ids(&no_hang(chat.next()).await.expect("item")),
        [3, 4]
    );
    // The other watch saw nothing of store 4 and delete 1 but its last result is unchanged.
    memories.catch_up().await?;
    assert!(pinned_rust.next().now_or_never().is_none());

    // A dropped stream stops; closing ends the rest.
    drop(pinned_rust);
    memories.close()?;
    assert_eq!(no_hang(chat.next()).await, None);
    Ok(())
}

#[tokio::test]
async fn netdb_watches_on_both_models() -> TestResult {
    let Some(fx) = Fixture::start() else {
        return Ok(());
    };
    let db = NetDb::open(&fx.fresh(), 1)?;
    let mut pending = db
        .tasks()
        .watch()
        .where_status(TaskStatus::Pending)
        .stream();
    let mut pinned = db.memories().watch().where_pinned(true).stream();
    assert!(no_hang(pending.next()).await.expect("first").is_empty());
    assert!(no_hang(pinned.next()).await.expect("first").is_empty());

    // A task write wakes only the task watch, and the other way round.
    let seq = db.tasks().create(1, "write the docs")?;
    db.tasks().wait_for_seq(seq).await?;
    assert_eq!(task_ids(&no_hang(pending.next()).await.expect("item")), [1]);
    assert!(pinned.next().now_or_never().is_none());

    db.memories().store(1, "remember", tags(&["x"]), "chat")?;
    let seq = db.memories().pin(1)?;
    db.memories().wait_for_seq(seq).await?;
    assert_eq!(
        memory_ids(&no_hang(pinned.next()).await.expect("item")),
        [1]
    );
    assert!(pending.next().now_or_never().is_none());

    db.tasks().complete(1)?;
    assert!(no_hang(pending.next()).await.expect("item").is_empty());

    db.close()?;
    assert_eq!(no_hang(pending.next()).await, None);
    assert_eq!(no_hang(pinned.next()).await, None);
    Ok(())
}
