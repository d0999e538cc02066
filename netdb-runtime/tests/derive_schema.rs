//! Schema versions on a persistent log: a v1 model writes inserts, updates and deletes and
//! takes snapshots; a v2 model on the same channel (a field dropped, a field added,
//! `migrate(from = 1, with = v1::Item)`) replays the v1 events and restores the v1
//! snapshots. Without the migration, replay stops with `EventDecodeError::NoMigration` and a
//! snapshot is refused with `SnapshotError::NoMigration`; a migration pinned to the wrong
//! fingerprint is refused for snapshots (`SnapshotError::MigrationMismatch`).

use std::path::Path;

use netdb_runtime::cortex::{
    CortexModel, EventDecodeError, FoldErrorKind, RestoreOutcome, SnapshotError,
};
use netdb_runtime::prelude::*;

const CHANNEL: &str = "test/derive-schema/items";

pub mod v1 {
    use netdb_runtime::CortexModel;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "test/derive-schema/items", schema = 1)]
    pub struct Item {
        pub id: u64,
        #[cortex(filter)]
        pub title: String,
        #[cortex(filter, index)]
        pub qty: u32,
        /// Dropped in v2.
        pub legacy: u32,
    }
}

/// `v1::Item`'s schema fingerprint, as a schema lock file lists it.
const V1_FINGERPRINT: u64 = 0x59fb_9bfa_a166_1301;

/// The v2 struct (a field dropped, `color` added) with the given `#[cortex(...)]` options.
macro_rules! v2_variant {
    ($($options:tt)*) => {
        use netdb_runtime::CortexModel;
        use serde::{Deserialize, Serialize};

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
        #[cortex(channel = "test/derive-schema/items", schema = 2 $($options)*)]
        pub struct Item {
            pub id: u64,
            #[cortex(filter)]
            pub title: String,
            #[cortex(filter, index)]
            pub qty: u32,
            #[cortex(filter, index)]
            pub color: String,
        }

        impl From<super::v1::Item> for Item {
            fn from(old: super::v1::Item) -> Item {
                Item {
                    id: old.id,
                    title: old.title,
                    qty: old.qty,
                    color: "unset".into(),
                }
            }
        }
    };
}

/// A migration without a fingerprint: snapshots of any v1 layout are read.
pub mod v2 {
    v2_variant!(
        ,
        migrate(from = 1, with = super::v1::Item, fingerprint = 0x59fb9bfaa1661301)
    );
}

pub mod v2_unpinned {
    v2_variant!(, migrate(from = 1, with = super::v1::Item));
}

/// No migration at all.
pub mod v2_unmigrated {
    v2_variant!();
}

/// A migration pinned to a fingerprint that is not v1's.
pub mod v2_wrong_fingerprint {
    v2_variant!(, migrate(from = 1, with = super::v1::Item, fingerprint = 0x1234));
}

fn v1_item(id: u64, title: &str, qty: u32, legacy: u32) -> v1::Item {
    v1::Item {
        id,
        title: title.into(),
        qty,
        legacy,
    }
}

fn v2_item(id: u64, title: &str, qty: u32, color: &str) -> v2::Item {
    v2::Item {
        id,
        title: title.into(),
        qty,
        color: color.into(),
    }
}

/// What v1 left: two snapshots, and the last seq it wrote.
struct History {
    /// Taken at seq 5; events 6..=9 follow it.
    mid: (Vec<u8>, Option<u64>),
    /// Taken at seq 9, the last event.
    end: (Vec<u8>, Option<u64>),
}

const LAST_V1_SEQ: u64 = 9;

/// Rows of v1's state at the mid snapshot, migrated.
fn mid_rows() -> Vec<v2::Item> {
    vec![v2_item(1, "a2", 1, "unset"), v2_item(2, "b", 20, "unset")]
}

/// Rows of v1's final state, migrated.
fn end_rows() -> Vec<v2::Item> {
    vec![v2_item(2, "b2", 20, "unset"), v2_item(4, "d", 4, "unset")]
}

async fn write_v1(dir: &Path) -> History {
    let redex = Redex::with_persistent_dir(dir).unwrap();
    let items = v1::ItemsAdapter::open(&redex, 1).unwrap();
    let seqs = [
        items.insert(v1_item(1, "a", 1, 10)).unwrap(),
        items.insert(v1_item(2, "b", 2, 20)).unwrap(),
        items.insert(v1_item(3, "c", 3, 30)).unwrap(),
        // An update naming a field v2 keeps and one it drops.
        items
            .update(v1::ItemPatch::new(1).title("a2").legacy(11))
            .unwrap(),
        items.update(v1::ItemPatch::new(2).qty(20)).unwrap(),
        items.delete(3).unwrap(),
    ];
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
    items.wait_for_seq(5).await.unwrap();
    let mid = items.snapshot().unwrap();
    assert_eq!(mid.1, Some(5));
    items.insert(v1_item(4, "d", 4, 40)).unwrap();
    items.update(v1::ItemPatch::new(2).title("b2")).unwrap();
    items.delete(1).unwrap();
    let last = items.update(v1::ItemPatch::new(9).title("ghost")).unwrap();
    assert_eq!(last, LAST_V1_SEQ);
    items.wait_for_seq(last).await.unwrap();
    let rows: Vec<v1::Item> = items.state().read().iter().cloned().collect();
    assert_eq!(rows, [v1_item(2, "b2", 20, 20), v1_item(4, "d", 4, 40)]);
    let end = items.snapshot().unwrap();
    assert_eq!(end.1, Some(LAST_V1_SEQ));
    items.close().unwrap();
    History { mid, end }
}

fn rows<M: CortexModel>(adapter: &CortexAdapter<M>) -> Vec<M> {
    adapter.state().read().iter().cloned().collect()
}

#[test]
fn the_schemas_and_the_pinned_fingerprint() {
    assert_eq!(v1::Item::SCHEMA.version, 1);
    assert_eq!(v2::Item::SCHEMA.version, 2);
    assert_eq!(v1::Item::CHANNEL, CHANNEL);
    assert_eq!(v2::Item::CHANNEL, CHANNEL);
    // The literal in `migrate(..., fingerprint = ...)` is v1's fingerprint.
    assert_eq!(v1::Item::SCHEMA.fingerprint, V1_FINGERPRINT);
    assert_ne!(v2::Item::SCHEMA.fingerprint, V1_FINGERPRINT);
    let names: Vec<(&str, &str)> = v2::Item::SCHEMA
        .fields
        .iter()
        .map(|f| (f.name, f.ty))
        .collect();
    assert_eq!(
        names,
        [
            ("id", "u64"),
            ("title", "String"),
            ("qty", "u32"),
            ("color", "String")
        ]
    );
    let migrations = v2::Item::migrations();
    assert_eq!(migrations.len(), 1);
    assert_eq!(migrations[0].from_version, 1);
    assert_eq!(migrations[0].from_fingerprint, Some(V1_FINGERPRINT));
    assert_eq!(v2_unpinned::Item::migrations()[0].from_fingerprint, None);
    assert_eq!(
        v2_wrong_fingerprint::Item::migrations()[0].from_fingerprint,
        Some(0x1234)
    );
    assert!(v2_unmigrated::Item::migrations().is_empty());
    assert!(v1::Item::migrations().is_empty());
    // The migration decodes a v1 row into a v2 row through `From`.
    let v1_row = postcard::to_allocvec(&v1_item(5, "e", 6, 7)).unwrap();
    assert_eq!(
        (migrations[0].decode_row)(&v1_row).unwrap(),
        v2_item(5, "e", 6, "unset")
    );
}

#[tokio::test]
async fn v2_replays_the_v1_log() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(dir.path()).await;

    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let items = v2::ItemsAdapter::open(&redex, 2).unwrap();
    items.wait_for_seq(LAST_V1_SEQ).await.unwrap();
    // Old inserts went through the migration; old updates named their fields (the dropped
    // one ignored, the new one untouched); old deletes applied.
    assert_eq!(rows(&*items), end_rows());
    assert_eq!(items.fold_errors().skipped, 0);
    {
        let shared = items.state();
        let st = shared.read();
        assert_eq!(st.query().where_qty(20).first().unwrap().id, 2);
        assert_eq!(st.query().where_color("unset").count(), 2);
    }
    // v2 writes on top, including an update of the new field.
    items.update(v2::ItemPatch::new(2).color("blue")).unwrap();
    items.insert(v2_item(5, "e", 5, "red")).unwrap();
    let last = items.update(v2::ItemPatch::new(4).qty(44)).unwrap();
    items.wait_for_seq(last).await.unwrap();
    let expected = vec![
        v2_item(2, "b2", 20, "blue"),
        v2_item(4, "d", 44, "unset"),
        v2_item(5, "e", 5, "red"),
    ];
    assert_eq!(rows(&*items), expected);
    items.close().unwrap();
    drop((items, redex));

    // A log of both versions replays into the same state.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let items = v2::ItemsAdapter::open(&redex, 2).unwrap();
    items.wait_for_seq(last).await.unwrap();
    assert_eq!(rows(&*items), expected);
    assert_eq!(items.state().read().query().where_color("blue").count(), 1);
    items.close().unwrap();
    drop((items, redex));

    // The old build cannot read the new events: its fold stops at the first one.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let old = v1::ItemsAdapter::open(&redex, 1).unwrap();
    let err = old.wait_for_seq(last).await.unwrap_err();
    let CortexError::FoldStopped { error, .. } = err else {
        panic!("expected FoldStopped, got {err:?}");
    };
    assert_eq!(error.seq, LAST_V1_SEQ + 1);
    assert_eq!(
        error.kind,
        FoldErrorKind::NewerSchema {
            found: 2,
            current: 1
        }
    );
    assert_eq!(
        rows(&*old),
        [v1_item(2, "b2", 20, 20), v1_item(4, "d", 4, 40)]
    );
    old.close().unwrap();
}

#[tokio::test]
async fn v2_restores_v1_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let history = write_v1(dir.path()).await;

    // The final snapshot: nothing left to fold.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let (bytes, last_seq) = &history.end;
    let items = v2::ItemsAdapter::open_from_snapshot(&redex, 2, bytes, *last_seq).unwrap();
    let RestoreOutcome::Snapshot(info) = items.restore_outcome().clone() else {
        panic!("expected a snapshot restore: {:?}", items.restore_outcome());
    };
    assert_eq!(info.schema_version, 1);
    assert_eq!(info.fingerprint, V1_FINGERPRINT);
    assert_eq!(info.last_seq, Some(LAST_V1_SEQ));
    assert_eq!(info.rows, 2);
    assert_eq!(items.folded_through_seq(), Some(LAST_V1_SEQ));
    assert_eq!(rows(&*items), end_rows());
    // The indexes were built from the migrated rows.
    assert_eq!(items.state().read().query().where_qty(4).count(), 1);
    assert_eq!(items.state().read().query().where_color("unset").count(), 2);
    items.close().unwrap();
    drop((items, redex));

    // The mid snapshot, then the v1 events after it.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let (bytes, last_seq) = &history.mid;
    let items = v2::ItemsAdapter::open_from_snapshot(&redex, 2, bytes, *last_seq).unwrap();
    assert!(matches!(
        items.restore_outcome(),
        RestoreOutcome::Snapshot(info) if info.last_seq == Some(5) && info.rows == 2
    ));
    items.wait_for_seq(LAST_V1_SEQ).await.unwrap();
    assert_eq!(rows(&*items), end_rows());
    items.close().unwrap();
    drop((items, redex));

    // A migration without a fingerprint reads the snapshot too.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let items = v2_unpinned::ItemsAdapter::open_from_snapshot(&redex, 2, bytes, *last_seq).unwrap();
    // Before the fold runs (current-thread runtime): exactly the migrated snapshot rows.
    let restored: Vec<(u64, String, String)> = items
        .state()
        .read()
        .iter()
        .map(|r| (r.id, r.title.clone(), r.color.clone()))
        .collect();
    let want: Vec<(u64, String, String)> = mid_rows()
        .into_iter()
        .map(|r| (r.id, r.title, r.color))
        .collect();
    assert_eq!(restored, want);
    items.wait_for_seq(LAST_V1_SEQ).await.unwrap();
    assert_eq!(items.state().read().len(), 2);
    items.close().unwrap();
}

#[tokio::test]
async fn v2_without_the_migration_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let history = write_v1(dir.path()).await;

    // Replay: the fold stops at the first v1 insert.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let items = v2_unmigrated::ItemsAdapter::open(&redex, 2).unwrap();
    let err = items.wait_for_seq(LAST_V1_SEQ).await.unwrap_err();
    let message = err.to_string();
    let CortexError::FoldStopped { error, .. } = err else {
        panic!("expected FoldStopped, got {err:?}");
    };
    assert_eq!(error.seq, 0);
    assert_eq!(
        error.kind,
        FoldErrorKind::Decode(EventDecodeError::NoMigration {
            found: 1,
            current: 2
        })
    );
    assert!(
        message.contains("migrate(from = 1"),
        "the error says what to add: {message}"
    );
    assert_eq!(items.fold_errors().stopped, Some(error));
    assert!(items.state().read().is_empty());
    items.close().unwrap();
    drop((items, redex));

    // Skipping what cannot be decoded: only the inserts need the migration; the updates
    // and deletes decode, and find no rows.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let config = CortexConfig::default().with_fold_error_policy(FoldErrorPolicy::LogAndContinue);
    let items = v2_unmigrated::ItemsAdapter::open_with_config(&redex, 2, config).unwrap();
    items.wait_for_seq(LAST_V1_SEQ).await.unwrap();
    let errors = items.fold_errors();
    let skipped: Vec<u64> = errors.recent.iter().map(|e| e.seq).collect();
    assert_eq!(skipped, [0, 1, 2, 6]);
    assert!(items.state().read().is_empty());
    items.close().unwrap();
    drop((items, redex));

    // Snapshot: refused, with the versions.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let (bytes, last_seq) = &history.end;
    let err =
        v2_unmigrated::ItemsAdapter::open_from_snapshot(&redex, 2, bytes, *last_seq).unwrap_err();
    match err {
        CortexError::Snapshot(SnapshotError::NoMigration {
            channel,
            found,
            current,
        }) => {
            assert_eq!((channel.as_str(), found, current), (CHANNEL, 1, 2));
        }
        other => panic!("expected SnapshotError::NoMigration, got {other:?}"),
    }
    // With the replay fallback, the snapshot is set aside and the replay stops as above.
    let config = CortexConfig::default().with_snapshot_fallback(SnapshotFallback::Replay);
    let items = v2_unmigrated::ItemsAdapter::open_from_snapshot_with_config(
        &redex, 2, bytes, *last_seq, config,
    )
    .unwrap();
    assert!(matches!(
        items.restore_outcome(),
        RestoreOutcome::Replayed { reason } if reason.contains("no migration")
    ));
    assert!(matches!(
        items.wait_for_seq(LAST_V1_SEQ).await.unwrap_err(),
        CortexError::FoldStopped { .. }
    ));
    items.close().unwrap();
}

#[tokio::test]
async fn a_migration_pinned_to_another_fingerprint_refuses_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let history = write_v1(dir.path()).await;

    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    for (bytes, last_seq) in [&history.mid, &history.end] {
        let err =
            v2_wrong_fingerprint::ItemsAdapter::open_from_snapshot(&redex, 2, bytes, *last_seq)
                .unwrap_err();
        match err {
            CortexError::Snapshot(SnapshotError::MigrationMismatch {
                channel,
                version,
                expected,
                found,
            }) => {
                assert_eq!(channel, CHANNEL);
                assert_eq!(version, 1);
                assert_eq!(expected, 0x1234);
                assert_eq!(found, V1_FINGERPRINT);
            }
            other => panic!("expected SnapshotError::MigrationMismatch, got {other:?}"),
        }
    }
    // Events carry no fingerprint: the log replays through the same migration.
    let items = v2_wrong_fingerprint::ItemsAdapter::open(&redex, 2).unwrap();
    items.wait_for_seq(LAST_V1_SEQ).await.unwrap();
    let got: Vec<(u64, String, u32, String)> = rows(&*items)
        .into_iter()
        .map(|r| (r.id, r.title, r.qty, r.color))
        .collect();
    let want: Vec<(u64, String, u32, String)> = end_rows()
        .into_iter()
        .map(|r| (r.id, r.title, r.qty, r.color))
        .collect();
    assert_eq!(got, want);
    items.close().unwrap();
}

/// A field renamed between versions: `renamed_from` lets old update events still set it.
pub mod rename_v1 {
    use netdb_runtime::CortexModel;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "test/derive-schema/renamed", schema = 1)]
    pub struct Contact {
        pub id: u64,
        pub phone: String,
    }
}

pub mod rename_v2 {
    use netdb_runtime::CortexModel;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(
        channel = "test/derive-schema/renamed",
        schema = 2,
        migrate(from = 1, with = super::rename_v1::Contact)
    )]
    pub struct Contact {
        pub id: u64,
        #[cortex(renamed_from = "phone")]
        pub mobile: String,
        pub email: String,
    }

    impl From<super::rename_v1::Contact> for Contact {
        fn from(old: super::rename_v1::Contact) -> Contact {
            Contact {
                id: old.id,
                mobile: old.phone,
                email: String::new(),
            }
        }
    }
}

#[tokio::test]
async fn an_old_update_of_a_renamed_field_sets_it_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let contacts = rename_v1::ContactsAdapter::open(&redex, 1).unwrap();
        contacts
            .insert(rename_v1::Contact {
                id: 1,
                phone: "555-0100".into(),
            })
            .unwrap();
        contacts
            .update(rename_v1::ContactPatch::new(1).phone("555-0199"))
            .unwrap();
        contacts.catch_up().await.unwrap();
        contacts.close().unwrap();
    }
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let contacts = rename_v2::ContactsAdapter::open(&redex, 1).unwrap();
    contacts.catch_up().await.unwrap();
    let row = contacts.state().read().find_unique(&1).cloned().unwrap();
    assert_eq!(
        row.mobile, "555-0199",
        "the v1 update of `phone` set `mobile`"
    );
    contacts.close().unwrap();
}
