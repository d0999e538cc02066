//! CortEX: the fold driver that turns a RedEX log into a live, queryable state.
//!
//! A [`CortexAdapter<M>`] opens model `M`'s channel, runs one tokio task that replays then
//! follows the log, and applies each event to a [`Table<M>`]: rows by id, with the model's
//! secondary indexes. Readers query the table under a read lock; writers append events and
//! use [`wait_for_seq`](CortexAdapter::wait_for_seq) to read their own writes; watchers get
//! deduplicated live results; snapshots capture the table in a versioned envelope.
//!
//! # The contract with generated code
//!
//! `#[derive(CortexModel)]` (in `netdb-derive`) emits implementations of the traits in this
//! module and nothing that duplicates what the runtime does. This section is the boundary
//! between the two crates; change both sides together.
//!
//! | Trait / item | What generated code supplies | What the runtime does with it |
//! |---|---|---|
//! | [`CortexModel`] | `Id`, `CHANNEL`, `SCHEMA` ([`Schema::new`] over a [`Field`] list), `id()`, the associated types below, `route_hashes` for routable fields, `migrations()` | keys rows, names the log channel, stamps and checks schema versions in events and snapshots |
//! | [`CortexEvent`] | the dispatch code of each variant, postcard body encode / decode, `apply` — the domain logic, over [`TableMut`] | frames events with [`EventMeta`], decodes them in the fold, runs `apply` under the write lock, undoes a failed event |
//! | [`ModelFilter`] | one optional field per clause, `matches`, `plan` (offers from indexed clauses), `route` (an equality / membership clause's field and [`route_hash`]es) | plans queries; files watchers by route |
//! | [`ModelOrder`] | the `OrderBy` enum: `compare` ([`order_by_key`] per key), `walk` for keys with an [`OrderedIndex`] | sorts, or walks the index and stops at the limit |
//! | [`IndexSet`] | a struct with one [`HashIndex`] / [`OrderedIndex`] / [`InvertedIndex`] per indexed field; `insert` / `remove` forward the field's key(s) | calls them on every row change, rollback included |
//! | `Query<'a>` / `Watch` | wrappers around [`Query`] / [`Watch`] (`From` the runtime type) adding `where_*` methods that call `.filter(|f| …)` | everything else: order, offset, limit, collect, count, exists, first, iter, stream |
//! | [`Migration`] | `from_version`, the old fingerprint, and a decoder (usually [`migrate_rows::<Old, New>`](migrate_rows)) | picks the migration when a snapshot's version is older |
//!
//! Rules both sides rely on:
//!
//! * **Only the fold writes.** Users read the state through [`SharedState::read`]; an
//!   event's `apply` gets a [`TableMut`] whose `insert` / `update` / `remove` keep indexes,
//!   change tracking and the undo journal. Generated and user code never touch maps directly.
//! * **An event is atomic.** If `apply` returns [`ApplyError`], panics, or misuses the table
//!   (changes a row's id), every change it made is undone, and the adapter's
//!   [`FoldErrorPolicy`] decides whether the fold stops or skips the event.
//! * **Orderings are total**: ties are broken by id in the ordering's direction, so an index
//!   walk and a sort yield the same sequence, and query results never depend on the plan.
//! * **Index offers are supersets.** The planner tests every candidate with
//!   [`ModelFilter::matches`]; an offer narrows the rows tested, never the answer.
//! * **Routes are requirements.** [`ModelFilter::route`] may return a route only for a
//!   clause every matching row satisfies: a row with none of the route's hashes in that
//!   field cannot match.
//! * **Dispatch codes** are stable forever once events are written: see [`dispatch`] for
//!   the user range and the codes reserved for generated create / update / delete events.
//!
//! # Events on the log
//!
//! Each event is an [`EventMeta`] header (dispatch code, schema version, origin hash,
//! timestamp, CRC-32C over header and body) followed by the postcard body. A header that
//! does not verify, an unknown dispatch code or a body that does not decode is a
//! [`FoldError`] carrying the event's seq, handled by the policy like a failed `apply`.
//!
//! # Watches
//!
//! The first item of a watch stream is the current result, taken at a known folded seq in
//! the same step that registers the watcher. Later items come only when the result differs
//! from what this subscriber last received. Each subscriber has a single slot: a consumer
//! that falls behind sees the latest result, and memory stays bounded. A watcher is
//! re-evaluated only when a batch touched a row in its last result, or a row that holds a
//! value its filter requires (see [`ModelFilter::route`]); idle watchers cost nothing per
//! event.

mod adapter;
mod builtin;
pub mod dispatch;
mod error;
mod event_meta;
mod index;
mod log;
mod model;
pub(crate) mod postcard_out;
pub(crate) use postcard_out::append as postcard_append;
mod query;
pub mod schema_lock;
pub mod snapshot;
mod sorted;
mod table;
mod watch;

pub use adapter::{
    Change, CortexAdapter, CortexConfig, FoldErrorPolicy, FoldErrors, ModelAdapter, RestoreOutcome,
    SharedState, SnapshotFallback, StartAt,
};
pub use builtin::{BuiltinEvent, ModelPatch, decode_field, encode_field};
pub use error::{
    ApplyError, CortexError, EventDecodeError, FoldError, FoldErrorKind, SnapshotError,
};
pub use event_meta::{EventMeta, EventMetaError, SeqOrTs};
pub use index::{HashIndex, IdSet, IdSetIter, InvertedIndex, OrderedIndex, Plan, RowKey};
pub use log::{CortexLog, LogBackend, LogTail, OpenedLog};
pub use model::{
    ApplyEvent, CortexEvent, CortexModel, Direction, EventContext, Field, IdOrder, IdWalk,
    IndexSet, Migration, ModelEvents, ModelFilter, ModelOrder, NoFilter, RangeClause, Route,
    Schema, contains_ignore_case, fingerprint, in_range, migrate_row, migrate_rows, narrow_range,
    order_by_key, route_hash,
};
pub use query::{Query, QuerySpec};
pub use schema_lock::{
    SchemaLockError, SchemaLockStatus, check_schema_lock, check_schema_lock_with,
};
pub use snapshot::SnapshotInfo;
pub use sorted::SortedSet;
pub use table::{Table, TableMut};
pub use watch::{Watch, WatchStream};
