//! [`SortedSet`]: an ordered set kept in sorted chunks — what the table's id order and the
//! index entries are stored in.
//!
//! A `BTreeSet` costs a pointer chase per element when iterated and a node search per
//! insert. Rows are mostly appended in ascending id order and read in long runs (a query's
//! candidates, a scan, a snapshot), so a set of sorted `Vec` chunks serves better: appending
//! the largest element is a push onto the last chunk, iteration walks contiguous memory, and
//! an insert or remove in the middle moves at most one chunk's elements.

use std::fmt;

/// Elements per chunk before it splits in two.
const CHUNK: usize = 512;

/// An ordered set of `T` in sorted chunks of at most 512 elements. No chunk is empty.
#[derive(Clone)]
pub struct SortedSet<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for SortedSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<T: PartialEq> PartialEq for SortedSet<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for SortedSet<T> {}

impl<T> SortedSet<T> {
    /// How many elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The elements, ascending.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            chunks: self.chunks.iter(),
            front: [].iter(),
            back: [].iter(),
            left: self.len,
        }
    }

    /// The smallest element.
    pub fn first(&self) -> Option<&T> {
        self.chunks.first().and_then(|c| c.first())
    }

    /// Removes and returns the smallest element.
    pub fn pop_first(&mut self) -> Option<T> {
        let first = self.chunks.first_mut()?;
        let x = first.remove(0);
        if first.is_empty() {
            self.chunks.remove(0);
        }
        self.len -= 1;
        Some(x)
    }

    /// A set of `sorted`, which must be strictly ascending (checked in debug builds).
    pub fn from_sorted(sorted: Vec<T>) -> Self
    where
        T: Ord,
    {
        debug_assert!(sorted.windows(2).all(|w| w[0] < w[1]));
        let len = sorted.len();
        if len <= CHUNK {
            let chunks = if len == 0 { Vec::new() } else { vec![sorted] };
            return SortedSet { chunks, len };
        }
        // Chunks three-quarters full leave room for inserts without splitting at once.
        let per = CHUNK * 3 / 4;
        let mut chunks = Vec::with_capacity(len.div_ceil(per));
        let mut it = sorted.into_iter();
        loop {
            let chunk: Vec<T> = it.by_ref().take(per).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(chunk);
        }
        SortedSet { chunks, len }
    }
}

impl<T: Ord> SortedSet<T> {
    /// The chunk that holds `x` or would: the first whose last element is not below `x`,
    /// else the last chunk. `None` when there are no chunks.
    fn chunk_for<Q>(&self, x: &Q) -> Option<usize>
    where
        Q: Ord + ?Sized,
        T: std::borrow::Borrow<Q>,
    {
        let n = self.chunks.len();
        if n == 0 {
            return None;
        }
        // Appends in ascending order, the common case, stop here.
        if self.chunks[n - 1][0].borrow() <= x {
            return Some(n - 1);
        }
        let i = self
            .chunks
            .partition_point(|c| c.last().expect("chunks are never empty").borrow() < x);
        Some(i.min(n - 1))
    }

    /// Inserts `x`; returns `false` (and keeps the element already there) when an equal
    /// element is present.
    pub fn insert(&mut self, x: T) -> bool {
        // The common case first: appending past the largest element, with room left.
        if let Some(last) = self.chunks.last_mut()
            && last.len() < CHUNK
            && last.last().is_some_and(|l| *l < x)
        {
            last.push(x);
            self.len += 1;
            return true;
        }
        let Some(ci) = self.chunk_for(&x) else {
            self.chunks.push(vec![x]);
            self.len = 1;
            return true;
        };
        let last = ci + 1 == self.chunks.len();
        let chunk = &mut self.chunks[ci];
        if chunk.last().is_some_and(|l| *l < x) {
            if last && chunk.len() == CHUNK {
                // Appending past a full last chunk, as ascending inserts do: start the next
                // chunk rather than split this one, so appended chunks stay full and no
                // elements move. The set is large already: give the chunk its full size.
                let mut next = Vec::with_capacity(CHUNK);
                next.push(x);
                self.chunks.push(next);
                self.len += 1;
                return true;
            }
            chunk.push(x);
        } else {
            match chunk.binary_search(&x) {
                Ok(_) => return false,
                Err(pos) => chunk.insert(pos, x),
            }
        }
        self.len += 1;
        if chunk.len() > CHUNK {
            let upper = chunk.split_off(chunk.len() / 2);
            self.chunks.insert(ci + 1, upper);
        }
        true
    }

    /// Removes the element equal to `x`; returns it.
    pub fn remove<Q>(&mut self, x: &Q) -> Option<T>
    where
        Q: Ord + ?Sized,
        T: std::borrow::Borrow<Q>,
    {
        let ci = self.chunk_for(x)?;
        let chunk = &mut self.chunks[ci];
        let pos = chunk.binary_search_by(|e| e.borrow().cmp(x)).ok()?;
        let out = chunk.remove(pos);
        if chunk.is_empty() {
            self.chunks.remove(ci);
        } else if chunk.len() < CHUNK / 8 && ci + 1 < self.chunks.len() {
            // Keep chunks from thinning out: fold a small chunk into its successor when
            // they fit in one.
            if self.chunks[ci + 1].len() + self.chunks[ci].len() <= CHUNK {
                let next = self.chunks.remove(ci + 1);
                self.chunks[ci].extend(next);
            }
        }
        self.len -= 1;
        Some(out)
    }

    /// The element equal to `x`.
    pub fn get<Q>(&self, x: &Q) -> Option<&T>
    where
        Q: Ord + ?Sized,
        T: std::borrow::Borrow<Q>,
    {
        let chunk = &self.chunks[self.chunk_for(x)?];
        let pos = chunk.binary_search_by(|e| e.borrow().cmp(x)).ok()?;
        Some(&chunk[pos])
    }

    /// Whether an element equals `x`.
    pub fn contains<Q>(&self, x: &Q) -> bool
    where
        Q: Ord + ?Sized,
        T: std::borrow::Borrow<Q>,
    {
        self.get(x).is_some()
    }

    /// The elements from the first not below `from`, ascending.
    pub fn iter_from<Q>(&self, from: &Q) -> Iter<'_, T>
    where
        Q: Ord + ?Sized,
        T: std::borrow::Borrow<Q>,
    {
        let Some(ci) = self.chunk_for(from) else {
            return self.iter();
        };
        let chunk = &self.chunks[ci];
        let pos = chunk.partition_point(|e| e.borrow() < from);
        let before: usize = self.chunks[..ci].iter().map(Vec::len).sum::<usize>() + pos;
        Iter {
            chunks: self.chunks[ci + 1..].iter(),
            front: chunk[pos..].iter(),
            back: [].iter(),
            left: self.len - before,
        }
    }
}

/// Iterator over a [`SortedSet`], ascending (or descending from the back).
#[derive(Debug, Clone)]
pub struct Iter<'a, T> {
    chunks: std::slice::Iter<'a, Vec<T>>,
    front: std::slice::Iter<'a, T>,
    back: std::slice::Iter<'a, T>,
    left: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;

    #[inline]
    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(x) = self.front.next() {
                self.left -= 1;
                return Some(x);
            }
            match self.chunks.next() {
                Some(c) => self.front = c.iter(),
                None => {
                    let x = self.back.next()?;
                    self.left -= 1;
                    return Some(x);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }

    fn fold<B, F: FnMut(B, &'a T) -> B>(self, init: B, mut f: F) -> B {
        let mut acc = self.front.fold(init, &mut f);
        for c in self.chunks {
            acc = c.iter().fold(acc, &mut f);
        }
        self.back.fold(acc, f)
    }
}

impl<T> DoubleEndedIterator for Iter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(x) = self.back.next_back() {
                self.left -= 1;
                return Some(x);
            }
            match self.chunks.next_back() {
                Some(c) => self.back = c.iter(),
                None => {
                    let x = self.front.next_back()?;
                    self.left -= 1;
                    return Some(x);
                }
            }
        }
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..3000).prop_map(Op::Insert),
            2 => (0u16..3000).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Every operation agrees with a `BTreeSet`, and so do iteration both ways and
        /// `iter_from`.
        #[test]
        fn agrees_with_a_btree_set(ops in prop::collection::vec(op(), 0..3000), from in 0u16..3000) {
            let mut s = SortedSet::default();
            let mut r = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(x) => prop_assert_eq!(s.insert(x), r.insert(x)),
                    Op::Remove(x) => prop_assert_eq!(s.remove(&x), r.take(&x)),
                }
                prop_assert_eq!(s.len(), r.len());
            }
            prop_assert!(s.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
            prop_assert!(s.iter().copied().eq(r.iter().copied()));
            prop_assert!(s.iter().rev().copied().eq(r.iter().rev().copied()));
            prop_assert!(s.iter_from(&from).copied().eq(r.range(from..).copied()));
            prop_assert_eq!(s.iter_from(&from).len(), r.range(from..).count());
            let mut it = s.iter();
            let mut front = Vec::new();
            let mut back = Vec::new();
            while let Some(x) = it.next() {
                front.push(*x);
                if let Some(y) = it.next_back() { back.push(*y); }
            }
            back.reverse();
            front.extend(back);
            prop_assert!(front.iter().eq(r.iter()));
            let built = SortedSet::from_sorted(r.iter().copied().collect());
            prop_assert_eq!(&built, &s);
        }
    }

    #[test]
    fn ascending_appends_fill_whole_chunks() {
        let mut s = SortedSet::default();
        for x in 0..(CHUNK * 3 + 5) as u32 {
            assert!(s.insert(x));
        }
        let lens: Vec<usize> = s.chunks.iter().map(Vec::len).collect();
        assert_eq!(lens, [CHUNK, CHUNK, CHUNK, 5]);
        // Inserting into a full chunk in the middle still splits it.
        assert!(s.remove(&7).is_some());
        assert!(s.insert(7));
        assert!(s.remove(&(CHUNK as u32 + 1)).is_some());
        assert!(s.insert(CHUNK as u32 + 1));
        assert!(s.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));
        assert!(s.iter().copied().eq(0..(CHUNK * 3 + 5) as u32));
    }

    #[test]
    fn pop_first_and_appends() {
        let mut s = SortedSet::default();
        for x in 0..2000u32 {
            assert!(s.insert(x));
        }
        assert!(!s.insert(1000));
        assert_eq!(s.pop_first(), Some(0));
        assert_eq!(s.first(), Some(&1));
        assert_eq!(s.len(), 1999);
        assert!(s.contains(&1999) && !s.contains(&0));
    }
}
