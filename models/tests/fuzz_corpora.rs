//! The fuzz corpora of the model targets (`fuzz/corpus/<target>/`) and the inputs of
//! crashes they found (`fuzz/regressions/<target>/`), replayed through the same
//! `netdb_models::fuzzing` functions the fuzz targets call, so a fixed crash cannot come
//! back. The runtime-only targets are replayed by `netdb-runtime/tests/fuzz_corpora.rs`.
//!
//! `write_seed_corpora` (ignored) writes the seed inputs of every target, made from real
//! events, snapshots, bundles and logs: `cargo test -p netdb-models --test fuzz_corpora --
//! --ignored write_seed_corpora`.

use std::path::{Path, PathBuf};

use netdb_models::fuzzing::{self, Note, NotePatch, NoteV1};
use netdb_models::memories::{Memory, MemoryEvent};
use netdb_models::tasks::{Task, TaskEvent};
use netdb_runtime::cortex::{
    BuiltinEvent, CortexAdapter, CortexEvent, CortexModel, EventMeta, ModelPatch, SeqOrTs,
    encode_field,
};
use netdb_runtime::netdb::NetDb;
use netdb_runtime::redex::{FsyncPolicy, Redex, RedexFileConfig};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs `check` on every saved input of the target.
fn replay(target: &str, check: fn(&[u8])) {
    netdb_runtime::fuzzing::replay_saved_inputs(&fuzz_dir(), target, check);
}

#[test]
fn snapshot_corpus() {
    replay("snapshot", fuzzing::snapshot);
}

#[test]
fn bundle_corpus() {
    replay("bundle", fuzzing::bundle);
}

#[test]
fn task_event_corpus() {
    replay("task_event", fuzzing::task_event);
}

#[test]
fn memory_event_corpus() {
    replay("memory_event", fuzzing::memory_event);
}

#[test]
fn builtin_event_corpus() {
    replay("builtin_event", fuzzing::builtin_event);
}

// ---------------------------------------------------------------------------------------
// Seeds

/// Version 1 of `Note` as a model of its own, to write version-1 snapshots and inserts.
mod v1 {
    use netdb_runtime::CortexModel;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, CortexModel)]
    #[cortex(channel = "fuzz/notes")]
    pub struct Note {
        #[cortex(id)]
        pub key: String,
        pub body: String,
        pub rank: u32,
    }
}

struct Seeds {
    target: &'static str,
    n: usize,
}

impl Seeds {
    fn new(target: &'static str) -> Seeds {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        Seeds { target, n: 0 }
    }

    fn add(&mut self, bytes: &[u8]) {
        let path = fuzz_dir()
            .join("corpus")
            .join(self.target)
            .join(format!("seed-{:03}", self.n));
        std::fs::write(path, bytes).unwrap();
        self.n += 1;
    }
}

/// The event-target input of `event`: dispatch code, schema version, body.
fn event_input<M: CortexModel>(event: &M::Event, version: u16) -> Vec<u8> {
    let mut out = event.dispatch().to_le_bytes().to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    event.encode_body(&mut out).unwrap();
    out
}

fn full_event<M: CortexModel>(event: &M::Event, ts: bool) -> Vec<u8> {
    let mut body = Vec::new();
    event.encode_body(&mut body).unwrap();
    EventMeta {
        dispatch: event.dispatch(),
        schema_version: M::SCHEMA.version,
        origin_hash: 0xfeed_f00d,
        seq_or_ts: if ts {
            SeqOrTs::TimestampNs(1_700_000_000_000_000_000)
        } else {
            SeqOrTs::Seq(42)
        },
    }
    .encode(&body)
}

fn task_events() -> Vec<TaskEvent> {
    vec![
        TaskEvent::Create {
            id: 1,
            title: "write the docs".into(),
        },
        TaskEvent::Rename {
            id: 1,
            title: "write the book".into(),
        },
        TaskEvent::Complete { id: 1 },
        TaskEvent::Delete { id: u64::MAX },
    ]
}

fn memory_events() -> Vec<MemoryEvent> {
    let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        MemoryEvent::Store {
            id: 7,
            content: "ship on Friday".into(),
            tags: tags(&["release", "plan"]),
            source: "chat".into(),
        },
        MemoryEvent::Retag {
            id: 7,
            tags: tags(&["done"]),
        },
        MemoryEvent::Pin { id: 7 },
        MemoryEvent::Unpin { id: 7 },
        MemoryEvent::Delete { id: 7 },
    ]
}

fn note(key: &str, rank: u32) -> Note {
    Note {
        key: key.into(),
        body: Some(format!("note {key}")),
        tags: vec!["a".into(), "b".into()],
        rank,
        done: false,
    }
}

fn note_events() -> Vec<BuiltinEvent<Note, NotePatch>> {
    let mut patch = <NotePatch as ModelPatch<Note>>::new("k1".into());
    patch
        .decode_field("rank", &encode_field(&9u32).unwrap())
        .unwrap();
    patch
        .decode_field("done", &encode_field(&true).unwrap())
        .unwrap();
    vec![
        BuiltinEvent::Insert(note("k1", 3)),
        BuiltinEvent::Update(patch),
        BuiltinEvent::Delete("k1".into()),
    ]
}

async fn append_all<M: CortexModel>(adapter: &CortexAdapter<M>, events: &[M::Event]) {
    for e in events {
        adapter.append(e).unwrap();
    }
    adapter.catch_up().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "writes the seed corpora into fuzz/corpus"]
async fn write_seed_corpora() {
    // Model event bodies.
    let mut seeds = Seeds::new("task_event");
    for e in task_events() {
        seeds.add(&event_input::<Task>(&e, 1));
    }
    let mut seeds = Seeds::new("memory_event");
    for e in memory_events() {
        seeds.add(&event_input::<Memory>(&e, 1));
    }
    let mut seeds = Seeds::new("builtin_event");
    for e in note_events() {
        seeds.add(&event_input::<Note>(&e, 2));
    }
    let old = postcard_bytes(&NoteV1 {
        key: "old".into(),
        body: "from version 1".into(),
        rank: 1,
    });
    let mut v1_insert = netdb_runtime::cortex::dispatch::INSERT
        .to_le_bytes()
        .to_vec();
    v1_insert.extend_from_slice(&1u16.to_le_bytes());
    v1_insert.extend_from_slice(&old);
    seeds.add(&v1_insert);

    // Whole events, headers included.
    let mut seeds = Seeds::new("event_meta");
    for (i, e) in task_events().iter().enumerate() {
        seeds.add(&full_event::<Task>(e, i % 2 == 0));
    }
    for e in memory_events().iter().take(2) {
        seeds.add(&full_event::<Memory>(e, true));
    }
    for e in note_events() {
        seeds.add(&full_event::<Note>(&e, false));
    }

    // Snapshots and bundles of real adapters.
    let redex = Redex::new();
    let tasks = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    append_all(&tasks, &task_events()[..2]).await;
    let memories = CortexAdapter::<Memory>::open(&redex, 1).unwrap();
    append_all(&memories, &memory_events()[..3]).await;
    let notes = CortexAdapter::<Note>::open(&redex, 1).unwrap();
    append_all(
        &notes,
        &[
            BuiltinEvent::Insert(note("k1", 3)),
            BuiltinEvent::Insert(note("k2", 1)),
        ],
    )
    .await;
    let mut seeds = Seeds::new("snapshot");
    seeds.add(&tasks.snapshot().unwrap().0);
    seeds.add(&memories.snapshot().unwrap().0);
    seeds.add(&notes.snapshot().unwrap().0);
    let empty = CortexAdapter::<Task>::open(&Redex::new(), 1).unwrap();
    empty.catch_up().await.unwrap();
    seeds.add(&empty.snapshot().unwrap().0);
    let old_redex = Redex::new();
    let old_notes = CortexAdapter::<v1::Note>::open(&old_redex, 1).unwrap();
    append_all(
        &old_notes,
        &[BuiltinEvent::Insert(v1::Note {
            key: "old".into(),
            body: "from version 1".into(),
            rank: 4,
        })],
    )
    .await;
    seeds.add(&old_notes.snapshot().unwrap().0);

    let mut seeds = Seeds::new("bundle");
    let db = NetDb::builder()
        .origin_hash(1)
        .model::<Task>()
        .model::<Memory>()
        .model::<Note>()
        .open(&redex)
        .unwrap();
    seeds.add(&db.snapshot().unwrap());
    let only_tasks = NetDb::builder()
        .model::<Task>()
        .open(&Redex::new())
        .unwrap();
    seeds.add(&only_tasks.snapshot().unwrap());

    // Real log directories, and their index records.
    let mut recovery = Seeds::new("recovery");
    let mut records = Seeds::new("index_record");
    let payloads: Vec<Vec<u8>> = (0..6u8)
        .map(|i| vec![i; [0, 3, 8, 9, 40, 200][usize::from(i)]])
        .collect();
    for (name, config, sweep, tear) in [
        ("clean", RedexFileConfig::default(), false, 0),
        (
            "segments",
            RedexFileConfig::default().with_segment_max_bytes(16),
            false,
            0,
        ),
        (
            "swept",
            RedexFileConfig::default()
                .with_segment_max_bytes(16)
                .with_retention_max_events(2),
            true,
            0,
        ),
        ("torn", RedexFileConfig::default(), false, 7),
        (
            "unsynced",
            RedexFileConfig::default().with_fsync_policy(FsyncPolicy::Never),
            false,
            0,
        ),
    ] {
        let base = tempfile::tempdir().unwrap();
        let redex = Redex::with_persistent_dir(base.path()).unwrap();
        let file = redex
            .open_file(&"fuzz/log".parse().unwrap(), config.with_persistent(true))
            .unwrap();
        if name != "unsynced" {
            for p in &payloads {
                file.append(p).unwrap();
            }
        }
        if sweep {
            file.sweep_retention().unwrap();
        }
        file.close().unwrap();
        drop(file);
        drop(redex);
        let dir = base.path().join("fuzz/log");
        if tear > 0 {
            let idx = dir.join(format!("{:020}.idx", 0));
            let len = std::fs::metadata(&idx).unwrap().len();
            let f = std::fs::OpenOptions::new().write(true).open(&idx).unwrap();
            f.set_len(len - tear).unwrap();
        }
        recovery.add(&netdb_runtime::fuzzing::recovery_input(&dir).unwrap());
        if name == "clean" {
            let idx = std::fs::read(dir.join(format!("{:020}.idx", 0))).unwrap();
            let ts = std::fs::read(dir.join(format!("{:020}.ts", 0))).unwrap();
            let dat = std::fs::read(dir.join(format!("{:020}.dat", 0))).unwrap();
            let mut heap_at = 0usize;
            for (i, p) in payloads.iter().enumerate() {
                let mut input = idx[i * 20..(i + 1) * 20].to_vec();
                input.extend_from_slice(&ts[i * 8..(i + 1) * 8]);
                if p.len() > 8 {
                    input.extend_from_slice(&dat[heap_at..heap_at + p.len()]);
                    heap_at += p.len();
                }
                records.add(&input);
            }
        }
    }
    let _ = (tasks.close(), memories.close(), notes.close());
}

fn postcard_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    netdb_runtime::__private::postcard::to_allocvec(value).unwrap()
}
