//! RedEX behaviour: round trips, durability policies, recovery, tails, locking, retention.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use netdb_runtime::redex::{
    ChannelName, FsyncPolicy, Redex, RedexError, RedexEvent, RedexFile, RedexFileConfig,
};

fn chan(name: &str) -> ChannelName {
    name.parse().unwrap()
}

/// A deterministic payload for `seq`: lengths 0..300 (some inline, most in the data file).
fn payload(seq: u64) -> Vec<u8> {
    let len = (seq * 37 % 300) as usize;
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

fn disk_cfg() -> RedexFileConfig {
    RedexFileConfig::default().with_persistent(true)
}

fn open_disk(dir: &Path, cfg: RedexFileConfig) -> (Redex, RedexFile) {
    let redex = Redex::with_persistent_dir(dir).unwrap();
    let file = redex.open_file(&chan("log/main"), cfg).unwrap();
    (redex, file)
}

fn fill(file: &RedexFile, from: u64, to: u64) {
    for seq in from..to {
        assert_eq!(file.append(&payload(seq)).unwrap(), seq);
    }
}

fn assert_contents(file: &RedexFile, first: u64, next: u64) {
    assert_eq!(file.first_seq(), first);
    assert_eq!(file.next_seq(), next);
    let events = file.read_range(first, next).unwrap();
    assert_eq!(events.len() as u64, next - first);
    for (e, seq) in events.iter().zip(first..) {
        assert_eq!(e.seq, seq);
        assert_eq!(e.payload, payload(seq), "payload of seq {seq}");
    }
}

fn segment_file(dir: &Path, first_seq: u64, ext: &str) -> PathBuf {
    dir.join("log/main")
        .join(format!("{first_seq:020}"))
        .with_extension(ext)
}

#[test]
fn memory_round_trip() {
    let redex = Redex::new();
    let file = redex
        .open_file(&chan("mem"), RedexFileConfig::default())
        .unwrap();
    assert!(file.is_empty());
    assert_eq!(file.append(b"").unwrap(), 0);
    assert_eq!(file.append(b"12345678").unwrap(), 1);
    assert_eq!(file.append(&[7; 1000]).unwrap(), 2);
    assert_eq!(
        file.append_batch(&[b"a".to_vec(), b"bb".to_vec()]).unwrap(),
        3..5
    );
    assert_eq!(file.append_batch::<&[u8]>(&[]).unwrap(), 5..5);
    assert_eq!(file.append_postcard(&("hello", 42u32)).unwrap(), 5);
    assert_eq!(file.len(), 6);

    let all = file.read_range(0, u64::MAX).unwrap();
    let payloads: Vec<&[u8]> = all.iter().map(|e| &e.payload[..]).collect();
    assert_eq!(
        payloads[..5],
        [&b""[..], b"12345678", &[7; 1000], b"a", b"bb"]
    );
    assert_eq!(
        all[5].decode_postcard::<(String, u32)>().unwrap(),
        ("hello".into(), 42)
    );
    assert!(matches!(
        all[0].decode_postcard::<(String, u32)>(),
        Err(RedexError::Decode { seq: 0, .. })
    ));
    assert_eq!(file.read_range(2, 4).unwrap().len(), 2);
    assert!(file.read_range(6, 10).unwrap().is_empty());
    assert_eq!(file.disk_bytes(), 0);
    assert!(file.dir().is_none());
}

#[test]
fn disk_round_trip_and_reopen_after_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (redex, file) = open_disk(dir.path(), disk_cfg());
        fill(&file, 0, 500);
        file.append_batch(&[payload(500), payload(501), payload(502)])
            .unwrap();
        assert_contents(&file, 0, 503);
        file.close().unwrap();
        file.close().unwrap(); // idempotent
        assert!(matches!(file.append(b"x"), Err(RedexError::Closed { .. })));
        assert!(
            redex.file(&chan("log/main")).is_none(),
            "close forgets the file"
        );
    }
    let (_redex, file) = open_disk(dir.path(), disk_cfg());
    let report = file.recovery_report().unwrap();
    assert_eq!((report.truncated_records, report.truncated_bytes), (0, 0));
    assert_eq!(report.next_seq, 503);
    assert_contents(&file, 0, 503);
    fill(&file, 503, 600);
    assert_contents(&file, 0, 600);
    assert!(file.disk_bytes() > 0);
}

#[test]
fn dropping_without_close_keeps_events_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_redex, file) = open_disk(dir.path(), disk_cfg());
        fill(&file, 0, 100);
    }
    let (_redex, file) = open_disk(dir.path(), disk_cfg());
    assert_contents(&file, 0, 100);
}

#[test]
fn open_file_shares_equal_configs_and_rejects_different_ones() {
    let redex = Redex::new();
    let a = redex
        .open_file(&chan("x"), RedexFileConfig::default())
        .unwrap();
    let b = redex
        .open_file(&chan("x"), RedexFileConfig::default())
        .unwrap();
    a.append(b"shared").unwrap();
    assert_eq!(b.len(), 1);
    let other = RedexFileConfig::default().with_retention_max_events(5);
    let err = redex.open_file(&chan("x"), other).unwrap_err();
    assert!(matches!(err, RedexError::ConfigMismatch { .. }), "{err}");
    assert!(err.to_string().contains("already open"), "{err}");

    let err = redex.open_file(&chan("y"), disk_cfg()).unwrap_err();
    assert!(matches!(err, RedexError::NotPersistent { .. }), "{err}");

    let bad = RedexFileConfig::default().with_segment_max_bytes(0);
    assert!(matches!(
        redex.open_file(&chan("z"), bad),
        Err(RedexError::InvalidConfig { .. })
    ));
    let bad = RedexFileConfig::default().with_fsync_policy(FsyncPolicy::Interval(Duration::ZERO));
    assert!(matches!(
        redex.open_file(&chan("z"), bad),
        Err(RedexError::InvalidConfig { .. })
    ));
    assert_eq!(redex.channels(), vec![chan("x")]);
}

#[test]
fn fsync_policies_fsync_when_they_promise() {
    let cases: [(FsyncPolicy, u64, u64); 6] = [
        (FsyncPolicy::Never, 10, 0),
        (FsyncPolicy::EveryN(0), 10, 10),
        (FsyncPolicy::EveryN(1), 10, 10),
        (FsyncPolicy::EveryN(3), 10, 3),
        (
            FsyncPolicy::IntervalOrBytes {
                period: Duration::from_secs(3600),
                max_bytes: 1000,
            },
            10,
            2, // 256-byte payloads: the 4th and 8th appends cross 1000 bytes
        ),
        (FsyncPolicy::Interval(Duration::from_secs(3600)), 10, 0),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    for (policy, appends, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (_redex, file) = open_disk(dir.path(), disk_cfg().with_fsync_policy(policy));
        for _ in 0..appends {
            file.append(&[1; 256]).unwrap();
        }
        assert_eq!(file.stats().fsyncs, expected, "{policy:?}");
        file.sync().unwrap();
        assert_eq!(
            file.stats().fsyncs,
            expected + 1,
            "sync() always fsyncs ({policy:?})"
        );
        file.close().unwrap();
        assert_eq!(
            file.stats().fsyncs,
            expected + 2,
            "close() always fsyncs ({policy:?})"
        );
    }
}

#[test]
fn batches_count_towards_every_n() {
    let dir = tempfile::tempdir().unwrap();
    let (_redex, file) = open_disk(
        dir.path(),
        disk_cfg().with_fsync_policy(FsyncPolicy::EveryN(100)),
    );
    let batch: Vec<Vec<u8>> = (0..64).map(|_| vec![0; 64]).collect();
    file.append_batch(&batch).unwrap();
    assert_eq!(file.stats().fsyncs, 0);
    file.append_batch(&batch).unwrap();
    assert_eq!(file.stats().fsyncs, 1);
}

#[test]
fn interval_policy_needs_a_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let cfg = disk_cfg().with_fsync_policy(FsyncPolicy::Interval(Duration::from_millis(5)));
    let err = redex.open_file(&chan("log/main"), cfg).unwrap_err();
    assert!(matches!(err, RedexError::NoRuntime { .. }), "{err}");
    // An in-memory file has nothing to fsync and needs no task.
    let mem = Redex::new();
    mem.open_file(
        &chan("log/main"),
        RedexFileConfig::default()
            .with_fsync_policy(FsyncPolicy::Interval(Duration::from_millis(5))),
    )
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn interval_policy_fsyncs_in_the_background_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let period = Duration::from_millis(50);
    let (_redex, file) = open_disk(
        dir.path(),
        disk_cfg().with_fsync_policy(FsyncPolicy::Interval(period)),
    );
    file.append(b"needs a sync").unwrap();
    // Virtual time: each sleep lets the file's task run one period; the fsync itself runs
    // on a blocking thread, so wait on the counter rather than on time.
    let mut periods = 0;
    while file.stats().fsyncs == 0 {
        tokio::time::sleep(period).await;
        periods += 1;
        assert!(periods < 10_000, "the interval task never fsynced");
    }
    let before = file.stats().fsyncs;
    // Nothing new written: further periods do not fsync.
    for _ in 0..5 {
        tokio::time::sleep(period).await;
    }
    assert_eq!(file.stats().fsyncs, before);
    file.close().unwrap();
    assert_eq!(file.stats().fsyncs, before + 1);
}

async fn collect_tail(file: &RedexFile, from: u64, until: u64) -> Vec<RedexEvent> {
    let mut tail = file.tail(from);
    let mut out = Vec::new();
    while let Some(ev) = tail.next().await {
        let ev = ev.unwrap();
        let done = ev.seq + 1 >= until;
        out.push(ev);
        if done {
            break;
        }
    }
    out
}

#[tokio::test]
async fn tail_a_million_events_behind_catches_up_in_memory() {
    let redex = Redex::new();
    let file = redex
        .open_file(&chan("far/behind"), RedexFileConfig::default())
        .unwrap();
    let n = 1_000_000u64;
    for seq in 0..n {
        file.append(&seq.to_le_bytes()).unwrap();
    }
    let events = collect_tail(&file, 0, n).await;
    assert_eq!(events.len() as u64, n);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
        assert_eq!(e.payload[..], (i as u64).to_le_bytes());
    }
}

#[tokio::test]
async fn tail_reads_from_disk_beyond_the_memory_window() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk_cfg()
        .with_max_memory_bytes(64 << 10)
        .with_segment_max_bytes(1 << 20);
    let (_redex, file) = open_disk(dir.path(), cfg);
    let n = 200_000u64;
    for seq in 0..n {
        file.append(&payload(seq)).unwrap();
    }
    assert!(
        file.memory_bytes() <= (64 << 10) + (512 << 10),
        "hot window stays bounded: {} bytes",
        file.memory_bytes()
    );
    let events = collect_tail(&file, 0, n).await;
    assert_eq!(events.len() as u64, n);
    for e in &events {
        assert_eq!(e.payload, payload(e.seq));
    }
    assert_contents(&file, 0, n);
}

#[test]
fn tails_hand_off_from_backfill_to_live_without_gap_or_duplicate() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let redex = Redex::new();
    let file = redex
        .open_file(&chan("handoff"), RedexFileConfig::default())
        .unwrap();
    let n = 200_000u64;
    fill(&file, 0, 1000);
    let tails: Vec<_> = [0u64, 500, 1000, 5000]
        .into_iter()
        .map(|from| {
            let file = file.clone();
            rt.spawn(async move { (from, collect_tail(&file, from, n).await) })
        })
        .collect();
    let producer = {
        let file = file.clone();
        std::thread::spawn(move || fill(&file, 1000, n))
    };
    producer.join().unwrap();
    for t in tails {
        let (from, events) = rt.block_on(t).unwrap();
        assert_eq!(events.len() as u64, n - from);
        for (e, seq) in events.iter().zip(from..) {
            assert_eq!(e.seq, seq);
            assert_eq!(e.payload, payload(seq));
        }
    }
}

#[tokio::test]
async fn close_ends_tails_after_they_deliver_what_was_appended() {
    let redex = Redex::new();
    let file = redex
        .open_file(&chan("closing"), RedexFileConfig::default())
        .unwrap();
    let mut waiting = file.tail(0);
    let mut behind = file.tail(0);
    let first = tokio::spawn(async move { waiting.next().await.map(|r| r.unwrap().seq) });
    fill(&file, 0, 10);
    assert_eq!(first.await.unwrap(), Some(0));
    file.close().unwrap();
    let mut seqs = Vec::new();
    while let Some(ev) = behind.next().await {
        seqs.push(ev.unwrap().seq);
    }
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    // A tail started after close drains too, then ends.
    let mut late = file.tail(8);
    assert_eq!(late.next().await.unwrap().unwrap().seq, 8);
    assert_eq!(late.next().await.unwrap().unwrap().seq, 9);
    assert!(late.next().await.is_none());
}

/// Writes `n` events, hands them to the OS without fsync (so nothing is marked synced),
/// and returns the directory.
fn unsynced_log(n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (_redex, file) = open_disk(dir.path(), disk_cfg());
    fill(&file, 0, n);
    drop(file);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != ".netdb.lock" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn truncation_at_every_byte_of_the_last_records_recovers_to_the_last_whole_record() {
    let n = 12u64;
    let src = unsynced_log(n);
    // Heap byte offsets of each event, to know which event a data-file cut breaks.
    let mut ends = Vec::new();
    let mut end = 0u64;
    for seq in 0..n {
        let len = payload(seq).len() as u64;
        if len > 8 {
            end += len;
        }
        ends.push((seq, len > 8, end));
    }
    let last3 = n - 3;
    for (ext, rec_len) in [("idx", 20u64), ("ts", 8u64), ("dat", 0)] {
        let full = std::fs::metadata(segment_file(src.path(), 0, ext))
            .unwrap()
            .len();
        let start = match ext {
            "dat" => ends
                .iter()
                .rev()
                .find(|(s, heap, _)| *s < last3 && *heap)
                .map(|(_, _, e)| *e)
                .unwrap_or(0),
            _ => last3 * rec_len,
        };
        for cut in start..full {
            let work = tempfile::tempdir().unwrap();
            copy_dir(src.path(), work.path());
            truncate(&segment_file(work.path(), 0, ext), cut);
            let expected = match ext {
                "dat" => ends
                    .iter()
                    .find(|(_, heap, e)| *heap && *e > cut)
                    .map_or(n, |(s, _, _)| *s),
                _ => cut / rec_len,
            };
            let (_redex, file) = open_disk(work.path(), disk_cfg());
            assert_eq!(file.next_seq(), expected, "{ext} cut at {cut}");
            assert_contents(&file, 0, expected);
            let report = file.recovery_report().unwrap();
            // Whole index records dropped (a partial index record is bytes, not a record).
            let dropped = if ext == "idx" { 0 } else { n - expected };
            assert_eq!(report.truncated_records, dropped, "{ext} cut at {cut}");
            assert!(report.truncated_bytes > 0, "{ext} cut at {cut}");
            // The repaired log takes new appends at the right seq and survives a reopen.
            fill(&file, expected, expected + 2);
            drop(file);
            drop(_redex);
            let (_redex, file) = open_disk(work.path(), disk_cfg());
            assert_contents(&file, 0, expected + 2);
        }
    }
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let src = unsynced_log(5);
    for ext in ["idx", "ts", "dat"] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(src.path(), work.path());
        let path = segment_file(work.path(), 0, ext);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0xA5; 57]);
        std::fs::write(&path, bytes).unwrap();
        let (_redex, file) = open_disk(work.path(), disk_cfg());
        assert_contents(&file, 0, 5);
        let report = file.recovery_report().unwrap();
        assert!(report.truncated_bytes >= 57, "{ext}: {report:?}");
    }
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_in_synced_data_is_a_corrupt_error_naming_file_and_seq() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_redex, file) = open_disk(dir.path(), disk_cfg());
        fill(&file, 0, 20);
        file.close().unwrap();
    }
    // Seq 10 has a 70-byte heap payload; flip a byte in the middle of it.
    let heap_before: u64 = (0..10)
        .map(|s| payload(s).len() as u64)
        .filter(|&l| l > 8)
        .sum();
    assert!(payload(10).len() > 8);
    for (ext, at, seq) in [
        ("dat", heap_before + 5, 10u64),
        ("idx", 7 * 20 + 3, 7),
        ("ts", 19 * 8 + 1, 19),
    ] {
        let work = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), work.path());
        flip_byte(&segment_file(work.path(), 0, ext), at);
        let redex = Redex::with_persistent_dir(work.path()).unwrap();
        let err = redex.open_file(&chan("log/main"), disk_cfg()).unwrap_err();
        match &err {
            RedexError::Corrupt { file, seq: s, .. } => {
                assert_eq!(*s, seq, "{ext}: {err}");
                assert!(file.ends_with(format!("{:020}.idx", 0)), "{err}");
            }
            other => panic!("{ext}: expected Corrupt, got {other}"),
        }
        assert!(err.to_string().contains("seq"), "{err}");
    }
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk_cfg().with_segment_max_bytes(2048);
    {
        let (_redex, file) = open_disk(dir.path(), cfg.clone());
        fill(&file, 0, 200);
        file.close().unwrap();
    }
    let first_segment = segment_file(dir.path(), 0, "dat");
    flip_byte(&first_segment, 100);
    let (_redex, file) = open_disk(dir.path(), cfg);
    let err = file.read_range(0, 200).unwrap_err();
    assert!(matches!(err, RedexError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{:020}.idx", 0)), "{err}");
}

#[test]
fn a_flipped_byte_in_the_unsynced_tail_is_cut_and_reported() {
    let src = unsynced_log(20);
    let heap_before: u64 = (0..19)
        .map(|s| payload(s).len() as u64)
        .filter(|&l| l > 8)
        .sum();
    assert!(payload(19).len() > 8);
    flip_byte(&segment_file(src.path(), 0, "dat"), heap_before + 1);
    let (_redex, file) = open_disk(src.path(), disk_cfg());
    assert_contents(&file, 0, 19);
    assert_eq!(file.recovery_report().unwrap().truncated_records, 1);
}

#[test]
fn a_second_redex_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (redex, file) = open_disk(dir.path(), disk_cfg());
    let err = Redex::with_persistent_dir(dir.path()).unwrap_err();
    assert!(matches!(err, RedexError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    drop(redex);
    // The open file still holds the lock.
    assert!(matches!(
        Redex::with_persistent_dir(dir.path()),
        Err(RedexError::Locked { .. })
    ));
    drop(file);
    Redex::with_persistent_dir(dir.path()).unwrap();
}

#[test]
fn retention_by_count_bytes_and_age_in_memory() {
    let redex = Redex::new();
    let by_count = redex
        .open_file(
            &chan("count"),
            RedexFileConfig::default().with_retention_max_events(10),
        )
        .unwrap();
    fill(&by_count, 0, 25);
    let report = by_count.sweep_retention().unwrap();
    assert_eq!((report.evicted_events, report.first_seq), (15, 15));
    assert_contents(&by_count, 15, 25);
    let err = by_count.read_range(3, 20).unwrap_err();
    assert!(
        matches!(
            err,
            RedexError::Evicted {
                requested: 3,
                first_available: 15,
                ..
            }
        ),
        "{err}"
    );

    let by_bytes = redex
        .open_file(
            &chan("bytes"),
            RedexFileConfig::default().with_retention_max_bytes(1000),
        )
        .unwrap();
    fill(&by_bytes, 0, 50);
    by_bytes.sweep_retention().unwrap();
    assert!(by_bytes.retained_bytes() <= 1000);
    let kept = by_bytes.first_seq();
    let with_one_more: u64 = (kept - 1..50).map(|s| payload(s).len() as u64).sum();
    assert!(with_one_more > 1000, "evicts no more than needed");
    assert_contents(&by_bytes, kept, 50);

    let by_age = redex
        .open_file(
            &chan("age"),
            RedexFileConfig::default().with_retention_max_age(Duration::from_secs(60)),
        )
        .unwrap();
    fill(&by_age, 0, 5);
    assert_eq!(by_age.sweep_retention().unwrap().evicted_events, 0);
    let later = SystemTime::now() + Duration::from_secs(120);
    assert_eq!(by_age.sweep_retention_at(later).unwrap().evicted_events, 5);
    assert!(by_age.is_empty());
    assert_eq!(
        by_age.append(b"next").unwrap(),
        5,
        "seqs continue after eviction"
    );
}

#[test]
fn retention_on_disk_frees_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk_cfg()
        .with_segment_max_bytes(4096)
        .with_retention_max_events(1000)
        .with_retention_max_age(Duration::from_secs(3600));
    let n = 5000u64;
    {
        let (_redex, file) = open_disk(dir.path(), cfg.clone());
        fill(&file, 0, n);
        file.sync().unwrap();
        let before = file.disk_bytes();
        let report = file.sweep_retention().unwrap();
        let after = file.disk_bytes();
        assert_eq!(report.evicted_events, n - 1000);
        assert!(report.disk_bytes_freed > 0);
        assert_eq!(
            before - after,
            report.disk_bytes_freed,
            "reported bytes were given back"
        );
        assert!(
            after * 3 < before,
            "most space came back: {before} -> {after}"
        );
        assert_contents(&file, n - 1000, n);
        file.close().unwrap();
    }
    {
        // Reopen: evicted events stay gone, and the stored timestamps drive age retention.
        let (_redex, file) = open_disk(dir.path(), cfg.clone());
        assert_contents(&file, n - 1000, n);
        assert_eq!(file.sweep_retention().unwrap().evicted_events, 0);
        let later = SystemTime::now() + Duration::from_secs(7200);
        let report = file.sweep_retention_at(later).unwrap();
        assert_eq!(report.evicted_events, 1000);
        assert!(file.is_empty());
        fill(&file, n, n + 3);
        file.close().unwrap();
    }
    let (_redex, file) = open_disk(dir.path(), cfg);
    assert_contents(&file, n, n + 3);
    assert!(file.disk_bytes() < 4096 * 2, "{}", file.disk_bytes());
}

#[tokio::test]
async fn a_tail_behind_retention_is_told_and_continues() {
    let redex = Redex::new();
    let file = redex
        .open_file(
            &chan("lagging"),
            RedexFileConfig::default().with_retention_max_events(5),
        )
        .unwrap();
    let mut tail = file.tail(0);
    fill(&file, 0, 20);
    file.sweep_retention().unwrap();
    match tail.next().await.unwrap() {
        Err(RedexError::Evicted {
            requested: 0,
            first_available: 15,
            ..
        }) => {}
        other => panic!("expected Evicted, got {other:?}"),
    }
    assert_eq!(tail.next().await.unwrap().unwrap().seq, 15);
}

#[test]
fn payload_too_large_is_refused_without_appending() {
    let redex = Redex::new();
    let file = redex
        .open_file(&chan("big"), RedexFileConfig::default())
        .unwrap();
    let big = vec![0u8; netdb_runtime::redex::MAX_PAYLOAD_LEN + 1];
    assert!(matches!(
        file.append(&big),
        Err(RedexError::PayloadTooLarge { .. })
    ));
    assert!(file.is_empty());
}

#[test]
fn a_torn_segment_past_the_sync_mark_cuts_the_log_there_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk_cfg().with_segment_max_bytes(2048);
    {
        // Never synced: dropping hands everything to the OS, but the sync mark stays at 0,
        // so every segment counts as a tail that a crash may have torn.
        let (_redex, file) = open_disk(dir.path(), cfg.clone());
        fill(&file, 0, 200);
    }
    let mut firsts: Vec<u64> = std::fs::read_dir(dir.path().join("log/main"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".idx").map(|s| s.parse().unwrap())
        })
        .collect();
    firsts.sort_unstable();
    assert!(firsts.len() >= 4, "{firsts:?}");
    let torn = firsts[1];
    // Lose the data of the second segment from its third event on.
    let keep: u64 = (torn..torn + 2)
        .map(|s| payload(s).len() as u64)
        .filter(|&l| l > 8)
        .sum();
    truncate(&segment_file(dir.path(), torn, "dat"), keep);
    let (_redex, file) = open_disk(dir.path(), cfg.clone());
    let cut = (torn + 2..).find(|&s| payload(s).len() > 8).unwrap();
    assert_eq!(file.next_seq(), cut);
    assert_contents(&file, 0, cut);
    let report = file.recovery_report().unwrap();
    assert_eq!(report.segments, 2);
    assert!(report.truncated_records >= 200 - cut, "{report:?}");
    for later in &firsts[2..] {
        assert!(!segment_file(dir.path(), *later, "idx").exists());
    }
    fill(&file, cut, cut + 50);
    file.close().unwrap();
    drop((file, _redex));
    let (_redex, file) = open_disk(dir.path(), cfg);
    assert_contents(&file, 0, cut + 50);
}

#[test]
fn a_half_created_segment_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_redex, file) = open_disk(dir.path(), disk_cfg());
        fill(&file, 0, 10);
        file.close().unwrap();
    }
    // A crash while the next segment was being created left only its index file.
    std::fs::File::create(segment_file(dir.path(), 10, "idx")).unwrap();
    let (_redex, file) = open_disk(dir.path(), disk_cfg());
    assert_contents(&file, 0, 10);
    fill(&file, 10, 20);
    assert_contents(&file, 0, 20);
}

#[test]
fn a_directory_in_another_format_is_refused_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_redex, file) = open_disk(dir.path(), disk_cfg());
        fill(&file, 0, 3);
        file.close().unwrap();
    }
    let marker = dir.path().join("log/main/.format");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "netdb-redex 1\n");
    std::fs::write(&marker, "netdb-redex 9\n").unwrap();
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let err = redex.open_file(&chan("log/main"), disk_cfg()).unwrap_err();
    assert!(matches!(err, RedexError::UnsupportedFormat { .. }), "{err}");
    assert!(err.to_string().contains("netdb-redex 9"), "{err}");
    // A marker cut short by a crash is completed, not refused.
    std::fs::write(&marker, "netdb-re").unwrap();
    let file = redex.open_file(&chan("log/main"), disk_cfg()).unwrap();
    assert_contents(&file, 0, 3);
}

#[test]
fn absurd_lengths_in_a_sealed_index_are_a_corrupt_error_not_a_huge_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk_cfg().with_segment_max_bytes(2048);
    {
        let (_redex, file) = open_disk(dir.path(), cfg.clone());
        fill(&file, 0, 100);
        file.close().unwrap();
    }
    // Seq 2 is a heap record in the first (sealed) segment: claim 4 GiB at a far offset.
    assert!(payload(2).len() > 8);
    let idx = segment_file(dir.path(), 0, "idx");
    let mut bytes = std::fs::read(&idx).unwrap();
    bytes[2 * 20 + 8..2 * 20 + 16]
        .copy_from_slice(&[0xF0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    std::fs::write(&idx, bytes).unwrap();
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    match redex.open_file(&chan("log/main"), cfg) {
        Err(RedexError::Corrupt { seq: 2, file, .. }) => {
            assert!(file.ends_with(format!("{:020}.idx", 0)))
        }
        other => panic!("expected Corrupt at seq 2, got {other:?}"),
    }
}

#[test]
fn a_head_recorded_past_what_a_crash_kept_is_brought_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk_cfg().with_retention_max_events(5);
    let crashed = tempfile::tempdir().unwrap();
    {
        let (_redex, file) = open_disk(dir.path(), cfg.clone());
        fill(&file, 0, 50);
        file.sync().unwrap();
        fill(&file, 50, 100); // staged in memory, not yet handed to the OS
        assert_eq!(file.sweep_retention().unwrap().first_seq, 95);
        // A crash now: the disk has 50 events and a head of 95.
        copy_dir(dir.path(), crashed.path());
    }
    {
        let (_redex, file) = open_disk(crashed.path(), cfg.clone());
        assert_eq!((file.first_seq(), file.next_seq()), (50, 50));
        fill(&file, 50, 53);
        file.close().unwrap();
    }
    let (_redex, file) = open_disk(crashed.path(), cfg);
    assert_contents(&file, 50, 53);
}

#[test]
fn a_closed_file_refuses_retention_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let (redex, file) = open_disk(dir.path(), disk_cfg().with_retention_max_events(1));
    fill(&file, 0, 5);
    file.close().unwrap();
    drop(redex);
    // Another Redex owns the directory now; the old handle must not touch it.
    let (_other, current) = open_disk(dir.path(), disk_cfg().with_retention_max_events(1));
    fill(&current, 5, 10);
    assert!(matches!(
        file.sweep_retention(),
        Err(RedexError::Closed { .. })
    ));
    assert_contents(&current, 0, 10);
}

#[test]
fn a_failed_retention_sweep_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk_cfg()
        .with_segment_max_bytes(1024)
        .with_retention_max_events(5);
    let (_redex, file) = open_disk(dir.path(), cfg);
    fill(&file, 0, 60);
    file.sync().unwrap();
    // Make recording the new head impossible.
    std::fs::create_dir(dir.path().join("log/main/.head.tmp")).unwrap();
    let err = file.sweep_retention().unwrap_err();
    assert!(matches!(err, RedexError::Io { .. }), "{err}");
    assert_contents(&file, 0, 60);
    std::fs::remove_dir(dir.path().join("log/main/.head.tmp")).unwrap();
    assert_eq!(file.sweep_retention().unwrap().first_seq, 55);
    assert_contents(&file, 55, 60);
}

#[test]
fn a_segment_retention_failed_to_delete_is_deleted_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk_cfg()
        .with_segment_max_bytes(2048)
        .with_retention_max_events(50);
    let saved = tempfile::tempdir().unwrap();
    {
        let (_redex, file) = open_disk(dir.path(), cfg.clone());
        fill(&file, 0, 200);
        file.sync().unwrap();
        // Keep a copy of the first segment, to put back as if its deletion had failed.
        for ext in ["idx", "dat", "ts"] {
            std::fs::copy(segment_file(dir.path(), 0, ext), saved.path().join(ext)).unwrap();
        }
        assert_eq!(file.sweep_retention().unwrap().first_seq, 150);
        assert!(!segment_file(dir.path(), 0, "idx").exists());
        file.close().unwrap();
    }
    for ext in ["idx", "dat", "ts"] {
        std::fs::copy(saved.path().join(ext), segment_file(dir.path(), 0, ext)).unwrap();
    }
    let (_redex, file) = open_disk(dir.path(), cfg);
    assert_contents(&file, 150, 200);
    assert!(
        !segment_file(dir.path(), 0, "idx").exists(),
        "the leftover went at open"
    );
}
