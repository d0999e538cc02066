//! The fuzz corpora of the runtime-only targets (`fuzz/corpus/<target>/`) and the inputs of
//! crashes they found (`fuzz/regressions/<target>/`), replayed through the same
//! `netdb_runtime::fuzzing` functions the fuzz targets call, so a fixed crash cannot come
//! back. The targets that need models are replayed by `models/tests/fuzz_corpora.rs`.

use std::path::Path;

use netdb_runtime::fuzzing;

/// Runs `check` on every saved input of the target.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    fuzzing::replay_saved_inputs(&fuzz, target, check);
}

#[test]
fn event_meta_corpus() {
    replay("event_meta", fuzzing::event_meta);
}

#[test]
fn index_record_corpus() {
    replay("index_record", fuzzing::index_record);
}

#[test]
fn recovery_corpus() {
    replay("recovery", fuzzing::recovery);
}

/// Found by the `recovery` target (`regressions/recovery/sync-mark-past-an-empty-channel`):
/// a channel directory whose segments are all gone but whose sync mark says events were
/// fsynced opened as a fresh, empty log; after appends and a clean close, the next open
/// refused it as corrupt. The first open now reports the lost events.
#[test]
fn a_sync_mark_past_a_channel_without_segments_is_corrupt() {
    use netdb_runtime::redex::{Redex, RedexError, RedexFileConfig};

    let base = tempfile::tempdir().unwrap();
    let channel = "fuzz/log".parse().unwrap();
    let config = RedexFileConfig::default().with_persistent(true);
    {
        let redex = Redex::with_persistent_dir(base.path()).unwrap();
        let file = redex.open_file(&channel, config.clone()).unwrap();
        for i in 0..6u8 {
            file.append(&[i; 12]).unwrap();
        }
        file.close().unwrap();
    }
    let dir = base.path().join("fuzz/log");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("idx" | "dat" | "ts")
        ) {
            std::fs::remove_file(path).unwrap();
        }
    }
    let redex = Redex::with_persistent_dir(base.path()).unwrap();
    match redex.open_file(&channel, config) {
        Err(RedexError::Corrupt { seq: 0, reason, .. }) => {
            assert!(reason.contains("up to 5 were fsynced"), "{reason}");
        }
        other => panic!("expected Corrupt at seq 0, got {other:?}"),
    }
}

/// Found by the `recovery` target (`regressions/recovery/segment-first-seq-u64-max-*`): a
/// segment file named for a seq near `u64::MAX` overflowed the seq arithmetic of recovery
/// (a panic in debug builds, a wrapped seq in release). It is now `Corrupt`.
#[test]
fn a_segment_named_past_the_largest_first_seq_is_corrupt() {
    use netdb_runtime::redex::{Redex, RedexError, RedexFileConfig};

    let base = tempfile::tempdir().unwrap();
    let channel = "fuzz/log".parse().unwrap();
    let config = RedexFileConfig::default().with_persistent(true);
    {
        let redex = Redex::with_persistent_dir(base.path()).unwrap();
        let file = redex.open_file(&channel, config.clone()).unwrap();
        file.append(b"x").unwrap();
        file.close().unwrap();
    }
    let dir = base.path().join("fuzz/log");
    for ext in ["idx", "dat", "ts"] {
        std::fs::rename(
            dir.join(format!("{:020}.{ext}", 0)),
            dir.join(format!("{}.{ext}", u64::MAX)),
        )
        .unwrap();
    }
    let redex = Redex::with_persistent_dir(base.path()).unwrap();
    match redex.open_file(&channel, config) {
        Err(RedexError::Corrupt { seq, .. }) => assert_eq!(seq, u64::MAX),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Found by the `recovery` target (`regressions/recovery/log-grows-past-the-segment-name-cap`):
/// with segment names capped, a log starting just below the cap could still append past it,
/// and then refused its own segment on the next open. Appends now stop at `SEQ_LIMIT` with
/// `SeqExhausted`, and the log reopens.
#[test]
fn appends_stop_at_the_seq_limit_and_the_log_reopens() {
    use netdb_runtime::redex::format::SEQ_LIMIT;
    use netdb_runtime::redex::{Redex, RedexError, RedexFileConfig};

    let base = tempfile::tempdir().unwrap();
    let channel = "fuzz/log".parse().unwrap();
    let config = RedexFileConfig::default()
        .with_persistent(true)
        .with_segment_max_bytes(16);
    {
        let redex = Redex::with_persistent_dir(base.path()).unwrap();
        redex
            .open_file(&channel, config.clone())
            .unwrap()
            .close()
            .unwrap();
    }
    let dir = base.path().join("fuzz/log");
    for ext in ["idx", "dat", "ts"] {
        std::fs::rename(
            dir.join(format!("{:020}.{ext}", 0)),
            dir.join(format!("{:020}.{ext}", SEQ_LIMIT - 1)),
        )
        .unwrap();
    }
    {
        let redex = Redex::with_persistent_dir(base.path()).unwrap();
        let file = redex.open_file(&channel, config.clone()).unwrap();
        assert_eq!(file.append(&[7; 40]).unwrap(), SEQ_LIMIT - 1);
        match file.append(b"x") {
            Err(RedexError::SeqExhausted { next_seq, .. }) => assert_eq!(next_seq, SEQ_LIMIT),
            other => panic!("expected SeqExhausted, got {other:?}"),
        }
        file.close().unwrap();
    }
    let redex = Redex::with_persistent_dir(base.path()).unwrap();
    let file = redex.open_file(&channel, config).unwrap();
    assert_eq!(file.next_seq(), SEQ_LIMIT);
    let events = file.read_range(SEQ_LIMIT - 1, SEQ_LIMIT).unwrap();
    assert_eq!(&events[0].payload[..], &[7; 40][..]);
}
