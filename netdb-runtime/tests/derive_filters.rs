//! Property test of the filters, orderings and indexes `#[derive(CortexModel)]` generates.
//!
//! `Rec` uses every filter kind on every type family (String, integers, bool, a user enum,
//! `Option<String>`, `Option<u64>`, `Vec<String>`, `BTreeSet<String>`, and a float) and every
//! index kind (hash, ordered, inverted, chosen explicitly and by default). `PlainRec` is its
//! twin without indexes. Random rows, then random inserts / patch updates / deletes, are
//! written through the typed writes of both; random filters are built with the generated
//! `where_*` builders and, independently, as a plain `<M>Filter` struct literal. Every query
//! terminal must equal a naive reference (filter a `Vec`, sort by key then id), on both
//! models: index plans never change results.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::ops::Bound;

use netdb_runtime::cortex::{ModelFilter, Plan, RangeClause};
use netdb_runtime::prelude::*;
use proptest::prelude::*;
use proptest::strategy::Union;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Color {
    Red,
    Green,
    Blue,
    Black,
}

const COLORS: [Color; 4] = [Color::Red, Color::Green, Color::Blue, Color::Black];

/// Every filter kind on every type family, and every index kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/derive-filters/indexed")]
pub struct Rec {
    pub id: u32,
    /// String, every string filter, ordered index, renamed ordering.
    #[cortex(filter(eq, contains, range), index(ordered), order_by = "Name")]
    pub name: String,
    /// String, bare filter (eq + contains), hash index.
    #[cortex(filter, index(hash))]
    pub note: String,
    /// Integer, bare filter (eq + range), index chosen from the filters (ordered).
    #[cortex(filter, index, order_by = "Rank")]
    pub rank: i32,
    /// Integer, eq only, index chosen from the filters (hash).
    #[cortex(filter(eq), index)]
    pub bucket: u8,
    /// Integer, range only, no index, ordering without an index.
    #[cortex(filter(range), order_by)]
    pub size: u64,
    /// Bool, eq and range, hash index.
    #[cortex(filter(eq, range), index(hash))]
    pub flag: bool,
    /// User enum, eq and range, ordered index (walked by its ordering).
    #[cortex(filter(eq, range), index(ordered), order_by)]
    pub color: Color,
    /// User enum, bare filter (eq), index chosen from the filters (hash).
    #[cortex(filter, index)]
    pub shade: Color,
    /// Option<String>, bare filter (some + eq + contains), hash index, ordering (sorted).
    #[cortex(filter, index(hash), order_by)]
    pub owner: Option<String>,
    /// Option<String>, some + range, ordered index.
    #[cortex(filter(some, range), index(ordered))]
    pub alias: Option<String>,
    /// Option<u64>, bare filter (some + eq + range), index chosen (ordered), ordering.
    #[cortex(filter, index, order_by)]
    pub due: Option<u64>,
    /// Vec<String>, bare filter (has), index chosen (inverted).
    #[cortex(filter, index)]
    pub tags: Vec<String>,
    /// BTreeSet<String>, has, inverted index, explicit singular.
    #[cortex(filter(has), index(inverted), singular = "label")]
    pub labels: BTreeSet<String>,
    /// Float, bare filter (range).
    #[cortex(filter)]
    pub score: f64,
}

/// `Rec` without indexes (and with a renamed adapter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "test/derive-filters/plain", adapter = PlainStore)]
pub struct PlainRec {
    pub id: u32,
    #[cortex(filter(eq, contains, range), order_by = "Name")]
    pub name: String,
    #[cortex(filter)]
    pub note: String,
    #[cortex(filter, order_by = "Rank")]
    pub rank: i32,
    #[cortex(filter(eq))]
    pub bucket: u8,
    #[cortex(filter(range), order_by)]
    pub size: u64,
    #[cortex(filter(eq, range))]
    pub flag: bool,
    #[cortex(filter(eq, range), order_by)]
    pub color: Color,
    #[cortex(filter)]
    pub shade: Color,
    #[cortex(filter, order_by)]
    pub owner: Option<String>,
    #[cortex(filter(some, range))]
    pub alias: Option<String>,
    #[cortex(filter, order_by)]
    pub due: Option<u64>,
    #[cortex(filter)]
    pub tags: Vec<String>,
    #[cortex(filter(has), singular = "label")]
    pub labels: BTreeSet<String>,
    #[cortex(filter)]
    pub score: f64,
}

impl From<&Rec> for PlainRec {
    fn from(r: &Rec) -> PlainRec {
        PlainRec {
            id: r.id,
            name: r.name.clone(),
            note: r.note.clone(),
            rank: r.rank,
            bucket: r.bucket,
            size: r.size,
            flag: r.flag,
            color: r.color,
            shade: r.shade,
            owner: r.owner.clone(),
            alias: r.alias.clone(),
            due: r.due,
            tags: r.tags.clone(),
            labels: r.labels.clone(),
            score: r.score,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clauses, the reference, and the two ways of building a filter.

#[derive(Debug, Clone, PartialEq)]
enum RangeOp<T> {
    Gt(T),
    Gte(T),
    Lt(T),
    Lte(T),
    Between(T, T),
}

impl<T: PartialOrd> RangeOp<T> {
    fn holds(&self, v: &T) -> bool {
        match self {
            RangeOp::Gt(x) => v > x,
            RangeOp::Gte(x) => v >= x,
            RangeOp::Lt(x) => v < x,
            RangeOp::Lte(x) => v <= x,
            RangeOp::Between(a, b) => a <= v && v <= b,
        }
    }
}

/// The tightest `(lower, upper)` of a conjunction of range ops (`None`: no op).
fn combine<T: PartialOrd + Clone>(ops: &[RangeOp<T>]) -> Option<RangeClause<T>> {
    fn pick<T: PartialOrd>(new: Bound<T>, cur: Bound<T>, lower: bool) -> Bound<T> {
        match (&new, &cur) {
            (Bound::Unbounded, _) => cur,
            (_, Bound::Unbounded) => new,
            (Bound::Included(x) | Bound::Excluded(x), Bound::Included(y) | Bound::Excluded(y)) => {
                if x == y {
                    if matches!(new, Bound::Excluded(_)) {
                        new
                    } else {
                        cur
                    }
                } else if (x > y) == lower {
                    new
                } else {
                    cur
                }
            }
        }
    }
    if ops.is_empty() {
        return None;
    }
    let (mut lo, mut hi) = (Bound::Unbounded, Bound::Unbounded);
    for op in ops.iter().cloned() {
        let (l, h) = match op {
            RangeOp::Gt(x) => (Bound::Excluded(x), Bound::Unbounded),
            RangeOp::Gte(x) => (Bound::Included(x), Bound::Unbounded),
            RangeOp::Lt(x) => (Bound::Unbounded, Bound::Excluded(x)),
            RangeOp::Lte(x) => (Bound::Unbounded, Bound::Included(x)),
            RangeOp::Between(a, b) => (Bound::Included(a), Bound::Included(b)),
        };
        lo = pick(l, lo, true);
        hi = pick(h, hi, false);
    }
    Some((lo, hi))
}

/// One `where_*` builder call.
#[derive(Debug, Clone)]
enum Clause {
    Id(u32),
    IdIn(Vec<u32>),
    Name(String),
    NameIn(Vec<String>),
    NameContains(String),
    NameRange(RangeOp<String>),
    Note(String),
    NoteIn(Vec<String>),
    NoteContains(String),
    Rank(i32),
    RankIn(Vec<i32>),
    RankRange(RangeOp<i32>),
    Bucket(u8),
    BucketIn(Vec<u8>),
    SizeRange(RangeOp<u64>),
    Flag(bool),
    FlagIn(Vec<bool>),
    FlagRange(RangeOp<bool>),
    Color(Color),
    ColorIn(Vec<Color>),
    ColorRange(RangeOp<Color>),
    Shade(Color),
    ShadeIn(Vec<Color>),
    Owner(String),
    OwnerIn(Vec<String>),
    OwnerContains(String),
    OwnerSome(bool),
    AliasRange(RangeOp<String>),
    AliasSome(bool),
    Due(u64),
    DueIn(Vec<u64>),
    DueRange(RangeOp<u64>),
    DueSome(bool),
    Tag(String),
    AnyTag(Vec<String>),
    AllTags(Vec<String>),
    Label(String),
    AnyLabel(Vec<String>),
    AllLabels(Vec<String>),
    ScoreRange(RangeOp<f64>),
}

/// The clauses a builder chain leaves: equality clauses overwrite, range clauses narrow.
#[derive(Debug, Clone, Default)]
struct Spec {
    id: Option<u32>,
    id_in: Option<Vec<u32>>,
    name: Option<String>,
    name_in: Option<Vec<String>>,
    name_contains: Option<String>,
    name_range: Vec<RangeOp<String>>,
    note: Option<String>,
    note_in: Option<Vec<String>>,
    note_contains: Option<String>,
    rank: Option<i32>,
    rank_in: Option<Vec<i32>>,
    rank_range: Vec<RangeOp<i32>>,
    bucket: Option<u8>,
    bucket_in: Option<Vec<u8>>,
    size_range: Vec<RangeOp<u64>>,
    flag: Option<bool>,
    flag_in: Option<Vec<bool>>,
    flag_range: Vec<RangeOp<bool>>,
    color: Option<Color>,
    color_in: Option<Vec<Color>>,
    color_range: Vec<RangeOp<Color>>,
    shade: Option<Color>,
    shade_in: Option<Vec<Color>>,
    owner: Option<String>,
    owner_in: Option<Vec<String>>,
    owner_contains: Option<String>,
    owner_some: Option<bool>,
    alias_range: Vec<RangeOp<String>>,
    alias_some: Option<bool>,
    due: Option<u64>,
    due_in: Option<Vec<u64>>,
    due_range: Vec<RangeOp<u64>>,
    due_some: Option<bool>,
    tag: Option<String>,
    any_tag: Option<Vec<String>>,
    all_tags: Option<Vec<String>>,
    label: Option<String>,
    any_label: Option<Vec<String>>,
    all_labels: Option<Vec<String>>,
    score_range: Vec<RangeOp<f64>>,
}

impl Spec {
    fn of(clauses: &[Clause]) -> Spec {
        let mut s = Spec::default();
        for c in clauses.iter().cloned() {
            match c {
                Clause::Id(v) => s.id = Some(v),
                Clause::IdIn(v) => s.id_in = Some(v),
                Clause::Name(v) => s.name = Some(v),
                Clause::NameIn(v) => s.name_in = Some(v),
                Clause::NameContains(v) => s.name_contains = Some(v),
                Clause::NameRange(op) => s.name_range.push(op),
                Clause::Note(v) => s.note = Some(v),
                Clause::NoteIn(v) => s.note_in = Some(v),
                Clause::NoteContains(v) => s.note_contains = Some(v),
                Clause::Rank(v) => s.rank = Some(v),
                Clause::RankIn(v) => s.rank_in = Some(v),
                Clause::RankRange(op) => s.rank_range.push(op),
                Clause::Bucket(v) => s.bucket = Some(v),
                Clause::BucketIn(v) => s.bucket_in = Some(v),
                Clause::SizeRange(op) => s.size_range.push(op),
                Clause::Flag(v) => s.flag = Some(v),
                Clause::FlagIn(v) => s.flag_in = Some(v),
                Clause::FlagRange(op) => s.flag_range.push(op),
                Clause::Color(v) => s.color = Some(v),
                Clause::ColorIn(v) => s.color_in = Some(v),
                Clause::ColorRange(op) => s.color_range.push(op),
                Clause::Shade(v) => s.shade = Some(v),
                Clause::ShadeIn(v) => s.shade_in = Some(v),
                Clause::Owner(v) => s.owner = Some(v),
                Clause::OwnerIn(v) => s.owner_in = Some(v),
                Clause::OwnerContains(v) => s.owner_contains = Some(v),
                Clause::OwnerSome(v) => s.owner_some = Some(v),
                Clause::AliasRange(op) => s.alias_range.push(op),
                Clause::AliasSome(v) => s.alias_some = Some(v),
                Clause::Due(v) => s.due = Some(v),
                Clause::DueIn(v) => s.due_in = Some(v),
                Clause::DueRange(op) => s.due_range.push(op),
                Clause::DueSome(v) => s.due_some = Some(v),
                Clause::Tag(v) => s.tag = Some(v),
                Clause::AnyTag(v) => s.any_tag = Some(v),
                Clause::AllTags(v) => s.all_tags = Some(v),
                Clause::Label(v) => s.label = Some(v),
                Clause::AnyLabel(v) => s.any_label = Some(v),
                Clause::AllLabels(v) => s.all_labels = Some(v),
                Clause::ScoreRange(op) => s.score_range.push(op),
            }
        }
        s
    }

    /// The reference: written from the documented semantics, not from generated code.
    fn matches(&self, r: &Rec) -> bool {
        fn eq<T: PartialEq>(c: &Option<T>, v: &T) -> bool {
            c.as_ref().is_none_or(|c| c == v)
        }
        fn one_of<T: PartialEq>(c: &Option<Vec<T>>, v: &T) -> bool {
            c.as_ref().is_none_or(|c| c.contains(v))
        }
        fn opt_eq<T: PartialEq>(c: &Option<T>, v: &Option<T>) -> bool {
            c.as_ref().is_none_or(|c| v.as_ref() == Some(c))
        }
        fn opt_one_of<T: PartialEq>(c: &Option<Vec<T>>, v: &Option<T>) -> bool {
            c.as_ref()
                .is_none_or(|c| v.as_ref().is_some_and(|v| c.contains(v)))
        }
        fn ci(c: &Option<String>, h: &str) -> bool {
            c.as_ref()
                .is_none_or(|n| h.to_lowercase().contains(&n.to_lowercase()))
        }
        fn opt_ci(c: &Option<String>, h: &Option<String>) -> bool {
            c.is_none() || h.as_ref().is_some_and(|h| ci(c, h))
        }
        fn range<T: PartialOrd>(ops: &[RangeOp<T>], v: &T) -> bool {
            ops.iter().all(|o| o.holds(v))
        }
        fn opt_range<T: PartialOrd>(ops: &[RangeOp<T>], v: &Option<T>) -> bool {
            ops.is_empty() || v.as_ref().is_some_and(|v| range(ops, v))
        }
        fn some<T>(c: &Option<bool>, v: &Option<T>) -> bool {
            c.is_none_or(|c| c == v.is_some())
        }
        fn has<'a>(c: &Option<String>, mut coll: impl Iterator<Item = &'a String>) -> bool {
            c.as_ref().is_none_or(|t| coll.any(|e| e == t))
        }
        fn any<'a>(c: &Option<Vec<String>>, coll: impl Iterator<Item = &'a String>) -> bool {
            let coll: Vec<&String> = coll.collect();
            c.as_ref()
                .is_none_or(|ts| ts.iter().any(|t| coll.contains(&t)))
        }
        fn all<'a>(c: &Option<Vec<String>>, coll: impl Iterator<Item = &'a String>) -> bool {
            let coll: Vec<&String> = coll.collect();
            c.as_ref()
                .is_none_or(|ts| ts.iter().all(|t| coll.contains(&t)))
        }
        eq(&self.id, &r.id)
            && one_of(&self.id_in, &r.id)
            && eq(&self.name, &r.name)
            && one_of(&self.name_in, &r.name)
            && ci(&self.name_contains, &r.name)
            && range(&self.name_range, &r.name)
            && eq(&self.note, &r.note)
            && one_of(&self.note_in, &r.note)
            && ci(&self.note_contains, &r.note)
            && eq(&self.rank, &r.rank)
            && one_of(&self.rank_in, &r.rank)
            && range(&self.rank_range, &r.rank)
            && eq(&self.bucket, &r.bucket)
            && one_of(&self.bucket_in, &r.bucket)
            && range(&self.size_range, &r.size)
            && eq(&self.flag, &r.flag)
            && one_of(&self.flag_in, &r.flag)
            && range(&self.flag_range, &r.flag)
            && eq(&self.color, &r.color)
            && one_of(&self.color_in, &r.color)
            && range(&self.color_range, &r.color)
            && eq(&self.shade, &r.shade)
            && one_of(&self.shade_in, &r.shade)
            && opt_eq(&self.owner, &r.owner)
            && opt_one_of(&self.owner_in, &r.owner)
            && opt_ci(&self.owner_contains, &r.owner)
            && some(&self.owner_some, &r.owner)
            && opt_range(&self.alias_range, &r.alias)
            && some(&self.alias_some, &r.alias)
            && opt_eq(&self.due, &r.due)
            && opt_one_of(&self.due_in, &r.due)
            && opt_range(&self.due_range, &r.due)
            && some(&self.due_some, &r.due)
            && has(&self.tag, r.tags.iter())
            && any(&self.any_tag, r.tags.iter())
            && all(&self.all_tags, r.tags.iter())
            && has(&self.label, r.labels.iter())
            && any(&self.any_label, r.labels.iter())
            && all(&self.all_labels, r.labels.iter())
            && range(&self.score_range, &r.score)
    }
}

/// The plain `<M>Filter` struct, every field spelled out (no `..Default::default()`), so
/// the generated field set is pinned too.
macro_rules! filter_literal {
    ($F:ident, $s:expr) => {{
        let s: &Spec = $s;
        $F {
            id: s.id,
            id_in: s.id_in.clone(),
            name: s.name.clone(),
            name_in: s.name_in.clone(),
            name_contains: s.name_contains.clone(),
            name_range: combine(&s.name_range),
            note: s.note.clone(),
            note_in: s.note_in.clone(),
            note_contains: s.note_contains.clone(),
            rank: s.rank,
            rank_in: s.rank_in.clone(),
            rank_range: combine(&s.rank_range),
            bucket: s.bucket,
            bucket_in: s.bucket_in.clone(),
            size_range: combine(&s.size_range),
            flag: s.flag,
            flag_in: s.flag_in.clone(),
            flag_range: combine(&s.flag_range),
            color: s.color,
            color_in: s.color_in.clone(),
            color_range: combine(&s.color_range),
            shade: s.shade,
            shade_in: s.shade_in.clone(),
            owner: s.owner.clone(),
            owner_in: s.owner_in.clone(),
            owner_contains: s.owner_contains.clone(),
            owner_some: s.owner_some,
            alias_range: combine(&s.alias_range),
            alias_some: s.alias_some,
            due: s.due,
            due_in: s.due_in.clone(),
            due_range: combine(&s.due_range),
            due_some: s.due_some,
            tag: s.tag.clone(),
            any_tag: s.any_tag.clone(),
            all_tags: s.all_tags.clone(),
            label: s.label.clone(),
            any_label: s.any_label.clone(),
            all_labels: s.all_labels.clone(),
            score_range: combine(&s.score_range),
        }
    }};
}

macro_rules! range_builder {
    ($q:ident, $op:expr, $gt:ident, $gte:ident, $lt:ident, $lte:ident, $between:ident) => {
        match $op {
            RangeOp::Gt(v) => $q.$gt(v),
            RangeOp::Gte(v) => $q.$gte(v),
            RangeOp::Lt(v) => $q.$lt(v),
            RangeOp::Lte(v) => $q.$lte(v),
            RangeOp::Between(a, b) => $q.$between(a, b),
        }
    };
}

/// Applies clauses with the generated `where_*` builders: works on `<M>Query` and
/// `<M>Watch` of both models (same method names).
macro_rules! with_clauses {
    ($q:expr, $clauses:expr) => {{
        let mut q = $q;
        for c in $clauses.iter().cloned() {
            q = match c {
                Clause::Id(v) => q.where_id(v),
                Clause::IdIn(v) => q.where_id_in(v),
                Clause::Name(v) => q.where_name(v),
                Clause::NameIn(v) => q.where_name_in(v),
                Clause::NameContains(v) => q.where_name_contains(v),
                Clause::NameRange(op) => range_builder!(
                    q,
                    op,
                    where_name_gt,
                    where_name_gte,
                    where_name_lt,
                    where_name_lte,
                    where_name_between
                ),
                Clause::Note(v) => q.where_note(v),
                Clause::NoteIn(v) => q.where_note_in(v),
                Clause::NoteContains(v) => q.where_note_contains(v),
                Clause::Rank(v) => q.where_rank(v),
                Clause::RankIn(v) => q.where_rank_in(v),
                Clause::RankRange(op) => range_builder!(
                    q,
                    op,
                    where_rank_gt,
                    where_rank_gte,
                    where_rank_lt,
                    where_rank_lte,
                    where_rank_between
                ),
                Clause::Bucket(v) => q.where_bucket(v),
                Clause::BucketIn(v) => q.where_bucket_in(v),
                Clause::SizeRange(op) => range_builder!(
                    q,
                    op,
                    where_size_gt,
                    where_size_gte,
                    where_size_lt,
                    where_size_lte,
                    where_size_between
                ),
                Clause::Flag(v) => q.where_flag(v),
                Clause::FlagIn(v) => q.where_flag_in(v),
                Clause::FlagRange(op) => range_builder!(
                    q,
                    op,
                    where_flag_gt,
                    where_flag_gte,
                    where_flag_lt,
                    where_flag_lte,
                    where_flag_between
                ),
                Clause::Color(v) => q.where_color(v),
                Clause::ColorIn(v) => q.where_color_in(v),
                Clause::ColorRange(op) => range_builder!(
                    q,
                    op,
                    where_color_gt,
                    where_color_gte,
                    where_color_lt,
                    where_color_lte,
                    where_color_between
                ),
                Clause::Shade(v) => q.where_shade(v),
                Clause::ShadeIn(v) => q.where_shade_in(v),
                Clause::Owner(v) => q.where_owner(v),
                Clause::OwnerIn(v) => q.where_owner_in(v),
                Clause::OwnerContains(v) => q.where_owner_contains(v),
                Clause::OwnerSome(true) => q.where_owner_some(),
                Clause::OwnerSome(false) => q.where_owner_none(),
                Clause::AliasRange(op) => range_builder!(
                    q,
                    op,
                    where_alias_gt,
                    where_alias_gte,
                    where_alias_lt,
                    where_alias_lte,
                    where_alias_between
                ),
                Clause::AliasSome(true) => q.where_alias_some(),
                Clause::AliasSome(false) => q.where_alias_none(),
                Clause::Due(v) => q.where_due(v),
                Clause::DueIn(v) => q.where_due_in(v),
                Clause::DueRange(op) => range_builder!(
                    q,
                    op,
                    where_due_gt,
                    where_due_gte,
                    where_due_lt,
                    where_due_lte,
                    where_due_between
                ),
                Clause::DueSome(true) => q.where_due_some(),
                Clause::DueSome(false) => q.where_due_none(),
                Clause::Tag(v) => q.where_tag(v),
                Clause::AnyTag(v) => q.where_any_tag(v),
                Clause::AllTags(v) => q.where_all_tags(v),
                Clause::Label(v) => q.where_label(v),
                Clause::AnyLabel(v) => q.where_any_label(v),
                Clause::AllLabels(v) => q.where_all_labels(v),
                Clause::ScoreRange(op) => range_builder!(
                    q,
                    op,
                    where_score_gt,
                    where_score_gte,
                    where_score_lt,
                    where_score_lte,
                    where_score_between
                ),
            };
        }
        q
    }};
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Id,
    Name,
    Rank,
    Size,
    Color,
    Owner,
    Due,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Order {
    key: Key,
    desc: bool,
}

macro_rules! order_of {
    ($O:ident, $o:expr) => {
        match ($o.key, $o.desc) {
            (Key::Id, false) => $O::IdAsc,
            (Key::Id, true) => $O::IdDesc,
            (Key::Name, false) => $O::NameAsc,
            (Key::Name, true) => $O::NameDesc,
            (Key::Rank, false) => $O::RankAsc,
            (Key::Rank, true) => $O::RankDesc,
            (Key::Size, false) => $O::SizeAsc,
            (Key::Size, true) => $O::SizeDesc,
            (Key::Color, false) => $O::ColorAsc,
            (Key::Color, true) => $O::ColorDesc,
            (Key::Owner, false) => $O::OwnerAsc,
            (Key::Owner, true) => $O::OwnerDesc,
            (Key::Due, false) => $O::DueAsc,
            (Key::Due, true) => $O::DueDesc,
        }
    };
}

/// The reference order: by key, then by id, both in the order's direction.
fn ref_cmp(o: Order, a: &Rec, b: &Rec) -> Ordering {
    let key = match o.key {
        Key::Id => Ordering::Equal,
        Key::Name => a.name.cmp(&b.name),
        Key::Rank => a.rank.cmp(&b.rank),
        Key::Size => a.size.cmp(&b.size),
        Key::Color => a.color.cmp(&b.color),
        Key::Owner => a.owner.cmp(&b.owner),
        Key::Due => a.due.cmp(&b.due),
    };
    let asc = key.then(a.id.cmp(&b.id));
    if o.desc { asc.reverse() } else { asc }
}

// ---------------------------------------------------------------------------------------
// Writes.

#[derive(Debug, Clone)]
enum Op {
    Insert(Rec),
    /// Update the row `.0.id` with the fields of `.0` whose bit is set in `.1`.
    Update(Rec, u16),
    Delete(u32),
}

/// The patch setting the masked fields of `r`, through the generated setters.
macro_rules! patch_of {
    ($P:ident, $r:expr, $m:expr) => {{
        let (r, m): (&Rec, u16) = ($r, $m);
        let mut p = $P::new(r.id);
        if m & (1 << 0) != 0 {
            p = p.name(r.name.as_str());
        }
        if m & (1 << 1) != 0 {
            p = p.note(r.note.clone());
        }
        if m & (1 << 2) != 0 {
            p = p.rank(r.rank);
        }
        if m & (1 << 3) != 0 {
            p = p.bucket(r.bucket);
        }
        if m & (1 << 4) != 0 {
            p = p.size(r.size);
        }
        if m & (1 << 5) != 0 {
            p = p.flag(r.flag);
        }
        if m & (1 << 6) != 0 {
            p = p.color(r.color);
        }
        if m & (1 << 7) != 0 {
            p = p.shade(r.shade);
        }
        if m & (1 << 8) != 0 {
            p = p.owner(r.owner.clone());
        }
        if m & (1 << 9) != 0 {
            p = p.alias(r.alias.clone());
        }
        if m & (1 << 10) != 0 {
            p = p.due(r.due);
        }
        if m & (1 << 11) != 0 {
            p = p.tags(r.tags.clone());
        }
        if m & (1 << 12) != 0 {
            p = p.labels(r.labels.clone());
        }
        if m & (1 << 13) != 0 {
            p = p.score(r.score);
        }
        p
    }};
}

/// The reference update: written by hand, not with the generated patch.
fn ref_update(dst: &mut Rec, src: &Rec, m: u16) {
    let bit = |i: u16| m & (1 << i) != 0;
    if bit(0) {
        dst.name = src.name.clone();
    }
    if bit(1) {
        dst.note = src.note.clone();
    }
    if bit(2) {
        dst.rank = src.rank;
    }
    if bit(3) {
        dst.bucket = src.bucket;
    }
    if bit(4) {
        dst.size = src.size;
    }
    if bit(5) {
        dst.flag = src.flag;
    }
    if bit(6) {
        dst.color = src.color;
    }
    if bit(7) {
        dst.shade = src.shade;
    }
    if bit(8) {
        dst.owner = src.owner.clone();
    }
    if bit(9) {
        dst.alias = src.alias.clone();
    }
    if bit(10) {
        dst.due = src.due;
    }
    if bit(11) {
        dst.tags = src.tags.clone();
    }
    if bit(12) {
        dst.labels = src.labels.clone();
    }
    if bit(13) {
        dst.score = src.score;
    }
}

// ---------------------------------------------------------------------------------------
// Strategies.

const NAMES: &[&str] = &[
    "alpha",
    "Alpha",
    "beta",
    "gamma",
    "Gamma ray",
    "delta",
    "épée",
    "ÉPÉE",
    "straße",
    "",
    "zeta",
    "eta",
];
const NEEDLES: &[&str] = &[
    "a", "AL", "ph", "", "ép", "É", "ss", "ETA", "q", "ray", "GAMMA R",
];
const BOUNDS: &[&str] = &["", "b", "beta", "m", "zz", "Z", "é", "eta", "Alpha"];
const TAGS: &[&str] = &["red", "green", "blue", "x", "y", "Red"];
const LABELS: &[&str] = &["p", "q", "r", "s", "t", "u", "v", "P"];

fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    prop::sample::select(pool).prop_map(str::to_owned)
}

fn color() -> impl Strategy<Value = Color> + Clone {
    prop::sample::select(COLORS.to_vec())
}

fn rank() -> impl Strategy<Value = i32> + Clone {
    prop_oneof![-3i32..3, -100i32..100]
}

fn size() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![0u64..4, 0u64..1000]
}

fn due() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![0u64..4, 0u64..300]
}

fn score() -> impl Strategy<Value = f64> + Clone {
    (-12i32..12).prop_map(|x| f64::from(x) / 4.0)
}

fn tags() -> impl Strategy<Value = Vec<String>> + Clone {
    // Duplicates allowed: a Vec may hold an element twice.
    prop::collection::vec(pick(TAGS), 0..4)
}

fn labels() -> impl Strategy<Value = BTreeSet<String>> + Clone {
    prop::collection::btree_set(pick(LABELS), 0..4)
}

fn rec() -> impl Strategy<Value = Rec> {
    (
        (0u32..250, pick(NAMES), pick(NAMES), rank(), 0u8..24, size()),
        (
            any::<bool>(),
            color(),
            color(),
            prop::option::of(pick(NAMES)),
            prop::option::of(pick(NAMES)),
            prop::option::of(due()),
        ),
        (tags(), labels(), score()),
    )
        .prop_map(
            |(
                (id, name, note, rank, bucket, size),
                (flag, color, shade, owner, alias, due),
                (tags, labels, score),
            )| Rec {
                id,
                name,
                note,
                rank,
                bucket,
                size,
                flag,
                color,
                shade,
                owner,
                alias,
                due,
                tags,
                labels,
                score,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => rec().prop_map(Op::Insert),
        3 => (rec(), 0u16..(1 << 14)).prop_map(|(r, m)| Op::Update(r, m)),
        2 => (0u32..250).prop_map(Op::Delete),
    ]
}

fn range_op<T: Clone + Debug + 'static>(
    s: impl Strategy<Value = T> + Clone + 'static,
) -> BoxedStrategy<RangeOp<T>> {
    prop_oneof![
        s.clone().prop_map(RangeOp::Gt),
        s.clone().prop_map(RangeOp::Gte),
        s.clone().prop_map(RangeOp::Lt),
        s.clone().prop_map(RangeOp::Lte),
        (s.clone(), s).prop_map(|(a, b)| RangeOp::Between(a, b)),
    ]
    .boxed()
}

fn list<T: Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    prop::collection::vec(s, 0..4)
}

fn clause() -> impl Strategy<Value = Clause> {
    Union::new(vec![
        (0u32..250).prop_map(Clause::Id).boxed(),
        list(0u32..250).prop_map(Clause::IdIn).boxed(),
        pick(NAMES).prop_map(Clause::Name).boxed(),
        list(pick(NAMES)).prop_map(Clause::NameIn).boxed(),
        pick(NEEDLES).prop_map(Clause::NameContains).boxed(),
        range_op(pick(BOUNDS)).prop_map(Clause::NameRange).boxed(),
        pick(NAMES).prop_map(Clause::Note).boxed(),
        list(pick(NAMES)).prop_map(Clause::NoteIn).boxed(),
        pick(NEEDLES).prop_map(Clause::NoteContains).boxed(),
        rank().prop_map(Clause::Rank).boxed(),
        list(rank()).prop_map(Clause::RankIn).boxed(),
        range_op(rank()).prop_map(Clause::RankRange).boxed(),
        (0u8..24).prop_map(Clause::Bucket).boxed(),
        list(0u8..24).prop_map(Clause::BucketIn).boxed(),
        range_op(size()).prop_map(Clause::SizeRange).boxed(),
        any::<bool>().prop_map(Clause::Flag).boxed(),
        list(any::<bool>()).prop_map(Clause::FlagIn).boxed(),
        range_op(any::<bool>()).prop_map(Clause::FlagRange).boxed(),
        color().prop_map(Clause::Color).boxed(),
        list(color()).prop_map(Clause::ColorIn).boxed(),
        range_op(color()).prop_map(Clause::ColorRange).boxed(),
        color().prop_map(Clause::Shade).boxed(),
        list(color()).prop_map(Clause::ShadeIn).boxed(),
        pick(NAMES).prop_map(Clause::Owner).boxed(),
        list(pick(NAMES)).prop_map(Clause::OwnerIn).boxed(),
        pick(NEEDLES).prop_map(Clause::OwnerContains).boxed(),
        any::<bool>().prop_map(Clause::OwnerSome).boxed(),
        range_op(pick(BOUNDS)).prop_map(Clause::AliasRange).boxed(),
        any::<bool>().prop_map(Clause::AliasSome).boxed(),
        due().prop_map(Clause::Due).boxed(),
        list(due()).prop_map(Clause::DueIn).boxed(),
        range_op(due()).prop_map(Clause::DueRange).boxed(),
        any::<bool>().prop_map(Clause::DueSome).boxed(),
        pick(TAGS).prop_map(Clause::Tag).boxed(),
        list(pick(TAGS)).prop_map(Clause::AnyTag).boxed(),
        list(pick(TAGS)).prop_map(Clause::AllTags).boxed(),
        pick(LABELS).prop_map(Clause::Label).boxed(),
        list(pick(LABELS)).prop_map(Clause::AnyLabel).boxed(),
        list(pick(LABELS)).prop_map(Clause::AllLabels).boxed(),
        range_op(score()).prop_map(Clause::ScoreRange).boxed(),
    ])
}

fn order() -> impl Strategy<Value = Order> {
    (
        prop::sample::select(vec![
            Key::Id,
            Key::Name,
            Key::Rank,
            Key::Size,
            Key::Color,
            Key::Owner,
            Key::Due,
        ]),
        any::<bool>(),
    )
        .prop_map(|(key, desc)| Order { key, desc })
}

#[derive(Debug, Clone)]
struct QueryCase {
    clauses: Vec<Clause>,
    order: Order,
    offset: usize,
    limit: Option<usize>,
}

fn query_case() -> impl Strategy<Value = QueryCase> {
    (
        prop::collection::vec(clause(), 0..4),
        order(),
        prop_oneof![3 => Just(0usize), 1 => 0usize..12],
        prop::option::of(0usize..15),
    )
        .prop_map(|(clauses, order, offset, limit)| QueryCase {
            clauses,
            order,
            offset,
            limit,
        })
}

// ---------------------------------------------------------------------------------------
// The check.

fn ids<'a>(rows: impl IntoIterator<Item = &'a Rec>) -> Vec<u32> {
    rows.into_iter().map(|r| r.id).collect()
}

fn plain_ids<'a>(rows: impl IntoIterator<Item = &'a PlainRec>) -> Vec<u32> {
    rows.into_iter().map(|r| r.id).collect()
}

async fn check(rows: Vec<Rec>, ops: Vec<Op>, cases: Vec<QueryCase>) {
    let redex = Redex::new();
    let indexed = RecsAdapter::open(&redex, 1).unwrap();
    let plain = PlainStore::open(&redex, 1).unwrap();
    let mut reference: BTreeMap<u32, Rec> = BTreeMap::new();
    let (mut last, mut plain_last) = (None, None);
    let ops = rows.into_iter().map(Op::Insert).chain(ops);
    for op in ops {
        match op {
            Op::Insert(r) => {
                last = Some(indexed.insert(r.clone()).unwrap());
                plain_last = Some(plain.insert(PlainRec::from(&r)).unwrap());
                reference.insert(r.id, r);
            }
            Op::Update(r, m) => {
                last = Some(indexed.update(patch_of!(RecPatch, &r, m)).unwrap());
                plain_last = Some(plain.update(patch_of!(PlainRecPatch, &r, m)).unwrap());
                if let Some(dst) = reference.get_mut(&r.id) {
                    ref_update(dst, &r, m);
                }
            }
            Op::Delete(id) => {
                last = Some(indexed.delete(id).unwrap());
                plain_last = Some(plain.delete(id).unwrap());
                reference.remove(&id);
            }
        }
    }
    if let (Some(a), Some(b)) = (last, plain_last) {
        indexed.wait_for_seq(a).await.unwrap();
        plain.wait_for_seq(b).await.unwrap();
    }
    let shared = indexed.state();
    let st = shared.read();
    let plain_shared = plain.state();
    let pst = plain_shared.read();

    let all: Vec<Rec> = reference.values().cloned().collect();
    assert_eq!(st.iter().cloned().collect::<Vec<_>>(), all);
    assert_eq!(
        pst.iter().cloned().collect::<Vec<_>>(),
        all.iter().map(PlainRec::from).collect::<Vec<_>>()
    );
    for id in 0..250 {
        assert_eq!(st.find_unique(&id), reference.get(&id));
    }

    for case in &cases {
        let spec = Spec::of(&case.clauses);
        let want: Vec<&Rec> = reference.values().filter(|r| spec.matches(r)).collect();
        let want_ids = ids(want.iter().copied());

        // The two ways of building a filter agree, on both models.
        let built = with_clauses!(st.query(), &case.clauses)
            .spec()
            .filter
            .clone();
        let literal = filter_literal!(RecFilter, &spec);
        assert_eq!(built, literal, "builders vs struct literal: {case:?}");
        let plain_built = with_clauses!(pst.query(), &case.clauses)
            .spec()
            .filter
            .clone();
        let plain_literal = filter_literal!(PlainRecFilter, &spec);
        assert_eq!(plain_built, plain_literal);
        let watch_built = with_clauses!(indexed.watch(), &case.clauses)
            .spec()
            .filter
            .clone();
        assert_eq!(watch_built, literal, "watch builders: {case:?}");
        assert_eq!(literal.is_empty(), case.clauses.is_empty());

        // Whole-table terminals.
        let found = st.find_many(&literal);
        assert_eq!(ids(found.iter().copied()), want_ids, "find_many: {case:?}");
        assert_eq!(found, want);
        for r in &all {
            assert_eq!(
                literal.matches(r),
                spec.matches(r),
                "matches: {r:?} {case:?}"
            );
        }
        assert_eq!(st.count_where(&literal), want.len());
        assert_eq!(st.exists_where(&literal), !want.is_empty());
        assert_eq!(plain_ids(pst.find_many(&plain_literal)), want_ids);
        assert_eq!(pst.count_where(&plain_literal), want.len());
        assert_eq!(pst.exists_where(&plain_literal), !want.is_empty());

        // Ordered, offset, limited queries.
        let mut sorted = want.clone();
        sorted.sort_by(|a, b| ref_cmp(case.order, a, b));
        let page: Vec<u32> = sorted
            .iter()
            .skip(case.offset)
            .take(case.limit.unwrap_or(usize::MAX))
            .map(|r| r.id)
            .collect();
        let query = || {
            let q = with_clauses!(st.query(), &case.clauses)
                .order_by(order_of!(RecOrderBy, case.order))
                .offset(case.offset);
            match case.limit {
                Some(n) => q.limit(n),
                None => q,
            }
        };
        let plain_query = || {
            let q = pst
                .query()
                .with_filter(plain_literal.clone())
                .order_by(order_of!(PlainRecOrderBy, case.order))
                .offset(case.offset);
            match case.limit {
                Some(n) => q.limit(n),
                None => q,
            }
        };
        assert_eq!(ids(&query().collect()), page, "query: {case:?}");
        assert_eq!(ids(query().iter()), page);
        assert_eq!(
            query()
                .collect_arcs()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            page
        );
        let mut visited = Vec::new();
        query().for_each(|r| visited.push(r.id));
        assert_eq!(visited, page);
        assert_eq!(query().count(), page.len());
        assert_eq!(query().exists(), !page.is_empty());
        assert_eq!(query().first().map(|r| r.id), page.first().copied());
        let by_literal = st
            .query()
            .with_filter(literal.clone())
            .order_by(order_of!(RecOrderBy, case.order))
            .offset(case.offset);
        let by_literal = match case.limit {
            Some(n) => by_literal.limit(n),
            None => by_literal,
        };
        assert_eq!(ids(by_literal.iter()), page);
        // The twin without indexes gives the same page.
        assert_eq!(plain_ids(&plain_query().collect()), page, "plain: {case:?}");
        assert_eq!(plain_query().count(), page.len());
        assert_eq!(plain_query().first().map(|r| r.id), page.first().copied());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn derived_filters_equal_a_naive_reference(
        rows in prop::collection::vec(rec(), 0..160),
        ops in prop::collection::vec(op(), 0..40),
        cases in prop::collection::vec(query_case(), 1..10),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(check(rows, ops, cases));
    }
}

// ---------------------------------------------------------------------------------------
// The indexes are really used: each indexed clause offers the planner exactly the rows
// holding the value, and the twin offers nothing (so the property above compares an index
// plan with a scan).

fn fixed_row(i: u32) -> Rec {
    Rec {
        id: i,
        name: format!("n{}", i % 10),
        note: format!("note{}", i % 5),
        rank: (i % 20) as i32 - 10,
        bucket: (i % 7) as u8,
        size: u64::from(i),
        flag: i.is_multiple_of(4),
        color: COLORS[(i % 4) as usize],
        shade: COLORS[(i % 3) as usize],
        owner: i.is_multiple_of(2).then(|| format!("o{}", i % 6)),
        alias: i.is_multiple_of(3).then(|| format!("a{}", i % 9)),
        due: (!i.is_multiple_of(5)).then_some(u64::from(i % 50)),
        tags: vec![format!("t{}", i % 8), format!("t{}", i % 8), "all".into()],
        labels: [format!("l{}", i % 11)].into(),
        score: f64::from(i) / 2.0,
    }
}

fn offer<M: netdb_runtime::cortex::CortexModel>(
    table: &netdb_runtime::cortex::Table<M>,
    filter: &M::Filter,
) -> Option<usize> {
    let mut plan = Plan::default();
    filter.plan(table.indexes(), &mut plan);
    plan.best_len()
}

#[tokio::test]
async fn every_index_offers_exactly_its_rows_and_the_twin_offers_none() {
    let redex = Redex::new();
    let indexed = RecsAdapter::open(&redex, 1).unwrap();
    let plain = PlainStore::open(&redex, 1).unwrap();
    let mut last = (0, 0);
    for i in 0..200 {
        let r = fixed_row(i);
        last = (
            indexed.insert(r.clone()).unwrap(),
            plain.insert(PlainRec::from(&r)).unwrap(),
        );
    }
    // Changes after the inserts keep the indexes right: a patch moving keys, a delete.
    last.0 = indexed
        .update(
            RecPatch::new(3)
                .name("moved")
                .tags(vec!["t7".into()])
                .due(None)
                .owner(Some("o1".into())),
        )
        .unwrap();
    last.0 = indexed.delete(8).unwrap();
    indexed.wait_for_seq(last.0).await.unwrap();
    plain.wait_for_seq(last.1).await.unwrap();
    let shared = indexed.state();
    let st = shared.read();
    let plain_shared = plain.state();
    let pst = plain_shared.read();
    let f = |change: fn(&mut RecFilter)| {
        let mut f = RecFilter::default();
        change(&mut f);
        f
    };
    let cases: Vec<(&str, RecFilter)> = vec![
        ("name (ordered, eq)", f(|f| f.name = Some("n3".into()))),
        (
            "name (ordered, moved)",
            f(|f| f.name = Some("moved".into())),
        ),
        (
            "name (ordered, range)",
            f(|f| {
                f.name_range = Some((Bound::Included("n1".into()), Bound::Excluded("n3".into())))
            }),
        ),
        ("note (hash)", f(|f| f.note = Some("note2".into()))),
        (
            "note_in (hash)",
            f(|f| f.note_in = Some(vec!["note1".into(), "note4".into()])),
        ),
        ("rank (ordered, eq)", f(|f| f.rank = Some(-10))),
        (
            "rank (ordered, range)",
            f(|f| f.rank_range = Some((Bound::Included(5), Bound::Unbounded))),
        ),
        ("bucket (hash)", f(|f| f.bucket = Some(6))),
        ("flag (hash)", f(|f| f.flag = Some(true))),
        ("color (ordered)", f(|f| f.color = Some(Color::Black))),
        (
            "color (ordered, range)",
            f(|f| f.color_range = Some((Bound::Excluded(Color::Green), Bound::Unbounded))),
        ),
        ("shade (hash)", f(|f| f.shade = Some(Color::Blue))),
        ("owner (hash on option)", f(|f| f.owner = Some("o1".into()))),
        (
            "alias (ordered on option, range)",
            f(|f| f.alias_range = Some((Bound::Included("a7".into()), Bound::Unbounded))),
        ),
        ("due (ordered on option, eq)", f(|f| f.due = Some(7))),
        (
            "due (ordered on option, range)",
            f(|f| f.due_range = Some((Bound::Included(1), Bound::Excluded(3)))),
        ),
        ("tag (inverted on Vec)", f(|f| f.tag = Some("t7".into()))),
        (
            "any_tag (inverted)",
            f(|f| f.any_tag = Some(vec!["t1".into(), "t2".into()])),
        ),
        (
            "all_tags (inverted)",
            f(|f| f.all_tags = Some(vec!["all".into(), "t5".into()])),
        ),
        (
            "label (inverted on BTreeSet)",
            f(|f| f.label = Some("l4".into())),
        ),
        ("id", f(|f| f.id = Some(17))),
        ("absent key", f(|f| f.note = Some("nowhere".into()))),
    ];
    for (what, filter) in &cases {
        let n = st.count_where(filter);
        assert_eq!(
            offer(&st, filter),
            Some(n),
            "{what}: the index offers its rows"
        );
    }
    // Sanity: these filters select rows at all, and some are selective enough for the
    // planner to use them (at most 1/8 of the rows).
    assert!(cases.iter().filter(|(_, f)| st.count_where(f) > 0).count() > 15);
    assert!(
        cases
            .iter()
            .filter(|(_, f)| st.count_where(f) <= 25)
            .count()
            > 5
    );
    // Clauses without an index offer nothing.
    assert_eq!(
        offer(
            &st,
            &f(|f| f.size_range = Some((Bound::Unbounded, Bound::Excluded(5))))
        ),
        None
    );
    assert_eq!(offer(&st, &f(|f| f.name_contains = Some("n".into()))), None);
    assert_eq!(offer(&st, &f(|f| f.owner_some = Some(true))), None);
    assert_eq!(
        offer(
            &st,
            &f(|f| f.score_range = Some((Bound::Unbounded, Bound::Unbounded)))
        ),
        None
    );
    // The twin offers nothing but the id.
    let mut p = PlainRecFilter {
        note: Some("note2".into()),
        tag: Some("t7".into()),
        rank: Some(-10),
        ..Default::default()
    };
    assert_eq!(offer(&pst, &p), None);
    p.id = Some(17);
    assert_eq!(offer(&pst, &p), Some(1));
}
