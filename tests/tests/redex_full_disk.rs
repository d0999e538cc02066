//! A full disk: appends fail with a typed error, nothing already written is lost, and
//! appends resume once space is freed.
//!
//! The test mounts a small tmpfs, which needs root (or CAP_SYS_ADMIN); elsewhere it says so
//! and returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use netdb_runtime::redex::{FsyncPolicy, Redex, RedexError, RedexFileConfig};

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
