//! Regression tests from a review of `#[derive(NetDb)]` and schema lock files: generated
//! code that compiles whatever the user's scope holds (shadowed prelude names, lowercase
//! consts named like its bindings, two derives in a module, private structs using only
//! some methods without dead-code warnings), and lock files that round-trip, accept CRLF,
//! name a line for an empty file and survive concurrent checks.
#![allow(
    dead_code,
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case
)]

mod common;

use netdb_runtime::cortex::{
    CortexAdapter, CortexConfig, SchemaLockError, SchemaLockStatus, check_schema_lock_with,
};
use netdb_runtime::redex::Redex;

// ---------- derive: legal user situations that must compile ----------

/// Prelude items shadowed by user items: generated code must use absolute paths.
mod shadowed_prelude {
    use super::common::{Note, Task};
    use ::netdb_runtime::cortex::CortexAdapter;
    pub struct Result;
    pub struct Option;
    pub struct Vec;
    pub struct Box;
    pub struct String;
    pub fn Ok() {}
    pub fn Err() {}
    pub fn Some() {}
    pub struct None;
    pub trait Sized {}
    pub mod core {}
    pub mod std {}
    pub mod netdb_runtime {}

    pub mod cfgs {
        pub fn lenient() -> ::netdb_runtime::cortex::CortexConfig {
            ::netdb_runtime::cortex::CortexConfig::default()
        }
    }

    /// A documented struct.
    #[derive(::netdb_runtime::NetDb, Debug, Clone)]
    #[allow(missing_docs)]
    /// More docs.
    pub struct Db {
        /// Tasks.
        #[allow(unused)]
        pub tasks: CortexAdapter<Task>,
        /// Notes.
        #[netdb(config = cfgs::lenient)]
        pub(crate) notes: CortexAdapter<Note>,
    }
}

#[tokio::test]
async fn shadowed_prelude_items_compile_and_run() {
    let redex = Redex::new();
    let db = shadowed_prelude::Db::open(&redex, 1).unwrap();
    let _ = db.tasks();
    let _ = &db.tasks;
    let b = db.snapshot().unwrap();
    db.close().unwrap();
    drop(db);
    let db = shadowed_prelude::Db::open_from_snapshot(&redex, 1, &b).unwrap();
    db.close().unwrap();
}

/// Two derives in one module, and an extra user impl block.
mod two_in_one {
    use super::common::{Note, Task};
    use netdb_runtime::cortex::CortexAdapter;
    #[derive(netdb_runtime::NetDb)]
    pub struct A {
        pub tasks: CortexAdapter<Task>,
    }
    #[derive(netdb_runtime::NetDb)]
    pub struct B {
        pub notes: CortexAdapter<Note>,
    }
    impl A {
        pub fn builder() -> u8 {
            0
        }
    }
}

// ---------- derive: hygiene ----------

/// A lowercase const `e` in scope of the derive (legal, only a style lint): the generated
/// code must not bind a name it could turn into a constant pattern.
mod const_e {
    use super::common::Task;
    use netdb_runtime::cortex::CortexAdapter;
    const e: u8 = 0;
    #[derive(netdb_runtime::NetDb)]
    pub struct Db {
        pub tasks: CortexAdapter<Task>,
    }
}

/// Lowercase consts named like the generated fns' parameters.
mod const_params {
    use super::common::Task;
    use netdb_runtime::cortex::CortexAdapter;
    const redex: u8 = 0;
    const origin_hash: u8 = 0;
    const bundle: u8 = 0;
    #[derive(netdb_runtime::NetDb)]
    pub struct Db {
        pub tasks: CortexAdapter<Task>,
    }
}

/// A private struct that only calls `open`: the unused generated methods do not warn.
mod dead {
    #![deny(dead_code)]
    use super::common::Task;
    use netdb_runtime::cortex::CortexAdapter;
    #[derive(netdb_runtime::NetDb)]
    struct Db {
        tasks: CortexAdapter<Task>,
    }
    pub fn use_it(r: &netdb_runtime::redex::Redex) {
        let _ = Db::open(r, 0);
    }
}

// ---------- schema lock ----------

fn lock_path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("cortex").join("tasks.lock")
}

#[test]
fn lock_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        check_schema_lock_with::<common::Task>(dir.path(), false).unwrap(),
        SchemaLockStatus::Created
    );
    let text = std::fs::read_to_string(lock_path(dir.path())).unwrap();
    eprintln!("{text}");
    assert_eq!(
        check_schema_lock_with::<common::Task>(dir.path(), false).unwrap(),
        SchemaLockStatus::Unchanged
    );
}

#[test]
fn lock_crlf() {
    let dir = tempfile::tempdir().unwrap();
    check_schema_lock_with::<common::Task>(dir.path(), false).unwrap();
    let p = lock_path(dir.path());
    let text = std::fs::read_to_string(&p).unwrap().replace('\n', "\r\n");
    std::fs::write(&p, text).unwrap();
    assert_eq!(
        check_schema_lock_with::<common::Task>(dir.path(), false).unwrap(),
        SchemaLockStatus::Unchanged
    );
}

#[test]
fn lock_field_type_with_colon_space_and_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = lock_path(dir.path());
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    // Type containing ": " (e.g. unnormalised `std :: string :: String`)
    std::fs::write(&p, "version 1 0x1\nfield a: std :: string :: String\n").unwrap();
    let r = check_schema_lock_with::<common::Task>(dir.path(), false);
    eprintln!("{r:?}");
    assert!(r.is_ok() || !matches!(r, Err(SchemaLockError::Malformed { .. })));
    // Empty lock file: which line does the error name?
    std::fs::write(&p, "").unwrap();
    let r = check_schema_lock_with::<common::Task>(dir.path(), false);
    eprintln!("empty: {r:?}");
    if let Err(e) = &r {
        eprintln!("{e}");
    }
    match r {
        Err(SchemaLockError::Malformed { line, .. }) => assert!(line >= 1, "line {line}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lock_concurrent_checks() {
    // Two tests checking the same lock at once; repeat to give the race a chance.
    let mut failures = Vec::new();
    for round in 0..300 {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || check_schema_lock_with::<common::Task>(&d, false))
            })
            .collect();
        for h in hs {
            if let Err(e) = h.join().unwrap() {
                failures.push(format!("round {round}: {e}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
}

#[test]
fn lock_path_that_is_a_dir_or_multi_segment() {
    let dir = tempfile::tempdir().unwrap();
    // dir itself does not exist yet: created?
    let sub = dir.path().join("not/yet");
    assert_eq!(
        check_schema_lock_with::<common::Task>(&sub, false).unwrap(),
        SchemaLockStatus::Created
    );
    assert!(sub.join("cortex/tasks.lock").exists());
}

#[test]
fn config_used() {
    let _ = CortexConfig::default();
    let _: Option<CortexAdapter<common::Task>> = None;
}

#[tokio::test]
async fn a_private_struct_may_use_only_some_generated_methods() {
    dead::use_it(&netdb_runtime::redex::Redex::new());
}
