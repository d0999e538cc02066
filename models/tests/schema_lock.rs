//! The committed schema lock files (`models/schemas/`) match the models: a struct changed
//! without a `schema` bump fails here, with the field diff and what to do. Under `CI` a
//! missing or outdated lock file is an error; locally a new version is recorded (commit it).

use std::path::Path;

use netdb_models::memories::Memory;
use netdb_models::tasks::Task;
use netdb_runtime::cortex::check_schema_lock;

fn schemas() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas"))
}

#[test]
fn tasks_schema_is_locked() {
    if let Err(e) = check_schema_lock::<Task>(schemas()) {
        panic!("{e}");
    }
}

#[test]
fn memories_schema_is_locked() {
    if let Err(e) = check_schema_lock::<Memory>(schemas()) {
        panic!("{e}");
    }
}
