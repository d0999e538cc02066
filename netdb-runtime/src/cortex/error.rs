//! CortEX errors.

use std::fmt;
use std::time::Duration;

use crate::redex::{ChannelNameError, RedexError};

use super::EventMetaError;

/// An error from a CortEX adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CortexError {
    /// The log failed.
    #[error(transparent)]
    Log(#[from] RedexError),
    /// The model's channel name is not a valid RedEX channel name.
    #[error("model channel {channel:?} is not a valid channel name: {source}")]
    Channel {
        /// The channel the model declares.
        channel: &'static str,
        /// What is wrong with it.
        source: ChannelNameError,
    },
    /// The fold stopped on an event it could not apply (policy `Stop`).
    #[error(
        "the fold of {channel} stopped: {error}; the log still holds every event — fix the \
         cause and reopen the adapter, or open it with FoldErrorPolicy::LogAndContinue to skip it"
    )]
    FoldStopped {
        /// The model's channel.
        channel: &'static str,
        /// Why it stopped.
        error: FoldError,
    },
    /// The fold skipped the event (policy `LogAndContinue`): it is in the log but not in the
    /// state.
    #[error("the fold of {channel} skipped the event: {error}")]
    Skipped {
        /// The model's channel.
        channel: &'static str,
        /// Why it was skipped.
        error: FoldError,
    },
    /// The adapter was closed (or every handle to it dropped).
    #[error("the {channel} adapter is closed")]
    Closed {
        /// The model's channel.
        channel: &'static str,
    },
    /// `wait_for_seq_timeout` ran out of time.
    #[error(
        "timed out after {waited:?} waiting for {channel} to fold seq {seq} (folded through {folded:?})"
    )]
    Timeout {
        /// The model's channel.
        channel: &'static str,
        /// The sequence number waited for.
        seq: u64,
        /// How far the fold had got.
        folded: Option<u64>,
        /// How long the call waited.
        waited: Duration,
    },
    /// An event could not be encoded.
    #[error("could not encode a {channel} event: {source}")]
    Encode {
        /// The model's channel.
        channel: &'static str,
        /// The postcard error.
        source: postcard::Error,
    },
    /// A snapshot could not be restored.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The adapter's fold task needs a tokio runtime.
    #[error(
        "opening the {channel} adapter needs a tokio runtime (its fold runs as a task): call it \
         from within a runtime, e.g. under #[tokio::main]"
    )]
    NoRuntime {
        /// The model's channel.
        channel: &'static str,
    },
    /// A NetDb was asked for a model it was not opened with.
    #[error(
        "this NetDb has no model on channel {channel}; add it to the builder with .model::<M>()"
    )]
    UnknownModel {
        /// The channel asked for.
        channel: &'static str,
    },
    /// A NetDb builder named the same model twice.
    #[error("the NetDb builder names the model on channel {channel} twice")]
    DuplicateModel {
        /// The channel named twice.
        channel: &'static str,
    },
}

/// Why the fold could not apply an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldError {
    /// The sequence number of the event (for a gap: the first missing one).
    pub seq: u64,
    /// What went wrong.
    pub kind: FoldErrorKind,
}

/// What went wrong in a [`FoldError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FoldErrorKind {
    /// The event's header is damaged or unknown.
    Header(EventMetaError),
    /// The header is fine but the body does not decode as one of the model's events.
    Decode(EventDecodeError),
    /// The event was written by a newer schema version than this build knows.
    NewerSchema {
        /// The version in the event header.
        found: u16,
        /// The model's version in this build.
        current: u16,
    },
    /// The event's `apply` returned an error.
    Rejected(String),
    /// The event's `apply` panicked.
    Panicked(String),
    /// The event's `apply` misused the table (for example changed a row's id).
    Misuse(String),
    /// Retention removed events before the fold read them.
    Evicted {
        /// The first event still in the log.
        head: u64,
    },
    /// The log failed; the fold cannot continue whatever the policy.
    Log(String),
}

impl fmt::Display for FoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq;
        match &self.kind {
            FoldErrorKind::Header(e) => write!(f, "event {seq} has a bad header: {e}"),
            FoldErrorKind::Decode(e) => write!(f, "event {seq} does not decode: {e}"),
            FoldErrorKind::NewerSchema { found, current } => write!(
                f,
                "event {seq} was written with schema version {found}, newer than this \
                 build's {current}: upgrade the program before folding this log"
            ),
            FoldErrorKind::Rejected(m) => write!(f, "event {seq} was rejected by apply: {m}"),
            FoldErrorKind::Panicked(m) => write!(f, "apply panicked on event {seq}: {m}"),
            FoldErrorKind::Misuse(m) => write!(f, "apply misused the table on event {seq}: {m}"),
            FoldErrorKind::Evicted { head } => write!(
                f,
                "events {seq}..{head} were removed by retention before the fold read them"
            ),
            FoldErrorKind::Log(m) => write!(f, "the log failed at seq {seq}: {m}"),
        }
    }
}

impl std::error::Error for FoldError {}

/// An event body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// No event of the model has this dispatch code.
    #[error("unknown dispatch code {0:#06x}")]
    UnknownDispatch(u16),
    /// The body is not a valid encoding of the event.
    #[error("bad body for dispatch code {dispatch:#06x}: {source}")]
    Body {
        /// The dispatch code.
        dispatch: u16,
        /// The postcard error.
        source: postcard::Error,
    },
    /// The event was written by an older schema version whose rows this build cannot read:
    /// the model declares no migration from it.
    #[error(
        "the event was written by schema version {found}, and the model (version {current}) \
         declares no migration from it: keep the old struct and add \
         `#[cortex(migrate(from = {found}, with = OldStruct))]`"
    )]
    NoMigration {
        /// The writer's schema version.
        found: u16,
        /// The model's version in this build.
        current: u16,
    },
    /// A field of an update event does not decode as the field's current type.
    #[error(
        "field `{field}` of an update event written by schema version {version} does not \
         decode as its current type ({source}): a field whose type changes needs a new name"
    )]
    PatchField {
        /// The field name as the writer spelled it.
        field: String,
        /// The writer's schema version.
        version: u16,
        /// The postcard error.
        source: postcard::Error,
    },
    /// An update event names a field the model does not have, although it was written by
    /// the current schema version: the log was written by a different struct.
    #[error(
        "an update event of the current schema version names field `{field}`, which the \
         model does not have: the struct changed without a schema version bump"
    )]
    UnknownField {
        /// The field name in the event.
        field: String,
    },
}

/// An error an event's `apply` returns to refuse the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyError(String);

impl ApplyError {
    /// An error with a message saying why the event cannot apply.
    pub fn new(message: impl Into<String>) -> Self {
        ApplyError(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ApplyError {}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic.
    #[error(
        "these bytes are not a netdb snapshot (no {:?} magic); pass the bytes `snapshot()` returned",
        String::from_utf8_lossy(super::snapshot::MAGIC)
    )]
    NotASnapshot,
    /// The bytes passed as a NetDb bundle are not one.
    #[error(
        "these bytes are not a NetDb bundle (no \"NDBBUNDL\" magic){}",
        if *model_snapshot {
            "; they are one model's snapshot: restore it with CortexAdapter::open_from_snapshot"
        } else {
            "; pass the bytes NetDb::snapshot() returned"
        }
    )]
    NotABundle {
        /// Whether the bytes are a single model's snapshot instead.
        model_snapshot: bool,
    },
    /// The envelope format is newer than this build.
    #[error("snapshot envelope format {found} is not supported (this build reads {supported})")]
    UnsupportedFormat {
        /// The format found.
        found: u8,
        /// The format this build reads.
        supported: u8,
    },
    /// The envelope is damaged: truncated, or its checksum does not match.
    #[error("the snapshot is damaged: {reason}; take a new snapshot, or replay from the log")]
    Corrupt {
        /// What is wrong.
        reason: String,
    },
    /// The snapshot is of another model.
    #[error("the snapshot is of channel {found}, not {expected}")]
    WrongModel {
        /// The adapter's channel.
        expected: String,
        /// The snapshot's channel.
        found: String,
    },
    /// Same schema version, different fields: the struct changed without a version bump.
    #[error(
        "the {channel} snapshot has schema version {version} but a different field layout \
         (fingerprint {found:#018x}, this build {expected:#018x}): the struct changed without a \
         schema bump. Bump `schema` and add a migration from version {version}, or restore with \
         SnapshotFallback::Replay to rebuild from the log"
    )]
    SchemaChanged {
        /// The model's channel.
        channel: String,
        /// The version both declare.
        version: u16,
        /// This build's fingerprint.
        expected: u64,
        /// The snapshot's fingerprint.
        found: u64,
    },
    /// An older version with no migration registered.
    #[error(
        "the {channel} snapshot has schema version {found} and this build has version {current} \
         with no migration from {found}: add one (`#[cortex(migrate(from = {found}, with = OldStruct))]`), or restore with \
         SnapshotFallback::Replay to rebuild from the log"
    )]
    NoMigration {
        /// The model's channel.
        channel: String,
        /// The snapshot's version.
        found: u16,
        /// This build's version.
        current: u16,
    },
    /// The migration's declared fingerprint does not match the snapshot.
    #[error(
        "the {channel} snapshot has schema version {version} with fingerprint {found:#018x}, but \
         the migration from version {version} expects {expected:#018x}: the old struct the \
         migration reads is not the one that wrote the snapshot"
    )]
    MigrationMismatch {
        /// The model's channel.
        channel: String,
        /// The snapshot's version.
        version: u16,
        /// The migration's fingerprint.
        expected: u64,
        /// The snapshot's fingerprint.
        found: u64,
    },
    /// A newer version than this build knows.
    #[error(
        "the {channel} snapshot has schema version {found}, newer than this build's {current}: \
         run a build that knows it, or restore with SnapshotFallback::Replay"
    )]
    NewerVersion {
        /// The model's channel.
        channel: String,
        /// The snapshot's version.
        found: u16,
        /// This build's version.
        current: u16,
    },
    /// The rows do not decode (with the version's own type or its migration).
    #[error("the {channel} snapshot rows (schema version {version}) do not decode: {source}")]
    Decode {
        /// The model's channel.
        channel: String,
        /// The snapshot's version.
        version: u16,
        /// The postcard error.
        source: postcard::Error,
    },
    /// The `last_seq` passed does not match the one recorded in the snapshot.
    #[error(
        "last_seq {given:?} does not match the snapshot's {recorded:?}; pass the value \
         `snapshot()` returned with these bytes"
    )]
    SeqMismatch {
        /// The value passed.
        given: Option<u64>,
        /// The value in the envelope.
        recorded: Option<u64>,
    },
    /// The snapshot covers events the log does not have (the log was reset or replaced).
    #[error(
        "the snapshot covers {channel} events through seq {last_seq}, but the log ends before \
         seq {log_next}: the log was reset or is another log. Restore with \
         SnapshotFallback::Replay to rebuild from the log"
    )]
    AheadOfLog {
        /// The model's channel.
        channel: String,
        /// The snapshot's last folded seq.
        last_seq: u64,
        /// The log's next seq.
        log_next: u64,
    },
    /// A bundle is missing a model the NetDb was opened with.
    #[error(
        "the bundle has no snapshot of {channel}; restore with SnapshotFallback::Replay to \
         rebuild that model from its log"
    )]
    MissingModel {
        /// The model's channel.
        channel: String,
    },
}
