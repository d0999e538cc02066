//! The built-in events of a model derived without an events enum: `insert` replaces,
//! `update` sets only the fields its `<M>Patch` sets, `update` / `delete` of a missing id
//! change nothing (and are not fold errors), typed writes return consecutive seqs; and the
//! stored format of the three events is pinned.

use netdb_runtime::cortex::{
    BuiltinEvent, CortexEvent, CortexModel, EventDecodeError, EventMeta, ModelPatch, dispatch,
};
use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    Open,
    Done,
}

/// A string id marked with `#[cortex(id)]`, an unfiltered field, an indexed collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/derive-builtin/tasks")]
pub struct Task {
    #[cortex(id)]
    pub key: String,
    #[cortex(filter)]
    pub title: String,
    #[cortex(filter, index)]
    pub status: Status,
    #[cortex(filter, index)]
    pub tags: Vec<String>,
    pub note: Option<String>,
    #[cortex(filter, index, order_by)]
    pub rank: u32,
}

/// A model without an events enum has the runtime's built-in events (no alias is
/// generated, so a user enum may take the name).
type TaskEvent = BuiltinEvent<Task, TaskPatch>;

// The model's event type is the built-in one.
const _: fn(TaskEvent) -> <Task as CortexModel>::Event = |e| e;

fn task(key: &str, title: &str, status: Status, tags: &[&str], rank: u32) -> Task {
    Task {
        key: key.into(),
        title: title.into(),
        status,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        note: None,
        rank,
    }
}

fn keys<'a>(rows: impl IntoIterator<Item = &'a Task>) -> Vec<&'a str> {
    rows.into_iter().map(|t| t.key.as_str()).collect()
}

#[tokio::test]
async fn insert_replaces_the_row_with_the_same_id() {
    let redex = Redex::new();
    let tasks = TasksAdapter::open(&redex, 1).unwrap();
    tasks
        .insert(task("a", "first", Status::Open, &["x"], 5))
        .unwrap();
    let replacement = Task {
        note: Some("second".into()),
        ..task("a", "second", Status::Done, &["y"], 1)
    };
    let seq = tasks.insert(replacement.clone()).unwrap();
    tasks.wait_for_seq(seq).await.unwrap();
    let shared = tasks.state();
    let st = shared.read();
    assert_eq!(st.len(), 1);
    assert_eq!(st.find_unique(&"a".to_string()), Some(&replacement));
    // The indexes follow the replacement: the old values find nothing.
    assert_eq!(st.query().where_status(Status::Open).count(), 0);
    assert_eq!(st.query().where_tag("x").count(), 0);
    assert_eq!(st.query().where_rank(5).count(), 0);
    assert_eq!(keys(st.query().where_status(Status::Done).iter()), ["a"]);
    assert_eq!(keys(st.query().where_tag("y").iter()), ["a"]);
    assert_eq!(keys(st.query().where_rank_lte(1).iter()), ["a"]);
}

#[tokio::test]
async fn update_sets_only_the_fields_the_patch_sets() {
    let redex = Redex::new();
    let tasks = TasksAdapter::open(&redex, 1).unwrap();
    let before = Task {
        note: Some("keep me".into()),
        ..task("a", "draft", Status::Open, &["x", "y"], 3)
    };
    tasks.insert(before.clone()).unwrap();
    tasks
        .insert(task("b", "other", Status::Open, &["x"], 4))
        .unwrap();
    let patch = TaskPatch::new("a")
        .title("final")
        .tags(vec!["y".into(), "z".into()]);
    // The patch is plain data: the setters fill its public fields.
    assert_eq!(patch.key, "a");
    assert_eq!(patch.title.as_deref(), Some("final"));
    assert_eq!(patch.status, None);
    assert_eq!(patch.note, None);
    assert_eq!(patch.rank, None);
    let seq = tasks.update(patch).unwrap();
    tasks.wait_for_seq(seq).await.unwrap();
    {
        let shared = tasks.state();
        let st = shared.read();
        let after = st.find_unique(&"a".to_string()).unwrap();
        assert_eq!(
            after,
            &Task {
                title: "final".into(),
                tags: vec!["y".into(), "z".into()],
                ..before.clone()
            }
        );
        // The inverted index follows the changed elements only.
        assert_eq!(keys(st.query().where_tag("x").iter()), ["b"]);
        assert_eq!(keys(st.query().where_tag("y").iter()), ["a"]);
        assert_eq!(keys(st.query().where_tag("z").iter()), ["a"]);
        assert_eq!(keys(st.query().where_title_contains("FIN").iter()), ["a"]);
    }

    // Setting an option field to `None` is a change too; an empty patch changes nothing.
    let s1 = tasks
        .update(TaskPatch::new("a").note(None).status(Status::Done))
        .unwrap();
    let s2 = tasks.update(TaskPatch::new("a")).unwrap();
    tasks.wait_for_seq(s2).await.unwrap();
    assert_eq!(s2, s1 + 1);
    let shared = tasks.state();
    let st = shared.read();
    let after = st.find_unique(&"a".to_string()).unwrap();
    assert_eq!(after.note, None);
    assert_eq!(after.status, Status::Done);
    assert_eq!(after.title, "final");
    assert_eq!(keys(st.query().where_status(Status::Open).iter()), ["b"]);
}

#[tokio::test]
async fn update_and_delete_of_a_missing_id_change_nothing() {
    let redex = Redex::new();
    // The default policy stops the fold on an error: a no-op must not be one.
    let tasks = TasksAdapter::open(&redex, 1).unwrap();
    let seq = tasks
        .insert(task("a", "only", Status::Open, &["x"], 1))
        .unwrap();
    tasks.wait_for_seq(seq).await.unwrap();
    let before = tasks.snapshot().unwrap().0;

    let update = TaskEvent::Update(TaskPatch::new("ghost").title("boo").rank(9));
    let s1 = tasks.append_and_wait(&update).await.unwrap();
    let s2 = tasks
        .append_and_wait(&TaskEvent::Delete("ghost".into()))
        .await
        .unwrap();
    let s3 = tasks.update(TaskPatch::new("nobody").rank(1)).unwrap();
    let s4 = tasks.delete("nobody").unwrap();
    tasks.wait_for_seq(s4).await.unwrap();
    assert_eq!([s1, s2, s3, s4], [seq + 1, seq + 2, seq + 3, seq + 4]);

    assert!(tasks.is_folding());
    let errors = tasks.fold_errors();
    assert_eq!(errors.skipped, 0);
    assert!(errors.recent.is_empty() && errors.stopped.is_none());
    assert_eq!(tasks.folded_through_seq(), Some(s4));
    let shared = tasks.state();
    let st = shared.read();
    assert_eq!(st.len(), 1);
    assert_eq!(
        st.find_unique(&"a".to_string()),
        Some(&task("a", "only", Status::Open, &["x"], 1))
    );
    assert_eq!(st.find_unique(&"ghost".to_string()), None);
    assert_eq!(st.query().where_rank(9).count(), 0);
    // Same rows as before the no-ops (the snapshot differs only in its last seq).
    drop(st);
    let (after, last) = tasks.snapshot().unwrap();
    assert_eq!(last, Some(s4));
    assert_eq!(after.len(), before.len());
}

#[tokio::test]
async fn typed_writes_return_consecutive_seqs_and_delete_removes() {
    let redex = Redex::new();
    let tasks = TasksAdapter::open(&redex, 1).unwrap();
    let mut seqs = Vec::new();
    for i in 0..5u32 {
        seqs.push(
            tasks
                .insert(task(&format!("t{i}"), "t", Status::Open, &[], i))
                .unwrap(),
        );
    }
    seqs.push(tasks.update(TaskPatch::new("t1").rank(10)).unwrap());
    seqs.push(tasks.delete("t0").unwrap());
    seqs.push(tasks.delete("t3").unwrap());
    assert_eq!(seqs, (0..8).collect::<Vec<u64>>());
    // Every typed write lands in the log under its seq, with a built-in dispatch code and
    // this build's schema version in the header.
    let stored = tasks.log().read_range(0, 8).unwrap();
    let codes: Vec<u16> = stored
        .iter()
        .map(|ev| {
            let (meta, _) = EventMeta::decode(&ev.payload).unwrap();
            assert_eq!(meta.schema_version, Task::SCHEMA.version);
            assert_eq!(meta.origin_hash, 1);
            meta.dispatch
        })
        .collect();
    use dispatch::{DELETE, INSERT, UPDATE};
    assert_eq!(
        codes,
        [
            INSERT, INSERT, INSERT, INSERT, INSERT, UPDATE, DELETE, DELETE
        ]
    );

    tasks.wait_for_seq(7).await.unwrap();
    let shared = tasks.state();
    let st = shared.read();
    assert_eq!(keys(st.iter()), ["t1", "t2", "t4"]);
    assert_eq!(
        keys(st.query().order_by(TaskOrderBy::RankDesc).iter()),
        ["t1", "t4", "t2"]
    );
}

#[test]
fn the_stored_format_of_built_in_events_is_pinned() {
    let row = Task {
        note: None,
        ..task("k", "x", Status::Done, &["a"], 2)
    };
    let insert = TaskEvent::Insert(row.clone());
    let update = TaskEvent::Update(TaskPatch::new("k").title("x").rank(300));
    let delete = TaskEvent::Delete("k".into());
    let encode = |e: &TaskEvent| {
        // The body is appended after what the buffer holds (the header goes first).
        let mut out = vec![0xEE];
        e.encode_body(&mut out).unwrap();
        assert_eq!(out[0], 0xEE);
        out.split_off(1)
    };

    assert_eq!(insert.dispatch(), 0xF001);
    assert_eq!(update.dispatch(), 0xF002);
    assert_eq!(delete.dispatch(), 0xF003);

    // Insert: the row, in the writer's schema.
    let insert_body = encode(&insert);
    assert_eq!(
        insert_body,
        [1, b'k', 1, b'x', 1, 1, 1, b'a', 0, 2],
        "key, title, status Done = variant 1, tags [\"a\"], note None, rank 2"
    );
    // Update: (id, [(field name, postcard bytes of the value)]), only the fields set, in
    // declaration order.
    let update_body = encode(&update);
    assert_eq!(
        update_body,
        [
            1, b'k', // id
            2,    // two fields
            5, b't', b'i', b't', b'l', b'e', 2, 1, b'x', // title = "x"
            4, b'r', b'a', b'n', b'k', 2, 0xAC, 0x02, // rank = 300
        ]
    );
    // Delete: the id.
    let delete_body = encode(&delete);
    assert_eq!(delete_body, [1, b'k']);

    // Each decodes back, at the current schema version.
    let v = Task::SCHEMA.version;
    let decode = |code, body: &[u8]| TaskEvent::decode_body(code, v, body);
    assert_eq!(decode(dispatch::INSERT, &insert_body).unwrap(), insert);
    assert_eq!(decode(dispatch::UPDATE, &update_body).unwrap(), update);
    assert_eq!(decode(dispatch::DELETE, &delete_body).unwrap(), delete);

    // An unknown code, a bad body, an unknown field, a field that does not decode.
    assert_eq!(
        decode(0x0001, &delete_body).unwrap_err(),
        EventDecodeError::UnknownDispatch(0x0001)
    );
    assert!(matches!(
        decode(dispatch::DELETE, &[]).unwrap_err(),
        EventDecodeError::Body {
            dispatch: 0xF003,
            ..
        }
    ));
    let unknown = [1, b'k', 1, 3, b'z', b'z', b'z', 1, 0];
    assert_eq!(
        decode(dispatch::UPDATE, &unknown).unwrap_err(),
        EventDecodeError::UnknownField {
            field: "zzz".into()
        }
    );
    let bad_rank = [1, b'k', 1, 4, b'r', b'a', b'n', b'k', 1, 0xFF];
    assert!(matches!(
        decode(dispatch::UPDATE, &bad_rank).unwrap_err(),
        EventDecodeError::PatchField { field, version: 1, .. } if field == "rank"
    ));

    // The patch's own encoding agrees: one entry per field set.
    let mut fields = Vec::new();
    TaskPatch::new("k")
        .note(Some("n".into()))
        .encode_fields(&mut |name, bytes| fields.push((name, bytes)))
        .unwrap();
    assert_eq!(fields, [("note", vec![1, 1, b'n'])]);
}
