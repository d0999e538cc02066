//! The process the RedEX crash test kills.
//!
//! ```text
//! redex-crash-writer <dir> <fsync policy> <sync-every K>
//! ```
//!
//! Opens `crash/log` under `<dir>` with [`netdb_tests::crash_config`] and the given policy
//! (`never`, `every:N`, `interval:MS`, `bytes:MS:MAXBYTES`), then appends forever from the
//! file's `next_seq()`, the payload of seq `s` being [`netdb_tests::payload`]`(s)`. It
//! mixes single appends with `append_batch` of 2 to 5 events, and calls `sync()` after
//! every `K` appends (`K = 0`: never).
//!
//! Its stdout is a line protocol, each line written (and flushed) after the operation
//! it reports has returned:
//!
//! * `open <next_seq>`: the file is open (and the directory locked);
//! * `acked <seq>`: an append returned; `<seq>` is the last seq it appended;
//! * `synced <next_seq>`: `sync()` returned; every seq below `<next_seq>` is durable.
//!
//! Any error is printed to stderr and ends the process with status 1.

use std::io::Write;
use std::process::ExitCode;

use netdb_runtime::redex::{FsyncPolicy, Redex};
use netdb_tests::{XorShift, crash_channel, crash_config, parse_policy, payload};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redex-crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, policy, sync_every] = args.as_slice() else {
        return Err("usage: redex-crash-writer <dir> <never|every:N|interval:MS|bytes:MS:MAXBYTES> <sync-every K>".into());
    };
    let policy: FsyncPolicy = parse_policy(policy)?;
    let sync_every: u64 = sync_every
        .parse()
        .map_err(|e| format!("bad sync-every {sync_every:?}: {e}"))?;

    // Interval policies run their fsync task on the ambient tokio runtime. It must be a
    // multi-thread one: nothing here ever drives a current-thread runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()?;
    let _enter = runtime.enter();

    let redex = Redex::with_persistent_dir(dir)?;
    let file = redex.open_file(&crash_channel(), crash_config(policy))?;

    // `Stdout` is line buffered: every `writeln!` reaches the pipe before the next
    // operation starts, so the test never sees a report of something that did not happen.
    let mut out = std::io::stdout().lock();
    let mut rng = XorShift::from_entropy();
    let mut next = file.next_seq();
    writeln!(out, "open {next}")?;
    let mut appends_since_sync = 0u64;
    loop {
        let n = if rng.range(0..=3) == 0 {
            rng.range(2..=5)
        } else {
            1
        };
        let range = if n == 1 {
            let seq = file.append(&payload(next))?;
            seq..seq + 1
        } else {
            let batch: Vec<Vec<u8>> = (next..next + n).map(payload).collect();
            file.append_batch(&batch)?
        };
        if range != (next..next + n) {
            return Err(format!("appended {range:?}, expected {:?}", next..next + n).into());
        }
        next = range.end;
        writeln!(out, "acked {}", next - 1)?;

        appends_since_sync += 1;
        if sync_every > 0 && appends_since_sync >= sync_every {
            file.sync()?;
            appends_since_sync = 0;
            writeln!(out, "synced {next}")?;
        }
    }
}
