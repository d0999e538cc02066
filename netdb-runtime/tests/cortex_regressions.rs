//! Regression tests for defects a code review found in CortEX and NetDb (deadlocks, panics
//! outside `apply`, close retries, bundle fallbacks and errors, retention racing open,
//! skipped events). Each test asserts the behaviour the contract asks for.

mod common;

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use common::{Note, Task, TaskEvent};
use netdb_runtime::cortex::{
    ApplyError, CortexAdapter, CortexConfig, CortexError, CortexEvent, CortexLog, CortexModel,
    EventContext, EventDecodeError, Field, FoldErrorKind, IdOrder, LogTail, ModelFilter, Query,
    RestoreOutcome, Schema, SnapshotFallback, TableMut, Watch,
};
use netdb_runtime::netdb::NetDb;
use netdb_runtime::redex::{Redex, RedexError, RedexEvent, RedexFile, RedexFileConfig};
use serde::{Deserialize, Serialize};

const SAFETY: Duration = Duration::from_secs(20);

async fn safe<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(SAFETY, f)
        .await
        .expect("safety timeout")
}

fn create(id: u64) -> TaskEvent {
    TaskEvent::create(id, &format!("task {id}"), common::Status::Pending, id, &[])
}

fn replay() -> CortexConfig {
    CortexConfig::default().with_snapshot_fallback(SnapshotFallback::Replay)
}

// ---------------------------------------------------------------------------------------
// A one-shot gate: the first `pass` blocks until `open`; later passes go straight through.
// ---------------------------------------------------------------------------------------

struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    const fn new() -> Self {
        Gate {
            armed: AtomicBool::new(false),
            entered: AtomicBool::new(false),
            open: Mutex::new(false),
            cv: Condvar::new(),
        }
    }
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }
    fn pass(&self) {
        if !self.armed.swap(false, Ordering::SeqCst) {
            return;
        }
        self.entered.store(true, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
    }
    fn wait_entered(&self) {
        let start = std::time::Instant::now();
        while !self.entered.load(Ordering::SeqCst) {
            assert!(start.elapsed() < SAFETY, "gate never entered");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

static APPLY_GATE: Gate = Gate::new();
static MATCH_GATE: Gate = Gate::new();

// A minimal model whose `apply` and filter can be held at a gate.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Gated {
    id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GatedEvent {
    id: u64,
    hold: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct GatedFilter {
    hold: bool,
    /// Panics on a row with an id at or above this.
    panic_from: Option<u64>,
}

impl ModelFilter<Gated> for GatedFilter {
    fn matches(&self, row: &Gated) -> bool {
        if self.hold {
            MATCH_GATE.pass();
        }
        if self.panic_from.is_some_and(|p| row.id >= p) {
            panic!("filter panicked on row {}", row.id);
        }
        true
    }
}

impl CortexModel for Gated {
    type Id = u64;
    type Event = GatedEvent;
    type Filter = GatedFilter;
    type OrderBy = IdOrder;
    type Indexes = ();
    type Query<'a> = Query<'a, Gated>;
    type Watch = Watch<Gated>;
    const CHANNEL: &'static str = "review/gated";
    const SCHEMA: Schema = Schema::new(
        1,
        &[Field {
            name: "id",
            ty: "u64",
        }],
    );
    fn id(&self) -> &u64 {
        &self.id
    }
}

impl CortexEvent<Gated> for GatedEvent {
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
        if dispatch != 1 {
            return Err(EventDecodeError::UnknownDispatch(dispatch));
        }
        postcard::from_bytes(body).map_err(|source| EventDecodeError::Body { dispatch, source })
    }
    fn apply(self, t: &mut TableMut<'_, Gated>, _: &EventContext) -> Result<(), ApplyError> {
        if self.hold {
            APPLY_GATE.pass();
        }
        t.insert(Gated { id: self.id });
        Ok(())
    }
}

/// DEFECT: lock-order deadlock between the watch registry mutex and the state RwLock.
///
/// `apply_batch` takes `watches.lock()` and then a *non-recursive* `state.read()`. A pending
/// writer (`close()`) makes that read block. A user thread that holds a read guard (which
/// `Watch::stream` explicitly supports via `read_recursive`) and then creates or drops a
/// watch waits for the registry mutex: fold → close → reader → fold. The gates only widen
/// windows that exist without them.
#[test]
fn watch_registry_and_state_lock_deadlock_with_close() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let redex = Redex::new();
    let a = {
        let _g = rt.enter();
        CortexAdapter::<Gated>::open(&redex, 1).unwrap()
    };
    let seq = a.append(&GatedEvent { id: 1, hold: false }).unwrap();
    rt.block_on(async { safe(a.wait_for_seq(seq)).await.unwrap() });
    // An idle watcher, so batches are tracked and the fold visits the registry.
    let w0 = a.watch().stream();

    // 1. The fold applies an event and is held inside `apply` (write lock held).
    APPLY_GATE.arm();
    a.append(&GatedEvent { id: 2, hold: true }).unwrap();
    APPLY_GATE.wait_entered();

    // 2. Thread B starts a watch: takes the registry mutex, waits for the read lock.
    MATCH_GATE.arm();
    let (stream_tx, stream_rx) = mpsc::channel();
    {
        let a = a.clone();
        std::thread::spawn(move || {
            let s = a.watch().filter(|f| f.hold = true).stream();
            stream_tx.send(s).unwrap();
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    // 3. The fold finishes `apply`; B registers (holding the registry mutex and a read lock)
    //    and is held in its filter; the fold queues on the registry mutex.
    APPLY_GATE.release();
    MATCH_GATE.wait_entered();
    std::thread::sleep(Duration::from_millis(200));

    // 4. Thread A takes a read guard and keeps it.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (held_tx, held_rx) = mpsc::channel::<()>();
    let reader = {
        let a = a.clone();
        std::thread::spawn(move || {
            let state = a.state();
            let guard = state.read();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // 6. With the guard held, start a watch (documented as safe with a guard held).
            let s = a.watch().stream();
            drop(s);
            drop(guard);
            done_tx.send(()).unwrap();
        })
    };
    held_rx.recv().unwrap();

    // 5. Thread C closes the adapter: its write lock waits for A's (and B's) read locks.
    let closer = {
        let a = a.clone();
        std::thread::spawn(move || a.close())
    };
    std::thread::sleep(Duration::from_millis(200));
    // B finishes; the fold takes the registry mutex and blocks on `state.read()` behind C.
    MATCH_GATE.release();
    // (Not dropped here: dropping a stream needs the registry mutex, which the fold now
    // holds while it waits for the read lock.)
    let b_stream = stream_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    go_tx.send(()).unwrap();

    let finished = done_rx.recv_timeout(Duration::from_secs(5)).is_ok();
    if !finished {
        // Leak everything that is stuck so the test process can still exit.
        std::mem::forget(w0);
        std::mem::forget(b_stream);
        std::mem::forget(a);
        std::mem::forget(reader);
        std::mem::forget(closer);
        std::mem::forget(rt);
        panic!("deadlock: the reader, the fold and close() are waiting for each other");
    }
    closer.join().unwrap().unwrap();
    reader.join().unwrap();
    drop((w0, b_stream));
}

// ---------------------------------------------------------------------------------------
// A log whose close fails the first time (as RedEX close does when staged events cannot be
// written: it keeps them and a retried close writes them).
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct FlakyClose {
    inner: RedexFile,
    failures_left: AtomicUsize,
    close_calls: AtomicUsize,
}

impl CortexLog for FlakyClose {
    fn append(&self, payload: &[u8]) -> Result<u64, RedexError> {
        self.inner.append(payload)
    }
    fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<u64>, RedexError> {
        self.inner.append_batch(payloads)
    }
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RedexEvent>, RedexError> {
        self.inner.read_range(start, end)
    }
    fn tail(&self, from: u64) -> LogTail {
        Box::pin(self.inner.tail(from))
    }
    fn next_seq(&self) -> u64 {
        self.inner.next_seq()
    }
    fn first_seq(&self) -> u64 {
        self.inner.first_seq()
    }
    fn sync(&self) -> Result<(), RedexError> {
        self.inner.sync()
    }
    fn close(&self) -> Result<(), RedexError> {
        self.close_calls.fetch_add(1, Ordering::SeqCst);
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(RedexError::Io {
                op: "write",
                path: "review/flaky".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.inner.close()
    }
}

/// DEFECT: `CortexAdapter::close` sets `close_started` before closing the log, so when the
/// log's close fails, calling `close()` again returns `Ok(())` without retrying it: the
/// caller is told the log is closed (and fsynced) when it is not.
#[tokio::test]
async fn close_retry_after_a_failed_log_close_retries_it() {
    let redex = Redex::new();
    let file = redex
        .open_file(&"review/flaky".parse().unwrap(), RedexFileConfig::default())
        .unwrap();
    let log = Arc::new(FlakyClose {
        inner: file.clone(),
        failures_left: AtomicUsize::new(1),
        close_calls: AtomicUsize::new(0),
    });
    let a = CortexAdapter::<Task>::open_on_log(log.clone(), 1, CortexConfig::default()).unwrap();
    let seq = a.append(&create(1)).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();

    assert!(a.close().is_err(), "the first close fails");
    let second = a.close();
    assert_eq!(
        log.close_calls.load(Ordering::SeqCst),
        2,
        "the second close() did not retry the log close, yet returned {second:?}"
    );
    assert!(second.is_ok());
}

// ---------------------------------------------------------------------------------------
// NetDb
// ---------------------------------------------------------------------------------------

/// DEFECT: a bundle whose outer framing is damaged (here: one byte short) fails the whole
/// open even though every model is configured with `SnapshotFallback::Replay`; the same
/// damage to a per-model envelope replays. The fallback is documented as "what happens when
/// a snapshot cannot be restored".
#[tokio::test]
async fn damaged_bundle_honours_the_replay_fallback() {
    let redex = Redex::new();
    let db = NetDb::builder().model::<Task>().open(&redex).unwrap();
    let tasks = db.adapter::<Task>().unwrap();
    let seq = tasks.append(&create(1)).unwrap();
    safe(tasks.wait_for_seq(seq)).await.unwrap();
    let bundle = db.snapshot().unwrap();
    let (envelope, last) = tasks.snapshot().unwrap();
    drop(db);

    // Per model: a truncated envelope replays.
    let one = CortexAdapter::<Task>::open_from_snapshot_with_config(
        &redex,
        1,
        &envelope[..envelope.len() - 1],
        last,
        replay(),
    )
    .unwrap();
    assert!(matches!(
        one.restore_outcome(),
        RestoreOutcome::Replayed { .. }
    ));
    drop(one);

    // Whole database: the same truncation is a hard error.
    let r = NetDb::builder()
        .model_with_config::<Task>(replay())
        .open_from_snapshot(&redex, &bundle[..bundle.len() - 1]);
    let db = r.expect("every model asked to replay when its snapshot cannot be restored");
    let outcome = db.adapter::<Task>().unwrap().restore_outcome().clone();
    assert!(
        matches!(outcome, RestoreOutcome::Replayed { .. }),
        "{outcome:?}"
    );
}

/// DEFECT (message): handing a per-model snapshot to the NetDb restore says the bytes have
/// no "NDBSNAP\0" magic — but they start with exactly that. The bundle decoder reuses
/// `SnapshotError::NotASnapshot`, whose text names the envelope magic, not the bundle's.
#[tokio::test]
async fn bundle_restore_of_a_model_snapshot_names_the_right_magic() {
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    let (envelope, _) = a.snapshot().unwrap();
    assert!(envelope.starts_with(b"NDBSNAP\0"));
    drop(a);
    let e = NetDb::builder()
        .model::<Task>()
        .open_from_snapshot(&redex, &envelope)
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        !msg.contains("NDBSNAP"),
        "the bytes start with NDBSNAP, yet the error says they lack it: {msg}"
    );
}

/// DEFECT (resource): when a later model of a NetDb fails to open, the models opened before
/// it are dropped but their RedEX files stay open in the `Redex` (the existing test
/// `netdb_builder_refuses_a_model_named_twice` expects refused builders to open nothing).
/// A later open of that channel with another config then fails with `ConfigMismatch`.
#[tokio::test]
async fn a_failed_netdb_open_leaves_nothing_open() {
    let redex = Redex::new();
    // The note channel is already open with another configuration: the Note model fails.
    let notes = redex
        .open_file(
            &Note::CHANNEL.parse().unwrap(),
            RedexFileConfig::default().with_retention_max_events(5),
        )
        .unwrap();
    let e = NetDb::builder()
        .model::<Task>()
        .model::<Note>()
        .open(&redex)
        .unwrap_err();
    assert!(
        matches!(e, CortexError::Log(RedexError::ConfigMismatch { .. })),
        "{e:?}"
    );
    drop(notes);
    let open: Vec<String> = redex.channels().iter().map(|c| c.to_string()).collect();
    assert!(
        !open.iter().any(|c| c == Task::CHANNEL),
        "the failed open left {open:?} open"
    );
}

/// DEFECT (robustness / misleading error): only `apply` runs under `catch_unwind`. Model code
/// the fold runs outside it — a filter's `matches` while re-evaluating watchers (also
/// `decode_body`, `route_hashes`, `compare`, index code during rollback) — kills the fold. When
/// the fold task runs it, every later `wait_for_seq` says "the adapter is closed" and
/// `fold_errors()` is empty; when a waiter helps (`Shared::help`), the panic surfaces inside
/// the caller's `wait_for_seq`, after the batch was applied but before `folded` was
/// published.
#[tokio::test]
async fn a_panicking_filter_does_not_escape_into_wait_for_seq() {
    let redex = Redex::new();
    let a = CortexAdapter::<Gated>::open(&redex, 1).unwrap();
    let seq = a.append(&GatedEvent { id: 1, hold: false }).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap(); // the fold task has run once: helpers may help
    let _w = a.watch().filter(|f| f.panic_from = Some(5)).stream();
    let seq = a.append(&GatedEvent { id: 5, hold: false }).unwrap();
    let waiter = {
        let a = a.clone();
        tokio::spawn(async move { a.wait_for_seq(seq).await })
    };
    match safe(waiter).await {
        Err(join) => panic!("wait_for_seq itself panicked: {join}"),
        // The event is in the state (the filter panicked after it was applied): the wait
        // succeeds, and the fold has stopped, recording why.
        Ok(r) => r.expect("the event was applied before the watcher pass panicked"),
    }
    let e = safe(a.wait_for_seq(seq + 1)).await.unwrap_err();
    assert!(
        matches!(e, CortexError::FoldStopped { .. }),
        "expected the fold to record why it stopped, got: {e}"
    );
    let stopped = a.fold_errors().stopped.expect("stopped");
    assert!(
        matches!(stopped.kind, FoldErrorKind::Panicked(_)) && stopped.seq == seq + 1,
        "{stopped:?}"
    );
}

/// The same, when the waiter folds the batch itself (`Shared::help`): the panic unwinds out
/// of the caller's `wait_for_seq`; the row is in the state yet `folded_through_seq` never
/// reaches it, and the watcher never saw the batch.
#[tokio::test]
async fn a_panicking_filter_does_not_escape_into_a_helping_waiter() {
    use futures_util::FutureExt;
    let redex = Redex::new();
    let a = CortexAdapter::<Gated>::open(&redex, 1).unwrap();
    let seq = a.append(&GatedEvent { id: 1, hold: false }).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    let _w = a.watch().filter(|f| f.panic_from = Some(5)).stream();
    let seq = a.append(&GatedEvent { id: 5, hold: false }).unwrap();
    // Polled before the fold task runs again: this caller folds the batch itself.
    let r = std::panic::AssertUnwindSafe(a.wait_for_seq(seq))
        .catch_unwind()
        .await;
    let applied = a.state().read().find_unique(&5).is_some();
    let folded = a.folded_through_seq();
    let again = a
        .wait_for_seq_timeout(seq, Duration::from_millis(300))
        .await;
    assert!(
        r.is_ok(),
        "wait_for_seq panicked in the caller (row 5 in state: {applied}, folded through \
         {folded:?}, still folding: {}, waiting again: {again:?})",
        a.is_folding()
    );
}

/// LOW: `StartAt::Beginning` resolves "the first event still in the log" when the adapter
/// opens, not when the fold first reads. A retention sweep between `open` and the fold task's
/// first poll turns the usual replay into an `Evicted` gap, which stops the fold under the
/// default policy — while the same sweep just before `open` is fine
/// (`start_at_beginning_after_retention_folds_from_the_head`).
#[tokio::test]
async fn start_at_beginning_survives_a_sweep_right_after_open() {
    let redex = Redex::new();
    let cfg = RedexFileConfig::default().with_retention_max_events(10);
    let file = redex
        .open_file(&Task::CHANNEL.parse().unwrap(), cfg.clone())
        .unwrap();
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        CortexConfig::default().with_file_config(cfg),
    )
    .unwrap();
    // The fold task has not run yet on this current-thread runtime.
    let mut last = 0;
    for i in 0..30 {
        last = a.append(&create(i)).unwrap();
    }
    assert_eq!(file.sweep_retention().unwrap().first_seq, 20);
    let r = safe(a.wait_for_seq(last)).await;
    assert!(r.is_ok(), "{r:?}");
}

/// LOW (API semantics): under `LogAndContinue`, `append_and_wait` ("waits until the fold has
/// applied it") returns `Ok(seq)` for an event `apply` rejected and the fold undid: the
/// writer cannot tell its write was dropped without scanning `fold_errors()`.
#[tokio::test]
async fn append_and_wait_reports_a_rejected_event() {
    use netdb_runtime::cortex::FoldErrorPolicy;
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        CortexConfig::default().with_fold_error_policy(FoldErrorPolicy::LogAndContinue),
    )
    .unwrap();
    let r = safe(a.append_and_wait(&TaskEvent::Explode {
        id: 9,
        how: common::Explode::Reject,
    }))
    .await;
    assert_eq!(a.fold_errors().skipped, 1);
    assert!(a.state().read().find_unique(&9).is_none());
    assert!(
        r.is_err(),
        "the rejected write was reported as applied: {r:?}"
    );
}
