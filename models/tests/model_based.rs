//! Model-based property test of the seed's models: random sequences of every typed write
//! of `tasks` and `memories` (on ids 1..=8, so writes hit existing rows and missing ones),
//! bursts of writes folded together, close / reopen of a persistent directory (in a new
//! `Redex`, like a new process, or in the same one; with writes just before the close and
//! during the replay), `snapshot` / `open_from_snapshot` of any bundle taken earlier,
//! retention sweeps (after the fold, and before it has read what they evict), and watches
//! registered and dropped.
//!
//! The reference is plain Rust: per model, the list of events written (with the timestamp
//! the log stored for each), the oldest one retention keeps, and a `BTreeMap` of rows updated
//! by the same writes. A reopen replays the retained events into an empty map; a restore
//! starts from the map the bundle was taken from and replays the retained events after it;
//! events evicted before the fold read them are skipped, as an `Evicted` gap unless the
//! fold started at the head and had read nothing yet. After every step, once the fold has
//! caught up:
//!
//! * the rows, `find_unique` of every id, the log's first and next seq, how far the fold
//!   got, its errors (the gaps) and the restore outcome equal the reference's;
//! * every query of a list derived from the reference (each filter clause alone and
//!   combined, every ordering, offsets and limits, ranges on the stored timestamps), through
//!   `collect`, `count`, `first`, and for filters `count_where` / `exists_where`, equals the
//!   reference rows filtered, sorted (ties by id), offset and limited;
//! * every watch's last emission equals its query, and no emission repeats the previous one.
//!
//! At a close, the state must be the reference as of the last event folded, and every watch
//! stream must end.
//!
//! Timestamps: `created_ns` / `updated_ns` are the log's timestamps of the events, which the
//! reference reads back from the log right after each append (`read_range(seq, seq + 1)`)
//! and then derives independently (created at create / store, updated at every change of a
//! row). So rows are compared whole, timestamps included, and a replay must reproduce the
//! stored timestamps exactly. Many events share a timestamp (the clock is coarse), so the
//! orderings' tie-breaking by id is exercised constantly.
//!
//! Two configurations: the models' own `netdb_models::NetDb` (default config: no retention,
//! the fold stops on errors), whose sweeps evict nothing; and a `#[derive(NetDb)]` over the
//! same adapters whose files keep the last [`RETAIN`] events in small segments and whose
//! folds skip what they cannot apply, so a bundle restored after retention passed it leaves
//! an `Evicted` gap the reference predicts (the rows built by the evicted events stay lost).
//! The second runs on a current-thread runtime, where the fold runs only when the test
//! awaits, so "before the fold has read them" is exact; and on a multi-thread runtime,
//! where those steps wait for the fold first (anything else would race).
//!
//! No sleeps: reads follow `wait_for_seq` / `catch_up`, after which every watch already
//! holds its result (the documented guarantee), so watches are drained with `now_or_never`.
//!
//! `PROPTEST_CASES` sets the number of cases of each property (default 256).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::ops::{Bound, RangeBounds};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use netdb_models::memories::{self, Memory, MemoryFilter};
use netdb_models::tasks::{self, Task, TaskFilter, TaskStatus};
use netdb_models::{MemoriesAdapter, TasksAdapter};
use netdb_runtime::cortex::{
    CortexAdapter, CortexConfig, CortexError, CortexModel, FoldErrorKind, FoldErrorPolicy,
    RestoreOutcome, WatchStream,
};
use netdb_runtime::netdb::CatchUp;
use netdb_runtime::redex::{Redex, RedexFileConfig};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------
// The databases under test

/// Events each file of [`RetainingDb`] keeps through a sweep.
const RETAIN: u64 = 4;

const ORIGIN: u64 = 1;

fn retaining() -> CortexConfig {
    CortexConfig::default()
        .with_fold_error_policy(FoldErrorPolicy::LogAndContinue)
        .with_max_batch(3)
        .with_file_config(
            RedexFileConfig::default()
                .with_persistent(true)
                .with_segment_max_bytes(256)
                .with_retention_max_events(RETAIN),
        )
}

/// The seed's two models on files with retention, in small segments (so sweeps delete
/// segment files), with folds that skip an `Evicted` gap and apply at most 3 events per
/// batch (so replays, bursts and gaps span several batches).
#[derive(Debug, netdb_runtime::NetDb)]
struct RetainingDb {
    #[netdb(config = retaining)]
    tasks: TasksAdapter,
    #[netdb(config = retaining)]
    memories: MemoriesAdapter,
}

/// What the harness needs of a database: both derived NetDb types have it.
trait Db: Sized {
    /// Events a sweep keeps per file (`None`: no bound, a sweep evicts nothing).
    const RETAIN: Option<u64>;
    fn open(redex: &Redex) -> Result<Self, CortexError>;
    fn restore(redex: &Redex, bundle: &[u8]) -> Result<Self, CortexError>;
    fn tasks(&self) -> &TasksAdapter;
    fn memories(&self) -> &MemoriesAdapter;
    fn snapshot(&self) -> Result<Vec<u8>, CortexError>;
    fn close(&self) -> Result<(), CortexError>;
    fn catch_up(&self) -> CatchUp<'_>;
}

macro_rules! impl_db {
    ($ty:ty, $retain:expr) => {
        impl Db for $ty {
            const RETAIN: Option<u64> = $retain;
            fn open(redex: &Redex) -> Result<Self, CortexError> {
                <$ty>::open(redex, ORIGIN)
            }
            fn restore(redex: &Redex, bundle: &[u8]) -> Result<Self, CortexError> {
                <$ty>::open_from_snapshot(redex, ORIGIN, bundle)
            }
            fn tasks(&self) -> &TasksAdapter {
                <$ty>::tasks(self)
            }
            fn memories(&self) -> &MemoriesAdapter {
                <$ty>::memories(self)
            }
            fn snapshot(&self) -> Result<Vec<u8>, CortexError> {
                <$ty>::snapshot(self)
            }
            fn close(&self) -> Result<(), CortexError> {
                <$ty>::close(self)
            }
            fn catch_up(&self) -> CatchUp<'_> {
                <$ty>::catch_up(self)
            }
        }
    };
}

impl_db!(netdb_models::NetDb, None);
impl_db!(RetainingDb, Some(RETAIN));

// ---------------------------------------------------------------------------------------
// Operations

const TITLES: &[&str] = &["write the docs", "Review the DOCS", "fix the build", "ship"];
const CONTENTS: &[&str] = &["Rust 1.95 is the MSRV", "the CI runs on two cores", "lunch"];
const TAGS: &[&str] = &["rust", "ci", "docs"];
const SOURCES: &[&str] = &["chat", "docs"];
/// Substrings queries look for: in some titles / contents (ignoring case), in none, empty.
const NEEDLES: &[&str] = &["docs", "BUILD", "the", "nothing", ""];
/// Tags queries ask for: the ones rows get, and one no row ever has.
const QUERY_TAGS: &[&str] = &["rust", "ci", "docs", "absent"];
/// Rows have ids 1..=8; lookups also try ids no write uses.
const LOOKUP_IDS: std::ops::RangeInclusive<u64> = 0..=9;

/// A typed write of the tasks model.
#[derive(Clone)]
enum TaskWrite {
    Create(u64, &'static str),
    Rename(u64, &'static str),
    Complete(u64),
    Delete(u64),
}

/// A typed write of the memories model.
#[derive(Clone)]
enum MemoryWrite {
    Store(u64, &'static str, Vec<&'static str>, &'static str),
    Retag(u64, Vec<&'static str>),
    Pin(u64),
    Unpin(u64),
    Delete(u64),
}

#[derive(Clone)]
enum Write {
    Task(TaskWrite),
    Memory(MemoryWrite),
}

impl fmt::Debug for TaskWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskWrite::Create(id, t) => write!(f, "tasks.create({id}, {t:?})"),
            TaskWrite::Rename(id, t) => write!(f, "tasks.rename({id}, {t:?})"),
            TaskWrite::Complete(id) => write!(f, "tasks.complete({id})"),
            TaskWrite::Delete(id) => write!(f, "tasks.delete({id})"),
        }
    }
}

impl fmt::Debug for MemoryWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryWrite::Store(id, c, tags, s) => {
                write!(f, "memories.store({id}, {c:?}, {tags:?}, {s:?})")
            }
            MemoryWrite::Retag(id, tags) => write!(f, "memories.retag({id}, {tags:?})"),
            MemoryWrite::Pin(id) => write!(f, "memories.pin({id})"),
            MemoryWrite::Unpin(id) => write!(f, "memories.unpin({id})"),
            MemoryWrite::Delete(id) => write!(f, "memories.delete({id})"),
        }
    }
}

impl fmt::Debug for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Task(w) => w.fmt(f),
            Write::Memory(w) => w.fmt(f),
        }
    }
}

/// A bound on a timestamp field, as generated: the `k`-th smallest timestamp the model's
/// log holds when the watch is registered (any `k`: taken modulo; 0 on an empty log).
#[derive(Clone, Copy, Debug)]
enum TimeClause {
    Gt(usize),
    Gte(usize),
    Lt(usize),
    Lte(usize),
    Between(usize, usize),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeField {
    Created,
    Updated,
}

impl fmt::Debug for TimeField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeField::Created => "created_ns",
            TimeField::Updated => "updated_ns",
        })
    }
}

fn fmt_time(f: &mut fmt::Formatter<'_>, field: TimeField, c: TimeClause) -> fmt::Result {
    match c {
        TimeClause::Gt(k) => write!(f, ".where_{field:?}_gt(ts#{k})"),
        TimeClause::Gte(k) => write!(f, ".where_{field:?}_gte(ts#{k})"),
        TimeClause::Lt(k) => write!(f, ".where_{field:?}_lt(ts#{k})"),
        TimeClause::Lte(k) => write!(f, ".where_{field:?}_lte(ts#{k})"),
        TimeClause::Between(a, b) => write!(f, ".where_{field:?}_between(ts#{a}, ts#{b})"),
    }
}

/// A task watch, as generated.
#[derive(Clone)]
struct TaskWatchSpec {
    status: Option<TaskStatus>,
    title_contains: Option<&'static str>,
    time: Option<(TimeField, TimeClause)>,
    order: Option<tasks::OrderBy>,
    offset: usize,
    limit: Option<usize>,
    /// `snapshot_and_stream()` rather than `stream()`.
    snapshot_first: bool,
}

/// A memory watch, as generated.
#[derive(Clone)]
struct MemoryWatchSpec {
    tag: Option<&'static str>,
    any_tag: Option<Vec<&'static str>>,
    source: Option<&'static str>,
    pinned: Option<bool>,
    content_contains: Option<&'static str>,
    time: Option<(TimeField, TimeClause)>,
    order: Option<memories::OrderBy>,
    offset: usize,
    limit: Option<usize>,
    snapshot_first: bool,
}

fn fmt_page<O: fmt::Debug>(
    f: &mut fmt::Formatter<'_>,
    order: &Option<O>,
    offset: usize,
    limit: Option<usize>,
    snapshot_first: bool,
) -> fmt::Result {
    if let Some(o) = order {
        write!(f, ".order_by({o:?})")?;
    }
    if offset > 0 {
        write!(f, ".offset({offset})")?;
    }
    if let Some(l) = limit {
        write!(f, ".limit({l})")?;
    }
    f.write_str(if snapshot_first {
        ".snapshot_and_stream()"
    } else {
        ".stream()"
    })
}

impl fmt::Debug for TaskWatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tasks.watch()")?;
        if let Some(s) = self.status {
            write!(f, ".where_status({s:?})")?;
        }
        if let Some(n) = self.title_contains {
            write!(f, ".where_title_contains({n:?})")?;
        }
        if let Some((field, c)) = self.time {
            fmt_time(f, field, c)?;
        }
        fmt_page(f, &self.order, self.offset, self.limit, self.snapshot_first)
    }
}

impl fmt::Debug for MemoryWatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memories.watch()")?;
        if let Some(t) = self.tag {
            write!(f, ".where_tag({t:?})")?;
        }
        if let Some(ts) = &self.any_tag {
            write!(f, ".where_any_tag({ts:?})")?;
        }
        if let Some(s) = self.source {
            write!(f, ".where_source({s:?})")?;
        }
        if let Some(p) = self.pinned {
            write!(f, ".where_pinned({p})")?;
        }
        if let Some(n) = self.content_contains {
            write!(f, ".where_content_contains({n:?})")?;
        }
        if let Some((field, c)) = self.time {
            fmt_time(f, field, c)?;
        }
        fmt_page(f, &self.order, self.offset, self.limit, self.snapshot_first)
    }
}

#[derive(Clone)]
enum WatchSpec {
    Tasks(TaskWatchSpec),
    Memories(MemoryWatchSpec),
}

impl fmt::Debug for WatchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchSpec::Tasks(w) => w.fmt(f),
            WatchSpec::Memories(w) => w.fmt(f),
        }
    }
}

/// How a db is closed and opened again.
#[derive(Clone)]
struct Restart {
    /// Written right before the close, without waiting for the fold.
    before_close: Vec<Write>,
    /// A new `Redex` on the directory (as a new process would open it), or the same one.
    new_process: bool,
    /// Written right after opening, before the replay has caught up.
    during_replay: Vec<Write>,
    /// A retention sweep right after those writes, before the fold has read anything (on
    /// the current-thread runtime; on the multi-thread one, after the replay).
    sweep_during_replay: bool,
}

impl fmt::Debug for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.before_close.is_empty() {
            write!(f, "after {:?}, ", self.before_close)?;
        }
        f.write_str(if self.new_process {
            "new process"
        } else {
            "same Redex"
        })?;
        if !self.during_replay.is_empty() {
            write!(f, ", then {:?}", self.during_replay)?;
        }
        if self.sweep_during_replay {
            f.write_str(", then sweep_retention")?;
        }
        Ok(())
    }
}

/// One step of a case.
#[derive(Clone)]
enum Op {
    /// One typed write, then a wait for it.
    Write(Write),
    /// Several writes back to back, then one wait per model: the fold may apply them in one
    /// batch, and a watch sees only the result after the last.
    Burst(Vec<Write>),
    /// `close()`, then `open` again: every model replays its log.
    Reopen(Restart),
    /// `snapshot()`: the bundle is kept for a later restore.
    Snapshot,
    /// Writes, then `snapshot()` before the fold has applied them (on the current-thread
    /// runtime; on the multi-thread one, after it has), then a wait.
    SnapshotBeforeFold(Vec<Write>),
    /// `close()`, then `open_from_snapshot` with the `back`-th most recent bundle (modulo
    /// their number; a no-op before the first snapshot).
    Restore { back: usize, restart: Restart },
    /// `Redex::sweep_retention()`.
    Sweep,
    /// Writes, then a sweep before the fold has read them (on the current-thread runtime;
    /// on the multi-thread one, after it has): the fold must skip what the sweep removed.
    SweepBeforeFold(Vec<Write>),
    /// A new watch.
    Watch(WatchSpec),
    /// Drops the watch at this index (modulo their number).
    Unwatch(usize),
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write(w) => w.fmt(f),
            Op::Burst(ws) => write!(f, "burst{ws:?}"),
            Op::Reopen(r) => write!(f, "reopen({r:?})"),
            Op::Snapshot => f.write_str("snapshot"),
            Op::SnapshotBeforeFold(ws) => write!(f, "burst{ws:?} then snapshot before the fold"),
            Op::Restore { back, restart } => {
                write!(f, "restore(bundle -{back}, {restart:?})")
            }
            Op::Sweep => f.write_str("sweep_retention"),
            Op::SweepBeforeFold(ws) => {
                write!(f, "burst{ws:?} then sweep_retention before the fold")
            }
            Op::Watch(w) => w.fmt(f),
            Op::Unwatch(i) => write!(f, "drop(watch #{i})"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Strategies

fn id() -> impl Strategy<Value = u64> {
    1..=8u64
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(items)
}

/// Tags, duplicates included.
fn tags() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(pick(TAGS), 0..=3)
}

fn task_write() -> impl Strategy<Value = TaskWrite> {
    prop_oneof![
        3 => (id(), pick(TITLES)).prop_map(|(id, t)| TaskWrite::Create(id, t)),
        2 => (id(), pick(TITLES)).prop_map(|(id, t)| TaskWrite::Rename(id, t)),
        2 => id().prop_map(TaskWrite::Complete),
        1 => id().prop_map(TaskWrite::Delete),
    ]
}

fn memory_write() -> impl Strategy<Value = MemoryWrite> {
    prop_oneof![
        3 => (id(), pick(CONTENTS), tags(), pick(SOURCES))
            .prop_map(|(id, c, t, s)| MemoryWrite::Store(id, c, t, s)),
        2 => (id(), tags()).prop_map(|(id, t)| MemoryWrite::Retag(id, t)),
        1 => id().prop_map(MemoryWrite::Pin),
        1 => id().prop_map(MemoryWrite::Unpin),
        1 => id().prop_map(MemoryWrite::Delete),
    ]
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        task_write().prop_map(Write::Task),
        memory_write().prop_map(Write::Memory),
    ]
}

fn time_clause() -> impl Strategy<Value = (TimeField, TimeClause)> {
    let field = prop_oneof![Just(TimeField::Created), Just(TimeField::Updated)];
    let k = 0..40usize;
    let clause = prop_oneof![
        k.clone().prop_map(TimeClause::Gt),
        k.clone().prop_map(TimeClause::Gte),
        k.clone().prop_map(TimeClause::Lt),
        k.clone().prop_map(TimeClause::Lte),
        (k.clone(), k).prop_map(|(a, b)| TimeClause::Between(a, b)),
    ];
    (field, clause)
}

fn page() -> impl Strategy<Value = (usize, Option<usize>, bool)> {
    (
        prop_oneof![3 => Just(0usize), 1 => 1..3usize],
        prop::option::of(1..4usize),
        any::<bool>(),
    )
}

fn task_order() -> impl Strategy<Value = Option<tasks::OrderBy>> {
    prop::option::of(prop::sample::select(TASK_ORDERS))
}

fn memory_order() -> impl Strategy<Value = Option<memories::OrderBy>> {
    prop::option::of(prop::sample::select(MEMORY_ORDERS))
}

fn task_watch() -> impl Strategy<Value = TaskWatchSpec> {
    (
        prop::option::of(prop_oneof![
            Just(TaskStatus::Pending),
            Just(TaskStatus::Completed)
        ]),
        prop::option::weighted(0.3, pick(NEEDLES)),
        prop::option::weighted(0.3, time_clause()),
        task_order(),
        page(),
    )
        .prop_map(
            |(status, title_contains, time, order, (offset, limit, snapshot_first))| {
                TaskWatchSpec {
                    status,
                    title_contains,
                    time,
                    order,
                    offset,
                    limit,
                    snapshot_first,
                }
            },
        )
}

fn memory_watch() -> impl Strategy<Value = MemoryWatchSpec> {
    (
        prop::option::weighted(0.4, pick(QUERY_TAGS)),
        prop::option::weighted(0.2, prop::collection::vec(pick(QUERY_TAGS), 0..=2)),
        prop::option::weighted(0.3, pick(SOURCES)),
        prop::option::weighted(0.3, any::<bool>()),
        prop::option::weighted(0.2, pick(NEEDLES)),
        prop::option::weighted(0.2, time_clause()),
        memory_order(),
        page(),
    )
        .prop_map(
            |(tag, any_tag, source, pinned, content_contains, time, order, page)| MemoryWatchSpec {
                tag,
                any_tag,
                source,
                pinned,
                content_contains,
                time,
                order,
                offset: page.0,
                limit: page.1,
                snapshot_first: page.2,
            },
        )
}

fn restart() -> impl Strategy<Value = Restart> {
    let some_writes =
        || prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(write(), 1..=5)];
    (
        some_writes(),
        any::<bool>(),
        some_writes(),
        prop::bool::weighted(0.25),
    )
        .prop_map(
            |(before_close, new_process, during_replay, sweep_during_replay)| Restart {
                before_close,
                new_process,
                during_replay,
                sweep_during_replay,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        16 => write().prop_map(Op::Write),
        1 => prop::collection::vec(write(), 2..=6).prop_map(Op::Burst),
        1 => restart().prop_map(Op::Reopen),
        2 => Just(Op::Snapshot),
        1 => prop::collection::vec(write(), 1..=4).prop_map(Op::SnapshotBeforeFold),
        2 => (0..3usize, restart()).prop_map(|(back, restart)| Op::Restore { back, restart }),
        2 => Just(Op::Sweep),
        1 => prop::collection::vec(write(), 1..=8).prop_map(Op::SweepBeforeFold),
        3 => prop_oneof![
            task_watch().prop_map(WatchSpec::Tasks),
            memory_watch().prop_map(WatchSpec::Memories),
        ]
        .prop_map(Op::Watch),
        1 => (0..4usize).prop_map(Op::Unwatch),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..=40)
}

// ---------------------------------------------------------------------------------------
// The reference

const TASK_ORDERS: &[tasks::OrderBy] = &[
    tasks::OrderBy::IdAsc,
    tasks::OrderBy::IdDesc,
    tasks::OrderBy::CreatedAsc,
    tasks::OrderBy::CreatedDesc,
    tasks::OrderBy::UpdatedAsc,
    tasks::OrderBy::UpdatedDesc,
];

const MEMORY_ORDERS: &[memories::OrderBy] = &[
    memories::OrderBy::IdAsc,
    memories::OrderBy::IdDesc,
    memories::OrderBy::CreatedAsc,
    memories::OrderBy::CreatedDesc,
    memories::OrderBy::UpdatedAsc,
    memories::OrderBy::UpdatedDesc,
];

/// What the reference needs of a model: how a write changes a plain map of rows.
trait RefModel {
    type Row: Clone + PartialEq + fmt::Debug;
    type Write: Clone + fmt::Debug;
    fn apply(rows: &mut BTreeMap<u64, Self::Row>, w: &Self::Write, ts: u64);
}

struct TasksRef;
struct MemoriesRef;

impl RefModel for TasksRef {
    type Row = Task;
    type Write = TaskWrite;
    fn apply(rows: &mut BTreeMap<u64, Task>, w: &TaskWrite, ts: u64) {
        match *w {
            TaskWrite::Create(id, title) => {
                rows.insert(
                    id,
                    Task {
                        id,
                        title: title.to_owned(),
                        status: TaskStatus::Pending,
                        created_ns: ts,
                        updated_ns: ts,
                    },
                );
            }
            TaskWrite::Rename(id, title) => {
                if let Some(t) = rows.get_mut(&id) {
                    t.title = title.to_owned();
                    t.updated_ns = ts;
                }
            }
            TaskWrite::Complete(id) => {
                if let Some(t) = rows.get_mut(&id) {
                    t.status = TaskStatus::Completed;
                    t.updated_ns = ts;
                }
            }
            TaskWrite::Delete(id) => {
                rows.remove(&id);
            }
        }
    }
}

impl RefModel for MemoriesRef {
    type Row = Memory;
    type Write = MemoryWrite;
    fn apply(rows: &mut BTreeMap<u64, Memory>, w: &MemoryWrite, ts: u64) {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match w {
            MemoryWrite::Store(id, content, tags, source) => {
                rows.insert(
                    *id,
                    Memory {
                        id: *id,
                        content: content.to_string(),
                        tags: strings(tags),
                        source: source.to_string(),
                        pinned: false,
                        created_ns: ts,
                        updated_ns: ts,
                    },
                );
            }
            MemoryWrite::Retag(id, tags) => {
                if let Some(m) = rows.get_mut(id) {
                    m.tags = strings(tags);
                    m.updated_ns = ts;
                }
            }
            MemoryWrite::Pin(id) | MemoryWrite::Unpin(id) => {
                if let Some(m) = rows.get_mut(id) {
                    m.pinned = matches!(w, MemoryWrite::Pin(_));
                    m.updated_ns = ts;
                }
            }
            MemoryWrite::Delete(id) => {
                rows.remove(id);
            }
        }
    }
}

/// One model's reference: its log (every event ever written, by seq, with its stored
/// timestamp), the first seq retention keeps, the rows the adapter must hold, and what
/// its fold must have reported since it opened.
struct RefSide<R: RefModel> {
    log: Vec<(R::Write, u64)>,
    head: u64,
    rows: BTreeMap<u64, R::Row>,
    /// The `Evicted` gaps the fold must have skipped since it opened: (first lost seq, head).
    gaps: Vec<(u64, u64)>,
    /// How the adapter was opened: `None` fresh, else the snapshot's (last_seq, rows).
    restored: Option<(Option<u64>, u64)>,
    /// The fold started from the log's head and has read nothing yet: if retention moves
    /// the head first, that is where the log begins, not a gap.
    unread: bool,
}

impl<R: RefModel> RefSide<R> {
    fn new() -> Self {
        RefSide {
            log: Vec::new(),
            head: 0,
            rows: BTreeMap::new(),
            gaps: Vec::new(),
            restored: None,
            unread: true,
        }
    }

    fn next_seq(&self) -> u64 {
        self.log.len() as u64
    }

    fn write(&mut self, w: R::Write, ts: u64) {
        R::apply(&mut self.rows, &w, ts);
        self.log.push((w, ts));
    }

    /// The rows after folding the retained events from `from` onto `rows`.
    fn fold_from(&self, mut rows: BTreeMap<u64, R::Row>, from: u64) -> BTreeMap<u64, R::Row> {
        for (w, ts) in &self.log[from.max(self.head) as usize..] {
            R::apply(&mut rows, w, *ts);
        }
        rows
    }

    /// `rows` with the events `from..to` applied (none of them evicted).
    fn fold_range(
        &self,
        mut rows: BTreeMap<u64, R::Row>,
        from: u64,
        to: u64,
    ) -> BTreeMap<u64, R::Row> {
        for (w, ts) in &self.log[from as usize..to as usize] {
            R::apply(&mut rows, w, *ts);
        }
        rows
    }

    /// Opened without a snapshot: the retained events replayed (retention may have moved
    /// the head after the open, before the fold's first read: still no gap).
    fn reopen(&mut self) {
        self.rows = self.fold_from(BTreeMap::new(), self.head);
        self.gaps.clear();
        self.restored = None;
        self.unread = true;
    }

    /// Restored from a snapshot of `rows` through `last_seq`, then the retained events
    /// after it; retention may have removed some of those (a gap the fold skips).
    fn restore(&mut self, rows: &BTreeMap<u64, R::Row>, last_seq: Option<u64>) {
        let from = last_seq.map_or(0, |s| s + 1);
        self.gaps.clear();
        if last_seq.is_some() && from < self.head {
            self.gaps.push((from, self.head));
        }
        self.rows = self.fold_from(rows.clone(), from);
        self.restored = Some((last_seq, rows.len() as u64));
        self.unread = last_seq.is_none();
    }

    /// Retention removed events from `from` on before the fold read them; `rows` is the
    /// state before them.
    fn evicted_unread(&mut self, rows: BTreeMap<u64, R::Row>, from: u64) {
        if self.head > from {
            if !self.unread {
                self.gaps.push((from, self.head));
            }
            self.rows = self.fold_from(rows, from);
        }
    }

    /// The fold has caught up: it has read something if the log holds anything.
    fn caught_up(&mut self) {
        self.unread &= self.next_seq() == 0;
    }

    /// A sweep keeping at most `retain` events.
    fn sweep(&mut self, retain: Option<u64>) -> u64 {
        let old = self.head;
        if let Some(k) = retain {
            self.head = self.head.max(self.next_seq().saturating_sub(k));
        }
        self.head - old
    }

    /// The sorted, distinct timestamps of the log: what generated time bounds pick from.
    fn stamp(&self, k: usize) -> u64 {
        let mut stamps: Vec<u64> = self.log.iter().map(|(_, ts)| *ts).collect();
        stamps.sort_unstable();
        stamps.dedup();
        if stamps.is_empty() {
            0
        } else {
            stamps[k % stamps.len()]
        }
    }
}

type Range = (Bound<u64>, Bound<u64>);

fn resolve(c: TimeClause, stamp: impl Fn(usize) -> u64) -> Range {
    use Bound::{Excluded, Included, Unbounded};
    match c {
        TimeClause::Gt(k) => (Excluded(stamp(k)), Unbounded),
        TimeClause::Gte(k) => (Included(stamp(k)), Unbounded),
        TimeClause::Lt(k) => (Unbounded, Excluded(stamp(k))),
        TimeClause::Lte(k) => (Unbounded, Included(stamp(k))),
        TimeClause::Between(a, b) => (Included(stamp(a)), Included(stamp(b))),
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// Sorts by `key` then id, in the ordering's direction, and applies offset and limit.
fn page_of<T: Clone, K: Ord>(
    mut rows: Vec<&T>,
    key: impl Fn(&T) -> K,
    desc: bool,
    offset: usize,
    limit: Option<usize>,
) -> Vec<T> {
    rows.sort_by_key(|r| key(r));
    if desc {
        rows.reverse();
    }
    rows.into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .cloned()
        .collect()
}

/// A task query with resolved bounds: what runs against the adapter and the reference.
#[derive(Clone, Debug, Default)]
struct TaskQ {
    status: Option<TaskStatus>,
    status_in: Option<Vec<TaskStatus>>,
    title_contains: Option<&'static str>,
    created: Option<Range>,
    updated: Option<Range>,
    order: Option<tasks::OrderBy>,
    offset: usize,
    limit: Option<usize>,
}

impl TaskQ {
    fn matches(&self, t: &Task) -> bool {
        self.status.is_none_or(|s| t.status == s)
            && self
                .status_in
                .as_ref()
                .is_none_or(|s| s.contains(&t.status))
            && self
                .title_contains
                .is_none_or(|n| contains_ignore_case(&t.title, n))
            && self.created.is_none_or(|r| r.contains(&t.created_ns))
            && self.updated.is_none_or(|r| r.contains(&t.updated_ns))
    }

    fn expected(&self, rows: &BTreeMap<u64, Task>) -> Vec<Task> {
        use tasks::OrderBy as O;
        let rows: Vec<&Task> = rows.values().filter(|t| self.matches(t)).collect();
        let order = self.order.unwrap_or(O::IdAsc);
        let key = |t: &Task| match order {
            O::IdAsc | O::IdDesc => (0, t.id),
            O::CreatedAsc | O::CreatedDesc => (t.created_ns, t.id),
            O::UpdatedAsc | O::UpdatedDesc => (t.updated_ns, t.id),
        };
        let desc = matches!(order, O::IdDesc | O::CreatedDesc | O::UpdatedDesc);
        page_of(rows, key, desc, self.offset, self.limit)
    }

    fn is_filter_only(&self) -> bool {
        self.order.is_none() && self.offset == 0 && self.limit.is_none()
    }

    fn filter(&self) -> TaskFilter {
        TaskFilter {
            status: self.status,
            status_in: self.status_in.clone(),
            title_contains: self.title_contains.map(str::to_owned),
            created_ns_range: self.created,
            updated_ns_range: self.updated,
            ..TaskFilter::default()
        }
    }

    fn from_spec(s: &TaskWatchSpec, side: &RefSide<TasksRef>) -> TaskQ {
        let mut q = TaskQ {
            status: s.status,
            title_contains: s.title_contains,
            order: s.order,
            offset: s.offset,
            limit: s.limit,
            ..TaskQ::default()
        };
        if let Some((field, c)) = s.time {
            let r = Some(resolve(c, |k| side.stamp(k)));
            match field {
                TimeField::Created => q.created = r,
                TimeField::Updated => q.updated = r,
            }
        }
        q
    }
}

/// A memory query with resolved bounds.
#[derive(Clone, Debug, Default)]
struct MemoryQ {
    tag: Option<&'static str>,
    any_tag: Option<Vec<&'static str>>,
    all_tags: Option<Vec<&'static str>>,
    source: Option<&'static str>,
    source_in: Option<Vec<&'static str>>,
    pinned: Option<bool>,
    content_contains: Option<&'static str>,
    created: Option<Range>,
    updated: Option<Range>,
    order: Option<memories::OrderBy>,
    offset: usize,
    limit: Option<usize>,
}

impl MemoryQ {
    fn matches(&self, m: &Memory) -> bool {
        let has = |t: &&str| m.tags.iter().any(|x| x == t);
        self.tag.is_none_or(|t| has(&t))
            && self.any_tag.as_ref().is_none_or(|ts| ts.iter().any(has))
            && self.all_tags.as_ref().is_none_or(|ts| ts.iter().all(has))
            && self.source.is_none_or(|s| m.source == s)
            && self
                .source_in
                .as_ref()
                .is_none_or(|ss| ss.iter().any(|s| m.source == *s))
            && self.pinned.is_none_or(|p| m.pinned == p)
            && self
                .content_contains
                .is_none_or(|n| contains_ignore_case(&m.content, n))
            && self.created.is_none_or(|r| r.contains(&m.created_ns))
            && self.updated.is_none_or(|r| r.contains(&m.updated_ns))
    }

    fn expected(&self, rows: &BTreeMap<u64, Memory>) -> Vec<Memory> {
        use memories::OrderBy as O;
        let rows: Vec<&Memory> = rows.values().filter(|m| self.matches(m)).collect();
        let order = self.order.unwrap_or(O::IdAsc);
        let key = |m: &Memory| match order {
            O::IdAsc | O::IdDesc => (0, m.id),
            O::CreatedAsc | O::CreatedDesc => (m.created_ns, m.id),
            O::UpdatedAsc | O::UpdatedDesc => (m.updated_ns, m.id),
        };
        let desc = matches!(order, O::IdDesc | O::CreatedDesc | O::UpdatedDesc);
        page_of(rows, key, desc, self.offset, self.limit)
    }

    fn is_filter_only(&self) -> bool {
        self.order.is_none() && self.offset == 0 && self.limit.is_none()
    }

    fn filter(&self) -> MemoryFilter {
        let owned = |v: &Vec<&str>| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        MemoryFilter {
            tag: self.tag.map(str::to_owned),
            any_tag: self.any_tag.as_ref().map(owned),
            all_tags: self.all_tags.as_ref().map(owned),
            source: self.source.map(str::to_owned),
            source_in: self.source_in.as_ref().map(owned),
            pinned: self.pinned,
            content_contains: self.content_contains.map(str::to_owned),
            created_ns_range: self.created,
            updated_ns_range: self.updated,
            ..MemoryFilter::default()
        }
    }

    fn from_spec(s: &MemoryWatchSpec, side: &RefSide<MemoriesRef>) -> MemoryQ {
        let mut q = MemoryQ {
            tag: s.tag,
            any_tag: s.any_tag.clone(),
            source: s.source,
            pinned: s.pinned,
            content_contains: s.content_contains,
            order: s.order,
            offset: s.offset,
            limit: s.limit,
            ..MemoryQ::default()
        };
        if let Some((field, c)) = s.time {
            let r = Some(resolve(c, |k| side.stamp(k)));
            match field {
                TimeField::Created => q.created = r,
                TimeField::Updated => q.updated = r,
            }
        }
        q
    }
}

/// Narrows builder `$b` by a resolved range through its typed `where_*` methods.
macro_rules! narrow {
    ($b:ident, $range:expr, $gt:ident, $gte:ident, $lt:ident, $lte:ident, $between:ident) => {
        if let Some(range) = $range {
            $b = match range {
                (Bound::Included(lo), Bound::Included(hi)) => $b.$between(lo, hi),
                (lo, hi) => {
                    $b = match lo {
                        Bound::Included(x) => $b.$gte(x),
                        Bound::Excluded(x) => $b.$gt(x),
                        Bound::Unbounded => $b,
                    };
                    match hi {
                        Bound::Included(x) => $b.$lte(x),
                        Bound::Excluded(x) => $b.$lt(x),
                        Bound::Unbounded => $b,
                    }
                }
            };
        }
    };
}

/// A query or watch builder of the tasks model, narrowed by `q` through its typed methods.
macro_rules! task_builder {
    ($builder:expr, $q:expr) => {{
        let q: &TaskQ = $q;
        let mut b = $builder;
        if let Some(s) = q.status {
            b = b.where_status(s);
        }
        if let Some(s) = &q.status_in {
            b = b.where_status_in(s.iter().copied());
        }
        if let Some(n) = q.title_contains {
            b = b.where_title_contains(n);
        }
        narrow!(
            b,
            q.created,
            where_created_ns_gt,
            where_created_ns_gte,
            where_created_ns_lt,
            where_created_ns_lte,
            where_created_ns_between
        );
        narrow!(
            b,
            q.updated,
            where_updated_ns_gt,
            where_updated_ns_gte,
            where_updated_ns_lt,
            where_updated_ns_lte,
            where_updated_ns_between
        );
        if let Some(o) = q.order {
            b = b.order_by(o);
        }
        if q.offset > 0 {
            b = b.offset(q.offset);
        }
        if let Some(l) = q.limit {
            b = b.limit(l);
        }
        b
    }};
}

/// A query or watch builder of the memories model, narrowed by `q`.
macro_rules! memory_builder {
    ($builder:expr, $q:expr) => {{
        let q: &MemoryQ = $q;
        let mut b = $builder;
        if let Some(t) = q.tag {
            b = b.where_tag(t);
        }
        if let Some(ts) = &q.any_tag {
            b = b.where_any_tag(ts.iter().copied());
        }
        if let Some(ts) = &q.all_tags {
            b = b.where_all_tags(ts.iter().copied());
        }
        if let Some(s) = q.source {
            b = b.where_source(s);
        }
        if let Some(ss) = &q.source_in {
            b = b.where_source_in(ss.iter().copied());
        }
        if let Some(p) = q.pinned {
            b = b.where_pinned(p);
        }
        if let Some(n) = q.content_contains {
            b = b.where_content_contains(n);
        }
        narrow!(
            b,
            q.created,
            where_created_ns_gt,
            where_created_ns_gte,
            where_created_ns_lt,
            where_created_ns_lte,
            where_created_ns_between
        );
        narrow!(
            b,
            q.updated,
            where_updated_ns_gt,
            where_updated_ns_gte,
            where_updated_ns_lt,
            where_updated_ns_lte,
            where_updated_ns_between
        );
        if let Some(o) = q.order {
            b = b.order_by(o);
        }
        if q.offset > 0 {
            b = b.offset(q.offset);
        }
        if let Some(l) = q.limit {
            b = b.limit(l);
        }
        b
    }};
}

/// A few of the timestamps the rows hold (smallest, middle, largest): bounds on and between
/// existing values.
fn some_stamps(values: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.dedup();
    let mut picked = Vec::new();
    if let (Some(&first), Some(&last)) = (v.first(), v.last()) {
        picked.extend([first, v[v.len() / 2], last, last + 1]);
        picked.dedup();
    }
    picked
}

/// The time range clauses checked around stamp `s`.
fn ranges_at(s: u64) -> [Range; 4] {
    use Bound::{Excluded, Included, Unbounded};
    [
        (Included(s), Unbounded),
        (Unbounded, Excluded(s)),
        (Excluded(s), Unbounded),
        (Included(s), Included(s)),
    ]
}

/// The task queries checked after every step.
fn task_queries(rows: &BTreeMap<u64, Task>) -> Vec<TaskQ> {
    use TaskStatus::{Completed, Pending};
    let mut qs = vec![TaskQ::default()];
    for &order in TASK_ORDERS {
        let q = TaskQ {
            order: Some(order),
            ..TaskQ::default()
        };
        qs.push(q.clone());
        qs.push(TaskQ {
            offset: 1,
            limit: Some(3),
            ..q
        });
    }
    for status in [Pending, Completed] {
        qs.push(TaskQ {
            status: Some(status),
            ..TaskQ::default()
        });
        // The seed's query: newest pending first, limited.
        qs.push(TaskQ {
            status: Some(status),
            order: Some(tasks::OrderBy::CreatedDesc),
            limit: Some(2),
            ..TaskQ::default()
        });
    }
    for s in [vec![Completed, Pending], vec![Completed], vec![]] {
        qs.push(TaskQ {
            status_in: Some(s),
            ..TaskQ::default()
        });
    }
    for &n in NEEDLES {
        qs.push(TaskQ {
            title_contains: Some(n),
            ..TaskQ::default()
        });
    }
    for s in some_stamps(rows.values().flat_map(|t| [t.created_ns, t.updated_ns])) {
        for r in ranges_at(s) {
            qs.push(TaskQ {
                created: Some(r),
                ..TaskQ::default()
            });
            qs.push(TaskQ {
                updated: Some(r),
                order: Some(tasks::OrderBy::UpdatedDesc),
                ..TaskQ::default()
            });
        }
        qs.push(TaskQ {
            status: Some(Pending),
            title_contains: Some("the"),
            created: Some((Bound::Unbounded, Bound::Included(s))),
            order: Some(tasks::OrderBy::CreatedAsc),
            limit: Some(2),
            ..TaskQ::default()
        });
    }
    qs
}

/// The memory queries checked after every step.
fn memory_queries(rows: &BTreeMap<u64, Memory>) -> Vec<MemoryQ> {
    let mut qs = vec![MemoryQ::default()];
    for &order in MEMORY_ORDERS {
        let q = MemoryQ {
            order: Some(order),
            ..MemoryQ::default()
        };
        qs.push(q.clone());
        qs.push(MemoryQ {
            offset: 1,
            limit: Some(3),
            ..q
        });
    }
    for &t in QUERY_TAGS {
        qs.push(MemoryQ {
            tag: Some(t),
            ..MemoryQ::default()
        });
        qs.push(MemoryQ {
            tag: Some(t),
            pinned: Some(true),
            order: Some(memories::OrderBy::UpdatedDesc),
            ..MemoryQ::default()
        });
    }
    for ts in [
        vec!["rust", "ci"],
        vec!["absent"],
        vec!["docs", "docs"],
        vec![],
    ] {
        qs.push(MemoryQ {
            any_tag: Some(ts.clone()),
            ..MemoryQ::default()
        });
        qs.push(MemoryQ {
            all_tags: Some(ts),
            ..MemoryQ::default()
        });
    }
    for &s in SOURCES {
        qs.push(MemoryQ {
            source: Some(s),
            ..MemoryQ::default()
        });
        qs.push(MemoryQ {
            source: Some(s),
            order: Some(memories::OrderBy::UpdatedDesc),
            limit: Some(2),
            ..MemoryQ::default()
        });
    }
    for ss in [vec!["docs", "web"], SOURCES.to_vec()] {
        qs.push(MemoryQ {
            source_in: Some(ss),
            ..MemoryQ::default()
        });
    }
    for p in [true, false] {
        qs.push(MemoryQ {
            pinned: Some(p),
            ..MemoryQ::default()
        });
    }
    for &n in NEEDLES {
        qs.push(MemoryQ {
            content_contains: Some(n),
            ..MemoryQ::default()
        });
    }
    for s in some_stamps(rows.values().flat_map(|m| [m.created_ns, m.updated_ns])) {
        for r in ranges_at(s) {
            qs.push(MemoryQ {
                created: Some(r),
                order: Some(memories::OrderBy::CreatedDesc),
                ..MemoryQ::default()
            });
            qs.push(MemoryQ {
                updated: Some(r),
                ..MemoryQ::default()
            });
        }
        qs.push(MemoryQ {
            tag: Some("rust"),
            source: Some("chat"),
            updated: Some((Bound::Included(s), Bound::Unbounded)),
            order: Some(memories::OrderBy::CreatedAsc),
            limit: Some(2),
            ..MemoryQ::default()
        });
    }
    qs
}

// ---------------------------------------------------------------------------------------
// The harness

/// A bundle and the reference state it was taken from.
struct Bundle {
    bytes: Vec<u8>,
    tasks: (BTreeMap<u64, Task>, Option<u64>),
    memories: (BTreeMap<u64, Memory>, Option<u64>),
}

/// A live watch: its query (bounds resolved when it was first registered), its stream on
/// the current adapter, and the last result the stream yielded.
struct Watcher<Q, M: CortexModel> {
    spec: String,
    query: Q,
    stream: WatchStream<M>,
    last: Vec<M>,
}

enum AnyWatcher {
    Tasks(Watcher<TaskQ, Task>),
    Memories(Watcher<MemoryQ, Memory>),
}

struct Harness<D: Db> {
    dir: tempfile::TempDir,
    redex: Redex,
    db: D,
    tasks: RefSide<TasksRef>,
    memories: RefSide<MemoriesRef>,
    bundles: Vec<Bundle>,
    watchers: Vec<AnyWatcher>,
    /// The fold runs only when this thread awaits (a current-thread runtime), so a sweep
    /// between appends and the wait is sure to run before the fold reads them.
    fold_waits_for_us: bool,
}

fn fail(what: impl fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// Fails the case instead of hanging it when a wait never returns. Not a synchronisation:
/// nothing waits on the clock.
async fn no_hang<F: Future>(f: F) -> Result<F::Output, TestCaseError> {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .map_err(|_| fail("the test hung"))
}

fn timestamp<M: CortexModel>(a: &CortexAdapter<M>, seq: u64) -> Result<u64, TestCaseError> {
    let events = a.log().read_range(seq, seq + 1).map_err(fail)?;
    Ok(events.first().ok_or_else(|| fail("no event"))?.timestamp_ns)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Takes what a watch stream has ready, without waiting: its latest result. Returns whether
/// the stream has ended.
fn drain<M: CortexModel>(w: &mut Watcher<impl fmt::Debug, M>) -> Result<bool, TestCaseError> {
    while let Some(item) = w.stream.next().now_or_never() {
        let Some(rows) = item else {
            return Ok(true);
        };
        prop_assert_ne!(
            &rows,
            &w.last,
            "{}: an emission equal to the previous one",
            w.spec
        );
        w.last = rows;
    }
    Ok(false)
}

/// Registers a task watch on `a`: its first result is ready at once.
fn task_watch_on(a: &TasksAdapter, q: &TaskQ, first: bool) -> (WatchStream<Task>, Vec<Task>) {
    let builder = task_builder!(a.watch(), q);
    if first {
        let (rows, stream) = builder.snapshot_and_stream();
        (stream, rows)
    } else {
        let mut stream = builder.stream();
        let initial = stream.next().now_or_never().flatten();
        (stream, initial.expect("the first result is ready at once"))
    }
}

fn memory_watch_on(
    a: &MemoriesAdapter,
    q: &MemoryQ,
    first: bool,
) -> (WatchStream<Memory>, Vec<Memory>) {
    let builder = memory_builder!(a.watch(), q);
    if first {
        let (rows, stream) = builder.snapshot_and_stream();
        (stream, rows)
    } else {
        let mut stream = builder.stream();
        let initial = stream.next().now_or_never().flatten();
        (stream, initial.expect("the first result is ready at once"))
    }
}

/// The case's directory: in memory (`/dev/shm`) where there is one, so that the fsyncs of
/// each close cost nothing (what is tested is the logic, not the disk: the crash harness
/// tests the disk); elsewhere the system's temporary directory.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new().prefix("netdb-mbt").tempdir_in(shm)
    {
        return Ok(dir);
    }
    tempfile::tempdir()
}

impl<D: Db> Harness<D> {
    fn new(flavor: Flavor) -> Result<Self, TestCaseError> {
        let dir = scratch_dir().map_err(fail)?;
        let redex = Redex::with_persistent_dir(dir.path()).map_err(fail)?;
        let db = D::open(&redex).map_err(fail)?;
        Ok(Harness {
            dir,
            redex,
            db,
            tasks: RefSide::new(),
            memories: RefSide::new(),
            bundles: Vec::new(),
            watchers: Vec::new(),
            fold_waits_for_us: matches!(flavor, Flavor::CurrentThread),
        })
    }

    /// Appends `w` and records it in the reference; returns the model and seq to wait for.
    fn write(&mut self, w: &Write) -> Result<(bool, u64), TestCaseError> {
        match w {
            Write::Task(tw) => {
                let t = self.db.tasks();
                let seq = match *tw {
                    TaskWrite::Create(id, title) => t.create(id, title),
                    TaskWrite::Rename(id, title) => t.rename(id, title),
                    TaskWrite::Complete(id) => t.complete(id),
                    TaskWrite::Delete(id) => t.delete(id),
                }
                .map_err(fail)?;
                prop_assert_eq!(seq, self.tasks.next_seq(), "the seq of {:?}", tw);
                self.tasks.write(tw.clone(), timestamp(&**t, seq)?);
                Ok((true, seq))
            }
            Write::Memory(mw) => {
                let m = self.db.memories();
                let seq = match mw {
                    MemoryWrite::Store(id, c, tags, s) => m.store(*id, *c, strings(tags), *s),
                    MemoryWrite::Retag(id, tags) => m.retag(*id, strings(tags)),
                    MemoryWrite::Pin(id) => m.pin(*id),
                    MemoryWrite::Unpin(id) => m.unpin(*id),
                    MemoryWrite::Delete(id) => m.delete(*id),
                }
                .map_err(fail)?;
                prop_assert_eq!(seq, self.memories.next_seq(), "the seq of {:?}", mw);
                self.memories.write(mw.clone(), timestamp(&**m, seq)?);
                Ok((false, seq))
            }
        }
    }

    /// Appends `ws` without waiting; returns the last seq of each model written.
    fn append(&mut self, ws: &[Write]) -> Result<(Option<u64>, Option<u64>), TestCaseError> {
        let (mut task_seq, mut memory_seq) = (None, None);
        for w in ws {
            match self.write(w)? {
                (true, seq) => task_seq = Some(seq),
                (false, seq) => memory_seq = Some(seq),
            }
        }
        Ok((task_seq, memory_seq))
    }

    /// Appends `ws`, then waits for the last write of each model.
    async fn writes(&mut self, ws: &[Write]) -> Result<(), TestCaseError> {
        let seqs = self.append(ws)?;
        self.wait(seqs).await
    }

    async fn wait(
        &self,
        (task_seq, memory_seq): (Option<u64>, Option<u64>),
    ) -> Result<(), TestCaseError> {
        if let Some(seq) = task_seq {
            no_hang(self.db.tasks().wait_for_seq(seq))
                .await?
                .map_err(fail)?;
        }
        if let Some(seq) = memory_seq {
            no_hang(self.db.memories().wait_for_seq(seq))
                .await?
                .map_err(fail)?;
        }
        Ok(())
    }

    /// Appends `ws` and closes the db without waiting for the fold: every watch stream
    /// ends (after a result still pending), the state stays readable and is the reference
    /// as of the last event folded.
    fn close_after(&mut self, ws: &[Write]) -> Result<(), TestCaseError> {
        let before = (self.tasks.next_seq(), self.memories.next_seq());
        let rows = (self.tasks.rows.clone(), self.memories.rows.clone());
        self.append(ws)?;
        self.db.close().map_err(fail)?;
        self.db.close().map_err(fail)?; // harmless
        for w in &mut self.watchers {
            let (ended, spec) = match w {
                AnyWatcher::Tasks(w) => (drain(w)?, &w.spec),
                AnyWatcher::Memories(w) => (drain(w)?, &w.spec),
            };
            prop_assert!(ended, "{}: the stream did not end at close", spec);
        }
        // The table's own mark, read under the same lock as the rows.
        let folded = |last: Option<u64>| last.map_or(0, |s| s + 1);
        let (got, through) = {
            let state = self.db.tasks().state();
            let t = state.read();
            (t.query().collect(), folded(t.folded_through_seq()))
        };
        let want = self.tasks.fold_range(rows.0, before.0, through);
        let want: Vec<Task> = want.into_values().collect();
        prop_assert_eq!(got, want, "tasks after close");
        let (got, through) = {
            let state = self.db.memories().state();
            let t = state.read();
            (t.query().collect(), folded(t.folded_through_seq()))
        };
        let want = self.memories.fold_range(rows.1, before.1, through);
        let want: Vec<Memory> = want.into_values().collect();
        prop_assert_eq!(got, want, "memories after close");
        Ok(())
    }

    /// Closes and opens again (`bundle`: from it); the watches are registered again on the
    /// new adapters before the replay has caught up.
    async fn reopen(&mut self, r: &Restart, bundle: Option<usize>) -> Result<(), TestCaseError> {
        self.close_after(&r.before_close)?;
        if r.new_process {
            // A new process: the old Redex goes (its lock with it), then a new one opens.
            // The old adapters stay until the new db replaces them: their files are closed.
            self.redex = Redex::new();
            self.redex = Redex::with_persistent_dir(self.dir.path()).map_err(fail)?;
        }
        self.db = match bundle {
            None => D::open(&self.redex),
            Some(i) => D::restore(&self.redex, &self.bundles[i].bytes),
        }
        .map_err(fail)?;
        for w in &mut self.watchers {
            match w {
                AnyWatcher::Tasks(w) => {
                    (w.stream, w.last) = task_watch_on(self.db.tasks(), &w.query, false);
                }
                AnyWatcher::Memories(w) => {
                    (w.stream, w.last) = memory_watch_on(self.db.memories(), &w.query, true);
                }
            }
        }
        // Appends racing the replay.
        self.append(&r.during_replay)?;
        if r.sweep_during_replay && self.fold_waits_for_us {
            // Before the fold has read anything: it must skip what the sweep removed.
            self.sweep()?;
        }
        match bundle {
            None => {
                self.tasks.reopen();
                self.memories.reopen();
            }
            Some(i) => {
                let b = &self.bundles[i];
                self.tasks.restore(&b.tasks.0, b.tasks.1);
                self.memories.restore(&b.memories.0, b.memories.1);
            }
        }
        no_hang(self.db.catch_up()).await?.map_err(fail)?;
        if r.sweep_during_replay && !self.fold_waits_for_us {
            // The fold runs on another thread: sweeping before it has caught up would race.
            self.sweep()?;
        }
        Ok(())
    }

    /// Appends `ws`, takes a snapshot before the fold applies them, and waits for them.
    async fn snapshot(&mut self, ws: &[Write]) -> Result<(), TestCaseError> {
        if !self.fold_waits_for_us {
            self.writes(ws).await?;
        }
        let last = |next: u64| next.checked_sub(1);
        let tasks = (self.tasks.rows.clone(), last(self.tasks.next_seq()));
        let memories = (self.memories.rows.clone(), last(self.memories.next_seq()));
        let seqs = if self.fold_waits_for_us {
            self.append(ws)?
        } else {
            (None, None)
        };
        let bytes = self.db.snapshot().map_err(fail)?;
        self.bundles.push(Bundle {
            bytes,
            tasks,
            memories,
        });
        self.wait(seqs).await
    }

    fn sweep(&mut self) -> Result<(), TestCaseError> {
        let reports = self.redex.sweep_retention().map_err(fail)?;
        prop_assert_eq!(reports.len(), 2, "sweep reports");
        for (channel, report) in reports {
            let (evicted, head) = match channel.as_str() {
                "cortex/tasks" => (self.tasks.sweep(D::RETAIN), self.tasks.head),
                "cortex/memories" => (self.memories.sweep(D::RETAIN), self.memories.head),
                other => return Err(fail(format!("a sweep of {other}"))),
            };
            prop_assert_eq!(
                (report.evicted_events, report.first_seq),
                (evicted, head),
                "the sweep of {}",
                channel
            );
        }
        Ok(())
    }

    fn watch(&mut self, spec: &WatchSpec) {
        let w = match spec {
            WatchSpec::Tasks(s) => {
                let query = TaskQ::from_spec(s, &self.tasks);
                let (stream, last) = task_watch_on(self.db.tasks(), &query, s.snapshot_first);
                AnyWatcher::Tasks(Watcher {
                    spec: format!("{s:?}"),
                    query,
                    stream,
                    last,
                })
            }
            WatchSpec::Memories(s) => {
                let query = MemoryQ::from_spec(s, &self.memories);
                let (stream, last) = memory_watch_on(self.db.memories(), &query, s.snapshot_first);
                AnyWatcher::Memories(Watcher {
                    spec: format!("{s:?}"),
                    query,
                    stream,
                    last,
                })
            }
        };
        self.watchers.push(w);
    }

    async fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Write(w) => self.writes(std::slice::from_ref(w)).await,
            Op::Burst(ws) => self.writes(ws).await,
            Op::Reopen(r) => self.reopen(r, None).await,
            Op::Snapshot => self.snapshot(&[]).await,
            Op::SnapshotBeforeFold(ws) => self.snapshot(ws).await,
            Op::Restore { back, restart } => {
                let n = self.bundles.len();
                if n == 0 {
                    return Ok(());
                }
                self.reopen(restart, Some(n - 1 - back % n)).await
            }
            Op::Sweep => self.sweep(),
            Op::SweepBeforeFold(ws) => {
                if !self.fold_waits_for_us {
                    self.writes(ws).await?;
                    return self.sweep();
                }
                let before = (self.tasks.next_seq(), self.memories.next_seq());
                let rows = (self.tasks.rows.clone(), self.memories.rows.clone());
                let seqs = self.append(ws)?;
                self.sweep()?;
                self.tasks.evicted_unread(rows.0, before.0);
                self.memories.evicted_unread(rows.1, before.1);
                self.wait(seqs).await
            }
            Op::Watch(spec) => {
                self.watch(spec);
                Ok(())
            }
            Op::Unwatch(i) => {
                if !self.watchers.is_empty() {
                    let n = self.watchers.len();
                    self.watchers.remove(i % n);
                }
                Ok(())
            }
        }
    }

    /// Everything the adapter reports about its log, fold and restore equals the reference.
    fn check_adapter<M: CortexModel, R: RefModel>(
        a: &CortexAdapter<M>,
        side: &RefSide<R>,
    ) -> Result<(), TestCaseError> {
        let name = M::CHANNEL;
        prop_assert_eq!(a.log().next_seq(), side.next_seq(), "{} next_seq", name);
        prop_assert_eq!(a.log().first_seq(), side.head, "{} first_seq", name);
        prop_assert_eq!(
            a.folded_through_seq(),
            side.next_seq().checked_sub(1),
            "{} folded_through_seq",
            name
        );
        prop_assert!(a.is_folding(), "{} stopped folding", name);
        let errors = a.fold_errors();
        prop_assert!(errors.stopped.is_none(), "{}: {:?}", name, errors);
        let gaps: Vec<(u64, u64)> = errors
            .recent
            .iter()
            .map(|e| match e.kind {
                FoldErrorKind::Evicted { head } => Ok((e.seq, head)),
                _ => Err(fail(format!("{name}: {e}"))),
            })
            .collect::<Result<_, _>>()?;
        prop_assert_eq!(errors.skipped, gaps.len() as u64, "{}", name);
        prop_assert_eq!(&gaps, &side.gaps, "{}", name);
        match (a.restore_outcome(), side.restored) {
            (RestoreOutcome::Fresh, None) => {}
            (RestoreOutcome::Snapshot(info), Some((last_seq, rows))) => {
                prop_assert_eq!((info.last_seq, info.rows), (last_seq, rows), "{}", name);
            }
            (got, want) => {
                return Err(fail(format!(
                    "{name}: restore outcome {got:?}, expected {want:?}"
                )));
            }
        }
        Ok(())
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        let tasks = self.db.tasks();
        Self::check_adapter(&**tasks, &self.tasks)?;
        {
            let state = tasks.state();
            let t = state.read();
            prop_assert_eq!(t.len(), self.tasks.rows.len(), "tasks len()");
            for id in LOOKUP_IDS {
                prop_assert_eq!(t.find_unique(&id), self.tasks.rows.get(&id), "task {}", id);
            }
            for q in task_queries(&self.tasks.rows) {
                let want = q.expected(&self.tasks.rows);
                let got: Vec<Task> = task_builder!(t.query(), &q).collect();
                prop_assert_eq!(&got, &want, "{:?}", q);
                prop_assert_eq!(task_builder!(t.query(), &q).count(), want.len(), "{:?}", q);
                prop_assert_eq!(
                    task_builder!(t.query(), &q).first(),
                    want.first().cloned(),
                    "{:?}",
                    q
                );
                if q.is_filter_only() {
                    let f = q.filter();
                    prop_assert_eq!(t.count_where(&f), want.len(), "{:?}", f);
                    prop_assert_eq!(t.exists_where(&f), !want.is_empty(), "{:?}", f);
                }
            }
        }
        let memories = self.db.memories();
        Self::check_adapter(&**memories, &self.memories)?;
        {
            let state = memories.state();
            let t = state.read();
            prop_assert_eq!(t.len(), self.memories.rows.len(), "memories len()");
            for id in LOOKUP_IDS {
                prop_assert_eq!(
                    t.find_unique(&id),
                    self.memories.rows.get(&id),
                    "memory {}",
                    id
                );
            }
            for q in memory_queries(&self.memories.rows) {
                let want = q.expected(&self.memories.rows);
                let got: Vec<Memory> = memory_builder!(t.query(), &q).collect();
                prop_assert_eq!(&got, &want, "{:?}", q);
                prop_assert_eq!(
                    memory_builder!(t.query(), &q).count(),
                    want.len(),
                    "{:?}",
                    q
                );
                prop_assert_eq!(
                    memory_builder!(t.query(), &q).first(),
                    want.first().cloned(),
                    "{:?}",
                    q
                );
                if q.is_filter_only() {
                    let f = q.filter();
                    prop_assert_eq!(t.count_where(&f), want.len(), "{:?}", f);
                    prop_assert_eq!(t.exists_where(&f), !want.is_empty(), "{:?}", f);
                }
            }
        }
        for w in &mut self.watchers {
            match w {
                AnyWatcher::Tasks(w) => {
                    prop_assert!(!drain(w)?, "{}: the stream ended", w.spec);
                    let want = w.query.expected(&self.tasks.rows);
                    prop_assert_eq!(&w.last, &want, "{} ({:?})", w.spec, w.query);
                }
                AnyWatcher::Memories(w) => {
                    prop_assert!(!drain(w)?, "{}: the stream ended", w.spec);
                    let want = w.query.expected(&self.memories.rows);
                    prop_assert_eq!(&w.last, &want, "{} ({:?})", w.spec, w.query);
                }
            }
        }
        Ok(())
    }

    async fn run(mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        self.check()?;
        for (i, op) in ops.iter().enumerate() {
            self.step(op).await?;
            self.tasks.caught_up();
            self.memories.caught_up();
            self.check()
                .map_err(|e| fail(format!("after ops[{i}] = {op:?}: {e}")))?;
        }
        self.db.close().map_err(fail)
    }
}

#[derive(Clone, Copy, Debug)]
enum Flavor {
    CurrentThread,
    MultiThread,
}

fn run<D: Db>(ops: &[Op], flavor: Flavor) -> Result<(), TestCaseError> {
    let rt = match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(2);
            b
        }
    }
    .enable_all()
    .build()
    .map_err(fail)?;
    rt.block_on(async { Harness::<D>::new(flavor)?.run(ops).await })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// The models' own NetDb: no retention bound, so sweeps evict nothing.
    #[test]
    fn netdb_matches_the_reference(ops in ops()) {
        run::<netdb_models::NetDb>(&ops, Flavor::CurrentThread)?;
    }

    /// Files that keep the last RETAIN events: sweeps evict, replays lose the rows evicted
    /// events built, restores of older bundles skip the gap.
    #[test]
    fn netdb_with_retention_matches_the_reference(ops in ops()) {
        run::<RetainingDb>(&ops, Flavor::CurrentThread)?;
    }

    /// The same on a multi-threaded runtime: the fold runs beside the test's thread.
    #[test]
    fn netdb_on_a_multi_thread_runtime_matches_the_reference(ops in ops()) {
        run::<RetainingDb>(&ops, Flavor::MultiThread)?;
    }
}
