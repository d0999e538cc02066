mod common;

// Property tests: queries and watches over a real adapter agree with a plain reference.
//
// Random event sequences (create over a small id space, rename, set status, tag, delete, and
// events that fail and must leave no trace) are appended through a `CortexAdapter` and
// folded; the same events are applied to a `BTreeMap<u64, Task>` in plain Rust. Then, for
// random filters (any combination of clauses, created ranges with every kind of bound,
// empty and inverted ranges, absent tags, `status_in` with duplicates), every ordering and
// random offset / limit, the indexed query plans must return exactly what a linear scan of
// the reference, filtered with `TaskFilter::matches` and sorted with `OrderBy::compare`,
// returns. Watches registered over the same specs must end each step on the same result.

use std::collections::BTreeMap;
use std::ops::Bound;

use common::{ALL_ORDERS, ALL_STATUSES, Explode, OrderBy, Status, Task, TaskEvent, TaskFilter};
use futures_util::{FutureExt, StreamExt};
use netdb_runtime::cortex::{
    CortexAdapter, CortexConfig, FoldErrorPolicy, ModelFilter, ModelOrder, Table, Watch,
    WatchStream,
};
use netdb_runtime::redex::Redex;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const TITLES: &[&str] = &[
    "alpha",
    "Beta",
    "gamma ray",
    "ALPHA two",
    "",
    "delta",
    "beta blocker",
];
/// "Red" and "red" are different tags.
const TAGS: &[&str] = &["red", "green", "blue", "Red", "x"];
/// Tags a filter may ask for: the ones rows get, and one no row ever has.
const FILTER_TAGS: &[&str] = &["red", "green", "blue", "Red", "x", "absent"];
const NEEDLES: &[&str] = &["a", "alpha", "BETA", "", "zzz", "ray", "O", "ha t"];
/// Rows get `created_ns` in `0..CREATED`; filters use bounds in `0..CREATED + 2`, so ties,
/// bounds on and off existing keys, and ranges past every key all occur.
const CREATED: u64 = 20;

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(ALL_STATUSES.to_vec())
}

fn title() -> impl Strategy<Value = String> {
    prop::sample::select(TITLES).prop_map(str::to_owned)
}

fn tag() -> impl Strategy<Value = String> {
    prop::sample::select(TAGS).prop_map(str::to_owned)
}

fn create(ids: u64) -> impl Strategy<Value = TaskEvent> {
    (
        0..ids,
        title(),
        status(),
        0..CREATED,
        prop::collection::vec(tag(), 0..4),
    )
        .prop_map(|(id, title, status, created_ns, tags)| TaskEvent::Create {
            id,
            title,
            status,
            created_ns,
            tags,
        })
}

fn event(ids: u64) -> impl Strategy<Value = TaskEvent> {
    prop_oneof![
        4 => create(ids),
        2 => (0..ids, title()).prop_map(|(id, title)| TaskEvent::Rename { id, title }),
        2 => (0..ids, status()).prop_map(|(id, status)| TaskEvent::SetStatus { id, status }),
        2 => (0..ids, tag()).prop_map(|(id, tag)| TaskEvent::Tag { id, tag }),
        1 => (0..ids).prop_map(|id| TaskEvent::Delete { id }),
        // Fails after inserting (possibly over an existing row): must be undone.
        1 => (0..ids, prop::sample::select(vec![Explode::Reject, Explode::ChangeId]))
            .prop_map(|(id, how)| TaskEvent::Explode { id, how }),
    ]
}

fn bound() -> impl Strategy<Value = Bound<u64>> {
    prop_oneof![
        Just(Bound::Unbounded),
        (0..CREATED + 2).prop_map(Bound::Included),
        (0..CREATED + 2).prop_map(Bound::Excluded),
    ]
}

fn created_range() -> impl Strategy<Value = (Bound<u64>, Bound<u64>)> {
    let at = |x: u64, inclusive: bool| {
        if inclusive {
            Bound::Included(x)
        } else {
            Bound::Excluded(x)
        }
    };
    prop_oneof![
        // Anything, inverted ranges included.
        3 => (bound(), bound()),
        // Both bounds on one key: [x, x], [x, x), (x, x], (x, x).
        1 => (0..CREATED + 2, any::<bool>(), any::<bool>())
            .prop_map(move |(x, a, b)| (at(x, a), at(x, b))),
        // Adjacent keys: (x, x + 1) is empty, [x, x + 1) is {x}, ...
        1 => (0..CREATED + 1, any::<bool>(), any::<bool>())
            .prop_map(move |(x, a, b)| (at(x, a), at(x + 1, b))),
    ]
}

fn filter() -> impl Strategy<Value = TaskFilter> {
    let p = 0.3;
    (
        prop::option::weighted(0.15, 0u64..55),
        prop::option::weighted(p, status()),
        prop::option::weighted(p, prop::collection::vec(status(), 0..5)),
        prop::option::weighted(p, prop::sample::select(NEEDLES).prop_map(str::to_owned)),
        prop::option::weighted(p, created_range()),
        prop::option::weighted(p, prop::sample::select(FILTER_TAGS).prop_map(str::to_owned)),
        prop::option::weighted(
            p,
            prop::collection::vec(
                prop::sample::select(FILTER_TAGS).prop_map(str::to_owned),
                0..4,
            ),
        ),
    )
        .prop_map(
            |(id, status, status_in, title_contains, created, tag, any_tag)| TaskFilter {
                id,
                status,
                status_in,
                title_contains,
                created,
                tag,
                any_tag,
            },
        )
}

/// A query or watch: filter, optional order, offset, optional limit.
#[derive(Debug, Clone)]
struct Spec {
    filter: TaskFilter,
    order: Option<OrderBy>,
    offset: usize,
    limit: Option<usize>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        filter(),
        prop::option::weighted(0.8, prop::sample::select(ALL_ORDERS.to_vec())),
        prop_oneof![3 => Just(0usize), 1 => 0usize..6],
        prop::option::weighted(0.6, 0usize..8),
    )
        .prop_map(|(filter, order, offset, limit)| Spec {
            filter,
            order,
            offset,
            limit,
        })
}

// The reference: plain Rust, no planner.

type Reference = BTreeMap<u64, Task>;

fn apply_to_reference(rows: &mut Reference, event: &TaskEvent) {
    match event.clone() {
        TaskEvent::Create {
            id,
            title,
            status,
            created_ns,
            tags,
        } => {
            rows.insert(
                id,
                Task {
                    id,
                    title,
                    status,
                    created_ns,
                    tags,
                },
            );
        }
        TaskEvent::Rename { id, title } => {
            if let Some(r) = rows.get_mut(&id) {
                r.title = title;
            }
        }
        TaskEvent::SetStatus { id, status } => {
            if let Some(r) = rows.get_mut(&id) {
                r.status = status;
            }
        }
        TaskEvent::Tag { id, tag } => {
            if let Some(r) = rows.get_mut(&id)
                && !r.tags.contains(&tag)
            {
                r.tags.push(tag);
            }
        }
        TaskEvent::Delete { id } => {
            rows.remove(&id);
        }
        // Fails: no effect.
        TaskEvent::Explode { .. } => {}
    }
}

/// Linear scan, full sort, then offset and limit.
fn reference_query(
    rows: &Reference,
    filter: &TaskFilter,
    order: Option<OrderBy>,
    offset: usize,
    limit: Option<usize>,
) -> Vec<Task> {
    let mut hits: Vec<Task> = rows
        .values()
        .filter(|r| filter.matches(r))
        .cloned()
        .collect();
    let order = order.unwrap_or(OrderBy::IdAsc);
    hits.sort_by(|a, b| order.compare(a, b));
    hits.into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect()
}

fn ids(rows: &[Task]) -> Vec<u64> {
    rows.iter().map(|t| t.id).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open(redex: &Redex) -> CortexAdapter<Task> {
    let config = CortexConfig::default().with_fold_error_policy(FoldErrorPolicy::LogAndContinue);
    CortexAdapter::<Task>::open_with_config(redex, 3, config).unwrap()
}

/// Appends `events` as one batch and waits until they are folded (on the current-thread
/// runtime, also until every watcher has been handed the result).
async fn append_and_fold(tasks: &CortexAdapter<Task>, events: &[TaskEvent]) {
    if events.is_empty() {
        return;
    }
    let seqs = tasks.append_batch(events).unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tasks.wait_for_seq(seqs.end - 1),
    )
    .await
    .expect("safety timeout: wait_for_seq")
    .unwrap();
}

/// Every query form over `table` against the reference, for `spec` under every ordering.
fn check_queries(table: &Table<Task>, rows: &Reference, spec: &Spec) -> Result<(), TestCaseError> {
    let Spec {
        filter,
        offset,
        limit,
        ..
    } = spec;
    let orders = std::iter::once(None).chain(ALL_ORDERS.map(Some));
    for order in orders {
        let query = || {
            let mut q = table.query().with_filter(filter.clone()).offset(*offset);
            if let Some(o) = order {
                q = q.order_by(o);
            }
            if let Some(l) = *limit {
                q = q.limit(l);
            }
            q
        };
        let want = reference_query(rows, filter, order, *offset, *limit);
        let got = query().collect();
        prop_assert_eq!(
            ids(&got),
            ids(&want),
            "collect, order {:?}, offset {}, limit {:?}, filter {:?}",
            order,
            offset,
            limit,
            filter
        );
        prop_assert_eq!(&got, &want);
        let iterated: Vec<u64> = query().iter().map(|t| t.id).collect();
        prop_assert_eq!(iterated, ids(&want), "iter");
        prop_assert_eq!(query().count(), want.len(), "count, {:?}", spec);
        prop_assert_eq!(query().exists(), !want.is_empty(), "exists, {:?}", spec);
        prop_assert_eq!(query().first(), want.first().cloned(), "first, {:?}", spec);
    }
    let all = reference_query(rows, filter, None, 0, None);
    prop_assert_eq!(
        table.find_many(filter),
        all.iter().collect::<Vec<_>>(),
        "find_many {:?}",
        filter
    );
    prop_assert_eq!(
        table.count_where(filter),
        all.len(),
        "count_where {:?}",
        filter
    );
    prop_assert_eq!(
        table.exists_where(filter),
        !all.is_empty(),
        "exists_where {:?}",
        filter
    );
    Ok(())
}

fn check_table(table: &Table<Task>, rows: &Reference) -> Result<(), TestCaseError> {
    prop_assert_eq!(table.len(), rows.len());
    let got: Vec<&Task> = table.iter().collect();
    let want: Vec<&Task> = rows.values().collect();
    prop_assert_eq!(got, want);
    Ok(())
}

/// Folds `chunks` (one append batch each) and checks every spec after each chunk.
fn run_queries(chunks: &[Vec<TaskEvent>], specs: &[Spec]) -> Result<(), TestCaseError> {
    runtime().block_on(async {
        let redex = Redex::new();
        let tasks = open(&redex);
        let state = tasks.state();
        let mut rows = Reference::new();
        for chunk in chunks {
            append_and_fold(&tasks, chunk).await;
            chunk.iter().for_each(|e| apply_to_reference(&mut rows, e));
            let table = state.read();
            check_table(&table, &rows)?;
            for spec in specs {
                check_queries(&table, &rows, spec)?;
            }
        }
        Ok(())
    })
}

struct Watched {
    spec: Spec,
    stream: WatchStream<Task>,
    received: Vec<Task>,
}

fn watch(tasks: &CortexAdapter<Task>, spec: &Spec) -> WatchStream<Task> {
    let mut w = Watch::<Task>::from(tasks.watch())
        .with_filter(spec.filter.clone())
        .offset(spec.offset);
    if let Some(o) = spec.order {
        w = w.order_by(o);
    }
    if let Some(l) = spec.limit {
        w = w.limit(l);
    }
    w.stream()
}

/// Takes every item ready now; each must differ from the one before it.
fn drain(w: &mut Watched) -> Result<(), TestCaseError> {
    loop {
        match w.stream.next().now_or_never() {
            None => return Ok(()),
            Some(None) => return Err(TestCaseError::fail("watch ended")),
            Some(Some(rows)) => {
                prop_assert_ne!(&rows, &w.received, "repeated result, {:?}", w.spec);
                w.received = rows;
            }
        }
    }
}

/// Registers watchers for `specs` (half before any event, half after the first chunk),
/// folds `chunks`, and after each one checks that every watcher's latest result is the
/// reference's.
fn run_watches(chunks: &[Vec<TaskEvent>], specs: &[Spec]) -> Result<(), TestCaseError> {
    runtime().block_on(async {
        let redex = Redex::new();
        let tasks = open(&redex);
        let mut rows = Reference::new();
        let (early, late) = specs.split_at(specs.len() / 2);
        let register = |spec: &Spec| {
            let mut stream = watch(&tasks, spec);
            let received = stream
                .next()
                .now_or_never()
                .flatten()
                .expect("the first item is ready at once");
            Watched {
                spec: spec.clone(),
                stream,
                received,
            }
        };
        let mut watched: Vec<Watched> = early.iter().map(&register).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            append_and_fold(&tasks, chunk).await;
            chunk.iter().for_each(|e| apply_to_reference(&mut rows, e));
            if i == 0 {
                watched.extend(late.iter().map(&register));
            }
            for w in &mut watched {
                drain(w)?;
                let s = &w.spec;
                let want = reference_query(&rows, &s.filter, s.order, s.offset, s.limit);
                prop_assert_eq!(ids(&w.received), ids(&want), "watch {:?}", s);
                prop_assert_eq!(&w.received, &want);
            }
        }
        Ok(())
    })
}

fn chunks(
    ids: u64,
    events: usize,
    max_chunks: usize,
) -> impl Strategy<Value = Vec<Vec<TaskEvent>>> {
    prop::collection::vec(prop::collection::vec(event(ids), 0..events), 1..max_chunks)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Small id space (0..50): many updates, deletes and re-creates of the same rows.
    #[test]
    fn queries_match_the_reference(
        chunks in chunks(50, 40, 5),
        specs in prop::collection::vec(spec(), 1..12),
    ) {
        run_queries(&chunks, &specs)?;
    }

    /// Watches end every step on the reference's result, and never repeat a result.
    #[test]
    fn watches_match_the_reference(
        chunks in chunks(50, 25, 7),
        specs in prop::collection::vec(spec(), 1..16),
    ) {
        run_watches(&chunks, &specs)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Hundreds of rows: candidate sets larger than the planner's sort threshold, so ordered
    /// index walks run with a filter, as well as sorts of small candidate sets.
    #[test]
    fn queries_match_the_reference_on_larger_tables(
        bulk in prop::collection::vec(create(600), 500..900),
        chunks in chunks(600, 100, 3),
        specs in prop::collection::vec(spec(), 1..10),
    ) {
        let all: Vec<Vec<TaskEvent>> = std::iter::once(bulk).chain(chunks).collect();
        run_queries(&all, &specs)?;
    }
}

/// `Query::first` returns the first row of the query's result; with `limit(0)` the result
/// is empty (an early version replaced the limit with 1).
#[test]
fn first_respects_limit_zero() {
    runtime().block_on(async {
        let redex = Redex::new();
        let tasks = open(&redex);
        append_and_fold(
            &tasks,
            &[TaskEvent::create(1, "a", Status::Pending, 1, &[])],
        )
        .await;
        let state = tasks.state();
        let table = state.read();
        assert!(table.query().limit(0).collect().is_empty());
        assert_eq!(table.query().limit(0).count(), 0);
        assert!(!table.query().limit(0).exists());
        assert_eq!(table.query().limit(0).first(), None);
    });
}
