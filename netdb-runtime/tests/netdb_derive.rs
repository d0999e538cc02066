//! `#[derive(NetDb)]` through the runtime's re-export: no other import is needed for the
//! generated code.

mod common;

use common::{Note, NoteEvent, Status, Task, TaskEvent};
use netdb_runtime::cortex::{CortexAdapter, CortexConfig, FoldErrorPolicy};
use netdb_runtime::redex::Redex;

type TasksAdapter = CortexAdapter<Task>;

fn lenient() -> CortexConfig {
    CortexConfig::default().with_fold_error_policy(FoldErrorPolicy::LogAndContinue)
}

#[derive(netdb_runtime::NetDb)]
struct AppDb {
    tasks: TasksAdapter,
    #[netdb(config = lenient)]
    notes: CortexAdapter<Note>,
}

#[tokio::test]
async fn open_write_snapshot_restore_close() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, tasks_seq) = {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let db = AppDb::open(&redex, 7).unwrap();
        let seq = db
            .tasks()
            .append(&TaskEvent::create(1, "draft", Status::Pending, 10, &["a"]))
            .unwrap();
        db.tasks().wait_for_seq(seq).await.unwrap();
        let note = NoteEvent::Put(Note {
            id: "n".into(),
            text: "hello".into(),
        });
        db.notes().append_and_wait(&note).await.unwrap();
        let bundle = db.snapshot().unwrap();
        // Written after the snapshot: restored by folding the log past it.
        let later = db
            .tasks()
            .append(&TaskEvent::create(2, "review", Status::Done, 20, &[]))
            .unwrap();
        db.tasks().wait_for_seq(later).await.unwrap();
        db.close().unwrap();
        db.close().unwrap(); // idempotent
        (bundle, later)
    };

    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let db = AppDb::open_from_snapshot(&redex, 7, &bundle).unwrap();
    db.tasks().wait_for_seq(tasks_seq).await.unwrap();
    let ids: Vec<u64> = db.tasks().state().read().iter().map(|t| t.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(
        db.notes()
            .state()
            .read()
            .find_unique(&"n".to_owned())
            .unwrap()
            .text,
        "hello"
    );
    // The per-field config was used: the notes adapter skips what it cannot apply.
    db.notes().log().append(b"not an event").unwrap();
    let seq = db
        .notes()
        .append(&NoteEvent::Put(Note {
            id: "m".into(),
            text: "after".into(),
        }))
        .unwrap();
    db.notes().wait_for_seq(seq).await.unwrap();
    assert_eq!(db.notes().fold_errors().skipped, 1);
    db.close().unwrap();

    // A plain reopen replays every model's log.
    drop((db, redex));
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let db = AppDb::open(&redex, 7).unwrap();
    db.tasks().wait_for_seq(tasks_seq).await.unwrap();
    assert_eq!(db.tasks().state().read().len(), 2);
}

/// A facade that re-exports the runtime under another name.
mod facade {
    pub use netdb_runtime as rt;
}

#[derive(netdb_runtime::NetDb)]
#[netdb(crate = "facade::rt")]
struct NotesOnly {
    notes: CortexAdapter<Note>,
}

#[tokio::test]
async fn the_runtime_path_can_be_renamed() {
    let redex = Redex::new();
    let db = NotesOnly::open(&redex, 1).unwrap();
    let note = NoteEvent::Put(Note {
        id: "x".into(),
        text: "y".into(),
    });
    db.notes().append_and_wait(&note).await.unwrap();
    let bundle = db.snapshot().unwrap();
    drop(db);
    let again = NotesOnly::open_from_snapshot(&redex, 1, &bundle).unwrap();
    assert_eq!(again.notes().state().read().len(), 1);
    again.close().unwrap();
}
