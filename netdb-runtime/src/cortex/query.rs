//! Queries over a [`Table`]: filter, order, offset, limit, and the planner that picks an
//! index or a scan. Every plan returns exactly what a scan would.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::index::{Chosen, Plan};
use super::model::{CortexModel, Direction, ModelFilter, ModelOrder};
use super::table::{Rows, Table};

/// Below this many candidates, sorting them beats walking an ordered index.
const SMALL_CANDIDATE_SET: usize = 256;

/// What a query or a watch asks for, independent of the table it runs on.
pub struct QuerySpec<M: CortexModel> {
    /// The rows to keep.
    pub filter: M::Filter,
    /// Their order (`None`: id ascending).
    pub order: Option<M::OrderBy>,
    /// Rows to skip after ordering.
    pub offset: usize,
    /// The most rows to return.
    pub limit: Option<usize>,
}

impl<M: CortexModel> Clone for QuerySpec<M> {
    fn clone(&self) -> Self {
        QuerySpec {
            filter: self.filter.clone(),
            order: self.order.clone(),
            offset: self.offset,
            limit: self.limit,
        }
    }
}

impl<M: CortexModel> fmt::Debug for QuerySpec<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuerySpec")
            .field("filter", &self.filter)
            .field("order", &self.order)
            .field("offset", &self.offset)
            .field("limit", &self.limit)
            .finish()
    }
}

impl<M: CortexModel> Default for QuerySpec<M> {
    fn default() -> Self {
        QuerySpec {
            filter: M::Filter::default(),
            order: None,
            offset: 0,
            limit: None,
        }
    }
}

impl<M: CortexModel> QuerySpec<M> {
    /// Visits the result rows in order until `visit` breaks.
    pub(crate) fn run<'a>(
        &self,
        table: &'a Table<M>,
        mut visit: impl FnMut(&'a Arc<M>) -> ControlFlow<()>,
    ) {
        if self.limit == Some(0) {
            return;
        }
        let rows = table.rows();
        let mut plan = Plan::default();
        self.filter.plan(table.indexes(), &mut plan);
        let candidates = plan.choose();
        // The filter's only clause is answered by one index entry: its rows are exactly the
        // result, and none needs testing.
        let exact = candidates.is_some() && self.filter.exact_count(table.indexes()).is_some();
        let order = self.order.clone().unwrap_or_else(M::OrderBy::id_asc);
        let mut skip = self.offset;
        let mut left = self.limit.unwrap_or(usize::MAX);
        let mut emit = |row: &'a Arc<M>| {
            if skip > 0 {
                skip -= 1;
                return ControlFlow::Continue(());
            }
            visit(row)?;
            left -= 1;
            if left == 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let matching = |row: &&'a Arc<M>| exact || self.filter.matches(row);

        if let Some(dir) = order.id_direction() {
            // Candidates and rows are both in ascending id order already.
            let mut each = |row: &'a Arc<M>| {
                if matching(&row) {
                    emit(row)
                } else {
                    ControlFlow::Continue(())
                }
            };
            let _ = match &candidates {
                Some(c) => visit_candidates(rows, c, dir, &mut each),
                None => match dir {
                    Direction::Asc => rows.values().try_for_each(&mut each),
                    Direction::Desc => rows.values().rev().try_for_each(&mut each),
                },
            };
            return;
        }

        let walk = match &candidates {
            Some(c) if c.len() <= SMALL_CANDIDATE_SET => None,
            _ => order.walk(table.indexes()),
        };
        if let Some(walk) = walk {
            // The index yields rows already in order: stop as soon as the limit is reached.
            // (An exact candidate set is not the walk: every walked row is tested.)
            let _ = walk
                .filter_map(|k| rows.row_for(k))
                .filter(|row| self.filter.matches(row))
                .try_for_each(&mut emit);
            return;
        }

        let mut hits: Vec<&'a Arc<M>> = Vec::new();
        let mut push = |row: &'a Arc<M>| {
            if matching(&row) {
                hits.push(row);
            }
            ControlFlow::Continue(())
        };
        let _ = match &candidates {
            Some(c) => visit_candidates(rows, c, Direction::Asc, &mut push),
            None => rows.values().try_for_each(&mut push),
        };
        let cmp = |a: &&Arc<M>, b: &&Arc<M>| order.compare(a, b);
        let wanted = self.offset.saturating_add(self.limit.unwrap_or(usize::MAX));
        if wanted < hits.len() {
            // Only the first `wanted` rows matter: partition, then sort those.
            hits.select_nth_unstable_by(wanted, cmp);
            hits.truncate(wanted);
        }
        hits.sort_unstable_by(cmp);
        let _ = hits.into_iter().try_for_each(emit);
    }

    /// How many rows the result holds, when one index entry answers the filter exactly
    /// (then a collecting caller allocates once instead of growing its vector).
    fn exact_len(&self, table: &Table<M>) -> usize {
        self.filter.exact_count(table.indexes()).map_or(0, |n| {
            let n = n.saturating_sub(self.offset);
            self.limit.map_or(n, |l| n.min(l))
        })
    }

    /// The result rows, shared.
    pub(crate) fn collect_arcs(&self, table: &Table<M>) -> Vec<Arc<M>> {
        let mut out = Vec::with_capacity(self.exact_len(table));
        self.run(table, |r| {
            out.push(Arc::clone(r));
            ControlFlow::Continue(())
        });
        out
    }
}

/// A query over a [`Table`], built with chained calls and run by `collect`, `count`,
/// `exists`, `first` or `iter`.
///
/// Generated `<Model>Query` types wrap it and add typed `where_*` methods.
pub struct Query<'a, M: CortexModel> {
    table: &'a Table<M>,
    spec: QuerySpec<M>,
}

impl<M: CortexModel> fmt::Debug for Query<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query").field("spec", &self.spec).finish()
    }
}

impl<'a, M: CortexModel> Query<'a, M> {
    pub(crate) fn new(table: &'a Table<M>, spec: QuerySpec<M>) -> Self {
        Query { table, spec }
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

    /// Returns at most `n` rows.
    pub fn limit(mut self, n: usize) -> Self {
        self.spec.limit = Some(n);
        self
    }

    /// Skips the first `n` rows of the ordered result.
    pub fn offset(mut self, n: usize) -> Self {
        self.spec.offset = n;
        self
    }

    /// The query so far.
    pub fn spec(&self) -> &QuerySpec<M> {
        &self.spec
    }

    /// The result rows, cloned.
    pub fn collect(self) -> Vec<M> {
        let mut out = Vec::with_capacity(self.spec.exact_len(self.table));
        self.spec.run(self.table, |r| {
            out.push(M::clone(r));
            ControlFlow::Continue(())
        });
        out
    }

    /// The result rows, shared with the table (no row is copied).
    pub fn collect_arcs(self) -> Vec<Arc<M>> {
        self.spec.collect_arcs(self.table)
    }

    /// Calls `f` with each result row, borrowed, in order: nothing is cloned.
    pub fn for_each(self, mut f: impl FnMut(&'a M)) {
        self.spec.run(self.table, |r| {
            f(r);
            ControlFlow::Continue(())
        });
    }

    /// The result rows, borrowed from the table, in order. Nothing is cloned; the rows are
    /// located before the iterator is returned.
    pub fn iter(self) -> impl ExactSizeIterator<Item = &'a M> + 'a {
        let mut out: Vec<&'a M> = Vec::with_capacity(self.spec.exact_len(self.table));
        self.spec.run(self.table, |r| {
            out.push(&**r);
            ControlFlow::Continue(())
        });
        out.into_iter()
    }

    /// How many rows the query returns (offset and limit apply).
    pub fn count(self) -> usize {
        let s = &self.spec;
        let exact = if s.filter.is_empty() {
            Some(self.table.len())
        } else {
            s.filter.exact_count(self.table.indexes())
        };
        if let Some(n) = exact {
            let n = n.saturating_sub(s.offset);
            return s.limit.map_or(n, |l| n.min(l));
        }
        // Order does not change a count: count in id order, which needs no sort.
        let spec = QuerySpec {
            order: None,
            ..s.clone()
        };
        let mut n = 0;
        spec.run(self.table, |_| {
            n += 1;
            ControlFlow::Continue(())
        });
        n
    }

    /// Whether the query returns any row.
    pub fn exists(self) -> bool {
        let spec = QuerySpec {
            order: None,
            ..self.spec
        };
        let mut found = false;
        spec.run(self.table, |_| {
            found = true;
            ControlFlow::Break(())
        });
        found
    }

    /// The first result row, cloned.
    pub fn first(self) -> Option<M> {
        let mut spec = self.spec;
        spec.limit = Some(spec.limit.map_or(1, |l| l.min(1)));
        let mut found = None;
        spec.run(self.table, |r| {
            found = Some(M::clone(r));
            ControlFlow::Break(())
        });
        found
    }
}

/// Calls `f` with the rows of the planner's candidates, in id order (`dir`), until it
/// breaks.
fn visit_candidates<'a, M: CortexModel>(
    rows: &'a Rows<M>,
    chosen: &Chosen<'_, M::Id>,
    dir: Direction,
    f: &mut impl FnMut(&'a Arc<M>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    match (chosen, dir) {
        (Chosen::Set(s), Direction::Asc) => {
            s.iter().filter_map(|k| rows.row_for(k)).try_for_each(f)
        }
        (Chosen::Set(s), Direction::Desc) => s
            .iter()
            .rev()
            .filter_map(|k| rows.row_for(k))
            .try_for_each(f),
        (Chosen::Keys(v), Direction::Asc) => {
            v.iter().filter_map(|k| rows.row_for(k)).try_for_each(f)
        }
        (Chosen::Keys(v), Direction::Desc) => v
            .iter()
            .rev()
            .filter_map(|k| rows.row_for(k))
            .try_for_each(f),
        (Chosen::Ids(v), Direction::Asc) => v.iter().filter_map(|id| rows.get(id)).try_for_each(f),
        (Chosen::Ids(v), Direction::Desc) => {
            v.iter().rev().filter_map(|id| rows.get(id)).try_for_each(f)
        }
    }
}

/// Compares two result lists: same rows in the same order. Shared rows compare by pointer
/// first, so an unchanged result costs no field comparison.
pub(crate) fn same_rows<M: PartialEq>(a: &[Arc<M>], b: &[Arc<M>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| Arc::ptr_eq(x, y) || **x == **y)
}
