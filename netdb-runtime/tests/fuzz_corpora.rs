//! The fuzz corpora of the runtime-only targets (`fuzz/corpus/<target>/`) and the inputs of
//! crashes they found (`fuzz/regressions/<target>/`), replayed through the same
//! `netdb_runtime::fuzzing` functions the fuzz targets call, so a fixed crash cannot come
//! back. The targets that need models are replayed by `models/tests/fuzz_corpora.rs`.

use std::path::{Path, PathBuf};

use netdb_runtime::fuzzing;

/// Runs `check` on every file of the target's corpus and regressions; the corpus must not
/// be empty.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut corpus = 0;
    for (kind, must_exist) in [("corpus", true), ("regressions", false)] {
        let dir = fuzz.join(kind).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{} panics", path.display());
            if kind == "corpus" {
                corpus += 1;
            }
        }
    }
    assert!(corpus > 0, "the {target} corpus is empty");
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

