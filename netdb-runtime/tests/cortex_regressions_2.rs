//! Regression tests from a second code review of CortEX and NetDb: atomic events when index
//! code or an id's `Ord` panics, logs left open by a failed open, a waiting caller that
//! must not fold a whole backlog, skipped events inside gaps, stops outside `apply`, `Live`
//! starts, and a read guard held across a bounded wait. The doc comment of each test
//! describes the defect it guards against (all fixed).

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{Status, Task, TaskEvent};
use netdb_runtime::cortex::{
    ApplyError, CortexAdapter, CortexConfig, CortexError, CortexEvent, CortexModel, EventContext,
    EventDecodeError, Field, FoldErrorKind, FoldErrorPolicy, HashIndex, IdOrder, IndexSet,
    ModelFilter, Plan, Query, RowKey, Schema, StartAt, TableMut, Watch,
};
use netdb_runtime::netdb::NetDb;
use netdb_runtime::redex::{Redex, RedexFileConfig};
use serde::{Deserialize, Serialize};

const SAFETY: Duration = Duration::from_secs(30);

async fn safe<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(SAFETY, f)
        .await
        .expect("safety timeout")
}

fn create(id: u64) -> TaskEvent {
    TaskEvent::create(id, &format!("task {id}"), Status::Pending, id, &[])
}

// ---------------------------------------------------------------------------------------
// A small model whose index code panics on one value (a key type whose Hash / Ord / Clone
// panics, or a hand-written index set), and whose filter can panic on one value.
// ---------------------------------------------------------------------------------------

/// The value whose index key panics.
const POISON: u64 = 13;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ix {
    id: u64,
    v: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum IxEvent {
    Put { id: u64, v: u64 },
    Set { id: u64, v: u64 },
}

#[derive(Debug, Clone, Default, PartialEq)]
struct IxFilter {
    v: Option<u64>,
    /// `matches` panics on a row holding this value.
    panic_on: Option<u64>,
}

impl ModelFilter<Ix> for IxFilter {
    fn matches(&self, r: &Ix) -> bool {
        if self.panic_on == Some(r.v) {
            panic!("filter panicked on row {}", r.id);
        }
        self.v.is_none_or(|v| r.v == v)
    }
    fn plan<'i>(&'i self, ix: &'i IxIndexes, plan: &mut Plan<'i, u64>) {
        if let Some(v) = &self.v {
            plan.offer_set(ix.by_v.get(v));
        }
    }
}

#[derive(Debug, Default)]
struct IxIndexes {
    by_v: HashIndex<u64, u64>,
}

impl IndexSet<Ix> for IxIndexes {
    fn insert(&mut self, id: &RowKey<u64>, r: &Ix) {
        if r.v == POISON {
            panic!("index key of value {POISON} panicked");
        }
        self.by_v.insert(r.v, id);
    }
    fn remove(&mut self, id: &RowKey<u64>, r: &Ix) {
        self.by_v.remove(&r.v, id);
    }
    // `update`: the trait's default (remove, then insert).
}

impl CortexModel for Ix {
    type Id = u64;
    type Event = IxEvent;
    type Filter = IxFilter;
    type OrderBy = IdOrder;
    type Indexes = IxIndexes;
    type Query<'a> = Query<'a, Ix>;
    type Watch = Watch<Ix>;
    const CHANNEL: &'static str = "review2/ix";
    const SCHEMA: Schema = Schema::new(
        1,
        &[
            Field {
                name: "id",
                ty: "u64",
            },
            Field {
                name: "v",
                ty: "u64",
            },
        ],
    );
    fn id(&self) -> &u64 {
        &self.id
    }
}

impl CortexEvent<Ix> for IxEvent {
    fn dispatch(&self) -> u16 {
        match self {
            IxEvent::Put { .. } => 1,
            IxEvent::Set { .. } => 2,
        }
    }
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        *out = postcard::to_extend(self, std::mem::take(out))?;
        Ok(())
    }
    fn decode_body(
        dispatch: u16,
        _schema_version: u16,
        body: &[u8],
    ) -> Result<Self, EventDecodeError> {
        let ev: IxEvent = postcard::from_bytes(body)
            .map_err(|source| EventDecodeError::Body { dispatch, source })?;
        if ev.dispatch() != dispatch {
            return Err(EventDecodeError::UnknownDispatch(dispatch));
        }
        Ok(ev)
    }
    fn apply(self, t: &mut TableMut<'_, Ix>, _: &EventContext) -> Result<(), ApplyError> {
        match self {
            IxEvent::Put { id, v } => {
                t.insert(Ix { id, v });
            }
            IxEvent::Set { id, v } => {
                t.update(&id, |r| r.v = v);
            }
        }
        Ok(())
    }
}

fn continue_on_errors() -> CortexConfig {
    CortexConfig::default().with_fold_error_policy(FoldErrorPolicy::LogAndContinue)
}

// ---------------------------------------------------------------------------------------
// 1. Atomicity: a panic in index code inside `apply` is not undone.
// ---------------------------------------------------------------------------------------

/// Was a defect: `TableMut::insert` / `update` / `remove` change the rows and the indexes *before*
/// they push the undo-journal entry (`Table::touch`). A panic in between — in the model's
/// index code (`IndexSet::insert` / `update`), or in the id's `Hash` / `Ord` — is caught as
/// the event's `Panicked` error, but `rollback` finds no journal entry: under
/// `LogAndContinue` the "skipped" event's row stays in the state, contrary to "every change
/// it made is undone, indexes included".
#[tokio::test]
async fn a_panicking_index_key_on_insert_is_undone() {
    let redex = Redex::new();
    let a = CortexAdapter::<Ix>::open_with_config(&redex, 1, continue_on_errors()).unwrap();
    let seq = a.append(&IxEvent::Put { id: 1, v: POISON }).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    let errors = a.fold_errors();
    assert_eq!(errors.skipped, 1, "{errors:?}");
    assert!(matches!(errors.recent[0].kind, FoldErrorKind::Panicked(_)));
    let row = a.state().read().find_unique(&1).cloned();
    assert_eq!(
        row, None,
        "the skipped event's row is still in the state (its undo entry was never recorded)"
    );
}

/// Was a defect: the index update removes the old key, then panics on the
/// new one. The row is unchanged but the index no longer holds it: an indexed query for its
/// value misses it for ever (until a replay).
#[tokio::test]
async fn a_panicking_index_key_on_update_leaves_the_index_consistent() {
    let redex = Redex::new();
    let a = CortexAdapter::<Ix>::open_with_config(&redex, 1, continue_on_errors()).unwrap();
    a.append(&IxEvent::Put { id: 1, v: 1 }).unwrap();
    let seq = a.append(&IxEvent::Set { id: 1, v: POISON }).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    assert_eq!(a.fold_errors().skipped, 1);
    let state = a.state();
    let t = state.read();
    assert_eq!(
        t.find_unique(&1),
        Some(&Ix { id: 1, v: 1 }),
        "the row is unchanged"
    );
    let by_scan = t.query().filter(|f| f.v = Some(1)).count();
    let in_index = t.indexes().by_v.get(&1).map_or(0, |s| s.len());
    assert_eq!(
        (by_scan, in_index),
        (1, 1),
        "the planner trusts the index: the row with v = 1 is no longer found by an indexed query"
    );
}

// ---------------------------------------------------------------------------------------
// 2. NetDb: a failing model's own log stays open.
// ---------------------------------------------------------------------------------------

/// Was a defect: `open_each` closes only the models that opened *successfully* before the
/// failure. The model whose open fails has usually opened its log already (`open_file`
/// runs before the snapshot is decoded and before the runtime check), and that log stays
/// open in the `Redex`; a later open with another file config fails with
/// `ConfigMismatch`. Documented: "If any model fails to open, the logs this call opened
/// are closed again".
#[tokio::test]
async fn a_failed_netdb_restore_closes_the_failing_models_log() {
    // A bundle of a log with one event...
    let bundle = {
        let redex = Redex::new();
        let db = NetDb::builder().model::<Task>().open(&redex).unwrap();
        let tasks = db.adapter::<Task>().unwrap();
        let seq = tasks.append(&create(1)).unwrap();
        safe(tasks.wait_for_seq(seq)).await.unwrap();
        db.snapshot().unwrap()
    };
    // ...restored over an empty one: AheadOfLog.
    let redex = Redex::new();
    let e = NetDb::builder()
        .model::<Task>()
        .open_from_snapshot(&redex, &bundle)
        .unwrap_err();
    assert!(matches!(e, CortexError::Snapshot(_)), "{e:?}");
    let open: Vec<String> = redex.channels().iter().map(|c| c.to_string()).collect();
    let later = redex.open_file(
        &Task::CHANNEL.parse().unwrap(),
        RedexFileConfig::default().with_retention_max_events(5),
    );
    assert!(
        open.is_empty(),
        "the failed open left {open:?} open; a later open with another config: {later:?}"
    );
}

/// Was a defect: opening a NetDb outside a runtime fails, yet the first
/// model's log is left open.
#[test]
fn a_netdb_open_without_a_runtime_leaves_nothing_open() {
    let redex = Redex::new();
    let e = NetDb::builder().model::<Task>().open(&redex).unwrap_err();
    assert!(matches!(e, CortexError::NoRuntime { .. }), "{e:?}");
    let open: Vec<String> = redex.channels().iter().map(|c| c.to_string()).collect();
    assert!(open.is_empty(), "the failed open left {open:?} open");
}

// ---------------------------------------------------------------------------------------
// 3. Starvation: a helping waiter folds the whole backlog in one poll.
// ---------------------------------------------------------------------------------------

/// Was a defect: `wait_for_seq` enables its `Notified`, calls `help()` (up to 4 batches), and
/// awaits. `help` → `apply_batch` → `notify_waiters()` has already notified that very
/// `Notified`, and tokio's `Notified` does not take part in cooperative budgeting, so the
/// await is ready at once and the loop helps again — until the whole backlog is folded,
/// all in one poll of the caller's task. The fold task yields after 8 batches; the helper
/// never does. On a current-thread runtime nothing else runs meanwhile, and
/// `wait_for_seq_timeout` cannot time out (its timer is only checked when the inner future
/// is pending).
#[tokio::test]
async fn a_helping_waiter_yields_during_a_long_replay() {
    const EVENTS: u64 = 300_000;
    let redex = Redex::new();
    {
        // Fill the log (this adapter's fold never runs: nothing is awaited).
        let w = CortexAdapter::<Task>::open(&redex, 1).unwrap();
        let events: Vec<TaskEvent> = (0..1000).map(create).collect();
        for _ in 0..EVENTS / 1000 {
            w.append_batch(&events).unwrap();
        }
    }
    // Small batches, so the fold task's first poll (8 batches) stays far behind.
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        CortexConfig::default().with_max_batch(16),
    )
    .unwrap();
    let last = a.log().next_seq() - 1;
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = Arc::clone(&ticks);
        tokio::spawn(async move {
            loop {
                ticks.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    // Let the fold task run once: from now on waiters may help.
    tokio::task::yield_now().await;
    let folded = a.folded_through_seq();
    assert!(
        folded.is_some() && folded < Some(last / 2),
        "the fold is far behind: {folded:?}"
    );

    let before = ticks.load(Ordering::Relaxed);
    let start = Instant::now();
    let timeout = Duration::from_millis(10);
    let r = a.wait_for_seq_timeout(last, timeout).await;
    let took = start.elapsed();
    let ran = ticks.load(Ordering::Relaxed) - before;
    ticker.abort();
    eprintln!(
        "wait_for_seq_timeout({last}, {timeout:?}) -> {r:?} after {took:?}; other task ran {ran} times"
    );
    assert!(
        took < timeout * 10 && ran > 0,
        "the waiter folded the backlog inline for {took:?} (timeout {timeout:?}, result {:?}); \
         another task on the runtime ran {ran} times meanwhile",
        r.map(|()| "Ok")
    );
}

// ---------------------------------------------------------------------------------------
// 4. append_and_wait's Skipped misses events inside an Evicted gap.
// ---------------------------------------------------------------------------------------

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Was a defect: under `LogAndContinue` an `Evicted` gap is recorded as one `FoldError` whose
/// `seq` is the first lost event; `append_and_wait` looks for `e.seq == seq`, so for any
/// other event of the gap it returns `Ok(seq)` though that event never reached the state.
#[tokio::test]
async fn append_and_wait_reports_an_event_lost_in_a_gap() {
    let redex = Redex::new();
    let file_cfg = RedexFileConfig::default().with_retention_max_events(10);
    let file = redex
        .open_file(&Task::CHANNEL.parse().unwrap(), file_cfg.clone())
        .unwrap();
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        continue_on_errors()
            .with_file_config(file_cfg)
            .with_start(StartAt::Seq(0)),
    )
    .unwrap();
    // Current-thread runtime: the fold task has not run yet, so no one folds until we yield.
    a.append(&create(0)).unwrap();
    let ev = create(1);
    let mut mine = pin!(a.append_and_wait(&ev)); // seq 1
    assert!(poll_once(mine.as_mut()).is_pending());
    for i in 2..=30 {
        a.append(&create(i)).unwrap();
    }
    assert_eq!(file.sweep_retention().unwrap().first_seq, 21);

    let r = safe(mine).await;
    let in_state = a.state().read().find_unique(&1).is_some();
    let errors = a.fold_errors();
    assert!(!in_state);
    assert_eq!(errors.skipped, 1);
    assert_eq!(errors.recent[0].seq, 0);
    assert!(
        matches!(r, Err(CortexError::Skipped { .. })),
        "event 1 was lost in the gap 0..21 and never applied, yet append_and_wait said {r:?}"
    );
}

/// The same with `StartAt::Beginning` (the usual config): the gap before the first read is
/// skipped silently (by design: not a gap), so nothing at all tells the writer that its
/// `append_and_wait` event was never applied.
#[tokio::test]
async fn append_and_wait_from_the_beginning_reports_an_event_lost_before_the_first_read() {
    let redex = Redex::new();
    let file_cfg = RedexFileConfig::default().with_retention_max_events(10);
    let file = redex
        .open_file(&Task::CHANNEL.parse().unwrap(), file_cfg.clone())
        .unwrap();
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        CortexConfig::default().with_file_config(file_cfg),
    )
    .unwrap();
    let ev = create(0);
    let mut mine = pin!(a.append_and_wait(&ev)); // seq 0
    assert!(poll_once(mine.as_mut()).is_pending());
    for i in 1..=30 {
        a.append(&create(i)).unwrap();
    }
    file.sweep_retention().unwrap();
    let r = safe(mine).await;
    assert!(a.state().read().find_unique(&0).is_none());
    assert!(
        r.is_err(),
        "event 0 was never applied (no fold error either), yet append_and_wait said {r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. A panic outside apply: the stop error names an event the state holds.
// ---------------------------------------------------------------------------------------

/// Was a defect: when a filter panics while watchers are re-evaluated, the batch
/// is already in the table, but `folded` is not published and the stop error's `seq` is the
/// first event of the batch. So `fold_errors().stopped.seq` names an event that *was*
/// applied, `folded_through_seq()` disagrees with `state().read().folded_through_seq()` (and
/// with `snapshot()`'s `last_seq`), and the book's "The state stays at the event before it"
/// does not hold.
#[tokio::test]
async fn a_stop_outside_apply_reports_where_the_state_is() {
    let redex = Redex::new();
    let a = CortexAdapter::<Ix>::open(&redex, 1).unwrap();
    let _w = a.watch().filter(|f| f.panic_on = Some(99)).stream();
    let seqs = a
        .append_batch(&[
            IxEvent::Put { id: 1, v: 1 },
            IxEvent::Put { id: 2, v: 99 },
            IxEvent::Put { id: 3, v: 3 },
        ])
        .unwrap();
    // The batch is in the state before the watchers see it, so the wait succeeds; the fold
    // then stops, naming the first event the state does not hold.
    let r = safe(a.wait_for_seq(seqs.end - 1)).await;
    assert!(r.is_ok(), "{r:?}");
    let next = safe(a.wait_for_seq(seqs.end)).await;
    assert!(
        matches!(next, Err(CortexError::FoldStopped { .. })),
        "{next:?}"
    );
    assert!(!a.is_folding());
    let stop = a.fold_errors().stopped.unwrap().seq;
    let table = a.state().read().folded_through_seq();
    let adapter = a.folded_through_seq();
    let (_, snap_last) = a.snapshot().unwrap();
    assert!(
        table == adapter && table.is_none_or(|t| stop > t),
        "stopped at seq {stop}, adapter folded through {adapter:?}, the state (and a snapshot: \
         {snap_last:?}) through {table:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 6. StartAt::Live / Seq: waits for events before the start.
// ---------------------------------------------------------------------------------------

/// Was a defect: an adapter started `Live` (or at `Seq(s)`) has `folded = 0` until its
/// first event, so `wait_for_seq` for an event before its start — the book's "caught up"
/// idiom `wait_for_seq(log().next_seq() - 1)` included — waits for the *next* append,
/// possibly for ever, although the fold is past it by definition.
#[tokio::test]
async fn live_start_is_past_the_events_before_it() {
    let redex = Redex::new();
    {
        let w = CortexAdapter::<Task>::open(&redex, 1).unwrap();
        for i in 0..5 {
            w.append(&create(i)).unwrap();
        }
    }
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        CortexConfig::default().with_start(StartAt::Live),
    )
    .unwrap();
    let caught_up = a.log().next_seq() - 1;
    let r = a
        .wait_for_seq_timeout(caught_up, Duration::from_millis(300))
        .await;
    assert!(r.is_ok(), "{r:?}");
}

// ---------------------------------------------------------------------------------------
// Checks that came out fine (kept as evidence).
// ---------------------------------------------------------------------------------------

/// `help` before the fold task's first poll does nothing (no saved waker), and the task's
/// first poll folds: no lost wake-up.
#[tokio::test]
async fn a_waiter_before_the_first_poll_is_not_lost() {
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    let seq = a.append(&create(1)).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
}

/// A helper that consumes everything leaves the tail holding the task's waker: later
/// appends with no waiter at all are still folded by the task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_still_hears_of_appends_after_a_helper_drained_the_tail() {
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    for round in 0..200u64 {
        let seq = a.append(&create(round * 2)).unwrap();
        safe(a.wait_for_seq(seq)).await.unwrap();
        // No waiter now: only the task can fold this one.
        let seq = a.append(&create(round * 2 + 1)).unwrap();
        let start = Instant::now();
        while a.folded_through_seq() < Some(seq) {
            assert!(
                start.elapsed() < SAFETY,
                "the fold task slept with event {seq} ready"
            );
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }
}

/// A rejected event rolls back rows, the hashed map and the indexes together, including
/// an id inserted, updated and removed within one event.
#[tokio::test]
async fn rollback_keeps_rows_and_indexes_in_step() {
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open_with_config(&redex, 1, continue_on_errors()).unwrap();
    a.append(&create(1)).unwrap();
    let seq = a
        .append(&TaskEvent::Explode {
            id: 1,
            how: common::Explode::Reject,
        })
        .unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    let state = a.state();
    let t = state.read();
    assert_eq!(t.find_unique(&1).unwrap().title, "task 1");
    assert_eq!(t.iter().count(), t.len());
    assert_eq!(
        t.indexes().status.get(&Status::Pending).map(|s| s.len()),
        Some(1)
    );
}

// ---------------------------------------------------------------------------------------
// 7. A guard held across a bounded wait on a multi-thread runtime.
// ---------------------------------------------------------------------------------------

/// Was a defect: a caller outside the workers (`block_on`) holds a read guard across
/// `wait_for_seq_timeout`. Before `help`, the fold task blocked on a worker and the wait
/// timed out. Now the caller usually wins the race to the driver, folds the event itself,
/// and blocks its own thread for ever on the write lock (parking_lot: a thread holding a
/// read lock cannot take the write lock): the timeout never fires.
#[test]
fn a_guard_held_across_a_bounded_wait_times_out() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redex = Redex::new();
    let a = {
        let _g = rt.enter();
        CortexAdapter::<Task>::open(&redex, 1).unwrap()
    };
    let seq = a.append(&create(0)).unwrap();
    rt.block_on(async { safe(a.wait_for_seq(seq)).await.unwrap() });
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = {
        let a = a.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            for i in 1..=20 {
                let state = a.state();
                let guard = state.read();
                let seq = a.append(&create(i)).unwrap();
                let r = handle.block_on(a.wait_for_seq_timeout(seq, Duration::from_millis(20)));
                drop(guard);
                outcomes.push(r.is_ok());
            }
            tx.send(outcomes).unwrap();
        })
    };
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(outcomes) => {
            waiter.join().unwrap();
            eprintln!("no hang; waits ok: {outcomes:?}");
        }
        Err(_) => {
            std::mem::forget(waiter);
            std::mem::forget(a);
            std::mem::forget(rt);
            panic!("wait_for_seq_timeout(.., 20ms) with a read guard held never returned");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1b. Rows: the hashed map and the ordered map diverge when the id's Ord panics.
// ---------------------------------------------------------------------------------------

/// An id whose `Ord` panics on one value (a user type; contrived, but "panics reachable from
/// data" in model code inside `apply`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct PId(u64);

impl PartialOrd for PId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.0 == POISON || other.0 == POISON {
            panic!("id {POISON} cannot be compared");
        }
        self.0.cmp(&other.0)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Po {
    id: PId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PoPut(u64);

impl CortexModel for Po {
    type Id = PId;
    type Event = PoPut;
    type Filter = netdb_runtime::cortex::NoFilter;
    type OrderBy = IdOrder;
    type Indexes = ();
    type Query<'a> = Query<'a, Po>;
    type Watch = Watch<Po>;
    const CHANNEL: &'static str = "review2/po";
    const SCHEMA: Schema = Schema::new(
        1,
        &[Field {
            name: "id",
            ty: "PId",
        }],
    );
    fn id(&self) -> &PId {
        &self.id
    }
}

impl CortexEvent<Po> for PoPut {
    fn dispatch(&self) -> u16 {
        1
    }
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        *out = postcard::to_extend(self, std::mem::take(out))?;
        Ok(())
    }
    fn decode_body(
        dispatch: u16,
        _schema_version: u16,
        body: &[u8],
    ) -> Result<Self, EventDecodeError> {
        postcard::from_bytes(body).map_err(|source| EventDecodeError::Body { dispatch, source })
    }
    fn apply(self, t: &mut TableMut<'_, Po>, _: &EventContext) -> Result<(), ApplyError> {
        t.insert(Po { id: PId(self.0) });
        Ok(())
    }
}

/// Was a defect: `Rows::insert` updates the hashed map, then
/// the ordered map panics; no journal entry exists, so the rollback of the "skipped" event
/// leaves the row in `by_id` only: `find_unique` finds it, `iter()` / `len()` / queries do
/// not.
#[tokio::test]
async fn rows_maps_stay_in_step_when_an_insert_panics() {
    let redex = Redex::new();
    let a = CortexAdapter::<Po>::open_with_config(&redex, 1, continue_on_errors()).unwrap();
    a.append(&PoPut(1)).unwrap();
    let seq = a.append(&PoPut(POISON)).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    assert_eq!(a.fold_errors().skipped, 1);
    let state = a.state();
    let t = state.read();
    let found = t.find_unique(&PId(POISON)).is_some();
    let listed = t.iter().count();
    assert!(
        !found && listed == t.len(),
        "after the rollback: find_unique({POISON}) = {found}, iter() lists {listed}, len() = {}",
        t.len()
    );
}

// ---------------------------------------------------------------------------------------
// IdSet transitions (fine).
// ---------------------------------------------------------------------------------------

#[test]
fn id_set_transitions_through_the_index_api() {
    use netdb_runtime::cortex::{IdSet, InvertedIndex, OrderedIndex};
    let k = |id: u64| RowKey::new(id, id as u32);
    let ids = |s: Option<&IdSet<u64>>| s.map(|s| s.ids().copied().collect::<Vec<_>>());
    let mut ix = OrderedIndex::<u32, u64>::default();
    ix.insert(7, &k(1));
    ix.insert(7, &k(1)); // duplicate: still One
    assert_eq!(ix.get(&7), Some(&IdSet::One(k(1))));
    ix.insert(7, &k(3));
    ix.insert(7, &k(2));
    assert_eq!(ids(ix.get(&7)), Some(vec![1, 2, 3]));
    ix.remove(&7, &k(9)); // not a member
    assert_eq!(ix.get(&7).unwrap().len(), 3);
    ix.remove(&7, &k(2));
    ix.remove(&7, &k(1));
    assert_eq!(ix.get(&7), Some(&IdSet::One(k(3))));
    ix.remove(&7, &k(1)); // not the member of a One
    assert_eq!(ix.get(&7), Some(&IdSet::One(k(3))));
    ix.remove(&7, &k(3));
    assert_eq!(ix.get(&7), None);

    let mut inv = InvertedIndex::<String, u64>::default();
    let a = ["x".to_string(), "x".to_string(), "y".to_string()];
    inv.insert(&a, &k(1));
    inv.update(
        &a,
        &["y".to_string(), "z".to_string(), "z".to_string()],
        &k(1),
    );
    assert!(inv.get(&"x".to_string()).is_none());
    assert_eq!(ids(inv.get(&"z".to_string())), Some(vec![1]));
    // The large path (product > 1024) gives the same result.
    let big_old: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let big_new: Vec<String> = (20..60).map(|i| i.to_string()).collect();
    inv.insert(&big_old, &k(2));
    inv.update(&big_old, &big_new, &k(2));
    assert!(inv.get(&"5".to_string()).is_none());
    assert_eq!(ids(inv.get(&"25".to_string())), Some(vec![2]));
    assert_eq!(ids(inv.get(&"55".to_string())), Some(vec![2]));
}
