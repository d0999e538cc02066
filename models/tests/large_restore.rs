//! Restoring a large state whose source wrote its ids out of order (so the source's slots
//! are not in id order, while the snapshot's rows are): the restored database answers every
//! indexed query exactly as the one it was taken from.

use netdb_models::NetDb;
use netdb_models::memories::Memory;
use netdb_models::tasks::{OrderBy, Task, TaskStatus};
use netdb_runtime::redex::Redex;

const N: u64 = 12_000;

fn task_ids<'a>(rows: impl Iterator<Item = &'a Task>) -> Vec<u64> {
    rows.map(|t| t.id).collect()
}

fn memory_ids<'a>(rows: impl Iterator<Item = &'a Memory>) -> Vec<u64> {
    rows.map(|m| m.id).collect()
}

#[tokio::test]
async fn a_large_restore_answers_every_indexed_query_as_the_source() {
    let redex = Redex::new();
    let db = NetDb::open(&redex, 1).unwrap();
    // Ids written out of order, renames, completions and deletes, so the source's slots are
    // not in id order while the snapshot's rows are.
    for i in 0..N {
        let id = (i * 7919) % N + 1;
        db.tasks().create(id, format!("task-{i}")).unwrap();
        db.memories()
            .store(
                id,
                format!("memory-{i}"),
                vec![["alpha", "beta", "gamma"][(i % 3) as usize].to_owned()],
                if i % 5 == 0 { "chat" } else { "bench" },
            )
            .unwrap();
    }
    for id in (1..=N).step_by(3) {
        db.tasks().complete(id).unwrap();
    }
    for id in (2..=N).step_by(11) {
        db.tasks().delete(id).unwrap();
        db.memories().delete(id).unwrap();
    }
    for id in (5..=N).step_by(13) {
        db.tasks().rename(id, format!("renamed-{id}")).unwrap();
        db.memories()
            .retag(id, vec!["delta".into(), "alpha".into()])
            .unwrap();
    }
    db.catch_up().await.unwrap();

    let bundle = db.snapshot().unwrap();
    let back = NetDb::open_from_snapshot(&redex, 1, &bundle).unwrap();
    back.catch_up().await.unwrap();

    let (ta, tb) = (db.tasks().state(), back.tasks().state());
    let (a, b) = (ta.read(), tb.read());
    assert!(a.len() > 10_000);
    assert!(a.iter().eq(b.iter()));
    for s in [TaskStatus::Pending, TaskStatus::Completed] {
        assert_eq!(
            task_ids(a.query().where_status(s).iter()),
            task_ids(b.query().where_status(s).iter())
        );
        assert!(b.query().where_status(s).count() > 3_000);
    }
    let (lo, hi) = (
        a.query()
            .order_by(OrderBy::CreatedAsc)
            .first()
            .unwrap()
            .created_ns,
        a.query()
            .order_by(OrderBy::CreatedDesc)
            .first()
            .unwrap()
            .created_ns,
    );
    let mid = lo + (hi - lo) / 2;
    for q in [
        |t: &netdb_models::tasks::TaskState, m: u64| {
            task_ids(t.query().where_created_ns_gte(m).iter())
        },
        |t: &netdb_models::tasks::TaskState, m: u64| {
            task_ids(
                t.query()
                    .where_created_ns_lt(m)
                    .order_by(OrderBy::CreatedDesc)
                    .limit(50)
                    .iter(),
            )
        },
    ] {
        assert_eq!(q(&a, mid), q(&b, mid));
    }

    drop((a, b));
    let (ma, mb) = (db.memories().state(), back.memories().state());
    let (a, b) = (ma.read(), mb.read());
    assert!(a.iter().eq(b.iter()));
    for tag in ["alpha", "beta", "gamma", "delta", "none"] {
        assert_eq!(
            memory_ids(a.query().where_tag(tag).iter()),
            memory_ids(b.query().where_tag(tag).iter())
        );
    }
    for source in ["chat", "bench"] {
        assert_eq!(
            memory_ids(a.query().where_source(source).iter()),
            memory_ids(b.query().where_source(source).iter())
        );
    }
    assert_eq!(
        memory_ids(a.query().where_created_ns_gte(mid).iter()),
        memory_ids(b.query().where_created_ns_gte(mid).iter())
    );
    drop((a, b));
    back.close().unwrap();
    db.close().unwrap();
}
