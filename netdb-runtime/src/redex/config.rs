//! File configuration: persistence, durability policy, retention and memory bounds.

use std::time::Duration;

/// When a persistent RedEX file calls `fsync`.
///
/// The policy is fixed when the file is opened. Whatever the policy, [`RedexFile::sync`]
/// and [`RedexFile::close`] always fsync, and torn writes are repaired on reopen.
///
/// | Policy | What a machine crash can lose | Good for |
/// |---|---|---|
/// | `Never` (default) | everything since the last `close()` / `sync()` | telemetry, caches, best-effort logs |
/// | `EveryN(n)` | at most `n - 1` appended events | most application state (try `EveryN(100)`) |
/// | `Interval(d)` | at most `d` of writes | anything that must survive a kernel panic |
/// | `IntervalOrBytes { period, max_bytes }` | at most `period` of writes and at most `max_bytes` of payload | bursty writers with a byte budget |
///
/// A *process* crash (SIGKILL, panic with abort) loses the same or less: appends are
/// staged in a small user-space buffer and handed to the operating system when it fills,
/// on every fsync, on `close()`, and when the file itself is dropped (every `RedexFile`
/// clone and tail of it, and its `Redex` unless the file was closed).
///
/// [`RedexFile::sync`]: super::RedexFile::sync
/// [`RedexFile::close`]: super::RedexFile::close
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FsyncPolicy {
    /// Only `sync()` and `close()` fsync.
    #[default]
    Never,
    /// Fsync after every `n`-th append (an `append_batch` counts each event); `0` and `1`
    /// both mean every append.
    EveryN(u64),
    /// A background tokio task fsyncs every `d` if anything was written; the task ends on
    /// `close()`. Opening the file needs a tokio runtime with its time driver enabled.
    Interval(Duration),
    /// Like `Interval(period)`, and in addition an append fsyncs once `max_bytes` of payload
    /// were written since the last fsync.
    IntervalOrBytes {
        /// The background fsync period.
        period: Duration,
        /// Payload bytes written since the last fsync that trigger one inline.
        max_bytes: u64,
    },
}

impl FsyncPolicy {
    pub(crate) fn period(&self) -> Option<Duration> {
        match *self {
            FsyncPolicy::Interval(d) => Some(d),
            FsyncPolicy::IntervalOrBytes { period, .. } => Some(period),
            _ => None,
        }
    }
}

/// The default bound on a file's in-memory hot window: 64 MiB.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 64 << 20;
/// The default size at which a persistent file starts a new data segment: 64 MiB.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 << 20;
/// The largest segment size accepted by [`RedexFileConfig::with_segment_max_bytes`]: 2 GiB.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 31;

/// How a [`RedexFile`](super::RedexFile) is opened.
///
/// Two handles to one channel share one configuration: [`Redex::open_file`] returns the
/// existing handle when the configuration is equal and
/// [`RedexError::ConfigMismatch`](super::RedexError::ConfigMismatch) otherwise.
///
/// ```
/// use netdb_runtime::redex::{FsyncPolicy, RedexFileConfig};
/// use std::time::Duration;
///
/// let cfg = RedexFileConfig::default()
///     .with_persistent(true)
///     .with_fsync_policy(FsyncPolicy::EveryN(100))
///     .with_retention_max_age(Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(cfg.fsync_policy(), FsyncPolicy::EveryN(100));
/// ```
///
/// [`Redex::open_file`]: super::Redex::open_file
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedexFileConfig {
    persistent: bool,
    fsync_policy: FsyncPolicy,
    retention_max_events: Option<u64>,
    retention_max_bytes: Option<u64>,
    retention_max_age: Option<Duration>,
    max_memory_bytes: usize,
    segment_max_bytes: u64,
}

impl Default for RedexFileConfig {
    fn default() -> Self {
        RedexFileConfig {
            persistent: false,
            fsync_policy: FsyncPolicy::Never,
            retention_max_events: None,
            retention_max_bytes: None,
            retention_max_age: None,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
        }
    }
}

impl RedexFileConfig {
    /// Keep the file on disk under `<base>/<channel>/` (needs a manager built with
    /// [`Redex::with_persistent_dir`](super::Redex::with_persistent_dir)). Default: `false`.
    pub fn with_persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// When to fsync; see [`FsyncPolicy`]. Default: [`FsyncPolicy::Never`].
    pub fn with_fsync_policy(mut self, policy: FsyncPolicy) -> Self {
        self.fsync_policy = policy;
        self
    }

    /// Keep at most this many events; older ones go at the next `sweep_retention()`.
    pub fn with_retention_max_events(mut self, max: u64) -> Self {
        self.retention_max_events = Some(max);
        self
    }

    /// Keep at most this many payload bytes; the oldest events go first.
    pub fn with_retention_max_bytes(mut self, max: u64) -> Self {
        self.retention_max_bytes = Some(max);
        self
    }

    /// Drop events older than this (by their stored append timestamp, which survives
    /// reopen).
    pub fn with_retention_max_age(mut self, max: Duration) -> Self {
        self.retention_max_age = Some(max);
        self
    }

    /// Bound the in-memory hot window of a persistent file. Older events stay on disk and
    /// are read from there by `read_range` and tails. In-memory files keep every retained
    /// event in memory whatever this says: bound them with retention. Default: 64 MiB.
    pub fn with_max_memory_bytes(mut self, max: usize) -> Self {
        self.max_memory_bytes = max;
        self
    }

    /// Start a new on-disk segment once the current one holds this many data bytes
    /// (1 byte to 2 GiB). Retention gives disk space back a whole segment at a time.
    /// Default: 64 MiB.
    pub fn with_segment_max_bytes(mut self, max: u64) -> Self {
        self.segment_max_bytes = max;
        self
    }

    /// Whether the file is kept on disk.
    pub fn persistent(&self) -> bool {
        self.persistent
    }
    /// The fsync policy.
    pub fn fsync_policy(&self) -> FsyncPolicy {
        self.fsync_policy
    }
    /// The retention bound on event count, if any.
    pub fn retention_max_events(&self) -> Option<u64> {
        self.retention_max_events
    }
    /// The retention bound on payload bytes, if any.
    pub fn retention_max_bytes(&self) -> Option<u64> {
        self.retention_max_bytes
    }
    /// The retention bound on event age, if any.
    pub fn retention_max_age(&self) -> Option<Duration> {
        self.retention_max_age
    }
    /// The hot-window bound of a persistent file.
    pub fn max_memory_bytes(&self) -> usize {
        self.max_memory_bytes
    }
    /// The segment size of a persistent file.
    pub fn segment_max_bytes(&self) -> u64 {
        self.segment_max_bytes
    }

    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.segment_max_bytes == 0 || self.segment_max_bytes > MAX_SEGMENT_BYTES {
            return Err("segment_max_bytes must be between 1 byte and 2 GiB");
        }
        match self.fsync_policy {
            FsyncPolicy::Interval(d) | FsyncPolicy::IntervalOrBytes { period: d, .. }
                if d.is_zero() =>
            {
                Err(
                    "an fsync interval must be longer than zero; use FsyncPolicy::EveryN(1) to fsync every append",
                )
            }
            FsyncPolicy::IntervalOrBytes { max_bytes: 0, .. } => Err(
                "IntervalOrBytes needs max_bytes > 0; use FsyncPolicy::EveryN(1) to fsync every append",
            ),
            _ => Ok(()),
        }
    }
}
