//! Watches: live query results, re-evaluated only when a change can affect them.
//!
//! The fold hands every batch's touched ids to the [`Registry`]. A watcher is re-evaluated
//! when a touched id is in its last result, or when a touched row now holds a value its
//! filter requires (found through a route-hash map, so watchers on other values cost
//! nothing), or — for filters with no such clause — when a touched row now matches it.
//! Results go to a single slot per subscriber: a slow consumer sees the latest result.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use parking_lot::Mutex;

use super::adapter::Shared;
use super::model::{CortexModel, FastHash, ModelFilter, Route};
use super::query::{QuerySpec, same_rows};
use super::table::{Table, Touched};

/// A watch under construction: filter, order, offset and limit, then [`stream`](Self::stream).
///
/// Generated `<Model>Watch` types wrap it and add typed `where_*` methods.
pub struct Watch<M: CortexModel> {
    shared: Arc<Shared<M>>,
    spec: QuerySpec<M>,
}

impl<M: CortexModel> fmt::Debug for Watch<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("channel", &M::CHANNEL)
            .field("spec", &self.spec)
            .finish()
    }
}

impl<M: CortexModel> Watch<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>) -> Self {
        Watch {
            shared,
            spec: QuerySpec::default(),
        }
    }

    /// Changes the filter: what generated `where_*` methods call.
    pub fn filter(mut self, change: impl FnOnce(&mut M::Filter)) -> Self {
        change(&mut self.spec.filter);
        self
    }

    /// Replaces the filter.
    pub fn with_filter(mut self, filter: M::Filter) -> Self {
        self.spec.filter = filter;
        self
    }

    /// Orders the result (default: id ascending).
    pub fn order_by(mut self, order: M::OrderBy) -> Self {
        self.spec.order = Some(order);
        self
    }

    /// Keeps at most `n` rows.
    pub fn limit(mut self, n: usize) -> Self {
        self.spec.limit = Some(n);
        self
    }

    /// Skips the first `n` rows of the ordered result.
    pub fn offset(mut self, n: usize) -> Self {
        self.spec.offset = n;
        self
    }

    /// The watch so far.
    pub fn spec(&self) -> &QuerySpec<M> {
        &self.spec
    }

    /// Starts the watch. The stream's first item is the current result; later items come
    /// only when the result differs from the last one this stream yielded. It ends after the
    /// adapter closes or its fold stops. Dropping it unregisters the watcher.
    pub fn stream(self) -> WatchStream<M> {
        let Watch { shared, spec } = self;
        let mut watches = shared.watches.lock();
        // Recursive: a caller already holding a read guard must not deadlock behind the fold.
        let table = shared.state.lock.read_recursive();
        let (id, slot) = watches.register(&table, spec);
        // Counted before the read lock is released, so the next batch records its changes.
        shared.watchers.fetch_add(1, Ordering::AcqRel);
        drop(table);
        drop(watches);
        WatchStream {
            shared,
            id,
            slot,
            seq: None,
        }
    }

    /// The current result and a stream of later changes, with no repeat of the current
    /// result: the stream yields only results that differ from it.
    pub fn snapshot_and_stream(self) -> (Vec<M>, WatchStream<M>) {
        let mut stream = self.stream();
        let first = stream.take_pending().unwrap_or_default();
        (first, stream)
    }
}

/// The stream of a watch's results: see [`Watch::stream`].
pub struct WatchStream<M: CortexModel> {
    shared: Arc<Shared<M>>,
    id: u64,
    slot: Arc<Slot<M>>,
    seq: Option<u64>,
}

impl<M: CortexModel> fmt::Debug for WatchStream<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream")
            .field("channel", &M::CHANNEL)
            .field("id", &self.id)
            .field("folded_seq", &self.seq)
            .finish()
    }
}

impl<M: CortexModel> WatchStream<M> {
    /// The folded sequence number the last yielded result reflects (`None`: nothing was
    /// folded yet, or nothing was yielded yet). Compare with a `wait_for_seq` target.
    pub fn folded_seq(&self) -> Option<u64> {
        self.seq
    }

    fn take_pending(&mut self) -> Option<Vec<M>> {
        let mut s = self.slot.state.lock();
        let (rows, seq) = s.pending.take()?;
        let out = rows.iter().map(|r| M::clone(r)).collect();
        s.delivered = Some(rows);
        drop(s);
        self.seq = seq;
        Some(out)
    }
}

impl<M: CortexModel> Stream for WatchStream<M> {
    type Item = Vec<M>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Vec<M>>> {
        let this = self.get_mut();
        if let Some(rows) = this.take_pending() {
            return Poll::Ready(Some(rows));
        }
        let mut s = this.slot.state.lock();
        // A result may have arrived between the two locks.
        if s.pending.is_some() {
            drop(s);
            return Poll::Ready(this.take_pending());
        }
        if s.closed {
            return Poll::Ready(None);
        }
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl<M: CortexModel> Drop for WatchStream<M> {
    fn drop(&mut self) {
        let removed = self.shared.watches.lock().remove(self.id);
        self.shared.watchers.fetch_sub(1, Ordering::AcqRel);
        drop(removed); // outside the registry lock
    }
}

/// One subscriber's single-slot mailbox.
pub(crate) struct Slot<M> {
    state: Mutex<SlotState<M>>,
}

struct SlotState<M> {
    /// The newest result not yet yielded, and the folded seq it reflects.
    pending: Option<(Vec<Arc<M>>, Option<u64>)>,
    /// The last result yielded: dedup compares with what this subscriber received.
    delivered: Option<Vec<Arc<M>>>,
    waker: Option<Waker>,
    closed: bool,
}

impl<M: PartialEq> Slot<M> {
    fn new(first: Vec<Arc<M>>, seq: Option<u64>, closed: bool) -> Self {
        Slot {
            state: Mutex::new(SlotState {
                pending: Some((first, seq)),
                delivered: None,
                waker: None,
                closed,
            }),
        }
    }

    /// Puts a new result in the slot; returns the subscriber's waker, for the caller to wake
    /// once it holds no lock.
    fn offer(&self, rows: Vec<Arc<M>>, seq: Option<u64>) -> Option<Waker> {
        let mut s = self.state.lock();
        if s.delivered.as_deref().is_some_and(|d| same_rows(d, &rows)) {
            // Back to what the subscriber has: nothing to tell it.
            s.pending = None;
            return None;
        }
        s.pending = Some((rows, seq));
        s.waker.take()
    }

    /// Ends the stream after its pending result; returns the waker to wake, as `offer`.
    fn close(&self) -> Option<Waker> {
        let mut s = self.state.lock();
        s.closed = true;
        s.waker.take()
    }
}

struct Watcher<M: CortexModel> {
    spec: QuerySpec<M>,
    /// The route the watcher is filed under; `None` when it is tested against every
    /// touched row.
    route: Option<Route>,
    last: Vec<Arc<M>>,
    slot: Arc<Slot<M>>,
}

/// Every watcher of one adapter, and the maps that find the ones a change can affect.
pub(crate) struct Registry<M: CortexModel> {
    next_id: u64,
    watchers: HashMap<u64, Watcher<M>, FastHash>,
    /// Row id → watchers whose last result holds it.
    by_member: HashMap<M::Id, Vec<u64>, FastHash>,
    /// (field, route hash) → watchers whose filter requires that value.
    by_route: HashMap<(u16, u64), Vec<u64>, FastHash>,
    /// Fields some watcher routes on, with how many do.
    route_fields: BTreeMap<u16, usize>,
    /// Watchers with no route.
    unrouted: Vec<u64>,
    closed: bool,
    /// Scratch for `on_batch`.
    affected: Vec<u64>,
}

impl<M: CortexModel> Default for Registry<M> {
    fn default() -> Self {
        Registry {
            next_id: 0,
            watchers: HashMap::default(),
            by_member: HashMap::default(),
            by_route: HashMap::default(),
            route_fields: BTreeMap::new(),
            unrouted: Vec::new(),
            closed: false,
            affected: Vec::new(),
        }
    }
}

fn unlink<K: std::hash::Hash + Eq, S: std::hash::BuildHasher>(
    map: &mut HashMap<K, Vec<u64>, S>,
    key: &K,
    id: u64,
) {
    if let Some(v) = map.get_mut(key) {
        v.retain(|&w| w != id);
        if v.is_empty() {
            map.remove(key);
        }
    }
}

impl<M: CortexModel> Registry<M> {
    /// Registers a watcher whose first result is taken from `table` now: the caller holds
    /// the registry lock, so no batch can be applied and announced in between.
    pub(crate) fn register(&mut self, table: &Table<M>, spec: QuerySpec<M>) -> (u64, Arc<Slot<M>>) {
        let id = self.next_id;
        self.next_id += 1;
        let rows = spec.collect_arcs(table);
        let slot = Arc::new(Slot::new(
            rows.clone(),
            table.folded_through_seq(),
            self.closed,
        ));
        if self.closed {
            return (id, slot);
        }
        for r in &rows {
            self.by_member.entry(r.id().clone()).or_default().push(id);
        }
        // With an offset, a change to a skipped row shifts the result even though the row
        // was never in it: such watchers are re-evaluated on every change.
        let route = if spec.offset == 0 {
            spec.filter.route()
        } else {
            None
        };
        match &route {
            Some(route) => {
                *self.route_fields.entry(route.field).or_default() += 1;
                for &h in &route.hashes {
                    self.by_route.entry((route.field, h)).or_default().push(id);
                }
            }
            None => self.unrouted.push(id),
        }
        let watcher = Watcher {
            spec,
            route,
            last: rows,
            slot: Arc::clone(&slot),
        };
        self.watchers.insert(id, watcher);
        (id, slot)
    }

    /// Unregisters a watcher; returns it so the caller can drop it outside the lock.
    fn remove(&mut self, id: u64) -> Option<impl Sized + use<M>> {
        let w = self.watchers.remove(&id)?;
        for r in &w.last {
            unlink(&mut self.by_member, r.id(), id);
        }
        match &w.route {
            Some(route) => {
                for &h in &route.hashes {
                    unlink(&mut self.by_route, &(route.field, h), id);
                }
                if let Some(n) = self.route_fields.get_mut(&route.field) {
                    *n -= 1;
                    if *n == 0 {
                        self.route_fields.remove(&route.field);
                    }
                }
            }
            None => self.unrouted.retain(|&w| w != id),
        }
        Some(w)
    }

    /// Finds the watchers `touched` can affect; returns whether there are any. Needs no
    /// state lock: the rows come with `touched`. An id may appear more than once (with an
    /// older version of the row): that can only add a watcher, never miss one, since the
    /// latest version is checked too.
    pub(crate) fn collect_affected(&mut self, touched: &[Touched<M>]) -> bool {
        self.affected.clear();
        if self.watchers.is_empty() || touched.is_empty() {
            return false;
        }
        let affected = &mut self.affected;
        for (id, row) in touched {
            if let Some(ws) = self.by_member.get(id) {
                affected.extend_from_slice(ws);
            }
            let Some(row) = row else {
                continue;
            };
            for &field in self.route_fields.keys() {
                row.route_hashes(field, &mut |h| {
                    if let Some(ws) = self.by_route.get(&(field, h)) {
                        affected.extend_from_slice(ws);
                    }
                });
            }
        }
        for &wid in &self.unrouted {
            let Some(w) = self.watchers.get(&wid) else {
                continue;
            };
            // With an offset any change can shift the result, even a removal.
            let hit = w.spec.offset > 0
                || touched
                    .iter()
                    .any(|(_, row)| row.as_ref().is_some_and(|r| w.spec.filter.matches(r)));
            if hit {
                affected.push(wid);
            }
        }
        !affected.is_empty()
    }

    /// Re-evaluates the watchers [`collect_affected`](Self::collect_affected) found and
    /// delivers changed results.
    /// The subscribers' wakers are pushed to `wakers`: wake them after releasing the
    /// registry lock, so a waker that runs code cannot deadlock on it.
    pub(crate) fn reevaluate(&mut self, table: &Table<M>, wakers: &mut Vec<Waker>) {
        let mut affected = std::mem::take(&mut self.affected);
        affected.sort_unstable();
        affected.dedup();
        let seq = table.folded_through_seq();
        for &wid in &affected {
            let Some(w) = self.watchers.get_mut(&wid) else {
                continue;
            };
            let rows = w.spec.collect_arcs(table);
            if same_rows(&w.last, &rows) {
                continue;
            }
            let old = std::mem::replace(&mut w.last, rows.clone());
            let slot = Arc::clone(&w.slot);
            let old_ids: HashSet<&M::Id, FastHash> = old.iter().map(|r| r.id()).collect();
            let new_ids: HashSet<&M::Id, FastHash> = rows.iter().map(|r| r.id()).collect();
            for id in old_ids.difference(&new_ids) {
                unlink(&mut self.by_member, *id, wid);
            }
            for id in new_ids.difference(&old_ids) {
                self.by_member.entry((*id).clone()).or_default().push(wid);
            }
            drop((old_ids, new_ids));
            wakers.extend(slot.offer(rows, seq));
        }
        self.affected = affected;
    }

    /// Ends every watcher's stream (after its pending result) and refuses new ones. Returns
    /// the wakers to wake once the registry lock is released.
    #[must_use]
    pub(crate) fn close(&mut self) -> Vec<Waker> {
        self.closed = true;
        self.watchers
            .values()
            .filter_map(|w| w.slot.close())
            .collect()
    }
}
