//! `RedexFile`: one channel's log — the hot window in memory, the disk log beneath it, and
//! the append, read, retention, sync and close paths.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Waker;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::clock;
use super::disk::{DirLock, DiskLog, SyncHandle};
use super::hot::HotWindow;
use super::tail::RedexTail;
use super::{ChannelName, FsyncPolicy, RedexError, RedexFileConfig};

/// The largest payload a RedEX event can carry: 1 GiB.
pub const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// One event of a RedEX log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedexEvent {
    /// Its sequence number: 0 for the first event of a channel, then +1 per event.
    pub seq: u64,
    /// When it was appended, in nanoseconds since the Unix epoch (from a coarse clock:
    /// millisecond-scale resolution). Stored on disk, so it survives reopen.
    pub timestamp_ns: u64,
    /// The bytes that were appended.
    pub payload: Bytes,
}

impl RedexEvent {
    /// Decodes the payload as a postcard-encoded `T` (the counterpart of
    /// [`RedexFile::append_postcard`]).
    pub fn decode_postcard<T: DeserializeOwned>(&self) -> Result<T, RedexError> {
        postcard::from_bytes(&self.payload).map_err(|source| RedexError::Decode {
            seq: self.seq,
            source,
        })
    }
}

/// What reopening a persistent file found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segments on disk after recovery (a new channel has one, empty).
    pub segments: usize,
    /// The oldest retained sequence number.
    pub first_seq: u64,
    /// The sequence number the next append gets.
    pub next_seq: u64,
    /// Whole index records dropped with a torn tail (the first failed its checksum or lacked
    /// data; the rest came after it, in its segment or in later ones).
    pub truncated_records: u64,
    /// Bytes cut from the ends of the index, timestamp and data files, plus the bytes of
    /// whole segments deleted because they lay after a tear.
    pub truncated_bytes: u64,
}

/// Counters of a file's disk activity since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStats {
    /// Write system calls made (staged appends are written in batches, one call per file).
    pub write_calls: u64,
    /// Syncs completed, whatever asked for them (the policy, `sync()`, `close()`, the
    /// interval task); each fsyncs every file written since the previous one.
    pub fsyncs: u64,
    /// Syncs that failed. The interval task has no caller to report to: watch this.
    pub sync_failures: u64,
}

/// What a retention sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Events removed.
    pub evicted_events: u64,
    /// Payload bytes removed.
    pub evicted_bytes: u64,
    /// Disk space given back (whole segments deleted).
    pub disk_bytes_freed: u64,
    /// The oldest retained sequence number after the sweep.
    pub first_seq: u64,
}

pub(crate) struct FileState {
    /// Seq of the next append.
    pub next_seq: u64,
    /// Oldest retained seq.
    pub head_seq: u64,
    /// Events `[hot.start(), next_seq)` in memory.
    hot: HotWindow,
    /// Payload bytes of events `[head_seq, next_seq)`.
    retained_bytes: u64,
    disk: Option<DiskLog>,
    pub closed: bool,
    /// Tails waiting for the next append, and the epoch that identifies this list.
    wakers: Vec<Option<Waker>>,
    pub wake_epoch: u64,
    /// Entries of `wakers` whose tail was dropped.
    forgotten_wakers: usize,
    unsynced_events: u64,
    unsynced_bytes: u64,
    recovery: Option<super::RecoveryReport>,
}

impl FileState {
    /// Drops hot events that are on disk already until the window fits its bound.
    fn trim_hot(&mut self, max_bytes: usize) {
        if let Some(disk) = &self.disk {
            let flushed = disk.flushed_seq();
            while self.hot.bytes() > max_bytes && self.hot.start() < flushed {
                self.hot.pop_front();
            }
        }
    }

    /// Appends hot events `[from, to)` to `out` (`from` must be in the window), stopping
    /// after about `max_bytes` of payload (at least one event).
    fn read_hot(&self, from: u64, to: u64, max_bytes: usize, out: &mut Vec<RedexEvent>) {
        self.hot.read(from, to, max_bytes, out);
    }

    /// Registers a tail's waker for the next append. `slot` remembers where it was put so a
    /// re-registration in the same epoch replaces it instead of growing the list.
    ///
    /// Returns the waker it displaced, to be dropped after the lock is released (dropping a
    /// waker can run arbitrary code, such as another tail's `Drop`, which locks the file).
    #[must_use]
    pub fn register_waker(
        &mut self,
        waker: &Waker,
        slot: &mut Option<(u64, usize)>,
    ) -> Option<Waker> {
        match *slot {
            Some((epoch, i)) if epoch == self.wake_epoch => {
                if self.wakers[i].as_ref().is_some_and(|w| w.will_wake(waker)) {
                    None
                } else {
                    self.wakers[i].replace(waker.clone())
                }
            }
            _ => {
                *slot = Some((self.wake_epoch, self.wakers.len()));
                self.wakers.push(Some(waker.clone()));
                None
            }
        }
    }

    /// Entries in the list of parked tails (for tests).
    #[cfg(test)]
    pub fn parked_entries(&self) -> usize {
        self.wakers.len()
    }

    /// Forgets a dropped tail's waker, so parked-then-dropped tails do not pile up. Returns
    /// the waker, to be dropped after the lock is released.
    #[must_use]
    pub fn forget_waker(&mut self, slot: Option<(u64, usize)>) -> Option<Waker> {
        let mut forgotten = None;
        if let Some((epoch, i)) = slot
            && epoch == self.wake_epoch
            && let Some(w @ Some(_)) = self.wakers.get_mut(i)
        {
            forgotten = w.take();
            self.forgotten_wakers += 1;
            // Compact once most entries are forgotten. Live tails keep their entries but
            // not their positions, so the epoch moves on and they register afresh.
            if self.forgotten_wakers > 64 && self.forgotten_wakers * 2 > self.wakers.len() {
                self.wakers.retain(Option::is_some);
                self.wake_epoch += 1;
                self.forgotten_wakers = 0;
            }
        }
        forgotten
    }

    fn take_wakers(&mut self) -> Vec<Option<Waker>> {
        if self.wakers.is_empty() {
            return Vec::new();
        }
        self.wake_epoch += 1;
        self.forgotten_wakers = 0;
        std::mem::take(&mut self.wakers)
    }

    /// Whether the file still holds its share of the directory lock: always while open,
    /// and after a close that could not write its staged events.
    fn holds_dir(&self) -> bool {
        self.disk.as_ref().is_some_and(DiskLog::holds_lock)
    }

    /// Hands staged events to the OS and returns the fsync to run after the lock is
    /// released (`None` for an in-memory file). The policy's counters restart here.
    fn prepare_sync(&mut self) -> Result<Option<SyncHandle>, RedexError> {
        let Some(disk) = self.disk.as_mut() else {
            return Ok(None);
        };
        let handle = disk.flush_for_sync()?;
        self.unsynced_events = 0;
        self.unsynced_bytes = 0;
        Ok(Some(handle))
    }

    fn evicted(&self, channel: &ChannelName, requested: u64) -> RedexError {
        RedexError::Evicted {
            channel: channel.clone(),
            requested,
            first_available: self.head_seq,
        }
    }
}

pub(crate) struct FileInner {
    pub channel: ChannelName,
    pub config: RedexFileConfig,
    state: Mutex<FileState>,
    stop_task: Arc<tokio::sync::Notify>,
    registry: Weak<super::Shared>,
}

impl FileInner {
    pub fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends to `out` the next events from `from` (below `to`): at least one if any
    /// exists, at most a chunk, stopping after about `max_bytes` of payload. Events on disk
    /// are read after the lock is released, so a reader catching up from disk never holds
    /// up appends. When there is nothing to read, returns the still-held lock, so a tail can
    /// park without a window for a lost wake-up.
    pub fn read_chunk(
        &self,
        from: u64,
        to: u64,
        max_bytes: usize,
        out: &mut Vec<RedexEvent>,
    ) -> Result<Option<MutexGuard<'_, FileState>>, RedexError> {
        let cold = {
            let mut st = self.lock();
            if from < st.head_seq {
                return Err(st.evicted(&self.channel, from));
            }
            let to = to.min(st.next_seq);
            if from >= to {
                return Ok(Some(st));
            }
            if from >= st.hot.start() {
                st.read_hot(from, to, max_bytes, out);
                return Ok(None);
            }
            let hot_start = st.hot.start();
            let disk = st
                .disk
                .as_mut()
                .expect("only persistent files have cold events");
            disk.cold_chunk(from, to.min(hot_start))?
        };
        cold.read(max_bytes, out)?;
        Ok(None)
    }

    fn sync_if_dirty(&self) {
        let handle = {
            let mut st = self.lock();
            if st.closed || st.unsynced_events == 0 {
                return;
            }
            match st.prepare_sync() {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(channel = %self.channel, error = %e, "RedEX interval fsync could not write; will retry");
                    return;
                }
            }
        };
        if let Err(e) = self.fsync(&handle) {
            tracing::error!(channel = %self.channel, error = %e, "RedEX interval fsync failed; will retry");
        }
    }

    /// Runs an fsync prepared under the lock. On failure the file is marked as needing
    /// one, so the policy's next trigger (or interval tick) tries again.
    fn fsync(&self, handle: &SyncHandle) -> Result<(), RedexError> {
        let result = handle.sync();
        if result.is_err() {
            let mut st = self.lock();
            st.unsynced_events = st.unsynced_events.max(u64::MAX / 2);
            st.unsynced_bytes = st.unsynced_bytes.max(u64::MAX / 2);
        }
        result
    }
}

impl Drop for FileInner {
    fn drop(&mut self) {
        self.stop_task.notify_one();
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Only while the directory is still ours: after a successful close another `Redex`
        // may own it (and a closed file has nothing staged).
        if let Some(disk) = st.disk.as_mut().filter(|d| d.holds_lock())
            && let Err(e) = disk.flush()
        {
            tracing::error!(channel = %self.channel, error = %e, "RedEX could not write buffered events when the file was dropped");
        }
    }
}

/// A handle to one channel's append-only log. Cheap to clone; all clones share the log.
///
/// Get one from [`Redex::open_file`](super::Redex::open_file).
///
/// # Ordering
///
/// Sequence numbers start at 0 and grow by one per event, with no gaps. Appends from any
/// number of threads are serialised; an append's returned seq is its position.
///
/// # Closing
///
/// [`close`](Self::close) fsyncs and ends every tail once it has delivered the events that
/// were appended before the close. Appends after a close fail with
/// [`RedexError::Closed`]. Dropping the file (every handle and tail of it, and its `Redex`
/// unless it was closed) writes staged events to the OS but does
/// not fsync.
#[derive(Clone)]
pub struct RedexFile {
    pub(crate) inner: Arc<FileInner>,
}

impl std::fmt::Debug for RedexFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("RedexFile")
            .field("channel", &self.inner.channel)
            .field("first_seq", &st.head_seq)
            .field("next_seq", &st.next_seq)
            .field("persistent", &st.disk.is_some())
            .field("closed", &st.closed)
            .finish()
    }
}

fn sync_due(policy: FsyncPolicy, events: u64, bytes: u64) -> bool {
    match policy {
        FsyncPolicy::Never | FsyncPolicy::Interval(_) => false,
        FsyncPolicy::EveryN(n) => events >= n.max(1),
        FsyncPolicy::IntervalOrBytes { max_bytes, .. } => bytes >= max_bytes,
    }
}

impl RedexFile {
    pub(crate) fn open(
        channel: ChannelName,
        config: RedexFileConfig,
        disk_dir: Option<(PathBuf, Arc<DirLock>)>,
        registry: Weak<super::Shared>,
    ) -> Result<RedexFile, RedexError> {
        let runtime = match config.fsync_policy().period() {
            Some(_) if disk_dir.is_some() => Some(tokio::runtime::Handle::try_current().map_err(
                |_| RedexError::NoRuntime {
                    channel: channel.clone(),
                },
            )?),
            _ => None,
        };
        let (disk, head_seq, next_seq, retained_bytes, recovery) = match disk_dir {
            Some((dir, lock)) => {
                let (disk, rec) =
                    DiskLog::open(dir, channel.clone(), lock, config.segment_max_bytes())?;
                (
                    Some(disk),
                    rec.head_seq,
                    rec.next_seq,
                    rec.retained_bytes,
                    Some(rec.report),
                )
            }
            None => (None, 0, 0, 0, None),
        };
        let state = FileState {
            next_seq,
            head_seq,
            hot: HotWindow::new(next_seq),
            retained_bytes,
            disk,
            closed: false,
            wakers: Vec::new(),
            wake_epoch: 0,
            forgotten_wakers: 0,
            unsynced_events: 0,
            unsynced_bytes: 0,
            recovery,
        };
        let stop_task = Arc::new(tokio::sync::Notify::new());
        let inner = Arc::new(FileInner {
            channel,
            config,
            state: Mutex::new(state),
            stop_task: Arc::clone(&stop_task),
            registry,
        });
        if let (Some(rt), Some(period)) = (runtime, inner.config.fsync_policy().period()) {
            let weak = Arc::downgrade(&inner);
            rt.spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(period) => {}
                        () = stop_task.notified() => break,
                    }
                    let Some(inner) = weak.upgrade() else { break };
                    if inner.lock().closed {
                        break;
                    }
                    let _ = tokio::task::spawn_blocking(move || inner.sync_if_dirty()).await;
                }
            });
        }
        Ok(RedexFile { inner })
    }

    /// The channel this file belongs to.
    pub fn channel(&self) -> &ChannelName {
        &self.inner.channel
    }

    /// The configuration the file was opened with.
    pub fn config(&self) -> &RedexFileConfig {
        &self.inner.config
    }

    /// Appends one event and returns its sequence number.
    ///
    /// With a persistent file the event is staged for the disk; whether it is fsynced
    /// before this returns depends on the [`FsyncPolicy`]. If writing fails (disk full, I/O
    /// error) the error is returned and the event is *not* in the log; earlier events are
    /// unaffected and the next append or `sync()` retries their write. If the write succeeds
    /// but the policy's fsync fails, the event is in the log, its durability is unknown, and
    /// the error says so (`RedexError::Io` with `op` `"fsync"`, `"fsync directory"` or
    /// `"write sync mark"`). After one fsync failure every later fsync of the file reports
    /// [`RedexError::DurabilityUnknown`] until it is reopened: a later fsync that succeeds
    /// cannot prove that the earlier writes reached the disk.
    ///
    /// ```
    /// use netdb_runtime::redex::{Redex, RedexFileConfig};
    ///
    /// let redex = Redex::new();
    /// let file = redex.open_file(&"demo".parse()?, RedexFileConfig::default())?;
    /// assert_eq!(file.append(b"first")?, 0);
    /// assert_eq!(file.append(b"second")?, 1);
    /// assert_eq!(file.read_range(0, 2)?[1].payload, &b"second"[..]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(&self, payload: &[u8]) -> Result<u64, RedexError> {
        self.append_many(std::slice::from_ref(&payload))
            .map(|range| range.start)
    }

    /// Appends several events at once: all of them get contiguous sequence numbers, or, on
    /// error, none is appended. Returns their sequence numbers.
    pub fn append_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Range<u64>, RedexError> {
        self.append_many(payloads)
    }

    /// Encodes `value` with postcard and appends it.
    pub fn append_postcard<T: Serialize + ?Sized>(&self, value: &T) -> Result<u64, RedexError> {
        let bytes = postcard::to_allocvec(value).map_err(RedexError::Encode)?;
        self.append(&bytes)
    }

    fn append_many<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<Range<u64>, RedexError> {
        let mut total = 0usize;
        let mut heap = 0u64;
        for p in payloads {
            let len = p.as_ref().len();
            total = total.saturating_add(len);
            if len > super::format::INLINE_MAX {
                heap += len as u64;
            }
        }
        if total > MAX_PAYLOAD_LEN {
            return Err(RedexError::PayloadTooLarge {
                len: total,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let n = payloads.len() as u64;
        let cfg = &self.inner.config;
        let mut guard = self.inner.lock();
        let st = &mut *guard;
        if st.closed {
            return Err(RedexError::Closed {
                channel: self.inner.channel.clone(),
            });
        }
        let first = st.next_seq;
        if n == 0 {
            return Ok(first..first);
        }
        if n > super::format::SEQ_LIMIT.saturating_sub(first) {
            return Err(RedexError::SeqExhausted {
                channel: self.inner.channel.clone(),
                next_seq: first,
                events: n,
                limit: super::format::SEQ_LIMIT,
            });
        }
        let ts = clock::now_ns();
        let mut sync = None;
        if let Some(disk) = st.disk.as_mut() {
            disk.prepare(n, heap)?;
            let mark = disk.mark();
            for (i, p) in payloads.iter().enumerate() {
                disk.stage(first + i as u64, ts, p.as_ref());
            }
            let due = sync_due(
                cfg.fsync_policy(),
                st.unsynced_events.saturating_add(n),
                st.unsynced_bytes.saturating_add(total as u64),
            );
            let written = if due {
                disk.flush_for_sync().map(Some)
            } else if disk.wants_flush() {
                disk.flush().map(|()| None)
            } else {
                Ok(None)
            };
            match written {
                Ok(handle) => sync = handle,
                Err(e) => {
                    disk.rollback(mark);
                    return Err(e);
                }
            }
        }
        for p in payloads {
            st.hot.push(ts, p.as_ref());
        }
        st.next_seq += n;
        st.retained_bytes += total as u64;
        if sync.is_some() {
            st.unsynced_events = 0;
            st.unsynced_bytes = 0;
        } else if st.disk.is_some() {
            st.unsynced_events = st.unsynced_events.saturating_add(n);
            st.unsynced_bytes = st.unsynced_bytes.saturating_add(total as u64);
        }
        st.trim_hot(cfg.max_memory_bytes());
        let wakers = st.take_wakers();
        drop(guard);
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
        if let Some(handle) = sync {
            // Outside the lock, so readers and other writers are not held up by the disk.
            // The events are with the OS already: if the fsync fails they stay in the log
            // with unknown durability, and the error says so.
            self.inner.fsync(&handle)?;
        }
        Ok(first..first + n)
    }

    /// The events with sequence numbers in `[start, end)` (clamped to what exists), from
    /// memory or disk. Large ranges are read a chunk at a time without holding up appends;
    /// a retention sweep running meanwhile can therefore end the read with `Evicted` for a
    /// seq inside the range. Fails with [`RedexError::Evicted`] if `start` was removed by
    /// retention, and with [`RedexError::Corrupt`] if a stored record fails its checksum.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<RedexEvent>, RedexError> {
        let mut out = Vec::with_capacity(end.saturating_sub(start).min(1 << 12) as usize);
        let mut seq = start;
        // At least one call, so a start below the head is `Evicted` even for an empty range.
        while self
            .inner
            .read_chunk(seq, end, usize::MAX, &mut out)?
            .is_none()
        {
            seq = out.last().map_or(end, |e| e.seq + 1);
        }
        Ok(out)
    }

    /// A stream of the events from `from_seq` on: first those already in the log, then each
    /// new one as it is appended, in strict seq order with no gap and no duplicate.
    ///
    /// A tail is a cursor over the log, not a queue: a tail that falls behind reads the
    /// events it missed from memory or disk, however far behind it is, and is never dropped.
    /// Any number of tails can run at once. The stream ends (`None`) after [`close`] once
    /// every event appended before the close was delivered. If retention removes events the
    /// tail has not read yet it yields one [`RedexError::Evicted`] and continues from the
    /// oldest retained event; if a stored record is corrupt it yields
    /// [`RedexError::Corrupt`] and ends.
    ///
    /// [`close`]: Self::close
    pub fn tail(&self, from_seq: u64) -> RedexTail {
        RedexTail::new(Arc::clone(&self.inner), from_seq)
    }

    /// The number of retained events (`next_seq() - first_seq()`).
    pub fn len(&self) -> u64 {
        let st = self.inner.lock();
        st.next_seq - st.head_seq
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.inner.lock().next_seq
    }

    /// The oldest retained sequence number (0 until retention removes something).
    pub fn first_seq(&self) -> u64 {
        self.inner.lock().head_seq
    }

    /// Payload bytes of the retained events.
    pub fn retained_bytes(&self) -> u64 {
        self.inner.lock().retained_bytes
    }

    /// Bytes the hot window holds in memory.
    pub fn memory_bytes(&self) -> usize {
        self.inner.lock().hot.bytes()
    }

    /// Bytes the file's segments take on disk (0 for an in-memory file).
    pub fn disk_bytes(&self) -> u64 {
        self.inner
            .lock()
            .disk
            .as_ref()
            .map_or(0, DiskLog::disk_bytes)
    }

    /// The directory of a persistent file.
    pub fn dir(&self) -> Option<PathBuf> {
        self.inner
            .lock()
            .disk
            .as_ref()
            .map(|d| d.dir().to_path_buf())
    }

    /// What recovery found when this persistent file was opened.
    pub fn recovery_report(&self) -> Option<RecoveryReport> {
        self.inner.lock().recovery.clone()
    }

    /// Writes every appended event to disk and fsyncs — the explicit durability barrier.
    /// Works on every policy; a no-op for in-memory files and after `close()`.
    pub fn sync(&self) -> Result<(), RedexError> {
        let handle: SyncHandle = {
            let mut st = self.inner.lock();
            if st.closed {
                let pending = st.holds_dir();
                drop(st);
                // A close that could not write its staged events is retried, not skipped.
                return if pending { self.close() } else { Ok(()) };
            }
            match st.prepare_sync()? {
                Some(h) => h,
                None => return Ok(()),
            }
        };
        self.inner.fsync(&handle)
    }

    /// Counters of the file's disk activity.
    pub fn stats(&self) -> FileStats {
        let st = self.inner.lock();
        st.disk
            .as_ref()
            .map_or(FileStats::default(), |d| FileStats {
                write_calls: d.write_calls,
                fsyncs: d.fsyncs(),
                sync_failures: d.sync_failures(),
            })
    }

    /// Applies the retention bounds now; see [`sweep_retention_at`](Self::sweep_retention_at).
    pub fn sweep_retention(&self) -> Result<RetentionReport, RedexError> {
        self.sweep_retention_at(SystemTime::now())
    }

    /// Applies the retention bounds as of `now`: removes the oldest events while there are
    /// more than `retention_max_events`, while the retained payload exceeds
    /// `retention_max_bytes`, and while the oldest is older than `retention_max_age`.
    /// Whole disk segments that fall out are deleted, giving their space back. The new
    /// first seq is recorded on disk, so reopening does not bring evicted events back.
    ///
    /// Fails with [`RedexError::Closed`] after `close()`: the directory may belong to
    /// another `Redex` by then.
    pub fn sweep_retention_at(&self, now: SystemTime) -> Result<RetentionReport, RedexError> {
        let cfg = &self.inner.config;
        let mut st = self.inner.lock();
        let st = &mut *st;
        if st.closed {
            return Err(RedexError::Closed {
                channel: self.inner.channel.clone(),
            });
        }
        let count_head = cfg
            .retention_max_events()
            .map_or(0, |max| st.next_seq.saturating_sub(max));
        let max_bytes = cfg.retention_max_bytes().unwrap_or(u64::MAX);
        let cutoff = cfg.retention_max_age().map_or(0, |age| {
            clock::system_time_ns(now).saturating_sub(age.as_nanos() as u64)
        });
        let mut remaining = st.retained_bytes;
        let mut evict = |seq: u64, ts: u64, len: u64| {
            let go = seq < count_head || remaining > max_bytes || ts < cutoff;
            if go {
                remaining -= len;
            }
            go
        };
        let mut head = st.head_seq;
        if head < st.hot.start() {
            let disk = st.disk.as_mut().expect("cold events are on disk");
            head = disk.scan(head, st.hot.start(), &mut evict)?;
        }
        if head >= st.hot.start() {
            for (ts, len) in st.hot.meta_from(head) {
                if !evict(head, ts, len) {
                    break;
                }
                head += 1;
            }
        }
        let mut report = RetentionReport {
            first_seq: head,
            ..RetentionReport::default()
        };
        if head == st.head_seq {
            return Ok(report);
        }
        if let Some(disk) = st.disk.as_mut() {
            report.disk_bytes_freed = disk.evict_to(head, st.next_seq)?;
        }
        while st.hot.start() < head && !st.hot.is_empty() {
            st.hot.pop_front();
        }
        if st.hot.start() < head {
            st.hot.reset(head);
        }
        report.evicted_events = head - st.head_seq;
        report.evicted_bytes = st.retained_bytes - remaining;
        st.retained_bytes = remaining;
        st.head_seq = head;
        tracing::info!(
            channel = %self.inner.channel,
            evicted_events = report.evicted_events,
            evicted_bytes = report.evicted_bytes,
            disk_bytes_freed = report.disk_bytes_freed,
            first_seq = head,
            "RedEX retention sweep"
        );
        Ok(report)
    }

    /// Closes the file: fsyncs a persistent file, stops its interval task, ends its tails
    /// (after they deliver what was appended before), and removes it from its `Redex`.
    /// Calling it again does nothing.
    ///
    /// If writing or fsyncing fails, the error is returned, the file stays closed to
    /// appends, and it keeps its hold on the directory (its staged events are not yet on
    /// disk): call `close()` again to retry; dropping the file tries once more.
    pub fn close(&self) -> Result<(), RedexError> {
        let (result, wakers, released) = {
            let mut st = self.inner.lock();
            if st.closed && !st.holds_dir() {
                return Ok(());
            }
            let first_close = !st.closed;
            st.closed = true;
            let result = match st.disk.as_mut() {
                Some(disk) => match disk.flush_for_sync() {
                    // Everything staged is with the OS: whatever the fsync says, there is
                    // nothing left that only this file could write, so the directory is
                    // free for the next opener as soon as close returns (a draining tail
                    // or the interval task may still hold the file).
                    Ok(handle) => {
                        let synced = handle.sync();
                        disk.release_lock();
                        synced
                    }
                    // Staged events could not be written: keep the directory, so nobody
                    // else can write where they belong; a retried close writes them.
                    Err(e) => Err(e),
                },
                None => Ok(()),
            };
            let released = !st.holds_dir();
            let wakers = if first_close {
                st.take_wakers()
            } else {
                Vec::new()
            };
            (result, wakers, released)
        };
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
        if released {
            self.inner.stop_task.notify_one();
            if let Some(registry) = self.inner.registry.upgrade() {
                registry.forget(&self.inner);
            }
        }
        result
    }

    /// Whether a close failed to write staged events, so the file still holds them (and
    /// the directory); `close()` retries.
    pub(crate) fn close_pending(&self) -> bool {
        let st = self.inner.lock();
        st.closed && st.holds_dir()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}
