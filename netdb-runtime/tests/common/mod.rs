//! A hand-written model, written the way `#[derive(CortexModel)]` will generate it: the
//! runtime's tests and benchmarks exercise CortEX through it. Not public API.

#![allow(dead_code)]

use std::cmp::Ordering;
use std::ops::Bound;

use netdb_runtime::cortex::{
    ApplyError, CortexEvent, CortexModel, Direction, EventContext, EventDecodeError, Field,
    HashIndex, IdWalk, IndexSet, InvertedIndex, Migration, ModelFilter, ModelOrder, OrderedIndex,
    Plan, Query, Route, RowKey, Schema, TableMut, Watch, contains_ignore_case, migrate_row,
    migrate_rows, order_by_key, route_hash,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    Pending,
    Active,
    Done,
    Archived,
}

pub const ALL_STATUSES: [Status; 4] = [
    Status::Pending,
    Status::Active,
    Status::Done,
    Status::Archived,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: u64,
    pub title: String,
    pub status: Status,
    pub created_ns: u64,
    pub tags: Vec<String>,
}

/// Version 1 of `Task`, before `tags`: what the migration reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskV1 {
    pub id: u64,
    pub title: String,
    pub status: Status,
    pub created_ns: u64,
}

pub const TASK_V1_FIELDS: &[Field] = &[
    Field {
        name: "id",
        ty: "u64",
    },
    Field {
        name: "title",
        ty: "String",
    },
    Field {
        name: "status",
        ty: "Status",
    },
    Field {
        name: "created_ns",
        ty: "u64",
    },
];

impl From<TaskV1> for Task {
    fn from(v: TaskV1) -> Task {
        Task {
            id: v.id,
            title: v.title,
            status: v.status,
            created_ns: v.created_ns,
            tags: Vec::new(),
        }
    }
}

pub const F_ID: u16 = 0;
pub const F_STATUS: u16 = 2;
pub const F_TAGS: u16 = 4;

static MIGRATIONS: [Migration<Task>; 1] = [Migration {
    from_version: 1,
    from_fingerprint: Some(Schema::new(1, TASK_V1_FIELDS).fingerprint),
    decode: migrate_rows::<TaskV1, Task>,
    decode_row: migrate_row::<TaskV1, Task>,
}];

impl CortexModel for Task {
    type Id = u64;
    type Event = TaskEvent;
    type Filter = TaskFilter;
    type OrderBy = OrderBy;
    type Indexes = TaskIndexes;
    type Query<'a> = TaskQuery<'a>;
    type Watch = TaskWatch;

    const CHANNEL: &'static str = "cortex/tasks";
    const SCHEMA: Schema = Schema::new(
        2,
        &[
            Field {
                name: "id",
                ty: "u64",
            },
            Field {
                name: "title",
                ty: "String",
            },
            Field {
                name: "status",
                ty: "Status",
            },
            Field {
                name: "created_ns",
                ty: "u64",
            },
            Field {
                name: "tags",
                ty: "Vec<String>",
            },
        ],
    );

    fn id(&self) -> &u64 {
        &self.id
    }

    fn route_hashes(&self, field: u16, out: &mut dyn FnMut(u64)) {
        match field {
            F_ID => out(route_hash(&self.id)),
            F_STATUS => out(route_hash(&self.status)),
            F_TAGS => self.tags.iter().for_each(|t| out(route_hash(t))),
            _ => {}
        }
    }

    fn migrations() -> &'static [Migration<Self>] {
        &MIGRATIONS
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskEvent {
    Create {
        id: u64,
        title: String,
        status: Status,
        created_ns: u64,
        tags: Vec<String>,
    },
    Rename {
        id: u64,
        title: String,
    },
    SetStatus {
        id: u64,
        status: Status,
    },
    Tag {
        id: u64,
        tag: String,
    },
    Delete {
        id: u64,
    },
    /// Test hooks: inserts a row, then fails in the way named.
    Explode {
        id: u64,
        how: Explode,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Explode {
    Panic,
    Reject,
    ChangeId,
}

impl TaskEvent {
    pub fn create(id: u64, title: &str, status: Status, created_ns: u64, tags: &[&str]) -> Self {
        TaskEvent::Create {
            id,
            title: title.into(),
            status,
            created_ns,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }
}

impl CortexEvent<Task> for TaskEvent {
    fn dispatch(&self) -> u16 {
        match self {
            TaskEvent::Create { .. } => 1,
            TaskEvent::Rename { .. } => 2,
            TaskEvent::SetStatus { .. } => 3,
            TaskEvent::Tag { .. } => 4,
            TaskEvent::Delete { .. } => 5,
            TaskEvent::Explode { .. } => 6,
        }
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        // The enum is encoded whole; the dispatch code is checked against it on decode.
        let encoded = postcard::to_extend(self, std::mem::take(out))?;
        *out = encoded;
        Ok(())
    }

    fn decode_body(
        dispatch: u16,
        _schema_version: u16,
        body: &[u8],
    ) -> Result<Self, EventDecodeError> {
        if !(1..=6).contains(&dispatch) {
            return Err(EventDecodeError::UnknownDispatch(dispatch));
        }
        let ev: TaskEvent = postcard::from_bytes(body)
            .map_err(|source| EventDecodeError::Body { dispatch, source })?;
        if ev.dispatch() != dispatch {
            return Err(EventDecodeError::UnknownDispatch(dispatch));
        }
        Ok(ev)
    }

    fn apply(self, t: &mut TableMut<'_, Task>, _ctx: &EventContext) -> Result<(), ApplyError> {
        match self {
            TaskEvent::Create {
                id,
                title,
                status,
                created_ns,
                tags,
            } => {
                t.insert(Task {
                    id,
                    title,
                    status,
                    created_ns,
                    tags,
                });
            }
            TaskEvent::Rename { id, title } => {
                t.update(&id, |r| r.title = title);
            }
            TaskEvent::SetStatus { id, status } => {
                t.update(&id, |r| r.status = status);
            }
            TaskEvent::Tag { id, tag } => {
                t.update(&id, |r| {
                    if !r.tags.contains(&tag) {
                        r.tags.push(tag)
                    }
                });
            }
            TaskEvent::Delete { id } => {
                t.remove(&id);
            }
            TaskEvent::Explode { id, how } => {
                t.insert(Task {
                    id,
                    title: "half-applied".into(),
                    status: Status::Pending,
                    created_ns: 0,
                    tags: vec![],
                });
                match how {
                    Explode::Panic => panic!("boom on task {id}"),
                    Explode::Reject => return Err(ApplyError::new(format!("task {id} refused"))),
                    Explode::ChangeId => {
                        t.update(&id, |r| r.id += 1_000_000);
                    }
                }
            }
        }
        Ok(())
    }
}

/// The filter the derive would generate: one optional field per clause.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    pub id: Option<u64>,
    pub status: Option<Status>,
    pub status_in: Option<Vec<Status>>,
    pub title_contains: Option<String>,
    pub created: Option<(Bound<u64>, Bound<u64>)>,
    pub tag: Option<String>,
    pub any_tag: Option<Vec<String>>,
}

impl ModelFilter<Task> for TaskFilter {
    fn matches(&self, r: &Task) -> bool {
        self.id.is_none_or(|v| r.id == v)
            && self.status.is_none_or(|v| r.status == v)
            && self
                .status_in
                .as_ref()
                .is_none_or(|v| v.contains(&r.status))
            && self
                .title_contains
                .as_ref()
                .is_none_or(|s| contains_ignore_case(&r.title, s))
            && self
                .created
                .is_none_or(|range| std::ops::RangeBounds::contains(&range, &r.created_ns))
            && self.tag.as_ref().is_none_or(|t| r.tags.contains(t))
            && self
                .any_tag
                .as_ref()
                .is_none_or(|ts| ts.iter().any(|t| r.tags.contains(t)))
    }

    fn plan<'i>(&'i self, ix: &'i TaskIndexes, plan: &mut Plan<'i, u64>) {
        if let Some(id) = &self.id {
            plan.offer_ids([id]);
        }
        if let Some(s) = &self.status {
            plan.offer_set(ix.status.get(s));
        }
        if let Some(v) = &self.status_in {
            plan.offer_union(v.iter().map(|s| ix.status.get(s)));
        }
        if let Some(range) = &self.created {
            plan.offer_keys(ix.created.range(*range));
        }
        if let Some(t) = &self.tag {
            plan.offer_set(ix.tags.get(t));
        }
        if let Some(ts) = &self.any_tag {
            plan.offer_union(ts.iter().map(|t| ix.tags.get(t)));
        }
    }

    fn route(&self) -> Option<Route> {
        let one = |field, h| {
            Some(Route {
                field,
                hashes: vec![h],
            })
        };
        if let Some(id) = &self.id {
            return one(F_ID, route_hash(id));
        }
        if let Some(s) = &self.status {
            return one(F_STATUS, route_hash(s));
        }
        if let Some(v) = &self.status_in {
            return Some(Route {
                field: F_STATUS,
                hashes: v.iter().map(route_hash).collect(),
            });
        }
        if let Some(t) = &self.tag {
            return one(F_TAGS, route_hash(t));
        }
        if let Some(ts) = &self.any_tag {
            return Some(Route {
                field: F_TAGS,
                hashes: ts.iter().map(route_hash).collect(),
            });
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderBy {
    IdAsc,
    IdDesc,
    CreatedAsc,
    CreatedDesc,
    /// No index: always sorted.
    TitleAsc,
}

pub const ALL_ORDERS: [OrderBy; 5] = [
    OrderBy::IdAsc,
    OrderBy::IdDesc,
    OrderBy::CreatedAsc,
    OrderBy::CreatedDesc,
    OrderBy::TitleAsc,
];

impl ModelOrder<Task> for OrderBy {
    fn id_asc() -> Self {
        OrderBy::IdAsc
    }
    fn id_direction(&self) -> Option<Direction> {
        match self {
            OrderBy::IdAsc => Some(Direction::Asc),
            OrderBy::IdDesc => Some(Direction::Desc),
            _ => None,
        }
    }
    fn compare(&self, a: &Task, b: &Task) -> Ordering {
        match self {
            OrderBy::IdAsc => a.id.cmp(&b.id),
            OrderBy::IdDesc => b.id.cmp(&a.id),
            OrderBy::CreatedAsc => order_by_key(
                Direction::Asc,
                (&a.created_ns, &a.id),
                (&b.created_ns, &b.id),
            ),
            OrderBy::CreatedDesc => order_by_key(
                Direction::Desc,
                (&a.created_ns, &a.id),
                (&b.created_ns, &b.id),
            ),
            OrderBy::TitleAsc => order_by_key(Direction::Asc, (&a.title, &a.id), (&b.title, &b.id)),
        }
    }
    fn walk<'i>(&self, ix: &'i TaskIndexes) -> Option<IdWalk<'i, u64>> {
        match self {
            OrderBy::CreatedAsc => Some(ix.created.walk(Direction::Asc)),
            OrderBy::CreatedDesc => Some(ix.created.walk(Direction::Desc)),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct TaskIndexes {
    pub status: HashIndex<Status, u64>,
    pub created: OrderedIndex<u64, u64>,
    pub tags: InvertedIndex<String, u64>,
}

impl IndexSet<Task> for TaskIndexes {
    fn insert(&mut self, id: &RowKey<u64>, r: &Task) {
        self.status.insert(r.status, id);
        self.created.insert(r.created_ns, id);
        self.tags.insert(&r.tags, id);
    }
    fn remove(&mut self, id: &RowKey<u64>, r: &Task) {
        self.status.remove(&r.status, id);
        self.created.remove(&r.created_ns, id);
        self.tags.remove(&r.tags, id);
    }
    fn update(&mut self, id: &RowKey<u64>, old: &Task, new: &Task) {
        self.status.update(&old.status, &new.status, id);
        self.created.update(&old.created_ns, &new.created_ns, id);
        self.tags.update(&old.tags, &new.tags, id);
    }
}

/// The typed query wrapper the derive generates.
#[derive(Debug)]
pub struct TaskQuery<'a>(Query<'a, Task>);

impl<'a> From<Query<'a, Task>> for TaskQuery<'a> {
    fn from(q: Query<'a, Task>) -> Self {
        TaskQuery(q)
    }
}

impl<'a> TaskQuery<'a> {
    pub fn where_status(self, s: Status) -> Self {
        TaskQuery(self.0.filter(|f| f.status = Some(s)))
    }
    pub fn where_tag(self, t: &str) -> Self {
        TaskQuery(self.0.filter(|f| f.tag = Some(t.into())))
    }
    pub fn where_title_contains(self, s: &str) -> Self {
        TaskQuery(self.0.filter(|f| f.title_contains = Some(s.into())))
    }
    pub fn with_filter(self, f: TaskFilter) -> Self {
        TaskQuery(self.0.with_filter(f))
    }
    pub fn order_by(self, o: OrderBy) -> Self {
        TaskQuery(self.0.order_by(o))
    }
    pub fn limit(self, n: usize) -> Self {
        TaskQuery(self.0.limit(n))
    }
    pub fn offset(self, n: usize) -> Self {
        TaskQuery(self.0.offset(n))
    }
    pub fn collect(self) -> Vec<Task> {
        self.0.collect()
    }
    pub fn count(self) -> usize {
        self.0.count()
    }
    pub fn exists(self) -> bool {
        self.0.exists()
    }
    pub fn first(self) -> Option<Task> {
        self.0.first()
    }
    pub fn iter(self) -> impl ExactSizeIterator<Item = &'a Task> + 'a {
        self.0.iter()
    }
}

/// The typed watch wrapper the derive generates.
#[derive(Debug)]
pub struct TaskWatch(Watch<Task>);

impl From<Watch<Task>> for TaskWatch {
    fn from(w: Watch<Task>) -> Self {
        TaskWatch(w)
    }
}

impl From<TaskWatch> for Watch<Task> {
    fn from(w: TaskWatch) -> Self {
        w.0
    }
}

impl TaskWatch {
    pub fn where_id(self, id: u64) -> Self {
        TaskWatch(self.0.filter(|f| f.id = Some(id)))
    }
    pub fn where_status(self, s: Status) -> Self {
        TaskWatch(self.0.filter(|f| f.status = Some(s)))
    }
    pub fn where_tag(self, t: &str) -> Self {
        TaskWatch(self.0.filter(|f| f.tag = Some(t.into())))
    }
    pub fn where_title_contains(self, s: &str) -> Self {
        TaskWatch(self.0.filter(|f| f.title_contains = Some(s.into())))
    }
    pub fn order_by(self, o: OrderBy) -> Self {
        TaskWatch(self.0.order_by(o))
    }
    pub fn limit(self, n: usize) -> Self {
        TaskWatch(self.0.limit(n))
    }
    pub fn offset(self, n: usize) -> Self {
        TaskWatch(self.0.offset(n))
    }
    pub fn stream(self) -> netdb_runtime::cortex::WatchStream<Task> {
        self.0.stream()
    }
}

/// A second model for NetDb tests: a plain id-keyed note with no filters or indexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NoteEvent {
    Put(Note),
}

impl CortexModel for Note {
    type Id = String;
    type Event = NoteEvent;
    type Filter = netdb_runtime::cortex::NoFilter;
    type OrderBy = netdb_runtime::cortex::IdOrder;
    type Indexes = ();
    type Query<'a> = Query<'a, Note>;
    type Watch = Watch<Note>;
    const CHANNEL: &'static str = "cortex/notes";
    const SCHEMA: Schema = Schema::new(
        1,
        &[
            Field {
                name: "id",
                ty: "String",
            },
            Field {
                name: "text",
                ty: "String",
            },
        ],
    );
    fn id(&self) -> &String {
        &self.id
    }
}

impl CortexEvent<Note> for NoteEvent {
    fn dispatch(&self) -> u16 {
        1
    }
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        *out = postcard::to_extend(self, std::mem::take(out))?;
        Ok(())
    }
    fn decode_body(
        dispatch: u16,
        _schema_version: u16,
        body: &[u8],
    ) -> Result<Self, EventDecodeError> {
        if dispatch != 1 {
            return Err(EventDecodeError::UnknownDispatch(dispatch));
        }
        postcard::from_bytes(body).map_err(|source| EventDecodeError::Body { dispatch, source })
    }
    fn apply(self, t: &mut TableMut<'_, Note>, _: &EventContext) -> Result<(), ApplyError> {
        let NoteEvent::Put(n) = self;
        t.insert(n);
        Ok(())
    }
}
