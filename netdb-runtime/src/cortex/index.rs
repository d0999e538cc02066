//! Secondary indexes and the planner's candidate sets.
//!
//! Every index maps keys to the rows holding them, as sets of [`RowKey`]s (a row's id and
//! where the table stores it) in id order, so a candidate set is already in id order and
//! each candidate's row is one array access away. The table keeps them current: generated
//! code only says which field feeds which index.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::ops::{Bound, RangeBounds};

use super::model::{Direction, FastHash, IdWalk};
use super::sorted::{self, SortedSet};

/// A row as indexes hold it: its id, and the slot where the table stores it. Keys compare
/// (and hash) by id alone; a table gives each live id one slot.
#[derive(Debug, Clone)]
pub struct RowKey<Id> {
    id: Id,
    slot: u32,
}

impl<Id> RowKey<Id> {
    /// The key of row `id` stored in `slot`. Tables make their own keys; this is for
    /// testing an index on its own.
    pub fn new(id: Id, slot: u32) -> Self {
        RowKey { id, slot }
    }

    /// The row's id.
    pub fn id(&self) -> &Id {
        &self.id
    }

    pub(crate) fn slot(&self) -> usize {
        self.slot as usize
    }
}

impl<Id: PartialEq> PartialEq for RowKey<Id> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<Id: Eq> Eq for RowKey<Id> {}

impl<Id: Ord> PartialOrd for RowKey<Id> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<Id: Ord> Ord for RowKey<Id> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.id.cmp(&other.id)
    }
}

impl<Id> Borrow<Id> for RowKey<Id> {
    fn borrow(&self) -> &Id {
        &self.id
    }
}

/// The rows holding one index key, in ascending id order. Most keys of an ordered index
/// belong to one row, so a single row is stored inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSet<Id> {
    /// One row.
    One(RowKey<Id>),
    /// Two or more rows.
    Many(SortedSet<RowKey<Id>>),
}

impl<Id> IdSet<Id> {
    /// How many rows.
    pub fn len(&self) -> usize {
        match self {
            IdSet::One(_) => 1,
            IdSet::Many(s) => s.len(),
        }
    }

    /// Never true for a set an index holds (empty sets are dropped).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows, ascending by id.
    pub fn iter(&self) -> IdSetIter<'_, Id> {
        match self {
            IdSet::One(x) => IdSetIter::One(Some(x)),
            IdSet::Many(s) => IdSetIter::Many(s.iter()),
        }
    }

    /// The ids, ascending.
    pub fn ids(&self) -> impl DoubleEndedIterator<Item = &Id> + ExactSizeIterator {
        self.iter().map(RowKey::id)
    }
}

impl<Id: Ord + Clone> IdSet<Id> {
    /// Whether the row `id` is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        match self {
            IdSet::One(x) => x.id == *id,
            IdSet::Many(s) => s.contains(id),
        }
    }

    fn insert(&mut self, row: &RowKey<Id>) {
        match self {
            IdSet::One(x) if x.id == row.id => {}
            IdSet::One(x) => {
                let (a, b) = (x.clone(), row.clone());
                let pair = if a < b { vec![a, b] } else { vec![b, a] };
                *self = IdSet::Many(SortedSet::from_sorted(pair));
            }
            IdSet::Many(s) => {
                s.insert(row.clone());
            }
        }
    }

    /// Removes the row `id`; returns whether the set is now empty.
    fn remove(&mut self, id: &Id) -> bool {
        match self {
            IdSet::One(x) => x.id == *id,
            IdSet::Many(s) => {
                s.remove(id);
                if s.len() == 1 {
                    let last = s.pop_first().expect("one element");
                    *self = IdSet::One(last);
                }
                false
            }
        }
    }
}

/// Iterator over an [`IdSet`].
#[derive(Debug, Clone)]
pub enum IdSetIter<'a, Id> {
    /// Over a single row.
    One(Option<&'a RowKey<Id>>),
    /// Over a set.
    Many(sorted::Iter<'a, RowKey<Id>>),
}

impl<'a, Id> Iterator for IdSetIter<'a, Id> {
    type Item = &'a RowKey<Id>;
    #[inline]
    fn next(&mut self) -> Option<&'a RowKey<Id>> {
        match self {
            IdSetIter::One(x) => x.take(),
            IdSetIter::Many(it) => it.next(),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            IdSetIter::One(x) => (usize::from(x.is_some()), Some(usize::from(x.is_some()))),
            IdSetIter::Many(it) => it.size_hint(),
        }
    }
    fn fold<B, F: FnMut(B, Self::Item) -> B>(self, init: B, f: F) -> B {
        match self {
            IdSetIter::One(x) => x.into_iter().fold(init, f),
            IdSetIter::Many(it) => it.fold(init, f),
        }
    }
}

impl<Id> DoubleEndedIterator for IdSetIter<'_, Id> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            IdSetIter::One(x) => x.take(),
            IdSetIter::Many(it) => it.next_back(),
        }
    }
}

impl<Id> ExactSizeIterator for IdSetIter<'_, Id> {}

impl<'a, Id> IntoIterator for &'a IdSet<Id> {
    type Item = &'a RowKey<Id>;
    type IntoIter = IdSetIter<'a, Id>;
    fn into_iter(self) -> IdSetIter<'a, Id> {
        self.iter()
    }
}

/// Equality index: key → ids.
#[derive(Debug, Clone)]
pub struct HashIndex<K, Id> {
    map: HashMap<K, IdSet<Id>, FastHash>,
}

impl<K, Id> Default for HashIndex<K, Id> {
    fn default() -> Self {
        HashIndex {
            map: HashMap::default(),
        }
    }
}

impl<K: Hash + Eq, Id: Ord + Clone> HashIndex<K, Id> {
    /// Records that `row` holds `key`.
    pub fn insert(&mut self, key: K, row: &RowKey<Id>) {
        match self.map.entry(key) {
            Entry::Occupied(mut e) => e.get_mut().insert(row),
            Entry::Vacant(e) => {
                e.insert(IdSet::One(row.clone()));
            }
        }
    }

    /// Forgets that `row` holds `key`.
    pub fn remove(&mut self, key: &K, row: &RowKey<Id>) {
        if self.map.get_mut(key).is_some_and(|set| set.remove(&row.id)) {
            self.map.remove(key);
        }
    }

    /// The ids of rows holding `key`.
    pub fn get(&self, key: &K) -> Option<&IdSet<Id>> {
        self.map.get(key)
    }

    /// Moves `row` from `old` to `new`; nothing to do when they are equal.
    pub fn update(&mut self, old: &K, new: &K, row: &RowKey<Id>)
    where
        K: Clone,
    {
        if old != new {
            self.remove(old, row);
            self.insert_ref(new, row);
        }
    }

    /// Records that `row` holds `key`, cloning the key only if the index does not hold it
    /// yet (what generated index code calls: a `String` key held by many rows is not
    /// copied for each).
    pub fn insert_ref(&mut self, key: &K, row: &RowKey<Id>)
    where
        K: Clone,
    {
        match self.map.get_mut(key) {
            Some(ids) => ids.insert(row),
            None => self.insert(key.clone(), row),
        }
    }

    /// Distinct keys held.
    pub fn keys(&self) -> usize {
        self.map.len()
    }
}

/// Ordered index: key → ids, walkable in key order and by range.
#[derive(Debug, Clone)]
pub struct OrderedIndex<K, Id> {
    map: BTreeMap<K, IdSet<Id>>,
}

impl<K, Id> Default for OrderedIndex<K, Id> {
    fn default() -> Self {
        OrderedIndex {
            map: BTreeMap::new(),
        }
    }
}

impl<K: Ord, Id: Ord + Clone> OrderedIndex<K, Id> {
    /// Records that `row` holds `key`.
    pub fn insert(&mut self, key: K, row: &RowKey<Id>) {
        // Keys mostly arrive in ascending order (timestamps, counters): appending past the
        // last key skips the entry search's second descent.
        if let Some(mut last) = self.map.last_entry() {
            match key.cmp(last.key()) {
                Ordering::Greater => {
                    self.map.insert(key, IdSet::One(row.clone()));
                    return;
                }
                Ordering::Equal => {
                    last.get_mut().insert(row);
                    return;
                }
                Ordering::Less => {}
            }
        }
        self.map
            .entry(key)
            .and_modify(|set| set.insert(row))
            .or_insert_with(|| IdSet::One(row.clone()));
    }

    /// Records that `row` holds `key`, cloning the key only if the index does not hold it
    /// yet (what generated index code calls).
    pub fn insert_ref(&mut self, key: &K, row: &RowKey<Id>)
    where
        K: Clone,
    {
        if let Some(mut last) = self.map.last_entry() {
            match key.cmp(last.key()) {
                Ordering::Greater => {
                    self.map.insert(key.clone(), IdSet::One(row.clone()));
                    return;
                }
                Ordering::Equal => {
                    last.get_mut().insert(row);
                    return;
                }
                Ordering::Less => {}
            }
        }
        match self.map.get_mut(key) {
            Some(set) => set.insert(row),
            None => {
                self.map.insert(key.clone(), IdSet::One(row.clone()));
            }
        }
    }

    /// Forgets that `row` holds `key`.
    pub fn remove(&mut self, key: &K, row: &RowKey<Id>) {
        if self.map.get_mut(key).is_some_and(|set| set.remove(&row.id)) {
            self.map.remove(key);
        }
    }

    /// The ids of rows holding `key`.
    pub fn get(&self, key: &K) -> Option<&IdSet<Id>> {
        self.map.get(key)
    }

    /// Moves `row` from `old` to `new`; nothing to do when they are equal.
    pub fn update(&mut self, old: &K, new: &K, row: &RowKey<Id>)
    where
        K: Clone,
    {
        if old != new {
            self.remove(old, row);
            self.insert_ref(new, row);
        }
    }

    /// The rows whose key lies in `range`, in key order.
    pub fn range<'a, R: RangeBounds<K>>(
        &'a self,
        range: R,
    ) -> impl Iterator<Item = &'a RowKey<Id>> + 'a
    where
        K: 'a,
    {
        // `BTreeMap::range` panics on an inverted or empty-excluded range; such a range
        // holds nothing.
        let valid = match (range.start_bound(), range.end_bound()) {
            (Bound::Included(a), Bound::Included(b)) => a <= b,
            (Bound::Included(a) | Bound::Excluded(a), Bound::Excluded(b))
            | (Bound::Excluded(a), Bound::Included(b)) => a < b,
            _ => true,
        };
        let inner = valid.then(|| self.map.range(range));
        inner.into_iter().flatten().flat_map(|(_, ids)| ids.iter())
    }

    /// Every row, ordered by key then id, in `direction`: what an `order_by` on this field
    /// walks.
    pub fn walk(&self, direction: Direction) -> IdWalk<'_, Id> {
        match direction {
            Direction::Asc => Box::new(self.map.values().flat_map(|ids| ids.iter())),
            Direction::Desc => Box::new(self.map.values().rev().flat_map(|ids| ids.iter().rev())),
        }
    }
}

/// Inverted index for collection fields: element → ids of rows whose collection holds it.
#[derive(Debug, Clone)]
pub struct InvertedIndex<K, Id> {
    inner: HashIndex<K, Id>,
}

impl<K, Id> Default for InvertedIndex<K, Id> {
    fn default() -> Self {
        InvertedIndex {
            inner: HashIndex::default(),
        }
    }
}

impl<K: Hash + Eq + Clone, Id: Ord + Clone> InvertedIndex<K, Id> {
    /// Records every element of a row's collection (duplicates are fine).
    pub fn insert<'k>(&mut self, elements: impl IntoIterator<Item = &'k K>, row: &RowKey<Id>)
    where
        K: 'k,
    {
        for k in elements {
            self.inner.insert_ref(k, row);
        }
    }

    /// Replaces a row's collection `old` with `new`: only elements that left or joined
    /// change the index.
    pub fn update(&mut self, old: &[K], new: &[K], row: &RowKey<Id>) {
        if old == new {
            return;
        }
        if old.len().saturating_mul(new.len()) > 1024 {
            self.remove(old, row);
            self.insert(new, row);
            return;
        }
        for k in old {
            if !new.contains(k) {
                self.inner.remove(k, row);
            }
        }
        for k in new {
            if !old.contains(k) {
                self.inner.insert_ref(k, row);
            }
        }
    }

    /// Forgets every element of a row's collection.
    pub fn remove<'k>(&mut self, elements: impl IntoIterator<Item = &'k K>, row: &RowKey<Id>)
    where
        K: 'k,
    {
        for k in elements {
            self.inner.remove(k, row);
        }
    }

    /// The ids of rows whose collection holds `element`.
    pub fn get(&self, element: &K) -> Option<&IdSet<Id>> {
        self.inner.get(element)
    }
}

/// What the planner knows so far: the smallest candidate set offered.
///
/// Filters call the `offer_*` methods from [`ModelFilter::plan`](super::ModelFilter::plan);
/// an offer must contain every row that can match the clause it comes from.
#[derive(Debug)]
pub struct Plan<'i, Id> {
    best: Option<Candidates<'i, Id>>,
}

#[derive(Debug)]
enum Candidates<'i, Id> {
    One(&'i IdSet<Id>),
    Union(Vec<&'i IdSet<Id>>, usize),
    Keys(Vec<&'i RowKey<Id>>),
    Ids(Vec<&'i Id>),
}

impl<Id> Candidates<'_, Id> {
    fn len(&self) -> usize {
        match self {
            Candidates::One(s) => s.len(),
            Candidates::Union(_, n) => *n,
            Candidates::Keys(v) => v.len(),
            Candidates::Ids(v) => v.len(),
        }
    }
}

/// The planner's choice, in ascending id order without duplicates.
#[derive(Debug)]
pub(crate) enum Chosen<'i, Id> {
    /// One index entry, as the index holds it.
    Set(&'i IdSet<Id>),
    /// Rows located by an index.
    Keys(Vec<&'i RowKey<Id>>),
    /// Ids named by the filter, to look up.
    Ids(Vec<&'i Id>),
}

impl<Id> Chosen<'_, Id> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Chosen::Set(s) => s.len(),
            Chosen::Keys(v) => v.len(),
            Chosen::Ids(v) => v.len(),
        }
    }
}

impl<Id> Default for Plan<'_, Id> {
    fn default() -> Self {
        Plan { best: None }
    }
}

impl<'i, Id: Ord> Plan<'i, Id> {
    /// The size of the smallest offer so far.
    pub fn best_len(&self) -> Option<usize> {
        self.best.as_ref().map(Candidates::len)
    }

    fn keep(&mut self, c: Candidates<'i, Id>) {
        if self.best_len().is_none_or(|n| c.len() < n) {
            self.best = Some(c);
        }
    }

    /// Offers the rows of one index entry (`None`: the key is absent, nothing matches).
    pub fn offer_set(&mut self, set: Option<&'i IdSet<Id>>) {
        match set {
            Some(s) => self.keep(Candidates::One(s)),
            None => self.keep(Candidates::Ids(Vec::new())),
        }
    }

    /// Offers the union of several index entries (an `_in` or `any` clause).
    pub fn offer_union(&mut self, sets: impl IntoIterator<Item = Option<&'i IdSet<Id>>>) {
        let sets: Vec<_> = sets.into_iter().flatten().collect();
        let n = sets.iter().map(|s| s.len()).sum();
        self.keep(Candidates::Union(sets, n));
    }

    /// Offers rows an index located (a range walk). The walk stops as soon as it is no
    /// smaller than the best offer so far.
    pub fn offer_keys(&mut self, keys: impl IntoIterator<Item = &'i RowKey<Id>>) {
        if let Some(v) = self.take_below_best(keys) {
            self.keep(Candidates::Keys(v));
        }
    }

    /// Offers ids named by the filter (a direct id clause); they are looked up in the
    /// table. Stops as soon as the offer is no smaller than the best so far.
    pub fn offer_ids(&mut self, ids: impl IntoIterator<Item = &'i Id>) {
        if let Some(v) = self.take_below_best(ids) {
            self.keep(Candidates::Ids(v));
        }
    }

    fn take_below_best<T>(&self, items: impl IntoIterator<Item = T>) -> Option<Vec<T>> {
        let cap = self.best_len().unwrap_or(usize::MAX);
        let mut v = Vec::new();
        for x in items {
            if v.len() >= cap {
                return None;
            }
            v.push(x);
        }
        Some(v)
    }

    /// The chosen candidates; `None` when no clause was indexed (scan every row).
    pub(crate) fn choose(self) -> Option<Chosen<'i, Id>> {
        Some(match self.best? {
            Candidates::One(s) => Chosen::Set(s),
            Candidates::Union(sets, n) => {
                let mut v = Vec::with_capacity(n);
                for s in &sets {
                    v.extend(s.iter());
                }
                if sets.len() > 1 {
                    v.sort_unstable();
                    v.dedup();
                }
                Chosen::Keys(v)
            }
            Candidates::Keys(mut v) => {
                v.sort_unstable();
                v.dedup();
                Chosen::Keys(v)
            }
            Candidates::Ids(mut v) => {
                v.sort_unstable();
                v.dedup();
                Chosen::Ids(v)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u64) -> RowKey<u64> {
        RowKey::new(id, id as u32)
    }

    fn ids<'a>(it: impl Iterator<Item = &'a RowKey<u64>>) -> Vec<u64> {
        it.map(|k| *k.id()).collect()
    }

    #[test]
    fn ordered_index_ranges_and_walks() {
        let mut ix = OrderedIndex::<u32, u64>::default();
        for (k, id) in [(5, 1), (3, 2), (5, 0), (9, 3)] {
            ix.insert(k, &key(id));
        }
        assert_eq!(ids(ix.range(4..=9)), [0, 1, 3]);
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = ix.range(9..4).count();
        assert_eq!(inverted, 0);
        assert_eq!(ix.range(5..5).count(), 0);
        assert_eq!(ids(ix.walk(Direction::Asc)), [2, 0, 1, 3]);
        assert_eq!(ids(ix.walk(Direction::Desc)), [3, 1, 0, 2]);
        ix.remove(&5, &key(0));
        assert_eq!(ix.get(&5), Some(&IdSet::One(key(1))));
        ix.remove(&5, &key(1));
        assert!(ix.get(&5).is_none());
        ix.remove(&9, &key(7)); // not there: nothing changes
        assert_eq!(ix.get(&9), Some(&IdSet::One(key(3))));
    }

    #[test]
    fn plan_keeps_the_smallest_offer() {
        let a = IdSet::Many(SortedSet::from_sorted((0..10u64).map(key).collect()));
        let b = IdSet::Many(SortedSet::from_sorted(vec![key(3), key(7)]));
        let mut plan = Plan::default();
        assert!(plan.best_len().is_none());
        plan.offer_set(Some(&a));
        plan.offer_union([Some(&b), Some(&b)]);
        assert_eq!(plan.best_len(), Some(4));
        plan.offer_keys(a.iter()); // larger, abandoned early
        let Some(Chosen::Keys(v)) = plan.choose() else {
            panic!("the union is chosen")
        };
        assert_eq!(ids(v.into_iter()), [3, 7]);

        let mut plan = Plan::default();
        plan.offer_set(Some(&a));
        plan.offer_set(None);
        assert_eq!(plan.choose().map(|c| c.len()), Some(0));
    }
}
