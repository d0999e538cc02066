//! The process the CortEX crash test (`tests/cortex_crash.rs`) kills: the crash harness's
//! writer ([`netdb_tests::crash`]) over the ledger model
//! ([`netdb_tests::cortex_model::Counter`]), appending with the untyped `append`.
//!
//! ```text
//! cortex-crash-writer <redex dir> <snapshot file> <event seed> <rng seed> <fsync policy>
//!                     <sync-every K> <snapshot-every S>
//! ```
//!
//! See [`netdb_tests::crash`] for the arguments and the line protocol on stdout.

use std::process::ExitCode;

use netdb_tests::cortex_model::Counter;

fn main() -> ExitCode {
    netdb_tests::crash::writer_main::<Counter>("cortex-crash-writer")
}
