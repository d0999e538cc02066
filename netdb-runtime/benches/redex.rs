//! RedEX benchmarks: appends (in memory and on disk, per fsync policy), batch appends,
//! range reads from the hot window and from disk, and append-to-tail delivery latency.
//!
//! Run with `cargo bench -p netdb-runtime --bench redex`.
//!
//! Memory and disk stay bounded however many iterations criterion asks for: files carry a
//! retention bound that is swept between timed chunks (which deletes whole segments on
//! disk and recycles arena memory), and `append_memory_growing` starts a fresh file every
//! `MEM_CHUNK_EVENTS` events. Nothing but the append calls themselves is inside the timed
//! region.
//!
//! Throughputs are payload bytes. A 256-byte event takes 284 bytes on disk (payload, a
//! 20-byte index record and an 8-byte timestamp), so multiply the `append_disk_256B`
//! figures by 284/256 to compare them with `dd` bandwidth; `Never_16MiB_then_sync`
//! includes the final fsync, like `dd ... conv=fdatasync`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use futures_util::StreamExt;
use netdb_runtime::redex::{ChannelName, FsyncPolicy, Redex, RedexFile, RedexFileConfig};
use tempfile::TempDir;
use tokio::sync::Notify;

/// Default criterion settings: every benchmark but the fsync-heavy ones.
const BENCH_SAMPLES: usize = 50;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(3);

/// Events appended to one in-memory file before a fresh file replaces it (outside timing).
const MEM_CHUNK_EVENTS: u64 = 1 << 16;
/// Appends timed between two retention sweeps of a persistent file.
const DISK_CHUNK_EVENTS: u64 = 1 << 14;
/// Retention bound of the persistent append benchmarks: about one 64 MiB segment of
/// 256-byte events, so at most a few segments exist on disk at any time.
const DISK_RETAIN_EVENTS: u64 = 1 << 18;

const BATCH_LEN: usize = 64;
const BATCH_PAYLOAD: usize = 64;

const READ_EVENTS: u64 = 100_000;
const READ_SPAN: u64 = 10_000;
const READ_PAYLOAD: usize = 256;

fn channel() -> ChannelName {
    "bench/redex".parse().expect("valid channel name")
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn in_memory_file() -> RedexFile {
    Redex::new()
        .open_file(&channel(), RedexFileConfig::default())
        .expect("open in-memory file")
}

/// A persistent file in its own temporary directory, with the tokio runtime that interval
/// fsync policies need (kept alive as long as the file).
struct DiskFile {
    file: RedexFile,
    // Field order is drop order: the file goes before the runtime and the directory.
    _rt: tokio::runtime::Runtime,
    _dir: TempDir,
}

impl DiskFile {
    fn open(config: RedexFileConfig) -> DiskFile {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let redex = Redex::with_persistent_dir(dir.path()).expect("persistent Redex");
        let file = {
            let _guard = rt.enter();
            redex
                .open_file(&channel(), config.with_persistent(true))
                .expect("open persistent file")
        };
        DiskFile {
            file,
            _rt: rt,
            _dir: dir,
        }
    }
}

impl Drop for DiskFile {
    fn drop(&mut self) {
        self.file.close().expect("close persistent file");
    }
}

/// Times `iters` calls of `op` on in-memory files, switching to a fresh file (untimed)
/// every `chunk` calls so memory stays bounded.
fn time_in_memory(iters: u64, chunk: u64, mut op: impl FnMut(&RedexFile)) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        let file = in_memory_file();
        let start = Instant::now();
        for _ in 0..n {
            op(&file);
        }
        total += start.elapsed();
        drop(file);
        left -= n;
    }
    total
}

/// Times `iters` calls of `op` on a file with a retention bound, sweeping retention
/// (untimed) every `chunk` calls so its memory and disk footprint stay bounded.
fn time_swept(
    file: &RedexFile,
    iters: u64,
    chunk: u64,
    mut op: impl FnMut(&RedexFile),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(chunk);
        let start = Instant::now();
        for _ in 0..n {
            op(file);
        }
        total += start.elapsed();
        file.sweep_retention().expect("retention sweep");
        left -= n;
    }
    total
}

/// In-memory appends in the steady state of a log with retention: the window keeps the
/// newest `MEM_CHUNK_EVENTS` events and the memory of evicted ones is reused.
fn append_memory(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_memory");
    for len in [8usize, 32, 256, 1024] {
        let data = payload(len);
        group.throughput(Throughput::Bytes(len as u64));
        let file = Redex::new()
            .open_file(
                &channel(),
                RedexFileConfig::default().with_retention_max_events(MEM_CHUNK_EVENTS),
            )
            .expect("open in-memory file");
        group.bench_function(BenchmarkId::from_parameter(size_id(len)), |b| {
            b.iter_custom(|iters| {
                time_swept(&file, iters, MEM_CHUNK_EVENTS, |f| {
                    black_box(f.append(black_box(&data)).expect("append"));
                })
            });
        });
    }
    group.finish();
}

/// In-memory appends into a log that only grows: every event lands in memory the process
/// never touched before, so the kernel's page faults are part of the figure.
fn append_memory_growing(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_memory_growing");
    for len in [8usize, 256] {
        let data = payload(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(size_id(len)), |b| {
            b.iter_custom(|iters| {
                time_in_memory(iters, MEM_CHUNK_EVENTS, |f| {
                    black_box(f.append(black_box(&data)).expect("append"));
                })
            });
        });
    }
    group.finish();
}

fn size_id(len: usize) -> String {
    if len <= 8 {
        format!("{len}B_inline")
    } else {
        format!("{len}B")
    }
}

fn append_disk_256(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_disk_256B");
    let data = payload(256);
    group.throughput(Throughput::Bytes(data.len() as u64));
    let policies: [(&str, FsyncPolicy); 5] = [
        ("Never", FsyncPolicy::Never),
        ("EveryN_1", FsyncPolicy::EveryN(1)),
        ("EveryN_100", FsyncPolicy::EveryN(100)),
        (
            "Interval_10ms",
            FsyncPolicy::Interval(Duration::from_millis(10)),
        ),
        (
            "IntervalOrBytes_10ms_1MiB",
            FsyncPolicy::IntervalOrBytes {
                period: Duration::from_millis(10),
                max_bytes: 1 << 20,
            },
        ),
    ];
    for (name, policy) in policies {
        let every_append = policy == FsyncPolicy::EveryN(1);
        if every_append {
            // One fsync per append: few, flat samples.
            group
                .sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(3));
        }
        let disk = DiskFile::open(
            RedexFileConfig::default()
                .with_fsync_policy(policy)
                .with_retention_max_events(DISK_RETAIN_EVENTS),
        );
        let chunk = if every_append { 256 } else { DISK_CHUNK_EVENTS };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                time_swept(&disk.file, iters, chunk, |f| {
                    black_box(f.append(black_box(&data)).expect("append"));
                })
            });
        });
        drop(disk);
        if every_append {
            group
                .sample_size(BENCH_SAMPLES)
                .sampling_mode(SamplingMode::Auto)
                .warm_up_time(WARM_UP)
                .measurement_time(MEASUREMENT);
        }
    }

    // Durable bandwidth, comparable with `dd ... conv=fdatasync`: each iteration appends
    // 16 MiB of 256-byte events with FsyncPolicy::Never and then calls `sync()`.
    const SYNC_BATCH_EVENTS: u64 = (16 << 20) / 256;
    group
        .throughput(Throughput::Bytes(SYNC_BATCH_EVENTS * data.len() as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(5));
    let disk =
        DiskFile::open(RedexFileConfig::default().with_retention_max_events(DISK_RETAIN_EVENTS));
    group.bench_function(BenchmarkId::from_parameter("Never_16MiB_then_sync"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                for _ in 0..SYNC_BATCH_EVENTS {
                    black_box(disk.file.append(black_box(&data)).expect("append"));
                }
                disk.file.sync().expect("sync");
                total += start.elapsed();
                disk.file.sweep_retention().expect("retention sweep");
            }
            total
        });
    });
    drop(disk);
    group.finish();
}

fn append_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_batch_64x64B");
    let data = payload(BATCH_PAYLOAD);
    let batch: Vec<&[u8]> = vec![&data[..]; BATCH_LEN];
    group.throughput(Throughput::Bytes((BATCH_LEN * BATCH_PAYLOAD) as u64));

    let memory = Redex::new()
        .open_file(
            &channel(),
            RedexFileConfig::default().with_retention_max_events(MEM_CHUNK_EVENTS),
        )
        .expect("open in-memory file");
    group.bench_function(BenchmarkId::from_parameter("memory"), |b| {
        b.iter_custom(|iters| {
            time_swept(&memory, iters, MEM_CHUNK_EVENTS / BATCH_LEN as u64, |f| {
                black_box(f.append_batch(black_box(&batch)).expect("append_batch"));
            })
        });
    });

    let disk = DiskFile::open(
        RedexFileConfig::default()
            .with_fsync_policy(FsyncPolicy::Never)
            .with_retention_max_events(DISK_RETAIN_EVENTS),
    );
    group.bench_function(BenchmarkId::from_parameter("disk_Never"), |b| {
        b.iter_custom(|iters| {
            time_swept(
                &disk.file,
                iters,
                DISK_CHUNK_EVENTS / BATCH_LEN as u64,
                |f| {
                    black_box(f.append_batch(black_box(&batch)).expect("append_batch"));
                },
            )
        });
    });
    drop(disk);
    group.finish();
}

fn fill(file: &RedexFile, events: u64, len: usize) {
    let data = payload(len);
    let batch: Vec<&[u8]> = vec![&data[..]; 1000];
    let mut left = events;
    while left > 0 {
        let n = left.min(batch.len() as u64) as usize;
        file.append_batch(&batch[..n]).expect("append_batch");
        left -= n as u64;
    }
}

fn read_range(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_range_10k");
    group.throughput(Throughput::Bytes(READ_SPAN * READ_PAYLOAD as u64));

    let bench_reads = |b: &mut criterion::Bencher<'_>, file: &RedexFile| {
        let mut start = 0;
        b.iter(|| {
            let events = file
                .read_range(start, start + READ_SPAN)
                .expect("read_range");
            debug_assert_eq!(events.len() as u64, READ_SPAN);
            start = (start + READ_SPAN) % (READ_EVENTS - READ_SPAN + 1);
            black_box(events)
        });
    };

    // Hot: a persistent file whose whole content fits in its (default, 64 MiB) hot window.
    let hot = DiskFile::open(RedexFileConfig::default());
    fill(&hot.file, READ_EVENTS, READ_PAYLOAD);
    hot.file.sync().expect("sync");
    assert!(hot.file.memory_bytes() >= READ_EVENTS as usize * READ_PAYLOAD);
    assert_eq!(
        hot.file.read_range(0, READ_SPAN).expect("read").len() as u64,
        READ_SPAN
    );
    group.bench_function(BenchmarkId::from_parameter("hot"), |b| {
        bench_reads(b, &hot.file)
    });
    drop(hot);

    // Cold: filled, closed and reopened with an empty hot window (`max_memory_bytes(0)`), so
    // every read goes to the segment files (served from the page cache).
    let cold_config = RedexFileConfig::default()
        .with_persistent(true)
        .with_max_memory_bytes(0);
    let dir = tempfile::tempdir().expect("temporary directory");
    {
        let redex = Redex::with_persistent_dir(dir.path()).expect("persistent Redex");
        let file = redex
            .open_file(&channel(), cold_config.clone())
            .expect("open persistent file");
        fill(&file, READ_EVENTS, READ_PAYLOAD);
        file.close().expect("close");
    }
    let redex = Redex::with_persistent_dir(dir.path()).expect("reopen persistent Redex");
    let file = redex
        .open_file(&channel(), cold_config)
        .expect("reopen persistent file");
    assert_eq!(file.memory_bytes(), 0);
    assert_eq!(file.next_seq(), READ_EVENTS);
    assert_eq!(
        file.read_range(0, READ_SPAN).expect("read").len() as u64,
        READ_SPAN
    );
    group.bench_function(BenchmarkId::from_parameter("cold"), |b| {
        bench_reads(b, &file)
    });
    file.close().expect("close");
    drop(redex);
    drop(dir);
    group.finish();
}

fn tail_delivery(c: &mut Criterion) {
    let mut group = c.benchmark_group("tail_delivery");
    let data = payload(64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // Append, then await the tail's next item, in one task. The tail finds the event on its
    // first poll: this is the cost of an append plus one tail poll, with no wake-up.
    group.bench_function(BenchmarkId::from_parameter("append_then_next"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    // A fresh file and tail per chunk keeps memory bounded (untimed).
                    let n = left.min(MEM_CHUNK_EVENTS);
                    let file = in_memory_file();
                    let mut tail = file.tail(0);
                    let start = Instant::now();
                    for _ in 0..n {
                        let seq = file.append(black_box(&data)).expect("append");
                        let ev = tail.next().await.expect("tail open").expect("event");
                        debug_assert_eq!(ev.seq, seq);
                        black_box(ev);
                    }
                    total += start.elapsed();
                    left -= n;
                }
                total
            })
        });
    });

    // The tail waits in its own task (parked on the file's waker); the appender appends and
    // waits for the tail task's acknowledgement. One iteration is an append, the wake-up and
    // scheduling of the tail task, its poll, and the wake-up of the appender.
    group.bench_function(BenchmarkId::from_parameter("wake_pending_tail_task"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(MEM_CHUNK_EVENTS);
                    let file = in_memory_file();
                    let mut tail = file.tail(0);
                    let ack = Arc::new(Notify::new());
                    let consumer = tokio::spawn({
                        let ack = Arc::clone(&ack);
                        async move {
                            let mut delivered = 0u64;
                            while let Some(ev) = tail.next().await {
                                black_box(ev.expect("event"));
                                delivered += 1;
                                ack.notify_one();
                            }
                            delivered
                        }
                    });
                    // Let the tail task park on the file before the clock starts.
                    tokio::task::yield_now().await;
                    let start = Instant::now();
                    for _ in 0..n {
                        file.append(black_box(&data)).expect("append");
                        ack.notified().await;
                    }
                    total += start.elapsed();
                    file.close().expect("close");
                    assert_eq!(consumer.await.expect("tail task"), n);
                    left -= n;
                }
                total
            })
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(BENCH_SAMPLES)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT)
}

criterion_group! {
    name = benches;
    config = config();
    targets = append_memory, append_memory_growing, append_disk_256, append_batch, read_range, tail_delivery
}
criterion_main!(benches);
