//! Crash consistency of persistent RedEX files, with real processes and real SIGKILLs.
//!
//! Each test runs a loop: spawn `redex-crash-writer` on a directory, read a random number of
//! lines of its report (`open`, `acked`, `synced`; reading them is the only
//! synchronisation), SIGKILL it, then open the directory in this process and check that
//!
//! * nothing the writer reported as fsynced (`synced N`) was lost, nor anything that was
//!   durable when the writer started (the previous check closed the file, which fsyncs);
//! * the fsync policy's loss bound held: `EveryN(n)` loses at most `n - 1` acknowledged
//!   events, `IntervalOrBytes` less than `max_bytes` of acknowledged payload;
//! * every event `0..next_seq` reads back with its seq and exactly the payload the writer
//!   derived from that seq: recovery cut torn records instead of returning them;
//! * a recovery report is there and agrees with the file.
//!
//! The writer keeps appending to the same directory across iterations, so recovery runs
//! on a growing, multi-segment log; a fresh directory is started every
//! [`ITERS_PER_DIR`] iterations to bound its size.
//!
//! A failed iteration does not stop the loop: its directory is kept (renamed
//! `failed-<iteration>` under a temporary directory that is then not deleted) and the loop
//! goes on in a fresh one, so a long run reports how often something fails. The test
//! panics at the end if anything did (or after 5 failures).
//!
//! `NETDB_CRASH_ITERS` sets the iterations per policy (default 50) and `NETDB_CRASH_SEED`
//! the random seed (default: from the clock; printed, so a failure can be replayed). Run
//! with `--nocapture` to see a summary line per policy.
//!
//! `locked_dir_is_refused_across_processes` checks the directory lock between processes.
//! The tests at the end pin two bugs the crash loop once found (a kill while a segment was
//! being created; the directory lock outliving `close()`), deterministically.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netdb_runtime::redex::{FsyncPolicy, Redex, RedexError};
use netdb_tests::{
    XorShift, crash_channel, crash_config, env_u64, format_policy, no_spawns, payload, payload_len,
};

const WRITER: &str = env!("CARGO_BIN_EXE_redex-crash-writer");
/// Iterations that append to one directory before a fresh one is started.
const ITERS_PER_DIR: u64 = 10;
const DEFAULT_ITERS: u64 = 50;
/// The signal `Child::kill` sends on unix.
const SIGKILL: i32 = 9;

/// How one policy is exercised.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    policy: FsyncPolicy,
    /// The kill comes after reading 1..=`max_lines` report lines.
    max_lines: u64,
    /// The writer calls `sync()` every K appends, K drawn from this range (0: never).
    sync_every: (u64, u64),
}

fn spawn_writer(dir: &Path, policy: FsyncPolicy, sync_every: u64) -> Child {
    let _guard = no_spawns();
    spawn_writer_unguarded(dir, policy, sync_every)
}

/// [`spawn_writer`] for a caller that holds [`no_spawns`] already.
fn spawn_writer_unguarded(dir: &Path, policy: FsyncPolicy, sync_every: u64) -> Child {
    Command::new(WRITER)
        .arg(dir)
        .arg(format_policy(policy))
        .arg(sync_every.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {WRITER}: {e}"))
}

fn child_stderr(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    err
}

/// What the writer reported before it was killed.
#[derive(Debug, Default)]
struct Reported {
    open_seq: Option<u64>,
    last_acked: Option<u64>,
    last_synced: u64,
    lines: u64,
}

fn parse_line(line: &str, rep: &mut Reported) -> Result<(), String> {
    let (word, num) = line
        .trim_end()
        .split_once(' ')
        .ok_or_else(|| format!("malformed writer line {line:?}"))?;
    let n: u64 = num
        .parse()
        .map_err(|e| format!("malformed writer line {line:?}: {e}"))?;
    match word {
        "open" => rep.open_seq = Some(n),
        "acked" => {
            if let Some(prev) = rep.last_acked
                && n <= prev
            {
                return Err(format!("acked {n} after acked {prev}"));
            }
            rep.last_acked = Some(n);
        }
        "synced" => {
            if n < rep.last_synced {
                return Err(format!("synced {n} after synced {}", rep.last_synced));
            }
            rep.last_synced = n;
        }
        _ => return Err(format!("unknown writer line {line:?}")),
    }
    rep.lines += 1;
    Ok(())
}

/// Spawns the writer, reads `lines` report lines, spins `spin`, SIGKILLs it and reaps it.
fn run_and_kill(
    dir: &Path,
    policy: FsyncPolicy,
    sync_every: u64,
    lines: u64,
    spin: Duration,
) -> Result<Reported, String> {
    let mut child = spawn_writer(dir, policy, sync_every);
    let mut rep = Reported::default();
    netdb_tests::read_then_kill(&mut child, lines, spin, |line| parse_line(line, &mut rep))?;
    Ok(rep)
}

/// What checking one recovered directory found.
#[derive(Debug)]
struct Checked {
    next_seq: u64,
    truncated_records: u64,
    truncated_bytes: u64,
    segments: usize,
}

/// Opens `dir` in this process, checks it against what the writer reported, and closes it
/// (releasing the directory lock).
fn check_recovered(
    dir: &Path,
    policy: FsyncPolicy,
    rep: &Reported,
    durable_before: u64,
) -> Result<Checked, String> {
    let _guard = no_spawns();
    let redex = Redex::with_persistent_dir(dir).map_err(|e| format!("reopen: {e}"))?;
    let file = redex
        .open_file(&crash_channel(), crash_config(policy))
        .map_err(|e| format!("recovery failed: {e}"))?;
    let result = (|| {
        let next = file.next_seq();
        let report = file
            .recovery_report()
            .ok_or("a persistent file has no recovery report")?;
        if report.next_seq != next || report.first_seq != 0 || file.first_seq() != 0 {
            return Err(format!(
                "recovery report {report:?} disagrees with the file (next_seq {next}, first_seq {})",
                file.first_seq()
            ));
        }
        let chan_dir = file.dir().ok_or("a persistent file has no directory")?;
        let idx_files = std::fs::read_dir(&chan_dir)
            .map_err(|e| format!("list {}: {e}", chan_dir.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
            .count();
        if report.segments != idx_files {
            return Err(format!(
                "recovery report says {} segments, the directory has {idx_files}",
                report.segments
            ));
        }

        // Durability: what was fsynced, or durable when the writer started, survived.
        if rep.open_seq != Some(durable_before) {
            return Err(format!(
                "the writer opened at {:?}, but the last check closed the file at {durable_before}",
                rep.open_seq
            ));
        }
        if next < rep.last_synced.max(durable_before) {
            return Err(format!(
                "next_seq {next} after recovery, but the writer had synced through {} \
                 (and {durable_before} was durable when it started)",
                rep.last_synced
            ));
        }
        // The policy's bound on lost acknowledged events.
        if let Some(acked) = rep.last_acked
            && next <= acked
        {
            let lost = acked + 1 - next;
            match policy {
                FsyncPolicy::EveryN(n) if lost > n.max(1) - 1 => {
                    return Err(format!(
                        "EveryN({n}) lost {lost} acknowledged events \
                         (acked through {acked}, recovered next_seq {next})"
                    ));
                }
                FsyncPolicy::IntervalOrBytes { max_bytes, .. } => {
                    let bytes: u64 = (next..=acked).map(|s| payload_len(s) as u64).sum();
                    if bytes >= max_bytes {
                        return Err(format!(
                            "IntervalOrBytes(max_bytes {max_bytes}) lost {lost} acknowledged \
                             events with {bytes} payload bytes (acked through {acked}, \
                             recovered next_seq {next})"
                        ));
                    }
                }
                _ => {}
            }
        }

        // Integrity: every event is there, in order, with exactly its payload.
        let events = file
            .read_range(0, next)
            .map_err(|e| format!("read_range(0, {next}): {e}"))?;
        if events.len() as u64 != next {
            return Err(format!(
                "read_range(0, {next}) returned {} events",
                events.len()
            ));
        }
        for (i, e) in events.iter().enumerate() {
            let seq = i as u64;
            if e.seq != seq {
                return Err(format!("event {i} carries seq {}", e.seq));
            }
            if e.payload[..] != payload(seq)[..] {
                return Err(format!(
                    "event {seq}: payload of {} bytes differs from the expected {} bytes",
                    e.payload.len(),
                    payload_len(seq)
                ));
            }
        }
        Ok(Checked {
            next_seq: next,
            truncated_records: report.truncated_records,
            truncated_bytes: report.truncated_bytes,
            segments: report.segments,
        })
    })();
    let closed = file.close().and_then(|()| redex.close());
    drop(file);
    drop(redex);
    let checked = result?;
    closed.map_err(|e| format!("close: {e}"))?;
    check_unlocked(dir)?;
    Ok(checked)
}

/// Checks that `dir` can be locked again at once: every handle was dropped after
/// `close()`, so nothing may still hold the directory.
fn check_unlocked(dir: &Path) -> Result<(), String> {
    Redex::with_persistent_dir(dir)
        .map(drop)
        .map_err(|e| format!("the directory is not released after close() and drop: {e}"))
}

/// A small runtime with a timer, for files with an interval fsync policy.
fn timer_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("tokio runtime")
}

fn crash_loop(name: &str, sc: Scenario) {
    let iters = env_u64("NETDB_CRASH_ITERS").unwrap_or(DEFAULT_ITERS);
    let seed = env_u64("NETDB_CRASH_SEED").unwrap_or_else(|| XorShift::from_entropy().next_u64());
    eprintln!(
        "{name}: policy {}, {iters} iterations, NETDB_CRASH_SEED={seed}",
        format_policy(sc.policy)
    );
    let mut rng = XorShift::new(seed);
    // Interval policies need a tokio runtime to open the file in this process too.
    let runtime = timer_runtime();
    let _enter = runtime.enter();

    let base = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let (mut truncations, mut truncated_records, mut truncated_bytes) = (0u64, 0u64, 0u64);
    let (mut events_checked, mut max_segments, mut lost_acked) = (0u64, 0usize, 0u64);
    let mut failures: Vec<String> = Vec::new();
    let mut dir = base.path().join("run-0");
    let mut dir_iters = 0u64;
    let mut durable = 0u64;
    let mut done = 0u64;
    for iter in 0..iters {
        if dir_iters == ITERS_PER_DIR {
            std::fs::remove_dir_all(&dir).expect("remove the previous run's directory");
            dir = base.path().join(format!("run-{iter}"));
            dir_iters = 0;
            durable = 0;
        }
        dir_iters += 1;
        done += 1;
        let lines = rng.range(1..=sc.max_lines);
        let sync_every = rng.range(sc.sync_every.0..=sc.sync_every.1);
        let spin = Duration::from_micros(rng.range(0..=3) * rng.range(0..=50));
        let context = format!(
            "{name}, iteration {iter} (NETDB_CRASH_SEED={seed}): policy {}, sync every {sync_every}, \
             killed after {lines} lines + {spin:?}, dir {}",
            format_policy(sc.policy),
            dir.display()
        );
        let outcome = run_and_kill(&dir, sc.policy, sync_every, lines, spin).and_then(|rep| {
            match check_recovered(&dir, sc.policy, &rep, durable) {
                Ok(checked) => Ok((rep, checked)),
                Err(e) => Err(format!("writer reported {rep:?}: {e}")),
            }
        });
        let (rep, checked) = match outcome {
            Ok(ok) => ok,
            Err(e) => {
                // Keep the damaged directory for inspection and go on in a fresh one.
                let kept = base.path().join(format!("failed-{iter}"));
                let _ = std::fs::rename(&dir, &kept);
                eprintln!("{context}: {e}");
                failures.push(format!("{context} (kept as {}): {e}", kept.display()));
                dir_iters = ITERS_PER_DIR;
                if failures.len() >= 5 {
                    break;
                }
                continue;
            }
        };
        if checked.truncated_records > 0 || checked.truncated_bytes > 0 {
            truncations += 1;
        }
        truncated_records += checked.truncated_records;
        truncated_bytes += checked.truncated_bytes;
        events_checked += checked.next_seq;
        max_segments = max_segments.max(checked.segments);
        if let Some(acked) = rep.last_acked {
            lost_acked += (acked + 1).saturating_sub(checked.next_seq);
        }
        durable = checked.next_seq;
    }
    eprintln!(
        "{name}: {done} kills in {:.1?}, {} failed; {events_checked} events verified, up to \
         {max_segments} segments; {truncations} recoveries cut a torn tail ({truncated_records} \
         records, {truncated_bytes} bytes); {lost_acked} acknowledged but unsynced events lost",
        start.elapsed(),
        failures.len()
    );
    if !failures.is_empty() {
        let kept = base.keep();
        panic!(
            "{} of {done} crash iterations failed (directories kept under {}):\n{}",
            failures.len(),
            kept.display(),
            failures.join("\n")
        );
    }
}

#[test]
fn crash_never_with_explicit_sync() {
    crash_loop(
        "never",
        Scenario {
            policy: FsyncPolicy::Never,
            max_lines: 399,
            sync_every: (1, 40),
        },
    );
}

#[test]
fn crash_every_1() {
    // Every append fsyncs (milliseconds each on a real disk): at most 120 lines per run.
    crash_loop(
        "every_1",
        Scenario {
            policy: FsyncPolicy::EveryN(1),
            max_lines: 120,
            sync_every: (0, 0),
        },
    );
}

#[test]
fn crash_every_16() {
    crash_loop(
        "every_16",
        Scenario {
            policy: FsyncPolicy::EveryN(16),
            max_lines: 399,
            sync_every: (0, 0),
        },
    );
}

#[test]
fn crash_interval() {
    crash_loop(
        "interval_5ms",
        Scenario {
            policy: FsyncPolicy::Interval(Duration::from_millis(5)),
            max_lines: 399,
            sync_every: (0, 0),
        },
    );
}

#[test]
fn crash_interval_or_bytes() {
    crash_loop(
        "interval_or_bytes",
        Scenario {
            policy: FsyncPolicy::IntervalOrBytes {
                period: Duration::from_millis(5),
                max_bytes: 8 * 1024,
            },
            max_lines: 399,
            sync_every: (0, 0),
        },
    );
}

/// Reads one line of a writer's report.
fn first_line(child: &mut Child) -> String {
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read the writer's stdout");
    if line.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the writer ended early: {}", child_stderr(child));
    }
    // Keep the pipe open (the writer blocks on it once full, which is fine).
    child.stdout = Some(out.into_inner());
    line
}

#[test]
fn locked_dir_is_refused_across_processes() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("locked");
    let cfg = crash_config(FsyncPolicy::Never);

    let mut child = spawn_writer(&dir, FsyncPolicy::Never, 0);
    let line = first_line(&mut child);
    assert_eq!(line, "open 0\n");

    let err =
        Redex::with_persistent_dir(&dir).expect_err("opened a directory another process holds");
    let RedexError::Locked { dir: locked } = &err else {
        panic!("expected RedexError::Locked, got {err:?}");
    };
    assert_eq!(locked, &dir);
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.display().to_string()),
        "the message does not name the directory: {msg}"
    );

    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(SIGKILL), "{status}");

    // The kill released the lock.
    let guard = no_spawns();
    let redex = Redex::with_persistent_dir(&dir).expect("the lock is released by the kill");
    let file = redex
        .open_file(&crash_channel(), cfg.clone())
        .expect("recover");
    let next = file.next_seq();
    let events = file.read_range(0, next).expect("read");
    assert_eq!(events.len() as u64, next);
    for e in &events {
        assert_eq!(e.payload[..], payload(e.seq)[..]);
    }

    // And while this process holds it, a writer process is refused.
    let mut refused = spawn_writer_unguarded(&dir, FsyncPolicy::Never, 0);
    let status = refused.wait().expect("wait");
    let err = child_stderr(&mut refused);
    assert_eq!(status.code(), Some(1), "{status}; stderr: {err}");
    assert!(
        err.contains("locked") && err.contains(&dir.display().to_string()),
        "{err}"
    );

    file.close().expect("close");
    redex.close().expect("close");
    drop(file);
    drop(redex);
    let reopened = Redex::with_persistent_dir(&dir).expect("released by close + drop");
    drop(reopened);
    drop(guard);
}

/// The state a SIGKILL leaves when it lands while a segment roll creates the new segment's
/// files: `<next>.idx` exists (it is created first), `<next>.dat` and `<next>.ts` do not.
/// (Since then the index is created last, but a directory written by an older build, or a
/// file system that reorders creations, can still show this.) Every event is in the
/// previous segment. Recovery must treat the half-created segment as torn, not refuse to
/// open the directory (`Corrupt { reason: "the segment file is missing" }`, as it once did).
#[test]
fn kill_during_segment_roll_is_recoverable() {
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("rolled");
    let cfg = crash_config(FsyncPolicy::Never);
    for missing in [&["dat", "ts"][..], &["ts"][..]] {
        let _ = std::fs::remove_dir_all(&dir);
        let redex = Redex::with_persistent_dir(&dir).expect("open");
        let file = redex
            .open_file(&crash_channel(), cfg.clone())
            .expect("open");
        for seq in 0..10 {
            file.append(&payload(seq)).expect("append");
        }
        file.close().expect("close");
        let chan_dir = file.dir().expect("persistent");
        drop(file);
        drop(redex);

        // What the roll to a segment starting at seq 10 had created when it was killed.
        for ext in ["idx", "dat", "ts"] {
            if !missing.contains(&ext) {
                std::fs::File::create(chan_dir.join(format!("{:020}.{ext}", 10))).expect("create");
            }
        }

        let redex = Redex::with_persistent_dir(&dir).expect("open");
        let file = redex
            .open_file(&crash_channel(), cfg.clone())
            .unwrap_or_else(|e| panic!("recovery with {missing:?} missing failed: {e}"));
        assert_eq!(file.next_seq(), 10);
        let events = file.read_range(0, 10).expect("read");
        assert!(events.iter().all(|e| e.payload[..] == payload(e.seq)[..]));
        file.append(&payload(10)).expect("append after recovery");
        file.close().expect("close");
    }
}

/// After `close()` returns and every handle is dropped, the directory is free again, even
/// with an interval fsync policy whose background task may still hold the file for a moment
/// (it once kept the `DirLock` alive that way, and a reopen right after failed with
/// `Locked`).
#[test]
fn lock_is_released_when_close_returns() {
    let runtime = timer_runtime();
    let _enter = runtime.enter();
    let base = tempfile::tempdir().expect("tempdir");
    let dir = base.path().join("interval");
    let cfg = crash_config(FsyncPolicy::Interval(Duration::from_millis(1)));
    let mut rng = XorShift::new(7);
    let _guard = no_spawns();
    for i in 0..200 {
        let redex = Redex::with_persistent_dir(&dir)
            .unwrap_or_else(|e| panic!("iteration {i}: reopen right after close + drop: {e}"));
        let file = redex
            .open_file(&crash_channel(), cfg.clone())
            .expect("open");
        file.append(&payload(file.next_seq())).expect("append");
        // Let the 1 ms fsync task come due (or not) before the close.
        std::thread::sleep(Duration::from_micros(rng.range(0..=2000)));
        file.close().expect("close");
        redex.close().expect("close");
        drop(file);
        drop(redex);
    }
}
