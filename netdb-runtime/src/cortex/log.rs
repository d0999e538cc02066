//! The log interface a fold runs over, and the backends that open such logs. RedEX
//! implements both (the embedded default); NATS JetStream does too (feature `jetstream`), so
//! the same models run beyond one machine.

use std::fmt::Debug;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::cortex::{CortexConfig, CortexError};
use crate::redex::{ChannelName, Redex, RedexError, RedexEvent, RedexFile};

/// A stream of a log's events from a position: backfill, then live. It yields
/// [`RedexError::Evicted`] once if retention passes it, then continues from the head, and
/// ends when the log is closed.
pub type LogTail = Pin<Box<dyn Stream<Item = Result<RedexEvent, RedexError>> + Send>>;

/// What CortEX needs from a log.
pub trait CortexLog: Debug + Send + Sync + 'static {
    /// Appends one event; returns its sequence number.
    fn append(&self, payload: &[u8]) -> Result<u64, RedexError>;
    /// Appends events all or nothing; returns their sequence numbers.
    fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<u64>, RedexError>;
    /// The events with sequence numbers in `start..end`.
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RedexEvent>, RedexError>;
    /// The events from `from` on.
    fn tail(&self, from: u64) -> LogTail;
    /// The sequence number the next append will get.
    fn next_seq(&self) -> u64;
    /// The sequence number of the first event still in the log (retention moves it).
    fn first_seq(&self) -> u64;
    /// Makes every appended event durable.
    fn sync(&self) -> Result<(), RedexError>;
    /// Makes every appended event durable and closes the log; later appends fail.
    fn close(&self) -> Result<(), RedexError>;
}

impl CortexLog for RedexFile {
    fn append(&self, payload: &[u8]) -> Result<u64, RedexError> {
        RedexFile::append(self, payload)
    }
    fn append_batch(&self, payloads: &[&[u8]]) -> Result<Range<u64>, RedexError> {
        RedexFile::append_batch(self, payloads)
    }
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<RedexEvent>, RedexError> {
        RedexFile::read_range(self, start, end)
    }
    fn tail(&self, from: u64) -> LogTail {
        Box::pin(RedexFile::tail(self, from))
    }
    fn next_seq(&self) -> u64 {
        RedexFile::next_seq(self)
    }
    fn first_seq(&self) -> u64 {
        RedexFile::first_seq(self)
    }
    fn sync(&self) -> Result<(), RedexError> {
        RedexFile::sync(self)
    }
    fn close(&self) -> Result<(), RedexError> {
        RedexFile::close(self)
    }
}

/// A log a [`LogBackend`] opened for a model.
#[derive(Debug, Clone)]
pub struct OpenedLog {
    /// The log.
    pub log: Arc<dyn CortexLog>,
    /// Whether this call opened it. When opening the model fails afterwards, a log opened
    /// here is closed again; one that was already open (another adapter's) is left open.
    pub opened_here: bool,
}

/// Where models' logs live: what adapters and [`NetDb`](crate::netdb::NetDb) open on.
///
/// [`Redex`] is the embedded backend (a file per channel, in memory or in its directory).
/// With feature `jetstream`, `netdb_runtime::jetstream::JetStream` is the shared one
/// (a replicated stream per channel, which several processes open at once). Everything
/// above the log — folds, queries, watches, snapshots, bundles — is the same on either.
pub trait LogBackend: Debug + Send + Sync {
    /// Opens (creating it if needed) the log of `channel` for a model opened with
    /// `config`.
    fn open_model_log(
        &self,
        channel: &ChannelName,
        config: &CortexConfig,
    ) -> Result<OpenedLog, CortexError>;
}

impl LogBackend for Redex {
    /// Opens the channel's file with the config's file config; without one, the file is
    /// persistent when this manager has a persistent directory, in memory otherwise.
    fn open_model_log(
        &self,
        channel: &ChannelName,
        config: &CortexConfig,
    ) -> Result<OpenedLog, CortexError> {
        let was_open = self.file(channel).is_some_and(|f| !f.is_closed());
        let file = self.open_file(channel, config.file_config_for(self))?;
        Ok(OpenedLog {
            log: Arc::new(file),
            opened_here: !was_open,
        })
    }
}

impl<B: LogBackend + ?Sized> LogBackend for &B {
    fn open_model_log(
        &self,
        channel: &ChannelName,
        config: &CortexConfig,
    ) -> Result<OpenedLog, CortexError> {
        (**self).open_model_log(channel, config)
    }
}

impl<B: LogBackend + ?Sized> LogBackend for Arc<B> {
    fn open_model_log(
        &self,
        channel: &ChannelName,
        config: &CortexConfig,
    ) -> Result<OpenedLog, CortexError> {
        (**self).open_model_log(channel, config)
    }
}
