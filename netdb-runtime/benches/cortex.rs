//! CortEX benchmarks over the hand-written `Task` model of the runtime's tests
//! (`tests/common/mod.rs`: a status `HashIndex`, a `created_ns` `OrderedIndex`, a tags
//! `InvertedIndex`).
//!
//! Run with `cargo bench -p netdb-runtime --bench cortex`.
//!
//! * `ingest/*`: events appended to an in-memory log (default config) **and folded**:
//!   every iteration appends `INGEST_BATCH` events and awaits `wait_for_seq` of the last
//!   one. Throughput is events.
//! * `round_trip/*`: one `append`, then `wait_for_seq` of its seq: the latency of reading
//!   your own write, per runtime flavour and caller.
//! * `query_10k/*`: queries over a 10 000-row table, through an index and without one.
//! * `idle_watchers/*`: the ingest and round-trip loops again, with 0 or 1 000 registered
//!   watchers on rows and values no event touches, to show what idle watchers cost per
//!   event.
//!
//! # The ingest workload
//!
//! Every writing benchmark uses the same event list: event `k` is, for even `k`, a `Create`
//! of a new row, and for odd `k` a `SetStatus` on one of `PRELOADED_ROWS` preloaded rows,
//! cycling Pending → Active → Done so that every event changes its row (an update that
//! changes nothing is not an event the fold does work for). No event ever sets `Archived`
//! or touches the rows with ids from `WATCHED_BASE`, which is what watchers watch.
//!
//! Memory stays bounded however many iterations criterion asks for: a fresh `Redex` and
//! adapter, preloaded with `PRELOADED_ROWS` + `WATCHED_ROWS` rows and its watchers, serves
//! at most `CHUNK_EVENTS` events; its setup and close are outside the timed region.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::ops::Bound;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use common::{OrderBy, Status, Task, TaskEvent, TaskFilter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::{FutureExt, StreamExt};
use netdb_runtime::cortex::{CortexAdapter, ModelFilter, Watch, WatchStream};
use netdb_runtime::redex::Redex;
use tokio::runtime::Runtime;

const BENCH_SAMPLES: usize = 50;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(3);

/// Rows in the table before a writing benchmark starts; `SetStatus` events cycle over them.
const PRELOADED_ROWS: u64 = 10_000;
/// Ids of the rows watchers watch (`where_id`); no event touches them.
const WATCHED_BASE: u64 = 2_000_000;
/// Rows from `WATCHED_BASE` on, one per `where_id` watcher.
const WATCHED_ROWS: u64 = 1_000;
/// Ids of the rows `Create` events add.
const CREATED_BASE: u64 = 1_000_000;
/// Events one adapter serves before a fresh one replaces it (outside timing).
const CHUNK_EVENTS: usize = 1 << 16;
/// Events appended per iteration of the `ingest` and `idle_watchers/*batch*` benchmarks.
const INGEST_BATCH: usize = 1024;
/// Watchers registered by the `idle_watchers` benchmarks that have any.
const WATCHERS: u64 = 1_000;

/// Rows of the `query_10k` table.
const QUERY_ROWS: u64 = 10_000;

/// The values `SetStatus` events cycle through (never `Archived`).
const CYCLE: [Status; 3] = [Status::Pending, Status::Active, Status::Done];

/// The ingest workload: see the module documentation.
static EVENTS: LazyLock<Vec<TaskEvent>> = LazyLock::new(|| {
    (0..CHUNK_EVENTS as u64)
        .map(|k| {
            let half = k / 2;
            if k % 2 == 0 {
                let id = CREATED_BASE + half;
                TaskEvent::create(id, &format!("new task {id}"), Status::Pending, id, &["new"])
            } else {
                // Preloaded rows start Pending; pass p sets CYCLE[(p + 1) % 3], which always
                // differs from what the previous pass set.
                let pass = half / PRELOADED_ROWS;
                TaskEvent::SetStatus {
                    id: half % PRELOADED_ROWS,
                    status: CYCLE[((pass + 1) % 3) as usize],
                }
            }
        })
        .collect()
});

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn multi_thread_2() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Which idle watchers a fixture registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watchers {
    None,
    /// `WATCHERS` × `where_id(WATCHED_BASE + j)`: filed under the id route; rows no event
    /// touches.
    ById,
    /// `WATCHERS` × `where_status(Archived)`: filed under the status route; a value no
    /// event sets (their result is empty).
    ByStatus,
    /// `WATCHERS` × a `created_ns` range no row reaches: no route, so the registry tests
    /// every touched row against each of them.
    UnroutedCreatedRange,
}

impl Watchers {
    fn name(self) -> &'static str {
        match self {
            Watchers::None => "0_watchers",
            Watchers::ById => "1000_where_id_untouched_rows",
            Watchers::ByStatus => "1000_where_status_untouched_value",
            Watchers::UnroutedCreatedRange => "1000_unrouted_created_range",
        }
    }
}

/// A fresh in-memory adapter with its preloaded rows and watchers.
struct Fixture {
    // Field order is drop order: watch streams go before the adapter.
    watchers: Vec<WatchStream<Task>>,
    tasks: CortexAdapter<Task>,
    _redex: Redex,
}

impl Fixture {
    /// Opens an adapter (default config, in memory), preloads `PRELOADED_ROWS` +
    /// `WATCHED_ROWS` rows, and registers `watchers`. Must run inside a tokio runtime.
    async fn open(watchers: Watchers) -> Fixture {
        let redex = Redex::new();
        let tasks = CortexAdapter::<Task>::open(&redex, 1).expect("open adapter");
        let rows: Vec<TaskEvent> = (0..PRELOADED_ROWS)
            .chain(WATCHED_BASE..WATCHED_BASE + WATCHED_ROWS)
            .map(|id| TaskEvent::create(id, &format!("task {id}"), Status::Pending, id, &["bench"]))
            .collect();
        let mut last = 0;
        for chunk in rows.chunks(1000) {
            last = tasks.append_batch(chunk).expect("append_batch").end - 1;
        }
        tasks.wait_for_seq(last).await.expect("preload folded");
        let watchers = match watchers {
            Watchers::None => Vec::new(),
            Watchers::ById => (0..WATCHERS)
                .map(|j| tasks.watch().where_id(WATCHED_BASE + j).stream())
                .collect(),
            Watchers::ByStatus => (0..WATCHERS)
                .map(|_| tasks.watch().where_status(Status::Archived).stream())
                .collect(),
            Watchers::UnroutedCreatedRange => (0..WATCHERS)
                .map(|j| {
                    let from = (1 << 60) + j;
                    Watch::from(tasks.watch())
                        .filter(|f| f.created = Some((Bound::Included(from), Bound::Unbounded)))
                        .stream()
                })
                .collect(),
        };
        Fixture {
            watchers,
            tasks,
            _redex: redex,
        }
    }

    fn close(self) {
        self.tasks.close().expect("close adapter");
    }
}

/// How the timed loop appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Append {
    /// `append` per event, then one `wait_for_seq` of the last.
    EachEvent,
    /// One `append_batch`, then one `wait_for_seq` of its last event.
    Batch,
}

/// Times `iters` iterations; each appends the next `per_iter` events of `EVENTS` (as
/// `append` says) and awaits `wait_for_seq` of the last. A fresh fixture serves every
/// `CHUNK_EVENTS` events (untimed).
async fn time_ingest(iters: u64, per_iter: usize, append: Append, watchers: Watchers) -> Duration {
    let events: &'static [TaskEvent] = &EVENTS;
    let iters_per_chunk = (CHUNK_EVENTS / per_iter) as u64;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(iters_per_chunk) as usize;
        let fx = Fixture::open(watchers).await;
        let start = Instant::now();
        for batch in events.chunks_exact(per_iter).take(n) {
            let last = match append {
                Append::EachEvent => {
                    let mut last = 0;
                    for e in batch {
                        last = fx.tasks.append(black_box(e)).expect("append");
                    }
                    last
                }
                Append::Batch => {
                    let seqs = fx
                        .tasks
                        .append_batch(black_box(batch))
                        .expect("append_batch");
                    seqs.end - 1
                }
            };
            fx.tasks.wait_for_seq(last).await.expect("wait_for_seq");
        }
        total += start.elapsed();
        debug_assert_eq!(fx.watchers.len() as u64, expected_watchers(watchers));
        fx.close();
        left -= n as u64;
    }
    total
}

fn expected_watchers(w: Watchers) -> u64 {
    if w == Watchers::None { 0 } else { WATCHERS }
}

/// Checks, once, that the workload does what the benchmarks claim: every event changes the
/// table, and no watcher gets a new result from it.
fn check_workload(rt: &Runtime) {
    rt.block_on(async {
        for w in [
            Watchers::ById,
            Watchers::ByStatus,
            Watchers::UnroutedCreatedRange,
        ] {
            let mut fx = Fixture::open(w).await;
            for s in &mut fx.watchers {
                let first = s.next().now_or_never().flatten().expect("first result");
                let want = usize::from(w == Watchers::ById);
                assert_eq!(first.len(), want, "{w:?}");
            }
            let seqs = fx.tasks.append_batch(&EVENTS).expect("append_batch");
            fx.tasks.wait_for_seq(seqs.end - 1).await.expect("wait");
            let state = fx.tasks.state();
            let t = state.read();
            assert_eq!(
                t.len() as u64,
                PRELOADED_ROWS + WATCHED_ROWS + CHUNK_EVENTS as u64 / 2
            );
            let preloaded = TaskFilter {
                created: Some((Bound::Unbounded, Bound::Excluded(PRELOADED_ROWS))),
                status: Some(Status::Pending),
                ..TaskFilter::default()
            };
            // 32 768 SetStatus over 10 000 rows: the fourth pass (Active) covers the first
            // 2 768 rows, the third (Pending) left the rest Pending.
            let updates = CHUNK_EVENTS as u64 / 2;
            assert_eq!(
                t.count_where(&preloaded) as u64,
                PRELOADED_ROWS - (updates - 3 * PRELOADED_ROWS)
            );
            drop(t);
            for s in &mut fx.watchers {
                assert!(s.next().now_or_never().is_none(), "{w:?}: watcher woke");
            }
            fx.close();
        }
    });
}

/// Benchmark 1 — ingest with the fold attached: events/s appended to the in-memory log and
/// folded into the table. One iteration appends `INGEST_BATCH` events of the workload
/// (half `Create`, half `SetStatus`) and awaits `wait_for_seq` of the last, so the time
/// covers encoding, appending, waking the fold, decoding, applying under the write lock and
/// waking the waiter.
fn ingest(c: &mut Criterion) {
    check_workload(&current_thread());
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(INGEST_BATCH as u64));
    for (rt_name, rt) in [
        ("current_thread", current_thread()),
        ("multi_thread_2", multi_thread_2()),
    ] {
        for (name, append) in [
            ("append_each", Append::EachEvent),
            ("append_batch", Append::Batch),
        ] {
            group.bench_function(
                BenchmarkId::new(format!("{name}_{INGEST_BATCH}_then_wait"), rt_name),
                |b| {
                    b.to_async(&rt).iter_custom(|iters| {
                        time_ingest(iters, INGEST_BATCH, append, Watchers::None)
                    });
                },
            );
        }
    }
    group.finish();
}

/// Benchmark 2 — one `append`, then `wait_for_seq` of its seq, per iteration: the latency
/// of reading your own write. `current_thread`: the caller and the fold share the thread.
/// `multi_thread_2_block_on`: a 2-worker runtime; the caller is the `block_on` future on
/// the bench thread (like a `#[tokio::main]` body), the fold runs on a worker.
/// `multi_thread_2_spawned`: the caller is a task spawned on the same runtime (like a
/// request handler).
fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    let ct = current_thread();
    group.bench_function(BenchmarkId::from_parameter("current_thread"), |b| {
        b.to_async(&ct)
            .iter_custom(|iters| time_ingest(iters, 1, Append::EachEvent, Watchers::None));
    });
    let mt = multi_thread_2();
    group.bench_function(
        BenchmarkId::from_parameter("multi_thread_2_block_on"),
        |b| {
            b.to_async(&mt)
                .iter_custom(|iters| time_ingest(iters, 1, Append::EachEvent, Watchers::None));
        },
    );
    group.bench_function(BenchmarkId::from_parameter("multi_thread_2_spawned"), |b| {
        b.to_async(&mt).iter_custom(|iters| async move {
            tokio::spawn(time_ingest(iters, 1, Append::EachEvent, Watchers::None))
                .await
                .expect("bench task")
        });
    });
    group.finish();
}

/// Benchmark 4 — what 1 000 idle watchers cost per ingested event. The same loops as
/// `ingest` (batch of `INGEST_BATCH`, current_thread) and `round_trip` (one event per
/// fold batch, current_thread), with no watcher and with 1 000 watchers no event affects
/// (kept alive, never polled). Overhead per event = (time with − time without) / events.
/// Having any watcher also turns on change tracking in the fold (touched ids, sorted).
fn idle_watchers(c: &mut Criterion) {
    let rt = current_thread();
    let kinds = [
        Watchers::None,
        Watchers::ById,
        Watchers::ByStatus,
        Watchers::UnroutedCreatedRange,
    ];
    let mut group = c.benchmark_group("idle_watchers");
    group.throughput(Throughput::Elements(INGEST_BATCH as u64));
    for w in kinds {
        group.bench_function(
            BenchmarkId::new(format!("append_batch_{INGEST_BATCH}_then_wait"), w.name()),
            |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| time_ingest(iters, INGEST_BATCH, Append::Batch, w));
            },
        );
    }
    group.throughput(Throughput::Elements(1));
    for w in kinds {
        group.bench_function(BenchmarkId::new("round_trip", w.name()), |b| {
            b.to_async(&rt)
                .iter_custom(|iters| time_ingest(iters, 1, Append::EachEvent, w));
        });
    }
    group.finish();
}

const WORDS: [&str; 5] = ["alpha", "beta", "gamma", "delta", "epsilon"];

/// Benchmark 3 — queries over `QUERY_ROWS` rows: row `i` has status `ALL_STATUSES[i % 4]`
/// (2 500 rows each), title `"task {i:05} {WORDS[i % 5]}"`, `created_ns` a permutation of
/// `0..QUERY_ROWS` × 1 000 (so created order is not id order) and tag `t{i % 10}`.
///
/// Each indexed query is paired with the same work without the index:
/// * `*_scan_baseline`: the same filter tested on every row (`ModelFilter::matches` over
///   `Table::iter`), which is what the planner does when no index offers candidates;
/// * `title_contains_*`: a filter no index serves, so the planner scans;
/// * `order_*`: `CreatedDesc` walks the `OrderedIndex` and stops at the limit; `TitleAsc`
///   has no index, so it selects and sorts.
fn query_10k(c: &mut Criterion) {
    let rt = current_thread();
    let redex = Redex::new();
    let tasks = rt.block_on(async {
        let tasks = CortexAdapter::<Task>::open(&redex, 1).expect("open adapter");
        let rows: Vec<TaskEvent> = (0..QUERY_ROWS)
            .map(|i| {
                let status = common::ALL_STATUSES[(i % 4) as usize];
                let title = format!("task {i:05} {}", WORDS[(i % 5) as usize]);
                let created = (i * 7919) % QUERY_ROWS * 1_000;
                let tag = format!("t{}", i % 10);
                TaskEvent::create(i, &title, status, created, &[tag.as_str()])
            })
            .collect();
        let seqs = tasks.append_batch(&rows).expect("append_batch");
        tasks.wait_for_seq(seqs.end - 1).await.expect("folded");
        tasks
    });
    let state = tasks.state();
    let t = state.read();
    assert_eq!(t.len() as u64, QUERY_ROWS);

    let status = TaskFilter {
        status: Some(Status::Active),
        ..TaskFilter::default()
    };
    let title = TaskFilter {
        title_contains: Some("gamma".into()),
        ..TaskFilter::default()
    };
    // 1 % of the rows: 100 of them.
    let created = TaskFilter {
        created: Some((Bound::Included(4_000_000), Bound::Excluded(4_100_000))),
        ..TaskFilter::default()
    };
    assert_eq!(t.count_where(&status), 2_500);
    assert_eq!(t.count_where(&title), 2_000);
    assert_eq!(t.count_where(&created), 100);
    let scan_count = |f: &TaskFilter| t.iter().filter(|r| f.matches(r)).count();
    // Borrowed, like `find_many`.
    let scan_collect =
        |f: &TaskFilter| -> Vec<&Task> { t.iter().filter(|r| f.matches(r)).collect() };
    assert_eq!(scan_count(&created), 100);
    assert_eq!(scan_collect(&status), t.find_many(&status));

    let mut group = c.benchmark_group("query_10k");

    group.bench_function("find_unique", |b| {
        let mut id = 0;
        b.iter(|| {
            id = (id + 7919) % QUERY_ROWS;
            black_box(t.find_unique(black_box(&id)).map(|r| r.created_ns))
        });
    });

    let filters = [
        ("status_2500rows", &status),
        ("created_range_100rows", &created),
    ];
    for (name, f) in filters {
        group.bench_function(format!("count_where/{name}_index"), |b| {
            b.iter(|| black_box(t.count_where(black_box(f))));
        });
        group.bench_function(format!("count_where/{name}_scan_baseline"), |b| {
            b.iter(|| black_box(scan_count(black_box(f))));
        });
        group.bench_function(format!("find_many/{name}_index"), |b| {
            b.iter(|| black_box(t.find_many(black_box(f))));
        });
        group.bench_function(format!("find_many/{name}_scan_baseline"), |b| {
            b.iter(|| black_box(scan_collect(black_box(f))));
        });
    }
    group.bench_function("count_where/title_contains_2000rows_no_index", |b| {
        b.iter(|| black_box(t.count_where(black_box(&title))));
    });
    group.bench_function("find_many/title_contains_2000rows_no_index", |b| {
        b.iter(|| black_box(t.find_many(black_box(&title))));
    });

    group.bench_function("order_limit20/created_desc_index_walk", |b| {
        b.iter(|| {
            black_box(
                t.query()
                    .order_by(black_box(OrderBy::CreatedDesc))
                    .limit(20)
                    .collect(),
            )
        });
    });
    group.bench_function("order_limit20/title_asc_sort", |b| {
        b.iter(|| {
            black_box(
                t.query()
                    .order_by(black_box(OrderBy::TitleAsc))
                    .limit(20)
                    .collect(),
            )
        });
    });
    group.bench_function("order_limit20/status_active_created_desc_index_walk", |b| {
        b.iter(|| {
            black_box(
                t.query()
                    .where_status(Status::Active)
                    .order_by(black_box(OrderBy::CreatedDesc))
                    .limit(20)
                    .collect(),
            )
        });
    });
    group.finish();
    drop(t);
    tasks.close().expect("close adapter");
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(BENCH_SAMPLES)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
}

/// The watcher benchmarks: the unrouted kind takes milliseconds per iteration, so fewer
/// samples keep the group near its measurement time.
fn slow_config() -> Criterion {
    config().sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = ingest, round_trip, query_10k
}
criterion_group! {
    name = watcher_benches;
    config = slow_config();
    targets = idle_watchers
}
criterion_main!(benches, watcher_benches);
