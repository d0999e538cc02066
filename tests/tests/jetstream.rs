//! The JetStream backend against real servers: each test starts `nats-server -js` on a
//! free loopback port with a temporary store directory and stops it by pid
//! ([`netdb_tests::nats`]; `NETDB_SKIP_JETSTREAM=1` skips them).

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use netdb_runtime::cortex::{CortexLog, LogTail, RestoreOutcome};
use netdb_runtime::jetstream::{
    JetStream, JetStreamLog, JetStreamLogConfig, JetStreamOptions, WriterMode,
};
use netdb_runtime::prelude::*;
use netdb_runtime::redex::{ChannelName, RedexError, RedexEvent};
use netdb_tests::nats::{NatsServer, connect, start_cluster};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

// ---- helpers ----------------------------------------------------------------------------

fn channel(name: &str) -> ChannelName {
    name.parse().unwrap()
}

async fn collect(tail: &mut LogTail, n: usize) -> Vec<Result<RedexEvent, RedexError>> {
    let mut out = Vec::new();
    while out.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(10), tail.next())
            .await
            .expect("tail stalled")
            .expect("tail ended");
        out.push(item);
    }
    out
}

fn payloads(events: &[RedexEvent]) -> Vec<(u64, &[u8])> {
    events.iter().map(|e| (e.seq, &e.payload[..])).collect()
}

// ---- the log ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_tail_round_trip_with_redex_seqs() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = connect(&server);
    let log = js
        .open_log(
            &channel("test/js/round-trip"),
            JetStreamLogConfig::default(),
        )
        .unwrap();
    assert_eq!(log.stream_name(), "NETDB_test~js~round-trip");
    assert_eq!(log.subject(), "netdb.test.js.round-trip");
    assert_eq!((log.first_seq(), log.next_seq()), (0, 0));

    // RedEX seqs: the first event is 0 (stream message 1).
    assert_eq!(log.append(b"a").unwrap(), 0);
    assert_eq!(log.append(b"b").unwrap(), 1);
    assert_eq!(log.append_batch(&[b"c", b"d", b"e"]).unwrap(), 2..5);
    assert_eq!(log.append_batch(&[]).unwrap(), 5..5);
    assert_eq!((log.first_seq(), log.next_seq()), (0, 5));

    let all = log.read_range(0, 100).unwrap();
    assert_eq!(
        payloads(&all),
        [(0, &b"a"[..]), (1, b"b"), (2, b"c"), (3, b"d"), (4, b"e")]
    );
    assert_eq!(
        payloads(&log.read_range(2, 4).unwrap()),
        [(2, &b"c"[..]), (3, b"d")]
    );
    assert!(log.read_range(4, 4).unwrap().is_empty());
    assert!(
        all.iter()
            .all(|e| e.timestamp_ns > 1_600_000_000_000_000_000)
    );

    // A tail from the middle: backfill, then live.
    let mut tail = log.tail(3);
    let got: Vec<_> = collect(&mut tail, 2)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(payloads(&got), [(3, &b"d"[..]), (4, b"e")]);
    assert_eq!(log.append(b"f").unwrap(), 5);
    let got = collect(&mut tail, 1).await.pop().unwrap().unwrap();
    assert_eq!((got.seq, &got.payload[..]), (5, &b"f"[..]));

    // A second handle (another connection) sees the same log.
    let other = connect(&server)
        .open_log(
            &channel("test/js/round-trip"),
            JetStreamLogConfig::default(),
        )
        .unwrap();
    assert_eq!(other.next_seq(), 6);
    assert_eq!(payloads(&other.read_range(5, 6).unwrap()), [(5, &b"f"[..])]);

    // Close: the tail ends after what the log held, appends fail.
    log.close().unwrap();
    assert!(matches!(log.append(b"g"), Err(RedexError::Closed { .. })));
    assert!(matches!(log.sync(), Err(RedexError::Closed { .. })));
    let end = tokio::time::timeout(Duration::from_secs(10), tail.next())
        .await
        .unwrap();
    assert!(end.is_none());
}

/// The log is synchronous: a plain thread with no tokio runtime connects, appends and reads.
#[test]
fn connects_and_appends_outside_any_runtime() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = connect(&server);
    let log = js
        .open_log(
            &channel("test/js/no-runtime"),
            JetStreamLogConfig::default(),
        )
        .unwrap();
    assert_eq!(log.append(b"a").unwrap(), 0);
    assert_eq!(log.append_batch(&[b"b", b"c"]).unwrap(), 1..3);
    assert_eq!(payloads(&log.read_range(2, 3).unwrap()), [(2, &b"c"[..])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_maps_to_stream_limits_and_tails_report_eviction() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = connect(&server);
    let config = JetStreamLogConfig::default().with_retention_max_events(3);
    let log = js
        .open_log(&channel("test/js/retention"), config.clone())
        .unwrap();
    for i in 0..5u8 {
        assert_eq!(log.append(&[i]).unwrap(), u64::from(i));
    }
    assert_eq!((log.first_seq(), log.next_seq()), (2, 5));
    match log.read_range(0, 5) {
        Err(RedexError::Evicted {
            requested: 0,
            first_available: 2,
            ..
        }) => {}
        other => panic!("expected Evicted, got {other:?}"),
    }
    let mut tail = log.tail(0);
    let got = collect(&mut tail, 4).await;
    assert!(matches!(
        got[0],
        Err(RedexError::Evicted {
            requested: 0,
            first_available: 2,
            ..
        })
    ));
    let seqs: Vec<u64> = got[1..].iter().map(|e| e.as_ref().unwrap().seq).collect();
    assert_eq!(seqs, [2, 3, 4]);

    // Reopening with other limits is refused, saying what differs.
    let err = js
        .open_log(
            &channel("test/js/retention"),
            JetStreamLogConfig::default().with_retention_max_events(10),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("max_msgs 3 (asked for 10)"),
        "{err}"
    );
    // Replicas other than 1 or 3 are refused before asking the server.
    assert!(matches!(
        js.open_log(
            &channel("test/js/r2"),
            JetStreamLogConfig::default().with_replicas(2)
        ),
        Err(RedexError::InvalidConfig { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_single_writer_gets_a_conflict_not_an_interleaving() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let ch = channel("test/js/conflict");
    let a = connect(&server)
        .open_log(&ch, JetStreamLogConfig::default())
        .unwrap();
    let b = connect(&server)
        .open_log(&ch, JetStreamLogConfig::default())
        .unwrap();
    assert_eq!(a.append(b"a0").unwrap(), 0);
    // B still believes the log ends at 0.
    match b.append(b"b0") {
        Err(RedexError::Conflict {
            expected: 0,
            found: 1,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Nothing of B's was written; having learnt the new end, B's next append lands after A's.
    assert_eq!(b.append(b"b0").unwrap(), 1);
    // A batch that races: nothing written, typed error.
    match a.append_batch(&[b"x", b"y"]) {
        Err(RedexError::Conflict {
            expected: 1,
            found: 2,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(a.append_batch(&[b"x", b"y"]).unwrap(), 2..4);
    let all = a.read_range(0, 10).unwrap();
    assert_eq!(
        payloads(&all),
        [(0, &b"a0"[..]), (1, b"b0"), (2, b"x"), (3, b"y")]
    );

    // Multi-writer handles append without expectations.
    let multi = JetStreamLogConfig::default().with_writer_mode(WriterMode::Multi);
    let c = connect(&server).open_log(&ch, multi.clone()).unwrap();
    let d = connect(&server).open_log(&ch, multi).unwrap();
    assert_eq!(c.append(b"c").unwrap(), 4);
    assert_eq!(d.append(b"d").unwrap(), 5);
    assert_eq!(c.append_batch(&[b"c1", b"c2"]).unwrap(), 6..8);
}

/// Over the server's `max_payload` (1 MiB by default).
const OVERSIZED: usize = 2 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stops_at_an_oversized_event_and_names_exactly_what_it_appended() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let log = connect(&server)
        .open_log(
            &channel("test/js/partial-too-large"),
            JetStreamLogConfig::default(),
        )
        .unwrap();
    assert_eq!(log.append(b"first").unwrap(), 0);
    let huge = vec![7u8; OVERSIZED];
    match log.append_batch(&[b"a", b"b", &huge, b"c", b"d"]) {
        Err(RedexError::PartialBatch {
            appended,
            requested: 5,
            source,
            ..
        }) => {
            assert_eq!(appended, 1..3);
            assert!(
                matches!(*source, RedexError::PayloadTooLarge { len: OVERSIZED, .. }),
                "{source:?}"
            );
        }
        other => panic!("expected a partial batch, got {other:?}"),
    }
    // Neither the oversized event nor those after it were stored: the next append lands
    // right after the two that were.
    assert_eq!(log.append(b"e").unwrap(), 3);
    assert_eq!(
        payloads(&log.read_range(0, 10).unwrap()),
        [(0, &b"first"[..]), (1, b"a"), (2, b"b"), (3, b"e")]
    );
    // An oversized first event: nothing appended, that event's own error.
    assert!(matches!(
        log.append_batch(&[&huge, b"f"]),
        Err(RedexError::PayloadTooLarge { .. })
    ));
    assert_eq!(log.next_seq(), 4);
}

/// What one batch of a raced writer got.
type BatchOutcome = (Vec<Vec<u8>>, Result<Range<u64>, RedexError>);

/// Batches of `len` events from a handle in `mode` while another connection appends single
/// events as fast as it can, until `partials` batches stopped part-way (or `rounds` ran).
fn race_batches(
    server: &NatsServer,
    ch: &ChannelName,
    mode: WriterMode,
    len: usize,
    rounds: usize,
    partials: usize,
) -> (Vec<BatchOutcome>, JetStreamLog) {
    let a = connect(server)
        .open_log(ch, JetStreamLogConfig::default().with_writer_mode(mode))
        .unwrap();
    let b = connect(server)
        .open_log(
            ch,
            JetStreamLogConfig::default().with_writer_mode(WriterMode::Multi),
        )
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                b.append(format!("b{n}").as_bytes()).unwrap();
                n += 1;
            }
        })
    };
    let mut outcomes = Vec::new();
    let mut seen = 0;
    for round in 0..rounds {
        let batch: Vec<Vec<u8>> = (0..len)
            .map(|i| format!("a{round}-{i}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let result = a.append_batch(&refs);
        if matches!(result, Err(RedexError::PartialBatch { .. })) {
            seen += 1;
        }
        outcomes.push((batch, result));
        if seen >= partials {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    other.join().unwrap();
    (outcomes, a)
}

/// Checks every outcome against the log: a whole batch, or exactly the first events of a
/// partial one, contiguous where it said; nothing of the rest anywhere; nothing twice.
fn check_raced(outcomes: &[BatchOutcome], all: &[RedexEvent]) -> usize {
    let mut at = std::collections::HashMap::new();
    for e in all {
        assert!(
            at.insert(&e.payload[..], e.seq).is_none(),
            "stored twice: {:?}",
            String::from_utf8_lossy(&e.payload)
        );
    }
    let first = all.first().map_or(0, |e| e.seq);
    let mut partial = 0;
    for (batch, result) in outcomes {
        let stored = match result {
            Ok(range) => {
                assert_eq!(range.end - range.start, batch.len() as u64);
                range.clone()
            }
            Err(RedexError::PartialBatch {
                appended,
                requested,
                source,
                ..
            }) => {
                assert_eq!(*requested, batch.len());
                assert!(
                    matches!(**source, RedexError::Conflict { .. }),
                    "{source:?}"
                );
                partial += 1;
                appended.clone()
            }
            Err(RedexError::Conflict { .. }) => 0..0,
            Err(e) => panic!("unexpected error: {e}"),
        };
        let n = (stored.end - stored.start) as usize;
        for (k, payload) in batch.iter().enumerate() {
            if k < n {
                let seq = stored.start + k as u64;
                assert_eq!(all[(seq - first) as usize].payload[..], payload[..]);
            } else {
                assert!(
                    !at.contains_key(&payload[..]),
                    "{:?} is stored though its batch reported {stored:?}",
                    String::from_utf8_lossy(payload)
                );
            }
        }
    }
    partial
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_raced_by_another_writer_stays_contiguous_and_names_exactly_what_it_appended() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let server = Arc::new(server);
    // Multi-writer batches: the first event carries no expectation, so the other writer's
    // events land between batches or inside them. Inside, the batch stops right there: each
    // later event expects its predecessor as the last (sequence and message id), which no
    // longer holds, even for the one whose expected sequence is the other writer's event.
    let s = Arc::clone(&server);
    let (outcomes, a) = tokio::task::spawn_blocking(move || {
        race_batches(
            &s,
            &channel("test/js/race-multi"),
            WriterMode::Multi,
            200,
            500,
            5,
        )
    })
    .await
    .unwrap();
    let all = a.read_range(0, u64::MAX).unwrap();
    let partial = check_raced(&outcomes, &all);
    assert!(
        partial > 0,
        "no batch was interleaved in {} rounds",
        outcomes.len()
    );

    // A single writer: a batch that starts on a stale end is a conflict writing nothing;
    // one the other writer overtakes part-way stops there.
    let s = Arc::clone(&server);
    let (outcomes, a) = tokio::task::spawn_blocking(move || {
        race_batches(
            &s,
            &channel("test/js/race-single"),
            WriterMode::Single,
            200,
            100,
            5,
        )
    })
    .await
    .unwrap();
    let all = a.read_range(0, u64::MAX).unwrap();
    check_raced(&outcomes, &all);
}

// ---- a model on JetStream ----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    Todo,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/js/tasks")]
pub struct Task {
    pub id: u64,
    #[cortex(filter(contains))]
    pub title: String,
    #[cortex(filter, index)]
    pub status: Status,
}

fn task(id: u64, title: &str, status: Status) -> Task {
    Task {
        id,
        title: title.into(),
        status,
    }
}

/// A log that records where its tails start, to see what a restore replays.
#[derive(Debug)]
struct Recording {
    log: JetStreamLog,
    tails: Mutex<Vec<u64>>,
}

impl CortexLog for Recording {
    fn append(&self, payload: &[u8]) -> Result<u64, RedexError> {
        self.log.append(payload)
    }
    fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<u64>, RedexError> {
        self.log.append_batch(payloads)
    }
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RedexEvent>, RedexError> {
        self.log.read_range(start, end)
    }
    fn tail(&self, from: u64) -> LogTail {
        self.tails.lock().push(from);
        self.log.tail(from)
    }
    fn next_seq(&self) -> u64 {
        self.log.next_seq()
    }
    fn first_seq(&self) -> u64 {
        self.log.first_seq()
    }
    fn sync(&self) -> Result<(), RedexError> {
        self.log.sync()
    }
    fn close(&self) -> Result<(), RedexError> {
        self.log.close()
    }
}

fn open_tasks(log: JetStreamLog, origin: u64) -> TasksAdapter {
    TasksAdapter::from(
        CortexAdapter::<Task>::open_on_log(Arc::new(log), origin, CortexConfig::default()).unwrap(),
    )
}

fn tasks_log(js: &JetStream) -> JetStreamLog {
    js.open_log(&channel("test/js/tasks"), JetStreamLogConfig::default())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_runs_on_jetstream_with_queries_watches_and_snapshots() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = connect(&server);
    let tasks = open_tasks(tasks_log(&js), 1);
    let mut done = tasks.watch().where_status(Status::Done).stream();
    assert_eq!(next_ids(&mut done).await, Vec::<u64>::new());

    for i in 0..6 {
        tasks
            .insert(task(i, &format!("task {i}"), Status::Todo))
            .unwrap();
    }
    let s = tasks
        .update(TaskPatch::new(2).status(Status::Done))
        .unwrap();
    tasks.wait_for_seq(s).await.unwrap();
    {
        let state = tasks.state();
        let st = state.read();
        assert_eq!(st.len(), 6);
        assert_eq!(st.query().where_status(Status::Done).count(), 1);
        assert_eq!(st.query().where_title_contains("TASK 4").count(), 1);
    }
    assert_eq!(next_ids(&mut done).await, [2]);

    // A second adapter in another connection (as another process would) sees the writes.
    let js2 = connect(&server);
    let reader = open_tasks(tasks_log(&js2), 2);
    reader.wait_for_seq(s).await.unwrap();
    assert_eq!(reader.state().read().len(), 6);

    // Snapshot, more writes, then restore: the restore folds only the newer messages.
    let (bytes, last_seq) = tasks.snapshot().unwrap();
    assert_eq!(last_seq, Some(s));
    tasks.delete(0).unwrap();
    let s2 = tasks
        .update(TaskPatch::new(3).status(Status::Done))
        .unwrap();
    tasks.wait_for_seq(s2).await.unwrap();
    assert_eq!(next_ids(&mut done).await, [2, 3]);

    let recording = Arc::new(Recording {
        log: tasks_log(&js2),
        tails: Mutex::new(Vec::new()),
    });
    let restored = TasksAdapter::from(
        CortexAdapter::<Task>::open_from_snapshot_on_log(
            recording.clone(),
            3,
            &bytes,
            last_seq,
            CortexConfig::default(),
        )
        .unwrap(),
    );
    assert!(matches!(
        restored.restore_outcome(),
        RestoreOutcome::Snapshot(_)
    ));
    assert_eq!(*recording.tails.lock(), [s + 1]);
    restored.wait_for_seq(s2).await.unwrap();
    {
        let state = restored.state();
        let st = state.read();
        assert_eq!(st.len(), 5);
        assert_eq!(st.query().where_status(Status::Done).count(), 2);
    }
    restored.close().unwrap();
    reader.close().unwrap();
    tasks.close().unwrap();
}

async fn next_ids(watch: &mut (impl futures_util::Stream<Item = Vec<Task>> + Unpin)) -> Vec<u64> {
    let rows = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("no emission")
        .expect("watch ended");
    rows.into_iter().map(|t| t.id).collect()
}

// ---- connection loss ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_loss_is_a_typed_error_and_recovers_when_the_server_returns() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let js = connect(&server);
    let log = Arc::new(
        js.open_log(&channel("test/js/outage"), JetStreamLogConfig::default())
            .unwrap(),
    );
    assert_eq!(log.append(b"before").unwrap(), 0);
    let mut tail = log.tail(0);
    assert_eq!(collect(&mut tail, 1).await[0].as_ref().unwrap().seq, 0);

    server.kill();
    let log2 = Arc::clone(&log);
    let err = tokio::task::spawn_blocking(move || log2.append(b"lost?"))
        .await
        .unwrap()
        .unwrap_err();
    match &err {
        RedexError::Unavailable {
            op: "append",
            outcome_unknown: true,
            ..
        } => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        err.to_string().contains("may or may not have been stored"),
        "{err}"
    );
    let log2 = Arc::clone(&log);
    let err = tokio::task::spawn_blocking(move || log2.read_range(0, 1))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RedexError::Unavailable { .. }), "{err:?}");

    // The server returns on the same port and store: appends work again once the client
    // reconnected. The unacknowledged append may have been stored after all (the client
    // sends what it buffered when it reconnects): then the next append is a conflict, as
    // this writer did not know of it, and the one after lands behind it.
    server.restart();
    let log2 = Arc::clone(&log);
    let seq = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conflicts = 0;
        loop {
            match log2.append(b"after") {
                Ok(seq) => return seq,
                Err(RedexError::Unavailable { .. }) if Instant::now() < deadline => {}
                Err(RedexError::Conflict {
                    expected: 1,
                    found: 2,
                    ..
                }) if conflicts == 0 => conflicts += 1,
                Err(e) => panic!("append after the restart failed: {e}"),
            }
        }
    })
    .await
    .unwrap();
    let all = log.read_range(0, 10).unwrap();
    let expected: Vec<(u64, &[u8])> = if seq == 1 {
        vec![(0, b"before"), (1, b"after")]
    } else {
        vec![(0, b"before"), (1, b"lost?"), (2, b"after")]
    };
    assert_eq!(payloads(&all), expected);
    // The tail resumes with no gap and no duplicate.
    let got: Vec<_> = collect(&mut tail, expected.len() - 1)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(payloads(&got), expected[1..]);
}

// ---- a three-server cluster ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_cluster_keeps_every_acknowledged_append_when_the_leader_is_killed() {
    ingest_through_a_leader_kill("test/js/cluster", 1).await;
}

/// Batches pipeline their events: the ones in flight when the leader dies are published
/// again (same message ids) once a new leader answers, and each batch still lands whole,
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_cluster_keeps_every_acknowledged_batch_when_the_leader_is_killed() {
    ingest_through_a_leader_kill("test/js/cluster-batches", 50).await;
}

/// Appends 300 events one by one, or 3000 in batches of `batch`, to an R3 stream, killing its
/// leader a third of the way (between two single appends; while a batch is in flight);
/// every append must succeed and every acknowledged event be in the log, once, at the seq
/// it was acknowledged with.
async fn ingest_through_a_leader_kill(channel_name: &str, batch: u64) {
    let Some(mut servers) = start_cluster() else {
        return;
    };
    let urls: Vec<String> = servers.iter().map(NatsServer::url).collect();
    let js = JetStream::connect(
        JetStreamOptions::new(urls)
            .with_request_timeout(Duration::from_secs(2))
            .with_append_timeout(Duration::from_secs(30)),
    )
    .unwrap();
    let ch = channel(channel_name);
    let config = JetStreamLogConfig::default().with_replicas(3);
    // The cluster elects its meta leader after it formed: retry until the stream exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        match js.open_log(&ch, config.clone()) {
            Ok(log) => break Arc::new(log),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the R3 stream was not created: {e}"),
        }
    };
    let leader = loop {
        if let Some(l) = log.leader().unwrap() {
            break l;
        }
        assert!(Instant::now() < deadline, "no stream leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let n = if batch == 1 { 300 } else { 3000 };
    let (killed_tx, killed_rx) = std::sync::mpsc::channel::<()>();
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let log = Arc::clone(&log);
        let progress = Arc::clone(&progress);
        tokio::task::spawn_blocking(move || {
            let mut acked = Vec::new();
            for start in (0..n).step_by(batch as usize) {
                if batch == 1 && start == n / 3 {
                    // Hand over to the killer, and go on once it killed the leader.
                    killed_rx.recv().unwrap();
                }
                let events: Vec<[u8; 8]> = (start..start + batch).map(u64::to_le_bytes).collect();
                let seqs = if batch == 1 {
                    let seq = log.append(&events[0]).unwrap();
                    seq..seq + 1
                } else {
                    let refs: Vec<&[u8]> = events.iter().map(|e| &e[..]).collect();
                    log.append_batch(&refs).unwrap()
                };
                assert_eq!(seqs.end - seqs.start, batch);
                acked.extend(seqs.zip(start..));
                progress.store(start + batch, std::sync::atomic::Ordering::Relaxed);
            }
            acked
        })
    };
    if batch > 1 {
        // Batches go on back to back: the leader dies with one in flight.
        while progress.load(std::sync::atomic::Ordering::Relaxed) < n / 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let index: usize = leader[1..].parse().unwrap();
    servers[index].kill();
    let _ = killed_tx.send(());
    assert!(
        progress.load(std::sync::atomic::Ordering::Relaxed) < n,
        "the ingest ended before the leader was killed"
    );
    let acked = tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .expect("ingest did not resume")
        .unwrap();

    // Every acknowledged append is in the log, once, at the seq it was acknowledged with.
    // Right after a leader change a read can time out (`Unavailable`, a transient, typed
    // error) while the cluster settles: retry it, within a bound.
    let mut attempts = 0;
    let all = loop {
        match log.read_range(0, u64::MAX) {
            Ok(all) => break all,
            Err(e @ RedexError::Unavailable { .. }) if attempts < 10 => {
                attempts += 1;
                eprintln!("read after the leader change: {e}; retrying");
            }
            Err(e) => panic!("read after the leader change failed: {e}"),
        }
    };
    assert_eq!(all.len() as u64, n);
    assert_eq!(acked.len() as u64, n);
    for (seq, i) in acked {
        assert_eq!(all[seq as usize].payload[..], i.to_le_bytes());
    }
    assert_ne!(log.leader().unwrap().as_deref(), Some(leader.as_str()));
}

// ---- two processes ------------------------------------------------------------------------

/// A `js-tasks-peer` process; its stdout lines arrive on a channel. Killed when dropped.
struct Peer {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Peer {
    fn spawn(url: &str, mode: &str, arg: u64) -> Peer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_js-tasks-peer"))
            .args([url, mode, &arg.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start js-tasks-peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer { child, lines }
    }

    /// The next line, or a panic naming `what` if none comes within 30 s.
    async fn line(&mut self, what: &str) -> String {
        tokio::time::timeout(Duration::from_secs(30), self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("the peer printed no {what} within 30 s"))
            .unwrap_or_else(|| panic!("the peer exited before printing {what}"))
    }

    /// Waits for the process to exit successfully.
    fn finish(mut self) {
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the peer failed: {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn describe(t: &netdb_models::tasks::Task) -> String {
    format!("task {} {:?} {}", t.id, t.status, t.title)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_the_seed_models_through_jetstream() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = connect(&server);
    let db = netdb_models::NetDb::open(&js, 1).unwrap();
    db.catch_up().await.unwrap();

    // The peer watches every task; this process writes three; the peer's watch sees them
    // arrive, without repeats, and then it writes task 1000 itself.
    let mut peer = Peer::spawn(&server.url(), "watch", 3);
    assert_eq!(peer.line("ready").await, "ready");
    for (id, title) in [(1, "plan"), (2, "build"), (3, "ship")] {
        db.tasks().create(id, title).unwrap();
    }
    let mut emissions = Vec::new();
    let wrote = loop {
        let line = peer.line("an emission").await;
        match line.strip_prefix("emission ") {
            Some(ids) => emissions.push(ids.to_owned()),
            None => break line,
        }
    };
    assert_eq!(emissions.last().map(String::as_str), Some("1,2,3"));
    for pair in emissions.windows(2) {
        assert!(
            pair[0].len() < pair[1].len() && pair[1].starts_with(&pair[0]),
            "emissions must only grow, never repeat: {emissions:?}"
        );
    }
    let seq: u64 = wrote
        .strip_prefix("wrote ")
        .unwrap_or_else(|| panic!("expected `wrote <seq>`, got {wrote:?}"))
        .parse()
        .unwrap();
    peer.finish();

    // The peer's write is visible here after wait_for_seq.
    db.tasks().wait_for_seq(seq).await.unwrap();
    let title = db
        .tasks()
        .state()
        .read()
        .find_unique(&1000)
        .map(|t| t.title.clone());
    assert_eq!(title.as_deref(), Some("written by the watcher"));

    // Both handles are single writers. The peer appended after folding this process's
    // three events, and this one after folding the peer's: no conflict either way.
    let seq = db.tasks().complete(1).unwrap();
    assert_eq!(seq, 4);

    // A second peer reads everything after wait_for_seq: the same tasks, the same states.
    let mut reader = Peer::spawn(&server.url(), "read", seq);
    assert_eq!(reader.line("ready").await, "ready");
    db.tasks().wait_for_seq(seq).await.unwrap();
    let expected: Vec<String> = {
        let state = db.tasks().state();
        let rows = state
            .read()
            .query()
            .order_by(netdb_models::tasks::OrderBy::IdAsc)
            .collect();
        rows.iter().map(describe).collect()
    };
    assert_eq!(expected.len(), 4);
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(reader.line("a task").await);
    }
    assert_eq!(got, expected);
    reader.finish();
    db.close().unwrap();
}
