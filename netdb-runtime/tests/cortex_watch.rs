mod common;

// Watch semantics over the hand-written test model: the first item, dedup against what the
// subscriber received, latest-wins single slot, order / limit / offset, cancel on drop,
// `snapshot_and_watch`, `folded_seq`, routing, and many idle watchers.
//
// "Nothing was emitted" is proven without sleeping: most tests run on a current-thread
// runtime, where the fold applies a batch (and hands it to the watchers) without yielding,
// so once `wait_for_seq` returns every batch up to that seq has reached the watchers, and a
// poll that returns `Pending` means no result is waiting.

use std::sync::Arc;
use std::time::Duration;

use common::{OrderBy, Status, Task, TaskEvent};
use futures_util::{FutureExt, StreamExt};
use netdb_runtime::cortex::{CortexAdapter, Watch, WatchStream};
use netdb_runtime::redex::Redex;

/// A safety net only: no test relies on it for its result.
const SAFETY: Duration = Duration::from_secs(20);

fn open(redex: &Redex) -> CortexAdapter<Task> {
    CortexAdapter::<Task>::open(redex, 7).unwrap()
}

fn ids(rows: &[Task]) -> Vec<u64> {
    rows.iter().map(|t| t.id).collect()
}

/// The next item of a stream that must yield one.
async fn next(s: &mut WatchStream<Task>) -> Vec<Task> {
    tokio::time::timeout(SAFETY, s.next())
        .await
        .expect("safety timeout: the watch yielded nothing")
        .expect("the watch ended")
}

/// Whether the stream has nothing to yield right now (one poll).
fn idle(s: &mut WatchStream<Task>) -> bool {
    match s.next().now_or_never() {
        None => true,
        Some(Some(rows)) => panic!("unexpected emission: {:?}", ids(&rows)),
        Some(None) => panic!("unexpected end of stream"),
    }
}

/// Appends `event` and waits until the fold (and so every watcher) has seen it.
async fn apply(tasks: &CortexAdapter<Task>, event: TaskEvent) -> u64 {
    let seq = tasks.append(&event).unwrap();
    tokio::time::timeout(SAFETY, tasks.wait_for_seq(seq))
        .await
        .expect("safety timeout: wait_for_seq")
        .unwrap();
    seq
}

async fn apply_all(tasks: &CortexAdapter<Task>, events: &[TaskEvent]) -> u64 {
    let range = tasks.append_batch(events).unwrap();
    let last = range.end - 1;
    tokio::time::timeout(SAFETY, tasks.wait_for_seq(last))
        .await
        .expect("safety timeout: wait_for_seq")
        .unwrap();
    last
}

fn rename(id: u64, title: &str) -> TaskEvent {
    TaskEvent::Rename {
        id,
        title: title.into(),
    }
}

fn set_status(id: u64, status: Status) -> TaskEvent {
    TaskEvent::SetStatus { id, status }
}

fn tag(id: u64, tag: &str) -> TaskEvent {
    TaskEvent::Tag {
        id,
        tag: tag.into(),
    }
}

/// How many holders a row's `Arc` has besides the table and the caller: watchers keep the
/// rows of their last result, and each stream its pending / delivered result.
fn extra_holders(tasks: &CortexAdapter<Task>, id: u64) -> usize {
    // The table holds each row twice (in its slot and by id), plus this handle.
    let row = tasks.state().read().get_arc(&id).expect("row exists");
    Arc::strong_count(&row) - 3
}

// 1. The first item is the current result.

#[tokio::test]
async fn first_item_is_the_current_result() {
    let redex = Redex::new();
    let tasks = open(&redex);

    // Empty table: the first item is an empty result, ready at once.
    let mut all = tasks.watch().stream();
    let first = all
        .next()
        .now_or_never()
        .expect("first item is ready at once");
    assert_eq!(first, Some(vec![]));
    assert!(idle(&mut all));

    apply_all(
        &tasks,
        &[
            TaskEvent::create(3, "c", Status::Pending, 30, &["x"]),
            TaskEvent::create(1, "a", Status::Done, 10, &[]),
            TaskEvent::create(2, "b", Status::Pending, 20, &["x", "y"]),
        ],
    )
    .await;

    let mut pending = tasks.watch().where_status(Status::Pending).stream();
    let first = pending
        .next()
        .now_or_never()
        .expect("ready at once")
        .unwrap();
    assert_eq!(ids(&first), [2, 3]);
    assert_eq!(first[0], *tasks.state().read().find_unique(&2).unwrap());
    assert!(idle(&mut pending));

    // A result that is empty while rows exist is still emitted first.
    let mut archived = tasks.watch().where_status(Status::Archived).stream();
    assert_eq!(next(&mut archived).await, vec![]);
    let mut no_tag = tasks.watch().where_tag("no such tag").stream();
    assert_eq!(next(&mut no_tag).await, vec![]);
    let mut no_title = tasks.watch().where_title_contains("zzz").stream();
    assert_eq!(next(&mut no_title).await, vec![]);
    assert!(idle(&mut archived) && idle(&mut no_tag) && idle(&mut no_title));

    // The stream opened on the empty table now has the three rows.
    assert_eq!(ids(&next(&mut all).await), [1, 2, 3]);
    assert!(idle(&mut all));
}

// 2. Dedup.

#[tokio::test]
async fn events_that_do_not_change_the_result_yield_nothing() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply_all(
        &tasks,
        &[
            TaskEvent::create(1, "one", Status::Pending, 1, &[]),
            TaskEvent::create(2, "two", Status::Done, 2, &[]),
        ],
    )
    .await;
    let mut pending = tasks.watch().where_status(Status::Pending).stream();
    let mut titled = tasks.watch().where_title_contains("on").stream();
    assert_eq!(ids(&next(&mut pending).await), [1]);
    assert_eq!(ids(&next(&mut titled).await), [1]);

    // Irrelevant: a rename of a row outside both filters, a status "change" to the same
    // value, a rename to the same title, an event on a row that does not exist.
    apply(&tasks, rename(2, "deux")).await;
    apply(&tasks, set_status(1, Status::Pending)).await;
    apply(&tasks, rename(1, "one")).await;
    apply(&tasks, set_status(99, Status::Pending)).await;
    apply(&tasks, TaskEvent::Delete { id: 98 }).await;
    assert!(idle(&mut pending));
    assert!(idle(&mut titled));

    // A relevant event: the next item is its result, not a repeat of the first.
    apply(
        &tasks,
        TaskEvent::create(3, "three", Status::Pending, 3, &[]),
    )
    .await;
    assert_eq!(ids(&next(&mut pending).await), [1, 3]);
    assert!(idle(&mut pending));
    apply(&tasks, rename(3, "none")).await;
    assert_eq!(ids(&next(&mut titled).await), [1, 3]);
    assert!(idle(&mut titled));
    // ... and the rename changed a row in `pending`'s result too.
    assert_eq!(next(&mut pending).await[1].title, "none");
}

#[tokio::test]
async fn a_change_and_its_undo_while_not_polling_yield_nothing() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply_all(
        &tasks,
        &[
            TaskEvent::create(1, "one", Status::Pending, 1, &[]),
            TaskEvent::create(2, "two", Status::Pending, 2, &[]),
        ],
    )
    .await;
    let mut pending = tasks.watch().where_status(Status::Pending).stream();
    let a = next(&mut pending).await;
    assert_eq!(ids(&a), [1, 2]);

    // A -> B -> A in separate batches, without polling in between.
    apply(&tasks, set_status(2, Status::Done)).await;
    apply(&tasks, set_status(2, Status::Pending)).await;
    assert!(idle(&mut pending));
    // The same with a value change of a row in the result (B differs from A by value
    // only), and with a row added then deleted.
    apply(&tasks, rename(1, "uno")).await;
    apply(&tasks, rename(1, "one")).await;
    apply(
        &tasks,
        TaskEvent::create(5, "five", Status::Pending, 5, &[]),
    )
    .await;
    apply(&tasks, TaskEvent::Delete { id: 5 }).await;
    assert!(idle(&mut pending));
    // A -> B -> C -> A inside one batch.
    apply_all(
        &tasks,
        &[
            set_status(1, Status::Active),
            TaskEvent::create(6, "six", Status::Pending, 6, &[]),
            TaskEvent::Delete { id: 6 },
            set_status(1, Status::Pending),
        ],
    )
    .await;
    assert!(idle(&mut pending));

    // Still live: the next real change comes through.
    apply(&tasks, set_status(2, Status::Done)).await;
    assert_eq!(ids(&next(&mut pending).await), [1]);
    assert!(idle(&mut pending));
}

#[tokio::test]
async fn dedup_is_against_what_this_subscriber_received() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply(&tasks, TaskEvent::create(1, "one", Status::Pending, 1, &[])).await;

    // `early` has received [1]; `late` has not polled yet.
    let mut early = tasks.watch().where_status(Status::Pending).stream();
    let mut late = tasks.watch().where_status(Status::Pending).stream();
    assert_eq!(ids(&next(&mut early).await), [1]);

    apply(&tasks, TaskEvent::create(2, "two", Status::Pending, 2, &[])).await;
    // `early` now consumes [1, 2]; `late` does not.
    assert_eq!(ids(&next(&mut early).await), [1, 2]);
    apply(&tasks, TaskEvent::Delete { id: 2 }).await;

    // Back to [1]: new for `early` (it last received [1, 2]); for `late`, whose pending
    // first item was replaced by [1, 2] and then by [1], it is its first item, yielded once.
    assert_eq!(ids(&next(&mut early).await), [1]);
    assert_eq!(ids(&next(&mut late).await), [1]);
    assert!(idle(&mut early));
    assert!(idle(&mut late));

    // An unpolled first result that comes back to itself is still yielded once.
    let mut fresh = tasks.watch().where_status(Status::Pending).stream();
    apply(&tasks, set_status(1, Status::Done)).await;
    apply(&tasks, set_status(1, Status::Pending)).await;
    assert_eq!(ids(&next(&mut fresh).await), [1]);
    assert!(idle(&mut fresh));
}

// 3. Latest wins.

#[tokio::test]
async fn a_stalled_consumer_gets_only_the_latest_result() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply(&tasks, TaskEvent::create(1, "t", Status::Pending, 1, &[])).await;
    let mut one = tasks.watch().where_id(1).stream();
    let mut pending = tasks.watch().where_status(Status::Pending).stream();
    assert_eq!(ids(&next(&mut one).await), [1]);
    assert_eq!(ids(&next(&mut pending).await), [1]);

    // 1000 separate batches (each waited for), every one changing both results.
    let mut last = 0;
    for i in 0..1000u64 {
        last = apply(&tasks, rename(1, &format!("t{i}"))).await;
        if i % 2 == 0 {
            apply(
                &tasks,
                TaskEvent::create(1000 + i, "p", Status::Pending, i, &[]),
            )
            .await;
        }
    }
    // Then 1000 events in one batch.
    let burst: Vec<TaskEvent> = (0..1000u64)
        .map(|i| rename(1, &format!("burst {i}")))
        .collect();
    last = last.max(apply_all(&tasks, &burst).await);

    // One poll: the final result. The next poll: nothing (the slot holds one result).
    let got = one.next().now_or_never().expect("ready").unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].title, "burst 999");
    assert_eq!(one.folded_seq(), Some(last));
    assert!(futures_util::poll!(one.next()).is_pending());

    let got = pending.next().now_or_never().expect("ready").unwrap();
    assert_eq!(got.len(), 501);
    assert_eq!(
        got,
        tasks
            .state()
            .read()
            .query()
            .where_status(Status::Pending)
            .collect()
    );
    assert_eq!(pending.folded_seq(), Some(last));
    assert!(futures_util::poll!(pending.next()).is_pending());
}

// 4. Order, limit and offset.

#[tokio::test]
async fn watches_order_limit_and_offset() {
    let redex = Redex::new();
    let tasks = open(&redex);
    // Id order and created order differ.
    apply_all(
        &tasks,
        &[
            TaskEvent::create(5, "e", Status::Pending, 50, &[]),
            TaskEvent::create(3, "c", Status::Done, 90, &[]),
            TaskEvent::create(9, "i", Status::Pending, 10, &[]),
            TaskEvent::create(1, "a", Status::Pending, 70, &[]),
            TaskEvent::create(7, "g", Status::Done, 30, &[]),
        ],
    )
    .await;

    let mut by_default = tasks.watch().stream();
    let mut newest3 = tasks
        .watch()
        .order_by(OrderBy::CreatedDesc)
        .limit(3)
        .stream();
    let mut newest_pending2 = tasks
        .watch()
        .where_status(Status::Pending)
        .order_by(OrderBy::CreatedDesc)
        .limit(2)
        .stream();
    let mut id_desc_window = tasks
        .watch()
        .order_by(OrderBy::IdDesc)
        .offset(1)
        .limit(2)
        .stream();
    let mut oldest_after2 = tasks
        .watch()
        .order_by(OrderBy::CreatedAsc)
        .offset(2)
        .stream();
    let mut titles = tasks.watch().order_by(OrderBy::TitleAsc).limit(2).stream();

    assert_eq!(ids(&next(&mut by_default).await), [1, 3, 5, 7, 9]);
    assert_eq!(ids(&next(&mut newest3).await), [3, 1, 5]);
    assert_eq!(ids(&next(&mut newest_pending2).await), [1, 5]);
    assert_eq!(ids(&next(&mut id_desc_window).await), [7, 5]);
    assert_eq!(ids(&next(&mut oldest_after2).await), [5, 1, 3]);
    assert_eq!(ids(&next(&mut titles).await), [1, 3]);

    // A new newest row, pending.
    apply(&tasks, TaskEvent::create(4, "d", Status::Pending, 100, &[])).await;
    assert_eq!(ids(&next(&mut by_default).await), [1, 3, 4, 5, 7, 9]);
    assert_eq!(ids(&next(&mut newest3).await), [4, 3, 1]);
    assert_eq!(ids(&next(&mut newest_pending2).await), [4, 1]);
    assert_eq!(ids(&next(&mut oldest_after2).await), [5, 1, 3, 4]);
    // Unchanged windows: [7, 5] by id descending after one, the first two titles.
    assert!(idle(&mut id_desc_window));
    assert!(idle(&mut titles));

    // Delete a row the offset skips: the windows after it shift.
    apply(&tasks, TaskEvent::Delete { id: 9 }).await;
    assert_eq!(ids(&next(&mut by_default).await), [1, 3, 4, 5, 7]);
    assert_eq!(ids(&next(&mut id_desc_window).await), [5, 4]);
    assert_eq!(ids(&next(&mut oldest_after2).await), [1, 3, 4]);
    assert!(idle(&mut newest3));
    assert!(idle(&mut newest_pending2));
    assert!(idle(&mut titles));

    // A row beyond the limit moves into it; a title change reorders.
    apply(&tasks, set_status(3, Status::Pending)).await;
    assert_eq!(ids(&next(&mut newest_pending2).await), [4, 3]);
    apply(&tasks, rename(7, "0 first")).await;
    assert_eq!(ids(&next(&mut titles).await), [7, 1]);

    // Every watch agrees with the same query run now.
    let s = tasks.state();
    let s = s.read();
    let q = |o: OrderBy, off: usize, lim: Option<usize>| {
        let q = s.query().order_by(o).offset(off);
        ids(&match lim {
            Some(l) => q.limit(l).collect(),
            None => q.collect(),
        })
    };
    assert_eq!(q(OrderBy::IdAsc, 0, None), [1, 3, 4, 5, 7]);
    assert_eq!(q(OrderBy::CreatedDesc, 0, Some(3)), [4, 3, 1]);
    assert_eq!(q(OrderBy::IdDesc, 1, Some(2)), [5, 4]);
    assert_eq!(q(OrderBy::CreatedAsc, 2, None), [1, 3, 4]);
    assert_eq!(q(OrderBy::TitleAsc, 0, Some(2)), [7, 1]);
}

#[tokio::test]
async fn an_unchanged_ordered_window_yields_nothing() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply_all(
        &tasks,
        &(0..10u64)
            .map(|i| TaskEvent::create(i, "x", Status::Pending, i * 10, &[]))
            .collect::<Vec<_>>(),
    )
    .await;
    let mut newest3 = tasks
        .watch()
        .where_status(Status::Pending)
        .order_by(OrderBy::CreatedDesc)
        .limit(3)
        .stream();
    assert_eq!(ids(&next(&mut newest3).await), [9, 8, 7]);
    // Rows below the window change and leave: the window stays.
    apply(&tasks, rename(0, "y")).await;
    apply(&tasks, set_status(1, Status::Done)).await;
    apply(&tasks, TaskEvent::Delete { id: 2 }).await;
    apply(&tasks, TaskEvent::create(20, "z", Status::Pending, 5, &[])).await;
    assert!(idle(&mut newest3));
    // A row in the window leaves: the next one moves in.
    apply(&tasks, TaskEvent::Delete { id: 8 }).await;
    assert_eq!(ids(&next(&mut newest3).await), [9, 7, 6]);
    assert!(idle(&mut newest3));
}

// 5. Cancel on drop; streams end on close.

#[tokio::test]
async fn dropping_a_stream_unregisters_its_watcher() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply_all(
        &tasks,
        &[
            TaskEvent::create(1, "one", Status::Pending, 1, &["x"]),
            TaskEvent::create(2, "two", Status::Done, 2, &[]),
        ],
    )
    .await;
    assert_eq!(extra_holders(&tasks, 1), 0);

    // A watcher keeps its last result (and its stream the result it yielded or holds).
    let mut s = tasks.watch().where_id(1).stream();
    assert_eq!(extra_holders(&tasks, 1), 2);
    assert_eq!(ids(&next(&mut s).await), [1]);
    assert_eq!(extra_holders(&tasks, 1), 2);
    drop(s);
    assert_eq!(
        extra_holders(&tasks, 1),
        0,
        "the dropped watcher still holds row 1"
    );

    // Many watchers of every kind, created and dropped, polled or not.
    for i in 0..1000u64 {
        let w = match i % 6 {
            0 => tasks.watch().where_id(1),
            1 => tasks.watch().where_status(Status::Pending),
            2 => tasks.watch().where_tag("x"),
            3 => tasks.watch().where_title_contains("on"),
            4 => tasks
                .watch()
                .order_by(OrderBy::CreatedDesc)
                .limit(1)
                .offset(1),
            _ => tasks.watch().order_by(OrderBy::TitleAsc),
        };
        let mut s = w.stream();
        if i % 2 == 0 {
            assert!(!next(&mut s).await.is_empty());
        }
    }
    assert_eq!(extra_holders(&tasks, 1), 0, "dropped watchers leak");
    assert_eq!(extra_holders(&tasks, 2), 0, "dropped watchers leak");

    // Events after the drops still fold, and a new watch works.
    apply(&tasks, rename(1, "uno")).await;
    let mut s = tasks.watch().where_id(1).stream();
    assert_eq!(next(&mut s).await[0].title, "uno");
    apply(&tasks, rename(1, "eins")).await;
    assert_eq!(next(&mut s).await[0].title, "eins");
    drop(s);
    // Dropped with a result pending (not yet yielded).
    let s = tasks.watch().where_id(2).stream();
    apply(&tasks, rename(2, "zwei")).await;
    drop(s);
    assert_eq!(extra_holders(&tasks, 1), 0);
    assert_eq!(extra_holders(&tasks, 2), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_streams_while_events_flow() {
    let redex = Redex::new();
    let tasks = open(&redex);
    // Row 1000 is never touched by the writer.
    apply(
        &tasks,
        TaskEvent::create(1000, "still", Status::Archived, 0, &["x"]),
    )
    .await;

    let writer = {
        let tasks = tasks.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..3000u64 {
                let id = i % 20;
                let event = match i % 5 {
                    0 => TaskEvent::create(id, "row", Status::Pending, i, &["x"]),
                    1 => rename(id, &format!("r{i}")),
                    2 => set_status(id, Status::Done),
                    3 => tag(id, "y"),
                    _ => TaskEvent::Delete { id },
                };
                last = tasks.append(&event).unwrap();
                if i % 64 == 0 {
                    tasks.wait_for_seq(last).await.unwrap();
                }
            }
            last
        })
    };

    for i in 0..2000u64 {
        let w = match i % 5 {
            0 => tasks.watch().where_id(i % 20),
            1 => tasks.watch().where_status(Status::Pending),
            2 => tasks.watch().where_tag("x"),
            3 => tasks.watch().where_title_contains("r1"),
            _ => tasks
                .watch()
                .order_by(OrderBy::CreatedDesc)
                .offset(1)
                .limit(3),
        };
        let mut s = w.stream();
        // The first item is always ready.
        assert!(s.next().now_or_never().is_some());
        if i % 3 == 0 {
            let _ = s.next().now_or_never();
        }
        if i % 7 == 0 {
            tokio::task::yield_now().await;
        }
        drop(s);
    }
    let last = tokio::time::timeout(SAFETY, writer)
        .await
        .expect("safety timeout: writer")
        .unwrap();
    tokio::time::timeout(SAFETY, tasks.wait_for_seq(last))
        .await
        .expect("safety timeout")
        .unwrap();

    // Every watcher is gone: row 1000 (in many of their results) has no extra holder.
    assert_eq!(extra_holders(&tasks, 1000), 0);
    let mut s = tasks.watch().where_tag("x").stream();
    let now = next(&mut s).await;
    assert_eq!(now, tasks.state().read().query().where_tag("x").collect());
    assert!(now.iter().any(|t| t.id == 1000));
}

#[tokio::test]
async fn streams_end_after_close() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply(&tasks, TaskEvent::create(1, "one", Status::Pending, 1, &[])).await;
    let mut polled = tasks.watch().stream();
    assert_eq!(ids(&next(&mut polled).await), [1]);
    let mut with_pending = tasks.watch().where_status(Status::Pending).stream();
    assert_eq!(ids(&next(&mut with_pending).await), [1]);
    apply(&tasks, TaskEvent::create(2, "two", Status::Pending, 2, &[])).await;
    assert_eq!(ids(&next(&mut polled).await), [1, 2]);
    let mut unpolled = tasks.watch().where_id(2).stream();

    tasks.close().unwrap();
    // A waiting consumer sees the end.
    let end = tokio::time::timeout(SAFETY, polled.next())
        .await
        .expect("safety timeout");
    assert_eq!(end, None);
    // A result not yet yielded comes first, then the end.
    assert_eq!(ids(&next(&mut with_pending).await), [1, 2]);
    assert_eq!(with_pending.next().await, None);
    assert_eq!(ids(&next(&mut unpolled).await), [2]);
    assert_eq!(unpolled.next().await, None);
    // The end is sticky.
    assert_eq!(polled.next().await, None);

    // A watch opened after close yields the final state, then ends.
    let mut after = tasks.watch().stream();
    assert_eq!(ids(&next(&mut after).await), [1, 2]);
    assert_eq!(after.next().await, None);
    // The state stays readable; closing again is fine.
    assert_eq!(tasks.state().read().len(), 2);
    tasks.close().unwrap();
}

#[tokio::test]
async fn streams_end_when_the_fold_stops() {
    let redex = Redex::new();
    let tasks = open(&redex); // FoldErrorPolicy::Stop
    apply(&tasks, TaskEvent::create(1, "one", Status::Pending, 1, &[])).await;
    let mut s = tasks.watch().stream();
    assert_eq!(ids(&next(&mut s).await), [1]);
    tasks
        .append_batch(&[
            TaskEvent::create(2, "two", Status::Pending, 2, &[]),
            TaskEvent::Explode {
                id: 3,
                how: common::Explode::Reject,
            },
        ])
        .unwrap();
    // The event before the failure is folded and yielded, then the stream ends.
    assert_eq!(ids(&next(&mut s).await), [1, 2]);
    let end = tokio::time::timeout(SAFETY, s.next())
        .await
        .expect("safety timeout");
    assert_eq!(end, None);
    assert!(!tasks.is_folding());
    // A watch opened now yields the last good state, then ends.
    let mut after = tasks.watch().stream();
    assert_eq!(ids(&next(&mut after).await), [1, 2]);
    assert_eq!(after.next().await, None);
}

#[tokio::test]
async fn streams_end_when_every_adapter_handle_is_dropped() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply(&tasks, TaskEvent::create(1, "one", Status::Pending, 1, &[])).await;
    let mut s = tasks.watch().stream();
    assert_eq!(ids(&next(&mut s).await), [1]);
    let other = tasks.clone();
    drop(tasks);
    assert!(idle(&mut s), "one handle is still alive");
    drop(other);
    let end = tokio::time::timeout(SAFETY, s.next())
        .await
        .expect("safety timeout");
    assert_eq!(end, None);
}

// 6. snapshot_and_watch.

#[tokio::test]
async fn snapshot_and_watch_does_not_repeat_the_snapshot() {
    let redex = Redex::new();
    let tasks = open(&redex);
    let last = apply_all(
        &tasks,
        &[
            TaskEvent::create(1, "one", Status::Pending, 1, &[]),
            TaskEvent::create(2, "two", Status::Done, 2, &[]),
            TaskEvent::create(3, "three", Status::Pending, 3, &[]),
        ],
    )
    .await;

    let (now, mut s) = tasks.snapshot_and_watch(tasks.watch().where_status(Status::Pending));
    assert_eq!(ids(&now), [1, 3]);
    assert_eq!(
        now,
        tasks
            .state()
            .read()
            .query()
            .where_status(Status::Pending)
            .collect()
    );
    assert_eq!(s.folded_seq(), Some(last));
    assert!(idle(&mut s), "the stream repeated the snapshot");

    // Irrelevant, then a change and its undo: still nothing (dedup against the snapshot).
    apply(&tasks, rename(2, "deux")).await;
    apply(&tasks, set_status(1, Status::Done)).await;
    apply(&tasks, set_status(1, Status::Pending)).await;
    assert!(idle(&mut s));

    // The first item is the next change.
    let seq = apply(&tasks, set_status(2, Status::Pending)).await;
    assert_eq!(ids(&next(&mut s).await), [1, 2, 3]);
    assert_eq!(s.folded_seq(), Some(seq));
    assert!(idle(&mut s));

    // Also with an empty snapshot and a plain `Watch`.
    let (now, mut s) = tasks.snapshot_and_watch(Watch::<Task>::from(tasks.watch().where_tag("t")));
    assert!(now.is_empty());
    assert!(idle(&mut s));
    apply(&tasks, tag(3, "t")).await;
    assert_eq!(ids(&next(&mut s).await), [3]);
}

// 7. folded_seq.

#[tokio::test]
async fn folded_seq_reports_the_seq_an_emission_reflects() {
    let redex = Redex::new();
    let tasks = open(&redex);
    let mut s = tasks.watch().where_status(Status::Pending).stream();
    assert_eq!(s.folded_seq(), None, "nothing yielded yet");
    assert_eq!(next(&mut s).await, vec![]);
    assert_eq!(s.folded_seq(), None, "nothing folded yet");

    let seq = apply(&tasks, TaskEvent::create(1, "one", Status::Pending, 1, &[])).await;
    assert_eq!(ids(&next(&mut s).await), [1]);
    assert!(s.folded_seq() >= Some(seq), "{:?} < {seq}", s.folded_seq());

    // Irrelevant events move the fold, not the stream's seq.
    apply(&tasks, TaskEvent::create(2, "two", Status::Done, 2, &[])).await;
    let before = s.folded_seq();
    apply(&tasks, rename(2, "deux")).await;
    assert!(idle(&mut s));
    assert_eq!(s.folded_seq(), before);

    let seq = apply(&tasks, set_status(2, Status::Pending)).await;
    assert_eq!(ids(&next(&mut s).await), [1, 2]);
    assert!(s.folded_seq() >= Some(seq));
    assert!(s.folded_seq() <= tasks.folded_through_seq());

    // A stream opened now reports the seq its first result was taken at.
    let mut t = tasks.watch().stream();
    assert_eq!(t.folded_seq(), None);
    next(&mut t).await;
    assert_eq!(t.folded_seq(), tasks.folded_through_seq());

    // Several batches before the consumer polls: the latest seq.
    apply(&tasks, rename(1, "a")).await;
    apply(&tasks, rename(1, "b")).await;
    let seq = apply(&tasks, rename(1, "c")).await;
    assert_eq!(next(&mut s).await[0].title, "c");
    assert_eq!(s.folded_seq(), Some(seq));
}

// 8. Routing.

#[tokio::test]
async fn routed_and_unrouted_watchers_see_exactly_the_relevant_changes() {
    let redex = Redex::new();
    let tasks = open(&redex);
    apply_all(
        &tasks,
        &[
            TaskEvent::create(1, "alpha", Status::Pending, 1, &[]),
            TaskEvent::create(2, "beta", Status::Active, 2, &["red"]),
            TaskEvent::create(3, "urgent gamma", Status::Done, 3, &[]),
            TaskEvent::create(4, "delta", Status::Pending, 4, &["blue"]),
        ],
    )
    .await;
    let mut by_id = tasks.watch().where_id(1).stream();
    let mut by_status = tasks.watch().where_status(Status::Active).stream();
    let mut by_tag = tasks.watch().where_tag("red").stream();
    let mut unrouted = tasks.watch().where_title_contains("URGENT").stream();
    let mut status_in = Watch::<Task>::from(tasks.watch())
        .filter(|f| f.status_in = Some(vec![Status::Done, Status::Archived, Status::Done]))
        .stream();
    let mut any_tag = Watch::<Task>::from(tasks.watch())
        .filter(|f| f.any_tag = Some(vec!["green".into(), "blue".into()]))
        .stream();
    assert_eq!(ids(&next(&mut by_id).await), [1]);
    assert_eq!(ids(&next(&mut by_status).await), [2]);
    assert_eq!(ids(&next(&mut by_tag).await), [2]);
    assert_eq!(ids(&next(&mut unrouted).await), [3]);
    assert_eq!(ids(&next(&mut status_in).await), [3]);
    assert_eq!(ids(&next(&mut any_tag).await), [4]);

    // Every watcher has nothing more to yield.
    macro_rules! all_idle {
        () => {{
            let all: [(&str, &mut WatchStream<Task>); 6] = [
                ("by_id", &mut by_id),
                ("by_status", &mut by_status),
                ("by_tag", &mut by_tag),
                ("unrouted", &mut unrouted),
                ("status_in", &mut status_in),
                ("any_tag", &mut any_tag),
            ];
            for (name, s) in all {
                if let Some(item) = s.next().now_or_never() {
                    panic!("{name} emitted {:?}", item.map(|r| ids(&r)));
                }
            }
        }};
    }

    // Irrelevant to every watcher.
    apply(&tasks, rename(1, "alpha 2")).await; // by_id fires: row 1 is in its result
    assert_eq!(next(&mut by_id).await[0].title, "alpha 2");
    apply(
        &tasks,
        TaskEvent::create(5, "epsilon", Status::Pending, 5, &["white"]),
    )
    .await;
    apply(&tasks, tag(5, "black")).await;
    apply(&tasks, set_status(5, Status::Pending)).await;
    all_idle!();

    // Row 1 becomes Active: by_id and by_status.
    apply(&tasks, set_status(1, Status::Active)).await;
    assert_eq!(next(&mut by_id).await[0].status, Status::Active);
    assert_eq!(ids(&next(&mut by_status).await), [1, 2]);
    all_idle!();

    // Row 4 gets "red": by_tag; it is also in any_tag's result (changed value).
    apply(&tasks, tag(4, "red")).await;
    assert_eq!(ids(&next(&mut by_tag).await), [2, 4]);
    assert_eq!(next(&mut any_tag).await[0].tags, ["blue", "red"]);
    all_idle!();

    // Row 5 gets "green": any_tag.
    apply(&tasks, tag(5, "green")).await;
    assert_eq!(ids(&next(&mut any_tag).await), [4, 5]);
    all_idle!();

    // A touched row now matches the unrouted watcher (case-insensitive).
    apply(&tasks, rename(4, "Urgent delta")).await;
    assert_eq!(ids(&next(&mut unrouted).await), [3, 4]);
    assert_eq!(next(&mut by_tag).await[1].title, "Urgent delta");
    assert_eq!(next(&mut any_tag).await[0].title, "Urgent delta");
    all_idle!();

    // Rows leave: a status change away, a rename away, a delete.
    apply(&tasks, set_status(2, Status::Done)).await;
    assert_eq!(ids(&next(&mut by_status).await), [1]);
    assert_eq!(next(&mut by_tag).await[0].status, Status::Done);
    assert_eq!(ids(&next(&mut status_in).await), [2, 3]);
    all_idle!();
    apply(&tasks, rename(3, "calm")).await;
    assert_eq!(ids(&next(&mut unrouted).await), [4]);
    assert_eq!(next(&mut status_in).await[1].title, "calm");
    all_idle!();
    apply(&tasks, TaskEvent::Delete { id: 4 }).await;
    assert_eq!(ids(&next(&mut by_tag).await), [2]);
    assert_eq!(ids(&next(&mut unrouted).await), Vec::<u64>::new());
    assert_eq!(ids(&next(&mut any_tag).await), [5]);
    all_idle!();
    apply(&tasks, TaskEvent::Delete { id: 1 }).await;
    assert_eq!(ids(&next(&mut by_id).await), Vec::<u64>::new());
    assert_eq!(ids(&next(&mut by_status).await), Vec::<u64>::new());
    all_idle!();

    // A row comes back under its id, and a row enters status_in by status.
    apply(
        &tasks,
        TaskEvent::create(1, "again", Status::Archived, 9, &[]),
    )
    .await;
    assert_eq!(ids(&next(&mut by_id).await), [1]);
    assert_eq!(ids(&next(&mut status_in).await), [1, 2, 3]);
    all_idle!();
}

// 9. Many idle watchers.

#[tokio::test]
async fn many_idle_watchers_stay_silent_and_the_touched_one_fires() {
    let redex = Redex::new();
    let tasks = open(&redex);
    let rows: Vec<TaskEvent> = (1000..2000u64)
        .map(|k| TaskEvent::create(k, "idle", Status::Pending, k, &["idle"]))
        .collect();
    apply_all(&tasks, &rows).await;

    let mut watchers: Vec<WatchStream<Task>> = (1000..2000u64)
        .map(|k| tasks.watch().where_id(k).stream())
        .collect();
    for (k, w) in (1000..2000u64).zip(&mut watchers) {
        assert_eq!(ids(&next(w).await), [k]);
    }

    // Plenty of changes to other rows, including ids a watcher would route to if it were
    // filed by the wrong field (ids 0..20 share statuses and tags with the idle rows).
    for i in 0..500u64 {
        let id = i % 20;
        let event = match i % 5 {
            0 => TaskEvent::create(id, "busy", Status::Pending, i, &["idle"]),
            1 => rename(id, &format!("busy {i}")),
            2 => set_status(id, Status::Done),
            3 => tag(id, "idle"),
            _ => TaskEvent::Delete { id },
        };
        tasks.append(&event).unwrap();
        if i % 50 == 49 {
            let seq = tasks.append(&rename(id, "sync")).unwrap();
            tasks.wait_for_seq(seq).await.unwrap();
        }
    }
    let seq = tasks.append(&rename(0, "end")).unwrap();
    tasks.wait_for_seq(seq).await.unwrap();
    for w in &mut watchers {
        assert!(idle(w));
    }

    // Touch one watched row: only its watcher fires.
    apply(&tasks, rename(1500, "touched")).await;
    for (k, w) in (1000..2000u64).zip(&mut watchers) {
        if k == 1500 {
            let got = next(w).await;
            assert_eq!(got[0].title, "touched");
            assert_eq!(got[0].id, 1500);
        }
        assert!(idle(w), "watcher {k}");
    }
    // Delete another: only its watcher fires, with an empty result.
    apply(&tasks, TaskEvent::Delete { id: 1001 }).await;
    for (k, w) in (1000..2000u64).zip(&mut watchers) {
        if k == 1001 {
            assert_eq!(next(w).await, vec![]);
        }
        assert!(idle(w), "watcher {k}");
    }
}

// A watcher registered while the fold is about to apply a batch must still see it.

/// Stress: each round appends a row with no watcher registered, then registers a watcher on
/// it while the fold (on another thread) picks the event up. Whatever the interleaving, the
/// watcher must end up with the row. (An early version decided whether to track changes
/// before taking the write lock, and a watcher registered in between missed the batch.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_registered_during_a_batch_sees_it() {
    let redex = Redex::new();
    let tasks = open(&redex);
    let mut jitter = 0x2545_f491_4f6c_dd1du64;
    let mut empty_first = 0;
    for id in 0..60_000u64 {
        let seq = tasks
            .append(&TaskEvent::create(id, "r", Status::Pending, id, &[]))
            .unwrap();
        jitter ^= jitter << 13;
        jitter ^= jitter >> 7;
        jitter ^= jitter << 17;
        for _ in 0..jitter % 2048 {
            std::hint::spin_loop();
        }
        let mut s = tasks.watch().where_id(id).stream();
        let first = s.next().now_or_never().expect("first item ready").unwrap();
        if first.is_empty() {
            empty_first += 1;
            tasks.wait_for_seq(seq).await.unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), s.next())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "watcher on row {id} registered before seq {seq} was folded never \
                         saw it (state has it: {})",
                        tasks.state().read().find_unique(&id).is_some()
                    )
                })
                .unwrap();
            assert_eq!(ids(&got), [id]);
        }
        drop(s);
    }
    eprintln!("{empty_first} rounds registered before the fold");
}
