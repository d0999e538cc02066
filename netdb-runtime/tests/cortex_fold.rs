//! The adapter's fold: replay after restart, snapshots, catching up, the error policies,
//! corrupt and newer events, close / drop, waits, start positions, change reports and
//! retention.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use common::{Explode, Status, Task, TaskEvent};
use futures_util::{FutureExt, StreamExt, poll};
use netdb_runtime::cortex::{
    Change, CortexAdapter, CortexConfig, CortexError, CortexEvent, CortexModel, EventDecodeError,
    EventMeta, EventMetaError, FoldError, FoldErrorKind, FoldErrorPolicy, FoldErrors,
    RestoreOutcome, SeqOrTs, StartAt,
};
use netdb_runtime::redex::{ChannelName, Redex, RedexError, RedexFileConfig};

const BOTH_POLICIES: [FoldErrorPolicy; 2] =
    [FoldErrorPolicy::Stop, FoldErrorPolicy::LogAndContinue];

/// A safety net around awaits that must complete: never a means of synchronisation.
async fn safe<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("an await that must complete did not (safety net)")
}

fn chan() -> ChannelName {
    Task::CHANNEL.parse().unwrap()
}

fn create(id: u64) -> TaskEvent {
    TaskEvent::create(id, &format!("task {id}"), Status::Pending, id, &[])
}

fn explode(id: u64, how: Explode) -> TaskEvent {
    TaskEvent::Explode { id, how }
}

fn config(policy: FoldErrorPolicy) -> CortexConfig {
    CortexConfig::default().with_fold_error_policy(policy)
}

fn open(redex: &Redex, policy: FoldErrorPolicy) -> CortexAdapter<Task> {
    CortexAdapter::open_with_config(redex, 1, config(policy)).unwrap()
}

/// The ids of the rows, in order.
fn ids(a: &CortexAdapter<Task>) -> Vec<u64> {
    a.state().read().iter().map(|t| t.id).collect()
}

fn rows(a: &CortexAdapter<Task>) -> Vec<Task> {
    a.state().read().iter().cloned().collect()
}

/// The postcard body of `ev`, as the adapter writes it after the header.
fn body(ev: &TaskEvent) -> Vec<u8> {
    let mut out = Vec::new();
    ev.encode_body(&mut out).unwrap();
    out
}

fn meta(dispatch: u16, schema_version: u16) -> EventMeta {
    EventMeta {
        dispatch,
        schema_version,
        origin_hash: 7,
        seq_or_ts: SeqOrTs::Seq(0),
    }
}

/// `ev` framed exactly as an adapter would frame it.
fn framed(ev: &TaskEvent) -> Vec<u8> {
    meta(ev.dispatch(), Task::SCHEMA.version).encode(&body(ev))
}

/// The fold error inside a `FoldStopped`, checking the channel.
fn stopped(r: Result<(), CortexError>) -> FoldError {
    match r {
        Err(CortexError::FoldStopped { channel, error }) => {
            assert_eq!(channel, Task::CHANNEL);
            error
        }
        other => panic!("expected FoldStopped, got {other:?}"),
    }
}

fn assert_closed(r: Result<(), CortexError>) {
    match r {
        Err(CortexError::Closed { channel }) => assert_eq!(channel, Task::CHANNEL),
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// Appends `good`, then `bad` raw payloads, then `after`; returns the seq of the first bad
/// payload and the last seq.
fn append_around(
    a: &CortexAdapter<Task>,
    good: &[TaskEvent],
    bad: &[u8],
    after: &[TaskEvent],
) -> (u64, u64) {
    for e in good {
        a.append(e).unwrap();
    }
    let bad_seq = a.log().append(bad).unwrap();
    let mut last = bad_seq;
    for e in after {
        last = a.append(e).unwrap();
    }
    (bad_seq, last)
}

/// Checks what each policy does with an event that cannot be applied: `Stop` stops at it
/// (state through the event before, later events not folded, appends still work);
/// `LogAndContinue` skips and counts it and folds the rest. Returns the adapter so callers
/// can check more.
async fn check_policy_on_bad_event(
    policy: FoldErrorPolicy,
    bad: &[u8],
    check_kind: impl Fn(&FoldErrorKind),
) -> CortexAdapter<Task> {
    let redex = Redex::new();
    let a = open(&redex, policy);
    let (bad_seq, last) = append_around(
        &a,
        &[create(1), create(2)],
        bad,
        &[
            create(3),
            TaskEvent::Rename {
                id: 1,
                title: "renamed".into(),
            },
        ],
    );
    assert_eq!((bad_seq, last), (2, 4));
    let r = safe(a.wait_for_seq(last)).await;
    match policy {
        FoldErrorPolicy::Stop => {
            let error = stopped(r);
            assert_eq!(error.seq, bad_seq, "{error}");
            check_kind(&error.kind);
            let errors = a.fold_errors();
            assert_eq!(errors.stopped.as_ref(), Some(&error));
            assert_eq!(errors.skipped, 0);
            assert!(!a.is_folding());
            assert_eq!(a.folded_through_seq(), Some(bad_seq - 1));
            assert_eq!(
                other_ids(&a),
                [1, 2],
                "nothing after the bad event is folded"
            );
            assert_eq!(a.state().read().find_unique(&1).unwrap().title, "task 1");
            // Appends still succeed: the log is the source of truth.
            assert_eq!(a.append(&create(9)).unwrap(), last + 1);
            assert_eq!(a.log().next_seq(), last + 2);
        }
        FoldErrorPolicy::LogAndContinue => {
            r.unwrap();
            let errors = a.fold_errors();
            assert_eq!(errors.stopped, None);
            assert_eq!(errors.skipped, 1);
            assert_eq!(errors.recent.len(), 1);
            assert_eq!(errors.recent[0].seq, bad_seq);
            check_kind(&errors.recent[0].kind);
            assert!(a.is_folding());
            assert_eq!(a.folded_through_seq(), Some(last));
            assert_eq!(a.state().read().folded_through_seq(), Some(last));
            assert_eq!(other_ids(&a), [1, 2, 3]);
            assert_eq!(a.state().read().find_unique(&1).unwrap().title, "renamed");
            // The fold goes on.
            let seq = a.append(&create(9)).unwrap();
            safe(a.wait_for_seq(seq)).await.unwrap();
            assert_eq!(other_ids(&a), [1, 2, 3, 9]);
        }
    }
    a
}

/// The row `Explode` events in these tests use: whether a failed event's insert of it was
/// undone is checked by the `*_is_undone_*` tests, not here.
const EXPLODE_ID: u64 = 77;

/// The ids of the rows, leaving out [`EXPLODE_ID`].
fn other_ids(a: &CortexAdapter<Task>) -> Vec<u64> {
    ids(a).into_iter().filter(|&id| id != EXPLODE_ID).collect()
}

// 1. Replay after restart -------------------------------------------------------------

#[tokio::test]
async fn replay_after_restart_from_a_persistent_dir() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || {
        CortexConfig::default().with_file_config(RedexFileConfig::default().with_persistent(true))
    };

    // Session 1: write and fold.
    let (expected, last) = {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let a = CortexAdapter::<Task>::open_with_config(&redex, 1, cfg()).unwrap();
        for i in 0..200 {
            a.append(&create(i)).unwrap();
        }
        a.append_batch(&[
            TaskEvent::Rename {
                id: 7,
                title: "seven".into(),
            },
            TaskEvent::Tag {
                id: 7,
                tag: "lucky".into(),
            },
            TaskEvent::SetStatus {
                id: 8,
                status: Status::Done,
            },
        ])
        .unwrap();
        let mut last = 0;
        for i in (0..200).step_by(3) {
            last = a.append(&TaskEvent::Delete { id: i }).unwrap();
        }
        safe(a.wait_for_seq(last)).await.unwrap();
        let expected = rows(&a);
        assert_eq!(expected.len(), 200 - 67);
        a.close().unwrap();
        (expected, last)
    };

    // Session 2: replay, check, write more.
    let (expected, last) = {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let a = CortexAdapter::<Task>::open_with_config(&redex, 1, cfg()).unwrap();
        assert_eq!(a.log().next_seq(), last + 1);
        assert_eq!(a.restore_outcome(), &RestoreOutcome::Fresh);
        safe(a.wait_for_seq(last)).await.unwrap();
        assert_eq!(a.folded_through_seq(), Some(last));
        assert_eq!(rows(&a), expected);
        let t7 = a.state().read().find_unique(&7).cloned().unwrap();
        assert_eq!(
            (t7.title.as_str(), &t7.tags[..]),
            ("seven", &["lucky".into()][..])
        );
        assert_eq!(
            a.state().read().find_unique(&8).unwrap().status,
            Status::Done
        );
        assert_eq!(a.fold_errors(), FoldErrors::default());
        let previous = last;
        let last = a.append(&create(1000)).unwrap();
        assert_eq!(last, previous + 1);
        safe(a.wait_for_seq(last)).await.unwrap();
        let expected = rows(&a);
        a.close().unwrap();
        (expected, last)
    };

    // Session 3: both sessions' events replay.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let a = CortexAdapter::<Task>::open_with_config(&redex, 1, cfg()).unwrap();
    safe(a.wait_for_seq(last)).await.unwrap();
    assert_eq!(rows(&a), expected);
    assert!(a.state().read().find_unique(&1000).is_some());
    assert_eq!(a.folded_through_seq(), Some(last));
    a.close().unwrap();
}

// 2. Snapshots fold only newer events --------------------------------------------------

/// The snapshot's state is taken from one log; the adapter restores it over another log
/// whose first events say something else. If any event up to the snapshot's seq were
/// folded again, the state would show it.
#[tokio::test]
async fn open_from_snapshot_does_not_fold_events_up_to_the_snapshot() {
    let source = Redex::new();
    let a = CortexAdapter::<Task>::open(&source, 1).unwrap();
    a.append(&TaskEvent::create(
        1,
        "from snapshot",
        Status::Active,
        1,
        &[],
    ))
    .unwrap();
    a.append(&TaskEvent::create(
        2,
        "from snapshot",
        Status::Active,
        2,
        &[],
    ))
    .unwrap();
    let n = a.append(&TaskEvent::Delete { id: 2 }).unwrap();
    safe(a.wait_for_seq(n)).await.unwrap();
    let (bytes, last) = a.snapshot().unwrap();
    assert_eq!(last, Some(n));

    // Another log, three events (seqs 0..=2) that disagree with the snapshot, then more.
    let target = Redex::new();
    let w = CortexAdapter::<Task>::open_with_config(
        &target,
        2,
        CortexConfig::default().with_start(StartAt::Live),
    )
    .unwrap();
    w.append(&TaskEvent::create(1, "from log", Status::Pending, 1, &[]))
        .unwrap();
    w.append(&TaskEvent::create(3, "from log", Status::Pending, 3, &[]))
        .unwrap();
    w.append(&TaskEvent::Delete { id: 1 }).unwrap();
    let after = w
        .append_batch(&[
            TaskEvent::create(4, "after", Status::Done, 4, &[]),
            TaskEvent::Rename {
                id: 1,
                title: "renamed after".into(),
            },
        ])
        .unwrap();
    assert_eq!(after, 3..5);
    drop(w);

    let b = CortexAdapter::<Task>::open_from_snapshot(&target, 3, &bytes, last).unwrap();
    match b.restore_outcome() {
        RestoreOutcome::Snapshot(info) => {
            assert_eq!(info.last_seq, Some(n));
            assert_eq!(info.rows, 1);
        }
        other => panic!("expected a snapshot restore, got {other:?}"),
    }
    assert_eq!(b.folded_through_seq(), Some(n), "starts at the snapshot");
    safe(b.wait_for_seq(4)).await.unwrap();
    let got = rows(&b);
    assert_eq!(got.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 4]);
    assert_eq!(
        got[0].title, "renamed after",
        "row 1 from the snapshot, renamed"
    );
    assert_eq!(
        got[0].status,
        Status::Active,
        "not the log's create of row 1"
    );
    assert_eq!(got[1].title, "after");
    assert_eq!(b.folded_through_seq(), Some(4));
    assert_eq!(b.fold_errors(), FoldErrors::default());
}

/// Same log: an event before the snapshot that the fold cannot apply would stop a re-fold,
/// and the first change batches name only rows touched after the snapshot.
#[tokio::test]
async fn open_from_snapshot_on_the_same_log_folds_only_newer_events() {
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::LogAndContinue);
    a.append(&create(1)).unwrap();
    a.append(&create(2)).unwrap();
    a.append(&explode(50, Explode::ChangeId)).unwrap();
    let n = a
        .append(&TaskEvent::Rename {
            id: 1,
            title: "one".into(),
        })
        .unwrap();
    safe(a.wait_for_seq(n)).await.unwrap();
    assert_eq!(a.fold_errors().skipped, 1);
    let (bytes, last) = a.snapshot().unwrap();
    assert_eq!(last, Some(n));
    let before = rows(&a);
    drop(a); // the file stays open in `redex`

    // Restore with the default policy (Stop): folding seq 2 again would stop the fold.
    let b = CortexAdapter::<Task>::open_from_snapshot(&redex, 1, &bytes, last).unwrap();
    // On this current-thread runtime the fold has not run yet: this sees every batch.
    let mut changes = b.changes();
    assert_eq!(rows(&b), before);
    let after = b
        .append_batch(&[
            create(3),
            TaskEvent::Tag {
                id: 2,
                tag: "t".into(),
            },
        ])
        .unwrap();
    assert_eq!(after, n + 1..n + 3);
    safe(b.wait_for_seq(after.end - 1)).await.unwrap();
    assert_eq!(b.fold_errors(), FoldErrors::default());
    assert!(b.is_folding());

    let mut touched = BTreeSet::new();
    loop {
        match safe(changes.next()).await.expect("the fold is running") {
            Change::Applied { through_seq, ids } => {
                assert!(through_seq > n, "a batch through {through_seq} <= {n}");
                touched.extend(ids.iter().copied());
                if through_seq == after.end - 1 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        touched,
        BTreeSet::from([2, 3]),
        "rows 1 and 50 were not touched"
    );
    assert_eq!(ids(&b), [1, 2, 3]);
    assert_eq!(b.state().read().find_unique(&1).unwrap().title, "one");
    assert_eq!(b.state().read().find_unique(&2).unwrap().tags, ["t"]);
}

// 3. Catching up with a producer far ahead ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fold_catches_up_with_a_producer_a_million_events_ahead() {
    const PAIRS: u64 = 500_000; // a Create and a SetStatus each: 1 M events
    const LIVE_PAIRS: u64 = 50_000; // appended while the fold catches up
    const CHUNK: u64 = 10_000;

    fn pairs(range: std::ops::Range<u64>) -> Vec<TaskEvent> {
        range
            .flat_map(|id| {
                [
                    TaskEvent::Create {
                        id,
                        title: String::new(),
                        status: Status::Pending,
                        created_ns: id * 3,
                        tags: Vec::new(),
                    },
                    TaskEvent::SetStatus {
                        id,
                        status: Status::Done,
                    },
                ]
            })
            .collect()
    }

    let redex = Redex::new();
    let writer = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        CortexConfig::default().with_start(StartAt::Live),
    )
    .unwrap();
    let mut start = 0;
    while start < PAIRS {
        let r = writer.append_batch(&pairs(start..start + CHUNK)).unwrap();
        assert_eq!(r.start, start * 2);
        start += CHUNK;
    }
    assert_eq!(writer.log().next_seq(), 2 * PAIRS);

    let a = CortexAdapter::<Task>::open(&redex, 2).unwrap();
    let producer = {
        let writer = writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut last = 0;
            let mut start = PAIRS;
            while start < PAIRS + LIVE_PAIRS {
                last = writer
                    .append_batch(&pairs(start..start + CHUNK))
                    .unwrap()
                    .end
                    - 1;
                start += CHUNK;
            }
            last
        })
    };
    let last = safe(producer).await.unwrap();
    let total = PAIRS + LIVE_PAIRS;
    assert_eq!(last, 2 * total - 1);
    safe(a.wait_for_seq(last)).await.unwrap();

    assert_eq!(a.folded_through_seq(), Some(last));
    assert_eq!(a.fold_errors(), FoldErrors::default());
    let state = a.state();
    let s = state.read();
    assert_eq!(s.len() as u64, total, "every Create applied");
    // Every SetStatus applied: no row is left Pending.
    assert_eq!(s.query().where_status(Status::Done).count() as u64, total);
    assert_eq!(s.query().where_status(Status::Pending).count(), 0);
    let (mut id_sum, mut created_sum) = (0u64, 0u64);
    for (expected_id, t) in (0..).zip(s.iter()) {
        assert_eq!(t.id, expected_id);
        assert_eq!(t.status, Status::Done);
        id_sum += t.id;
        created_sum += t.created_ns;
    }
    assert_eq!(id_sum, total * (total - 1) / 2);
    assert_eq!(created_sum, 3 * id_sum);
}

// 4. Stop, and waits after it -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_seq_after_a_stop_returns_the_error_promptly() {
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::Stop);
    let good = a.append(&create(1)).unwrap();
    safe(a.wait_for_seq(good)).await.unwrap();

    // Seqs to come: 1 explodes, 2 and 3 are good.
    let (bad, last) = (good + 1, good + 3);

    // A waiter polled here, before the bad event exists.
    let mut early = pin!(a.wait_for_seq(last));
    assert!(poll!(early.as_mut()).is_pending());
    // And one on another task, which says when it has started waiting.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let spawned = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut w = pin!(a.wait_for_seq(bad));
            assert!(poll!(w.as_mut()).is_pending());
            started_tx.send(()).unwrap();
            w.await
        })
    };
    safe(started_rx).await.unwrap();

    assert_eq!(a.append(&explode(2, Explode::Panic)).unwrap(), bad);
    assert_eq!(a.append(&create(3)).unwrap(), bad + 1);
    assert_eq!(a.append(&create(4)).unwrap(), last);

    let check = |error: &FoldError| {
        assert_eq!(error.seq, bad);
        match &error.kind {
            FoldErrorKind::Panicked(m) => assert!(m.contains("boom on task 2"), "{m}"),
            other => panic!("expected Panicked, got {other:?}"),
        }
    };
    let error = stopped(safe(early).await);
    check(&error);
    let from_spawned = stopped(safe(spawned).await.unwrap());
    assert_eq!(from_spawned, error);

    // Later waits return at once, without the fold doing anything more.
    let again = a
        .wait_for_seq(last)
        .now_or_never()
        .expect("returns at once");
    assert_eq!(stopped(again), error);
    assert_eq!(stopped(a.wait_for_seq(bad).now_or_never().unwrap()), error);
    assert_eq!(
        stopped(a.wait_for_seq(1_000).now_or_never().unwrap()),
        error
    );
    // A seq folded before the stop is still fine.
    a.wait_for_seq(good).now_or_never().unwrap().unwrap();

    let errors = a.fold_errors();
    assert_eq!(errors.stopped, Some(error.clone()));
    assert_eq!(errors.skipped, 0);
    assert!(!a.is_folding());
    assert_eq!(a.folded_through_seq(), Some(good));

    // Appends still succeed, and are not folded.
    let more = a.append(&create(5)).unwrap();
    assert_eq!(more, last + 1);
    assert_eq!(stopped(a.wait_for_seq(more).now_or_never().unwrap()), error);
    // The display names the seq and says what to do.
    let msg = CortexError::FoldStopped {
        channel: Task::CHANNEL,
        error: error.clone(),
    }
    .to_string();
    assert!(msg.contains(&format!("event {bad}")), "{msg}");

    // The state is the state through the last good event.
    assert_eq!(a.state().read().folded_through_seq(), Some(good));
    assert!(a.state().read().find_unique(&1).is_some());
    assert!(a.state().read().find_unique(&3).is_none());
    assert!(a.state().read().find_unique(&4).is_none());
}

/// A failed event is atomic: the row its `apply` inserted before failing is gone, under
/// both policies, for every way of failing.
async fn check_failed_event_is_undone(how: Explode) {
    for policy in BOTH_POLICIES {
        let redex = Redex::new();
        let a = open(&redex, policy);
        a.append(&create(1)).unwrap();
        // Row 2 exists before: the failed event replaces it, then must put it back.
        a.append(&TaskEvent::create(
            2,
            "original",
            Status::Active,
            22,
            &["keep"],
        ))
        .unwrap();
        let bad = a.append(&explode(3, how)).unwrap();
        let bad2 = a.append(&explode(2, how)).unwrap();
        let r = safe(a.wait_for_seq(bad2)).await;
        let state = a.state();
        let s = state.read();
        match policy {
            FoldErrorPolicy::Stop => {
                assert_eq!(stopped(r).seq, bad);
                assert_eq!(s.folded_through_seq(), Some(bad - 1));
            }
            FoldErrorPolicy::LogAndContinue => {
                r.unwrap();
                assert_eq!(a.fold_errors().skipped, 2);
                assert_eq!(s.folded_through_seq(), Some(bad2));
            }
        }
        assert_eq!(
            s.iter().map(|t| t.id).collect::<Vec<_>>(),
            [1, 2],
            "{how:?} / {policy:?}: the half-applied insert of row 3 is still there"
        );
        let t2 = s.find_unique(&2).unwrap();
        assert_eq!(
            (t2.title.as_str(), t2.status),
            ("original", Status::Active),
            "{how:?} / {policy:?}: row 2 was not restored"
        );
        // The indexes were rolled back too.
        assert_eq!(s.query().where_status(Status::Pending).count(), 1);
        assert_eq!(s.query().where_tag("keep").count(), 1);
    }
}

#[tokio::test]
async fn a_panicking_event_is_undone_under_both_policies() {
    check_failed_event_is_undone(Explode::Panic).await;
}

#[tokio::test]
async fn a_rejected_event_is_undone_under_both_policies() {
    check_failed_event_is_undone(Explode::Reject).await;
}

#[tokio::test]
async fn a_misusing_event_is_undone_under_both_policies() {
    check_failed_event_is_undone(Explode::ChangeId).await;
}

// 5. A panicking fold under LogAndContinue ---------------------------------------------

#[tokio::test]
async fn log_and_continue_skips_a_panicking_event() {
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::LogAndContinue);
    a.append(&create(1)).unwrap();
    let bad = a.append(&explode(2, Explode::Panic)).unwrap();
    a.append(&create(3)).unwrap();
    let last = a
        .append(&TaskEvent::Rename {
            id: 1,
            title: "after the panic".into(),
        })
        .unwrap();
    safe(a.wait_for_seq(last)).await.unwrap();

    let errors = a.fold_errors();
    assert_eq!(errors.skipped, 1);
    assert_eq!(errors.stopped, None);
    assert_eq!(errors.recent.len(), 1);
    assert_eq!(errors.recent[0].seq, bad);
    match &errors.recent[0].kind {
        FoldErrorKind::Panicked(m) => assert!(m.contains("boom on task 2"), "{m}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(a.is_folding());
    assert_eq!(a.folded_through_seq(), Some(last));
    {
        let state = a.state();
        let s = state.read();
        assert_eq!(s.find_unique(&1).unwrap().title, "after the panic");
        assert!(s.find_unique(&3).is_some());
    }

    // A second one is counted too, and `recent` keeps them oldest first.
    let bad2 = a.append(&explode(4, Explode::Panic)).unwrap();
    let last = a.append(&create(5)).unwrap();
    safe(a.wait_for_seq(last)).await.unwrap();
    let errors = a.fold_errors();
    assert_eq!(errors.skipped, 2);
    assert_eq!(
        errors.recent.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [bad, bad2]
    );
    assert!(a.state().read().find_unique(&5).is_some());
}

#[tokio::test]
async fn log_and_continue_keeps_the_32_most_recent_errors() {
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::LogAndContinue);
    let mut bad = Vec::new();
    for i in 0..40 {
        bad.push(a.append(&explode(i, Explode::Reject)).unwrap());
    }
    let last = a.append(&create(100)).unwrap();
    safe(a.wait_for_seq(last)).await.unwrap();
    let errors = a.fold_errors();
    assert_eq!(errors.skipped, 40);
    assert_eq!(
        errors.recent.iter().map(|e| e.seq).collect::<Vec<_>>(),
        bad[8..]
    );
}

// 6. Rejected and misusing events under both policies -------------------------------------

#[tokio::test]
async fn rejected_events_under_both_policies() {
    for policy in BOTH_POLICIES {
        check_policy_on_bad_event(
            policy,
            &framed(&explode(EXPLODE_ID, Explode::Reject)),
            |k| match k {
                FoldErrorKind::Rejected(m) => assert_eq!(m, &format!("task {EXPLODE_ID} refused")),
                other => panic!("expected Rejected, got {other:?}"),
            },
        )
        .await;
    }
}

#[tokio::test]
async fn misusing_events_under_both_policies() {
    for policy in BOTH_POLICIES {
        let a = check_policy_on_bad_event(
            policy,
            &framed(&explode(EXPLODE_ID, Explode::ChangeId)),
            |k| match k {
                FoldErrorKind::Misuse(m) => assert!(m.contains("ids are immutable"), "{m}"),
                other => panic!("expected Misuse, got {other:?}"),
            },
        )
        .await;
        // The misuse path undoes the event: neither id 77 nor its changed id is there.
        let s = a.state();
        assert!(s.read().find_unique(&EXPLODE_ID).is_none(), "{policy:?}");
        assert!(
            s.read().find_unique(&(EXPLODE_ID + 1_000_000)).is_none(),
            "{policy:?}"
        );
    }
}

#[tokio::test]
async fn panicking_events_under_both_policies() {
    for policy in BOTH_POLICIES {
        check_policy_on_bad_event(
            policy,
            &framed(&explode(EXPLODE_ID, Explode::Panic)),
            |k| match k {
                FoldErrorKind::Panicked(m) => assert_eq!(m, &format!("boom on task {EXPLODE_ID}")),
                other => panic!("expected Panicked, got {other:?}"),
            },
        )
        .await;
    }
}

// 7. Corrupt events ---------------------------------------------------------------------

#[tokio::test]
async fn garbage_bytes_are_a_header_error_under_both_policies() {
    for policy in BOTH_POLICIES {
        check_policy_on_bad_event(policy, b"garbage", |k| {
            assert_eq!(
                k,
                &FoldErrorKind::Header(EventMetaError::Truncated { len: 7 })
            );
        })
        .await;
    }
}

#[tokio::test]
async fn a_flipped_bit_is_a_checksum_error_under_both_policies() {
    let mut bytes = framed(&create(42));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10; // in the body
    let mut head_flip = framed(&create(43));
    head_flip[24] ^= 0x01; // in the stored checksum
    for bad in [bytes, head_flip] {
        for policy in BOTH_POLICIES {
            let a = check_policy_on_bad_event(policy, &bad, |k| {
                assert!(
                    matches!(
                        k,
                        FoldErrorKind::Header(EventMetaError::ChecksumMismatch { .. })
                    ),
                    "{k:?}"
                );
            })
            .await;
            assert!(a.state().read().find_unique(&42).is_none());
            assert!(a.state().read().find_unique(&43).is_none());
        }
    }
}

#[tokio::test]
async fn a_bad_body_or_unknown_dispatch_is_a_decode_error_under_both_policies() {
    // A valid header over a body that is not a TaskEvent.
    let bad_body = meta(1, Task::SCHEMA.version).encode(&[0xff; 12]);
    // A valid header and body, but a dispatch code the model does not have.
    let unknown = meta(99, Task::SCHEMA.version).encode(&body(&create(5)));
    // A valid header naming Rename over a Create body.
    let mismatched = meta(2, Task::SCHEMA.version).encode(&body(&create(6)));
    for policy in BOTH_POLICIES {
        check_policy_on_bad_event(policy, &bad_body, |k| {
            assert!(
                matches!(
                    k,
                    FoldErrorKind::Decode(EventDecodeError::Body { dispatch: 1, .. })
                ),
                "{k:?}"
            );
        })
        .await;
        let a = check_policy_on_bad_event(policy, &unknown, |k| {
            assert_eq!(
                k,
                &FoldErrorKind::Decode(EventDecodeError::UnknownDispatch(99))
            );
        })
        .await;
        assert!(a.state().read().find_unique(&5).is_none());
        check_policy_on_bad_event(policy, &mismatched, |k| {
            assert_eq!(
                k,
                &FoldErrorKind::Decode(EventDecodeError::UnknownDispatch(2))
            );
        })
        .await;
    }
}

#[tokio::test]
async fn an_empty_or_reserved_header_is_a_header_error() {
    let mut reserved = framed(&create(5));
    reserved[6] = 1; // reserved field, checksum resealed below
    let crc = crc32c::crc32c_append(crc32c::crc32c(&reserved[..24]), &reserved[28..]);
    reserved[24..28].copy_from_slice(&crc.to_le_bytes());
    let zero_dispatch = meta(0, Task::SCHEMA.version).encode(&body(&create(5)));
    for policy in BOTH_POLICIES {
        check_policy_on_bad_event(policy, b"", |k| {
            assert_eq!(
                k,
                &FoldErrorKind::Header(EventMetaError::Truncated { len: 0 })
            );
        })
        .await;
        check_policy_on_bad_event(policy, &reserved, |k| {
            assert!(
                matches!(
                    k,
                    FoldErrorKind::Header(EventMetaError::Reserved { reserved: 1, .. })
                ),
                "{k:?}"
            );
        })
        .await;
        check_policy_on_bad_event(policy, &zero_dispatch, |k| {
            assert_eq!(k, &FoldErrorKind::Header(EventMetaError::InvalidDispatch));
        })
        .await;
    }
}

// 8. Newer schema ----------------------------------------------------------------------

#[tokio::test]
async fn an_event_from_a_newer_schema_is_refused_under_both_policies() {
    let newer = meta(1, Task::SCHEMA.version + 1).encode(&body(&create(5)));
    for policy in BOTH_POLICIES {
        let a = check_policy_on_bad_event(policy, &newer, |k| {
            assert_eq!(
                k,
                &FoldErrorKind::NewerSchema {
                    found: Task::SCHEMA.version + 1,
                    current: Task::SCHEMA.version,
                }
            );
        })
        .await;
        assert!(a.state().read().find_unique(&5).is_none());
    }
    // An older version with the same body shape is folded.
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::Stop);
    let seq = a
        .log()
        .append(&meta(1, Task::SCHEMA.version - 1).encode(&body(&create(5))))
        .unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    assert!(a.state().read().find_unique(&5).is_some());
}

// 9. close() ----------------------------------------------------------------------------

#[tokio::test]
async fn close_is_idempotent_keeps_the_state_and_ends_waits() {
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::Stop);
    let b = a.clone();
    for i in 0..3 {
        a.append(&create(i)).unwrap();
    }
    safe(a.wait_for_seq(2)).await.unwrap();
    let mut watch = a.watch().stream();
    assert_eq!(safe(watch.next()).await.unwrap().len(), 3);
    let mut changes = a.changes();

    // A waiter pending during close.
    let mut pending = pin!(a.wait_for_seq(10));
    assert!(poll!(pending.as_mut()).is_pending());

    a.close().unwrap();
    a.close().unwrap();
    b.close().unwrap();

    assert_closed(safe(pending).await);
    // An unfolded seq: Closed at once.
    assert_closed(a.wait_for_seq(3).now_or_never().expect("returns at once"));
    assert_closed(
        b.wait_for_seq(1_000)
            .now_or_never()
            .expect("returns at once"),
    );
    assert!(matches!(
        a.wait_for_seq_timeout(5, Duration::from_secs(60))
            .now_or_never()
            .expect("returns at once"),
        Err(CortexError::Closed { .. })
    ));
    // A folded seq is still fine.
    a.wait_for_seq(2).now_or_never().unwrap().unwrap();

    // The state stays readable, and a snapshot of it can be taken.
    assert_eq!(ids(&a), [0, 1, 2]);
    assert_eq!(a.folded_through_seq(), Some(2));
    let (_, last) = a.snapshot().unwrap();
    assert_eq!(last, Some(2));
    assert!(!a.is_folding());
    assert_eq!(a.fold_errors(), FoldErrors::default());

    // Appends fail: the log is closed.
    match a.append(&create(9)) {
        Err(CortexError::Log(RedexError::Closed { .. })) => {}
        other => panic!("expected a closed log, got {other:?}"),
    }
    assert!(matches!(
        b.append_batch(&[create(9)]),
        Err(CortexError::Log(RedexError::Closed { .. }))
    ));
    assert!(redex.file(&chan()).is_none(), "closing forgets the file");

    // Watches and change streams end; new ones end at once.
    assert!(safe(watch.next()).await.is_none());
    assert!(safe(changes.next()).await.is_none());
    assert!(safe(a.changes().next()).await.is_none());
    let mut late = a.watch().stream();
    assert_eq!(safe(late.next()).await.unwrap().len(), 3);
    assert!(safe(late.next()).await.is_none());
}

// 10. Dropping every handle ------------------------------------------------------------

#[tokio::test]
async fn dropping_every_handle_stops_the_fold() {
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::Stop);
    let b = a.clone();
    let seq = a.append(&create(1)).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    let state = a.state();
    let mut watch = a.watch().stream();
    let mut changes = a.changes();
    assert_eq!(safe(watch.next()).await.unwrap().len(), 1);

    drop(a);
    // One handle left: still folding.
    let seq = b.append(&create(2)).unwrap();
    safe(b.wait_for_seq(seq)).await.unwrap();
    assert_eq!(safe(watch.next()).await.unwrap().len(), 2);
    assert!(matches!(
        safe(changes.next()).await,
        Some(Change::Applied { through_seq: 1, .. })
    ));

    drop(b);
    // The fold ends: the streams end.
    assert!(safe(watch.next()).await.is_none());
    assert!(safe(changes.next()).await.is_none());

    // The log stays open in its Redex; events appended now are not folded into the old state.
    let file = redex.file(&chan()).expect("the log stays open");
    assert!(!file.is_closed());
    let c = open(&redex, FoldErrorPolicy::Stop);
    let seq = c.append(&create(3)).unwrap();
    safe(c.wait_for_seq(seq)).await.unwrap();
    assert_eq!(ids(&c), [1, 2, 3]);
    assert_eq!(
        state.read().iter().map(|t| t.id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(state.read().folded_through_seq(), Some(1));
}

// 11. Timeouts -------------------------------------------------------------------------

#[tokio::test]
async fn wait_for_seq_timeout_times_out_for_a_seq_never_appended() {
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::Stop);
    let seq = a.append(&create(1)).unwrap();
    safe(a.wait_for_seq_timeout(seq, Duration::from_secs(60)))
        .await
        .unwrap();
    let waited = Duration::from_millis(20);
    match safe(a.wait_for_seq_timeout(100, waited)).await {
        Err(CortexError::Timeout {
            channel,
            seq,
            folded,
            waited: w,
        }) => {
            assert_eq!(
                (channel, seq, folded, w),
                (Task::CHANNEL, 100, Some(0), waited)
            );
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    // The adapter is unaffected.
    let seq = a.append(&create(2)).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    assert_eq!(ids(&a), [1, 2]);
}

// 12. Start positions -----------------------------------------------------------------

#[tokio::test]
async fn start_at_live_and_seq_skip_earlier_events() {
    let redex = Redex::new();
    let w = open(&redex, FoldErrorPolicy::Stop);
    for i in 0..5 {
        w.append(&create(i)).unwrap();
    }
    let live = CortexAdapter::<Task>::open_with_config(
        &redex,
        2,
        CortexConfig::default().with_start(StartAt::Live),
    )
    .unwrap();
    let from3 = CortexAdapter::<Task>::open_with_config(
        &redex,
        3,
        CortexConfig::default().with_start(StartAt::Seq(3)),
    )
    .unwrap();
    // The live fold is past the events before it: waiting for them returns at once.
    assert_eq!(live.folded_through_seq(), Some(4));
    assert_eq!(from3.folded_through_seq(), Some(2));
    safe(live.wait_for_seq(4)).await.unwrap();
    assert!(live.state().read().is_empty());

    let s5 = w.append(&create(10)).unwrap();
    let s6 = w
        .append(&TaskEvent::Rename {
            id: 0,
            title: "zero".into(),
        })
        .unwrap();
    let s7 = w
        .append(&TaskEvent::Rename {
            id: 4,
            title: "four".into(),
        })
        .unwrap();
    assert_eq!((s5, s6, s7), (5, 6, 7));
    for a in [&w, &live, &from3] {
        safe(a.wait_for_seq(s7)).await.unwrap();
        assert_eq!(a.folded_through_seq(), Some(s7));
        assert_eq!(a.fold_errors(), FoldErrors::default());
    }
    assert_eq!(ids(&w), [0, 1, 2, 3, 4, 10]);
    assert_eq!(
        ids(&live),
        [10],
        "the live fold saw only the events after opening"
    );
    assert_eq!(ids(&from3), [3, 4, 10]);
    // The rename of row 0 found no row where its create was skipped.
    assert_eq!(w.state().read().find_unique(&0).unwrap().title, "zero");
    assert_eq!(from3.state().read().find_unique(&4).unwrap().title, "four");
    assert_eq!(live.state().read().find_unique(&4), None);
}

// 13. changes() ------------------------------------------------------------------------

#[tokio::test]
async fn changes_reports_applied_batches_with_ids_and_through_seq() {
    let redex = Redex::new();
    let a = open(&redex, FoldErrorPolicy::Stop);
    let mut changes = a.changes();
    let first = a.append_batch(&[create(2), create(1), create(5)]).unwrap();
    let mut touched = BTreeSet::new();
    let mut through = None;
    while through != Some(first.end - 1) {
        match safe(changes.next()).await.unwrap() {
            Change::Applied { through_seq, ids } => {
                assert!(through < Some(through_seq), "through_seq goes up");
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted: {ids:?}");
                touched.extend(ids.iter().copied());
                through = Some(through_seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(touched, BTreeSet::from([1, 2, 5]));

    // Events that change no row are not reported; the next batch's through_seq covers them.
    a.append(&TaskEvent::Rename {
        id: 99,
        title: "nobody".into(),
    })
    .unwrap();
    a.append(&TaskEvent::Delete { id: 77 }).unwrap();
    a.append(&TaskEvent::Rename {
        id: 1,
        title: "task 1".into(), // the same title: no change
    })
    .unwrap();
    let seq = a
        .append(&TaskEvent::Rename {
            id: 5,
            title: "five".into(),
        })
        .unwrap();
    assert_eq!(seq, 6);
    match safe(changes.next()).await.unwrap() {
        Change::Applied { through_seq, ids } => {
            assert_eq!((through_seq, &ids[..]), (6, &[5][..]));
        }
        other => panic!("unexpected {other:?}"),
    }

    let seq = a
        .append_batch(&[
            TaskEvent::Delete { id: 2 },
            TaskEvent::SetStatus {
                id: 1,
                status: Status::Done,
            },
        ])
        .unwrap();
    let mut touched = BTreeSet::new();
    loop {
        match safe(changes.next()).await.unwrap() {
            Change::Applied { through_seq, ids } => {
                touched.extend(ids.iter().copied());
                if through_seq == seq.end - 1 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(touched, BTreeSet::from([1, 2]));
    a.close().unwrap();
    assert!(safe(changes.next()).await.is_none());
}

// 14. Retention ------------------------------------------------------------------------

/// A log with retention keeping 10 events, 30 creates in it (ids = seqs), swept to 20..30.
fn retained_log(redex: &Redex) -> RedexFileConfig {
    let file_cfg = RedexFileConfig::default().with_retention_max_events(10);
    let file = redex.open_file(&chan(), file_cfg.clone()).unwrap();
    for i in 0..30 {
        assert_eq!(file.append(&framed(&create(i))).unwrap(), i);
    }
    let report = file.sweep_retention().unwrap();
    assert_eq!(report.first_seq, 20);
    assert_eq!(file.first_seq(), 20);
    file_cfg
}

#[tokio::test]
async fn a_fold_starting_below_the_retained_head_records_the_gap_and_goes_on() {
    let redex = Redex::new();
    let file_cfg = retained_log(&redex);
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        config(FoldErrorPolicy::LogAndContinue)
            .with_file_config(file_cfg)
            .with_start(StartAt::Seq(0)),
    )
    .unwrap();
    safe(a.wait_for_seq(29)).await.unwrap();
    assert_eq!(ids(&a), (20..30).collect::<Vec<_>>());
    assert_eq!(a.folded_through_seq(), Some(29));
    let errors = a.fold_errors();
    assert_eq!(errors.skipped, 1);
    assert_eq!(errors.stopped, None);
    assert_eq!(
        errors.recent,
        [FoldError {
            seq: 0,
            kind: FoldErrorKind::Evicted { head: 20 },
        }]
    );
    // Seqs in the gap count as folded past.
    a.wait_for_seq(5).now_or_never().unwrap().unwrap();
    let seq = a.append(&create(100)).unwrap();
    safe(a.wait_for_seq(seq)).await.unwrap();
    assert!(a.state().read().find_unique(&100).is_some());
}

#[tokio::test]
async fn a_fold_starting_below_the_retained_head_stops_under_stop() {
    let redex = Redex::new();
    let file_cfg = retained_log(&redex);
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        config(FoldErrorPolicy::Stop)
            .with_file_config(file_cfg)
            .with_start(StartAt::Seq(0)),
    )
    .unwrap();
    let error = stopped(safe(a.wait_for_seq(29)).await);
    assert_eq!(
        error,
        FoldError {
            seq: 0,
            kind: FoldErrorKind::Evicted { head: 20 },
        }
    );
    assert!(a.state().read().is_empty());
    assert_eq!(a.folded_through_seq(), None);
}

/// The fold falls behind, retention passes it, and it picks up at the new head.
#[tokio::test]
async fn retention_passing_a_running_fold_under_log_and_continue() {
    let redex = Redex::new();
    let file_cfg = RedexFileConfig::default().with_retention_max_events(10);
    let file = redex.open_file(&chan(), file_cfg.clone()).unwrap();
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        config(FoldErrorPolicy::LogAndContinue).with_file_config(file_cfg),
    )
    .unwrap();
    for i in 0..5 {
        a.append(&create(i)).unwrap();
    }
    safe(a.wait_for_seq(4)).await.unwrap();
    // On this current-thread runtime the fold does not run until the next await: it is
    // at seq 5 when retention moves the head to 30.
    for i in 5..40 {
        assert_eq!(a.append(&create(i)).unwrap(), i);
    }
    assert_eq!(file.sweep_retention().unwrap().first_seq, 30);
    safe(a.wait_for_seq(39)).await.unwrap();
    let expected: Vec<u64> = (0..5).chain(30..40).collect();
    assert_eq!(ids(&a), expected);
    assert_eq!(
        a.fold_errors().recent,
        [FoldError {
            seq: 5,
            kind: FoldErrorKind::Evicted { head: 30 },
        }]
    );
    assert_eq!(a.fold_errors().skipped, 1);
}

/// `StartAt::Beginning` is documented as "from the first event still in the log".
#[tokio::test]
async fn start_at_beginning_after_retention_folds_from_the_head() {
    let redex = Redex::new();
    let file_cfg = retained_log(&redex);
    let a = CortexAdapter::<Task>::open_with_config(
        &redex,
        1,
        CortexConfig::default()
            .with_file_config(file_cfg)
            .with_start(StartAt::Beginning),
    )
    .unwrap();
    safe(a.wait_for_seq(29)).await.unwrap();
    assert_eq!(ids(&a), (20..30).collect::<Vec<_>>());
    assert_eq!(a.fold_errors(), FoldErrors::default());
}

#[tokio::test]
async fn catch_up_waits_for_the_replay_of_what_the_log_held() {
    let dir = tempfile::tempdir().unwrap();
    {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let tasks = CortexAdapter::<Task>::open(&redex, 1).unwrap();
        // An empty log: nothing to wait for.
        safe(tasks.catch_up()).await.unwrap();
        let events: Vec<TaskEvent> = (0..500)
            .map(|i| TaskEvent::create(i, "t", Status::Pending, i, &[]))
            .collect();
        tasks.append_batch(&events).unwrap();
        tasks.close().unwrap();
    }
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let tasks = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    safe(tasks.catch_up()).await.unwrap();
    assert_eq!(tasks.state().read().len(), 500);
    assert_eq!(tasks.folded_through_seq(), Some(499));
    tasks.close().unwrap();
    // Everything was folded before the close: still caught up.
    safe(tasks.catch_up()).await.unwrap();
}
