//! The process the CortEX crash test kills.
//!
//! ```text
//! cortex-crash-writer <redex dir> <snapshot file> <event seed> <rng seed> <fsync policy>
//!                     <sync-every K> <snapshot-every S>
//! ```
//!
//! Opens a [`Redex`] on `<redex dir>` and a [`CortexAdapter`] of
//! [`Counter`] over it, its file opened with
//! [`netdb_tests::crash_config`] and the given fsync policy (`never`, `every:N`,
//! `interval:MS`, `bytes:MS:MAXBYTES`). If `<snapshot file>` exists, the adapter is restored
//! from it (`open_from_snapshot`), otherwise it replays the log. It then appends forever
//! from the log's `next_seq()`, the event at seq `s` being
//! [`ledger_event`]`(<event seed>, s)`, mixing single appends with `append_batch` of 2 to 5
//! events (chosen by `<rng seed>`). After every `K` appends it calls `log().sync()` (`K = 0`:
//! never). After every `S` appends (`S = 0`: never) it takes a snapshot (sometimes after
//! waiting for the fold to catch up, sometimes of whatever it folded so far), syncs the
//! log, so the snapshot never covers an event that is not durable, and writes the snapshot
//! to `<snapshot file>.tmp`, then renames it over `<snapshot file>`.
//!
//! Its stdout is a line protocol, each line written (and flushed) after the operation
//! it reports has returned:
//!
//! * `open <next_seq>`: the adapter is open (and the directory locked);
//! * `acked <seq>`: an append returned; `<seq>` is the last seq it appended;
//! * `synced <next_seq>`: `sync()` returned; every seq below `<next_seq>` is durable;
//! * `snapshot <last_seq>|none`: a snapshot folded through `<last_seq>` was renamed into
//!   place.
//!
//! Any error is printed to stderr and ends the process with status 1.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use netdb_runtime::cortex::{CortexAdapter, CortexConfig, snapshot};
use netdb_runtime::redex::{FsyncPolicy, Redex};
use netdb_tests::cortex_model::{Counter, LedgerEvent, ledger_event};
use netdb_tests::{XorShift, crash_config, parse_policy};

/// The origin hash the writer stamps on its events.
const ORIGIN: u64 = 0xC0DE_0001;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cortex-crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num(name: &str, s: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("bad {name} {s:?}: {e}"))
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        dir,
        snap,
        seed,
        rng_seed,
        policy,
        sync_every,
        snapshot_every,
    ] = args.as_slice()
    else {
        return Err(
            "usage: cortex-crash-writer <redex dir> <snapshot file> <event seed> \
                    <rng seed> <never|every:N|interval:MS|bytes:MS:MAXBYTES> <sync-every K> \
                    <snapshot-every S>"
                .into(),
        );
    };
    let snap = PathBuf::from(snap);
    let seed = num("event seed", seed)?;
    let mut rng = XorShift::new(num("rng seed", rng_seed)?);
    let policy: FsyncPolicy = parse_policy(policy)?;
    let sync_every = num("sync-every", sync_every)?;
    let snapshot_every = num("snapshot-every", snapshot_every)?;

    // The fold task, and the fsync task of interval policies, run on this runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;
    let _enter = runtime.enter();

    let redex = Redex::with_persistent_dir(dir)?;
    let config = CortexConfig::default().with_file_config(crash_config(policy));
    let adapter = match std::fs::read(&snap) {
        Ok(bytes) => {
            let info = snapshot::inspect(&bytes)?;
            CortexAdapter::<Counter>::open_from_snapshot_with_config(
                &redex,
                ORIGIN,
                &bytes,
                info.last_seq,
                config,
            )?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            CortexAdapter::<Counter>::open_with_config(&redex, ORIGIN, config)?
        }
        Err(e) => return Err(format!("read {}: {e}", snap.display()).into()),
    };
    let log = adapter.log();

    // `Stdout` is line buffered: every `writeln!` reaches the pipe before the next
    // operation starts, so the test never sees a report of something that did not happen.
    let mut out = std::io::stdout().lock();
    let mut next = log.next_seq();
    writeln!(out, "open {next}")?;
    let (mut since_sync, mut since_snapshot) = (0u64, 0u64);
    loop {
        let n = if rng.range(0..=3) == 0 {
            rng.range(2..=5)
        } else {
            1
        };
        let events: Vec<LedgerEvent> = (next..next + n).map(|s| ledger_event(seed, s)).collect();
        let range = if n == 1 {
            let seq = adapter.append(&events[0])?;
            seq..seq + 1
        } else {
            adapter.append_batch(&events)?
        };
        if range != (next..next + n) {
            return Err(format!("appended {range:?}, expected {:?}", next..next + n).into());
        }
        next = range.end;
        writeln!(out, "acked {}", next - 1)?;

        since_sync += 1;
        if sync_every > 0 && since_sync >= sync_every {
            log.sync()?;
            since_sync = 0;
            writeln!(out, "synced {next}")?;
        }

        since_snapshot += 1;
        if snapshot_every > 0 && since_snapshot >= snapshot_every {
            since_snapshot = 0;
            if rng.range(0..=1) == 0 {
                runtime.block_on(adapter.wait_for_seq(next - 1))?;
            }
            let (bytes, last_seq) = adapter.snapshot()?;
            // The snapshot covers at most what was appended so far: make that durable
            // before the snapshot can be found, or a crash could leave it ahead of the log.
            log.sync()?;
            since_sync = 0;
            writeln!(out, "synced {next}")?;
            write_atomically(&snap, &bytes)?;
            match last_seq {
                Some(s) => writeln!(out, "snapshot {s}")?,
                None => writeln!(out, "snapshot none")?,
            }
        }
    }
}

/// Writes `bytes` to `<path>.tmp` and renames it over `path`: a reader finds the old file
/// or the new one, never a part of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
