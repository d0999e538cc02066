//! RedEX errors.

use std::io;
use std::path::PathBuf;

use super::{ChannelName, ChannelNameError, RedexFileConfig};

/// Everything a RedEX operation can fail with.
///
/// Each variant says what happened and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedexError {
    /// A channel name failed validation.
    #[error(transparent)]
    InvalidChannelName(#[from] ChannelNameError),

    /// `open_file` was called for a channel that is already open with another configuration.
    #[error(
        "channel `{channel}` is already open with a different configuration \
         (open: {existing:?}, requested: {requested:?}); use the same configuration, \
         or close the open file first"
    )]
    ConfigMismatch {
        /// The channel.
        channel: ChannelName,
        /// The configuration the file is open with.
        existing: Box<RedexFileConfig>,
        /// The configuration that was asked for.
        requested: Box<RedexFileConfig>,
    },

    /// A configuration value is out of range.
    #[error("invalid configuration for channel `{channel}`: {reason}")]
    InvalidConfig {
        /// The channel.
        channel: ChannelName,
        /// What is wrong.
        reason: &'static str,
    },

    /// A persistent file was asked of a manager that has no directory.
    #[error(
        "channel `{channel}` asks for a persistent file but this Redex is in memory only; \
         build it with Redex::with_persistent_dir(path)"
    )]
    NotPersistent {
        /// The channel.
        channel: ChannelName,
    },

    /// `FsyncPolicy::Interval` needs a tokio runtime to run its fsync task.
    #[error(
        "channel `{channel}` uses an interval fsync policy, which runs a tokio task; open \
         the file from within a tokio runtime that has its time driver enabled \
         (`#[tokio::main]`, or a runtime built with `enable_time()` / `enable_all()`)"
    )]
    NoRuntime {
        /// The channel.
        channel: ChannelName,
    },

    /// Another `Redex` (in this or another process) holds the directory.
    #[error(
        "the RedEX directory {} is locked by another Redex (this process or another); \
         a directory has a single writer: close the other one or use another directory",
        dir.display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },

    /// The file was closed.
    #[error("channel `{channel}` is closed; open it again with Redex::open_file")]
    Closed {
        /// The channel.
        channel: ChannelName,
    },

    /// A payload is larger than a record can describe.
    #[error(
        "payload of {len} bytes is larger than the {max}-byte limit of one append \
         (an event, or all events of a batch together); split it"
    )]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit, [`MAX_PAYLOAD_LEN`](super::MAX_PAYLOAD_LEN).
        max: usize,
    },

    /// The append would number an event at or past
    /// [`SEQ_LIMIT`](super::format::SEQ_LIMIT).
    #[error(
        "channel `{channel}`: no room for {events} more events after seq {next_seq} \
         (sequence numbers stop at {limit})"
    )]
    SeqExhausted {
        /// The channel.
        channel: ChannelName,
        /// The seq the next event would get.
        next_seq: u64,
        /// How many events the append had.
        events: u64,
        /// The limit, [`SEQ_LIMIT`](super::format::SEQ_LIMIT).
        limit: u64,
    },

    /// Events before the requested sequence number were removed by retention.
    #[error(
        "channel `{channel}`: event {requested} was removed by retention; the oldest \
         retained event is {first_available}"
    )]
    Evicted {
        /// The channel.
        channel: ChannelName,
        /// The sequence number asked for.
        requested: u64,
        /// The first sequence number still in the log.
        first_available: u64,
    },

    /// Stored data failed verification somewhere other than a torn tail.
    #[error(
        "corrupt RedEX data in {} at seq {seq}: {reason}; the file cannot be read past this \
         point. Restore the channel directory from a backup, or (losing its events) delete \
         it and reopen",
        file.display()
    )]
    Corrupt {
        /// The file that failed.
        file: PathBuf,
        /// The sequence number of the first bad record.
        seq: u64,
        /// What failed.
        reason: String,
    },

    /// The channel directory was written in a format this build does not read.
    #[error(
        "the RedEX channel directory {} is in format {found:?}, but this build reads \
         {supported:?}; open it with the netdb version that wrote it",
        dir.display()
    )]
    UnsupportedFormat {
        /// The channel directory.
        dir: PathBuf,
        /// What its `.format` file says.
        found: String,
        /// The format this build reads.
        supported: &'static str,
    },

    /// An earlier fsync of this file failed, so what is on stable storage is unknown.
    #[error(
        "an earlier fsync in {} failed, so the durability of its events is unknown (later \
         fsyncs cannot prove it); close the file and open it again: recovery keeps exactly \
         what the disk holds",
        dir.display()
    )]
    DurabilityUnknown {
        /// The channel directory.
        dir: PathBuf,
    },

    /// An append that expected the log to end at `expected` found another writer had moved
    /// it to `found` (a log shared between writers, such as a JetStream stream). Nothing
    /// was written.
    #[error(
        "channel `{channel}`: another writer appended first (this append expected the next \
         seq to be {expected}, the log is at {found}); nothing was written. Catch up \
         (wait_for_seq({found} - 1)), check the write still makes sense and append again"
    )]
    Conflict {
        /// The channel.
        channel: ChannelName,
        /// The next seq this writer expected.
        expected: u64,
        /// The log's next seq when the append was refused.
        found: u64,
    },

    /// Only the first events of an `append_batch` were appended: the log has no atomic batch
    /// (JetStream), and the event after them failed.
    #[error(
        "channel `{channel}`: only events {}..{} of a batch of {requested} were appended \
         before an append failed ({source}); the rest were not written. Append the rest \
         again once the cause is fixed",
        appended.start, appended.end
    )]
    PartialBatch {
        /// The channel.
        channel: ChannelName,
        /// The seqs of the events that were appended (possibly empty).
        appended: std::ops::Range<u64>,
        /// How many events the batch had.
        requested: usize,
        /// Why the next event was not appended.
        #[source]
        source: Box<RedexError>,
    },

    /// The server holding the log (JetStream) could not be reached or did not answer in time.
    #[error(
        "channel `{channel}`: {op} failed because the server is unavailable ({reason}); the \
         client reconnects by itself, retry once the server is back{}",
        if *outcome_unknown {
            " (the append may or may not have been stored: catch up and check before \
             appending it again)"
        } else {
            ""
        }
    )]
    Unavailable {
        /// The channel.
        channel: ChannelName,
        /// What was being done (`"append"`, `"read"`, `"open"`, ...).
        op: &'static str,
        /// What the client reported.
        reason: String,
        /// Whether an append may have been stored even though it was not acknowledged.
        outcome_unknown: bool,
    },

    /// The server holding the log (JetStream) refused a request.
    #[error("channel `{channel}`: {op} was refused by the server: {reason}")]
    Backend {
        /// The channel.
        channel: ChannelName,
        /// What was being done.
        op: &'static str,
        /// What the server said, and what to do where known.
        reason: String,
    },

    /// An I/O call failed.
    #[error("{op} {} failed: {source}", path.display())]
    Io {
        /// What was being done (`"write"`, `"fsync"`, `"open"`, ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// `append_postcard` could not encode its value.
    #[error("could not encode the event with postcard: {0}")]
    Encode(#[source] postcard::Error),

    /// An event payload did not decode as the requested type.
    #[error("event {seq} did not decode with postcard: {source}")]
    Decode {
        /// The event's sequence number.
        seq: u64,
        /// The postcard error.
        #[source]
        source: postcard::Error,
    },
}

impl RedexError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        RedexError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
