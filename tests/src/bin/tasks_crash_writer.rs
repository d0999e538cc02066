//! The process the tasks crash soak (`tests/tasks_crash.rs`) kills: the crash harness's
//! writer ([`netdb_tests::crash`]) over the seed's tasks model
//! ([`netdb_models::tasks::Task`]), appending single events with the typed writes of
//! `TasksAdapter` (`create`, `rename`, `complete`, `delete`) and batches with
//! `append_batch`; the stream is [`netdb_tests::tasks_model::task_event`].
//!
//! ```text
//! tasks-crash-writer <redex dir> <snapshot file> <event seed> <rng seed> <fsync policy>
//!                    <sync-every K> <snapshot-every S>
//! ```
//!
//! See [`netdb_tests::crash`] for the arguments and the line protocol on stdout.

use std::process::ExitCode;

use netdb_models::tasks::Task;

fn main() -> ExitCode {
    netdb_tests::crash::writer_main::<Task>("tasks-crash-writer")
}
