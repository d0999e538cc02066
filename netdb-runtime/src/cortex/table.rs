//! The materialized state of a model: rows by id, their indexes, and the bookkeeping the
//! fold needs (what it touched, how to undo a failed event).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;

use super::index::RowKey;
use super::model::{CortexModel, FastHash, IndexSet, ModelFilter};
use super::query::{Query, QuerySpec};
use super::sorted::SortedSet;

/// The rows, stored once in slots, found by id through a hash map and walked in id order
/// through a sorted set of keys. Indexes hold [`RowKey`]s, so a candidate's row is one
/// array access away; a row keeps its slot while it lives, so updates touch no index entry
/// whose key did not change.
///
/// Invariant: every key in `ordered` and every slot in `by_id` names a filled slot. Writes
/// fill the slot first, then add the key to `ordered`, then to `by_id`, so a panic in the
/// id's `Ord` or `Hash` (model code) leaves at worst an unreferenced slot; `remove` clears
/// whichever of the two maps holds the id, which is how a rollback puts things back.
pub(crate) struct Rows<M: CortexModel> {
    slots: Vec<Option<Arc<M>>>,
    free: Vec<u32>,
    /// Each row's slot, and the row again: a look-up by id then reads no second array.
    by_id: HashMap<M::Id, (u32, Arc<M>), FastHash>,
    ordered: SortedSet<RowKey<M::Id>>,
}

impl<M: CortexModel> Default for Rows<M> {
    fn default() -> Self {
        Rows {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::default(),
            ordered: SortedSet::default(),
        }
    }
}

const LIVE: &str = "a live row key names a filled slot";

impl<M: CortexModel> Rows<M> {
    /// Rows sorted by strictly ascending id, stored in that order.
    fn from_sorted(rows: Vec<Arc<M>>) -> Self {
        let mut by_id = HashMap::with_capacity_and_hasher(rows.len(), FastHash::default());
        let mut keys = Vec::with_capacity(rows.len());
        for (slot, row) in rows.iter().enumerate() {
            let slot = slot_number(slot);
            by_id.insert(row.id().clone(), (slot, Arc::clone(row)));
            keys.push(RowKey::new(row.id().clone(), slot));
        }
        Rows {
            slots: rows.into_iter().map(Some).collect(),
            free: Vec::new(),
            by_id,
            ordered: SortedSet::from_sorted(keys),
        }
    }

    #[inline]
    pub(crate) fn get(&self, id: &M::Id) -> Option<&Arc<M>> {
        self.by_id.get(id).map(|(_, row)| row)
    }

    /// The row the id order names (the table keeps it in step with the slots).
    #[inline]
    fn at(&self, key: &RowKey<M::Id>) -> &Arc<M> {
        self.slots[key.slot()].as_ref().expect(LIVE)
    }

    /// The row an index entry names. Index entries are kept by model code (a generated
    /// `IndexSet`): if that code panicked halfway and left an entry behind, the entry's
    /// slot may be empty or hold another row, and the entry is skipped.
    #[inline]
    pub(crate) fn row_for(&self, key: &RowKey<M::Id>) -> Option<&Arc<M>> {
        self.slots
            .get(key.slot())?
            .as_ref()
            .filter(|row| row.id() == key.id())
    }

    /// Stores `row` under `id`, replacing the row with that id (which keeps its slot).
    /// Returns the row's key and the row it replaced.
    fn insert(&mut self, id: M::Id, row: Arc<M>) -> (RowKey<M::Id>, Option<Arc<M>>) {
        match self.by_id.entry(id) {
            Entry::Occupied(mut e) => {
                let (slot, held) = e.get_mut();
                let slot = *slot;
                *held = Arc::clone(&row);
                let old = self.slots[slot as usize].replace(row);
                (RowKey::new(e.key().clone(), slot), old)
            }
            Entry::Vacant(e) => {
                let held = Arc::clone(&row);
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot as usize] = Some(row);
                        slot
                    }
                    None => {
                        self.slots.push(Some(row));
                        slot_number(self.slots.len() - 1)
                    }
                };
                let key = RowKey::new(e.key().clone(), slot);
                self.ordered.insert(key.clone());
                e.insert((slot, held));
                (key, None)
            }
        }
    }

    /// Removes the row `id`; returns its key and the row.
    fn remove(&mut self, id: &M::Id) -> Option<(RowKey<M::Id>, Arc<M>)> {
        let hashed = self.by_id.remove(id);
        let key = self.ordered.remove(id);
        let slot = match (&key, hashed) {
            (Some(k), _) => k.slot(),
            (None, Some((slot, _))) => slot as usize,
            (None, None) => return None,
        };
        let row = self.slots[slot].take()?;
        self.free.push(slot_number(slot));
        let key = key.unwrap_or_else(|| RowKey::new(row.id().clone(), slot_number(slot)));
        Some((key, row))
    }

    /// The rows in id order, with their keys.
    pub(crate) fn entries(
        &self,
    ) -> impl DoubleEndedIterator<Item = (&RowKey<M::Id>, &Arc<M>)> + ExactSizeIterator {
        self.ordered.iter().map(|k| (k, self.at(k)))
    }

    /// The rows in id order.
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &Arc<M>> + ExactSizeIterator {
        self.ordered.iter().map(|k| self.at(k))
    }

    pub(crate) fn len(&self) -> usize {
        self.ordered.len()
    }

    fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }
}

fn slot_number(slot: usize) -> u32 {
    u32::try_from(slot).expect("a table holds fewer than 2^32 rows")
}

/// A changed row's id and the row after the change (`None`: removed).
pub(crate) type Touched<M> = (<M as CortexModel>::Id, Option<Arc<M>>);

/// The rows of a model `M`, with its indexes: the state a [`CortexAdapter`] folds into.
///
/// Readers get it through [`SharedState::read`](super::SharedState::read); only the fold
/// changes it, through
/// [`TableMut`] in an event's [`apply`](super::CortexEvent::apply).
///
/// [`CortexAdapter`]: super::CortexAdapter
pub struct Table<M: CortexModel> {
    rows: Rows<M>,
    indexes: M::Indexes,
    folded_through: Option<u64>,
    /// Rows as they were before the current event changed them, in change order.
    journal: Vec<(M::Id, Option<Arc<M>>)>,
    /// Rows changed since the fold last drained them, as they are after the change (`None`:
    /// removed); only while `track` is on.
    touched: Vec<Touched<M>>,
    /// `touched.len()` when the current event began.
    touched_mark: usize,
    track: bool,
    /// A misuse of the table by the current event, reported once it returns.
    fault: Option<String>,
}

impl<M: CortexModel> fmt::Debug for Table<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("channel", &M::CHANNEL)
            .field("rows", &self.rows.len())
            .field("folded_through", &self.folded_through)
            .finish()
    }
}

impl<M: CortexModel> Default for Table<M> {
    fn default() -> Self {
        Table {
            rows: Rows::default(),
            indexes: M::Indexes::default(),
            folded_through: None,
            journal: Vec::new(),
            touched: Vec::new(),
            touched_mark: 0,
            track: false,
            fault: None,
        }
    }
}

impl<M: CortexModel> Table<M> {
    /// A table holding `rows` (later duplicates of an id replace earlier ones).
    pub(crate) fn from_rows(rows: Vec<M>, folded_through: Option<u64>) -> Self {
        let mut rows: Vec<Arc<M>> = rows.into_iter().map(Arc::new).collect();
        // Snapshots store rows in id order: then the rows go into their slots as they are.
        if !rows.windows(2).all(|w| w[0].id() < w[1].id()) {
            // Stable, so the last of equal ids is last; keep it.
            rows.sort_by(|a, b| a.id().cmp(b.id()));
            let mut kept: Vec<Arc<M>> = Vec::with_capacity(rows.len());
            for row in rows {
                match kept.last_mut() {
                    Some(last) if last.id() == row.id() => *last = row,
                    _ => kept.push(row),
                }
            }
            rows = kept;
        }
        let mut t = Table {
            rows: Rows::from_sorted(rows),
            folded_through,
            ..Table::default()
        };
        let Table { rows, indexes, .. } = &mut t;
        for (key, row) in rows.entries() {
            indexes.insert(key, row);
        }
        t
    }

    /// The row with `id`.
    pub fn find_unique(&self, id: &M::Id) -> Option<&M> {
        self.rows.get(id).map(|r| &**r)
    }

    /// The row with `id`, shared (no copy of the row).
    pub fn get_arc(&self, id: &M::Id) -> Option<Arc<M>> {
        self.rows.get(id).cloned()
    }

    /// Every row matching `filter`, in id order, borrowed from the table (nothing is
    /// cloned). For owned rows: `query().with_filter(filter).collect()` (copies) or
    /// `.collect_arcs()` (shared).
    pub fn find_many(&self, filter: &M::Filter) -> Vec<&M> {
        self.query_with(filter.clone()).iter().collect()
    }

    /// How many rows match `filter`.
    pub fn count_where(&self, filter: &M::Filter) -> usize {
        self.query_with(filter.clone()).count()
    }

    /// Whether any row matches `filter`.
    pub fn exists_where(&self, filter: &M::Filter) -> bool {
        self.query_with(filter.clone()).exists()
    }

    /// A query builder over the rows.
    pub fn query(&self) -> M::Query<'_> {
        Query::new(self, QuerySpec::default()).into()
    }

    fn query_with(&self, filter: M::Filter) -> Query<'_, M> {
        Query::new(
            self,
            QuerySpec {
                filter,
                ..QuerySpec::default()
            },
        )
    }

    /// Every row, in id order, borrowed.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &M> + ExactSizeIterator + '_ {
        self.rows.values().map(|r| &**r)
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The sequence number of the last event folded into this state (`None`: none yet).
    pub fn folded_through_seq(&self) -> Option<u64> {
        self.folded_through
    }

    /// The model's indexes (for inspection; the table maintains them).
    pub fn indexes(&self) -> &M::Indexes {
        &self.indexes
    }

    pub(crate) fn rows(&self) -> &Rows<M> {
        &self.rows
    }

    pub(crate) fn set_folded_through(&mut self, seq: Option<u64>) {
        self.folded_through = seq;
    }

    pub(crate) fn set_tracking(&mut self, on: bool) {
        self.track = on;
        if !on {
            self.touched.clear();
            self.touched_mark = 0;
        }
    }

    /// Moves the rows changed since the last call into `t` (which must be empty), in change
    /// order: an id changed twice appears twice, the later entry holding the row as it is
    /// now. The table keeps `t`'s old allocation.
    pub(crate) fn drain_touched_into(&mut self, t: &mut Vec<Touched<M>>) {
        debug_assert!(t.is_empty());
        std::mem::swap(&mut self.touched, t);
        self.touched_mark = 0;
    }

    /// Starts an event: changes from here on can be undone with [`rollback`](Self::rollback).
    pub(crate) fn begin(&mut self) -> TableMut<'_, M> {
        self.journal.clear();
        self.fault = None;
        self.touched_mark = self.touched.len();
        TableMut { table: self }
    }

    /// The misuse the current event left, if any (the caller then rolls back).
    pub(crate) fn take_fault(&mut self) -> Option<String> {
        self.fault.take()
    }

    /// Keeps the current event's changes.
    pub(crate) fn commit(&mut self) {
        self.journal.clear();
        self.touched_mark = self.touched.len();
    }

    /// Undoes the current event's changes, and forgets that it touched anything.
    pub(crate) fn rollback(&mut self) {
        self.fault = None;
        self.touched.truncate(self.touched_mark);
        while let Some((id, before)) = self.journal.pop() {
            if let Some((key, now)) = self.rows.remove(&id) {
                self.indexes.remove(&key, &now);
            }
            if let Some(before) = before {
                let (key, _) = self.rows.insert(id, Arc::clone(&before));
                self.indexes.insert(&key, &before);
            }
        }
    }

    /// Records how row `id` was before a change. Called before anything changes, so a
    /// panic halfway through the change (in index code, say) can still be undone.
    fn record(&mut self, id: &M::Id, before: Option<Arc<M>>) {
        self.journal.push((id.clone(), before));
    }

    /// Notes, for watchers and `changes()`, how row `id` is after a change.
    fn track_change(&mut self, id: &M::Id, after: Option<&Arc<M>>) {
        if self.track {
            self.touched.push((id.clone(), after.cloned()));
        }
    }
}

/// Write access to a [`Table`] for the event being applied.
///
/// Every change goes through here, so indexes, change tracking and undo are kept for every
/// model without generated or user code doing anything.
pub struct TableMut<'t, M: CortexModel> {
    table: &'t mut Table<M>,
}

impl<M: CortexModel> fmt::Debug for TableMut<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TableMut").field(&self.table).finish()
    }
}

impl<M: CortexModel> std::ops::Deref for TableMut<'_, M> {
    type Target = Table<M>;
    fn deref(&self) -> &Table<M> {
        self.table
    }
}

impl<M: CortexModel> TableMut<'_, M> {
    /// Inserts `row`, replacing the row with the same id. Returns the row it replaced.
    pub fn insert(&mut self, row: M) -> Option<Arc<M>> {
        let id = row.id().clone();
        let t = &mut *self.table;
        // Rows first (a panic in the id's `Hash` / `Ord` changes nothing there), then the
        // journal, then indexes: undo removes the new row's keys, whichever were added.
        // The row moves into the table and is borrowed back from its slot: no reference
        // count changes here beyond the table's own.
        let (key, old) = t.rows.insert(id, Arc::new(row));
        t.journal.push((key.id().clone(), old.clone()));
        let row = t.rows.at(&key);
        match &old {
            Some(old) => t.indexes.update(&key, old, row),
            None => t.indexes.insert(&key, row),
        }
        if t.track {
            t.touched.push((key.id().clone(), Some(Arc::clone(row))));
        }
        old
    }

    /// Changes the row with `id` in place. Returns `false` (and calls nothing) when there is
    /// no such row. Changing the row's id is refused: the event fails and is undone.
    pub fn update(&mut self, id: &M::Id, change: impl FnOnce(&mut M)) -> bool {
        let t = &mut *self.table;
        let Some(old) = t.rows.get(id) else {
            return false;
        };
        let old = Arc::clone(old);
        let mut new = M::clone(&old);
        change(&mut new);
        if new.id() != id {
            t.fault.get_or_insert_with(|| {
                format!(
                    "update of row {id:?} changed its id to {:?}; ids are immutable \
                     (remove the row and insert a new one instead)",
                    new.id()
                )
            });
            return true;
        }
        if new == *old {
            return true;
        }
        let new = Arc::new(new);
        t.record(id, Some(Arc::clone(&old)));
        let (key, _) = t.rows.insert(id.clone(), Arc::clone(&new));
        t.indexes.update(&key, &old, &new);
        t.track_change(id, Some(&new));
        true
    }

    /// Removes the row with `id`, returning it.
    pub fn remove(&mut self, id: &M::Id) -> Option<Arc<M>> {
        let t = &mut *self.table;
        let old = Arc::clone(t.rows.get(id)?);
        t.record(id, Some(Arc::clone(&old)));
        if let Some((key, _)) = t.rows.remove(id) {
            t.indexes.remove(&key, &old);
        }
        t.track_change(id, None);
        Some(old)
    }

    /// Removes every row matching `filter`; returns how many.
    pub fn remove_where(&mut self, filter: &M::Filter) -> usize {
        let ids: Vec<M::Id> = self
            .table
            .rows
            .values()
            .filter(|r| filter.matches(r))
            .map(|r| r.id().clone())
            .collect();
        for id in &ids {
            self.remove(id);
        }
        ids.len()
    }
}
