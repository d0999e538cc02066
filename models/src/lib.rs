//! The seed's domain models, declared with the netdb derives only: no hand-written fold,
//! query or watch code.
//!
//! * [`tasks`]: `Task` with `TaskStatus`; events create / rename / complete / delete.
//! * [`memories`]: `Memory` with tags, source and pinned; events store / retag / pin /
//!   unpin / delete.
//! * [`NetDb`](struct@NetDb): both under one handle, `db.tasks()` / `db.memories()`.
//!
//! ```
//! use netdb_models::NetDb;
//! use netdb_models::tasks::{OrderBy, TaskStatus};
//! use netdb_runtime::redex::Redex;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let redex = Redex::new();
//! let db = NetDb::open(&redex, 1)?;
//! db.tasks().create(1, "write the docs")?;
//! let seq = db.tasks().create(2, "ship it")?;
//! db.tasks().wait_for_seq(seq).await?;
//!
//! let pending = db.tasks().state().read()
//!     .query()
//!     .where_status(TaskStatus::Pending)
//!     .order_by(OrderBy::CreatedDesc)
//!     .limit(20)
//!     .collect();
//! assert_eq!(pending.len(), 2);
//! db.close()?;
//! # Ok::<(), netdb_runtime::cortex::CortexError>(())
//! # }).unwrap();
//! ```
//!
//! Event timestamps (`created_ns`, `updated_ns`) come from the log: the time RedEX stored
//! the event, so a replay rebuilds exactly the same rows.

#[doc(hidden)]
pub mod fuzzing;
pub mod memories;
pub mod tasks;

use netdb_runtime::NetDb;

pub use memories::MemoriesAdapter;
pub use tasks::TasksAdapter;

/// The seed's database: the tasks and memories models under one handle, with one
/// snapshot covering both.
#[derive(Debug, NetDb)]
pub struct NetDb {
    tasks: TasksAdapter,
    memories: MemoriesAdapter,
}
