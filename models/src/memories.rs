//! The memories model: notes an agent keeps, tagged and pinnable.

use netdb_runtime::cortex::{ApplyError, ApplyEvent, EventContext, TableMut};
use netdb_runtime::{CortexEvents, CortexModel};
use serde::{Deserialize, Serialize};

/// A memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/memories", events = MemoryEvent)]
pub struct Memory {
    /// The memory's id, chosen by the writer.
    pub id: u64,
    /// What is remembered.
    #[cortex(filter(contains))]
    pub content: String,
    /// Tags: `where_tag`, `where_any_tag`, `where_all_tags`.
    #[cortex(filter, index)]
    pub tags: Vec<String>,
    /// Where it came from.
    #[cortex(filter(eq), index)]
    pub source: String,
    /// Whether it is pinned.
    #[cortex(filter)]
    pub pinned: bool,
    /// When it was stored (the log's timestamp of the store event), in ns.
    #[cortex(filter(range), order_by = "Created", index)]
    pub created_ns: u64,
    /// When it last changed, in ns.
    #[cortex(filter(range), order_by = "Updated")]
    pub updated_ns: u64,
}

/// The seed's name for the orderings.
pub use self::MemoryOrderBy as OrderBy;

/// The events of the memories model.
#[derive(Debug, Clone, PartialEq, CortexEvents)]
#[cortex(model = Memory)]
pub enum MemoryEvent {
    /// A new, unpinned memory (replaces one with the same id).
    #[cortex(dispatch = 1)]
    Store {
        /// The id.
        id: u64,
        /// The content.
        content: String,
        /// The tags.
        tags: Vec<String>,
        /// The source.
        source: String,
    },
    /// The tags are replaced.
    #[cortex(dispatch = 2)]
    Retag {
        /// The memory.
        id: u64,
        /// The new tags.
        tags: Vec<String>,
    },
    /// The memory is pinned.
    #[cortex(dispatch = 3)]
    Pin {
        /// The memory.
        id: u64,
    },
    /// The memory is unpinned.
    #[cortex(dispatch = 4)]
    Unpin {
        /// The memory.
        id: u64,
    },
    /// The memory is removed.
    #[cortex(dispatch = 5)]
    Delete {
        /// The memory.
        id: u64,
    },
}

impl ApplyEvent<Memory> for MemoryEvent {
    fn apply(self, t: &mut TableMut<'_, Memory>, ctx: &EventContext) -> Result<(), ApplyError> {
        let now = ctx.log_timestamp_ns;
        let touch = |id: u64, t: &mut TableMut<'_, Memory>, change: &dyn Fn(&mut Memory)| {
            t.update(&id, |m| {
                change(m);
                m.updated_ns = now;
            });
        };
        match self {
            MemoryEvent::Store {
                id,
                content,
                tags,
                source,
            } => {
                t.insert(Memory {
                    id,
                    content,
                    tags,
                    source,
                    pinned: false,
                    created_ns: now,
                    updated_ns: now,
                });
            }
            MemoryEvent::Retag { id, tags } => {
                t.update(&id, |m| {
                    m.tags = tags;
                    m.updated_ns = now;
                });
            }
            MemoryEvent::Pin { id } => touch(id, t, &|m| m.pinned = true),
            MemoryEvent::Unpin { id } => touch(id, t, &|m| m.pinned = false),
            MemoryEvent::Delete { id } => {
                t.remove(&id);
            }
        }
        Ok(())
    }
}
