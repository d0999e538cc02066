//! The embedded log (RedEX) and JetStream side by side: raw appends, batches, and the typed
//! models' write-to-watch and write-then-wait round trips.
//!
//! Run with `cargo bench -p netdb-tests --features jetstream --bench jetstream`. It starts
//! one `nats-server -js` on loopback (the [`netdb_tests::nats`] harness: a free port, a
//! temporary store directory, killed when the bench ends); with `NETDB_SKIP_JETSTREAM=1` it
//! measures the embedded backends only.
//!
//! * `append/*`: one 100-byte append, returning after RedEX stored it (in memory; on disk
//!   with `FsyncPolicy::Never` and `EveryN(1)`, in a temporary directory) or after the
//!   stream acknowledged it (JetStream, one replica).
//! * `append_batch_100/*`: `append_batch` of 100 × 100-byte events on the same backends;
//!   `jetstream_R1_unpipelined` publishes each event after the previous one's
//!   acknowledgement (`JetStreamOptions::with_max_in_flight(1)`), as batches did before
//!   they were pipelined.
//! * `append_to_watch/*`: the latency from a typed write (`db.tasks().create`) on the
//!   seed's `NetDb` until a live watch on the tasks (`db.tasks().watch().stream()`) yields a
//!   result holding it.
//! * `create_and_wait/*`: a typed write, then `wait_for_seq` of its seq.
//!
//! In the typed benches the writer is a `block_on` future on the bench thread and the folds
//! run on a two-worker tokio runtime; a JetStream write blocks the bench thread until the
//! stream acknowledged it (the log is synchronous), as it would block a caller's thread.
//!
//! Every log keeps at most [`RETAIN`] events: RedEX files are swept (untimed) every
//! [`RETAIN`] appends, streams drop their oldest messages themselves (`max_msgs`). The
//! typed benches write the same task id each time (a create replaces the task), so the
//! watched result stays one row; the embedded database is replaced (untimed) every
//! [`RETAIN`] writes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use futures_util::StreamExt;
use netdb_models::NetDb;
use netdb_runtime::cortex::CortexLog;
use netdb_runtime::jetstream::{JetStream, JetStreamLogConfig, JetStreamOptions};
use netdb_runtime::redex::{ChannelName, FsyncPolicy, Redex, RedexFile, RedexFileConfig};
use netdb_tests::nats::NatsServer;
use tempfile::TempDir;
use tokio::runtime::Runtime;

const SAMPLES: usize = 20;
const WARM_UP: Duration = Duration::from_secs(1);
const MEASUREMENT: Duration = Duration::from_secs(3);

/// The payload size of every raw append.
const PAYLOAD: usize = 100;
/// Events per batch.
const BATCH: usize = 100;
/// Events a log keeps (see the module docs).
const RETAIN: u64 = 1 << 16;
/// The origin of every typed writer.
const ORIGIN: u64 = 1;

fn channel(name: &str) -> ChannelName {
    name.parse().expect("valid channel name")
}

fn payload() -> Vec<u8> {
    (0..PAYLOAD).map(|i| (i * 31 + 7) as u8).collect()
}

fn multi_thread_2() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A log under test. RedEX files are swept every [`RETAIN`] appends; on disk, the file
/// lives in its own temporary directory with the runtime its fsync policy may need.
struct Log {
    name: String,
    log: Arc<dyn CortexLog>,
    redex: Option<RedexFile>,
    appended: u64,
    // Field order is drop order: the log is closed (in `drop`) before these go.
    _rt: Option<Runtime>,
    _dir: Option<TempDir>,
}

impl Log {
    fn memory() -> Log {
        let file = Redex::new()
            .open_file(
                &channel("bench/memory"),
                RedexFileConfig::default().with_retention_max_events(RETAIN),
            )
            .expect("open in-memory file");
        Log {
            name: "redex_memory".into(),
            log: Arc::new(file.clone()),
            redex: Some(file),
            appended: 0,
            _rt: None,
            _dir: None,
        }
    }

    fn disk(name: &str, policy: FsyncPolicy) -> Log {
        let rt = multi_thread_2();
        let dir = tempfile::tempdir().expect("temporary directory");
        let redex = Redex::with_persistent_dir(dir.path()).expect("persistent Redex");
        let file = {
            let _guard = rt.enter();
            redex
                .open_file(
                    &channel("bench/disk"),
                    RedexFileConfig::default()
                        .with_persistent(true)
                        .with_fsync_policy(policy)
                        .with_retention_max_events(RETAIN),
                )
                .expect("open persistent file")
        };
        Log {
            name: format!("redex_disk_{name}"),
            log: Arc::new(file.clone()),
            redex: Some(file),
            appended: 0,
            _rt: Some(rt),
            _dir: Some(dir),
        }
    }

    fn jetstream(js: &JetStream, name: &str, stream: &str) -> Log {
        let log = js
            .open_log(
                &channel(stream),
                JetStreamLogConfig::default().with_retention_max_events(RETAIN),
            )
            .expect("open JetStream log");
        Log {
            name: name.into(),
            log: Arc::new(log),
            redex: None,
            appended: 0,
            _rt: None,
            _dir: None,
        }
    }

    /// Times `iters` calls of `op`, each appending `per_call` events; sweeps RedEX
    /// retention (untimed) whenever [`RETAIN`] events went in since the last sweep.
    fn time(&mut self, iters: u64, per_call: u64, mut op: impl FnMut(&dyn CortexLog)) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min((RETAIN / per_call).max(1));
            let start = Instant::now();
            for _ in 0..n {
                op(&*self.log);
            }
            total += start.elapsed();
            self.appended += n * per_call;
            if let Some(file) = &self.redex
                && self.appended >= RETAIN
            {
                file.sweep_retention().expect("retention sweep");
                self.appended = 0;
            }
            left -= n;
        }
        total
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.log.close().expect("close log");
    }
}

/// The JetStream connections: the default one, and for batches one publishing each event
/// after the previous one's acknowledgement (`with_max_in_flight(1)`), to compare.
struct Servers {
    js: JetStream,
    unpipelined: JetStream,
}

/// The raw logs of the `append` and `append_batch_100` groups.
fn logs(servers: Option<&Servers>, group: &str, unpipelined: bool) -> Vec<Log> {
    let mut logs = vec![
        Log::memory(),
        Log::disk("Never", FsyncPolicy::Never),
        Log::disk("EveryN_1", FsyncPolicy::EveryN(1)),
    ];
    if let Some(s) = servers {
        logs.push(Log::jetstream(
            &s.js,
            "jetstream_R1",
            &format!("bench/{group}"),
        ));
        if unpipelined {
            logs.push(Log::jetstream(
                &s.unpipelined,
                "jetstream_R1_unpipelined",
                &format!("bench/{group}-unpipelined"),
            ));
        }
    }
    logs
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(SAMPLES)
        .warm_up_time(WARM_UP)
        .measurement_time(MEASUREMENT);
}

/// One 100-byte append per iteration.
fn append(c: &mut Criterion, servers: Option<&Servers>) {
    let mut group = c.benchmark_group("append");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let data = payload();
    for mut log in logs(servers, "append", false) {
        group.bench_function(BenchmarkId::from_parameter(log.name.clone()), |b| {
            b.iter_custom(|iters| {
                log.time(iters, 1, |l| {
                    black_box(l.append(black_box(&data)).expect("append"));
                })
            });
        });
    }
    group.finish();
}

/// One `append_batch` of 100 × 100-byte events per iteration.
fn append_batch(c: &mut Criterion, servers: Option<&Servers>) {
    let mut group = c.benchmark_group("append_batch_100");
    configure(&mut group);
    group.throughput(Throughput::Elements(BATCH as u64));
    let data = payload();
    let batch: Vec<&[u8]> = (0..BATCH).map(|_| &data[..]).collect();
    for mut log in logs(servers, "batch", true) {
        group.bench_function(BenchmarkId::from_parameter(log.name.clone()), |b| {
            b.iter_custom(|iters| {
                log.time(iters, BATCH as u64, |l| {
                    let r = l.append_batch(black_box(&batch)).expect("append_batch");
                    assert_eq!(r.end - r.start, BATCH as u64);
                })
            });
        });
    }
    group.finish();
}

/// A typed database under test: the seed's `NetDb` on an embedded Redex (replaced every
/// [`RETAIN`] writes) or on JetStream.
struct Db {
    name: &'static str,
    js: Option<JetStream>,
    db: Option<(NetDb, Redex)>,
    writes: u64,
    /// A counter for distinct titles.
    title: u64,
}

impl Db {
    fn new(name: &'static str, js: Option<JetStream>) -> Db {
        Db {
            name,
            js,
            db: None,
            writes: 0,
            title: 0,
        }
    }

    /// The database, opened (or replaced, for the embedded one) if need be. Must run
    /// inside the tokio runtime the fold tasks run on.
    fn get(&mut self, writes: u64) -> &NetDb {
        let full = self.js.is_none() && self.writes + writes > RETAIN;
        if full && let Some((db, _)) = self.db.take() {
            db.close().expect("close db");
        }
        if self.db.is_none() {
            self.writes = 0;
            let redex = Redex::new();
            let db = match &self.js {
                Some(js) => NetDb::open(js, ORIGIN),
                None => NetDb::open(&redex, ORIGIN),
            }
            .expect("open db");
            self.db = Some((db, redex));
        }
        self.writes += writes;
        &self.db.as_ref().expect("opened").0
    }

    fn next_title(&mut self) -> String {
        self.title += 1;
        format!("title {}", self.title)
    }

    fn close(&mut self) {
        if let Some((db, _)) = self.db.take() {
            db.close().expect("close db");
        }
    }
}

fn dbs(servers: Option<&Servers>) -> Vec<Db> {
    let mut dbs = vec![Db::new("redex_memory", None)];
    if let Some(s) = servers {
        dbs.push(Db::new("jetstream_R1", Some(s.js.clone())));
    }
    dbs
}

/// Times `iters` writes of task 1 (a new title each), each until a live watch on the tasks
/// yields a result with that title.
async fn time_watch(db: &mut Db, iters: u64) -> Duration {
    let titles: Vec<String> = (0..iters).map(|_| db.next_title()).collect();
    let db = db.get(iters);
    db.tasks().catch_up().await.expect("caught up");
    let mut watch = db.tasks().watch().stream();
    // The first item is the current result.
    watch.next().await.expect("watch open");
    let start = Instant::now();
    for title in titles {
        db.tasks().create(1, title.clone()).expect("create");
        loop {
            let rows = watch.next().await.expect("watch open");
            if rows.iter().any(|t| t.title == title) {
                break;
            }
        }
    }
    start.elapsed()
}

/// Times `iters` writes of task 1, each followed by `wait_for_seq` of its seq.
async fn time_create_and_wait(db: &mut Db, iters: u64) -> Duration {
    let titles: Vec<String> = (0..iters).map(|_| db.next_title()).collect();
    let db = db.get(iters);
    db.tasks().catch_up().await.expect("caught up");
    let start = Instant::now();
    for title in titles {
        let seq = db.tasks().create(1, title).expect("create");
        db.tasks().wait_for_seq(seq).await.expect("folded");
    }
    start.elapsed()
}

fn append_to_watch(c: &mut Criterion, servers: Option<&Servers>) {
    let mut group = c.benchmark_group("append_to_watch");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let rt = multi_thread_2();
    for mut db in dbs(servers) {
        group.bench_function(BenchmarkId::from_parameter(db.name), |b| {
            b.iter_custom(|iters| rt.block_on(time_watch(&mut db, iters)));
        });
        rt.block_on(async { db.close() });
    }
    group.finish();
}

fn create_and_wait(c: &mut Criterion, servers: Option<&Servers>) {
    let mut group = c.benchmark_group("create_and_wait");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));
    let rt = multi_thread_2();
    for mut db in dbs(servers) {
        group.bench_function(BenchmarkId::from_parameter(db.name), |b| {
            b.iter_custom(|iters| rt.block_on(time_create_and_wait(&mut db, iters)));
        });
        rt.block_on(async { db.close() });
    }
    group.finish();
}

fn main() {
    // Not `criterion_main!`: the server must outlive every group and be killed (dropped)
    // at the end, which a static would never be.
    let server = NatsServer::start();
    if server.is_none() {
        eprintln!("NETDB_SKIP_JETSTREAM=1: measuring the embedded backends only");
    }
    let servers = server.as_ref().map(|s| {
        let connect = |options: JetStreamOptions| {
            JetStream::connect(options.with_client_name("netdb-bench"))
                .expect("connect to nats-server")
        };
        Servers {
            js: connect(JetStreamOptions::new([s.url()])),
            unpipelined: connect(JetStreamOptions::new([s.url()]).with_max_in_flight(1)),
        }
    });
    let mut c = Criterion::default().configure_from_args();
    append(&mut c, servers.as_ref());
    append_batch(&mut c, servers.as_ref());
    append_to_watch(&mut c, servers.as_ref());
    create_and_wait(&mut c, servers.as_ref());
    c.final_summary();
    drop(servers);
    drop(server);
}
