//! Snapshots and restore: the round trip, every way a snapshot can fail to match its model or
//! its log (with and without the replay fallback), and the NetDb bundle.

mod common;

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::Path;

use common::{
    ALL_STATUSES, Explode, Note, NoteEvent, Status, TASK_V1_FIELDS, Task, TaskEvent, TaskV1,
};
use netdb_runtime::cortex::{
    ApplyError, CortexAdapter, CortexConfig, CortexError, CortexEvent, CortexModel, EventContext,
    EventDecodeError, EventMeta, Field, FoldErrorPolicy, FoldErrors, IdOrder, NoFilter, Query,
    RestoreOutcome, Schema, SnapshotError, SnapshotFallback, SnapshotInfo, TableMut, Watch,
    snapshot,
};
use netdb_runtime::netdb::{NetDb, NetDbBuilder};
use netdb_runtime::redex::{Redex, RedexFileConfig};
use serde::{Deserialize, Serialize};

const TASKS: &str = "cortex/tasks";
const NOTES: &str = "cortex/notes";
const OTHER: &str = "cortex/other";
const SNAPSHOT_MAGIC: &[u8; 8] = b"NDBSNAP\0";
const BUNDLE_MAGIC: &[u8; 8] = b"NDBBUNDL";

// ---------------------------------------------------------------------------------------
// Stand-in models: the same row shape as `TaskV1`, with whatever channel and schema a test
// needs. They write real snapshots through the runtime, so the envelopes are genuine.
// ---------------------------------------------------------------------------------------

/// The channel and schema a [`Legacy`] model declares.
trait Shape: Debug + Clone + PartialEq + Send + Sync + 'static {
    const CHANNEL: &'static str = TASKS;
    const SCHEMA: Schema;
}

/// Task version 1, exactly as the migration expects it.
#[derive(Debug, Clone, PartialEq)]
enum V1 {}
impl Shape for V1 {
    const SCHEMA: Schema = Schema::new(1, TASK_V1_FIELDS);
}

/// "Version 1", but not the fields the migration was written for.
#[derive(Debug, Clone, PartialEq)]
enum V1Drift {}
impl Shape for V1Drift {
    const SCHEMA: Schema = Schema::new(1, V1_DRIFT_FIELDS);
}

/// A version older than any migration.
#[derive(Debug, Clone, PartialEq)]
enum V0 {}
impl Shape for V0 {
    const SCHEMA: Schema = Schema::new(0, TASK_V1_FIELDS);
}

/// Task's current version number with other fields: changed without a schema bump.
#[derive(Debug, Clone, PartialEq)]
enum V2Drift {}
impl Shape for V2Drift {
    const SCHEMA: Schema = Schema::new(2, TASK_V1_FIELDS);
}

/// A version newer than this build's Task.
#[derive(Debug, Clone, PartialEq)]
enum V3 {}
impl Shape for V3 {
    const SCHEMA: Schema = Schema::new(3, V3_FIELDS);
}

/// A model on a channel no test NetDb opens.
#[derive(Debug, Clone, PartialEq)]
enum Other {}
impl Shape for Other {
    const CHANNEL: &'static str = OTHER;
    const SCHEMA: Schema = Schema::new(1, TASK_V1_FIELDS);
}

const V1_DRIFT_FIELDS: &[Field] = &[
    Field {
        name: "id",
        ty: "u64",
    },
    Field {
        name: "title",
        ty: "String",
    },
    Field {
        name: "status",
        ty: "Status",
    },
    Field {
        name: "created_ns",
        ty: "i64",
    },
];

const V3_FIELDS: &[Field] = &[
    Field {
        name: "id",
        ty: "u64",
    },
    Field {
        name: "title",
        ty: "String",
    },
    Field {
        name: "status",
        ty: "Status",
    },
    Field {
        name: "created_ns",
        ty: "u64",
    },
    Field {
        name: "tags",
        ty: "Vec<String>",
    },
    Field {
        name: "priority",
        ty: "u8",
    },
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
struct Legacy<S: Shape> {
    id: u64,
    title: String,
    status: Status,
    created_ns: u64,
    #[serde(skip)]
    shape: PhantomData<S>,
}

impl<S: Shape> Legacy<S> {
    fn new(id: u64) -> Self {
        Legacy {
            id,
            title: format!("legacy {id}"),
            status: ALL_STATUSES[(id % 4) as usize],
            created_ns: 5_000 + id,
            shape: PhantomData,
        }
    }

    fn as_v1(&self) -> TaskV1 {
        TaskV1 {
            id: self.id,
            title: self.title.clone(),
            status: self.status,
            created_ns: self.created_ns,
        }
    }
}

#[derive(Debug)]
struct Put<S: Shape>(Legacy<S>);

impl<S: Shape> CortexEvent<Legacy<S>> for Put<S> {
    fn dispatch(&self) -> u16 {
        1
    }
    fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        *out = postcard::to_extend(&self.0, std::mem::take(out))?;
        Ok(())
    }
    fn decode_body(
        dispatch: u16,
        _schema_version: u16,
        body: &[u8],
    ) -> Result<Self, EventDecodeError> {
        if dispatch != 1 {
            return Err(EventDecodeError::UnknownDispatch(dispatch));
        }
        postcard::from_bytes(body)
            .map(Put)
            .map_err(|source| EventDecodeError::Body { dispatch, source })
    }
    fn apply(self, t: &mut TableMut<'_, Legacy<S>>, _: &EventContext) -> Result<(), ApplyError> {
        t.insert(self.0);
        Ok(())
    }
}

impl<S: Shape> CortexModel for Legacy<S> {
    type Id = u64;
    type Event = Put<S>;
    type Filter = NoFilter;
    type OrderBy = IdOrder;
    type Indexes = ();
    type Query<'a> = Query<'a, Self>;
    type Watch = Watch<Self>;
    const CHANNEL: &'static str = S::CHANNEL;
    const SCHEMA: Schema = S::SCHEMA;
    fn id(&self) -> &u64 {
        &self.id
    }
}

/// Writes `n` rows of model `Legacy<S>` to `redex` and returns its snapshot.
async fn legacy_snapshot<S: Shape>(redex: &Redex, n: u64) -> (Vec<u8>, Option<u64>) {
    let a = CortexAdapter::<Legacy<S>>::open(redex, 7).unwrap();
    let events: Vec<Put<S>> = (0..n).map(|i| Put(Legacy::new(i))).collect();
    let seqs = a.append_batch(&events).unwrap();
    a.wait_for_seq(seqs.end - 1).await.unwrap();
    a.snapshot().unwrap()
}

// ---------------------------------------------------------------------------------------
// The envelope, rebuilt from the layout documented in `cortex/snapshot.rs`.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    format: u8,
    channel: String,
    schema_version: u16,
    fingerprint: u64,
    last_seq: Option<u64>,
    rows: u64,
    body_len: u64,
    crc32c: u32,
}

/// The envelope checksum: the header with a zero checksum field, then the body.
fn checksum(header: &Header, body: &[u8]) -> u32 {
    let zeroed = Header {
        crc32c: 0,
        ..header.clone()
    };
    let head = postcard::to_stdvec(&zeroed).unwrap();
    crc32c::crc32c_append(crc32c::crc32c(&head), body)
}

/// Magic, then `header` exactly as given, then `body`.
fn envelope(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut out = postcard::to_extend(header, SNAPSHOT_MAGIC.to_vec()).unwrap();
    out.extend_from_slice(body);
    out
}

/// A well-formed envelope (length and checksum computed) around `body`.
fn sealed(
    channel: &str,
    schema_version: u16,
    fingerprint: u64,
    last_seq: Option<u64>,
    rows: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut header = Header {
        format: 1,
        channel: channel.to_owned(),
        schema_version,
        fingerprint,
        last_seq,
        rows,
        body_len: body.len() as u64,
        crc32c: 0,
    };
    header.crc32c = checksum(&header, body);
    envelope(&header, body)
}

/// Splits an envelope into its header and body.
fn parse(bytes: &[u8]) -> (Header, &[u8]) {
    let rest = bytes.strip_prefix(SNAPSHOT_MAGIC.as_slice()).unwrap();
    postcard::take_from_bytes::<Header>(rest).unwrap()
}

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

fn rows<M: CortexModel>(a: &CortexAdapter<M>) -> Vec<M> {
    a.state().read().iter().cloned().collect()
}

/// Waits until `a` has folded everything its log holds.
async fn caught_up<M: CortexModel>(a: &CortexAdapter<M>) {
    let next = a.log().next_seq();
    if next > 0 {
        a.wait_for_seq(next - 1).await.unwrap();
    }
}

/// The state a fresh adapter reaches by replaying the whole log. The adapter is dropped, not
/// closed: closing would close the log the caller still uses.
async fn replayed<M: CortexModel>(redex: &Redex, config: CortexConfig) -> Vec<M> {
    let a = CortexAdapter::<M>::open_with_config(redex, 99, config).unwrap();
    assert_eq!(a.restore_outcome(), &RestoreOutcome::Fresh);
    caught_up(&a).await;
    rows(&a)
}

fn task_script(ids: Range<u64>) -> Vec<TaskEvent> {
    let mut events: Vec<TaskEvent> = ids
        .clone()
        .map(|i| {
            TaskEvent::create(
                i,
                &format!("task {i}"),
                ALL_STATUSES[(i % 4) as usize],
                1_000 - i,
                &["a"],
            )
        })
        .collect();
    events.extend(ids.clone().step_by(3).map(|id| TaskEvent::Tag {
        id,
        tag: "three".into(),
    }));
    events.extend(ids.clone().step_by(5).map(|id| TaskEvent::Rename {
        id,
        title: format!("renamed {id}"),
    }));
    events.extend(ids.step_by(7).map(|id| TaskEvent::Delete { id }));
    events
}

/// Appends creates, tags, renames and deletes for `ids`; returns the last seq once folded.
async fn write_tasks(a: &CortexAdapter<Task>, ids: Range<u64>) -> u64 {
    let seqs = a.append_batch(&task_script(ids)).unwrap();
    a.wait_for_seq(seqs.end - 1).await.unwrap();
    seqs.end - 1
}

fn note(i: u64, text: &str) -> Note {
    Note {
        id: format!("n{i:03}"),
        text: text.to_owned(),
    }
}

async fn write_notes(a: &CortexAdapter<Note>, ids: Range<u64>) -> u64 {
    let events: Vec<NoteEvent> = ids
        .map(|i| NoteEvent::Put(note(i, &format!("note {i}"))))
        .collect();
    let seqs = a.append_batch(&events).unwrap();
    a.wait_for_seq(seqs.end - 1).await.unwrap();
    seqs.end - 1
}

/// An in-memory Redex whose task log holds the events for ids `0..n`, and its last seq.
async fn task_log(n: u64) -> (Redex, u64) {
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    let last = write_tasks(&a, 0..n).await;
    (redex, last)
}

/// A task snapshot taken on its own log: the Redex, the bytes and their last seq.
async fn task_snapshot(n: u64) -> (Redex, Vec<u8>, Option<u64>) {
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    write_tasks(&a, 0..n).await;
    let (bytes, last) = a.snapshot().unwrap();
    (redex, bytes, last)
}

fn restore<M: CortexModel>(
    redex: &Redex,
    bytes: &[u8],
    last_seq: Option<u64>,
) -> Result<CortexAdapter<M>, CortexError> {
    CortexAdapter::<M>::open_from_snapshot(redex, 1, bytes, last_seq)
}

fn replay_config() -> CortexConfig {
    CortexConfig::default().with_snapshot_fallback(SnapshotFallback::Replay)
}

#[track_caller]
fn snap_err<T: Debug>(r: Result<T, CortexError>) -> SnapshotError {
    match r {
        Err(CortexError::Snapshot(e)) => e,
        other => panic!("expected a snapshot error, got {other:?}"),
    }
}

/// Restoring `bytes` as `M` on `redex` fails (default config: `SnapshotFallback::Fail`);
/// with `SnapshotFallback::Replay` it replays the log instead, says why, and reaches the
/// state of a full replay. Returns the error for the caller to examine.
async fn refused_then_replayed<M: CortexModel>(
    redex: &Redex,
    bytes: &[u8],
    last_seq: Option<u64>,
) -> SnapshotError {
    let err = snap_err(restore::<M>(redex, bytes, last_seq));
    let a = CortexAdapter::<M>::open_from_snapshot_with_config(
        redex,
        1,
        bytes,
        last_seq,
        replay_config(),
    )
    .unwrap();
    match a.restore_outcome() {
        RestoreOutcome::Replayed { reason } => assert_eq!(reason, &err.to_string()),
        other => panic!("expected Replayed, got {other:?}"),
    }
    caught_up(&a).await;
    assert_eq!(
        rows(&a),
        replayed::<M>(redex, CortexConfig::default()).await
    );
    err
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn hex(fingerprint: u64) -> String {
    format!("{fingerprint:#018x}")
}

fn assert_info(info: &SnapshotInfo, channel: &str, schema: Schema, last: Option<u64>, n: usize) {
    assert_eq!(info.channel, channel);
    assert_eq!(info.schema_version, schema.version);
    assert_eq!(info.fingerprint, schema.fingerprint);
    assert_eq!(info.last_seq, last);
    assert_eq!(info.rows, n as u64);
}

// ---------------------------------------------------------------------------------------
// 1. Round trips.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn round_trip_on_the_same_in_memory_log() {
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    let last = write_tasks(&a, 0..40).await;
    let before = rows(&a);
    let (bytes, seq) = a.snapshot().unwrap();
    assert_eq!(seq, Some(last));

    let info = snapshot::inspect(&bytes).unwrap();
    assert_info(&info, TASKS, Task::SCHEMA, Some(last), before.len());

    // Dropping (not closing) the adapter leaves the log open in the Redex: the restore
    // gets the same log back.
    drop(a);
    let b = restore::<Task>(&redex, &bytes, seq).unwrap();
    assert_eq!(b.restore_outcome(), &RestoreOutcome::Snapshot(info));
    assert_eq!(b.folded_through_seq(), Some(last));
    assert_eq!(rows(&b), before);
    {
        // The indexes are rebuilt from the rows.
        let state = b.state();
        let t = state.read();
        let tagged = before
            .iter()
            .filter(|t| t.tags.iter().any(|g| g == "three"))
            .count();
        assert_eq!(t.query().where_tag("three").count(), tagged);
        let done = before.iter().filter(|t| t.status == Status::Done).count();
        assert_eq!(t.query().where_status(Status::Done).count(), done);
    }

    // It folds what is appended next, and matches a full replay.
    let last2 = write_tasks(&b, 40..60).await;
    assert_eq!(b.folded_through_seq(), Some(last2));
    assert_eq!(
        rows(&b),
        replayed::<Task>(&redex, CortexConfig::default()).await
    );

    // A snapshot of the restored adapter restores too.
    let (bytes2, seq2) = b.snapshot().unwrap();
    assert_eq!(seq2, Some(last2));
    let c = restore::<Task>(&redex, &bytes2, seq2).unwrap();
    assert_eq!(rows(&c), rows(&b));
}

#[tokio::test]
async fn restore_folds_only_the_events_after_the_snapshot() {
    let redex = Redex::new();
    let tolerant = CortexConfig::default().with_fold_error_policy(FoldErrorPolicy::LogAndContinue);
    let a = CortexAdapter::<Task>::open_with_config(&redex, 1, tolerant.clone()).unwrap();
    // A poison event at seq 0: a fold with the default Stop policy that reads it stops.
    let poison = a
        .append(&TaskEvent::Explode {
            id: 500,
            how: Explode::Reject,
        })
        .unwrap();
    assert_eq!(poison, 0);
    let last = write_tasks(&a, 0..20).await;
    assert_eq!(a.fold_errors().skipped, 1);
    let (bytes, seq) = a.snapshot().unwrap();
    drop(a);

    // A replay with the default policy stops on it...
    let fresh = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    match fresh.wait_for_seq(last).await {
        Err(CortexError::FoldStopped { error, .. }) => assert_eq!(error.seq, 0),
        other => panic!("expected the replay to stop at seq 0, got {other:?}"),
    }
    drop(fresh);

    // ...a restore with the same policy starts after the snapshot and never reads it.
    let b = restore::<Task>(&redex, &bytes, seq).unwrap();
    let last2 = write_tasks(&b, 20..30).await;
    assert_eq!(b.folded_through_seq(), Some(last2));
    assert_eq!(b.fold_errors(), FoldErrors::default());
    assert!(b.is_folding());
    assert_eq!(rows(&b), replayed::<Task>(&redex, tolerant).await);
}

#[tokio::test]
async fn round_trip_on_a_persistent_log_across_close_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let a = CortexAdapter::<Task>::open_with_config(&redex, 1, disk()).unwrap();
    let last = write_tasks(&a, 0..30).await;
    let (bytes, seq) = a.snapshot().unwrap();
    let before = rows(&a);
    a.close().unwrap();

    // After close the Redex no longer holds the file; reopening recovers it from disk.
    let b = CortexAdapter::<Task>::open_from_snapshot_with_config(&redex, 1, &bytes, seq, disk())
        .unwrap();
    match b.restore_outcome() {
        RestoreOutcome::Snapshot(info) => {
            assert_info(info, TASKS, Task::SCHEMA, Some(last), before.len())
        }
        other => panic!("expected Snapshot, got {other:?}"),
    }
    assert_eq!(b.log().next_seq(), last + 1);
    assert_eq!(rows(&b), before);
    let last2 = write_tasks(&b, 30..45).await;
    let after = rows(&b);
    b.close().unwrap();
    drop(b);
    drop(redex);

    // A new Redex on the directory: a process restart. The old snapshot still restores,
    // and the fold catches up on everything written after it.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let c = CortexAdapter::<Task>::open_from_snapshot_with_config(&redex, 1, &bytes, seq, disk())
        .unwrap();
    caught_up(&c).await;
    assert_eq!(c.folded_through_seq(), Some(last2));
    assert_eq!(rows(&c), after);
    assert_eq!(rows(&c), replayed::<Task>(&redex, disk()).await);
    c.close().unwrap();
}

#[tokio::test]
async fn an_in_memory_log_closed_and_reopened_is_a_new_empty_log() {
    let redex = Redex::new();
    let a = CortexAdapter::<Task>::open(&redex, 1).unwrap();
    let last = write_tasks(&a, 0..10).await;
    let (bytes, seq) = a.snapshot().unwrap();
    // close() closes the log too; an in-memory log's events go with it.
    a.close().unwrap();
    let err = snap_err(restore::<Task>(&redex, &bytes, seq));
    assert!(
        matches!(
            &err,
            SnapshotError::AheadOfLog { channel, last_seq, log_next: 0 }
                if channel == TASKS && *last_seq == last
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_empty_snapshot_round_trips_and_folds_the_whole_log() {
    let scratch = Redex::new();
    let empty = CortexAdapter::<Task>::open(&scratch, 1).unwrap();
    let (bytes, seq) = empty.snapshot().unwrap();
    assert_eq!(seq, None);
    let info = snapshot::inspect(&bytes).unwrap();
    assert_info(&info, TASKS, Task::SCHEMA, None, 0);

    let (redex, last) = task_log(15).await;
    let b = restore::<Task>(&redex, &bytes, None).unwrap();
    assert_eq!(b.restore_outcome(), &RestoreOutcome::Snapshot(info));
    caught_up(&b).await;
    assert_eq!(b.folded_through_seq(), Some(last));
    assert_eq!(
        rows(&b),
        replayed::<Task>(&redex, CortexConfig::default()).await
    );
}

#[tokio::test]
async fn the_envelope_has_the_documented_layout() {
    let (redex, bytes, seq) = task_snapshot(25).await;
    let a = restore::<Task>(&redex, &bytes, seq).unwrap();
    let table = rows(&a);
    let (header, body) = parse(&bytes);
    assert_eq!(
        header,
        Header {
            format: 1,
            channel: TASKS.into(),
            schema_version: 2,
            fingerprint: Task::SCHEMA.fingerprint,
            last_seq: seq,
            rows: table.len() as u64,
            body_len: body.len() as u64,
            crc32c: checksum(&header, body),
        }
    );
    assert_eq!(body, postcard::to_stdvec(&table).unwrap());
    // Rebuilt by hand, byte for byte.
    let rebuilt = sealed(
        TASKS,
        2,
        Task::SCHEMA.fingerprint,
        seq,
        table.len() as u64,
        &postcard::to_stdvec(&table).unwrap(),
    );
    assert_eq!(rebuilt, bytes);
}

// ---------------------------------------------------------------------------------------
// 2. Not a snapshot, damaged, unsupported format.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn bytes_that_are_not_a_snapshot() {
    let (redex, _) = task_log(10).await;
    let mut bundle_like = BUNDLE_MAGIC.to_vec();
    bundle_like.extend_from_slice(&noise(40, 3));
    let cases = [
        Vec::new(),
        vec![0],
        noise(64, 1),
        noise(4096, 2),
        SNAPSHOT_MAGIC[..7].to_vec(),
        b"ndbsnap\0\x01".to_vec(),
        bundle_like,
    ];
    for bytes in cases {
        let e = snapshot::inspect(&bytes).unwrap_err();
        assert!(matches!(e, SnapshotError::NotASnapshot), "{e:?}");
        assert!(e.to_string().contains("not a netdb snapshot"), "{e}");
        for last in [None, Some(0)] {
            let e = refused_then_replayed::<Task>(&redex, &bytes, last).await;
            assert!(matches!(e, SnapshotError::NotASnapshot), "{e:?}");
        }
    }
}

#[tokio::test]
async fn every_truncation_is_a_typed_error() {
    let (redex, bytes, seq) = task_snapshot(25).await;
    for len in 0..bytes.len() {
        let cut = &bytes[..len];
        let e = snapshot::inspect(cut).unwrap_err();
        let restored = snap_err(restore::<Task>(&redex, cut, seq));
        if len < SNAPSHOT_MAGIC.len() {
            assert!(matches!(e, SnapshotError::NotASnapshot), "{len}: {e:?}");
            assert!(
                matches!(restored, SnapshotError::NotASnapshot),
                "{len}: {restored:?}"
            );
        } else {
            assert!(matches!(e, SnapshotError::Corrupt { .. }), "{len}: {e:?}");
            assert!(
                matches!(restored, SnapshotError::Corrupt { .. }),
                "{len}: {restored:?}"
            );
            assert!(e.to_string().contains("damaged"), "{e}");
        }
    }
    // A sample of them through the fallback.
    for len in (0..bytes.len()).step_by(13) {
        refused_then_replayed::<Task>(&redex, &bytes[..len], seq).await;
    }
    // Exactly the magic: ends after it.
    let e = snapshot::inspect(SNAPSHOT_MAGIC).unwrap_err();
    assert!(
        matches!(&e, SnapshotError::Corrupt { reason } if reason.contains("after the magic")),
        "{e:?}"
    );
    // Trailing bytes: the body is longer than the header says.
    let mut long = bytes.clone();
    long.push(0);
    let e = refused_then_replayed::<Task>(&redex, &long, seq).await;
    assert!(
        matches!(&e, SnapshotError::Corrupt { reason } if reason.contains("body is")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_flipped_body_byte_fails_the_checksum() {
    let (redex, bytes, seq) = task_snapshot(20).await;
    let (header, body) = parse(&bytes);
    let body_start = bytes.len() - body.len();
    assert_eq!(header.body_len as usize, body.len());
    for i in body_start..bytes.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            let e = snapshot::inspect(&bad).unwrap_err();
            assert!(
                matches!(&e, SnapshotError::Corrupt { reason } if reason.contains("checksum")),
                "{i}: {e:?}"
            );
            let e = snap_err(restore::<Task>(&redex, &bad, seq));
            assert!(matches!(e, SnapshotError::Corrupt { .. }), "{i}: {e:?}");
        }
    }
    let mut bad = bytes.clone();
    bad[body_start + body.len() / 2] ^= 0x40;
    let e = refused_then_replayed::<Task>(&redex, &bad, seq).await;
    assert!(e.to_string().contains("checksum"), "{e}");
}

#[tokio::test]
async fn no_single_byte_change_restores() {
    let (redex, bytes, seq) = task_snapshot(12).await;
    for i in 0..bytes.len() {
        for mask in [0x01, 0x02, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            // A typed error whatever the byte: never a panic, never a silent restore.
            snap_err(restore::<Task>(&redex, &bad, seq));
        }
    }
}

#[tokio::test]
async fn a_damaged_header_is_refused() {
    let (redex, bytes, seq) = task_snapshot(10).await;
    let (header, body) = parse(&bytes);
    // Any header field changed without resealing fails the checksum.
    let unsealed = envelope(
        &Header {
            last_seq: seq.map(|s| s - 1),
            ..header.clone()
        },
        body,
    );
    let e = snap_err(restore::<Task>(&redex, &unsealed, seq.map(|s| s - 1)));
    assert!(
        matches!(&e, SnapshotError::Corrupt { reason } if reason.contains("checksum")),
        "{e:?}"
    );
    // The row count disagrees with the body (resealed, so only the count is wrong).
    let mut more = Header {
        rows: header.rows + 1,
        ..header.clone()
    };
    more.crc32c = checksum(&more, body);
    let more_rows = envelope(&more, body);
    let e = refused_then_replayed::<Task>(&redex, &more_rows, seq).await;
    let expected = format!(
        "holds {} rows, the header says {}",
        header.rows,
        header.rows + 1
    );
    assert!(
        matches!(&e, SnapshotError::Corrupt { reason } if reason.contains(&expected)),
        "{e:?}"
    );
    // The body length disagrees with the bytes.
    for body_len in [header.body_len - 1, header.body_len + 1, 0, u64::MAX] {
        let bad = envelope(
            &Header {
                body_len,
                ..header.clone()
            },
            body,
        );
        let e = snap_err(restore::<Task>(&redex, &bad, seq));
        assert!(
            matches!(&e, SnapshotError::Corrupt { reason } if reason.contains("the header says")),
            "{e:?}"
        );
    }
    // The checksum is wrong.
    let bad = envelope(
        &Header {
            crc32c: header.crc32c ^ 1,
            ..header.clone()
        },
        body,
    );
    let e = snap_err(restore::<Task>(&redex, &bad, seq));
    assert!(
        matches!(&e, SnapshotError::Corrupt { reason } if reason.contains("checksum")),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_unknown_format_byte_is_unsupported() {
    let (redex, bytes, seq) = task_snapshot(10).await;
    assert_eq!(bytes[8], 1, "the format byte follows the magic");
    for found in [0u8, 2, 0x7f, 0xff] {
        let mut bad = bytes.clone();
        bad[8] = found;
        let e = snapshot::inspect(&bad).unwrap_err();
        assert!(
            matches!(
                e,
                SnapshotError::UnsupportedFormat { found: f, supported: 1 } if f == found
            ),
            "{e:?}"
        );
        let e = refused_then_replayed::<Task>(&redex, &bad, seq).await;
        let msg = e.to_string();
        assert!(msg.contains(&format!("format {found}")), "{msg}");
        assert!(msg.contains("reads 1"), "{msg}");
    }
    // Only the format byte after the magic: still reported as a format, not as damage.
    let mut short = SNAPSHOT_MAGIC.to_vec();
    short.push(9);
    assert!(matches!(
        snapshot::inspect(&short),
        Err(SnapshotError::UnsupportedFormat {
            found: 9,
            supported: 1
        })
    ));
}

// ---------------------------------------------------------------------------------------
// 3.–4. Wrong model, schema changes, migrations, versions.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_snapshot_of_another_model_is_refused() {
    let scratch = Redex::new();
    let notes = CortexAdapter::<Note>::open(&scratch, 1).unwrap();
    write_notes(&notes, 0..5).await;
    let (note_bytes, note_seq) = notes.snapshot().unwrap();

    let (redex, _) = task_log(10).await;
    let e = refused_then_replayed::<Task>(&redex, &note_bytes, note_seq).await;
    assert!(
        matches!(&e, SnapshotError::WrongModel { expected, found } if expected == TASKS && found == NOTES),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(TASKS) && msg.contains(NOTES), "{msg}");

    // And the other way round.
    let (_, task_bytes, task_seq) = task_snapshot(10).await;
    let e = snap_err(restore::<Note>(&scratch, &task_bytes, task_seq));
    assert!(
        matches!(&e, SnapshotError::WrongModel { expected, found } if expected == NOTES && found == TASKS),
        "{e:?}"
    );
}

#[tokio::test]
async fn same_version_with_other_fields_is_a_schema_change() {
    let scratch = Redex::new();
    let (bytes, seq) = legacy_snapshot::<V2Drift>(&scratch, 6).await;
    let info = snapshot::inspect(&bytes).unwrap();
    assert_info(&info, TASKS, V2Drift::SCHEMA, seq, 6);
    assert_eq!(info.schema_version, Task::SCHEMA.version);
    assert_ne!(info.fingerprint, Task::SCHEMA.fingerprint);

    let (redex, _) = task_log(10).await;
    let e = refused_then_replayed::<Task>(&redex, &bytes, seq).await;
    match &e {
        SnapshotError::SchemaChanged {
            channel,
            version,
            expected,
            found,
        } => {
            assert_eq!(channel, TASKS);
            assert_eq!(*version, 2);
            assert_eq!(*expected, Task::SCHEMA.fingerprint);
            assert_eq!(*found, V2Drift::SCHEMA.fingerprint);
        }
        other => panic!("expected SchemaChanged, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("schema version 2"), "{msg}");
    assert!(msg.contains(&hex(Task::SCHEMA.fingerprint)), "{msg}");
    assert!(msg.contains(&hex(V2Drift::SCHEMA.fingerprint)), "{msg}");
}

#[tokio::test]
async fn a_version_1_snapshot_migrates() {
    // The upgrade path: version 1 wrote the log and the snapshot; this build restores it.
    let redex = Redex::new();
    let (bytes, seq) = legacy_snapshot::<V1>(&redex, 12).await;
    let info = snapshot::inspect(&bytes).unwrap();
    assert_info(&info, TASKS, Schema::new(1, TASK_V1_FIELDS), seq, 12);

    let a = restore::<Task>(&redex, &bytes, seq).unwrap();
    // The outcome reports the snapshot as it was written.
    assert_eq!(a.restore_outcome(), &RestoreOutcome::Snapshot(info));
    let expected: Vec<Task> = (0..12)
        .map(|i| Task::from(Legacy::<V1>::new(i).as_v1()))
        .collect();
    assert!(expected.iter().all(|t| t.tags.is_empty()));
    assert_eq!(rows(&a), expected);
    {
        // Indexes are built for the migrated rows.
        let state = a.state();
        let t = state.read();
        assert_eq!(t.query().where_status(Status::Pending).count(), 3);
    }

    // Events of the current version fold on top of the migrated rows.
    let seq_tag = a
        .append(&TaskEvent::Tag {
            id: 3,
            tag: "new".into(),
        })
        .unwrap();
    a.append(&TaskEvent::create(100, "fresh", Status::Active, 1, &["x"]))
        .unwrap();
    caught_up(&a).await;
    assert_eq!(seq_tag, seq.unwrap() + 1);
    let state = a.state();
    assert_eq!(state.read().find_unique(&3).unwrap().tags, ["new"]);
    assert_eq!(state.read().len(), 13);

    // A new snapshot is written at the current version and restores without migrating.
    let (bytes2, seq2) = a.snapshot().unwrap();
    let info2 = snapshot::inspect(&bytes2).unwrap();
    assert_info(&info2, TASKS, Task::SCHEMA, seq2, 13);
    let b = restore::<Task>(&redex, &bytes2, seq2).unwrap();
    assert_eq!(rows(&b), rows(&a));
}

#[tokio::test]
async fn a_version_1_snapshot_with_other_fields_is_a_migration_mismatch() {
    let scratch = Redex::new();
    let (bytes, seq) = legacy_snapshot::<V1Drift>(&scratch, 6).await;
    let (redex, _) = task_log(10).await;
    let e = refused_then_replayed::<Task>(&redex, &bytes, seq).await;
    let v1 = Schema::new(1, TASK_V1_FIELDS).fingerprint;
    match &e {
        SnapshotError::MigrationMismatch {
            channel,
            version,
            expected,
            found,
        } => {
            assert_eq!(channel, TASKS);
            assert_eq!(*version, 1);
            assert_eq!(*expected, v1);
            assert_eq!(*found, V1Drift::SCHEMA.fingerprint);
        }
        other => panic!("expected MigrationMismatch, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("schema version 1"), "{msg}");
    assert!(msg.contains("migration from version 1"), "{msg}");
    assert!(msg.contains(&hex(v1)), "{msg}");
    assert!(msg.contains(&hex(V1Drift::SCHEMA.fingerprint)), "{msg}");
}

#[tokio::test]
async fn an_older_version_without_a_migration_is_refused() {
    let scratch = Redex::new();
    let (bytes, seq) = legacy_snapshot::<V0>(&scratch, 6).await;
    let (redex, _) = task_log(10).await;
    let e = refused_then_replayed::<Task>(&redex, &bytes, seq).await;
    assert!(
        matches!(
            &e,
            SnapshotError::NoMigration { channel, found: 0, current: 2 } if channel == TASKS
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("schema version 0"), "{msg}");
    assert!(msg.contains("version 2"), "{msg}");
    assert!(msg.contains("no migration from 0"), "{msg}");
}

#[tokio::test]
async fn a_newer_version_is_refused() {
    let scratch = Redex::new();
    let (bytes, seq) = legacy_snapshot::<V3>(&scratch, 6).await;
    let (redex, _) = task_log(10).await;
    let e = refused_then_replayed::<Task>(&redex, &bytes, seq).await;
    assert!(
        matches!(
            &e,
            SnapshotError::NewerVersion { channel, found: 3, current: 2 } if channel == TASKS
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("schema version 3"), "{msg}");
    assert!(msg.contains("build's 2"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// 5. The snapshot against its log.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_last_seq_other_than_the_recorded_one_is_refused() {
    let (redex, bytes, seq) = task_snapshot(10).await;
    let last = seq.unwrap();
    for given in [Some(last + 1), Some(last - 1), Some(0), None] {
        let e = refused_then_replayed::<Task>(&redex, &bytes, given).await;
        assert!(
            matches!(
                e,
                SnapshotError::SeqMismatch { given: g, recorded: Some(r) } if g == given && r == last
            ),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains(&format!("{given:?}")), "{msg}");
        assert!(msg.contains(&format!("{seq:?}")), "{msg}");
    }
    // An empty snapshot records None.
    let empty = CortexAdapter::<Task>::open(&Redex::new(), 1).unwrap();
    let (bytes, none) = empty.snapshot().unwrap();
    assert_eq!(none, None);
    let e = refused_then_replayed::<Task>(&redex, &bytes, Some(0)).await;
    assert!(
        matches!(
            e,
            SnapshotError::SeqMismatch {
                given: Some(0),
                recorded: None
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_snapshot_ahead_of_its_log_is_refused() {
    let (_, bytes, seq) = task_snapshot(10).await;
    let last = seq.unwrap();

    // A fresh, empty log.
    let empty = Redex::new();
    let e = refused_then_replayed::<Task>(&empty, &bytes, seq).await;
    assert!(
        matches!(
            &e,
            SnapshotError::AheadOfLog { channel, last_seq, log_next: 0 }
                if channel == TASKS && *last_seq == last
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(&format!("through seq {last}")), "{msg}");
    assert!(msg.contains("before seq 0"), "{msg}");

    // A log one event short.
    let short = Redex::new();
    let a = CortexAdapter::<Task>::open(&short, 1).unwrap();
    let script = task_script(0..10);
    assert_eq!(script.len() as u64, last + 1);
    a.append_batch(&script[..script.len() - 1]).unwrap();
    let e = refused_then_replayed::<Task>(&short, &bytes, seq).await;
    assert!(
        matches!(
            &e,
            SnapshotError::AheadOfLog { last_seq, log_next, .. }
                if *last_seq == last && *log_next == last
        ),
        "{e:?}"
    );

    // Exactly as long as the snapshot: restores.
    a.append(script.last().unwrap()).unwrap();
    let b = restore::<Task>(&short, &bytes, seq).unwrap();
    assert!(matches!(b.restore_outcome(), RestoreOutcome::Snapshot(_)));
    assert_eq!(
        rows(&b),
        replayed::<Task>(&short, CortexConfig::default()).await
    );
}

#[tokio::test]
async fn a_snapshot_recording_the_largest_seq_is_ahead_of_any_log() {
    // The header is not covered by the checksum: a damaged or hostile envelope can record
    // any last_seq. It must be refused with a typed error, not a panic (debug) or a wrapped
    // `from = 0` that restores it (release).
    let (redex, _) = task_log(3).await;
    let bytes = sealed(TASKS, 2, Task::SCHEMA.fingerprint, Some(u64::MAX), 0, &[0]);
    let e = refused_then_replayed::<Task>(&redex, &bytes, Some(u64::MAX)).await;
    assert!(
        matches!(
            &e,
            SnapshotError::AheadOfLog {
                last_seq: u64::MAX,
                ..
            }
        ),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 6. The replay fallback.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn replay_fallback_rebuilds_from_the_log_and_says_why() {
    let scratch = Redex::new();
    let (bytes, seq) = legacy_snapshot::<V3>(&scratch, 4).await;
    let (redex, _) = task_log(20).await;

    let a = CortexAdapter::<Task>::open_from_snapshot_with_config(
        &redex,
        1,
        &bytes,
        seq,
        replay_config(),
    )
    .unwrap();
    match a.restore_outcome() {
        RestoreOutcome::Replayed { reason } => {
            assert!(reason.contains("schema version 3"), "{reason}");
            assert!(reason.contains("newer than this build's 2"), "{reason}");
        }
        other => panic!("expected Replayed, got {other:?}"),
    }
    caught_up(&a).await;
    let full = replayed::<Task>(&redex, CortexConfig::default()).await;
    assert_eq!(rows(&a), full);
    // None of the snapshot's rows leak in.
    assert!(rows(&a).iter().all(|t| !t.title.starts_with("legacy")));
    // It keeps folding.
    let last = write_tasks(&a, 20..25).await;
    assert_eq!(a.folded_through_seq(), Some(last));

    // With a snapshot that fits, the fallback is not used.
    let (good, good_seq) = a.snapshot().unwrap();
    let b = CortexAdapter::<Task>::open_from_snapshot_with_config(
        &redex,
        1,
        &good,
        good_seq,
        replay_config(),
    )
    .unwrap();
    assert!(
        matches!(b.restore_outcome(), RestoreOutcome::Snapshot(i) if i.last_seq == Some(last)),
        "{:?}",
        b.restore_outcome()
    );
    assert_eq!(rows(&b), rows(&a));
}

// ---------------------------------------------------------------------------------------
// 7. Bodies that do not decode.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_envelope_whose_rows_do_not_decode() {
    let (redex, _) = task_log(10).await;
    let fp = Task::SCHEMA.fingerprint;

    // A hand-built envelope with good rows restores: the builder is right.
    let good_rows: Vec<Task> = (0..3)
        .map(|i| Task {
            id: i,
            title: format!("hand {i}"),
            status: Status::Active,
            created_ns: i,
            tags: vec!["h".into()],
        })
        .collect();
    let good = sealed(
        TASKS,
        2,
        fp,
        Some(4),
        3,
        &postcard::to_stdvec(&good_rows).unwrap(),
    );
    let a = restore::<Task>(&redex, &good, Some(4)).unwrap();
    assert_eq!(a.folded_through_seq(), Some(4));
    drop(a);

    let bodies: [(&str, Vec<u8>); 4] = [
        ("truncated row", vec![3, 0xff, 0xff, 0xff]),
        ("empty body", Vec::new()),
        ("huge length", postcard::to_stdvec(&u64::MAX).unwrap()),
        ("noise", noise(200, 9)),
    ];
    for (what, body) in &bodies {
        let bad = sealed(TASKS, 2, fp, Some(4), 3, body);
        assert!(
            snapshot::inspect(&bad).is_ok(),
            "{what}: the envelope is fine"
        );
        let e = refused_then_replayed::<Task>(&redex, &bad, Some(4)).await;
        assert!(
            matches!(&e, SnapshotError::Decode { channel, version: 2, .. } if channel == TASKS),
            "{what}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("schema version 2"), "{msg}");
        assert!(msg.contains("do not decode"), "{msg}");
    }

    // Through the migration: version 1 rows that do not decode.
    let v1 = Schema::new(1, TASK_V1_FIELDS).fingerprint;
    for (what, body) in &bodies {
        let bad = sealed(TASKS, 1, v1, Some(4), 3, body);
        let e = refused_then_replayed::<Task>(&redex, &bad, Some(4)).await;
        assert!(
            matches!(&e, SnapshotError::Decode { version: 1, .. }),
            "{what}: {e:?}"
        );
    }

    // Rows that decode, but not as many as the header says.
    let bad = sealed(
        TASKS,
        2,
        fp,
        Some(4),
        7,
        &postcard::to_stdvec(&good_rows).unwrap(),
    );
    let e = refused_then_replayed::<Task>(&redex, &bad, Some(4)).await;
    assert!(
        matches!(&e, SnapshotError::Corrupt { reason } if reason.contains("holds 3 rows, the header says 7")),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 8. NetDb.
// ---------------------------------------------------------------------------------------

fn disk() -> CortexConfig {
    CortexConfig::default().with_file_config(RedexFileConfig::default().with_persistent(true))
}

fn tolerant_disk() -> CortexConfig {
    disk().with_fold_error_policy(FoldErrorPolicy::LogAndContinue)
}

fn disk_builder(task: CortexConfig, note: CortexConfig) -> NetDbBuilder {
    NetDb::builder()
        .origin_hash(1)
        .model_with_config::<Task>(task)
        .model_with_config::<Note>(note)
}

fn both() -> NetDbBuilder {
    NetDb::builder()
        .origin_hash(1)
        .model::<Task>()
        .model::<Note>()
}

#[tokio::test]
async fn netdb_serves_its_adapters_and_refuses_others() {
    let redex = Redex::new();
    let db = both().open(&redex).unwrap();
    assert_eq!(db.channels(), [TASKS, NOTES]);
    let tasks = db.adapter::<Task>().unwrap();
    let notes = db.adapter::<Note>().unwrap();
    assert_eq!(tasks.restore_outcome(), &RestoreOutcome::Fresh);
    write_tasks(tasks, 0..10).await;
    write_notes(notes, 0..5).await;
    assert_eq!(rows(notes).len(), 5);

    // The builder's origin hash is stamped on the events.
    let first = tasks.log().read_range(0, 1).unwrap();
    let (meta, _) = EventMeta::decode(&first[0].payload).unwrap();
    assert_eq!(meta.origin_hash, 1);

    let e = db.adapter::<Legacy<Other>>().unwrap_err();
    assert!(
        matches!(e, CortexError::UnknownModel { channel } if channel == OTHER),
        "{e:?}"
    );
    assert!(e.to_string().contains(OTHER), "{e}");
    // Same channel as Task, another type: not the adapter the NetDb holds.
    let e = db.adapter::<Legacy<V2Drift>>().unwrap_err();
    assert!(
        matches!(e, CortexError::UnknownModel { channel } if channel == TASKS),
        "{e:?}"
    );
}

#[tokio::test]
async fn netdb_builder_refuses_a_model_named_twice() {
    let redex = Redex::new();
    let e = both().model::<Task>().open(&redex).unwrap_err();
    assert!(
        matches!(e, CortexError::DuplicateModel { channel } if channel == TASKS),
        "{e:?}"
    );
    assert!(e.to_string().contains("twice"), "{e}");
    // Two types on one channel.
    let e = NetDb::builder()
        .model::<Task>()
        .model::<Legacy<V2Drift>>()
        .open(&redex)
        .unwrap_err();
    assert!(
        matches!(e, CortexError::DuplicateModel { channel } if channel == TASKS),
        "{e:?}"
    );
    // Checked before the bundle is read.
    let e = NetDb::open_from_snapshot(&redex, b"garbage", both().model::<Note>()).unwrap_err();
    assert!(
        matches!(e, CortexError::DuplicateModel { channel } if channel == NOTES),
        "{e:?}"
    );
    // Nothing was opened by the refused builders.
    assert!(redex.channels().is_empty());
}

/// A persistent directory with task and note logs, a bundle taken part way, and the state
/// after everything.
struct Seeded {
    bundle: Vec<u8>,
    task_snap: u64,
    note_snap: u64,
    task_last: u64,
    note_last: u64,
    tasks: Vec<Task>,
    notes: Vec<Note>,
}

async fn seed(dir: &Path) -> Seeded {
    let redex = Redex::with_persistent_dir(dir).unwrap();
    let db = disk_builder(tolerant_disk(), disk()).open(&redex).unwrap();
    let tasks = db.adapter::<Task>().unwrap();
    let notes = db.adapter::<Note>().unwrap();
    // A poison event at seq 0 of the task log: a fold with the default Stop policy that
    // reads it stops there.
    let poison = tasks
        .append(&TaskEvent::Explode {
            id: 900,
            how: Explode::Reject,
        })
        .unwrap();
    assert_eq!(poison, 0);
    let task_snap = write_tasks(tasks, 0..30).await;
    let note_snap = write_notes(notes, 0..20).await;
    assert_eq!(tasks.fold_errors().skipped, 1);
    let bundle = db.snapshot().unwrap();

    // Newer events: a restore from the bundle folds these and only these.
    let task_last = write_tasks(tasks, 30..45).await;
    notes
        .append(&NoteEvent::Put(note(0, "overwritten")))
        .unwrap();
    let note_last = write_notes(notes, 20..26).await;
    let seeded = Seeded {
        bundle,
        task_snap,
        note_snap,
        task_last,
        note_last,
        tasks: rows(tasks),
        notes: rows(notes),
    };
    assert_eq!(seeded.notes[0].text, "overwritten");
    db.close().unwrap();
    seeded
}

#[tokio::test]
async fn netdb_bundle_restores_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = seed(dir.path()).await;

    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    // Default policies: the task fold would stop if it read the poison event at seq 0.
    let db = NetDb::open_from_snapshot(&redex, &s.bundle, disk_builder(disk(), disk())).unwrap();
    assert_eq!(db.channels(), [TASKS, NOTES]);
    let tasks = db.adapter::<Task>().unwrap();
    let notes = db.adapter::<Note>().unwrap();
    match tasks.restore_outcome() {
        RestoreOutcome::Snapshot(info) => {
            assert_eq!(info.channel, TASKS);
            assert_eq!(info.last_seq, Some(s.task_snap));
        }
        other => panic!("expected Snapshot, got {other:?}"),
    }
    match notes.restore_outcome() {
        RestoreOutcome::Snapshot(info) => {
            assert_eq!(info.channel, NOTES);
            assert_eq!(info.last_seq, Some(s.note_snap));
            assert_eq!(info.rows, 20);
        }
        other => panic!("expected Snapshot, got {other:?}"),
    }
    caught_up(tasks).await;
    caught_up(notes).await;
    assert_eq!(tasks.folded_through_seq(), Some(s.task_last));
    assert_eq!(notes.folded_through_seq(), Some(s.note_last));
    assert_eq!(rows(tasks), s.tasks);
    assert_eq!(rows(notes), s.notes);
    // Only the newer events were folded: the poison event was never read.
    assert_eq!(tasks.fold_errors(), FoldErrors::default());

    // Both keep going, and agree with a full replay.
    write_tasks(tasks, 45..50).await;
    write_notes(notes, 26..30).await;
    assert_eq!(rows(tasks), replayed::<Task>(&redex, tolerant_disk()).await);
    assert_eq!(rows(notes), replayed::<Note>(&redex, disk()).await);
    db.close().unwrap();
}

#[tokio::test]
async fn netdb_restart_without_a_bundle_replays_every_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = seed(dir.path()).await;

    {
        let redex = Redex::with_persistent_dir(dir.path()).unwrap();
        let db = disk_builder(tolerant_disk(), disk()).open(&redex).unwrap();
        let tasks = db.adapter::<Task>().unwrap();
        let notes = db.adapter::<Note>().unwrap();
        assert_eq!(tasks.restore_outcome(), &RestoreOutcome::Fresh);
        assert_eq!(notes.restore_outcome(), &RestoreOutcome::Fresh);
        caught_up(tasks).await;
        caught_up(notes).await;
        assert_eq!(tasks.folded_through_seq(), Some(s.task_last));
        assert_eq!(notes.folded_through_seq(), Some(s.note_last));
        assert_eq!(rows(tasks), s.tasks);
        assert_eq!(rows(notes), s.notes);
        // It read the poison event: the replay started at seq 0.
        assert_eq!(tasks.fold_errors().skipped, 1);
        assert_eq!(tasks.fold_errors().recent[0].seq, 0);
        db.close().unwrap();
    }

    // With the default Stop policy, the whole-log replay stops at that event.
    let redex = Redex::with_persistent_dir(dir.path()).unwrap();
    let db = disk_builder(disk(), disk()).open(&redex).unwrap();
    let tasks = db.adapter::<Task>().unwrap();
    match tasks.wait_for_seq(s.task_last).await {
        Err(CortexError::FoldStopped { error, .. }) => assert_eq!(error.seq, 0),
        other => panic!("expected the replay to stop at seq 0, got {other:?}"),
    }
    let notes = db.adapter::<Note>().unwrap();
    caught_up(notes).await;
    assert_eq!(rows(notes), s.notes);
    db.close().unwrap();
}

#[tokio::test]
async fn netdb_bundle_missing_a_model() {
    let redex = Redex::new();
    let only_tasks = NetDb::builder()
        .origin_hash(1)
        .model::<Task>()
        .open(&redex)
        .unwrap();
    write_tasks(only_tasks.adapter::<Task>().unwrap(), 0..10).await;
    let bundle = only_tasks.snapshot().unwrap();
    drop(only_tasks);
    // The note log has events the bundle knows nothing of.
    let notes = CortexAdapter::<Note>::open(&redex, 2).unwrap();
    write_notes(&notes, 0..8).await;
    drop(notes);

    let e = snap_err(NetDb::open_from_snapshot(&redex, &bundle, both()));
    assert!(
        matches!(&e, SnapshotError::MissingModel { channel } if channel == NOTES),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(NOTES) && msg.contains("Replay"), "{msg}");

    // With the replay fallback for notes, they are rebuilt from their log.
    let builder = NetDb::builder()
        .origin_hash(1)
        .model::<Task>()
        .model_with_config::<Note>(replay_config());
    let db = NetDb::open_from_snapshot(&redex, &bundle, builder).unwrap();
    let tasks = db.adapter::<Task>().unwrap();
    let notes = db.adapter::<Note>().unwrap();
    assert!(matches!(
        tasks.restore_outcome(),
        RestoreOutcome::Snapshot(_)
    ));
    assert!(
        !matches!(notes.restore_outcome(), RestoreOutcome::Snapshot(_)),
        "{:?}",
        notes.restore_outcome()
    );
    caught_up(notes).await;
    assert_eq!(rows(notes).len(), 8);
    assert_eq!(
        rows(notes),
        replayed::<Note>(&redex, CortexConfig::default()).await
    );
    assert_eq!(
        rows(tasks),
        replayed::<Task>(&redex, CortexConfig::default()).await
    );
}

#[tokio::test]
async fn netdb_bundle_with_an_extra_model_is_restored_without_it() {
    let redex = Redex::new();
    let db = both().open(&redex).unwrap();
    write_tasks(db.adapter::<Task>().unwrap(), 0..10).await;
    write_notes(db.adapter::<Note>().unwrap(), 0..6).await;
    let notes_before = rows(db.adapter::<Note>().unwrap());
    let bundle = db.snapshot().unwrap();
    drop(db);

    let only_notes = NetDb::builder().origin_hash(1).model::<Note>();
    let db = NetDb::open_from_snapshot(&redex, &bundle, only_notes).unwrap();
    assert_eq!(db.channels(), [NOTES]);
    let notes = db.adapter::<Note>().unwrap();
    assert!(matches!(
        notes.restore_outcome(),
        RestoreOutcome::Snapshot(_)
    ));
    assert_eq!(rows(notes), notes_before);
    assert!(matches!(
        db.adapter::<Task>(),
        Err(CortexError::UnknownModel { .. })
    ));
}

#[tokio::test]
async fn netdb_bundle_with_a_mismatching_model() {
    // A bundle written by a build whose Task is at version 3.
    let scratch = Redex::new();
    let newer = NetDb::builder()
        .model::<Legacy<V3>>()
        .model::<Note>()
        .open(&scratch)
        .unwrap();
    let events: Vec<Put<V3>> = (0..3).map(|i| Put(Legacy::new(i))).collect();
    let seqs = newer
        .adapter::<Legacy<V3>>()
        .unwrap()
        .append_batch(&events)
        .unwrap();
    newer
        .adapter::<Legacy<V3>>()
        .unwrap()
        .wait_for_seq(seqs.end - 1)
        .await
        .unwrap();
    let bundle = newer.snapshot().unwrap();

    let (redex, _) = task_log(10).await;
    let notes = CortexAdapter::<Note>::open(&redex, 2).unwrap();
    write_notes(&notes, 0..4).await;
    drop(notes);

    let e = snap_err(NetDb::open_from_snapshot(&redex, &bundle, both()));
    assert!(
        matches!(
            &e,
            SnapshotError::NewerVersion {
                found: 3,
                current: 2,
                ..
            }
        ),
        "{e:?}"
    );

    let builder = NetDb::builder()
        .origin_hash(1)
        .model_with_config::<Task>(replay_config())
        .model::<Note>();
    let db = NetDb::open_from_snapshot(&redex, &bundle, builder).unwrap();
    let tasks = db.adapter::<Task>().unwrap();
    match tasks.restore_outcome() {
        RestoreOutcome::Replayed { reason } => assert!(reason.contains("newer"), "{reason}"),
        other => panic!("expected Replayed, got {other:?}"),
    }
    let notes = db.adapter::<Note>().unwrap();
    // The (empty) note snapshot restores, then folds the whole note log.
    assert!(
        matches!(notes.restore_outcome(), RestoreOutcome::Snapshot(i) if i.last_seq.is_none()),
        "{:?}",
        notes.restore_outcome()
    );
    caught_up(tasks).await;
    caught_up(notes).await;
    assert_eq!(
        rows(tasks),
        replayed::<Task>(&redex, CortexConfig::default()).await
    );
    assert_eq!(rows(notes).len(), 4);
}

#[tokio::test]
async fn netdb_bundle_on_an_empty_log_is_ahead_of_it() {
    let redex = Redex::new();
    let db = both().open(&redex).unwrap();
    write_tasks(db.adapter::<Task>().unwrap(), 0..5).await;
    write_notes(db.adapter::<Note>().unwrap(), 0..5).await;
    let bundle = db.snapshot().unwrap();

    let empty = Redex::new();
    let e = snap_err(NetDb::open_from_snapshot(&empty, &bundle, both()));
    assert!(
        matches!(&e, SnapshotError::AheadOfLog { channel, log_next: 0, .. } if channel == TASKS),
        "{e:?}"
    );
    let builder = NetDb::builder()
        .model_with_config::<Task>(replay_config())
        .model_with_config::<Note>(replay_config());
    let db = NetDb::open_from_snapshot(&empty, &bundle, builder).unwrap();
    for outcome in [
        db.adapter::<Task>().unwrap().restore_outcome(),
        db.adapter::<Note>().unwrap().restore_outcome(),
    ] {
        assert!(
            matches!(outcome, RestoreOutcome::Replayed { reason } if reason.contains("log ends before")),
            "{outcome:?}"
        );
    }
    assert!(rows(db.adapter::<Task>().unwrap()).is_empty());
    assert!(rows(db.adapter::<Note>().unwrap()).is_empty());
}

#[tokio::test]
async fn netdb_garbage_and_damaged_bundles() {
    let redex = Redex::new();
    let db = both().open(&redex).unwrap();
    write_tasks(db.adapter::<Task>().unwrap(), 0..6).await;
    write_notes(db.adapter::<Note>().unwrap(), 0..4).await;
    let bundle = db.snapshot().unwrap();
    let (envelope_bytes, _) = db.adapter::<Task>().unwrap().snapshot().unwrap();
    drop(db);
    assert!(bundle.starts_with(BUNDLE_MAGIC));

    // The bundle is good.
    let db = NetDb::open_from_snapshot(&redex, &bundle, both()).unwrap();
    drop(db);

    for garbage in [Vec::new(), noise(100, 5), BUNDLE_MAGIC[..7].to_vec()] {
        let e = snap_err(NetDb::open_from_snapshot(&redex, &garbage, both()));
        assert!(
            matches!(
                e,
                SnapshotError::NotABundle {
                    model_snapshot: false
                }
            ),
            "{e:?}"
        );
    }
    // One model's snapshot passed as a bundle: the error says what it is instead.
    let e = snap_err(NetDb::open_from_snapshot(&redex, &envelope_bytes, both()));
    assert!(
        matches!(
            e,
            SnapshotError::NotABundle {
                model_snapshot: true
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("open_from_snapshot"), "{e}");

    // A newer bundle format.
    let mut newer = bundle.clone();
    assert_eq!(newer[8], 1, "the format byte follows the magic");
    newer[8] = 2;
    let e = snap_err(NetDb::open_from_snapshot(&redex, &newer, both()));
    assert!(
        matches!(
            e,
            SnapshotError::UnsupportedFormat {
                found: 2,
                supported: 1
            }
        ),
        "{e:?}"
    );

    // Every truncation.
    for len in 0..bundle.len() {
        let e = snap_err(NetDb::open_from_snapshot(&redex, &bundle[..len], both()));
        if len < BUNDLE_MAGIC.len() {
            assert!(
                matches!(e, SnapshotError::NotABundle { .. }),
                "{len}: {e:?}"
            );
        } else {
            assert!(matches!(e, SnapshotError::Corrupt { .. }), "{len}: {e:?}");
        }
    }

    // Every single-byte change: a typed error, never a panic, never a silent restore.
    for i in 0..bundle.len() {
        for mask in [0x01, 0xff] {
            let mut bad = bundle.clone();
            bad[i] ^= mask;
            snap_err(NetDb::open_from_snapshot(&redex, &bad, both()));
        }
    }
}

#[tokio::test]
async fn netdb_bundle_with_trailing_bytes_is_damaged() {
    let redex = Redex::new();
    let db = both().open(&redex).unwrap();
    write_tasks(db.adapter::<Task>().unwrap(), 0..6).await;
    write_notes(db.adapter::<Note>().unwrap(), 0..4).await;
    let bundle = db.snapshot().unwrap();
    drop(db);
    // Two bundles back to back, or a bundle written over a longer file without truncating.
    let mut doubled = bundle.clone();
    doubled.extend_from_slice(&bundle);
    for bad in [doubled, [bundle.as_slice(), b"junk"].concat()] {
        let e = snap_err(NetDb::open_from_snapshot(&redex, &bad, both()));
        assert!(matches!(e, SnapshotError::Corrupt { .. }), "{e:?}");
    }
}
