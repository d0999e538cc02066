//! The crash soak of the seed's tasks model: a writer process appends create / rename /
//! complete / delete events through `TasksAdapter`'s typed writes (and `append_batch`),
//! snapshotting now and then, and is SIGKILLed at a random moment; the directory is then
//! reopened and checked. The harness is [`netdb_tests::crash`] (it lists every check:
//! synced and policy-covered events present, seqs contiguous from 0, every record exactly
//! the event written, replay equal to a reference fold using the log's timestamps, the
//! tasks indexes consistent, the snapshot restoring to the same state); the event stream is
//! [`netdb_tests::tasks_model`].
//!
//! One test per [`FsyncPolicy`]: `Never` with explicit `sync()` calls, `EveryN(1)`,
//! `EveryN(16)`, `Interval(5 ms)` and `IntervalOrBytes(5 ms, 4 KiB)`; and `Never` with
//! neither syncs nor snapshots, where a kill loses what the staging buffer holds.
//!
//! `NETDB_CRASH_ITERS` sets the iterations per scenario (default [`DEFAULT_ITERS`], so a
//! plain `cargo test` kills the writer 120 times) and `NETDB_CRASH_SEED` the random seed
//! (default: from the clock; printed, so a failure can be replayed). A soak:
//!
//! ```text
//! NETDB_CRASH_ITERS=1000 cargo test --release -p netdb-tests --test tasks_crash -- --nocapture
//! ```

use std::time::Duration;

use netdb_models::tasks::Task;
use netdb_runtime::redex::FsyncPolicy;
use netdb_tests::crash::{Scenario, crash_loop};

const WRITER: &str = env!("CARGO_BIN_EXE_tasks-crash-writer");
/// Iterations per scenario in a normal test run: 6 scenarios × 20 = 120 kills.
const DEFAULT_ITERS: u64 = 20;

fn run(name: &str, sc: Scenario) {
    crash_loop::<Task>(WRITER, name, sc, DEFAULT_ITERS);
}

#[test]
fn tasks_crash_never_with_explicit_sync() {
    run(
        "tasks_never",
        Scenario {
            policy: FsyncPolicy::Never,
            max_lines: 399,
            sync_every: (1, 40),
            snapshots: true,
        },
    );
}

/// No sync and no snapshot: the log is handed to the OS only when the staging buffer
/// fills, so a kill loses up to a buffer's worth (the bound checked).
#[test]
fn tasks_crash_never_without_sync() {
    run(
        "tasks_never_no_sync",
        Scenario {
            policy: FsyncPolicy::Never,
            max_lines: 4000,
            sync_every: (0, 0),
            snapshots: false,
        },
    );
}

#[test]
fn tasks_crash_every_1() {
    run(
        "tasks_every_1",
        Scenario {
            policy: FsyncPolicy::EveryN(1),
            max_lines: 120,
            sync_every: (0, 0),
            snapshots: true,
        },
    );
}

#[test]
fn tasks_crash_every_16() {
    run(
        "tasks_every_16",
        Scenario {
            policy: FsyncPolicy::EveryN(16),
            max_lines: 399,
            sync_every: (0, 0),
            snapshots: true,
        },
    );
}

#[test]
fn tasks_crash_interval() {
    run(
        "tasks_interval_5ms",
        Scenario {
            policy: FsyncPolicy::Interval(Duration::from_millis(5)),
            max_lines: 399,
            sync_every: (0, 0),
            snapshots: true,
        },
    );
}

#[test]
fn tasks_crash_interval_or_bytes() {
    run(
        "tasks_interval_or_bytes",
        Scenario {
            policy: FsyncPolicy::IntervalOrBytes {
                period: Duration::from_millis(5),
                max_bytes: 4096,
            },
            max_lines: 399,
            sync_every: (0, 0),
            snapshots: true,
        },
    );
}
