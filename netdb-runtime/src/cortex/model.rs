//! The model traits: the contract between the runtime and generated code.
//!
//! See the [module documentation](super) for how the pieces fit together.

use std::cmp::Ordering;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ApplyError, EventDecodeError};
use super::index::{Plan, RowKey};
use super::query::Query;
use super::table::TableMut;
use super::watch::Watch;

/// A record type whose rows a CortEX fold keeps, keyed by id.
///
/// `#[derive(CortexModel)]` implements it; everything else in CortEX is generic over it.
pub trait CortexModel:
    Clone + PartialEq + Debug + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// The row key.
    type Id: Clone + Ord + Hash + Debug + Send + Sync + Serialize + DeserializeOwned + 'static;
    /// The model's events: how the log changes the rows.
    type Event: CortexEvent<Self>;
    /// The filter type the `where_*` builders fill in.
    type Filter: ModelFilter<Self>;
    /// The model's orderings (always including id ascending and descending).
    type OrderBy: ModelOrder<Self>;
    /// The model's secondary indexes (use `()` for none).
    type Indexes: IndexSet<Self>;
    /// The query builder `Table::query` returns: the runtime's [`Query`] or a typed wrapper
    /// around it adding `where_*` methods.
    type Query<'a>: From<Query<'a, Self>>;
    /// The watch builder `CortexAdapter::watch` returns: the runtime's [`Watch`] or a typed
    /// wrapper around it.
    type Watch: From<Watch<Self>>;

    /// The RedEX channel the model's events live on, e.g. `"cortex/tasks"`.
    const CHANNEL: &'static str;
    /// The schema: version, field list and fingerprint.
    const SCHEMA: Schema;

    /// The row's id.
    fn id(&self) -> &Self::Id;

    /// Calls `out` with the route hash of every value `field` holds in this row (one value
    /// for a plain field, one per element for a collection). The watch engine uses it to
    /// find the watchers a changed row can affect; `field` is a number the model's
    /// [`ModelFilter::route`] hands out. The default routes nothing.
    fn route_hashes(&self, field: u16, out: &mut dyn FnMut(u64)) {
        let _ = (field, out);
    }

    /// Snapshot migrations from older schema versions. The default has none.
    fn migrations() -> &'static [Migration<Self>] {
        &[]
    }
}

/// An event type of a model: encoding, decoding, and its effect on the rows.
///
/// `#[derive(CortexModel)]` implements it for the generated insert / update / delete events;
/// `#[derive(CortexEvents)]` implements it for a user's enum, whose effect the user writes
/// in an [`ApplyEvent`] impl.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an events type of model `{M}`",
    label = "not the events of `{M}`",
    note = "an events enum serves the model named in its `#[cortex(model = ...)]`; name this \
            enum's model there, or name `{M}`'s own events enum in `#[cortex(events = ...)]`"
)]
pub trait CortexEvent<M: CortexModel>: Sized + Send + Debug + 'static {
    /// The event's dispatch code (in [`dispatch::USER_FIRST`](super::dispatch::USER_FIRST)
    /// ..= [`dispatch::USER_LAST`](super::dispatch::USER_LAST), or one of the reserved codes
    /// for generated create / update / delete events).
    fn dispatch(&self) -> u16;

    /// Appends the encoded body (without the [`EventMeta`](super::EventMeta) header) to `out`.
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error>;

    /// Decodes a body written by [`encode_body`](Self::encode_body) for `dispatch`, by a
    /// writer whose model had schema version `schema_version` (never newer than this
    /// build's: the fold refuses those first). Models whose event bodies changed between
    /// versions decode the older layouts here; old events stay in the log for ever.
    fn decode_body(
        dispatch: u16,
        schema_version: u16,
        body: &[u8],
    ) -> Result<Self, EventDecodeError>;

    /// Applies the event to the rows. Returning an error, or panicking, undoes every change
    /// this call made and reports the event to the adapter's
    /// [`FoldErrorPolicy`](super::FoldErrorPolicy).
    fn apply(self, table: &mut TableMut<'_, M>, ctx: &EventContext) -> Result<(), ApplyError>;
}

/// The effect of a `#[derive(CortexEvents)]` enum's events on the rows: the domain logic a
/// user writes once, for every variant.
///
/// The derive generates the rest of [`CortexEvent`] (dispatch codes, encoding, decoding)
/// and forwards [`CortexEvent::apply`] here.
///
/// Change rows only through `table` (`insert`, `update`, `remove`, `remove_where`): it keeps
/// the indexes, the change tracking for watchers and the undo journal. Returning an
/// [`ApplyError`], or panicking, undoes every change the call made.
#[diagnostic::on_unimplemented(
    message = "the events enum `{Self}` has no effect on `{M}` yet",
    label = "write `impl ApplyEvent<{M}> for {Self}`",
    note = "`#[derive(CortexEvents)]` generates encoding, decoding and typed writes; the effect \
            of each variant is yours: implement `netdb_runtime::cortex::ApplyEvent<{M}>` for \
            `{Self}`, matching on `self` in its `apply` method"
)]
pub trait ApplyEvent<M: CortexModel>: Sized {
    /// Applies the event to the rows.
    fn apply(self, table: &mut TableMut<'_, M>, ctx: &EventContext) -> Result<(), ApplyError>;
}

/// Ties a model to its events type: `M: ModelEvents<E>` holds exactly when `E` is
/// `M::Event`. The typed writes `#[derive(CortexEvents)]` generates go through it, so an
/// events enum whose model names other events fails once, with this message.
#[diagnostic::on_unimplemented(
    message = "the model `{Self}` does not name `{E}` as its events",
    label = "`{Self}`'s events are another type",
    note = "add `events = {E}` to `{Self}`'s `#[cortex(...)]`, or name the right model in the \
            events enum's `#[cortex(model = ...)]`"
)]
pub trait ModelEvents<E>: CortexModel {
    /// `event`, as the model's event type.
    fn event(event: E) -> Self::Event;
}

impl<M: CortexModel> ModelEvents<M::Event> for M {
    fn event(event: M::Event) -> M::Event {
        event
    }
}

/// What the fold knows about the event being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventContext {
    /// The event's sequence number in the log.
    pub seq: u64,
    /// When the log stored it, in nanoseconds since the Unix epoch.
    pub log_timestamp_ns: u64,
    /// The header the writer put in front of it.
    pub meta: super::EventMeta,
}

/// A filter over rows: what `where_*` builders produce.
pub trait ModelFilter<M: CortexModel>:
    Clone + Default + Debug + PartialEq + Send + Sync + 'static
{
    /// Whether `row` passes every clause.
    fn matches(&self, row: &M) -> bool;

    /// Offers the planner the candidate id sets the model's indexes hold for this filter's
    /// clauses. The planner keeps the smallest; every candidate is still tested with
    /// [`matches`](Self::matches), so an offer only has to be a superset of the answer.
    fn plan<'i>(&'i self, indexes: &'i M::Indexes, plan: &mut Plan<'i, M::Id>) {
        let _ = (indexes, plan);
    }

    /// A field and the route hashes of the values a row must hold in it to match, if the
    /// filter requires one (an equality or membership clause). Watchers with a route are
    /// re-evaluated only for rows that hash to one of the values.
    fn route(&self) -> Option<Route> {
        None
    }

    /// Whether the filter has no clause (matches every row).
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The number of matching rows, when an index holds exactly the answer: the filter's
    /// only clause is an equality (or membership) on an indexed field, so the index entry's
    /// size is the count and no row needs testing. `None` when that does not hold; counts
    /// then run as queries. Must never return a number that differs from counting the rows
    /// that [`matches`](Self::matches) accepts.
    fn exact_count(&self, indexes: &M::Indexes) -> Option<usize> {
        let _ = indexes;
        None
    }
}

/// A filter that matches every row, for models with no filterable fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NoFilter;

impl<M: CortexModel> ModelFilter<M> for NoFilter {
    fn matches(&self, _: &M) -> bool {
        true
    }
}

/// A field number and hashes of values: see [`ModelFilter::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The field, numbered by the model.
    pub field: u16,
    /// The route hashes ([`route_hash`]) of the values that can match.
    pub hashes: Vec<u64>,
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// An ordering of rows: the model's `OrderBy` enum.
///
/// Every ordering is total: rows with equal keys are ordered by id, in the ordering's
/// direction. So an index walk and a sort give the same sequence.
pub trait ModelOrder<M: CortexModel>: Clone + Debug + PartialEq + Send + Sync + 'static {
    /// The id-ascending ordering (the default of queries and watches).
    fn id_asc() -> Self;

    /// `Some(direction)` if this is an id ordering.
    fn id_direction(&self) -> Option<Direction>;

    /// Compares two rows: by key in the ordering's direction, then by id in the same
    /// direction. [`order_by_key`] implements that for one key.
    fn compare(&self, a: &M, b: &M) -> Ordering;

    /// The rows in this order, walked from an ordered index, if one backs the ordering.
    fn walk<'i>(&self, indexes: &'i M::Indexes) -> Option<IdWalk<'i, M::Id>> {
        let _ = indexes;
        None
    }
}

/// Rows in order, from an ordered index.
pub type IdWalk<'i, Id> = Box<dyn Iterator<Item = &'i RowKey<Id>> + 'i>;

/// Compares two rows by one key, then by id, both in `direction`: the comparator of a
/// keyed ordering.
pub fn order_by_key<K: Ord + ?Sized, Id: Ord>(
    direction: Direction,
    (a_key, a_id): (&K, &Id),
    (b_key, b_id): (&K, &Id),
) -> Ordering {
    let asc = a_key.cmp(b_key).then_with(|| a_id.cmp(b_id));
    match direction {
        Direction::Asc => asc,
        Direction::Desc => asc.reverse(),
    }
}

/// The orderings of a model with only id orderings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IdOrder {
    /// Id ascending.
    #[default]
    IdAsc,
    /// Id descending.
    IdDesc,
}

impl<M: CortexModel> ModelOrder<M> for IdOrder {
    fn id_asc() -> Self {
        IdOrder::IdAsc
    }
    fn id_direction(&self) -> Option<Direction> {
        Some(match self {
            IdOrder::IdAsc => Direction::Asc,
            IdOrder::IdDesc => Direction::Desc,
        })
    }
    fn compare(&self, a: &M, b: &M) -> Ordering {
        let asc = a.id().cmp(b.id());
        match self {
            IdOrder::IdAsc => asc,
            IdOrder::IdDesc => asc.reverse(),
        }
    }
}

/// A model's secondary indexes, maintained by the table on every row change.
///
/// Generated code holds one [`HashIndex`](super::HashIndex),
/// [`OrderedIndex`](super::OrderedIndex) or [`InvertedIndex`](super::InvertedIndex) per
/// indexed field and forwards these calls to each.
pub trait IndexSet<M: CortexModel>: Default + Debug + Send + Sync + 'static {
    /// Adds `row`, stored under `key` (its id and slot: what the indexes record).
    fn insert(&mut self, key: &RowKey<M::Id>, row: &M);
    /// Removes `row`, stored under `key`; `row` is the value that was inserted.
    fn remove(&mut self, key: &RowKey<M::Id>, row: &M);
    /// Replaces `old` with `new` under `key`. The default removes then inserts.
    fn update(&mut self, key: &RowKey<M::Id>, old: &M, new: &M) {
        self.remove(key, old);
        self.insert(key, new);
    }
}

impl<M: CortexModel> IndexSet<M> for () {
    fn insert(&mut self, _: &RowKey<M::Id>, _: &M) {}
    fn remove(&mut self, _: &RowKey<M::Id>, _: &M) {}
    fn update(&mut self, _: &RowKey<M::Id>, _: &M, _: &M) {}
}

/// A model's schema: the version the author declares, and a fingerprint of the fields that
/// catches a change made without bumping it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// The declared version (starts at 1; bump it whenever the fields change).
    pub version: u16,
    /// The fields, in declaration order.
    pub fields: &'static [Field],
    /// [`fingerprint`] of the fields.
    pub fingerprint: u64,
}

impl Schema {
    /// A schema with its fingerprint computed from `fields`.
    pub const fn new(version: u16, fields: &'static [Field]) -> Schema {
        Schema {
            version,
            fields,
            fingerprint: fingerprint(fields),
        }
    }
}

/// One field of a [`Schema`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field name.
    pub name: &'static str,
    /// The field's type as written in the source, normalised (no spaces).
    pub ty: &'static str,
}

/// A 64-bit FNV-1a hash over every field's name and type, with separators: the schema
/// fingerprint. Stable across builds, platforms and compiler versions.
pub const fn fingerprint(fields: &[Field]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    const fn feed(mut h: u64, bytes: &[u8]) -> u64 {
        let mut i = 0;
        while i < bytes.len() {
            h ^= bytes[i] as u64;
            h = h.wrapping_mul(PRIME);
            i += 1;
        }
        h
    }
    let mut h = OFFSET;
    let mut i = 0;
    while i < fields.len() {
        h = feed(h, fields[i].name.as_bytes());
        h = feed(h, b":");
        h = feed(h, fields[i].ty.as_bytes());
        h = feed(h, b";");
        i += 1;
    }
    h
}

/// How to read a snapshot written by an older schema version.
#[derive(Debug)]
pub struct Migration<M> {
    /// The schema version this migration reads.
    pub from_version: u16,
    /// That version's fingerprint, if known: a snapshot whose fingerprint differs is
    /// refused rather than misread.
    pub from_fingerprint: Option<u64>,
    /// Decodes the postcard-encoded rows of that version into current rows (snapshots).
    pub decode: fn(&[u8]) -> Result<Vec<M>, postcard::Error>,
    /// Decodes one postcard-encoded row of that version into a current row (insert events
    /// that version wrote, still in the log).
    pub decode_row: fn(&[u8]) -> Result<M, postcard::Error>,
}

/// Decodes rows of an older type `Old` and converts each with `Into`: the usual
/// [`Migration::decode`].
pub fn migrate_rows<Old, M>(body: &[u8]) -> Result<Vec<M>, postcard::Error>
where
    Old: DeserializeOwned + Into<M>,
{
    let old: Vec<Old> = postcard::from_bytes(body)?;
    Ok(old.into_iter().map(Into::into).collect())
}

/// Decodes one row of an older type `Old` and converts it with `Into`: the usual
/// [`Migration::decode_row`].
pub fn migrate_row<Old, M>(body: &[u8]) -> Result<M, postcard::Error>
where
    Old: DeserializeOwned + Into<M>,
{
    postcard::from_bytes::<Old>(body).map(Into::into)
}

/// A range clause: the lower and upper bound a field's value must lie within.
pub type RangeClause<T> = (std::ops::Bound<T>, std::ops::Bound<T>);

/// Narrows a range clause by one more bound: the `where_x_gt` / `_gte` / `_lt` / `_lte` /
/// `_between` builders. Bounds combine as a conjunction: the tighter bound on each side
/// wins, so `where_x_gt(3).where_x_gt(5)` means "greater than 5".
pub fn narrow_range<T: PartialOrd>(
    clause: &mut Option<RangeClause<T>>,
    lower: std::ops::Bound<T>,
    upper: std::ops::Bound<T>,
) {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let (lo, hi) = clause.take().unwrap_or((Unbounded, Unbounded));
    // Whether bound `a` is at least as tight as `b`; `low` says which side they bound.
    fn tighter<T: PartialOrd>(a: &std::ops::Bound<T>, b: &std::ops::Bound<T>, low: bool) -> bool {
        match (a, b) {
            (_, Unbounded) => true,
            (Unbounded, _) => false,
            (Included(x) | Excluded(x), Included(y) | Excluded(y)) if x == y => {
                matches!(a, Excluded(_)) || matches!(b, Included(_))
            }
            (Included(x) | Excluded(x), Included(y) | Excluded(y)) => {
                if low {
                    x > y
                } else {
                    x < y
                }
            }
        }
    }
    let lo = if tighter(&lower, &lo, true) {
        lower
    } else {
        lo
    };
    let hi = if tighter(&upper, &hi, false) {
        upper
    } else {
        hi
    };
    *clause = Some((lo, hi));
}

/// Whether `value` lies within a range clause (see [`narrow_range`]).
pub fn in_range<T: PartialOrd>(clause: &RangeClause<T>, value: &T) -> bool {
    std::ops::RangeBounds::contains(clause, value)
}

/// Whether `haystack` contains `needle`, ignoring case: what `*_contains` string filters
/// test. Allocation-free when both are ASCII; full Unicode lowercasing otherwise.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() && needle.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle.as_bytes());
        let first = n[0].to_ascii_lowercase();
        return h.len() >= n.len()
            && (0..=h.len() - n.len()).any(|i| {
                h[i].to_ascii_lowercase() == first && h[i..i + n.len()].eq_ignore_ascii_case(n)
            });
    }
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// The hash the watch engine routes by: stable within a process (seeded once per process,
/// so values chosen to collide cannot be prepared in advance; a collision only costs an
/// extra re-evaluation).
pub fn route_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    static SEED: std::sync::OnceLock<foldhash::fast::FixedState> = std::sync::OnceLock::new();
    SEED.get_or_init(|| {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(foldhash::fast::RandomState::default().hash_one(0u8))
    })
    .hash_one(value)
}

/// `HashMap` / `HashSet` hasher state for the runtime's internal maps: fast, and seeded per
/// process so keys from users (ids, tags) cannot be chosen to collide.
pub(crate) type FastHash = foldhash::fast::RandomState;

#[cfg(test)]
mod tests {
    use super::contains_ignore_case;

    #[test]
    fn contains_ignore_case_matches_lowercased_contains() {
        let cases = [
            ("Hello World", "o w", true),
            ("Hello", "HELLO", true),
            ("Hello", "hello!", false),
            ("", "", true),
            ("abc", "", true),
            ("", "a", false),
            ("Straße", "STRASSE", false),
            ("ÉCOLE normale", "école", true),
            ("aaab", "aab", true),
        ];
        for (h, n, want) in cases {
            assert_eq!(contains_ignore_case(h, n), want, "{h:?} {n:?}");
            assert_eq!(
                contains_ignore_case(h, n),
                h.to_lowercase().contains(&n.to_lowercase())
            );
        }
    }
}
