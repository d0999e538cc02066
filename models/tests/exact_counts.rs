//! Counts an index answers without testing rows (`ModelFilter::exact_count`: the filter's
//! only clause is an equality or membership on an indexed field) equal counting the rows.

use netdb_models::NetDb;
use netdb_models::memories::MemoryFilter;
use netdb_models::tasks::{TaskFilter, TaskStatus};
use netdb_runtime::cortex::ModelFilter;
use netdb_runtime::redex::Redex;

#[tokio::test]
async fn index_answered_counts_equal_row_counts() {
    let redex = Redex::new();
    let db = NetDb::open(&redex, 1).unwrap();
    for i in 0..60u64 {
        db.tasks().create(i, format!("task-{i}")).unwrap();
        let tags = match i % 3 {
            0 => vec!["alpha".to_owned()],
            1 => vec!["alpha".to_owned(), "beta".to_owned()],
            _ => vec![],
        };
        db.memories().store(i, "m", tags, "bench").unwrap();
    }
    for i in (0..60u64).step_by(4) {
        db.tasks().complete(i).unwrap();
    }
    for i in (0..60u64).step_by(7) {
        db.tasks().delete(i).unwrap();
        db.memories().retag(i + 1, vec!["beta".into()]).unwrap();
    }
    db.catch_up().await.unwrap();

    let tasks = db.tasks().state();
    let tasks = tasks.read();
    for status in [TaskStatus::Pending, TaskStatus::Completed] {
        let filter = TaskFilter {
            status: Some(status),
            ..Default::default()
        };
        let counted = tasks.iter().filter(|t| t.status == status).count();
        assert!(
            filter.exact_count(tasks.indexes()).is_some(),
            "answered by the index"
        );
        assert_eq!(tasks.count_where(&filter), counted);
        assert_eq!(
            tasks
                .query()
                .where_status(status)
                .offset(2)
                .limit(5)
                .count(),
            counted.saturating_sub(2).min(5)
        );
        // A second clause: no exact answer, the same count.
        let two = TaskFilter {
            status: Some(status),
            title_contains: Some("task".into()),
            ..Default::default()
        };
        assert_eq!(two.exact_count(tasks.indexes()), None);
        assert_eq!(tasks.count_where(&two), counted);
    }

    let memories = db.memories().state();
    let memories = memories.read();
    for tag in ["alpha", "beta", "gamma"] {
        let filter = MemoryFilter {
            tag: Some(tag.into()),
            ..Default::default()
        };
        let counted = memories
            .iter()
            .filter(|m| m.tags.iter().any(|t| t == tag))
            .count();
        assert!(filter.exact_count(memories.indexes()).is_some());
        assert_eq!(memories.count_where(&filter), counted, "tag {tag}");
    }
    // A clause the index cannot answer exactly (`any_tag`) still counts right.
    let any = MemoryFilter {
        any_tag: Some(vec!["alpha".into(), "beta".into()]),
        ..Default::default()
    };
    assert_eq!(any.exact_count(memories.indexes()), None);
    assert_eq!(
        memories.count_where(&any),
        memories.iter().filter(|m| !m.tags.is_empty()).count()
    );
}
