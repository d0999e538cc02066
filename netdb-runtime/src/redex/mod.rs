//! RedEX: named, append-only, sequence-numbered logs, in memory or on disk.
//!
//! A [`Redex`] manages files, one per [`ChannelName`]. A [`RedexFile`] appends payloads
//! (`append`, `append_batch`, `append_postcard`), reads them back (`read_range`), and
//! streams them (`tail`: backfill, then live events).
//!
//! # Usage
//!
//! ```
//! use futures_util::StreamExt;
//! use netdb_runtime::redex::{FsyncPolicy, Redex, RedexFileConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let redex = Redex::with_persistent_dir(dir.path())?;
//! let cfg = RedexFileConfig::default()
//!     .with_persistent(true)
//!     .with_fsync_policy(FsyncPolicy::EveryN(100));
//! let file = redex.open_file(&"orders/audit".parse()?, cfg)?;
//!
//! file.append(b"order 1 placed")?;
//! file.append_batch(&[&b"order 2 placed"[..], b"order 1 shipped"])?;
//!
//! let mut tail = file.tail(0);
//! let first = tail.next().await.unwrap()?;
//! assert_eq!((first.seq, &first.payload[..]), (0, &b"order 1 placed"[..]));
//! file.close()?; // fsyncs
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//!
//! * **Ordering.** Sequence numbers start at 0 and grow by one per event, without gaps.
//!   `append_batch` is all or nothing and its events get contiguous numbers.
//! * **Tails are cursors.** A tail never misses, repeats or reorders an event across the
//!   hand-off from backfill to live, and a slow tail is never dropped: it reads what it
//!   missed from memory or disk.
//! * **Memory.** A persistent file keeps a hot window of recent events in memory (bounded
//!   by [`RedexFileConfig::with_max_memory_bytes`]); older events are read from disk, so a
//!   file can retain far more than fits in RAM. An in-memory file keeps every retained event.
//! * **Durability.** See [`FsyncPolicy`]. `sync()` and `close()` always fsync. Torn writes
//!   are repaired on reopen: the log is cut at the first record past the last fsync that is
//!   incomplete or fails its checksum; a bad record among fsynced ones is reported as
//!   [`RedexError::Corrupt`], never skipped.
//! * **Retention.** By count, payload bytes and age, applied by `sweep_retention()`. Event
//!   timestamps are stored, so age retention holds across reopen, and whole segments are
//!   deleted to give disk space back.
//! * **Single writer.** One `Redex` per directory: a second one, in this process or another,
//!   gets [`RedexError::Locked`].
//!
//! The on-disk format is described in [`format`](mod@format) and in the book's "On-disk format" chapter.

mod channel;
mod clock;
mod config;
mod disk;
mod error;
mod file;
pub mod format;
mod hot;
mod tail;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

pub use channel::{
    ChannelName, ChannelNameError, ChannelNameProblem, MAX_CHANNEL_NAME_LEN,
    MAX_CHANNEL_SEGMENT_LEN,
};
pub use config::{
    DEFAULT_MAX_MEMORY_BYTES, DEFAULT_SEGMENT_MAX_BYTES, FsyncPolicy, MAX_SEGMENT_BYTES,
    RedexFileConfig,
};
pub use error::RedexError;
pub use file::{
    FileStats, MAX_PAYLOAD_LEN, RecoveryReport, RedexEvent, RedexFile, RetentionReport,
};
pub use tail::RedexTail;

pub(crate) use clock::now_ns as clock_now_ns;

use disk::DirLock;
pub(crate) use disk::{decode_mark, encode_mark};

/// The manager of a set of RedEX files: in memory ([`Redex::new`]) or rooted in a directory
/// ([`Redex::with_persistent_dir`]). Cheap to clone; clones share the files.
#[derive(Clone)]
pub struct Redex {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    dir: Option<PathBuf>,
    lock: Option<Arc<DirLock>>,
    files: Mutex<HashMap<ChannelName, RedexFile>>,
}

impl Shared {
    fn files(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelName, RedexFile>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes a closed file from the open set (if that entry is still this file).
    pub(crate) fn forget(&self, file: &Arc<file::FileInner>) {
        let mut files = self.files();
        if files
            .get(&file.channel)
            .is_some_and(|f| Arc::ptr_eq(&f.inner, file))
        {
            files.remove(&file.channel);
        }
    }
}

impl std::fmt::Debug for Redex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redex")
            .field("dir", &self.shared.dir)
            .field("open_files", &self.shared.files().len())
            .finish()
    }
}

impl Default for Redex {
    fn default() -> Self {
        Redex::new()
    }
}

impl Redex {
    /// A manager whose files live in memory only.
    pub fn new() -> Redex {
        Redex {
            shared: Arc::new(Shared {
                dir: None,
                lock: None,
                files: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A manager rooted in `dir` (created if missing). Files opened with
    /// `with_persistent(true)` live under `<dir>/<channel name>/`.
    ///
    /// The directory is locked for the life of this manager and of every file opened from
    /// it: a second manager on the same directory, in this process or another, fails with
    /// [`RedexError::Locked`].
    pub fn with_persistent_dir(dir: impl AsRef<Path>) -> Result<Redex, RedexError> {
        let dir = dir.as_ref().to_path_buf();
        let lock = DirLock::acquire(&dir)?;
        Ok(Redex {
            shared: Arc::new(Shared {
                dir: Some(dir),
                lock: Some(Arc::new(lock)),
                files: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The directory of a persistent manager.
    pub fn persistent_dir(&self) -> Option<&Path> {
        self.shared.dir.as_deref()
    }

    /// Opens the file of `channel`, creating it if it does not exist and recovering it if
    /// it is on disk.
    ///
    /// If the channel is open already, returns its handle when `config` is equal to the
    /// one it was opened with, and [`RedexError::ConfigMismatch`] otherwise.
    pub fn open_file(
        &self,
        channel: &ChannelName,
        config: RedexFileConfig,
    ) -> Result<RedexFile, RedexError> {
        if let Err(reason) = config.validate() {
            return Err(RedexError::InvalidConfig {
                channel: channel.clone(),
                reason,
            });
        }
        let mut files = self.shared.files();
        if let Some(file) = files.get(channel).cloned() {
            if file.close_pending() {
                // A close that failed still holds events only it can write: finish it
                // before anyone else writes to the channel.
                drop(files);
                file.close()?;
                return self.open_file(channel, config);
            }
            if *file.config() == config {
                return Ok(file);
            }
            return Err(RedexError::ConfigMismatch {
                channel: channel.clone(),
                existing: Box::new(file.config().clone()),
                requested: Box::new(config),
            });
        }
        let disk = if config.persistent() {
            let (Some(dir), Some(lock)) = (&self.shared.dir, &self.shared.lock) else {
                return Err(RedexError::NotPersistent {
                    channel: channel.clone(),
                });
            };
            let mut path = dir.clone();
            path.extend(channel.segments());
            Some((path, Arc::clone(lock)))
        } else {
            None
        };
        let file = RedexFile::open(channel.clone(), config, disk, Arc::downgrade(&self.shared))?;
        files.insert(channel.clone(), file.clone());
        Ok(file)
    }

    /// The open file of `channel`, if any.
    pub fn file(&self, channel: &ChannelName) -> Option<RedexFile> {
        self.shared.files().get(channel).cloned()
    }

    /// The channels with an open file, sorted.
    pub fn channels(&self) -> Vec<ChannelName> {
        let mut names: Vec<_> = self.shared.files().keys().cloned().collect();
        names.sort();
        names
    }

    /// Runs [`RedexFile::sweep_retention`] on every open file.
    pub fn sweep_retention(&self) -> Result<Vec<(ChannelName, RetentionReport)>, RedexError> {
        let files: Vec<RedexFile> = self.shared.files().values().cloned().collect();
        let mut reports = Vec::with_capacity(files.len());
        for file in files {
            let report = file.sweep_retention()?;
            reports.push((file.channel().clone(), report));
        }
        reports.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(reports)
    }

    /// Closes every open file (each fsyncs). Returns the first error, after trying all.
    pub fn close(&self) -> Result<(), RedexError> {
        let files: Vec<RedexFile> = self.shared.files().values().cloned().collect();
        let mut first_err = None;
        for file in files {
            if let Err(e) = file.close() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
