//! A stalled consumer costs no growing memory: watch streams (and a change stream) that
//! are never polled while the tasks model folds a long run of events.
//!
//! The workload keeps the state a fixed size: [`IDS`] tasks are created, then every event
//! renames, completes or re-creates one of them, with titles of one length. The log is
//! persistent with a small in-memory window ([`HOT_WINDOW`]), so the log's own memory is
//! bounded too. The same workload runs three times, on a fresh directory each:
//!
//! 1. with no consumer: the control;
//! 2. with three watch streams registered before the events and never polled (every row;
//!    the ten most recently updated; the pending ones); polled at last, each yields one
//!    result, the latest, equal to its query;
//! 3. with those and a `changes()` stream, also never polled.
//!
//! Memory is measured at 0, ¼, ½, ¾ and all of the events, after waiting for the fold to
//! catch up: the bytes live in the heap, counted by this binary's global allocator
//! (relative to the heap before the run), and the process's resident set size
//! (`/proc/self/statm`, for information: it does not shrink between runs). From ¼ of the
//! events on (the log's window and the fold's buffers are full by then) the heap of the
//! control and of the watch run must not grow by more than [`FLAT_SLACK`], and the watch
//! run must stay within [`WATCH_COST`] of the control. A stalled change stream holds the
//! last 1024 batches it has not read (then reports `Lagged`): its run stays within that
//! bound of the control ([`changes_bound`]), going up and down with the batch sizes.
//!
//! `NETDB_STALLED_EVENTS` sets the number of events per run (default [`DEFAULT_EVENTS`],
//! 1 000 000: about 1.5 s a run in the dev profile). Run with `--nocapture` to see the
//! figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use netdb_models::TasksAdapter;
use netdb_models::tasks::{OrderBy, Task, TaskStatus};
use netdb_runtime::cortex::CortexConfig;
use netdb_runtime::redex::{FsyncPolicy, Redex, RedexFileConfig};
use netdb_tests::env_u64;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so it
// upholds `GlobalAlloc`'s contract exactly as `System` does; the counter is bookkeeping.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged (see the impl).
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const DEFAULT_EVENTS: u64 = 1_000_000;
/// The fixed set of task ids.
const IDS: u64 = 256;
/// The log's in-memory window.
const HOT_WINDOW: usize = 2 << 20;
/// How much the heap may grow from the first quarter of the events to the end.
const FLAT_SLACK: usize = 256 << 10;
/// How much more heap the stalled watch streams may hold than the control: their results.
const WATCH_COST: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(300);

/// What a stalled change stream may hold: 1024 unread batches of at most [`IDS`] ids
/// each, plus slack.
fn changes_bound() -> usize {
    1024 * (IDS as usize * 8 + 128) + WATCH_COST
}

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The resident set size, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn mib(bytes: isize) -> String {
    format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
}

/// A title of fixed length for event `i`.
fn title(i: u64) -> String {
    format!("task title {i:012}")
}

/// Which stalled consumers a run registers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stalled {
    Nothing,
    Watches,
    WatchesAndChanges,
}

/// One measurement: events folded, heap bytes above the run's start, RSS.
type Sample = (u64, isize, usize);

/// Runs the workload with `stalled` consumers; returns the samples and how long it took.
async fn run(events: u64, stalled: Stalled) -> (Vec<Sample>, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = live() as isize;
    let redex = Redex::with_persistent_dir(dir.path()).expect("open");
    let file = RedexFileConfig::default()
        .with_persistent(true)
        .with_fsync_policy(FsyncPolicy::Never)
        .with_max_memory_bytes(HOT_WINDOW);
    let tasks =
        TasksAdapter::open_with_config(&redex, 1, CortexConfig::default().with_file_config(file))
            .expect("open tasks");
    for id in 0..IDS {
        tasks.create(id, title(id)).expect("create");
    }
    // Registered, never polled.
    let watches = (stalled != Stalled::Nothing).then(|| {
        (
            tasks.watch().stream(),
            tasks
                .watch()
                .order_by(OrderBy::UpdatedDesc)
                .limit(10)
                .stream(),
            tasks.watch().where_status(TaskStatus::Pending).stream(),
        )
    });
    let changes = (stalled == Stalled::WatchesAndChanges).then(|| tasks.changes());
    tokio::time::timeout(TIMEOUT, tasks.catch_up())
        .await
        .expect("no hang")
        .expect("catch up");

    let quarters = [0, events / 4, events / 2, events / 4 * 3, events];
    let mut samples = Vec::with_capacity(quarters.len());
    let start = Instant::now();
    let mut written = 0u64;
    for &target in &quarters {
        while written < target {
            let id = written % IDS;
            let seq = match written % 8 {
                0 => tasks.complete(id),
                7 => tasks.create(id, title(written)),
                _ => tasks.rename(id, title(written)),
            };
            seq.expect("write");
            written += 1;
        }
        let last = tasks.log().next_seq() - 1;
        tokio::time::timeout(TIMEOUT, tasks.wait_for_seq(last))
            .await
            .expect("no hang")
            .expect("fold");
        samples.push((written, live() as isize - base, rss()));
    }
    let elapsed = start.elapsed();
    assert_eq!(tasks.state().read().len() as u64, IDS, "a fixed-size state");
    let errors = tasks.fold_errors();
    assert_eq!((errors.skipped, &errors.stopped), (0, &None), "{errors:?}");
    if let Some((mut all, mut top, mut pending)) = watches {
        // Picked up again, each stream yields the latest result only, once.
        let state = tasks.state();
        let t = state.read();
        let want = [
            t.query().collect(),
            t.query().order_by(OrderBy::UpdatedDesc).limit(10).collect(),
            t.query().where_status(TaskStatus::Pending).collect(),
        ];
        drop(t);
        for (stream, want) in [&mut all, &mut top, &mut pending].into_iter().zip(want) {
            let got: Vec<Task> = stream
                .next()
                .now_or_never()
                .flatten()
                .expect("a result waits in the slot");
            assert_eq!(got, want, "the stalled watcher's result vs the query");
            assert!(
                stream.folded_seq().is_some() && stream.folded_seq() <= tasks.folded_through_seq()
            );
            assert!(
                stream.next().now_or_never().is_none(),
                "one result, not a backlog"
            );
        }
    }
    drop(changes);
    tasks.close().expect("close");
    (samples, elapsed)
}

/// The most the heap grew from the first quarter's sample on.
fn growth_after_warm_up(samples: &[Sample]) -> isize {
    let warm = samples[1].1;
    samples[1..].iter().map(|s| s.1 - warm).max().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_keeps_memory_flat() {
    let events = env_u64("NETDB_STALLED_EVENTS").unwrap_or(DEFAULT_EVENTS);
    let mut runs = Vec::new();
    for stalled in [
        Stalled::Nothing,
        Stalled::Watches,
        Stalled::WatchesAndChanges,
    ] {
        let (samples, elapsed) = run(events, stalled).await;
        eprintln!(
            "{stalled:?}: {events} events appended and folded in {elapsed:.1?} ({IDS} rows, \
             {} in-memory log window)",
            mib(HOT_WINDOW as isize)
        );
        for &(n, heap, rss) in &samples {
            eprintln!(
                "  after {n:>8} events: heap {:>10} above the start, RSS {:>10}",
                mib(heap),
                mib(rss as isize)
            );
        }
        runs.push(samples);
    }
    let (control, watches, changes) = (&runs[0], &runs[1], &runs[2]);
    for (name, samples) in [("the control", control), ("the watch run", watches)] {
        let growth = growth_after_warm_up(samples);
        assert!(
            growth < FLAT_SLACK as isize,
            "{name}: the heap grew by {} from {} to {events} events",
            mib(growth),
            events / 4
        );
    }
    let over = |run: &[Sample]| {
        run.iter()
            .zip(control)
            .map(|(r, c)| r.1 - c.1)
            .max()
            .unwrap_or(0)
    };
    assert!(
        over(watches) < WATCH_COST as isize,
        "stalled watches hold {} more than the control",
        mib(over(watches))
    );
    assert!(
        over(changes) < changes_bound() as isize,
        "a stalled change stream holds {} more than the control (bound {})",
        mib(over(changes)),
        mib(changes_bound() as isize)
    );
}
