//! Crash recovery of CortEX models, with real processes and real SIGKILLs: the crash
//! harness of [`netdb_tests::crash`] (see there for what each iteration checks) over the
//! small ledger model of [`netdb_tests::cortex_model`], appended with the untyped `append`.
//! The seed's tasks model, written through its typed writes, has its own soak in
//! `tasks_crash.rs`.
//!
//! `NETDB_CRASH_ITERS` sets the iterations per policy (default 20) and `NETDB_CRASH_SEED`
//! the random seed (default: from the clock; printed, so a failure can be replayed). Run
//! with `--nocapture` to see a summary line per policy.

use std::time::Duration;

use netdb_runtime::redex::FsyncPolicy;
use netdb_tests::cortex_model::Counter;
use netdb_tests::crash::{Scenario, crash_loop};

const WRITER: &str = env!("CARGO_BIN_EXE_cortex-crash-writer");
const DEFAULT_ITERS: u64 = 20;

fn run(name: &str, sc: Scenario) {
    crash_loop::<Counter>(WRITER, name, sc, DEFAULT_ITERS);
}

#[test]
fn cortex_crash_never_with_explicit_sync() {
    run(
        "cortex_never",
        Scenario {
            policy: FsyncPolicy::Never,
            max_lines: 399,
            sync_every: (1, 40),
            snapshots: true,
        },
    );
}

#[test]
fn cortex_crash_every_1() {
    run(
        "cortex_every_1",
        Scenario {
            policy: FsyncPolicy::EveryN(1),
            max_lines: 120,
            sync_every: (0, 0),
            snapshots: true,
        },
    );
}

#[test]
fn cortex_crash_every_16() {
    run(
        "cortex_every_16",
        Scenario {
            policy: FsyncPolicy::EveryN(16),
            max_lines: 399,
            sync_every: (0, 0),
            snapshots: true,
        },
    );
}

#[test]
fn cortex_crash_interval() {
    run(
        "cortex_interval_5ms",
        Scenario {
            policy: FsyncPolicy::Interval(Duration::from_millis(5)),
            max_lines: 399,
            sync_every: (0, 0),
            snapshots: true,
        },
    );
}
