//! The tasks model: a to-do list.

use netdb_runtime::cortex::{ApplyError, ApplyEvent, EventContext, TableMut};
use netdb_runtime::{CortexEvents, CortexModel};
use serde::{Deserialize, Serialize};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Not done yet.
    Pending,
    /// Done.
    Completed,
}

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
#[cortex(channel = "cortex/tasks", events = TaskEvent)]
pub struct Task {
    /// The task's id, chosen by the writer.
    pub id: u64,
    /// What to do.
    #[cortex(filter(contains))]
    pub title: String,
    /// Pending or completed.
    #[cortex(filter, index)]
    pub status: TaskStatus,
    /// When it was created (the log's timestamp of the create event), in ns.
    #[cortex(filter(range), order_by = "Created", index)]
    pub created_ns: u64,
    /// When it last changed, in ns.
    #[cortex(filter(range), order_by = "Updated")]
    pub updated_ns: u64,
}

/// The seed's name for the orderings.
pub use self::TaskOrderBy as OrderBy;

/// The events of the tasks model.
#[derive(Debug, Clone, PartialEq, CortexEvents)]
#[cortex(model = Task)]
pub enum TaskEvent {
    /// A new pending task (replaces a task with the same id).
    #[cortex(dispatch = 1)]
    Create {
        /// The id.
        id: u64,
        /// The title.
        title: String,
    },
    /// A new title.
    #[cortex(dispatch = 2)]
    Rename {
        /// The task.
        id: u64,
        /// The new title.
        title: String,
    },
    /// The task is done.
    #[cortex(dispatch = 3)]
    Complete {
        /// The task.
        id: u64,
    },
    /// The task is removed.
    #[cortex(dispatch = 4)]
    Delete {
        /// The task.
        id: u64,
    },
}

impl ApplyEvent<Task> for TaskEvent {
    fn apply(self, t: &mut TableMut<'_, Task>, ctx: &EventContext) -> Result<(), ApplyError> {
        let now = ctx.log_timestamp_ns;
        match self {
            TaskEvent::Create { id, title } => {
                t.insert(Task {
                    id,
                    title,
                    status: TaskStatus::Pending,
                    created_ns: now,
                    updated_ns: now,
                });
            }
            TaskEvent::Rename { id, title } => {
                t.update(&id, |task| {
                    task.title = title;
                    task.updated_ns = now;
                });
            }
            TaskEvent::Complete { id } => {
                t.update(&id, |task| {
                    task.status = TaskStatus::Completed;
                    task.updated_ns = now;
                });
            }
            TaskEvent::Delete { id } => {
                t.remove(&id);
            }
        }
        Ok(())
    }
}
