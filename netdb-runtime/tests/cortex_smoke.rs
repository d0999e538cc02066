//! End-to-end smoke test of the adapter over the hand-written test model.

mod common;

use common::{OrderBy, Status, Task, TaskEvent};
use futures_util::StreamExt;
use netdb_runtime::cortex::CortexAdapter;
use netdb_runtime::redex::Redex;

#[tokio::test]
async fn write_fold_query_watch_snapshot() {
    let redex = Redex::new();
    let tasks = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    let mut pending = tasks.watch().where_status(Status::Pending).stream();
    assert_eq!(pending.next().await.unwrap(), vec![]);

    for i in 0..10u64 {
        let status = if i % 2 == 0 {
            Status::Pending
        } else {
            Status::Done
        };
        tasks
            .append(&TaskEvent::create(
                i,
                &format!("task {i}"),
                status,
                100 - i,
                &["x"],
            ))
            .unwrap();
    }
    let seq = tasks
        .append(&TaskEvent::Rename {
            id: 3,
            title: "renamed".into(),
        })
        .unwrap();
    tasks.wait_for_seq(seq).await.unwrap();

    {
        let state = tasks.state();
        let s = state.read();
        assert_eq!(s.len(), 10);
        assert_eq!(s.find_unique(&3).unwrap().title, "renamed");
        let ids: Vec<u64> = s
            .query()
            .where_status(Status::Pending)
            .order_by(OrderBy::CreatedAsc)
            .limit(3)
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, [8, 6, 4]);
        assert_eq!(s.query().where_tag("x").count(), 10);
    }

    let got = pending.next().await.unwrap();
    assert_eq!(
        got.iter().map(|t| t.id).collect::<Vec<_>>(),
        [0, 2, 4, 6, 8]
    );

    let (bytes, last) = tasks.snapshot().unwrap();
    assert_eq!(last, Some(seq));
    tasks.close().unwrap();
    assert!(pending.next().await.is_none());

    let again = CortexAdapter::<Task>::open_from_snapshot(&Redex::new(), 1, &bytes, last);
    // A fresh Redex has an empty log: the snapshot is ahead of it.
    assert!(again.is_err(), "{again:?}");
}
