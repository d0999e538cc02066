//! The log interface a fold runs over. RedEX implements it; other engines (NATS JetStream)
//! can, so the same models run beyond one machine.

use std::fmt::Debug;
use std::ops::Range;
use std::pin::Pin;

use futures_core::Stream;

use crate::redex::{RedexError, RedexEvent, RedexFile};

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
