//! Derive macros for netdb models. Use them through `netdb-runtime`, which re-exports them
//! (feature `derive`, on by default): generated code names the runtime only through
//! `::netdb_runtime::__private`, so no other import is needed.
//!
//! ```
//! use netdb_runtime::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! # #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
//! # pub enum TaskStatus { Pending, Completed }
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
//! #[cortex(channel = "cortex/tasks")]
//! pub struct Task {
//!     pub id: u64,
//!     #[cortex(filter(contains))]
//!     pub title: String,
//!     #[cortex(filter, index)]
//!     pub status: TaskStatus,
//!     #[cortex(filter(range), order_by = "Created", index)]
//!     pub created_ns: u64,
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let tasks = TasksAdapter::open(&Redex::new(), 1)?;
//! tasks.insert(Task { id: 1, title: "Draft".into(), status: TaskStatus::Pending, created_ns: 5 })?;
//! let seq = tasks.update(TaskPatch::new(1).title("Draft the plan"))?;
//! tasks.wait_for_seq(seq).await?;
//! let found = tasks.state().read().query().where_title_contains("plan").collect();
//! assert_eq!(found[0].title, "Draft the plan");
//! # Ok::<(), CortexError>(())
//! # }).unwrap();
//! ```
//!
//! # `#[derive(CortexModel)]`
//!
//! On a struct with named fields (not generic), which must also derive or implement
//! `Debug`, `Clone`, `PartialEq`, `Serialize` and `Deserialize`. For a model `Task` it
//! generates, beside it, with its visibility:
//!
//! | Item | What it is |
//! |---|---|
//! | `TaskState` | `Table<Task>`: `find_unique`, `find_many`, `count_where`, `exists_where`, `query` |
//! | `TaskFilter` | plain data (`Default`, serde): one optional clause per `where_*` builder |
//! | `TaskOrderBy` | `IdAsc` (default), `IdDesc`, and `<Name>Asc` / `<Name>Desc` per `order_by` field |
//! | `TaskIndexes` | the secondary indexes (only if a field has `index`) |
//! | `TaskQuery<'a>` | `state.query()`: the `where_*` builders, `order_by`, `limit`, `offset`, `collect`, `count`, `exists`, `first`, `iter`, `for_each` |
//! | `TaskWatch` | `adapter.watch()`: the same builders, then `stream()` |
//! | `TasksAdapter` | the adapter (derefs to `CortexAdapter<Task>`), with `open`, `open_from_snapshot`, ... and the typed writes; a `#[derive(NetDb)]` field type |
//! | `TaskPatch` | without `events = ...`: a patch (one optional slot per field); the events are the runtime's `BuiltinEvent<Task, TaskPatch>` (insert / update / delete), written with `insert(row)`, `update(patch)`, `delete(id)` |
//!
//! ## Container attributes
//!
//! ### `channel = "cortex/tasks"` (required)
//! The RedEX channel the events live on. It is stored: keep it when the struct is renamed.
//! Checked at compile time against the channel name rules (`/`-separated segments of
//! `a-z`, `0-9`, `-`, `_`).
//!
//! ### `schema = N` (default 1)
//! The schema version, stamped into every event and snapshot. Bump it whenever the fields
//! change; a committed schema lock file (`cortex::check_schema_lock`) catches a forgotten
//! bump. The schema's fingerprint (FNV-1a over field names and types as written) is
//! computed at compile time and is stable across builds and toolchains. Because it reads
//! types as written, spelling a type differently (`std::string::String` for `String`)
//! changes it too: treat that as a schema change.
//!
//! ### `migrate(from = N, with = OldStruct)` (repeatable), optional `fingerprint = 0x...`
//! How to read data an older version wrote: `OldStruct` is the struct as it was at version
//! `N` (keep it, with `Deserialize`), and `impl From<OldStruct> for Task` converts it.
//! Used for snapshots of version `N` and for insert events of version `N` still in the log
//! (update events name their fields and need no migration). `fingerprint` (from the lock
//! file) makes a snapshot of a different struct an error rather than a misread. `N` must be
//! below `schema`.
//!
//! ### `events = TaskEvent`
//! The model's events are a user enum deriving `CortexEvents` (below) instead of the
//! built-in insert / update / delete.
//!
//! ### `adapter = TaskStore`
//! The adapter's name (default: the plural of the model and `Adapter`: `TasksAdapter`,
//! `MemoriesAdapter`). An events enum of a renamed adapter names it too.
//!
//! ### `crate = "path"`
//! The runtime's path when it is re-exported under another name (default
//! `::netdb_runtime`).
//!
//! ## Field attributes
//!
//! ### `id`
//! The row key (`Ord + Hash + Clone`). Without it, a field named `id` is the id. It gets
//! `where_id` / `where_id_in` and needs no index or ordering (rows are kept by id).
//!
//! ### `filter` or `filter(eq, contains, range, has, some)`
//! Generates `where_*` builders on queries and watches, and a clause in the filter:
//!
//! | Kind | Types | Builders |
//! |---|---|---|
//! | `eq` | any `Eq + Hash` type (not floats, not collections) | `where_x(v)`, `where_x_in(vs)` |
//! | `contains` | `String` | `where_x_contains(s)`, case-insensitive |
//! | `range` | ordered types | `where_x_gt`, `_gte`, `_lt`, `_lte`, `_between(lo, hi)` (inclusive); bounds combine |
//! | `has` | `Vec`, `HashSet`, `BTreeSet`, ... | `where_tag(v)`, `where_any_tag(vs)`, `where_all_tags(vs)` |
//! | `some` | `Option<T>` | `where_x_some()`, `where_x_none()` |
//!
//! Bare `filter` picks the kinds the type supports: `String` → eq, contains; integers → eq,
//! range; floats → range; `bool` and other types → eq; collections → has; `Option<T>` →
//! some, plus `T`'s kinds tested on the value inside (a `None` never equals a value).
//! String parameters take `impl Into<String>`. Calling the same builder twice replaces the
//! clause, except the range builders, which narrow it. Kinds are read from the type as
//! written: an alias (`type Ts = u64`) counts as an other type, so name its kinds
//! (`filter(eq, range)`).
//!
//! ### `order_by` or `order_by = "Created"`
//! Adds `<Name>Asc` and `<Name>Desc` to the order enum (default name: the field in
//! CamelCase). Ties are broken by id. Not on floats or collections.
//!
//! ### `index` or `index(hash | ordered | inverted)`
//! A secondary index that queries use when it narrows the candidates. Bare `index` picks
//! inverted for `has`, ordered for `range`, hash for `eq`. An ordered index also serves
//! `order_by` on the field (walked, stopping at the limit). Needs a filter it can serve.
//!
//! ### `renamed_from = "old_name"` (repeatable)
//! The names the field had in older schema versions. Update events name the fields they set,
//! so an old update of `old_name` sets this field on replay; without it, the old value is
//! dropped like that of a removed field. (A migration's `From` only sees whole rows: insert
//! events and snapshots.)
//!
//! ### `singular = "tag"`
//! The element name of a collection's membership builders (default: the field name
//! without its plural ending: `tags` → `tag`).
//!
//! # `#[derive(CortexEvents)]`
//!
//! On an enum of a model's events:
//!
//! ```
//! # use netdb_runtime::prelude::*;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
//! # #[cortex(channel = "cortex/tasks", events = TaskEvent)]
//! # pub struct Task { pub id: u64, pub title: String }
//! #[derive(Debug, Clone, PartialEq, CortexEvents)]
//! #[cortex(model = Task)]
//! pub enum TaskEvent {
//!     #[cortex(dispatch = 1)]
//!     Create { id: u64, title: String },
//!     #[cortex(dispatch = 2)]
//!     Rename { id: u64, title: String },
//!     #[cortex(dispatch = 3, write = "remove")]
//!     Delete(u64),
//! }
//!
//! impl ApplyEvent<Task> for TaskEvent {
//!     fn apply(self, t: &mut TableMut<'_, Task>, _: &EventContext) -> Result<(), ApplyError> {
//!         match self {
//!             TaskEvent::Create { id, title } => {
//!                 t.insert(Task { id, title });
//!             }
//!             TaskEvent::Rename { id, title } => {
//!                 t.update(&id, |task| task.title = title);
//!             }
//!             TaskEvent::Delete(id) => {
//!                 t.remove(&id);
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let tasks = TasksAdapter::open(&Redex::new(), 1)?;
//! tasks.create(1, "draft")?;
//! tasks.rename(1, "plan")?;
//! let seq = tasks.remove(1)?;
//! tasks.wait_for_seq(seq).await?;
//! assert!(tasks.state().read().is_empty());
//! # Ok::<(), CortexError>(())
//! # }).unwrap();
//! ```
//!
//! It generates the dispatch codes, the encoding (each variant's fields as one postcard
//! tuple), the decoding, and one typed write per variant on the model's adapter
//! (`tasks.create(1, "draft")`, `tasks.rename(..)`, `tasks.remove(3)`), returning the
//! event's seq.
//!
//! * `model = Path` (required): the model the events change.
//! * `adapter = Path`: the model's adapter when the model renamed it.
//! * `crate = "path"`: as for `CortexModel`.
//! * Variant `dispatch = N` (required): the stored code, 1..=0xEFFF, unique. Codes are
//!   stored in the log: never reuse one; to change a variant's fields, add a new variant
//!   with a new code and keep the old one for the events already written.
//! * Variant `write = "name"`: the typed write's name (default: the variant in
//!   snake_case). It may not shadow an adapter method (`close`, `snapshot`, ...).
//! * Variant `no_write`: no typed write, for a variant kept only to decode the events of it
//!   already in the log (it still applies; it can still be appended by hand).
//!
//! Numbers (`schema`, `from`, `fingerprint`, `dispatch`) are plain integer literals: a type
//! suffix is an error, so `0xFINGERPRINT` cannot pass as `0xF`.
//!
//! # `#[derive(NetDb)]`
//!
//! On a struct whose named fields are model adapters (`TasksAdapter`, `CortexAdapter<M>` or
//! an alias of one), generates:
//!
//! * `open(&redex, origin_hash)`: opens every model; each replays its log;
//! * `open_from_snapshot(&redex, origin_hash, &bundle)`: restores every model from a bundle
//!   `snapshot()` returned; each folds only the events after its snapshot;
//! * `snapshot()`: one bundle covering every model, each in its own versioned envelope;
//! * `catch_up()`: waits until every model has folded what its log held (after `open`, the
//!   replay);
//! * `close()`: closes every model (each fsyncs its log), returning the first error;
//! * one accessor per field, named after it (`db.tasks()`).
//!
//! Field option: `#[netdb(config = path)]`, where `path` names a `fn() -> CortexConfig`
//! used to open that model (default: `CortexConfig::default()`).
//!
//! Container option: `#[netdb(crate = "path")]`, the path of the runtime crate when it is
//! re-exported under another name (default `::netdb_runtime`).

use proc_macro::TokenStream;

mod events;
mod model;
mod naming;
mod netdb;

/// Generates a model's filter, orderings, indexes, typed query and watch builders, events
/// (or the glue to a `CortexEvents` enum), adapter with typed writes, and schema. See the
/// [crate documentation](crate).
#[proc_macro_derive(CortexModel, attributes(cortex))]
pub fn derive_cortex_model(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    model::expand(&input).into()
}

/// Generates dispatch codes, encoding, decoding and one typed write per variant for an
/// events enum. See the [crate documentation](crate).
#[proc_macro_derive(CortexEvents, attributes(cortex))]
pub fn derive_cortex_events(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    events::expand(&input).into()
}

/// Generates `open`, `open_from_snapshot`, `snapshot`, `close` and accessors for a struct of
/// model adapters. See the [crate documentation](crate).
#[proc_macro_derive(NetDb, attributes(netdb))]
pub fn derive_netdb(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    netdb::expand(&input).into()
}

/// An expansion, pretty-printed: what the insta snapshots of each derive hold.
#[cfg(test)]
fn pretty(expand: fn(&syn::DeriveInput) -> proc_macro2::TokenStream, input: &str) -> String {
    let input: syn::DeriveInput = syn::parse_str(input).expect("valid input");
    let file: syn2::File = syn2::parse2(expand(&input)).expect("the expansion parses");
    prettyplease::unparse(&file)
}
