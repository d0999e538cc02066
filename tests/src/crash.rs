//! The CortEX crash harness, for any model: the writer process's loop
//! ([`writer_main`]) and the test's kill-and-check loop ([`crash_loop`]).
//!
//! A model takes part by implementing [`CrashModel`]: the deterministic event stream its
//! writer appends (the event at seq `s` of a run with seed `seed` is
//! [`CrashModel::event`]`(seed, s)`, so the test recomputes every event without the writer
//! telling it), the write that appends one of them (the model's typed write), and a plain
//! `BTreeMap` fold of the events the check compares the adapter's state with. The ledger
//! model ([`crate::cortex_model`]) and the seed's tasks model ([`crate::tasks_model`])
//! implement it.
//!
//! # The writer
//!
//! ```text
//! <writer> <redex dir> <snapshot file> <event seed> <rng seed> <fsync policy>
//!          <sync-every K> <snapshot-every S>
//! ```
//!
//! Opens a [`Redex`] on `<redex dir>` and the model's adapter over it, its file opened with
//! [`crate::crash_config`] and the given fsync policy (`never`, `every:N`, `interval:MS`,
//! `bytes:MS:MAXBYTES`). If `<snapshot file>` exists, the adapter is restored from it
//! (`open_from_snapshot`), otherwise it replays the log. It then appends forever from the
//! log's `next_seq()`, mixing single writes ([`CrashModel::write`]) with `append_batch` of
//! 2 to 5 events (chosen by `<rng seed>`). After every `K` appends it calls `log().sync()`
//! (`K = 0`: never). After every `S` appends (`S = 0`: never) it takes a snapshot
//! (sometimes after waiting for the fold to catch up, sometimes of whatever it folded so
//! far), syncs the log, so the snapshot never covers an event that is not durable, and
//! writes the snapshot to `<snapshot file>.tmp`, then renames it over `<snapshot file>`.
//!
//! Its stdout is a line protocol, each line written (and flushed) after the operation it
//! reports has returned:
//!
//! * `open <next_seq>`: the adapter is open (and the directory locked);
//! * `acked <seq>`: an append returned; `<seq>` is the last seq it appended;
//! * `synced <next_seq>`: `sync()` returned; every seq below `<next_seq>` is durable;
//! * `snapshot <last_seq>|none`: a snapshot folded through `<last_seq>` was renamed into
//!   place.
//!
//! Any error is printed to stderr and ends the process with status 1.
//!
//! # The check
//!
//! [`crash_loop`] runs: spawn the writer on a directory, read a random number of lines of
//! its report (reading them is the only synchronisation), SIGKILL it, then open the
//! directory in this process and check it. One kill in 16 comes before the `open` line,
//! 0 to 20 ms after the spawn, while the writer recovers, replays or restores. The checks:
//!
//! * every event the recovered log holds is exactly the event the writer derived for its
//!   seq (the log is a prefix of what was written, seqs contiguous from 0, with no torn or
//!   foreign record);
//! * that prefix includes everything the writer reported as synced, and everything that
//!   was durable when it started (the previous check closed the log, which fsyncs); the
//!   bounds on acknowledged events lost held: under every policy less than the staging
//!   buffer ([`STAGING_BYTES`]: a process crash loses only what is staged), under
//!   `EveryN(n)` at most `n - 1` events, under `IntervalOrBytes` less than `max_bytes` of
//!   payload;
//! * replaying the log folds, with no fold error, to exactly the state the reference fold
//!   reaches applying the same events with the timestamps the log recorded (and
//!   [`CrashModel::check_table`] holds: the model's indexes agree with its rows);
//! * if a snapshot file exists: it is at least as new as the last one reported, never ahead
//!   of the recovered log, its rows are the reference fold through its seq, and restoring
//!   it (`open_from_snapshot`) then folding the rest gives the same state as the replay,
//!   down to identical snapshot bytes.
//!
//! The writer keeps appending to the same directory across iterations (restoring from its
//! last snapshot when there is one), so recovery runs on a growing, multi-segment log; a
//! fresh directory is started every [`ITERS_PER_DIR`] iterations.
//!
//! A failed iteration does not stop the loop: its directory is kept (renamed
//! `failed-<iteration>` under a temporary directory that is then not deleted) and the loop
//! goes on in a fresh one. The loop panics at the end if anything failed (or after 5
//! failures).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use netdb_runtime::cortex::{
    CortexAdapter, CortexConfig, CortexError, CortexEvent, CortexModel, EventMeta, FoldErrors,
    RestoreOutcome, Table, snapshot,
};
use netdb_runtime::redex::{FsyncPolicy, Redex, RedexFileConfig};

use crate::{XorShift, crash_config, env_u64, format_policy, no_spawns, parse_policy};

/// The origin hash the writer stamps on its events.
pub const WRITER_ORIGIN: u64 = 0xC0DE_0001;
/// Iterations that append to one directory before a fresh one is started.
pub const ITERS_PER_DIR: u64 = 10;
/// A bound on waiting for a fold in the checks: a hang is reported, not waited out.
const FOLD_TIMEOUT: Duration = Duration::from_secs(60);

/// A model the crash harness can drive: its event stream, its write, its reference fold.
pub trait CrashModel: CortexModel<Event: PartialEq + Clone> {
    /// The event at `seq` of the stream with `seed`: a pure function of both.
    fn event(seed: u64, seq: u64) -> Self::Event;

    /// Appends one event the way an application would (the model's typed write); returns
    /// its seq. The default is the untyped [`CortexAdapter::append`].
    fn write(adapter: &CortexAdapter<Self>, event: &Self::Event) -> Result<u64, CortexError> {
        adapter.append(event)
    }

    /// Applies `event`, stored by the log at `timestamp_ns`, to a plain map of rows: the
    /// reference the fold is checked against.
    fn reference_apply(
        state: &mut BTreeMap<Self::Id, Self>,
        event: &Self::Event,
        timestamp_ns: u64,
    );

    /// Checks what a plain map cannot: that the table's secondary indexes agree with its
    /// rows. The default checks nothing.
    fn check_table(table: &Table<Self>) -> Result<(), String> {
        let _ = table;
        Ok(())
    }
}

/// The staging buffer's size: an append that fills it to this many bytes hands it to the
/// operating system, so a process crash loses less than this, whatever the fsync policy
/// (see the book's durability chapter).
pub const STAGING_BYTES: u64 = 256 << 10;

/// The bytes a RedEX event of `payload_len` bytes takes in the staging buffer: a 20-byte
/// index record, an 8-byte timestamp, and the payload unless it fits inline (8 bytes).
pub fn staged_len(payload_len: u64) -> u64 {
    28 + if payload_len > 8 { payload_len } else { 0 }
}

/// The stored size of `event`: the [`EventMeta`] header and the body.
pub fn stored_len<M: CortexModel>(event: &M::Event) -> u64 {
    let mut body = Vec::new();
    event.encode_body(&mut body).expect("the event encodes");
    (EventMeta::LEN + body.len()) as u64
}

// ---------------------------------------------------------------------------------------
// The writer process

/// The writer process's `main`: parses the arguments, runs until killed (or an error, which
/// goes to stderr with status 1). `bin` names the program in messages.
pub fn writer_main<M: CrashModel>(bin: &str) -> ExitCode {
    match run_writer::<M>(bin) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{bin}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn num(name: &str, s: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("bad {name} {s:?}: {e}"))
}

fn run_writer<M: CrashModel>(bin: &str) -> Result<(), Box<dyn std::error::Error>> {
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
        return Err(format!(
            "usage: {bin} <redex dir> <snapshot file> <event seed> <rng seed> \
             <never|every:N|interval:MS|bytes:MS:MAXBYTES> <sync-every K> <snapshot-every S>"
        )
        .into());
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
            CortexAdapter::<M>::open_from_snapshot_with_config(
                &redex,
                WRITER_ORIGIN,
                &bytes,
                info.last_seq,
                config,
            )?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            CortexAdapter::<M>::open_with_config(&redex, WRITER_ORIGIN, config)?
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
        let events: Vec<M::Event> = (next..next + n).map(|s| M::event(seed, s)).collect();
        let range = if n == 1 {
            let seq = M::write(&adapter, &events[0])?;
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

// ---------------------------------------------------------------------------------------
// The test side

/// How one policy is exercised.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// The writer's fsync policy.
    pub policy: FsyncPolicy,
    /// The kill comes after reading 1..=`max_lines` report lines.
    pub max_lines: u64,
    /// The writer calls `sync()` every K appends, K drawn from this range (0: never).
    pub sync_every: (u64, u64),
    /// Whether the writer takes snapshots (in 3 runs out of 4, every 5 to 60 appends; each
    /// also syncs the log).
    pub snapshots: bool,
}

/// One directory's paths and seed.
#[derive(Debug, Clone)]
struct Run {
    redex_dir: PathBuf,
    snapshot: PathBuf,
    /// The seed of the event stream.
    seed: u64,
}

impl Run {
    fn new(base: &Path, name: &str, seed: u64) -> Run {
        let root = base.join(name);
        std::fs::create_dir_all(&root).expect("create the run's directory");
        Run {
            redex_dir: root.join("redex"),
            snapshot: root.join("model.snap"),
            seed,
        }
    }

    fn root(&self) -> &Path {
        self.redex_dir.parent().expect("the redex dir has a parent")
    }
}

/// The writer's arguments beyond the run.
#[derive(Debug, Clone, Copy)]
struct WriterArgs {
    policy: FsyncPolicy,
    rng_seed: u64,
    sync_every: u64,
    snapshot_every: u64,
}

fn spawn_writer(writer: &str, run: &Run, args: WriterArgs) -> Child {
    let _guard = no_spawns();
    Command::new(writer)
        .arg(&run.redex_dir)
        .arg(&run.snapshot)
        .arg(run.seed.to_string())
        .arg(args.rng_seed.to_string())
        .arg(format_policy(args.policy))
        .arg(args.sync_every.to_string())
        .arg(args.snapshot_every.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {writer}: {e}"))
}

/// What the writer reported before it was killed.
#[derive(Debug, Default)]
struct Reported {
    open_seq: Option<u64>,
    last_acked: Option<u64>,
    last_synced: u64,
    /// The last snapshot reported: `Some(last_seq)` (`Some(None)`: a snapshot of nothing).
    last_snapshot: Option<Option<u64>>,
    lines: u64,
}

fn parse_line(line: &str, rep: &mut Reported) -> Result<(), String> {
    let (word, arg) = line
        .trim_end()
        .split_once(' ')
        .ok_or_else(|| format!("malformed writer line {line:?}"))?;
    let num = || {
        arg.parse::<u64>()
            .map_err(|e| format!("malformed writer line {line:?}: {e}"))
    };
    match word {
        "open" => rep.open_seq = Some(num()?),
        "acked" => {
            let n = num()?;
            if let Some(prev) = rep.last_acked
                && n <= prev
            {
                return Err(format!("acked {n} after acked {prev}"));
            }
            rep.last_acked = Some(n);
        }
        "synced" => {
            let n = num()?;
            if n < rep.last_synced {
                return Err(format!("synced {n} after synced {}", rep.last_synced));
            }
            rep.last_synced = n;
        }
        "snapshot" => {
            let s = if arg == "none" { None } else { Some(num()?) };
            if let Some(prev) = rep.last_snapshot
                && s < prev
            {
                return Err(format!("snapshot {s:?} after snapshot {prev:?}"));
            }
            rep.last_snapshot = Some(s);
        }
        _ => return Err(format!("unknown writer line {line:?}")),
    }
    rep.lines += 1;
    Ok(())
}

/// Spawns the writer, reads `lines` report lines, spins `spin` (jitter, so the kill does
/// not always land at the same step of the writer's loop), SIGKILLs it and reaps it.
fn run_and_kill(
    writer: &str,
    run: &Run,
    args: WriterArgs,
    lines: u64,
    spin: Duration,
) -> Result<Reported, String> {
    let mut child = spawn_writer(writer, run, args);
    let mut rep = Reported::default();
    crate::read_then_kill(&mut child, lines, spin, |line| parse_line(line, &mut rep))?;
    Ok(rep)
}

/// What checking one recovered directory found.
#[derive(Debug)]
struct Checked {
    next_seq: u64,
    /// The staged bytes of the acknowledged events the kill lost.
    lost_staged: u64,
    rows: usize,
    /// The snapshot restored, if there was one: its last seq.
    restored: Option<Option<u64>>,
}

/// The model state as a plain map.
pub fn state_of<M: CortexModel>(adapter: &CortexAdapter<M>) -> BTreeMap<M::Id, M> {
    adapter
        .state()
        .read()
        .iter()
        .map(|r| (r.id().clone(), r.clone()))
        .collect()
}

/// Describes how two states differ (the first few differing ids).
pub fn diff<K: Ord + Debug, V: PartialEq + Debug>(
    got: &BTreeMap<K, V>,
    want: &BTreeMap<K, V>,
) -> String {
    let ids: std::collections::BTreeSet<&K> = got.keys().chain(want.keys()).collect();
    let diffs: Vec<String> = ids
        .into_iter()
        .filter(|id| got.get(id) != want.get(id))
        .take(5)
        .map(|id| format!("id {id:?}: got {:?}, want {:?}", got.get(id), want.get(id)))
        .collect();
    format!(
        "{} rows vs {} expected; {}",
        got.len(),
        want.len(),
        diffs.join("; ")
    )
}

/// Waits until `adapter` folded everything below `next`, checks it has no fold error and
/// that its table is consistent.
fn settle<M: CrashModel>(
    rt: &tokio::runtime::Runtime,
    adapter: &CortexAdapter<M>,
    next: u64,
    what: &str,
) -> Result<(), String> {
    if let Some(last) = next.checked_sub(1) {
        rt.block_on(adapter.wait_for_seq_timeout(last, FOLD_TIMEOUT))
            .map_err(|e| format!("{what}: wait_for_seq({last}): {e}"))?;
    }
    if adapter.folded_through_seq() != next.checked_sub(1) {
        return Err(format!(
            "{what}: folded through {:?} with a log of next_seq {next}",
            adapter.folded_through_seq()
        ));
    }
    let errors = adapter.fold_errors();
    if errors != FoldErrors::default() {
        return Err(format!("{what}: fold errors {errors:?}"));
    }
    M::check_table(&adapter.state().read()).map_err(|e| format!("{what}: {e}"))
}

/// The event at each seq of the recovered log and the timestamp the log recorded for it.
type Recovered<M> = Vec<(<M as CortexModel>::Event, u64)>;

/// The reference fold of `events`.
fn reference<M: CrashModel>(events: &[(M::Event, u64)]) -> BTreeMap<M::Id, M> {
    let mut state = BTreeMap::new();
    for (e, ts) in events {
        M::reference_apply(&mut state, e, *ts);
    }
    state
}

/// Opens `run` in this process, checks it against what the writer reported, and closes it
/// (releasing the directory lock).
fn check_recovered<M: CrashModel>(
    rt: &tokio::runtime::Runtime,
    run: &Run,
    policy: FsyncPolicy,
    rep: &Reported,
    durable_before: u64,
) -> Result<Checked, String> {
    let _guard = no_spawns();
    let redex = Redex::with_persistent_dir(&run.redex_dir).map_err(|e| format!("reopen: {e}"))?;
    let config = CortexConfig::default().with_file_config(crash_config(policy));
    let replayed =
        CortexAdapter::<M>::open_with_config(&redex, 1, config.clone()).map_err(|e| {
            let _ = redex.close();
            format!("open (replay) failed: {e}")
        })?;
    let mut restored_adapter = None;
    let result = (|| {
        let log = replayed.log();
        let next = log.next_seq();
        if log.first_seq() != 0 {
            return Err(format!("first_seq {} after recovery", log.first_seq()));
        }

        // Durability: what was synced, or durable when the writer started, survived.
        let mut lost_staged = 0;
        if rep.open_seq.is_some_and(|open| open != durable_before) {
            return Err(format!(
                "the writer opened at {:?}, but the last check closed the log at {durable_before}",
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
        if let Some(acked) = rep.last_acked
            && next <= acked
        {
            let lost = next..acked + 1;
            // Whatever the policy, a process crash loses only what was still staged.
            let staged: u64 = lost
                .clone()
                .map(|s| staged_len(stored_len::<M>(&M::event(run.seed, s))))
                .sum();
            lost_staged = staged;
            if staged >= STAGING_BYTES {
                return Err(format!(
                    "the kill lost {staged} staged bytes of acknowledged events ({lost:?}); \
                     the staging buffer is flushed at {STAGING_BYTES}"
                ));
            }
            match policy {
                FsyncPolicy::EveryN(n) if lost.end - lost.start > n.max(1) - 1 => {
                    return Err(format!(
                        "EveryN({n}) lost {} acknowledged events (acked through {acked}, \
                         recovered next_seq {next})",
                        lost.end - lost.start
                    ));
                }
                FsyncPolicy::IntervalOrBytes { max_bytes, .. } => {
                    let bytes: u64 = lost
                        .clone()
                        .map(|s| stored_len::<M>(&M::event(run.seed, s)))
                        .sum();
                    if bytes >= max_bytes {
                        return Err(format!(
                            "IntervalOrBytes(max_bytes {max_bytes}) lost {bytes} bytes of \
                             acknowledged events ({lost:?})"
                        ));
                    }
                }
                _ => {}
            }
        }

        // The log is a prefix of the writer's stream: every event decodes to exactly the
        // event of its seq.
        let raw = log
            .read_range(0, next)
            .map_err(|e| format!("read_range(0, {next}): {e}"))?;
        if raw.len() as u64 != next {
            return Err(format!(
                "read_range(0, {next}) returned {} events",
                raw.len()
            ));
        }
        let mut events: Recovered<M> = Vec::with_capacity(raw.len());
        for (i, e) in raw.iter().enumerate() {
            let seq = i as u64;
            if e.seq != seq {
                return Err(format!("event {i} carries seq {}", e.seq));
            }
            let (meta, body) =
                EventMeta::decode(&e.payload).map_err(|err| format!("event {seq}: {err}"))?;
            if meta.origin_hash != WRITER_ORIGIN {
                return Err(format!(
                    "event {seq}: origin {:#x}, expected the writer's",
                    meta.origin_hash
                ));
            }
            let ev = M::Event::decode_body(meta.dispatch, meta.schema_version, body)
                .map_err(|err| format!("event {seq}: {err}"))?;
            let want = M::event(run.seed, seq);
            if ev != want {
                return Err(format!(
                    "event {seq} is {ev:?}, the writer appended {want:?}"
                ));
            }
            events.push((ev, e.timestamp_ns));
        }
        drop(raw);

        // Replay folds to the reference state, without error.
        settle(rt, &replayed, next, "replay")?;
        let replay_state = state_of(&replayed);
        let want = reference::<M>(&events);
        if replay_state != want {
            return Err(format!(
                "replayed state differs from the reference fold of 0..{next}: {}",
                diff(&replay_state, &want)
            ));
        }

        // The snapshot, if any, restores to the same state.
        let restored = match std::fs::read(&run.snapshot) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(s) = rep.last_snapshot {
                    return Err(format!(
                        "the writer reported snapshot {s:?}, no file exists"
                    ));
                }
                None
            }
            Err(e) => return Err(format!("read {}: {e}", run.snapshot.display())),
            Ok(bytes) => {
                let info = snapshot::inspect(&bytes)
                    .map_err(|e| format!("the snapshot file does not verify: {e}"))?;
                if let Some(reported) = rep.last_snapshot
                    && info.last_seq < reported
                {
                    return Err(format!(
                        "the snapshot file is through {:?}, the writer reported one through \
                         {reported:?}",
                        info.last_seq
                    ));
                }
                if info.last_seq.is_some_and(|s| s >= next) {
                    return Err(format!(
                        "the snapshot is through {:?}, ahead of the recovered log (next_seq \
                         {next}): it was written after a sync covering it",
                        info.last_seq
                    ));
                }
                let adapter = CortexAdapter::<M>::open_from_snapshot_with_config(
                    &redex,
                    2,
                    &bytes,
                    info.last_seq,
                    config.clone(),
                )
                .map_err(|e| format!("open_from_snapshot ({info:?}): {e}"))?;
                let restored_adapter = restored_adapter.insert(adapter);
                match restored_adapter.restore_outcome() {
                    RestoreOutcome::Snapshot(i) if *i == info => {}
                    other => return Err(format!("restore outcome {other:?}, expected {info:?}")),
                }
                let through = info.last_seq.map_or(0, |s| s as usize + 1);
                let snap_state = snapshot_rows::<M>(info.last_seq, &bytes)
                    .map_err(|e| format!("snapshot rows: {e}"))?;
                let want = reference::<M>(&events[..through]);
                if snap_state != want {
                    return Err(format!(
                        "the snapshot's rows differ from the reference fold through {:?}: {}",
                        info.last_seq,
                        diff(&snap_state, &want)
                    ));
                }
                settle(rt, restored_adapter, next, "restore")?;
                let restored_state = state_of(restored_adapter);
                if restored_state != replay_state {
                    return Err(format!(
                        "restored from the snapshot through {:?}, the state differs from the \
                         replay: {}",
                        info.last_seq,
                        diff(&restored_state, &replay_state)
                    ));
                }
                let a = replayed.snapshot().map_err(|e| format!("snapshot: {e}"))?;
                let b = restored_adapter
                    .snapshot()
                    .map_err(|e| format!("snapshot: {e}"))?;
                if a != b {
                    return Err(format!(
                        "replay and restore snapshot differently ({} bytes through {:?} vs {} \
                         bytes through {:?})",
                        a.0.len(),
                        a.1,
                        b.0.len(),
                        b.1
                    ));
                }
                Some(info.last_seq)
            }
        };
        Ok(Checked {
            next_seq: next,
            lost_staged,
            rows: replay_state.len(),
            restored,
        })
    })();
    let mut closed = replayed.close();
    if let Some(a) = restored_adapter {
        closed = closed.and(a.close());
    }
    let closed = closed
        .map_err(|e| e.to_string())
        .and_then(|()| redex.close().map_err(|e| e.to_string()));
    drop(replayed);
    drop(redex);
    let checked = result?;
    closed.map_err(|e| format!("close: {e}"))?;
    Redex::with_persistent_dir(&run.redex_dir)
        .map(drop)
        .map_err(|e| format!("the directory is not released after close() and drop: {e}"))?;
    Ok(checked)
}

/// The rows of a snapshot, as a map. The runtime has no public row decoder, so this
/// restores `bytes` over an in-memory log of `last_seq + 1` filler events (never read: the
/// restored fold starts after them) and reads the state before anything is appended.
fn snapshot_rows<M: CrashModel>(
    last_seq: Option<u64>,
    bytes: &[u8],
) -> Result<BTreeMap<M::Id, M>, String> {
    let redex = Redex::new();
    let channel = M::CHANNEL.parse().expect("a valid channel name");
    let file = redex
        .open_file(&channel, RedexFileConfig::default())
        .map_err(|e| e.to_string())?;
    let filler: Vec<&[u8]> = vec![&[0u8][..]; last_seq.map_or(0, |s| s as usize + 1)];
    if !filler.is_empty() {
        file.append_batch(&filler).map_err(|e| e.to_string())?;
    }
    let adapter = CortexAdapter::<M>::open_from_snapshot(&redex, 3, bytes, last_seq)
        .map_err(|e| e.to_string())?;
    let state = state_of(&adapter);
    M::check_table(&adapter.state().read())?;
    adapter.close().map_err(|e| e.to_string())?;
    Ok(state)
}

/// Runs the crash loop for model `M`: `writer` is the writer binary's path, `name` labels
/// the output, `default_iters` is the iterations when `NETDB_CRASH_ITERS` is not set.
/// `NETDB_CRASH_SEED` sets the random seed (default: from the clock; printed, so a failure
/// can be replayed).
pub fn crash_loop<M: CrashModel>(writer: &str, name: &str, sc: Scenario, default_iters: u64) {
    let iters = env_u64("NETDB_CRASH_ITERS").unwrap_or(default_iters);
    let seed = env_u64("NETDB_CRASH_SEED").unwrap_or_else(|| XorShift::from_entropy().next_u64());
    eprintln!(
        "{name}: policy {}, {iters} iterations, NETDB_CRASH_SEED={seed}",
        format_policy(sc.policy)
    );
    let mut rng = XorShift::new(seed);
    // The adapters of the checks run their folds (and interval fsync tasks) here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let _enter = rt.enter();

    let base = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let (mut events_checked, mut max_next, mut max_rows) = (0u64, 0u64, 0usize);
    let (mut restores, mut restored_events, mut lost_acked) = (0u64, 0u64, 0u64);
    let (mut early_kills, mut max_lost_staged) = (0u64, 0u64);
    let mut failures: Vec<String> = Vec::new();
    let mut run = Run::new(base.path(), "run-0", rng.next_u64());
    let mut dir_iters = 0u64;
    let mut durable = 0u64;
    let mut done = 0u64;
    for iter in 0..iters {
        if dir_iters == ITERS_PER_DIR {
            let _ = std::fs::remove_dir_all(run.root());
            run = Run::new(base.path(), &format!("run-{iter}"), rng.next_u64());
            dir_iters = 0;
            durable = 0;
        }
        dir_iters += 1;
        done += 1;
        // One kill in 16 lands while the writer starts: before it reports `open`, during
        // exec, recovery, replay or snapshot restore.
        let early = rng.range(0..=15) == 0;
        let (lines, spin) = if early {
            (0, Duration::from_micros(rng.range(0..=20_000)))
        } else {
            (
                rng.range(1..=sc.max_lines),
                Duration::from_micros(rng.range(0..=3) * rng.range(0..=50)),
            )
        };
        let args = WriterArgs {
            policy: sc.policy,
            rng_seed: rng.next_u64(),
            sync_every: rng.range(sc.sync_every.0..=sc.sync_every.1),
            snapshot_every: if !sc.snapshots || rng.range(0..=3) == 0 {
                0
            } else {
                rng.range(5..=60)
            },
        };
        let context = format!(
            "{name}, iteration {iter} (NETDB_CRASH_SEED={seed}): {args:?}, event seed {}, \
             killed after {lines} lines + {spin:?}, dir {}",
            run.seed,
            run.root().display()
        );
        let outcome = run_and_kill(writer, &run, args, lines, spin).and_then(|rep| {
            match check_recovered::<M>(&rt, &run, sc.policy, &rep, durable) {
                Ok(checked) => Ok((rep, checked)),
                Err(e) => Err(format!("writer reported {rep:?}: {e}")),
            }
        });
        let (rep, checked) = match outcome {
            Ok(ok) => ok,
            Err(e) => {
                // Keep the damaged directory for inspection and go on in a fresh one.
                let kept = base.path().join(format!("failed-{iter}"));
                let _ = std::fs::rename(run.root(), &kept);
                eprintln!("{context}: {e}");
                failures.push(format!("{context} (kept as {}): {e}", kept.display()));
                dir_iters = ITERS_PER_DIR;
                if failures.len() >= 5 {
                    break;
                }
                continue;
            }
        };
        events_checked += checked.next_seq;
        max_next = max_next.max(checked.next_seq);
        max_rows = max_rows.max(checked.rows);
        if let Some(last) = checked.restored {
            restores += 1;
            restored_events += checked.next_seq - last.map_or(0, |s| s + 1);
        }
        if let Some(acked) = rep.last_acked {
            lost_acked += (acked + 1).saturating_sub(checked.next_seq);
        }
        max_lost_staged = max_lost_staged.max(checked.lost_staged);
        early_kills += u64::from(rep.open_seq.is_none());
        durable = checked.next_seq;
    }
    eprintln!(
        "{name}: {done} kills ({early_kills} 0-20 ms after the spawn) in {:.1?}, {} failed; \
         {events_checked} events verified and replayed (logs up to {max_next} events, \
         {max_rows} rows); {restores} snapshot restores folding {restored_events} events \
         after the snapshot; {lost_acked} acknowledged but unsynced events lost (at most \
         {max_lost_staged} staged bytes in one kill)",
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
