//! Paths in generated code.
//!
//! * `#[cortex(crate = "...")]` (and `#[netdb(crate = "...")]`): models, an events enum and a
//!   NetDb derived through a facade that re-exports the runtime under another name.
//! * Generated code needs no import: module `bare` imports only the derive macros and serde,
//!   and shadows the prelude's names (`Option`, `Some`, `Vec`, `String`, `Result`, `Ok`, ...)
//!   with types of its own, so generated code that named any of them unqualified would not
//!   compile.

// The reproduction of a derive bug at the end is behind a cfg of its own.
#![allow(unexpected_cfgs)]

use std::collections::BTreeSet;

/// A facade that re-exports the runtime under another name.
pub mod facade {
    pub use netdb_runtime as rt;
}

pub mod renamed {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, crate::facade::rt::CortexModel)]
    #[cortex(
        channel = "test/derive-paths/memos",
        crate = "crate::facade::rt",
        schema = 2,
        migrate(from = 1, with = MemoV1)
    )]
    pub struct Memo {
        pub id: u64,
        #[cortex(filter(contains))]
        pub text: String,
        #[cortex(filter, index)]
        pub tags: Vec<String>,
        #[cortex(filter, index, order_by)]
        pub at: u64,
        #[cortex(filter, index(hash))]
        pub by: Option<String>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct MemoV1 {
        pub id: u64,
        pub text: String,
    }

    impl From<MemoV1> for Memo {
        fn from(v: MemoV1) -> Memo {
            Memo {
                id: v.id,
                text: v.text,
                tags: Vec::new(),
                at: 0,
                by: None,
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, crate::facade::rt::CortexModel)]
    #[cortex(
        channel = "test/derive-paths/counters",
        events = CounterEvent,
        crate = "crate::facade::rt"
    )]
    pub struct Counter {
        #[cortex(id)]
        pub name: String,
        #[cortex(filter(range), index(ordered), order_by)]
        pub value: i64,
    }

    #[derive(Debug, Clone, PartialEq, crate::facade::rt::CortexEvents)]
    #[cortex(model = Counter, crate = "crate::facade::rt")]
    pub enum CounterEvent {
        #[cortex(dispatch = 1)]
        Add { name: String, by: i64 },
        #[cortex(dispatch = 2)]
        Remove(String),
    }

    impl crate::facade::rt::cortex::ApplyEvent<Counter> for CounterEvent {
        fn apply(
            self,
            t: &mut crate::facade::rt::cortex::TableMut<'_, Counter>,
            _: &crate::facade::rt::cortex::EventContext,
        ) -> Result<(), crate::facade::rt::cortex::ApplyError> {
            match self {
                CounterEvent::Add { name, by } => {
                    if !t.update(&name, |c| c.value += by) {
                        t.insert(Counter { name, value: by });
                    }
                }
                CounterEvent::Remove(name) => {
                    t.remove(&name);
                }
            }
            Ok(())
        }
    }

    #[derive(Debug, crate::facade::rt::NetDb)]
    #[netdb(crate = "crate::facade::rt")]
    pub struct Db {
        memos: MemosAdapter,
        counters: CountersAdapter,
    }
}

/// Imports only the derives and serde; the prelude's names are taken by local types.
#[allow(dead_code)]
pub mod bare {
    use netdb_runtime::{CortexEvents, CortexModel, NetDb};
    use serde::{Deserialize, Serialize};

    // Stand-ins for the prelude: generated code must name the real ones by absolute path.
    struct Option;
    struct Some;
    struct None;
    struct Result;
    struct Ok;
    struct Err;
    struct Vec;
    struct String;
    struct Box;
    struct Default;
    struct Clone;
    struct Into;
    struct From;
    struct Iterator;
    struct IntoIterator;
    struct Fn;
    struct FnMut;
    struct FnOnce;
    struct Send;
    struct Sync;
    struct Sized;
    struct ToString;
    struct PartialEq;
    struct Eq;
    struct Ord;
    struct PartialOrd;

    #[derive(Debug, PartialEq, Serialize, Deserialize, CortexModel, ::core::clone::Clone)]
    #[cortex(channel = "test/derive-paths/entries", schema = 2, migrate(from = 1, with = EntryV1))]
    pub struct Entry {
        pub id: u64,
        #[cortex(filter, index, order_by)]
        pub name: std::string::String,
        #[cortex(filter, index)]
        pub tags: std::vec::Vec<std::string::String>,
        #[cortex(filter, index(inverted), singular = "label")]
        pub labels: std::collections::BTreeSet<std::string::String>,
        #[cortex(filter, index)]
        pub parent: core::option::Option<u64>,
        #[cortex(filter)]
        pub done: core::primitive::bool,
        #[cortex(filter)]
        pub weight: f64,
    }

    #[derive(Debug, ::core::clone::Clone, Serialize, Deserialize)]
    pub struct EntryV1 {
        pub id: u64,
        pub name: std::string::String,
    }

    impl ::core::convert::From<EntryV1> for Entry {
        fn from(v: EntryV1) -> Entry {
            Entry {
                id: v.id,
                name: v.name,
                tags: std::vec::Vec::new(),
                labels: std::collections::BTreeSet::new(),
                parent: core::option::Option::None,
                done: false,
                weight: 0.0,
            }
        }
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize, CortexModel, ::core::clone::Clone)]
    #[cortex(channel = "test/derive-paths/tallies", events = TallyEvent)]
    pub struct Tally {
        #[cortex(id)]
        pub key: std::string::String,
        #[cortex(filter, order_by)]
        pub count: u32,
    }

    #[derive(Debug, CortexEvents, ::core::clone::Clone)]
    #[cortex(model = Tally)]
    pub enum TallyEvent {
        #[cortex(dispatch = 1)]
        Bump { key: std::string::String },
        #[cortex(dispatch = 2, write = "bump_by")]
        BumpBy(std::string::String, u32),
        #[cortex(dispatch = 3)]
        Clear,
    }

    impl netdb_runtime::cortex::ApplyEvent<Tally> for TallyEvent {
        fn apply(
            self,
            t: &mut netdb_runtime::cortex::TableMut<'_, Tally>,
            _: &netdb_runtime::cortex::EventContext,
        ) -> core::result::Result<(), netdb_runtime::cortex::ApplyError> {
            let (key, n) = match self {
                TallyEvent::Bump { key } => (key, 1),
                TallyEvent::BumpBy(key, n) => (key, n),
                TallyEvent::Clear => {
                    t.remove_where(&<TallyFilter as ::core::default::Default>::default());
                    return core::result::Result::Ok(());
                }
            };
            if !t.update(&key, |r| r.count += n) {
                t.insert(Tally { key, count: n });
            }
            core::result::Result::Ok(())
        }
    }

    #[derive(Debug, NetDb)]
    pub struct Db {
        entries: EntriesAdapter,
        tallies: TalliesAdapter,
    }
}

#[tokio::test]
async fn the_runtime_path_can_be_renamed() {
    use renamed::{Counter, CounterOrderBy, Db, Memo, MemoFilter, MemoOrderBy, MemoPatch};

    let redex = facade::rt::redex::Redex::new();
    let db = Db::open(&redex, 1).unwrap();
    let memos = db.memos();
    memos
        .insert(Memo {
            id: 1,
            text: "Hello".into(),
            tags: vec!["a".into()],
            at: 20,
            by: Some("ann".into()),
        })
        .unwrap();
    memos
        .insert(Memo {
            id: 2,
            text: "world".into(),
            tags: vec!["a".into(), "b".into()],
            at: 10,
            by: None,
        })
        .unwrap();
    let s = memos.update(MemoPatch::new(2).text("World!")).unwrap();
    memos.wait_for_seq(s).await.unwrap();
    {
        let shared = memos.state();
        let st = shared.read();
        let by_time: Vec<u64> = st
            .query()
            .where_tag("a")
            .order_by(MemoOrderBy::AtAsc)
            .iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(by_time, [2, 1]);
        assert_eq!(st.query().where_by("ann").first().unwrap().id, 1);
        assert_eq!(st.query().where_by_none().first().unwrap().id, 2);
        assert_eq!(st.query().where_text_contains("world!").count(), 1);
        // The filter derives serde through the facade's path.
        let filter = MemoFilter {
            tag: Some("b".into()),
            ..Default::default()
        };
        let bytes = postcard::to_allocvec(&filter).unwrap();
        let back: MemoFilter = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, filter);
        assert_eq!(st.find_many(&back).len(), 1);
    }
    // A watch through the renamed path.
    let (now, _stream) = memos.watch().where_at_gte(15).snapshot_and_stream();
    assert_eq!(now.len(), 1);

    let counters = db.counters();
    counters.add("x", 2).unwrap();
    counters.add("x", 3).unwrap();
    counters.add("y", 1).unwrap();
    let s = counters.remove("nobody").unwrap();
    counters.wait_for_seq(s).await.unwrap();
    let values: Vec<(String, i64)> = counters
        .state()
        .read()
        .query()
        .where_value_gt(0)
        .order_by(CounterOrderBy::ValueDesc)
        .iter()
        .map(|c: &Counter| (c.name.clone(), c.value))
        .collect();
    assert_eq!(values, [("x".to_string(), 5), ("y".to_string(), 1)]);

    // Snapshot and restore through the facade, with the migration table in place.
    assert_eq!(<Memo as facade::rt::cortex::CortexModel>::SCHEMA.version, 2);
    assert_eq!(
        <Memo as facade::rt::cortex::CortexModel>::migrations().len(),
        1
    );
    let bundle = db.snapshot().unwrap();
    let again = Db::open_from_snapshot(&redex, 1, &bundle).unwrap();
    assert_eq!(again.memos().state().read().len(), 2);
    assert_eq!(again.counters().state().read().len(), 2);
    again.close().unwrap();
    db.close().unwrap();
}

#[tokio::test]
async fn generated_code_needs_no_import() {
    use bare::{Db, Entry, EntryOrderBy, EntryPatch, TallyOrderBy};

    let redex = netdb_runtime::redex::Redex::new();
    let db = Db::open(&redex, 1).unwrap();
    let entries = db.entries();
    for i in 0..4u64 {
        entries
            .insert(Entry {
                id: i,
                name: format!("e{}", 3 - i),
                tags: vec![format!("t{}", i % 2)],
                labels: BTreeSet::from([format!("l{i}")]),
                parent: (i > 0).then_some(0),
                done: i == 2,
                weight: i as f64,
            })
            .unwrap();
    }
    let s = entries
        .update(EntryPatch::new(3).done(true).weight(9.5))
        .unwrap();
    entries.wait_for_seq(s).await.unwrap();
    {
        let shared = entries.state();
        let st = shared.read();
        let names: Vec<&str> = st
            .query()
            .where_tag("t1")
            .order_by(EntryOrderBy::NameAsc)
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["e0", "e2"]);
        assert_eq!(st.query().where_label("l2").first().unwrap().id, 2);
        assert_eq!(st.query().where_any_label(["l0", "l3"]).count(), 2);
        assert_eq!(st.query().where_parent(0).count(), 3);
        assert_eq!(st.query().where_parent_none().count(), 1);
        assert_eq!(st.query().where_done(true).count(), 2);
        assert_eq!(st.query().where_weight_gt(2.0).first().unwrap().id, 3);
    }

    let tallies = db.tallies();
    tallies.bump("a").unwrap();
    tallies.bump_by("a", 4).unwrap();
    tallies.bump("b").unwrap();
    let s = tallies.bump_by("c", 2).unwrap();
    tallies.wait_for_seq(s).await.unwrap();
    let counts: Vec<(String, u32)> = tallies
        .state()
        .read()
        .query()
        .where_count_gte(2)
        .order_by(TallyOrderBy::CountDesc)
        .iter()
        .map(|t| (t.key.clone(), t.count))
        .collect();
    assert_eq!(counts, [("a".to_string(), 5), ("c".to_string(), 2)]);
    let s = tallies.clear().unwrap();
    tallies.wait_for_seq(s).await.unwrap();
    assert!(tallies.state().read().is_empty());

    let bundle = db.snapshot().unwrap();
    let again = Db::open_from_snapshot(&redex, 1, &bundle).unwrap();
    assert_eq!(again.entries().state().read().len(), 4);
    assert!(again.tallies().state().read().is_empty());
    again.close().unwrap();
    db.close().unwrap();
}

#[tokio::test]
async fn models_declared_in_a_function_body() {
    use netdb_runtime::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "test/derive-paths/local", events = LocalEvent)]
    struct Local {
        id: u64,
        #[cortex(filter, index)]
        n: u32,
        // A raw identifier without filters: the patch and ordering use it as written.
        #[cortex(order_by)]
        r#type: String,
    }

    #[derive(Debug, Clone, CortexEvents)]
    #[cortex(model = Local)]
    enum LocalEvent {
        #[cortex(dispatch = 1)]
        Set(u64, u32),
    }

    impl ApplyEvent<Local> for LocalEvent {
        fn apply(self, t: &mut TableMut<'_, Local>, _: &EventContext) -> Result<(), ApplyError> {
            let LocalEvent::Set(id, n) = self;
            t.insert(Local {
                id,
                n,
                r#type: format!("t{n}"),
            });
            Ok(())
        }
    }

    let redex = Redex::new();
    let locals = LocalsAdapter::open(&redex, 1).unwrap();
    locals.set(1, 7).unwrap();
    let s = locals.set(2, 3).unwrap();
    locals.wait_for_seq(s).await.unwrap();
    let shared = locals.state();
    let st = shared.read();
    assert_eq!(st.query().where_n(7).first().unwrap().id, 1);
    let by_type: Vec<u64> = st
        .query()
        .order_by(LocalOrderBy::TypeAsc)
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(by_type, [2, 1]);
}

/// Filters on raw-identifier fields: generated clause names stay raw where they are keywords.
mod raw_ident_filters {
    use netdb_runtime::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "test/derive-paths/raw")]
    pub struct Raw {
        pub id: u64,
        #[cortex(filter, index)]
        pub r#type: String,
        #[cortex(filter)]
        pub r#loop: Vec<String>,
    }

    pub async fn run() {
        let redex = Redex::new();
        let raws = RawsAdapter::open(&redex, 1).unwrap();
        let s = raws
            .insert(Raw {
                id: 1,
                r#type: "x".into(),
                r#loop: vec!["y".into()],
            })
            .unwrap();
        raws.wait_for_seq(s).await.unwrap();
        let shared = raws.state();
        let st = shared.read();
        assert_eq!(st.query().where_type("x").count(), 1);
        assert_eq!(st.query().where_loop("y").count(), 1);
        let filter = RawFilter {
            r#type: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(st.count_where(&filter), 1);
    }
}

#[tokio::test]
async fn filters_on_raw_identifier_fields() {
    raw_ident_filters::run().await;
}
