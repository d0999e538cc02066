//! Concurrency and load on the whole stack: several producers appending to the tasks model
//! at once through the `NetDb` façade's typed writes, on a multi-thread tokio runtime, with
//! RedEX tails, watchers, a change stream and state readers attached.
//!
//! Producers are tokio tasks and plain OS threads, mixing single typed writes (`create`,
//! `rename`, `complete`, `delete`) with `append_batch`, and now and then waiting for their
//! own write to be folded. Halfway through, a producer thread starts another tail and
//! another watcher, so registering races with the fold. Then the test checks:
//!
//! * no deadlock: every wait is bounded by a timeout that fails the test (never a sleep);
//! * the log holds exactly the events the producers wrote, each once, at the seq its write
//!   returned: seqs are contiguous from 0, none lost, none duplicated, and each producer's
//!   seqs increase in the order it wrote (and a batch's are consecutive);
//! * every tail (from 0, started before or during the writes) yields every event once, in
//!   seq order, with the log's bytes and timestamp, and ends when the database closes;
//! * the folded state equals a reference fold of the log (with its timestamps), the tasks
//!   indexes agree with the rows (also checked by readers while the fold runs), and the
//!   change stream's `through_seq` only grows;
//! * every watcher's emissions have non-decreasing folded seqs, and its last emission
//!   equals the same query run on the final state;
//! * snapshots (`NetDb::snapshot`) taken while all this runs succeed.
//!
//! It runs over an in-memory `Redex` and over a persistent directory, which is then
//! reopened: the replay gives the same state, and so does every snapshot taken during the
//! writes, restored (`open_from_snapshot`) and then folding the events after it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use netdb_models::tasks::{OrderBy, Task, TaskEvent, TaskStatus};
use netdb_models::{NetDb, TasksAdapter};
use netdb_runtime::cortex::{Change, CortexEvent, CortexModel, EventMeta, WatchStream};
use netdb_runtime::redex::{ChannelName, Redex, RedexEvent, RedexFile};
use netdb_tests::tasks_model::{
    check_tasks_table, reference_apply, state_map, task_event, write_task,
};
use netdb_tests::{XorShift, env_u64};

/// Fails the test instead of hanging it. Not a synchronisation: nothing waits on the clock.
const TIMEOUT: Duration = Duration::from_secs(120);
const ASYNC_PRODUCERS: u64 = 4;
const THREAD_PRODUCERS: u64 = 3;
/// Events per producer (`NETDB_CONCURRENCY_EVENTS` overrides).
const DEFAULT_EVENTS_PER_PRODUCER: u64 = 3_000;
const ORIGIN: u64 = 0xA11CE;

async fn no_hang<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(out) => out,
        Err(_) => panic!("{what}: no progress in {TIMEOUT:?} (a deadlock?)"),
    }
}

/// One producer's writes: the events it wrote, each with the seq its write returned.
struct Producer {
    id: u64,
    rng: XorShift,
    next: u64,
    end: u64,
    written: Vec<(u64, TaskEvent)>,
}

impl Producer {
    fn new(id: u64, events: u64) -> Producer {
        Producer {
            id,
            rng: XorShift::new(id),
            next: 0,
            end: events,
            written: Vec::with_capacity(events as usize),
        }
    }

    fn done(&self) -> bool {
        self.next >= self.end
    }

    /// Writes one event with a typed write, or a batch of 2 to 4 with `append_batch`;
    /// returns the last seq written.
    fn step(&mut self, tasks: &TasksAdapter) -> u64 {
        let n = if self.rng.range(0..=7) == 0 {
            self.rng.range(2..=4).min(self.end - self.next)
        } else {
            1
        };
        let events: Vec<TaskEvent> = (self.next..self.next + n)
            .map(|i| task_event(self.id, i))
            .collect();
        let seqs = if n == 1 {
            let seq = write_task(tasks, &events[0]).expect("typed write");
            seq..seq + 1
        } else {
            tasks.append_batch(&events).expect("append_batch")
        };
        assert_eq!(seqs.end - seqs.start, n, "producer {}: {seqs:?}", self.id);
        if let Some(&(prev, _)) = self.written.last() {
            assert!(
                seqs.start > prev,
                "producer {}: wrote seq {} after seq {prev}",
                self.id,
                seqs.start
            );
        }
        self.written.extend(seqs.clone().zip(events));
        self.next += n;
        seqs.end - 1
    }
}

/// The watches under test, each also run as a query on the final state.
#[derive(Debug, Clone, Copy)]
enum Spec {
    All,
    Pending,
    NewestPending,
    LatestUpdatedAfterTwo,
    Titled,
}

impl Spec {
    const ALL: [Spec; 5] = [
        Spec::All,
        Spec::Pending,
        Spec::NewestPending,
        Spec::LatestUpdatedAfterTwo,
        Spec::Titled,
    ];

    fn stream(self, tasks: &TasksAdapter) -> WatchStream<Task> {
        let w = tasks.watch();
        match self {
            Spec::All => w.stream(),
            Spec::Pending => w.where_status(TaskStatus::Pending).stream(),
            Spec::NewestPending => w
                .where_status(TaskStatus::Pending)
                .order_by(OrderBy::CreatedDesc)
                .limit(5)
                .stream(),
            Spec::LatestUpdatedAfterTwo => {
                w.order_by(OrderBy::UpdatedDesc).offset(2).limit(7).stream()
            }
            Spec::Titled => w.where_title_contains("crash").stream(),
        }
    }

    fn query(self, tasks: &TasksAdapter) -> Vec<Task> {
        let state = tasks.state();
        let t = state.read();
        let q = t.query();
        match self {
            Spec::All => q.collect(),
            Spec::Pending => q.where_status(TaskStatus::Pending).collect(),
            Spec::NewestPending => q
                .where_status(TaskStatus::Pending)
                .order_by(OrderBy::CreatedDesc)
                .limit(5)
                .collect(),
            Spec::LatestUpdatedAfterTwo => q
                .order_by(OrderBy::UpdatedDesc)
                .offset(2)
                .limit(7)
                .collect(),
            Spec::Titled => q.where_title_contains("crash").collect(),
        }
    }
}

/// Consumes a watch until it ends: how many results it yielded and the last one. Checks
/// the folded seqs of the results never go back.
async fn consume_watch(spec: Spec, mut stream: WatchStream<Task>) -> (usize, Option<Vec<Task>>) {
    let (mut n, mut last, mut seq) = (0, None, None);
    while let Some(rows) = stream.next().await {
        assert!(
            stream.folded_seq() >= seq,
            "{spec:?}: a result folded through {:?} after one through {seq:?}",
            stream.folded_seq()
        );
        seq = stream.folded_seq();
        n += 1;
        last = Some(rows);
    }
    (n, last)
}

/// Consumes a tail until it ends, checking the seqs are 0, 1, 2, ...
async fn consume_tail(name: &str, file: RedexFile) -> Vec<RedexEvent> {
    let mut tail = file.tail(0);
    let mut out: Vec<RedexEvent> = Vec::new();
    while let Some(item) = tail.next().await {
        let e = item.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(e.seq, out.len() as u64, "{name}: seqs out of order");
        out.push(e);
    }
    out
}

fn tasks_channel() -> ChannelName {
    Task::CHANNEL.parse().expect("a valid channel")
}

/// Runs the producers, tails, watchers, readers and a snapshotter over `redex`.
async fn load(redex: &Redex) -> Loaded {
    let per_producer = env_u64("NETDB_CONCURRENCY_EVENTS").unwrap_or(DEFAULT_EVENTS_PER_PRODUCER);
    let db = Arc::new(NetDb::open(redex, ORIGIN).expect("open"));
    let file = redex
        .file(&tasks_channel())
        .expect("the tasks channel is open");

    // Consumers attached before the first write.
    let tails: Vec<_> = ["tail 0", "tail 1"]
        .into_iter()
        .map(|name| tokio::spawn(consume_tail(name, file.clone())))
        .collect();
    let mut watches: Vec<_> = Spec::ALL
        .iter()
        .map(|&s| (s, tokio::spawn(consume_watch(s, s.stream(db.tasks())))))
        .collect();
    let mut changes = db.tasks().changes();
    let changes = tokio::spawn(async move {
        let (mut through, mut applied, mut lagged) = (None, 0u64, 0u64);
        while let Some(c) = changes.next().await {
            match c {
                Change::Applied { through_seq, .. } => {
                    assert!(
                        Some(through_seq) > through,
                        "change through {through_seq} after {through:?}"
                    );
                    through = Some(through_seq);
                    applied += 1;
                }
                Change::Lagged { batches } => lagged += batches,
                _ => {}
            }
        }
        (applied, lagged)
    });
    let writing = Arc::new(AtomicBool::new(true));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, writing) = (Arc::clone(&db), Arc::clone(&writing));
            tokio::spawn(async move {
                let (mut reads, mut folded) = (0u64, None);
                while writing.load(Ordering::Acquire) {
                    {
                        let state = db.tasks().state();
                        let t = state.read();
                        check_tasks_table(&t).expect("indexes agree with rows while folding");
                        assert!(t.folded_through_seq() >= folded, "the folded seq went back");
                        folded = t.folded_through_seq();
                    }
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();

    // Bundle snapshots taken while the producers write and the fold runs, about one per
    // sixteenth of the events.
    let snapshotter = {
        let (db, writing) = (Arc::clone(&db), Arc::clone(&writing));
        let step = (ASYNC_PRODUCERS + THREAD_PRODUCERS) * per_producer / 16;
        tokio::spawn(async move {
            let (mut bundles, mut next_at) = (Vec::new(), 0);
            while writing.load(Ordering::Acquire) {
                if db.tasks().log().next_seq() >= next_at {
                    bundles.push(db.snapshot().expect("a snapshot while writing"));
                    next_at += step;
                }
                tokio::task::yield_now().await;
            }
            bundles
        })
    };

    // Halfway through, producer thread 0 hands over a tail and a watcher started then.
    let (mid_tx, mid_rx) = tokio::sync::oneshot::channel::<(RedexFile, WatchStream<Task>)>();
    let mut mid_tx = Some(mid_tx);

    let rt = tokio::runtime::Handle::current();
    let threads: Vec<_> = (0..THREAD_PRODUCERS)
        .map(|t| {
            let (db, rt) = (Arc::clone(&db), rt.clone());
            let file = file.clone();
            let mut mid_tx = if t == 0 { mid_tx.take() } else { None };
            std::thread::spawn(move || {
                let mut p = Producer::new(100 + t, per_producer);
                while !p.done() {
                    let seq = p.step(db.tasks());
                    if p.next >= p.end / 2
                        && let Some(tx) = mid_tx.take()
                    {
                        let _ = tx.send((file.clone(), Spec::Pending.stream(db.tasks())));
                    }
                    if p.rng.range(0..=255) == 0 {
                        // A plain thread waits for its write through the runtime's handle.
                        rt.block_on(db.tasks().wait_for_seq_timeout(seq, TIMEOUT))
                            .expect("wait_for_seq from a thread");
                        assert!(db.tasks().folded_through_seq() >= Some(seq));
                    }
                }
                p.written
            })
        })
        .collect();
    let tasks: Vec<_> = (0..ASYNC_PRODUCERS)
        .map(|i| {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                let mut p = Producer::new(i, per_producer);
                while !p.done() {
                    let seq = p.step(db.tasks());
                    match p.rng.range(0..=63) {
                        0 => {
                            db.tasks()
                                .wait_for_seq_timeout(seq, TIMEOUT)
                                .await
                                .expect("wait_for_seq from a task");
                            assert!(db.tasks().folded_through_seq() >= Some(seq));
                        }
                        1..=8 => tokio::task::yield_now().await,
                        _ => {}
                    }
                }
                p.written
            })
        })
        .collect();

    let (mid_file, mid_watch) = no_hang("the halfway hand-over", mid_rx)
        .await
        .expect("producer thread 0 hands over a tail and a watch");
    let mid_tail = tokio::spawn(consume_tail("tail started halfway", mid_file));
    watches.push((
        Spec::Pending,
        tokio::spawn(consume_watch(Spec::Pending, mid_watch)),
    ));

    // Every producer ends.
    let mut written: Vec<Vec<(u64, TaskEvent)>> = Vec::new();
    for t in tasks {
        written.push(no_hang("a producer task", t).await.expect("producer task"));
    }
    for t in threads {
        let joined = tokio::task::spawn_blocking(move || t.join());
        written.push(
            no_hang("a producer thread", joined)
                .await
                .expect("join")
                .expect("producer thread"),
        );
    }
    let total = (ASYNC_PRODUCERS + THREAD_PRODUCERS) * per_producer;
    assert_eq!(file.next_seq(), total, "appended events");
    no_hang("the fold", db.tasks().wait_for_seq(total - 1))
        .await
        .expect("the fold reaches the last event");
    writing.store(false, Ordering::Release);
    let mut reads = 0;
    for r in readers {
        reads += no_hang("a reader", r).await.expect("reader");
    }
    let bundles = no_hang("the snapshotter", snapshotter)
        .await
        .expect("snapshotter");

    // Each event exactly once, at the seq its write returned.
    let mut by_seq: Vec<Option<&TaskEvent>> = vec![None; total as usize];
    for (seq, event) in written.iter().flatten() {
        let slot = &mut by_seq[*seq as usize];
        assert!(slot.is_none(), "seq {seq} was returned to two writes");
        *slot = Some(event);
    }
    let log = file.read_range(0, total).expect("read the log");
    assert_eq!(log.len() as u64, total);
    let mut reference = BTreeMap::new();
    for (e, want) in log.iter().zip(&by_seq) {
        let want = want.unwrap_or_else(|| panic!("seq {} was returned to no write", e.seq));
        let (meta, body) = EventMeta::decode(&e.payload).expect("header");
        assert_eq!(meta.origin_hash, ORIGIN);
        let got = TaskEvent::decode_body(meta.dispatch, meta.schema_version, body).expect("body");
        assert_eq!(&got, want, "seq {}", e.seq);
        reference_apply(&mut reference, &got, e.timestamp_ns);
    }
    let state = state_map(db.tasks());
    assert_eq!(
        state, reference,
        "the folded state vs a reference fold of the log"
    );
    check_tasks_table(&db.tasks().state().read()).expect("indexes agree with rows");
    let errors = db.tasks().fold_errors();
    assert_eq!((errors.skipped, &errors.stopped), (0, &None), "{errors:?}");
    let expected: Vec<Vec<Task>> = watches.iter().map(|(s, _)| s.query(db.tasks())).collect();

    // Closing ends tails (after everything appended), watches and the change stream.
    db.close().expect("close");
    let tails = tails.into_iter().chain([mid_tail]);
    for (name, t) in ["tail 0", "tail 1", "tail started halfway"]
        .into_iter()
        .zip(tails)
    {
        let got = no_hang(name, t).await.expect("tail");
        assert_eq!(got.len() as u64, total, "{name}: events");
        for (a, b) in got.iter().zip(&log) {
            assert_eq!(
                (a.seq, a.timestamp_ns, &a.payload),
                (b.seq, b.timestamp_ns, &b.payload),
                "{name}"
            );
        }
    }
    let mut emissions = 0;
    for ((spec, w), want) in watches.into_iter().zip(expected) {
        let (n, last) = no_hang("a watch consumer", w)
            .await
            .expect("watch consumer");
        assert_eq!(
            last.as_ref(),
            Some(&want),
            "{spec:?}: last emission vs the query"
        );
        emissions += n;
    }
    let (applied, lagged) = no_hang("the change stream", changes)
        .await
        .expect("changes");
    assert!(applied > 0);
    eprintln!(
        "{total} events from {} producers; {emissions} watch results, {applied} change \
         batches ({lagged} lagged), {reads} concurrent state reads, {} snapshots; {} rows",
        ASYNC_PRODUCERS + THREAD_PRODUCERS,
        bundles.len(),
        state.len()
    );
    Loaded { state, bundles }
}

/// What [`load`] leaves: the final state and the snapshots taken while writing.
struct Loaded {
    state: BTreeMap<u64, Task>,
    bundles: Vec<Vec<u8>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn producers_tails_and_watchers_in_memory() {
    let loaded = load(&Redex::new()).await;
    assert!(
        !loaded.bundles.is_empty(),
        "no snapshot was taken while writing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn producers_tails_and_watchers_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = {
        let redex = Redex::with_persistent_dir(dir.path()).expect("open");
        let loaded = load(&redex).await;
        redex.close().expect("close");
        loaded
    };
    // The replay of what the producers wrote gives the same state, timestamps included.
    let redex = Redex::with_persistent_dir(dir.path()).expect("reopen");
    let db = NetDb::open(&redex, ORIGIN).expect("open");
    no_hang("the replay", db.catch_up()).await.expect("replay");
    assert_eq!(
        state_map(db.tasks()),
        loaded.state,
        "replayed vs live state"
    );
    db.close().expect("close");
    // So does every snapshot taken while writing, restored and then folding the rest.
    assert!(
        !loaded.bundles.is_empty(),
        "no snapshot was taken while writing"
    );
    for (i, bundle) in loaded.bundles.iter().enumerate() {
        let db = NetDb::open_from_snapshot(&redex, ORIGIN, bundle).expect("restore");
        no_hang("a restore", db.catch_up()).await.expect("restore");
        assert_eq!(
            state_map(db.tasks()),
            loaded.state,
            "restored from snapshot {i} ({:?})",
            db.tasks().restore_outcome()
        );
        check_tasks_table(&db.tasks().state().read()).expect("indexes agree with rows");
        db.close().expect("close");
    }
}
