//! Every Rust snippet of the seed's `STORAGE_AND_CORTEX.md`, run against these crates.
//!
//! One test per snippet. The snippet's lines are kept as close to verbatim as they can be
//! (statements rustfmt would reflow are `#[rustfmt::skip]`, to keep the document's lines); set-up
//! comes before them and assertions after, proving the snippet did what the document says.
//! Where a line had to change, the original is in a `// seed: ...` comment above it.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures_util::FutureExt;
use netdb_models::memories::{Memory, MemoryFilter};
use netdb_models::tasks::{OrderBy, Task, TaskStatus};
use netdb_models::{NetDb, TasksAdapter};
use netdb_runtime::cortex::{Change, CortexError, RestoreOutcome};
use netdb_runtime::redex::Redex;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn ids(rows: &[Task]) -> Vec<u64> {
    rows.iter().map(|t| t.id).collect()
}

/// Every task, by id.
fn all_tasks(tasks: &TasksAdapter) -> Vec<Task> {
    tasks.state().read().query().collect()
}

/// Every memory, by id.
fn all_memories(db: &NetDb) -> Vec<Memory> {
    db.memories().state().read().query().collect()
}

/// A guard against a hang (a missing stream item or a wait that never returns): fails the
/// test instead of blocking it for ever. Not a synchronisation: nothing waits on the clock.
async fn no_hang<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the test hung")
}

/// Tasks 1..=3 ("write the docs", "ship it", "announce it") with 2 completed, and memories 1
/// and 2 (1 pinned): the data the snapshot snippets take.
async fn seed_data(db: &NetDb) -> Result<(), CortexError> {
    db.tasks().create(1, "write the docs")?;
    db.tasks().create(2, "ship it")?;
    db.tasks().create(3, "announce it")?;
    let seq = db.tasks().complete(2)?;
    db.tasks().wait_for_seq(seq).await?;
    db.memories()
        .store(1, "ship on Friday", vec!["release".into()], "chat")?;
    db.memories()
        .store(2, "the docs live in book/", vec!["docs".into()], "readme")?;
    let seq = db.memories().pin(1)?;
    db.memories().wait_for_seq(seq).await
}

// ## Choosing durability (RedEX `FsyncPolicy`)

#[tokio::test]
async fn fsync_policy_config() -> TestResult {
    // seed: use net::adapter::net::{FsyncPolicy, RedexFileConfig};
    use netdb_runtime::redex::{FsyncPolicy, RedexFileConfig};
    use std::time::Duration;
    #[rustfmt::skip]
    let cfg = RedexFileConfig::default()
        .with_persistent(true)
        .with_fsync_policy(FsyncPolicy::EveryN(100));

    assert!(cfg.persistent());
    assert_eq!(cfg.fsync_policy(), FsyncPolicy::EveryN(100));
    // `Never` is the default.
    assert_eq!(
        RedexFileConfig::default().fsync_policy(),
        FsyncPolicy::Never
    );

    // The config opens a persistent file; `close()` fsyncs whatever the policy, so a reopen
    // finds every event, including the 50 after the last `EveryN(100)` fsync.
    let dir = tempfile::tempdir()?;
    let channel = "app/audit".parse()?;
    {
        let redex = Redex::with_persistent_dir(dir.path())?;
        let file = redex.open_file(&channel, cfg.clone())?;
        for i in 0..250u32 {
            file.append(&i.to_le_bytes())?;
        }
        // The policy is fixed for the file's life: another one is refused while it is open.
        let other = cfg
            .clone()
            .with_fsync_policy(FsyncPolicy::Interval(Duration::from_millis(10)));
        assert!(matches!(
            redex.open_file(&channel, other),
            Err(netdb_runtime::redex::RedexError::ConfigMismatch { .. })
        ));
        file.sync()?; // the explicit durability barrier
        file.append(b"after the sync")?;
        file.close()?;
    }
    let redex = Redex::with_persistent_dir(dir.path())?;
    let file = redex.open_file(&channel, cfg.clone())?;
    assert_eq!(file.next_seq(), 251);
    let events = file.read_range(0, 251)?;
    assert_eq!(&events[249].payload[..], 249u32.to_le_bytes());
    assert_eq!(&events[250].payload[..], b"after the sync");
    file.close()?;

    // `Interval(d)` runs a background fsync task, ended by `close()`.
    let interval = RedexFileConfig::default()
        .with_persistent(true)
        .with_fsync_policy(FsyncPolicy::Interval(Duration::from_secs(1)));
    let file = redex.open_file(&"app/interval".parse()?, interval)?;
    file.append(b"x")?;
    file.close()?;

    // The same config under a model: the tasks adapter's file uses it.
    let tasks = TasksAdapter::open_with_config(
        &redex,
        1,
        netdb_runtime::cortex::CortexConfig::default().with_file_config(cfg.clone()),
    )?;
    let seq = tasks.create(1, "durable")?;
    tasks.wait_for_seq(seq).await?;
    let file = redex
        .file(&"cortex/tasks".parse()?)
        .expect("the tasks file is open");
    assert_eq!(file.config().fsync_policy(), FsyncPolicy::EveryN(100));
    tasks.close()?;
    Ok(())
}

// ## Querying

#[tokio::test]
async fn querying() -> TestResult {
    let redex = Redex::new();
    let db = NetDb::open(&redex, 1)?;
    for id in 1..=28 {
        db.tasks().create(id, format!("task {id}"))?;
    }
    for id in [4, 9, 17] {
        db.tasks().complete(id)?;
    }
    db.tasks().catch_up().await?;
    db.memories()
        .store(1, "rust 1.95", vec!["rust".into()], "chat")?;
    db.memories()
        .store(2, "two cores", vec!["ci".into()], "chat")?;
    db.memories()
        .store(3, "postcard", vec!["rust".into()], "docs")?;
    db.memories().pin(1)?;
    db.memories().pin(3)?;
    db.memories().catch_up().await?;
    let id = 17;
    let filter = MemoryFilter {
        pinned: Some(true),
        ..Default::default()
    };

    #[rustfmt::skip]
    let pending = db.tasks().state().read()
        .query()
        .where_status(TaskStatus::Pending)
        .order_by(OrderBy::CreatedDesc)
        .limit(20)
        .collect();
    // seed: let found = db.tasks().state().read().find_unique(id);
    let found = db.tasks().state().read().find_unique(&id).cloned();
    let count = db.memories().state().read().count_where(&filter);

    // The 20 newest pending tasks, newest first (equal timestamps: higher id first).
    let mut expected: Vec<Task> = all_tasks(db.tasks())
        .into_iter()
        .filter(|t| t.status == TaskStatus::Pending)
        .collect();
    assert_eq!(expected.len(), 25);
    expected.sort_by_key(|t| (Reverse(t.created_ns), Reverse(t.id)));
    expected.truncate(20);
    assert_eq!(pending, expected);
    assert!(pending.iter().all(|t| t.status == TaskStatus::Pending));
    assert!(
        pending
            .windows(2)
            .all(|w| w[0].created_ns >= w[1].created_ns)
    );

    let found = found.expect("task 17 exists");
    assert_eq!((found.id, found.title.as_str()), (17, "task 17"));
    assert_eq!(found.status, TaskStatus::Completed);
    assert_eq!(db.tasks().state().read().find_unique(&99), None);

    assert_eq!(count, 2);
    // The rest of the document's table: find_many, exists_where.
    let state = db.memories().state();
    let table = state.read();
    let pinned: Vec<u64> = table.find_many(&filter).iter().map(|m| m.id).collect();
    assert_eq!(pinned, [1, 3]);
    assert!(table.exists_where(&filter));
    assert!(!table.exists_where(&MemoryFilter {
        source: Some("nowhere".into()),
        ..Default::default()
    }));
    Ok(())
}

// ## Watching

#[tokio::test]
async fn watching() -> TestResult {
    let redex = Redex::new();
    let db = NetDb::open(&redex, 1)?;
    db.tasks().create(1, "write the docs")?;
    db.tasks().create(2, "ship it")?;
    db.tasks().create(9, "already done")?;
    let seq = db.tasks().complete(9)?;
    db.tasks().wait_for_seq(seq).await?;
    let mut seen: Vec<Vec<u64>> = Vec::new();
    let mut folded: Vec<Option<u64>> = Vec::new();
    let mut writes: Vec<u64> = vec![seq];

    no_hang(async {
        // seed: use futures::StreamExt;
        use futures_util::StreamExt;
        #[rustfmt::skip]
        let mut stream = Box::pin(
            db.tasks()
                .watch()
                .where_status(TaskStatus::Pending)
                .order_by(OrderBy::CreatedDesc)
                .stream(),
        );
        while let Some(current_pending) = stream.next().await {
            // current_pending is the freshly-evaluated filter result.
            // Only delivered when the result actually changed.
            seen.push(ids(&current_pending));
            folded.push(stream.folded_seq());
            match seen.len() {
                1 => {
                    // A rename of a task outside the filter changes no result: once the
                    // fold has applied it, the stream still has nothing to yield.
                    let seq = db.tasks().rename(9, "still done")?;
                    db.tasks().wait_for_seq(seq).await?;
                    assert!(
                        stream.next().now_or_never().is_none(),
                        "woken by an irrelevant rename"
                    );
                    writes.push(db.tasks().create(3, "announce it")?);
                }
                2 => writes.push(db.tasks().complete(1)?),
                // Closing the adapter ends the stream.
                _ => db.tasks().close()?,
            }
        }
        Ok::<_, CortexError>(())
    })
    .await?;

    // First the current result, then one item per change of the result.
    assert_eq!(seen, [vec![2, 1], vec![3, 2, 1], vec![3, 2]]);
    assert_eq!(folded, [Some(writes[0]), Some(writes[1]), Some(writes[2])]);
    Ok(())
}

// ### Snapshot + watch combo

#[tokio::test]
async fn snapshot_and_watch() -> TestResult {
    use futures_util::StreamExt;

    let redex = Redex::new();
    let db = NetDb::open(&redex, 1)?;
    db.tasks().create(1, "write the docs")?;
    db.tasks().create(2, "ship it")?;
    db.tasks().create(9, "already done")?;
    let seq = db.tasks().complete(9)?;
    db.tasks().wait_for_seq(seq).await?;
    // `render` paints a result: here it reports the ids painted to the test.
    let (painted, mut paints) = tokio::sync::mpsc::unbounded_channel::<Vec<u64>>();
    let render = |rows: &[Task]| painted.send(ids(rows)).expect("the test listens");

    let watcher = db.tasks().watch().where_status(TaskStatus::Pending);
    let (snapshot, mut stream) = db.tasks().snapshot_and_watch(watcher);
    // `snapshot` is the current filter result.
    render(&snapshot);

    let consumer = async {
        // `stream` emits deltas from this point forward — no duplicate of
        // the initial state.
        while let Some(delta) = stream.next().await {
            render(&delta);
        }
    };
    let writer = async {
        assert_eq!(paints.recv().await, Some(vec![1, 2]));
        // A change outside the filter, then one inside it: the next paint is the new
        // result, not the snapshot again.
        let seq = db.tasks().rename(9, "still done")?;
        db.tasks().wait_for_seq(seq).await?;
        let seq = db.tasks().create(3, "announce it")?;
        db.tasks().wait_for_seq(seq).await?;
        assert_eq!(paints.recv().await, Some(vec![1, 2, 3]));
        let seq = db.tasks().complete(1)?;
        db.tasks().wait_for_seq(seq).await?;
        assert_eq!(paints.recv().await, Some(vec![2, 3]));
        db.tasks().close()?; // ends the stream, and the consumer's loop
        Ok::<_, CortexError>(())
    };
    let (written, ()) = no_hang(async { tokio::join!(writer, consumer) }).await;
    written?;
    // Nothing else was painted: no repeat of the snapshot, no delta for the rename.
    assert_eq!(paints.try_recv().ok(), None);
    Ok(())
}

// ## Snapshot + restore: per-model

#[tokio::test]
async fn per_model_snapshot() -> TestResult {
    let redex = Redex::new();
    let origin_hash = 7;
    let db = NetDb::open(&redex, origin_hash)?;
    seed_data(&db).await?;

    let (state_bytes, last_seq) = db.tasks().snapshot()?;
    // Persist (bytes, last_seq) somewhere durable (disk, cloud, etc.)

    // Seqs 0..=3: three creates and a complete.
    assert_eq!(last_seq, Some(3));
    // Events after the snapshot: they must fold into the restored state.
    db.tasks().create(4, "celebrate")?;
    let seq = db.tasks().rename(1, "write the guide")?;
    db.tasks().wait_for_seq(seq).await?;
    let expected = all_tasks(db.tasks());
    drop(db); // the folds stop; the logs stay open in `redex`

    #[rustfmt::skip]
    let tasks = TasksAdapter::open_from_snapshot(
        &redex,
        origin_hash,
        &state_bytes,
        last_seq,
    )?;
    // Replay picks up at last_seq + 1; earlier events don't re-fold.

    // Subscribed before the fold task first runs (the test runtime has one thread and
    // nothing has awaited since the open): it sees every batch the restored fold applies.
    let mut changes = tasks.changes();
    tasks.wait_for_seq(seq).await?;
    assert_eq!(all_tasks(&tasks), expected);
    match tasks.restore_outcome() {
        RestoreOutcome::Snapshot(info) => {
            assert_eq!(info.last_seq, Some(3));
            assert_eq!(info.rows, 3);
        }
        other => panic!("not restored from the snapshot: {other:?}"),
    }
    tasks.close()?; // ends the change stream
    let mut changed = BTreeSet::new();
    while let Some(change) = no_hang(futures_util::StreamExt::next(&mut changes)).await {
        match change {
            Change::Applied { through_seq, ids } => {
                assert!(through_seq > 3, "re-folded an event of the snapshot");
                changed.extend(ids.iter().copied());
            }
            other => panic!("unexpected change {other:?}"),
        }
    }
    // Only the rows the two later events touched were folded.
    assert_eq!(changed, BTreeSet::from([1, 4]));
    Ok(())
}

// ## Snapshot + restore: whole-DB, with the runtime's `NetDb` (takes a builder)

#[tokio::test]
async fn whole_db_snapshot_with_a_builder() -> TestResult {
    // The seed's `NetDb::open_from_snapshot(&redex, bundle, builder_config)` is the runtime's
    // untyped `NetDb`: its models are named by a builder.
    use netdb_runtime::netdb::NetDb;

    let redex = Redex::new();
    let db = netdb_models::NetDb::open(&redex, 7)?;
    seed_data(&db).await?;
    let builder_config = NetDb::builder()
        .origin_hash(7)
        .model::<Task>()
        .model::<Memory>();

    let bundle = db.snapshot()?;

    // After the bundle: one more event in each model.
    let t = db.tasks().create(4, "celebrate")?;
    let m = db.memories().retag(2, vec!["docs".into(), "book".into()])?;
    db.tasks().wait_for_seq(t).await?;
    db.memories().wait_for_seq(m).await?;
    let (tasks_before, memories_before) = (all_tasks(db.tasks()), all_memories(&db));
    drop(db);

    // seed: let db2 = NetDb::open_from_snapshot(&redex, bundle, builder_config)?;
    let db2 = NetDb::open_from_snapshot(&redex, &bundle, builder_config)?;

    assert_eq!(db2.channels(), ["cortex/tasks", "cortex/memories"]);
    let tasks = db2.adapter::<Task>()?;
    let memories = db2.adapter::<Memory>()?;
    for outcome in [tasks.restore_outcome(), memories.restore_outcome()] {
        assert!(
            matches!(outcome, RestoreOutcome::Snapshot(_)),
            "{outcome:?}"
        );
    }
    tasks.wait_for_seq(t).await?;
    memories.wait_for_seq(m).await?;
    assert_eq!(tasks.state().read().query().collect(), tasks_before);
    assert_eq!(memories.state().read().query().collect(), memories_before);
    assert_eq!(memories.state().read().query().where_tag("book").count(), 1);
    db2.close()?;
    Ok(())
}

// ## Snapshot + restore: whole-DB, with the typed `netdb_models::NetDb`

#[tokio::test]
async fn whole_db_snapshot_typed() -> TestResult {
    let redex = Redex::new();
    let origin_hash = 7;
    let db = NetDb::open(&redex, origin_hash)?;
    seed_data(&db).await?;

    let bundle = db.snapshot()?;

    let t = db.tasks().complete(1)?;
    let m = db.memories().unpin(1)?;
    db.tasks().wait_for_seq(t).await?;
    db.memories().wait_for_seq(m).await?;
    let (tasks_before, memories_before) = (all_tasks(db.tasks()), all_memories(&db));
    drop(db);

    // seed: let db2 = NetDb::open_from_snapshot(&redex, bundle, builder_config)?;
    let db2 = NetDb::open_from_snapshot(&redex, origin_hash, &bundle)?;

    for outcome in [
        db2.tasks().restore_outcome(),
        db2.memories().restore_outcome(),
    ] {
        assert!(
            matches!(outcome, RestoreOutcome::Snapshot(_)),
            "{outcome:?}"
        );
    }
    db2.tasks().wait_for_seq(t).await?;
    db2.memories().wait_for_seq(m).await?;
    assert_eq!(all_tasks(db2.tasks()), tasks_before);
    assert_eq!(all_memories(&db2), memories_before);
    db2.close()?;
    Ok(())
}
