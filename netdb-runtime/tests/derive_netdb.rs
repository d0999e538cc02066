//! `#[derive(NetDb)]` over two derived adapters (one with built-in events, one with an
//! events enum and a renamed adapter): open, accessors with the typed writes, snapshot,
//! open_from_snapshot, a per-model config, bundles missing a model, close.

use netdb_runtime::cortex::{FoldErrorKind, RestoreOutcome, SnapshotError};
use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/derive-netdb/books")]
pub struct Book {
    pub id: u64,
    #[cortex(filter)]
    pub title: String,
    #[cortex(filter, index)]
    pub shelf: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/derive-netdb/shelves", events = ShelfEvent, adapter = ShelfStore)]
pub struct Shelf {
    pub id: u32,
    #[cortex(filter, order_by)]
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, CortexEvents)]
#[cortex(model = Shelf, adapter = ShelfStore)]
pub enum ShelfEvent {
    #[cortex(dispatch = 1)]
    Build { id: u32, capacity: u32 },
    #[cortex(dispatch = 2)]
    Grow(u32, u32),
}

impl ApplyEvent<Shelf> for ShelfEvent {
    fn apply(self, t: &mut TableMut<'_, Shelf>, _: &EventContext) -> Result<(), ApplyError> {
        match self {
            ShelfEvent::Build { id, capacity } => {
                t.insert(Shelf { id, capacity });
            }
            ShelfEvent::Grow(id, by) => {
                if !t.update(&id, |s| s.capacity += by) {
                    return Err(ApplyError::new(format!("no shelf {id}")));
                }
            }
        }
        Ok(())
    }
}

/// Skips events it cannot apply; replays when the bundle has no usable snapshot.
fn lenient() -> CortexConfig {
    CortexConfig::default()
        .with_fold_error_policy(FoldErrorPolicy::LogAndContinue)
        .with_snapshot_fallback(SnapshotFallback::Replay)
}

#[derive(Debug, NetDb)]
struct Library {
    books: BooksAdapter,
    #[netdb(config = lenient)]
    shelves: ShelfStore,
}

#[derive(Debug, NetDb)]
struct BooksOnly {
    books: BooksAdapter,
}

#[derive(Debug, NetDb)]
struct ShelvesOnly {
    // Without the lenient config the fold would stop at the bad event.
    #[netdb(config = lenient)]
    shelves: ShelfStore,
}

fn book(id: u64, title: &str, shelf: Option<u32>) -> Book {
    Book {
        id,
        title: title.into(),
        shelf,
    }
}

fn titles(db: &Library) -> Vec<String> {
    db.books()
        .state()
        .read()
        .iter()
        .map(|b| b.title.clone())
        .collect()
}

fn capacities(db: &Library) -> Vec<(u32, u32)> {
    db.shelves()
        .state()
        .read()
        .query()
        .order_by(ShelfOrderBy::CapacityDesc)
        .iter()
        .map(|s| (s.id, s.capacity))
        .collect()
}

#[tokio::test]
async fn open_write_snapshot_restore_replay_close() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, at_bundle, last_book, last_shelf) = {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let db = Library::open(&redex, 9).unwrap();
        // The accessors give the generated adapter types, with their typed writes.
        let books: &BooksAdapter = db.books();
        let shelves: &ShelfStore = db.shelves();
        books.insert(book(1, "Dune", Some(1))).unwrap();
        books.insert(book(2, "Emma", None)).unwrap();
        let b = books.update(BookPatch::new(2).shelf(Some(2))).unwrap();
        shelves.build(1, 10).unwrap();
        shelves.build(2, 5).unwrap();
        let s = shelves.grow(2, 20).unwrap();
        books.wait_for_seq(b).await.unwrap();
        shelves.wait_for_seq(s).await.unwrap();
        let bundle = db.snapshot().unwrap();

        // After the bundle: folded on restore. The bad event is skipped (the config).
        books.insert(book(3, "Ulysses", Some(1))).unwrap();
        let last_book = books.delete(1).unwrap();
        shelves.grow(7, 1).unwrap();
        let last_shelf = shelves.grow(1, 1).unwrap();
        books.wait_for_seq(last_book).await.unwrap();
        shelves.wait_for_seq(last_shelf).await.unwrap();
        assert_eq!(titles(&db), ["Emma", "Ulysses"]);
        assert_eq!(capacities(&db), [(2, 25), (1, 11)]);
        let skipped = db.shelves().fold_errors();
        assert_eq!(skipped.skipped, 1);
        assert_eq!(
            skipped.recent[0].kind,
            FoldErrorKind::Rejected("no shelf 7".into())
        );
        {
            let shared = db.books().state();
            let st = shared.read();
            assert_eq!(st.query().where_shelf(1).count(), 1);
            assert_eq!(st.query().where_shelf_some().count(), 2);
        }

        db.close().unwrap();
        db.close().unwrap(); // idempotent
        // Closed: the logs refuse writes, the state stays readable.
        assert!(db.books().insert(book(4, "late", None)).is_err());
        assert!(db.shelves().build(9, 1).is_err());
        assert!(!db.books().is_folding());
        assert_eq!(titles(&db), ["Emma", "Ulysses"]);
        (bundle, (b, s), last_book, last_shelf)
    };

    // Restore: each model from its snapshot, then the events after it.
    {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let db = Library::open_from_snapshot(&redex, 9, &bundle).unwrap();
        for (outcome, seq) in [
            (db.books().restore_outcome(), at_bundle.0),
            (db.shelves().restore_outcome(), at_bundle.1),
        ] {
            assert!(
                matches!(outcome, RestoreOutcome::Snapshot(info) if info.last_seq == Some(seq)),
                "{outcome:?}"
            );
        }
        db.books().wait_for_seq(last_book).await.unwrap();
        db.shelves().wait_for_seq(last_shelf).await.unwrap();
        assert_eq!(titles(&db), ["Emma", "Ulysses"]);
        assert_eq!(capacities(&db), [(2, 25), (1, 11)]);
        assert_eq!(db.shelves().fold_errors().skipped, 1);
        db.close().unwrap();
    }

    // A plain open replays every log.
    {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let db = Library::open(&redex, 9).unwrap();
        assert_eq!(db.books().restore_outcome(), &RestoreOutcome::Fresh);
        db.books().wait_for_seq(last_book).await.unwrap();
        db.shelves().wait_for_seq(last_shelf).await.unwrap();
        assert_eq!(titles(&db), ["Emma", "Ulysses"]);
        assert_eq!(capacities(&db), [(2, 25), (1, 11)]);
        db.close().unwrap();
    }

    // Bundles that lack a model: the lenient one replays, the other is an error.
    {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let books_only = BooksOnly::open(&redex, 9).unwrap();
        books_only.books().wait_for_seq(last_book).await.unwrap();
        let partial = books_only.snapshot().unwrap();
        books_only.close().unwrap();
        drop(books_only);
        let db = Library::open_from_snapshot(&redex, 9, &partial).unwrap();
        assert!(matches!(
            db.books().restore_outcome(),
            RestoreOutcome::Snapshot(_)
        ));
        assert!(matches!(
            db.shelves().restore_outcome(),
            RestoreOutcome::Replayed { reason } if reason.contains("test/derive-netdb/shelves")
        ));
        db.shelves().wait_for_seq(last_shelf).await.unwrap();
        assert_eq!(capacities(&db), [(2, 25), (1, 11)]);
        db.close().unwrap();
        drop((db, redex));

        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let shelves_only = ShelvesOnly::open(&redex, 9).unwrap();
        shelves_only
            .shelves()
            .wait_for_seq(last_shelf)
            .await
            .unwrap();
        let partial = shelves_only.snapshot().unwrap();
        shelves_only.close().unwrap();
        drop(shelves_only);
        match Library::open_from_snapshot(&redex, 9, &partial).unwrap_err() {
            CortexError::Snapshot(SnapshotError::MissingModel { channel }) => {
                assert_eq!(channel, "test/derive-netdb/books");
            }
            other => panic!("expected MissingModel, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bytes_that_are_not_a_bundle_are_refused() {
    let redex = Redex::new();
    let db = BooksOnly::open(&redex, 1).unwrap();
    let s = db.books().insert(book(1, "Dune", None)).unwrap();
    db.books().wait_for_seq(s).await.unwrap();
    // A model's own snapshot is not a bundle, and the error says so.
    let (model_snapshot, _) = db.books().snapshot().unwrap();
    match BooksOnly::open_from_snapshot(&redex, 1, &model_snapshot).unwrap_err() {
        CortexError::Snapshot(SnapshotError::NotABundle { model_snapshot }) => {
            assert!(model_snapshot)
        }
        other => panic!("expected NotABundle, got {other:?}"),
    }
    match BooksOnly::open_from_snapshot(&redex, 1, b"garbage").unwrap_err() {
        CortexError::Snapshot(SnapshotError::NotABundle { model_snapshot }) => {
            assert!(!model_snapshot)
        }
        other => panic!("expected NotABundle, got {other:?}"),
    }
    // A damaged bundle.
    let mut bundle = db.snapshot().unwrap();
    bundle.truncate(bundle.len() - 3);
    assert!(matches!(
        BooksOnly::open_from_snapshot(&redex, 1, &bundle).unwrap_err(),
        CortexError::Snapshot(SnapshotError::Corrupt { .. })
    ));
    // The derived struct still works after the refusals.
    assert_eq!(db.books().state().read().len(), 1);
    db.close().unwrap();
}
