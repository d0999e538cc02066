//! Secondary indexes and the planner's candidate sets.
//!
//! Every index maps keys to the ids of the rows holding them, as `BTreeSet`s, so a candidate
//! set is already in id order. The table keeps them current: generated code only says which
//! field feeds which index.

use std::collections::btree_map::Entry as BTreeEntry;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, btree_set};
use std::hash::Hash;
use std::ops::{Bound, RangeBounds};

use super::model::{Direction, FastHash, IdWalk};

/// The ids of the rows holding one index key, in ascending order. Most keys of an ordered
/// index belong to one row, so a single id is stored inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdSet<Id> {
    /// One id.
    One(Id),
    /// Two or more ids.
    Many(BTreeSet<Id>),
}

impl<Id> IdSet<Id> {
    /// How many ids.
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

    /// The ids, ascending.
    pub fn iter(&self) -> IdSetIter<'_, Id> {
        match self {
            IdSet::One(x) => IdSetIter::One(Some(x)),
            IdSet::Many(s) => IdSetIter::Many(s.iter()),
        }
    }
}

impl<Id: Ord + Clone> IdSet<Id> {
    /// Whether `id` is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        match self {
            IdSet::One(x) => x == id,
            IdSet::Many(s) => s.contains(id),
        }
    }

    fn insert(&mut self, id: &Id) {
        match self {
            IdSet::One(x) if x == id => {}
            IdSet::One(x) => {
                let set = BTreeSet::from([x.clone(), id.clone()]);
                *self = IdSet::Many(set);
            }
            IdSet::Many(s) => {
                s.insert(id.clone());
            }
        }
    }

    /// Removes `id`; returns whether the set is now empty.
    fn remove(&mut self, id: &Id) -> bool {
        match self {
            IdSet::One(x) => x == id,
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
    /// Over a single id.
    One(Option<&'a Id>),
    /// Over a set.
    Many(btree_set::Iter<'a, Id>),
}

impl<'a, Id> Iterator for IdSetIter<'a, Id> {
    type Item = &'a Id;
    fn next(&mut self) -> Option<&'a Id> {
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
    type Item = &'a Id;
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
    /// Records that the row `id` holds `key`.
    pub fn insert(&mut self, key: K, id: &Id) {
        match self.map.entry(key) {
            Entry::Occupied(mut e) => e.get_mut().insert(id),
            Entry::Vacant(e) => {
                e.insert(IdSet::One(id.clone()));
            }
        }
    }

    /// Forgets that the row `id` holds `key`.
    pub fn remove(&mut self, key: &K, id: &Id) {
        if self.map.get_mut(key).is_some_and(|set| set.remove(id)) {
            self.map.remove(key);
        }
    }

    /// The ids of rows holding `key`.
    pub fn get(&self, key: &K) -> Option<&IdSet<Id>> {
        self.map.get(key)
    }

    /// Moves the row `id` from `old` to `new`; nothing to do when they are equal.
    pub fn update(&mut self, old: &K, new: &K, id: &Id)
    where
        K: Clone,
    {
        if old != new {
            self.remove(old, id);
            self.insert(new.clone(), id);
        }
    }

    /// Records that the row `id` holds `key`, cloning the key only if it is new.
    fn insert_ref(&mut self, key: &K, id: &Id)
    where
        K: Clone,
    {
        match self.map.get_mut(key) {
            Some(ids) => ids.insert(id),
            None => self.insert(key.clone(), id),
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
    /// Records that the row `id` holds `key`.
    pub fn insert(&mut self, key: K, id: &Id) {
        match self.map.entry(key) {
            BTreeEntry::Occupied(mut e) => e.get_mut().insert(id),
            BTreeEntry::Vacant(e) => {
                e.insert(IdSet::One(id.clone()));
            }
        }
    }

    /// Forgets that the row `id` holds `key`.
    pub fn remove(&mut self, key: &K, id: &Id) {
        if self.map.get_mut(key).is_some_and(|set| set.remove(id)) {
            self.map.remove(key);
        }
    }

    /// The ids of rows holding `key`.
    pub fn get(&self, key: &K) -> Option<&IdSet<Id>> {
        self.map.get(key)
    }

    /// Moves the row `id` from `old` to `new`; nothing to do when they are equal.
    pub fn update(&mut self, old: &K, new: &K, id: &Id)
    where
        K: Clone,
    {
        if old != new {
            self.remove(old, id);
            self.insert(new.clone(), id);
        }
    }

    /// The ids of rows whose key lies in `range`, in key order.
    pub fn range<'a, R: RangeBounds<K>>(&'a self, range: R) -> impl Iterator<Item = &'a Id> + 'a
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

    /// Every id, ordered by key then id, in `direction`: what an `order_by` on this field
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
    pub fn insert<'k>(&mut self, elements: impl IntoIterator<Item = &'k K>, id: &Id)
    where
        K: 'k,
    {
        for k in elements {
            self.inner.insert_ref(k, id);
        }
    }

    /// Replaces a row's collection `old` with `new`: only elements that left or joined
    /// change the index.
    pub fn update(&mut self, old: &[K], new: &[K], id: &Id) {
        if old == new {
            return;
        }
        if old.len().saturating_mul(new.len()) > 1024 {
            self.remove(old, id);
            self.insert(new, id);
            return;
        }
        for k in old {
            if !new.contains(k) {
                self.inner.remove(k, id);
            }
        }
        for k in new {
            if !old.contains(k) {
                self.inner.insert_ref(k, id);
            }
        }
    }

    /// Forgets every element of a row's collection.
    pub fn remove<'k>(&mut self, elements: impl IntoIterator<Item = &'k K>, id: &Id)
    where
        K: 'k,
    {
        for k in elements {
            self.inner.remove(k, id);
        }
    }

    /// The ids of rows whose collection holds `element`.
    pub fn get(&self, element: &K) -> Option<&IdSet<Id>> {
        self.inner.get(element)
    }
}

/// What the planner knows so far: the smallest candidate id set offered.
///
/// Filters call the `offer_*` methods from [`ModelFilter::plan`](super::ModelFilter::plan);
/// an offer must contain every id that can match the clause it comes from.
#[derive(Debug)]
pub struct Plan<'i, Id> {
    best: Option<Candidates<'i, Id>>,
}

#[derive(Debug)]
enum Candidates<'i, Id> {
    One(&'i IdSet<Id>),
    Union(Vec<&'i IdSet<Id>>, usize),
    Ids(Vec<&'i Id>),
}

impl<Id> Candidates<'_, Id> {
    fn len(&self) -> usize {
        match self {
            Candidates::One(s) => s.len(),
            Candidates::Union(_, n) => *n,
            Candidates::Ids(v) => v.len(),
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

    /// Offers ids from an iterator (a range walk, a direct id clause). The walk stops as
    /// soon as it is no smaller than the best offer so far.
    pub fn offer_ids(&mut self, ids: impl IntoIterator<Item = &'i Id>) {
        let cap = self.best_len().unwrap_or(usize::MAX);
        let mut v = Vec::new();
        for id in ids {
            if v.len() >= cap {
                return;
            }
            v.push(id);
        }
        self.keep(Candidates::Ids(v));
    }

    /// The chosen candidates, in ascending id order without duplicates; `None` when no
    /// clause was indexed (scan every row).
    pub(crate) fn into_ids(self) -> Option<Vec<&'i Id>> {
        Some(match self.best? {
            Candidates::One(s) => s.iter().collect(),
            Candidates::Union(sets, n) => {
                let mut v = Vec::with_capacity(n);
                for s in sets {
                    v.extend(s.iter());
                }
                if v.len() > 1 {
                    v.sort_unstable();
                    v.dedup();
                }
                v
            }
            Candidates::Ids(mut v) => {
                v.sort_unstable();
                v.dedup();
                v
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_index_ranges_and_walks() {
        let mut ix = OrderedIndex::<u32, u64>::default();
        for (k, id) in [(5, 1), (3, 2), (5, 0), (9, 3)] {
            ix.insert(k, &id);
        }
        assert_eq!(ix.range(4..=9).copied().collect::<Vec<_>>(), [0, 1, 3]);
        #[allow(clippy::reversed_empty_ranges)]
        let inverted = ix.range(9..4).count();
        assert_eq!(inverted, 0);
        assert_eq!(ix.range(5..5).count(), 0);
        let asc: Vec<_> = ix.walk(Direction::Asc).copied().collect();
        let desc: Vec<_> = ix.walk(Direction::Desc).copied().collect();
        assert_eq!(asc, [2, 0, 1, 3]);
        assert_eq!(desc, [3, 1, 0, 2]);
        ix.remove(&5, &0);
        assert_eq!(ix.get(&5), Some(&IdSet::One(1)));
        ix.remove(&5, &1);
        assert!(ix.get(&5).is_none());
        ix.remove(&9, &7); // not there: nothing changes
        assert_eq!(ix.get(&9), Some(&IdSet::One(3)));
    }

    #[test]
    fn plan_keeps_the_smallest_offer() {
        let a = IdSet::Many((0..10u64).collect());
        let b = IdSet::Many([7u64, 3].into());
        let mut plan = Plan::default();
        assert!(plan.best_len().is_none());
        plan.offer_set(Some(&a));
        plan.offer_union([Some(&b), Some(&b)]);
        assert_eq!(plan.best_len(), Some(4));
        plan.offer_ids(a.iter()); // larger, abandoned early
        assert_eq!(plan.into_ids().unwrap(), [&3, &7]);

        let mut plan = Plan::default();
        plan.offer_set(Some(&a));
        plan.offer_set(None);
        assert_eq!(plan.into_ids().unwrap(), Vec::<&u64>::new());
    }
}
