//! The workloads of the seed benchmark, shared by `seed.rs` (the system allocator) and
//! `seed_mimalloc.rs` (mimalloc): see `seed.rs` for what each measures.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use netdb_models::memories::MemoryFilter;
use netdb_models::tasks::{Task, TaskFilter, TaskStatus};
use netdb_models::{NetDb, TasksAdapter};
use netdb_runtime::redex::Redex;
use tokio::runtime::Runtime;

const BENCH_SAMPLES: usize = 50;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(3);

/// The state sizes.
const SIZES: [(u64, &str); 3] = [(100, "100"), (1_000, "1k"), (10_000, "10k")];
/// Events one database serves in the writing benchmarks before a fresh one replaces it.
const CHUNK_EVENTS: usize = 1 << 16;
/// Events appended per iteration of the `ingest` benchmarks.
const INGEST_BATCH: usize = 1024;
/// The origin hash of every writer.
const ORIGIN: u64 = 1;

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

fn tag_of(i: u64) -> &'static str {
    if i.is_multiple_of(2) { "alpha" } else { "beta" }
}

/// A database holding `n` tasks and `n` memories (see the module documentation), folded.
/// Must run inside a tokio runtime.
async fn seeded(n: u64) -> (Redex, NetDb) {
    let redex = Redex::new();
    let db = NetDb::open(&redex, ORIGIN).expect("open db");
    for i in 0..n {
        db.tasks()
            .create(i + 1, format!("task-{i}"))
            .expect("create");
        if i.is_multiple_of(3) {
            db.tasks().complete(i + 1).expect("complete");
        }
        db.memories()
            .store(
                i + 1,
                format!("memory-{i}"),
                vec![tag_of(i).to_owned()],
                "bench",
            )
            .expect("store");
    }
    db.tasks().catch_up().await.expect("tasks folded");
    db.memories().catch_up().await.expect("memories folded");
    assert_eq!(db.tasks().state().read().len() as u64, n);
    assert_eq!(db.memories().state().read().len() as u64, n);
    (redex, db)
}

fn completed() -> TaskFilter {
    TaskFilter {
        status: Some(TaskStatus::Completed),
        ..TaskFilter::default()
    }
}

fn alpha() -> MemoryFilter {
    MemoryFilter {
        tag: Some("alpha".into()),
        ..MemoryFilter::default()
    }
}

/// Queries over the seeded states.
pub(crate) fn queries(c: &mut Criterion) {
    let rt = current_thread();
    for (n, name) in SIZES {
        let (_redex, db) = rt.block_on(seeded(n));
        let tasks_state = db.tasks().state();
        let tasks = tasks_state.read();
        let memories_state = db.memories().state();
        let memories = memories_state.read();

        let completed = completed();
        let alpha = alpha();
        let n_completed = n.div_ceil(3) as usize;
        let n_alpha = n.div_ceil(2) as usize;
        // The workload is what the names say.
        assert_eq!(tasks.count_where(&completed), n_completed);
        assert_eq!(tasks.find_many(&completed).len(), n_completed);
        assert!(
            tasks
                .query()
                .where_status(TaskStatus::Completed)
                .collect()
                .iter()
                .eq(tasks.find_many(&completed))
        );
        assert_eq!(memories.count_where(&alpha), n_alpha);
        assert_eq!(memories.find_many(&alpha).len(), n_alpha);
        assert_eq!(
            tasks.find_unique(&n).map(|t| t.title.as_str()),
            Some(&*format!("task-{}", n - 1))
        );

        let mut group = c.benchmark_group(format!("query_{name}"));
        group.bench_function("tasks/find_unique", |b| {
            // A stride through every id, so lookups do not hit one cache line; no division
            // in the loop (a 64-bit `%` by a runtime value would cost as much as the lookup).
            // The result is folded to a plain `u64` before `black_box`: black-boxing the
            // 16-byte `Option<u64>` (written as two 8-byte stores, read back as one 16-byte
            // load) stalls on store forwarding for longer than the look-up itself takes.
            let stride = 7919 % n;
            let mut i = 0;
            b.iter(|| {
                i += stride;
                if i >= n {
                    i -= n;
                }
                let found = tasks.find_unique(black_box(&(i + 1)));
                black_box(found.map_or(u64::MAX, |t| t.created_ns))
            });
        });
        group.bench_function("tasks/find_many_status_completed/filter", |b| {
            b.iter(|| black_box(tasks.find_many(black_box(&completed))));
        });
        group.bench_function(
            "tasks/find_many_status_completed/query_collect_cloned",
            |b| {
                b.iter(|| {
                    black_box(
                        tasks
                            .query()
                            .where_status(black_box(TaskStatus::Completed))
                            .collect(),
                    )
                });
            },
        );
        group.bench_function("tasks/count_where_status_completed", |b| {
            b.iter(|| black_box(tasks.count_where(black_box(&completed))));
        });
        group.bench_function("memories/find_many_tag_alpha", |b| {
            b.iter(|| black_box(memories.find_many(black_box(&alpha))));
        });
        group.bench_function("memories/find_many_tag_alpha/query_collect_cloned", |b| {
            b.iter(|| black_box(memories.query().where_tag(black_box("alpha")).collect()));
        });
        group.bench_function("memories/count_where_tag_alpha", |b| {
            b.iter(|| black_box(memories.count_where(black_box(&alpha))));
        });
        if n == 10_000 {
            // What the same queries cost without cloning the rows.
            group.bench_function("tasks/find_many_status_completed/collect_arcs", |b| {
                b.iter(|| {
                    black_box(
                        tasks
                            .query()
                            .where_status(black_box(TaskStatus::Completed))
                            .collect_arcs(),
                    )
                });
            });
            group.bench_function("memories/find_many_tag_alpha/collect_arcs", |b| {
                b.iter(|| {
                    black_box(
                        memories
                            .query()
                            .where_tag(black_box("alpha"))
                            .collect_arcs(),
                    )
                });
            });
        }
        group.finish();
        drop((tasks, memories));
        db.close().expect("close db");
    }
}

/// What a writing benchmark appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// `tasks().create(id, "task-{id}")` with fresh ids.
    TaskCreate,
    /// `memories().store(id, "memory-{id}", [alpha|beta], "bench")` with fresh ids.
    MemoryStore,
}

/// Pre-built arguments of the writes, so formatting is not timed.
struct WriteArgs {
    titles: Vec<String>,
    tags: Vec<Vec<String>>,
}

static ARGS: std::sync::LazyLock<WriteArgs> = std::sync::LazyLock::new(|| WriteArgs {
    titles: (0..CHUNK_EVENTS).map(|i| format!("task-{i}")).collect(),
    tags: (0..CHUNK_EVENTS as u64)
        .map(|i| vec![tag_of(i).to_owned()])
        .collect(),
});

/// Appends write `k` of the chunk; returns its seq. The typed writes take owned values: the
/// `String` / `Vec<String>` each one is given is part of what a caller pays, so the clones
/// are timed too (a caller with a `&str` pays the same allocation in `Into<String>`).
fn write(db: &NetDb, w: Write, k: usize) -> u64 {
    let args = &*ARGS;
    let id = k as u64 + 1;
    match w {
        Write::TaskCreate => db.tasks().create(id, args.titles[k].as_str()),
        Write::MemoryStore => {
            db.memories()
                .store(id, args.titles[k].as_str(), args.tags[k].clone(), "bench")
        }
    }
    .expect("append")
}

async fn adapter_wait(db: &NetDb, w: Write, seq: u64) {
    match w {
        Write::TaskCreate => db.tasks().wait_for_seq(seq).await,
        Write::MemoryStore => db.memories().wait_for_seq(seq).await,
    }
    .expect("wait_for_seq");
}

/// Times `iters` iterations; each appends `per_iter` writes of kind `w` (fresh ids) and awaits
/// `wait_for_seq` of the last. A fresh, empty database serves every `CHUNK_EVENTS` writes; its
/// set-up and close are not timed.
async fn time_writes(iters: u64, per_iter: usize, w: Write) -> Duration {
    let _ = &*ARGS;
    let iters_per_chunk = (CHUNK_EVENTS / per_iter) as u64;
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(iters_per_chunk) as usize;
        let redex = Redex::new();
        let db = NetDb::open(&redex, ORIGIN).expect("open db");
        let start = Instant::now();
        for it in 0..n {
            let mut last = 0;
            for k in it * per_iter..(it + 1) * per_iter {
                last = write(&db, w, black_box(k));
            }
            adapter_wait(&db, w, last).await;
        }
        total += start.elapsed();
        let rows = match w {
            Write::TaskCreate => db.tasks().state().read().len(),
            Write::MemoryStore => db.memories().state().read().len(),
        };
        assert_eq!(rows, n * per_iter);
        db.close().expect("close db");
        left -= n as u64;
    }
    total
}

/// Ingest with the fold attached: events/s appended through the typed writes and folded.
/// One iteration appends `INGEST_BATCH` writes and awaits `wait_for_seq` of the last, so the
/// time covers building the event, encoding, appending, waking the fold, decoding, applying
/// under the write lock (row, indexes, undo journal) and waking the waiter.
pub(crate) fn ingest(c: &mut Criterion) {
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(INGEST_BATCH as u64));
    let ct = current_thread();
    for (name, w) in [
        ("tasks_create", Write::TaskCreate),
        ("memories_store", Write::MemoryStore),
    ] {
        group.bench_function(
            BenchmarkId::new(format!("{name}_{INGEST_BATCH}_then_wait"), "current_thread"),
            |b| {
                b.to_async(&ct)
                    .iter_custom(|iters| time_writes(iters, INGEST_BATCH, w));
            },
        );
    }
    let mt = multi_thread_2();
    group.bench_function(
        BenchmarkId::new(
            format!("tasks_create_{INGEST_BATCH}_then_wait"),
            "multi_thread_2",
        ),
        |b| {
            b.to_async(&mt)
                .iter_custom(|iters| time_writes(iters, INGEST_BATCH, Write::TaskCreate));
        },
    );
    group.finish();
}

/// Create-and-wait: one `tasks().create`, then `wait_for_seq` of its seq, per iteration.
/// `current_thread`: the caller and the fold share the thread. `multi_thread_2_block_on`: the
/// caller is the `block_on` future, the fold a task on a worker. `multi_thread_2_spawned`:
/// the caller is a task on the same runtime (like a request handler).
pub(crate) fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    let ct = current_thread();
    group.bench_function(
        BenchmarkId::new("tasks_create_then_wait", "current_thread"),
        |b| {
            b.to_async(&ct)
                .iter_custom(|iters| time_writes(iters, 1, Write::TaskCreate));
        },
    );
    let mt = multi_thread_2();
    group.bench_function(
        BenchmarkId::new("tasks_create_then_wait", "multi_thread_2_block_on"),
        |b| {
            b.to_async(&mt)
                .iter_custom(|iters| time_writes(iters, 1, Write::TaskCreate));
        },
    );
    group.bench_function(
        BenchmarkId::new("tasks_create_then_wait", "multi_thread_2_spawned"),
        |b| {
            b.to_async(&mt).iter_custom(|iters| async move {
                tokio::spawn(time_writes(iters, 1, Write::TaskCreate))
                    .await
                    .expect("bench task")
            });
        },
    );
    group.finish();
}

/// Snapshot encode and decode at 10 K.
///
/// * `tasks_state_encode`: `db.tasks().snapshot()`: the tasks table (10 K rows) into its
///   envelope (postcard rows, header, CRC-32C).
/// * `bundle_encode/*`: `db.snapshot()`: every model's envelope inside one bundle.
/// * `bundle_decode/*` and `tasks_state_decode`: the decoders (`snapshot::decode`, the
///   bundle's) are crate-private, so decoding is measured through the public restore:
///   `NetDb::open_from_snapshot` / `TasksAdapter::open_from_snapshot` **on the same `Redex`
///   that holds the log the snapshot was taken from**. A restore refuses a snapshot ahead of
///   its log (`SnapshotError::AheadOfLog`), so a fresh, empty `Redex` cannot be used; on the
///   same `Redex` the snapshot's `last_seq` is the log's last event, so the restored fold
///   has nothing left to fold and the time is the decode: the bundle and the envelopes
///   (checksum included), the rows, building the table and its indexes, plus opening the
///   channel (already open: a map look-up) and spawning the fold task (about a microsecond).
///   The source database stays open; the restored one is dropped outside the timed region,
///   and the runtime gets to run (so the aborted fold tasks and their tables are freed)
///   between iterations.
///
/// `10k_tasks`: a database whose memories model is empty (so the bundle is the tasks
/// snapshot, comparable with a tasks-only reference figure); `10k_tasks_10k_memories`: the
/// seeded state of the query benchmarks (both models, 10 K rows each).
pub(crate) fn snapshots(c: &mut Criterion) {
    let rt = current_thread();
    let mut group = c.benchmark_group("snapshot_10k");
    for (name, memories) in [("10k_tasks", false), ("10k_tasks_10k_memories", true)] {
        let (redex, db) = rt.block_on(async {
            if memories {
                seeded(10_000).await
            } else {
                let redex = Redex::new();
                let db = NetDb::open(&redex, ORIGIN).expect("open db");
                for i in 0..10_000u64 {
                    db.tasks()
                        .create(i + 1, format!("task-{i}"))
                        .expect("create");
                    if i.is_multiple_of(3) {
                        db.tasks().complete(i + 1).expect("complete");
                    }
                }
                db.tasks().catch_up().await.expect("folded");
                (redex, db)
            }
        });
        let bundle = db.snapshot().expect("bundle");
        let (state, last_seq) = db.tasks().snapshot().expect("tasks snapshot");
        // The restores are complete, and folded nothing.
        rt.block_on(async {
            let back = NetDb::open_from_snapshot(&redex, ORIGIN, &bundle).expect("restore");
            back.tasks().catch_up().await.expect("folded");
            assert_eq!(
                back.tasks().state().read().query().collect(),
                db.tasks().state().read().query().collect()
            );
            assert_eq!(
                back.memories().state().read().len(),
                db.memories().state().read().len()
            );
            let t = TasksAdapter::open_from_snapshot(&redex, ORIGIN, &state, last_seq)
                .expect("restore tasks");
            assert_eq!(t.state().read().len(), 10_000);
        });

        if !memories {
            // The floor under any decoder of these rows: postcard straight into a
            // `Vec<Task>` (each row's title is a heap `String`), no table, no index.
            let rows: Vec<Task> = db.tasks().state().read().iter().cloned().collect();
            let plain = postcard::to_allocvec(&rows).expect("encode rows");
            group.bench_function("floor/postcard_vec_task_decode", |b| {
                b.iter_custom(|iters| {
                    time_dropping_after(iters, || {
                        postcard::from_bytes::<Vec<Task>>(black_box(&plain)).expect("decode rows")
                    })
                });
            });
            group.bench_function("floor/10k_title_strings", |b| {
                b.iter_custom(|iters| {
                    time_dropping_after(iters, || {
                        rows.iter()
                            .map(|r| String::from(black_box(r.title.as_str())))
                            .collect::<Vec<String>>()
                    })
                });
            });
            group.bench_function("tasks_state_encode", |b| {
                b.iter(|| black_box(db.tasks().snapshot().expect("snapshot")));
            });
            group.bench_function("tasks_state_decode", |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (redex, state) = (&redex, &state);
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let start = Instant::now();
                            let t = TasksAdapter::open_from_snapshot(
                                redex,
                                ORIGIN,
                                black_box(state),
                                last_seq,
                            )
                            .expect("restore");
                            total += start.elapsed();
                            drop(black_box(t));
                            tokio::task::yield_now().await;
                        }
                        total
                    }
                });
            });
        }
        group.bench_function(BenchmarkId::new("bundle_encode", name), |b| {
            b.iter(|| black_box(db.snapshot().expect("bundle")));
        });
        group.bench_function(BenchmarkId::new("bundle_decode", name), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (redex, bundle) = (&redex, &bundle);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let back = NetDb::open_from_snapshot(redex, ORIGIN, black_box(bundle))
                            .expect("restore");
                        total += start.elapsed();
                        drop(black_box(back));
                        tokio::task::yield_now().await;
                    }
                    total
                }
            });
        });
        db.close().expect("close db");
        drop(redex);
    }
    group.finish();
}

/// Times `iters` calls of `f`, dropping each result outside the timed region (before the
/// next call, so its memory is reused as it would be by a real caller).
fn time_dropping_after<T>(iters: u64, mut f: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let out = f();
        total += start.elapsed();
        drop(black_box(out));
    }
    total
}

pub(crate) fn config() -> Criterion {
    Criterion::default()
        .sample_size(BENCH_SAMPLES)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
}
