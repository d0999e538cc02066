//! A model declared with the derives, end to end: every filter kind, an index of each kind,
//! a renamed ordering, built-in writes, a user events enum, and a NetDb over both.

use std::collections::BTreeSet;

use netdb_runtime::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Done,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/items", schema = 2, migrate(from = 1, with = ItemV1))]
pub struct Item {
    pub id: u64,
    #[cortex(filter)]
    pub title: String,
    #[cortex(filter, index)]
    pub status: Status,
    #[cortex(filter(range), order_by = "Created", index)]
    pub created_ns: u64,
    #[cortex(filter, index)]
    pub tags: Vec<String>,
    #[cortex(filter)]
    pub labels: BTreeSet<String>,
    #[cortex(filter, index, order_by)]
    pub owner: Option<String>,
    #[cortex(filter)]
    pub pinned: bool,
    #[cortex(filter)]
    pub price: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemV1 {
    pub id: u64,
    pub title: String,
}

impl From<ItemV1> for Item {
    fn from(v: ItemV1) -> Item {
        Item {
            id: v.id,
            title: v.title,
            status: Status::Pending,
            created_ns: 0,
            tags: vec![],
            labels: BTreeSet::new(),
            owner: None,
            pinned: false,
            price: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/notes", events = NoteEvent)]
pub struct Note {
    #[cortex(id)]
    pub key: String,
    #[cortex(filter(contains))]
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexEvents)]
#[cortex(model = Note)]
pub enum NoteEvent {
    #[cortex(dispatch = 1)]
    Put { key: String, text: String },
    #[cortex(dispatch = 2, write = "remove")]
    Delete(String),
    #[cortex(dispatch = 3)]
    Clear,
    /// Kept to decode old events: no typed write.
    #[cortex(dispatch = 4, no_write)]
    PutV0(String),
}

impl ApplyEvent<Note> for NoteEvent {
    fn apply(self, t: &mut TableMut<'_, Note>, _: &EventContext) -> Result<(), ApplyError> {
        match self {
            NoteEvent::Put { key, text } => {
                t.insert(Note { key, text });
            }
            NoteEvent::Delete(key) => {
                t.remove(&key);
            }
            NoteEvent::PutV0(key) => {
                t.insert(Note {
                    key,
                    text: String::new(),
                });
            }
            NoteEvent::Clear => {
                t.remove_where(&NoteFilter::default());
            }
        }
        Ok(())
    }
}

#[derive(NetDb)]
struct Db {
    items: ItemsAdapter,
    notes: NotesAdapter,
}

#[tokio::test]
async fn derived_models_end_to_end() {
    let redex = Redex::new();
    let db = Db::open(&redex, 1).unwrap();
    let items = db.items();
    for i in 0..10u64 {
        items
            .insert(Item {
                id: i,
                title: format!("Item {i}"),
                status: if i % 2 == 0 {
                    Status::Done
                } else {
                    Status::Pending
                },
                created_ns: 100 - i,
                tags: vec![format!("t{}", i % 3)],
                labels: BTreeSet::new(),
                owner: (i % 4 == 0).then(|| "ann".to_string()),
                pinned: i == 3,
                price: i as f64,
            })
            .unwrap();
    }
    let seq = items.update(ItemPatch::new(3).title("renamed")).unwrap();
    items.wait_for_seq(seq).await.unwrap();
    {
        let shared = items.state();
        let st = shared.read();
        let done: Vec<u64> = st
            .query()
            .where_status(Status::Done)
            .order_by(ItemOrderBy::CreatedAsc)
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(done, vec![8, 6, 4, 2, 0]);
        assert_eq!(st.query().where_title_contains("RENAMED").count(), 1);
        assert_eq!(st.query().where_created_ns_between(95, 97).count(), 3);
        assert_eq!(st.query().where_tag("t1").count(), 3);
        assert_eq!(st.query().where_owner("ann").count(), 3);
        assert_eq!(st.query().where_owner_none().count(), 7);
        assert_eq!(st.query().where_pinned(true).first().unwrap().id, 3);
        assert_eq!(st.query().where_price_gte(8.0).count(), 2);
    }
    let notes = db.notes();
    notes.put("a", "hello").unwrap();
    notes.append(&NoteEvent::PutV0("old".into())).unwrap();
    notes.clear().unwrap();
    let s = notes.remove("a").unwrap();
    notes.wait_for_seq(s).await.unwrap();
    assert_eq!(notes.state().read().len(), 0);
    let bundle = db.snapshot().unwrap();
    let db2 = Db::open_from_snapshot(&redex, 1, &bundle).unwrap();
    assert_eq!(db2.items().state().read().len(), 10);
    db2.close().unwrap();
}
