//! The materialized state of a model: rows by id, their indexes, and the bookkeeping the
//! fold needs (what it touched, how to undo a failed event).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use super::model::{CortexModel, FastHash, IndexSet, ModelFilter};
use super::query::{Query, QuerySpec};

/// The rows by id, twice: ordered (for scans in id order) and hashed (for lookups).
pub(crate) struct Rows<M: CortexModel> {
    ordered: BTreeMap<M::Id, Arc<M>>,
    by_id: HashMap<M::Id, Arc<M>, FastHash>,
}

impl<M: CortexModel> Default for Rows<M> {
    fn default() -> Self {
        Rows {
            ordered: BTreeMap::new(),
            by_id: HashMap::default(),
        }
    }
}

impl<M: CortexModel> Rows<M> {
    pub(crate) fn get(&self, id: &M::Id) -> Option<&Arc<M>> {
        self.by_id.get(id)
    }

    // The ordered map is written first and read second, so a panicking `Ord` on the id
    // (model code) leaves the two maps in step: an id missing from `by_id` is missing from
    // `ordered` too, and undoing it never compares it.
    fn insert(&mut self, id: M::Id, row: Arc<M>) -> Option<Arc<M>> {
        let old = self.ordered.insert(id.clone(), Arc::clone(&row));
        self.by_id.insert(id, row);
        old
    }

    fn remove(&mut self, id: &M::Id) -> Option<Arc<M>> {
        let old = self.by_id.remove(id)?;
        self.ordered.remove(id);
        Some(old)
    }

    /// The rows in id order.
    pub(crate) fn values(&self) -> std::collections::btree_map::Values<'_, M::Id, Arc<M>> {
        self.ordered.values()
    }

    fn iter(&self) -> std::collections::btree_map::Iter<'_, M::Id, Arc<M>> {
        self.ordered.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.ordered.len()
    }

    fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }
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
        let mut t = Table {
            folded_through,
            ..Table::default()
        };
        for row in rows {
            let id = row.id().clone();
            let row = Arc::new(row);
            if let Some(old) = t.rows.insert(id.clone(), Arc::clone(&row)) {
                t.indexes.remove(&id, &old);
            }
            t.indexes.insert(&id, &row);
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

    /// Every row matching `filter`, in id order.
    pub fn find_many(&self, filter: &M::Filter) -> Vec<M> {
        self.query_with(filter.clone()).collect()
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
            let now = self.rows.remove(&id);
            if let Some(now) = &now {
                self.indexes.remove(&id, now);
            }
            if let Some(before) = before {
                self.indexes.insert(&id, &before);
                self.rows.insert(id, before);
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
        let row = Arc::new(row);
        let t = &mut *self.table;
        t.record(&id, t.rows.get(&id).cloned());
        // Rows first, then indexes: undo removes the new row's keys, whichever were added.
        let old = t.rows.insert(id.clone(), Arc::clone(&row));
        match &old {
            Some(old) => t.indexes.update(&id, old, &row),
            None => t.indexes.insert(&id, &row),
        }
        t.track_change(&id, Some(&row));
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
        t.rows.insert(id.clone(), Arc::clone(&new));
        t.indexes.update(id, &old, &new);
        t.track_change(id, Some(&new));
        true
    }

    /// Removes the row with `id`, returning it.
    pub fn remove(&mut self, id: &M::Id) -> Option<Arc<M>> {
        let t = &mut *self.table;
        let old = Arc::clone(t.rows.get(id)?);
        t.record(id, Some(Arc::clone(&old)));
        t.rows.remove(id);
        t.indexes.remove(id, &old);
        t.track_change(id, None);
        Some(old)
    }

    /// Removes every row matching `filter`; returns how many.
    pub fn remove_where(&mut self, filter: &M::Filter) -> usize {
        let ids: Vec<M::Id> = self
            .table
            .rows
            .iter()
            .filter(|(_, r)| filter.matches(r))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            self.remove(id);
        }
        ids.len()
    }
}
