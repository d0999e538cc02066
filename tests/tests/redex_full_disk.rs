//! A full disk: appends fail with a typed error, nothing already written is lost, and
//! appends resume once space is freed. The first tests append to a RedEX file directly;
//! the last writes to the tasks model through its typed writes (a `TasksAdapter`, and the
//! `NetDb` façade), where the fold must also keep up and a reopen must replay the same
//! state.
//!
//! The tests mount a small tmpfs, which needs root (or CAP_SYS_ADMIN); elsewhere they say
//! so and return.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netdb_models::tasks::{Task, TaskEvent};
use netdb_models::{NetDb, TasksAdapter};
use netdb_runtime::cortex::{CortexConfig, CortexError, CortexEvent, EventMeta};
use netdb_runtime::redex::{FsyncPolicy, Redex, RedexError, RedexFileConfig};
use netdb_tests::tasks_model::{
    check_tasks_table, reference_apply, state_map, task_event, write_task,
};

/// A tmpfs mounted for the life of the value.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then_some(SmallDisk { path, _dir: dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// A mounted 1 MiB disk with 256 KiB of ballast to free later, and where the log goes.
struct Setup {
    disk: SmallDisk,
    ballast: PathBuf,
    data: PathBuf,
}

impl Setup {
    fn new() -> Option<Setup> {
        let Some(disk) = SmallDisk::mount("1m") else {
            eprintln!("skipped: mounting a tmpfs needs root (CAP_SYS_ADMIN) on this machine");
            return None;
        };
        let ballast = disk.path.join("ballast");
        let data = disk.path.join("data");
        let setup = Setup {
            disk,
            ballast,
            data,
        };
        setup.add_ballast();
        Some(setup)
    }

    fn add_ballast(&self) {
        std::fs::write(&self.ballast, vec![0u8; 256 << 10]).expect("ballast");
    }

    fn free_space(&self) {
        std::fs::remove_file(&self.ballast).expect("free space");
        assert!(self.disk.path.exists());
    }
}

fn config(policy: FsyncPolicy) -> RedexFileConfig {
    RedexFileConfig::default()
        .with_persistent(true)
        .with_fsync_policy(policy)
        .with_segment_max_bytes(64 << 10)
}

/// Appends until the disk refuses one; returns how many were acknowledged, and the error.
fn fill_until_full(file: &netdb_runtime::redex::RedexFile) -> (u64, RedexError) {
    let mut acked = 0u64;
    loop {
        match file.append(&payload(acked)) {
            Ok(seq) => {
                assert_eq!(seq, acked);
                acked += 1;
            }
            Err(e) => return (acked, e),
        }
        assert!(acked < 100_000, "the 1 MiB disk never filled up");
    }
}

fn payload(seq: u64) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    p.resize(1000, (seq % 251) as u8);
    p
}

fn check(dir: &Path, cfg: &RedexFileConfig, n: u64) {
    let redex = Redex::with_persistent_dir(dir).expect("reopen");
    let file = redex
        .open_file(&"full/disk".parse().unwrap(), cfg.clone())
        .expect("open");
    assert_eq!(file.next_seq(), n);
    let events = file.read_range(0, n).expect("read");
    assert_eq!(events.len() as u64, n);
    for e in &events {
        assert_eq!(e.payload, payload(e.seq), "seq {}", e.seq);
    }
    file.close().expect("close");
}

#[test]
fn a_full_disk_is_a_typed_error_and_appends_resume_after_space_is_freed() {
    // One at a time: a forked `mount` could share another test's directory lock.
    let _serial = netdb_tests::no_spawns();
    let Some(setup) = Setup::new() else { return };
    for policy in [FsyncPolicy::EveryN(1), FsyncPolicy::Never] {
        let _ = std::fs::remove_dir_all(&setup.data);
        if !setup.ballast.exists() {
            setup.add_ballast();
        }
        let cfg = config(policy);
        let redex = Redex::with_persistent_dir(&setup.data).expect("open");
        let file = redex
            .open_file(&"full/disk".parse().unwrap(), cfg.clone())
            .expect("open");
        // Fill the disk. Under Never the error shows when a flush is due, not at once.
        let (mut written, err) = fill_until_full(&file);
        match &err {
            RedexError::Io { op, source, .. } => {
                assert!(op.starts_with("write") || op.starts_with("fsync"), "{err}");
                assert_eq!(source.raw_os_error(), Some(28), "ENOSPC expected: {err}");
            }
            other => panic!("{policy:?}: expected a typed I/O error, got {other}"),
        }
        // The failed append is not in the log; everything before it still reads back.
        assert_eq!(file.next_seq(), written, "{policy:?}");
        assert_eq!(
            file.read_range(0, written).expect("read").len() as u64,
            written
        );
        // Still full: a retry fails the same way and changes nothing.
        assert!(file.append(&payload(written)).is_err());
        assert_eq!(file.next_seq(), written);

        eprintln!("{policy:?}: disk full after {written} appends: {err}");
        setup.free_space();
        assert_eq!(
            file.append(&payload(written))
                .expect("append after freeing space"),
            written
        );
        written += 1;
        file.close().expect("close writes and fsyncs everything");
        drop((file, redex));
        check(&setup.data, &cfg, written);
    }
}

#[test]
fn close_on_a_full_disk_fails_keeps_the_directory_and_can_be_retried() {
    // One at a time: a forked `mount` could share another test's directory lock.
    let _serial = netdb_tests::no_spawns();
    let Some(setup) = Setup::new() else { return };
    let (data, cfg) = (&setup.data, config(FsyncPolicy::Never));
    let redex = Redex::with_persistent_dir(data).expect("open");
    let file = redex
        .open_file(&"full/disk".parse().unwrap(), cfg.clone())
        .expect("open");
    // Stage appends until a flush hits the full disk; the acknowledged ones stay staged.
    let (acked, _) = fill_until_full(&file);
    let err = file
        .close()
        .expect_err("close cannot write the staged events");
    assert!(matches!(err, RedexError::Io { .. }), "{err}");
    assert!(matches!(file.append(b"x"), Err(RedexError::Closed { .. })));
    drop(redex);
    // The staged events are not on disk yet, so the directory is still held.
    assert!(matches!(
        Redex::with_persistent_dir(data),
        Err(RedexError::Locked { .. })
    ));
    setup.free_space();
    file.close()
        .expect("the retried close writes and fsyncs everything");
    drop(file);
    check(data, &cfg, acked);
}

#[test]
fn a_channel_whose_close_failed_cannot_be_reopened_over_its_staged_events() {
    // One at a time: a forked `mount` could share another test's directory lock.
    let _serial = netdb_tests::no_spawns();
    let Some(setup) = Setup::new() else { return };
    let (data, cfg) = (&setup.data, config(FsyncPolicy::Never));
    let channel = "full/disk".parse().unwrap();
    let redex = Redex::with_persistent_dir(data).expect("open");
    let file = redex.open_file(&channel, cfg.clone()).expect("open");
    let (acked, _) = fill_until_full(&file);
    assert!(file.close().is_err());
    // Reopening the channel first finishes the failed close, which still cannot write.
    assert!(redex.open_file(&channel, cfg.clone()).is_err());
    assert!(
        file.sync().is_err(),
        "sync retries the close instead of claiming success"
    );
    setup.free_space();
    let reopened = redex
        .open_file(&channel, cfg.clone())
        .expect("the close completes, then the channel reopens");
    assert_eq!(
        reopened.next_seq(),
        acked,
        "nothing staged was lost or overwritten"
    );
    assert_eq!(reopened.append(&payload(acked)).expect("append"), acked);
    reopened.close().expect("close");
    drop((file, reopened, redex));
    check(data, &cfg, acked + 1);
}

/// Asserts `err` is the typed error of a full disk: an I/O error with ENOSPC.
fn assert_disk_full(err: &CortexError) {
    match err {
        CortexError::Log(RedexError::Io { op, source, .. }) => {
            assert!(op.starts_with("write") || op.starts_with("fsync"), "{err}");
            assert_eq!(source.raw_os_error(), Some(28), "ENOSPC expected: {err}");
        }
        other => panic!("expected a typed I/O error, got {other}"),
    }
}

/// Writes the task stream with typed writes until the disk refuses one; returns the events
/// acknowledged (event `i` at seq `i`) and the error.
fn write_tasks_until_full(tasks: &TasksAdapter, seed: u64) -> (Vec<TaskEvent>, CortexError) {
    let mut written = Vec::new();
    loop {
        let event = task_event(seed, written.len() as u64);
        match write_task(tasks, &event) {
            Ok(seq) => {
                assert_eq!(seq, written.len() as u64);
                written.push(event);
            }
            Err(e) => return (written, e),
        }
        assert!(written.len() < 200_000, "the 1 MiB disk never filled up");
    }
}

/// Checks the tasks log holds exactly `events`, that the fold applied all of them without
/// error, and that its state is the reference fold of the log (with the log's timestamps).
/// Returns the state.
fn check_tasks(
    rt: &tokio::runtime::Runtime,
    tasks: &TasksAdapter,
    events: &[TaskEvent],
) -> BTreeMap<u64, Task> {
    let n = events.len() as u64;
    assert_eq!(tasks.log().next_seq(), n);
    rt.block_on(tasks.wait_for_seq_timeout(n - 1, Duration::from_secs(60)))
        .expect("the fold reaches the last acknowledged write");
    assert_eq!(tasks.folded_through_seq(), Some(n - 1));
    let errors = tasks.fold_errors();
    assert_eq!((errors.skipped, &errors.stopped), (0, &None), "{errors:?}");
    let log = tasks.log().read_range(0, n).expect("read the log");
    assert_eq!(log.len() as u64, n);
    let mut reference = BTreeMap::new();
    for (e, want) in log.iter().zip(events) {
        let (meta, body) = EventMeta::decode(&e.payload).expect("header");
        let got = TaskEvent::decode_body(meta.dispatch, meta.schema_version, body).expect("body");
        assert_eq!(&got, want, "seq {}", e.seq);
        reference_apply(&mut reference, &got, e.timestamp_ns);
    }
    let state = state_map(tasks);
    assert_eq!(
        state, reference,
        "the folded state vs the reference fold of the log"
    );
    check_tasks_table(&tasks.state().read()).expect("indexes agree with rows");
    state
}

/// The tasks model on the small disk: opened as a `TasksAdapter` with `policy`, or through
/// the `NetDb` façade (default config: `FsyncPolicy::Never`).
enum TasksDb {
    Adapter(TasksAdapter),
    Facade(NetDb),
}

impl TasksDb {
    fn open(redex: &Redex, policy: Option<FsyncPolicy>) -> TasksDb {
        match policy {
            Some(p) => TasksDb::Adapter(
                TasksAdapter::open_with_config(
                    redex,
                    7,
                    CortexConfig::default().with_file_config(config(p)),
                )
                .expect("open the tasks adapter"),
            ),
            None => TasksDb::Facade(NetDb::open(redex, 7).expect("open the NetDb")),
        }
    }

    fn tasks(&self) -> &TasksAdapter {
        match self {
            TasksDb::Adapter(t) => t,
            TasksDb::Facade(db) => db.tasks(),
        }
    }

    fn close(&self) -> Result<(), CortexError> {
        match self {
            TasksDb::Adapter(t) => t.close(),
            TasksDb::Facade(db) => db.close(),
        }
    }
}

#[test]
fn typed_writes_on_a_full_disk_fail_typed_lose_nothing_and_resume() {
    // One at a time: a forked `mount` could share another test's directory lock.
    let _serial = netdb_tests::no_spawns();
    let Some(setup) = Setup::new() else { return };
    // The folds run here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let _enter = rt.enter();
    for (seed, policy) in [(1, Some(FsyncPolicy::EveryN(1))), (2, None)] {
        let _ = std::fs::remove_dir_all(&setup.data);
        if !setup.ballast.exists() {
            setup.add_ballast();
        }
        let redex = Redex::with_persistent_dir(&setup.data).expect("open");
        let db = TasksDb::open(&redex, policy);
        let tasks = db.tasks();

        // Fill the disk with typed writes: the one that does not fit is a typed error.
        let (mut events, err) = write_tasks_until_full(tasks, seed);
        assert_disk_full(&err);
        let n = events.len() as u64;
        eprintln!("{policy:?}: the disk is full after {n} typed writes: {err}");
        assert_eq!(
            tasks.log().next_seq(),
            n,
            "the refused write is not in the log"
        );
        // Still full: a single write and a batch fail and change nothing.
        assert!(write_task(tasks, &task_event(seed, n)).is_err());
        let batch: Vec<TaskEvent> = (n..n + 3).map(|i| task_event(seed, i)).collect();
        assert!(tasks.append_batch(&batch).is_err());
        assert_eq!(tasks.log().next_seq(), n);
        // Everything acknowledged is in the log and in the state.
        check_tasks(&rt, tasks, &events);

        // Space comes back: writes resume at the next seq, typed and batched.
        setup.free_space();
        for i in n..n + 20 {
            let event = task_event(seed, i);
            assert_eq!(
                write_task(tasks, &event).expect("a write after freeing space"),
                i
            );
            events.push(event);
        }
        let end = events.len() as u64;
        let batch: Vec<TaskEvent> = (end..end + 3).map(|i| task_event(seed, i)).collect();
        assert_eq!(tasks.append_batch(&batch).expect("a batch"), end..end + 3);
        events.extend(batch);
        let live = check_tasks(&rt, tasks, &events);
        db.close().expect("close writes and fsyncs everything");
        drop((db, redex));

        // Reopened: the same events, replayed to the same state (timestamps included).
        let redex = Redex::with_persistent_dir(&setup.data).expect("reopen");
        let db = TasksDb::open(&redex, policy);
        let replayed = check_tasks(&rt, db.tasks(), &events);
        assert_eq!(
            replayed, live,
            "{policy:?}: the replay differs from the live state"
        );
        db.close().expect("close");
    }
}
