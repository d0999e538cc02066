//! Entry points for the model fuzz targets in `fuzz/` and for the tests that replay their
//! corpora: the runtime's [`netdb_runtime::fuzzing`] checks, run with this crate's models.
//!
//! Not public API. Each function takes arbitrary bytes and returns normally whatever they
//! are; only a panic, a hang or unbounded memory is a finding.

use netdb_runtime::CortexModel;
use netdb_runtime::cortex::CortexModel as _;
use netdb_runtime::fuzzing as rt;
use serde::{Deserialize, Serialize};

use crate::memories::Memory;
use crate::tasks::Task;

/// A model declared without an events enum, so its events are the runtime's built-in
/// insert / update / delete: schema version 2, with a migration from version 1
/// ([`NoteV1`]) for old inserts and snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "fuzz/notes", schema = 2, migrate(from = 1, with = NoteV1))]
pub struct Note {
    /// The note's key.
    #[cortex(id)]
    pub key: String,
    /// What it says.
    pub body: Option<String>,
    /// Tags.
    #[cortex(filter, index)]
    pub tags: Vec<String>,
    /// A rank, ordered and indexed.
    #[cortex(filter(range), order_by, index)]
    pub rank: u32,
    /// Whether it is done.
    #[cortex(filter)]
    pub done: bool,
}

/// Version 1 of [`Note`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteV1 {
    /// The note's key.
    pub key: String,
    /// What it said.
    pub body: String,
    /// Its rank.
    pub rank: u32,
}

impl From<NoteV1> for Note {
    fn from(v1: NoteV1) -> Note {
        Note {
            key: v1.key,
            body: Some(v1.body),
            tags: Vec::new(),
            rank: v1.rank,
            done: false,
        }
    }
}

/// A [`crate::tasks::TaskEvent`] body: see [`rt::event`] for the input layout.
pub fn task_event(data: &[u8]) {
    rt::event::<Task>(data);
}

/// A [`crate::memories::MemoryEvent`] body: see [`rt::event`] for the input layout.
pub fn memory_event(data: &[u8]) {
    rt::event::<Memory>(data);
}

/// A built-in event body of [`Note`] (insert, update, delete; inserts of version 1
/// migrated): see [`rt::event`] for the input layout.
pub fn builtin_event(data: &[u8]) {
    rt::event::<Note>(data);
}

/// A snapshot envelope, decoded as each model's.
pub fn snapshot(data: &[u8]) {
    rt::snapshot::<Task>(data);
    rt::snapshot::<Memory>(data);
    rt::snapshot::<Note>(data);
}

/// A `NetDb` bundle; the rows of each model snapshot in it are decoded as the model its
/// channel names.
pub fn bundle(data: &[u8]) {
    for (channel, envelope) in rt::bundle(data) {
        match channel.as_str() {
            Task::CHANNEL => rt::snapshot::<Task>(&envelope),
            Memory::CHANNEL => rt::snapshot::<Memory>(&envelope),
            Note::CHANNEL => rt::snapshot::<Note>(&envelope),
            _ => {}
        }
    }
}
