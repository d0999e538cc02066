//! The persistent half of a RedEX file: segments, the write buffer, recovery and cold reads.
//!
//! `DiskLog` runs under the owning file's state lock (see `file.rs`); a `ColdChunk` (a
//! planned read) and a `SyncHandle` (a planned fsync) run after the lock is released.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;

use super::format::{
    INDEX_RECORD_LEN, IndexRecord, SEQ_LIMIT, TS_RECORD_LEN, decode_ts, parse_segment_name,
    segment_stem,
};
use super::{ChannelName, RecoveryReport, RedexError, RedexEvent};

/// Buffered appends are handed to the OS once this many bytes are staged.
const FLUSH_THRESHOLD: usize = 256 << 10;
/// A segment holds at most this many events, which bounds recovery work on open.
const MAX_SEGMENT_EVENTS: u64 = 1 << 20;
/// Records read per chunk on the cold path.
const READ_CHUNK_EVENTS: u64 = 4096;
/// The file recording the first retained sequence number.
const HEAD_FILE: &str = ".head";
const HEAD_TMP_FILE: &str = ".head.tmp";
/// The file naming the format of the channel directory.
const FORMAT_FILE: &str = ".format";
/// What [`FORMAT_FILE`] holds for the format this module reads and writes.
pub(crate) const FORMAT: &str = "netdb-redex 1";
/// The file recording the sequence number below which every event was fsynced.
const SYNCED_FILE: &str = ".synced";

/// Held by every persistent file of a `Redex` so the directory lock outlives the manager.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, RedexError> {
        fs::create_dir_all(dir).map_err(|e| RedexError::io("create directory", dir, e))?;
        let path = dir.join(".netdb.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| RedexError::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => {
                tracing::warn!(dir = %dir.display(), "RedEX directory is locked by another Redex; refusing to open it");
                Err(RedexError::Locked {
                    dir: dir.to_owned(),
                })
            }
            Err(fs::TryLockError::Error(e)) => Err(RedexError::io("lock", &path, e)),
        }
    }
}

#[derive(Debug)]
struct SegmentFiles {
    idx: File,
    dat: File,
    ts: File,
    stem: PathBuf,
}

impl SegmentFiles {
    fn path(&self, ext: &str) -> PathBuf {
        self.stem.with_extension(ext)
    }

    /// Opens a segment's files. `Fresh` creates them empty (data and timestamps before the
    /// index, since recovery finds segments by their index file); `Repair` creates missing
    /// ones empty (a crash while a segment was being created); `Existing` requires them.
    fn open(dir: &Path, first_seq: u64, mode: OpenMode) -> Result<SegmentFiles, RedexError> {
        let stem = dir.join(segment_stem(first_seq));
        let open = |ext: &str| {
            let path = stem.with_extension(ext);
            let mut opts = OpenOptions::new();
            opts.read(true).write(true);
            match mode {
                OpenMode::Fresh => opts.create(true).truncate(true),
                OpenMode::Repair => opts.create(true).truncate(false),
                OpenMode::Existing => &mut opts,
            };
            opts.open(&path).map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    RedexError::Corrupt {
                        file: path.clone(),
                        seq: first_seq,
                        reason: "the segment file is missing".into(),
                    }
                } else {
                    RedexError::io("open", &path, e)
                }
            })
        };
        let dat = open("dat")?;
        let ts = open("ts")?;
        let idx = open("idx")?;
        Ok(SegmentFiles { idx, dat, ts, stem })
    }

    fn sync(&self) -> Result<(), RedexError> {
        // Data and timestamps before the index: an index record on stable storage must
        // never point at bytes that are not.
        for (file, ext) in [(&self.dat, "dat"), (&self.ts, "ts"), (&self.idx, "idx")] {
            file.sync_data()
                .map_err(|e| RedexError::io("fsync", self.path(ext), e))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    Fresh,
    Repair,
    Existing,
}

/// What the log knows about a segment without reading it.
#[derive(Debug, Clone, Copy)]
struct SegmentMeta {
    first_seq: u64,
    /// Events in the segment (for the active segment: including buffered ones).
    count: u64,
}

impl SegmentMeta {
    fn end(&self) -> u64 {
        self.first_seq + self.count
    }
}

#[derive(Debug)]
struct ActiveSegment {
    meta: SegmentMeta,
    files: Arc<SegmentFiles>,
    /// Events handed to the OS.
    written: u64,
    /// Data bytes handed to the OS.
    written_dat: u64,
    /// Data bytes including buffered ones.
    data_len: u64,
}

/// Positions to roll the write buffer back to when a staged append fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    idx: usize,
    dat: usize,
    ts: usize,
    count: u64,
    data_len: u64,
}

/// What recovery found; the log's logical bounds.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub head_seq: u64,
    pub next_seq: u64,
    pub retained_bytes: u64,
    pub report: RecoveryReport,
}

#[derive(Debug)]
pub(crate) struct DiskLog {
    dir: PathBuf,
    channel: ChannelName,
    sealed: VecDeque<SegmentMeta>,
    active: ActiveSegment,
    buf_idx: Vec<u8>,
    buf_dat: Vec<u8>,
    buf_ts: Vec<u8>,
    segment_max_bytes: u64,
    cold: Option<(u64, Arc<SegmentFiles>)>,
    synced: Arc<SyncedMark>,
    /// Number of write calls made (one per file per flush).
    pub write_calls: u64,
    lock: Option<Arc<DirLock>>,
}

/// One record as found on disk.
struct Found {
    rec: IndexRecord,
    ts: u64,
}

impl DiskLog {
    /// Opens (creating if needed) the channel directory and recovers it.
    pub fn open(
        dir: PathBuf,
        channel: ChannelName,
        lock: Arc<DirLock>,
        segment_max_bytes: u64,
    ) -> Result<(DiskLog, Recovered), RedexError> {
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| RedexError::io("create directory", &dir, e))?;
            // Make the new directory entries durable, from the channel up to the base.
            let mut d = dir.as_path();
            while let Some(parent) = d.parent() {
                sync_dir(parent)?;
                if parent.join(".netdb.lock").exists() {
                    break;
                }
                d = parent;
            }
        }
        check_format(&dir)?;
        let _ = fs::remove_file(dir.join(HEAD_TMP_FILE));
        let mut seqs: Vec<u64> = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| RedexError::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| RedexError::io("list", &dir, e))?;
            let name = entry.file_name();
            if let Some((seq, ext)) = name.to_str().and_then(parse_segment_name)
                && ext == "idx"
            {
                if seq > SEQ_LIMIT {
                    return Err(RedexError::Corrupt {
                        file: dir.join(name),
                        seq,
                        reason: format!(
                            "a segment cannot start past seq {SEQ_LIMIT}: the file was renamed or damaged"
                        ),
                    });
                }
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let head_hint = read_head_file(&dir);
        let mut synced = SyncedMark::open(&dir)?;
        let mut report = RecoveryReport::default();

        let mut sealed = VecDeque::new();
        let mut retained_bytes = 0u64;
        let head_floor = seqs.first().copied().unwrap_or(head_hint.unwrap_or(0));
        let head_seq_guess = head_hint.unwrap_or(head_floor).max(head_floor);
        let mark = synced.read();

        let mut active = None;
        for (k, &first) in seqs.iter().enumerate() {
            let next_first = seqs.get(k + 1).copied();
            if let (Some(head), Some(n)) = (head_hint, next_first)
                && n <= head
            {
                // Wholly evicted, left behind by a sweep that could not delete it.
                remove_segment(&dir, first)?;
                sync_dir(&dir)?;
                continue;
            }
            let Some(next_first) = next_first.filter(|&n| n <= mark) else {
                // This segment may hold events past the sync mark: verify every record, cut
                // at the first bad one past the mark, and drop the segments after it.
                // Files missing here can only be a creation the crash interrupted; the next
                // sync makes the directory entries of any it re-creates durable.
                let files = SegmentFiles::open(&dir, first, OpenMode::Repair)?;
                synced
                    .pending
                    .get_mut()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .1 = true;
                let seg = verify_segment(
                    files,
                    first,
                    head_seq_guess,
                    mark,
                    &mut report,
                    &mut retained_bytes,
                )?;
                match next_first {
                    Some(n) if seg.meta.end() == n => {
                        // Whole, but written after the last fsync: the next sync covers it.
                        let pending = synced
                            .pending
                            .get_mut()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        pending.0.push(first);
                        pending.1 = true;
                        sealed.push_back(seg.meta);
                    }
                    Some(n) => {
                        if seg.meta.end() < n && seg.meta.end() < mark {
                            return Err(RedexError::Corrupt {
                                file: seg.files.path("idx"),
                                seq: seg.meta.end(),
                                reason: format!(
                                    "the segment ends before seq {} but the next one starts at {n}",
                                    seg.meta.end()
                                ),
                            });
                        }
                        // A torn segment before the last: everything after it is unsynced
                        // and goes with the tear.
                        for &later in &seqs[k + 1..] {
                            drop_segment(&dir, later, &mut report)?;
                        }
                        active = Some(seg);
                        break;
                    }
                    None => {
                        active = Some(seg);
                        break;
                    }
                }
                continue;
            };
            let files = SegmentFiles::open(&dir, first, OpenMode::Existing)?;
            let (meta, bytes) = scan_sealed(&files, first, head_seq_guess)?;
            if meta.end() != next_first {
                return Err(RedexError::Corrupt {
                    file: files.path("idx"),
                    seq: meta.end(),
                    reason: format!(
                        "segment ends before seq {} but the next segment starts at {next_first}",
                        meta.end()
                    ),
                });
            }
            retained_bytes += bytes;
            sealed.push_back(meta);
        }
        report.segments = sealed.len() + 1;

        let active = match active {
            Some(active) => active,
            None => {
                let first = head_seq_guess;
                if mark > first {
                    // No segment at all, yet the sync mark says events up to `mark - 1`
                    // were fsynced: they are lost, not torn. Starting afresh below the mark
                    // would write a log the next open refuses (found by fuzzing).
                    return Err(RedexError::Corrupt {
                        file: dir.join(segment_stem(first)).with_extension("idx"),
                        seq: first,
                        reason: format!(
                            "the channel has no segment but events up to {} were fsynced",
                            mark - 1
                        ),
                    });
                }
                let files = SegmentFiles::open(&dir, first, OpenMode::Fresh)?;
                sync_dir(&dir)?;
                ActiveSegment {
                    meta: SegmentMeta {
                        first_seq: first,
                        count: 0,
                    },
                    files: Arc::new(files),
                    written: 0,
                    written_dat: 0,
                    data_len: 0,
                }
            }
        };
        let next_seq = active.meta.end();
        let head_seq = head_seq_guess.min(next_seq);
        if head_hint.is_some_and(|h| h > next_seq) {
            // Retention had evicted events that a crash then cut off: the head must come
            // back to the recovered end, or the next appends would count as evicted.
            write_head_file(&dir, head_seq)?;
            sync_dir(&dir)?;
        }
        report.next_seq = next_seq;
        report.first_seq = head_seq;
        if report.truncated_records > 0 || report.truncated_bytes > 0 {
            tracing::warn!(
                channel = %channel,
                dir = %dir.display(),
                truncated_records = report.truncated_records,
                truncated_bytes = report.truncated_bytes,
                next_seq,
                "RedEX recovery truncated a torn tail"
            );
        } else {
            tracing::debug!(channel = %channel, next_seq, head_seq, "RedEX recovery found a clean log");
        }
        let log = DiskLog {
            dir,
            channel,
            sealed,
            active,
            buf_idx: Vec::with_capacity(FLUSH_THRESHOLD / 8),
            buf_dat: Vec::with_capacity(FLUSH_THRESHOLD),
            buf_ts: Vec::with_capacity(FLUSH_THRESHOLD / 16),
            segment_max_bytes,
            cold: None,
            synced: Arc::new(synced),
            write_calls: 0,
            lock: Some(lock),
        };
        Ok((
            log,
            Recovered {
                head_seq,
                next_seq,
                retained_bytes,
                report,
            },
        ))
    }

    fn buffered_len(&self) -> usize {
        self.buf_idx.len() + self.buf_dat.len() + self.buf_ts.len()
    }

    /// The first sequence number not yet handed to the OS.
    pub fn flushed_seq(&self) -> u64 {
        self.active.meta.first_seq + self.active.written
    }

    /// Makes room for a batch of `events` events carrying `heap_bytes` of heap payload:
    /// starts a new segment if the active one is full, and flushes staged bytes if the batch
    /// would overflow the buffer. Nothing is staged; an error leaves the log unchanged.
    pub fn prepare(&mut self, events: u64, heap_bytes: u64) -> Result<(), RedexError> {
        let a = &self.active;
        if a.meta.count > 0
            && (a.data_len + heap_bytes > self.segment_max_bytes
                || a.meta.count + events > MAX_SEGMENT_EVENTS)
        {
            self.roll()?;
        }
        if self.buffered_len() > 0
            && self.buffered_len() + heap_bytes as usize + events as usize * 28 > FLUSH_THRESHOLD
        {
            self.flush()?;
        }
        Ok(())
    }

    pub fn mark(&self) -> Mark {
        Mark {
            idx: self.buf_idx.len(),
            dat: self.buf_dat.len(),
            ts: self.buf_ts.len(),
            count: self.active.meta.count,
            data_len: self.active.data_len,
        }
    }

    /// Drops everything staged after `mark`. Only valid while those bytes are unflushed.
    pub fn rollback(&mut self, mark: Mark) {
        self.buf_idx.truncate(mark.idx);
        self.buf_dat.truncate(mark.dat);
        self.buf_ts.truncate(mark.ts);
        self.active.meta.count = mark.count;
        self.active.data_len = mark.data_len;
    }

    /// Stages one record. Call [`prepare`](Self::prepare) first.
    pub fn stage(&mut self, seq: u64, ts: u64, payload: &[u8]) {
        debug_assert_eq!(seq, self.active.meta.end());
        let offset = self.active.data_len as u32;
        let rec = IndexRecord::new(seq, ts, payload, offset);
        if rec.heap().is_some() {
            self.buf_dat.extend_from_slice(payload);
            self.active.data_len += payload.len() as u64;
        }
        self.buf_ts.extend_from_slice(&ts.to_le_bytes());
        self.buf_idx.extend_from_slice(&rec.encode());
        self.active.meta.count += 1;
    }

    /// Whether the staged bytes are over the flush threshold.
    pub fn wants_flush(&self) -> bool {
        self.buffered_len() >= FLUSH_THRESHOLD
    }

    /// Hands staged bytes to the OS: data, then timestamps, then index. On error nothing is
    /// counted as written and the buffer is kept, so a retry rewrites the same offsets.
    pub fn flush(&mut self) -> Result<(), RedexError> {
        if self.buffered_len() == 0 {
            return Ok(());
        }
        let a = &self.active;
        let f = &a.files;
        let idx_at = a.written * INDEX_RECORD_LEN as u64;
        let ts_at = a.written * TS_RECORD_LEN as u64;
        let result = f
            .dat
            .write_all_at(&self.buf_dat, a.written_dat)
            .map_err(|e| RedexError::io("write", f.path("dat"), e))
            .and_then(|()| {
                f.ts.write_all_at(&self.buf_ts, ts_at)
                    .map_err(|e| RedexError::io("write", f.path("ts"), e))
            })
            .and_then(|()| {
                f.idx
                    .write_all_at(&self.buf_idx, idx_at)
                    .map_err(|e| RedexError::io("write", f.path("idx"), e))
            });
        if let Err(e) = result {
            // Cut off whatever part of this flush reached the files, so that records whose
            // append reports an error cannot reappear on reopen. Best effort: if the cut
            // fails too, the next flush overwrites the same offsets.
            let _ = f.dat.set_len(a.written_dat);
            let _ = f.ts.set_len(ts_at);
            let _ = f.idx.set_len(idx_at);
            return Err(e);
        }
        self.write_calls += 3;
        self.active.written = self.active.meta.count;
        self.active.written_dat = self.active.data_len;
        self.buf_idx.clear();
        self.buf_dat.clear();
        self.buf_ts.clear();
        Ok(())
    }

    /// Flushes and returns a handle whose `fsync` makes everything written so far durable.
    /// The caller may fsync outside the file lock.
    pub fn flush_for_sync(&mut self) -> Result<SyncHandle, RedexError> {
        self.flush()?;
        Ok(SyncHandle {
            files: Arc::clone(&self.active.files),
            mark: Arc::clone(&self.synced),
            through: self.active.meta.end(),
        })
    }

    /// Lets go of the directory lock (on close): the files stay readable for draining
    /// tails, but another `Redex` may now open the directory.
    pub fn release_lock(&mut self) {
        self.lock = None;
    }

    /// Whether this log still holds its share of the directory lock (it does until a
    /// successful close).
    pub fn holds_lock(&self) -> bool {
        self.lock.is_some()
    }

    /// Seals the active segment and starts a new one. Nothing is fsynced here (appends never
    /// wait for the disk unless the policy says so); the next sync covers the sealed
    /// segment and the new directory entries.
    fn roll(&mut self) -> Result<(), RedexError> {
        self.flush()?;
        let first = self.active.meta.end();
        let files = SegmentFiles::open(&self.dir, first, OpenMode::Fresh)?;
        let old = std::mem::replace(
            &mut self.active,
            ActiveSegment {
                meta: SegmentMeta {
                    first_seq: first,
                    count: 0,
                },
                files: Arc::new(files),
                written: 0,
                written_dat: 0,
                data_len: 0,
            },
        );
        tracing::debug!(channel = %self.channel, first_seq = first, "RedEX started a new segment");
        {
            let mut pending = self.synced.pending();
            pending.0.push(old.meta.first_seq);
            pending.1 = true;
        }
        self.sealed.push_back(old.meta);
        Ok(())
    }

    fn files_for(&mut self, seq: u64) -> Result<(SegmentMeta, Arc<SegmentFiles>), RedexError> {
        if seq >= self.active.meta.first_seq {
            let mut meta = self.active.meta;
            meta.count = self.active.written;
            return Ok((meta, Arc::clone(&self.active.files)));
        }
        let i = self.sealed.partition_point(|m| m.end() <= seq);
        let meta = *self
            .sealed
            .get(i)
            .filter(|m| m.first_seq <= seq)
            .ok_or_else(|| RedexError::Corrupt {
                file: self.dir.clone(),
                seq,
                reason: "no segment holds this sequence number".into(),
            })?;
        if let Some((first, files)) = &self.cold
            && *first == meta.first_seq
        {
            return Ok((meta, Arc::clone(files)));
        }
        let files = Arc::new(SegmentFiles::open(
            &self.dir,
            meta.first_seq,
            OpenMode::Existing,
        )?);
        self.cold = Some((meta.first_seq, Arc::clone(&files)));
        Ok((meta, files))
    }

    /// Plans a read of events from `from` towards `to` (all handed to the OS already): up
    /// to one segment and `READ_CHUNK_EVENTS` events. The plan is read outside the file lock.
    pub fn cold_chunk(&mut self, from: u64, to: u64) -> Result<ColdChunk, RedexError> {
        let (meta, files) = self.files_for(from)?;
        let n = (to.min(meta.end()) - from).min(READ_CHUNK_EVENTS);
        Ok(ColdChunk {
            meta,
            files,
            from,
            n,
        })
    }

    /// Calls `visit(seq, timestamp_ns, payload_len)` for events from `from` (handed to the
    /// OS already) until it returns `false` or `to` is reached; returns the first seq not
    /// accepted. Reads index and timestamps only.
    pub fn scan(
        &mut self,
        from: u64,
        to: u64,
        mut visit: impl FnMut(u64, u64, u64) -> bool,
    ) -> Result<u64, RedexError> {
        let mut seq = from;
        while seq < to {
            let (meta, files) = self.files_for(seq)?;
            let n = (to.min(meta.end()) - seq).min(READ_CHUNK_EVENTS);
            for f in read_records(&files, &meta, seq, n)? {
                if !visit(f.rec.seq, f.ts, f.rec.payload_len()) {
                    return Ok(f.rec.seq);
                }
            }
            seq += n;
        }
        Ok(seq)
    }

    /// Moves the logical head to `head`, deleting whole segments that fall before it and
    /// recording it in the head file. Returns the bytes of disk space given back.
    pub fn evict_to(&mut self, head: u64, next_seq: u64) -> Result<u64, RedexError> {
        // Record the new head first: if that fails, nothing has changed anywhere.
        write_head_file(&self.dir, head)?;
        let mut freed = 0;
        if head >= next_seq && self.active.meta.count > 0 {
            // Everything is gone: start an empty segment so the old one can be deleted.
            // If this fails, the old segment stays (its events are evicted all the same).
            if let Err(e) = self.roll() {
                tracing::warn!(channel = %self.channel, error = %e, "RedEX retention could not start a new segment; space is given back later");
            }
        }
        while let Some(meta) = self.sealed.front().copied() {
            if meta.end() > head {
                break;
            }
            self.sealed.pop_front();
            self.synced.pending().0.retain(|&f| f != meta.first_seq);
            if self
                .cold
                .as_ref()
                .is_some_and(|(f, _)| *f == meta.first_seq)
            {
                self.cold = None;
            }
            // The events are evicted whatever happens to the files: a segment left behind
            // lies wholly before the head, and the next open deletes it.
            match remove_segment(&self.dir, meta.first_seq) {
                Ok(bytes) => freed += bytes,
                Err(e) => {
                    tracing::warn!(channel = %self.channel, error = %e, "RedEX retention could not delete a segment");
                }
            }
        }
        if let Err(e) = sync_dir(&self.dir) {
            tracing::warn!(channel = %self.channel, error = %e, "RedEX retention could not fsync the directory");
        }
        Ok(freed)
    }

    /// Bytes the channel's files take on disk (staged bytes not included).
    pub fn disk_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(parse_segment_name)
                    .is_some()
            })
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Syncs completed (policy, `sync()`, `close()`, the interval task).
    pub fn fsyncs(&self) -> u64 {
        self.synced.fsyncs.load(Relaxed)
    }

    /// Syncs that failed.
    pub fn sync_failures(&self) -> u64 {
        self.synced.failures.load(Relaxed)
    }
}

/// Events on disk to read without holding the file lock.
///
/// Safe to read unlocked: the records it covers were handed to the OS, and written regions
/// are never rewritten; a segment deleted by retention meanwhile stays readable through the
/// open files.
#[derive(Debug)]
pub(crate) struct ColdChunk {
    meta: SegmentMeta,
    files: Arc<SegmentFiles>,
    from: u64,
    n: u64,
}

impl ColdChunk {
    /// Reads and verifies the chunk's events into `out`: all of them, or fewer once
    /// `max_bytes` of payload is reached (always at least one).
    pub fn read(&self, max_bytes: usize, out: &mut Vec<RedexEvent>) -> Result<(), RedexError> {
        let files = &self.files;
        let found = read_records(files, &self.meta, self.from, self.n)?;
        let corrupt = |seq: u64, reason: String| RedexError::Corrupt {
            file: files.path("idx"),
            seq,
            reason,
        };
        // Take records while within budget; their heap bytes are contiguous, so one read
        // fetches them all. Check that before trusting any length from disk.
        let mut take = 0;
        let mut budget = max_bytes;
        let mut span: Option<(u64, u64)> = None;
        for f in &found {
            let len = f.rec.payload_len() as usize;
            if take > 0 && len > budget {
                break;
            }
            budget = budget.saturating_sub(len);
            if let Some((off, len)) = f.rec.heap() {
                span = Some(match span {
                    None => (off, off + len),
                    Some((s, e)) if off == e => (s, e + len),
                    Some((_, e)) => {
                        return Err(corrupt(
                            f.rec.seq,
                            format!("payload offset {off}, expected {e}"),
                        ));
                    }
                });
            }
            take += 1;
        }
        let heap = match span {
            Some((start, end)) => {
                let dat_len = file_len(&files.dat, || files.path("dat"))?;
                if end > dat_len {
                    return Err(RedexError::Corrupt {
                        file: files.path("dat"),
                        seq: self.from,
                        reason: format!(
                            "the index needs {end} data bytes but the file has {dat_len}"
                        ),
                    });
                }
                let mut buf = vec![0u8; (end - start) as usize];
                read_exact_at(files, "dat", &mut buf, start, self.from)?;
                Bytes::from(buf)
            }
            None => Bytes::new(),
        };
        let base = span.map_or(0, |(s, _)| s);
        for f in found.into_iter().take(take) {
            let payload = match f.rec.heap() {
                Some((off, len)) => {
                    let start = (off - base) as usize;
                    heap.slice(start..start + len as usize)
                }
                None => Bytes::copy_from_slice(f.rec.inline().unwrap_or_default()),
            };
            if !f.rec.verify(f.ts, &payload) {
                return Err(corrupt(f.rec.seq, "checksum mismatch".into()));
            }
            out.push(RedexEvent {
                seq: f.rec.seq,
                timestamp_ns: f.ts,
                payload,
            });
        }
        Ok(())
    }
}

/// Handle for an fsync done outside the file lock.
#[derive(Debug)]
pub(crate) struct SyncHandle {
    files: Arc<SegmentFiles>,
    mark: Arc<SyncedMark>,
    through: u64,
}

impl SyncHandle {
    /// Fsyncs what was written (sealed segments not fsynced yet, the active segment, the
    /// directory if its entries changed), then records that every event below `through` is
    /// durable.
    ///
    /// Syncs of one file run one at a time, and each takes the list of pending sealed
    /// segments only once it runs, so no sync can record a mark that covers a segment
    /// another sync has not finished fsyncing. The mark never moves backwards. After a
    /// failure it is frozen for as long as the file is open: durability is then unknown.
    pub fn sync(&self) -> Result<(), RedexError> {
        let mut serial = self
            .mark
            .serial
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (sealed, dir_dirty) = std::mem::take(&mut *self.mark.pending());
        let stems: Vec<PathBuf> = sealed
            .iter()
            .map(|&first| self.mark.dir.join(segment_stem(first)))
            .collect();
        let dir = dir_dirty.then_some(self.mark.dir.as_path());
        let result = sync_files(&stems, &self.files, dir).and_then(|()| {
            self.mark.fsyncs.fetch_add(1, Relaxed);
            if serial.frozen {
                return Err(RedexError::DurabilityUnknown {
                    dir: self.mark.dir.clone(),
                });
            }
            if self.through > serial.mark {
                self.mark.write(self.through)?;
                serial.mark = self.through;
            }
            Ok(())
        });
        if result.is_err() {
            // Whatever this sync took stays owed to the next one.
            let mut pending = self.mark.pending();
            let later = std::mem::take(&mut pending.0);
            pending.0 = sealed;
            pending.0.extend(later);
            pending.1 |= dir_dirty;
            drop(pending);
            if !serial.frozen {
                serial.frozen = true;
                self.mark.failures.fetch_add(1, Relaxed);
            }
        }
        result
    }
}

fn sync_files(
    sealed: &[PathBuf],
    active: &SegmentFiles,
    dir: Option<&Path>,
) -> Result<(), RedexError> {
    for stem in sealed {
        for ext in ["dat", "ts", "idx"] {
            let path = stem.with_extension(ext);
            match File::open(&path).and_then(|f| f.sync_data()) {
                Ok(()) => {}
                // Deleted by retention in the meantime: nothing left to make durable.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(RedexError::io("fsync", path, e)),
            }
        }
    }
    active.sync()?;
    if let Some(dir) = dir {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Durability bookkeeping of one channel, shared by the file and its sync handles.
///
/// The `.synced` file holds a sequence number `S` and a CRC-32C of it. Every event below
/// `S` was fsynced, so recovery treats damage below `S` as corruption (an error), and damage
/// at or above it as a torn tail (cut). The mark is written after the fsync it records and
/// is not itself fsynced: a crash can only leave it lower than the truth, never higher.
#[derive(Debug)]
struct SyncedMark {
    file: File,
    path: PathBuf,
    dir: PathBuf,
    fsyncs: AtomicU64,
    failures: AtomicU64,
    /// Held for the whole of a sync.
    serial: std::sync::Mutex<SerialState>,
    /// Written since the last sync took them: sealed segments (by first seq) and whether
    /// directory entries changed. Its lock is only ever held briefly.
    pending: std::sync::Mutex<(Vec<u64>, bool)>,
}

#[derive(Debug)]
struct SerialState {
    /// The mark last written.
    mark: u64,
    /// Set by a failed sync: the mark is not advanced again.
    frozen: bool,
}

impl SyncedMark {
    fn open(dir: &Path) -> Result<SyncedMark, RedexError> {
        let path = dir.join(SYNCED_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| RedexError::io("open", &path, e))?;
        let mut mark = SyncedMark {
            file,
            path,
            dir: dir.to_owned(),
            fsyncs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            serial: std::sync::Mutex::new(SerialState {
                mark: 0,
                frozen: false,
            }),
            pending: std::sync::Mutex::new((Vec::new(), false)),
        };
        let read = mark.read();
        mark.serial
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .mark = read;
        Ok(mark)
    }

    fn read(&self) -> u64 {
        let mut raw = [0u8; 12];
        match self.file.read_exact_at(&mut raw, 0) {
            Ok(()) => decode_mark(&raw).unwrap_or_else(|| {
                tracing::warn!(path = %self.path.display(), "the RedEX sync mark is damaged; treating every event as unsynced");
                0
            }),
            Err(_) => 0,
        }
    }

    fn write(&self, through: u64) -> Result<(), RedexError> {
        self.file
            .write_all_at(&encode_mark(through), 0)
            .map_err(|e| RedexError::io("write sync mark", &self.path, e))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, (Vec<u64>, bool)> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub(crate) fn encode_mark(seq: u64) -> [u8; 12] {
    let mut raw = [0u8; 12];
    raw[..8].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&raw[..8]);
    raw[8..].copy_from_slice(&crc.to_le_bytes());
    raw
}

pub(crate) fn decode_mark(raw: &[u8]) -> Option<u64> {
    let raw: &[u8; 12] = raw.try_into().ok()?;
    let seq = u64::from_le_bytes(raw[..8].try_into().ok()?);
    (crc32c::crc32c(&raw[..8]) == u32::from_le_bytes(raw[8..].try_into().ok()?)).then_some(seq)
}

fn read_exact_at(
    files: &SegmentFiles,
    ext: &str,
    buf: &mut [u8],
    at: u64,
    seq: u64,
) -> Result<(), RedexError> {
    let file = match ext {
        "idx" => &files.idx,
        "ts" => &files.ts,
        _ => &files.dat,
    };
    file.read_exact_at(buf, at).map_err(|e| {
        if e.kind() == ErrorKind::UnexpectedEof {
            RedexError::Corrupt {
                file: files.path(ext),
                seq,
                reason: "the file is shorter than its index says".into(),
            }
        } else {
            RedexError::io("read", files.path(ext), e)
        }
    })
}

/// Reads and decodes `n` index records and timestamps starting at `seq`.
fn read_records(
    files: &SegmentFiles,
    meta: &SegmentMeta,
    seq: u64,
    n: u64,
) -> Result<Vec<Found>, RedexError> {
    let i = seq - meta.first_seq;
    let mut idx = vec![0u8; n as usize * INDEX_RECORD_LEN];
    let mut ts = vec![0u8; n as usize * TS_RECORD_LEN];
    read_exact_at(files, "idx", &mut idx, i * INDEX_RECORD_LEN as u64, seq)?;
    read_exact_at(files, "ts", &mut ts, i * TS_RECORD_LEN as u64, seq)?;
    let mut out = Vec::with_capacity(n as usize);
    for (k, (raw, ts)) in idx
        .chunks_exact(INDEX_RECORD_LEN)
        .zip(ts.chunks_exact(TS_RECORD_LEN))
        .enumerate()
    {
        let expect = seq + k as u64;
        let rec = decode_at(files, raw, expect)?;
        out.push(Found {
            rec,
            ts: decode_ts(ts),
        });
    }
    Ok(out)
}

fn decode_at(files: &SegmentFiles, raw: &[u8], expect: u64) -> Result<IndexRecord, RedexError> {
    let raw: &[u8; INDEX_RECORD_LEN] = raw.try_into().expect("record-sized chunk");
    let rec = IndexRecord::decode(raw).map_err(|e| RedexError::Corrupt {
        file: files.path("idx"),
        seq: expect,
        reason: e.to_string(),
    })?;
    if rec.seq != expect {
        return Err(RedexError::Corrupt {
            file: files.path("idx"),
            seq: expect,
            reason: format!("record carries seq {}", rec.seq),
        });
    }
    Ok(rec)
}

fn file_len(file: &File, path: impl FnOnce() -> PathBuf) -> Result<u64, RedexError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| RedexError::io("stat", path(), e))
}

/// Structural checks of a sealed segment (checksums are verified when records are read).
/// Returns its meta and the payload bytes of its events at or after `head`.
fn scan_sealed(
    files: &SegmentFiles,
    first: u64,
    head: u64,
) -> Result<(SegmentMeta, u64), RedexError> {
    let idx_len = file_len(&files.idx, || files.path("idx"))?;
    let ts_len = file_len(&files.ts, || files.path("ts"))?;
    let dat_len = file_len(&files.dat, || files.path("dat"))?;
    let count = idx_len / INDEX_RECORD_LEN as u64;
    let corrupt =
        |file: PathBuf, seq: u64, reason: String| RedexError::Corrupt { file, seq, reason };
    if idx_len % INDEX_RECORD_LEN as u64 != 0 {
        return Err(corrupt(
            files.path("idx"),
            first + count,
            format!("a sealed segment's index ends with a partial record ({idx_len} bytes)"),
        ));
    }
    if ts_len != count * TS_RECORD_LEN as u64 {
        return Err(corrupt(
            files.path("ts"),
            first + (ts_len / TS_RECORD_LEN as u64).min(count),
            format!("{ts_len} timestamp bytes for {count} events"),
        ));
    }
    let meta = SegmentMeta {
        first_seq: first,
        count,
    };
    let found = read_records(files, &meta, first, count)?;
    let mut offset = 0u64;
    let mut retained = 0u64;
    for f in &found {
        if let Some((off, len)) = f.rec.heap() {
            if off != offset {
                return Err(corrupt(
                    files.path("idx"),
                    f.rec.seq,
                    format!("payload offset {off}, expected {offset}"),
                ));
            }
            offset += len;
        }
        if f.rec.seq >= head {
            retained += f.rec.payload_len();
        }
    }
    if offset > dat_len {
        return Err(corrupt(
            files.path("dat"),
            first + count.saturating_sub(1),
            format!("the index needs {offset} data bytes but the file has {dat_len}"),
        ));
    }
    Ok((meta, retained))
}

/// Deletes a segment's files, the index first: a segment exists through its index, so a
/// failure part-way leaves either the whole segment or stray data files that are ignored.
/// Returns the bytes given back.
fn remove_segment(dir: &Path, first: u64) -> Result<u64, RedexError> {
    let stem = dir.join(segment_stem(first));
    let mut freed = 0;
    for ext in ["idx", "dat", "ts"] {
        let path = stem.with_extension(ext);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&path) {
            Ok(()) => freed += len,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(RedexError::io("remove", path, e)),
        }
    }
    Ok(freed)
}

/// Removes a segment that lies wholly in a torn tail, counting what it held.
fn drop_segment(dir: &Path, first: u64, report: &mut RecoveryReport) -> Result<(), RedexError> {
    let stem = dir.join(segment_stem(first));
    for ext in ["idx", "dat", "ts"] {
        let path = stem.with_extension(ext);
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(RedexError::io("stat", path, e)),
        };
        if ext == "idx" {
            report.truncated_records += len / INDEX_RECORD_LEN as u64;
        }
        report.truncated_bytes += len;
        fs::remove_file(&path).map_err(|e| RedexError::io("remove", &path, e))?;
    }
    sync_dir(dir)
}

/// Full verification of a segment that may hold events past the sync mark: cuts it at the
/// first bad record past the mark (a torn tail), errors on a bad record before the mark.
fn verify_segment(
    files: SegmentFiles,
    first: u64,
    head: u64,
    synced_through: u64,
    report: &mut RecoveryReport,
    retained_bytes: &mut u64,
) -> Result<ActiveSegment, RedexError> {
    let read = |file: &File, ext: &str| -> Result<Vec<u8>, RedexError> {
        let len = file_len(file, || files.path(ext))?;
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, 0)
            .map_err(|e| RedexError::io("read", files.path(ext), e))?;
        Ok(buf)
    };
    let idx = read(&files.idx, "idx")?;
    let ts = read(&files.ts, "ts")?;
    let dat = read(&files.dat, "dat")?;
    let whole = idx.len() / INDEX_RECORD_LEN;

    // Checks record `i` on its own: decodes, has the right seq, has a timestamp, its data is
    // present and its checksum verifies.
    // Checks record `i` on its own; a failure names the file to blame and why.
    let check = |i: usize| -> Result<(IndexRecord, u64), (&'static str, String)> {
        let raw: &[u8; INDEX_RECORD_LEN] = idx[i * INDEX_RECORD_LEN..(i + 1) * INDEX_RECORD_LEN]
            .try_into()
            .expect("record-sized");
        let rec = IndexRecord::decode(raw).map_err(|e| ("idx", e.to_string()))?;
        if rec.seq != first + i as u64 {
            return Err(("idx", format!("record carries seq {}", rec.seq)));
        }
        let t = ts
            .get(i * TS_RECORD_LEN..(i + 1) * TS_RECORD_LEN)
            .ok_or(("ts", "its timestamp is missing".to_string()))?;
        let t = decode_ts(t);
        let heap: &[u8] = match rec.heap() {
            Some((off, len)) => dat.get(off as usize..(off + len) as usize).ok_or((
                "dat",
                "its payload is missing from the data file".to_string(),
            ))?,
            None => &[],
        };
        if !rec.verify(t, heap) {
            return Err((
                "idx",
                "checksum mismatch over the record, its timestamp and its payload".into(),
            ));
        }
        Ok((rec, t))
    };

    let mut valid = 0usize;
    let mut data_end = 0u64;
    let mut failure: Option<(&'static str, String)> = None;
    for i in 0..whole {
        match check(i) {
            Ok((rec, _)) => {
                if let Some((off, len)) = rec.heap() {
                    if off != data_end {
                        failure =
                            Some(("idx", format!("payload offset {off}, expected {data_end}")));
                        break;
                    }
                    data_end += len;
                }
                if rec.seq >= head {
                    *retained_bytes += rec.payload_len();
                }
                valid += 1;
            }
            Err(reason) => {
                failure = Some(reason);
                break;
            }
        }
    }
    // Events below the sync mark were fsynced: if one of them is bad or missing, that is
    // damage to stored data, not a torn write, and dropping it would lose acknowledged
    // events. Everything after the mark may legitimately be torn and is cut.
    let first_bad = first + valid as u64;
    if first_bad < synced_through {
        let (ext, reason) = failure.unwrap_or_else(|| {
            (
                "idx",
                format!(
                    "the index ends at seq {first_bad} but events up to {} were fsynced",
                    synced_through - 1
                ),
            )
        });
        return Err(RedexError::Corrupt {
            file: files.path(ext),
            seq: first_bad,
            reason,
        });
    }

    let keep_idx = (valid * INDEX_RECORD_LEN) as u64;
    let keep_ts = (valid * TS_RECORD_LEN) as u64;
    let cut = (idx.len() as u64 - keep_idx)
        + (ts.len() as u64).saturating_sub(keep_ts)
        + (dat.len() as u64).saturating_sub(data_end);
    if cut > 0 {
        report.truncated_records += (whole - valid) as u64;
        report.truncated_bytes += cut;
        for (file, ext, len) in [
            (&files.idx, "idx", keep_idx),
            (&files.ts, "ts", keep_ts),
            (&files.dat, "dat", data_end),
        ] {
            file.set_len(len)
                .map_err(|e| RedexError::io("truncate", files.path(ext), e))?;
            file.sync_all()
                .map_err(|e| RedexError::io("fsync", files.path(ext), e))?;
        }
    }
    Ok(ActiveSegment {
        meta: SegmentMeta {
            first_seq: first,
            count: valid as u64,
        },
        files: Arc::new(files),
        written: valid as u64,
        written_dat: data_end,
        data_len: data_end,
    })
}

/// Checks (or, for a new or half-written one, writes) the directory's format marker.
fn check_format(dir: &Path) -> Result<(), RedexError> {
    let path = dir.join(FORMAT_FILE);
    let found = match fs::read(&path) {
        Ok(raw) => String::from_utf8_lossy(&raw).trim_end().to_owned(),
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => return Err(RedexError::io("read", path, e)),
    };
    if found == FORMAT {
        return Ok(());
    }
    // Empty or a prefix of the marker: a crash interrupted its creation.
    if FORMAT.starts_with(&found) {
        fs::write(&path, format!("{FORMAT}\n")).map_err(|e| RedexError::io("write", &path, e))?;
        return sync_dir(dir);
    }
    Err(RedexError::UnsupportedFormat {
        dir: dir.to_owned(),
        found: found.chars().take(80).collect(),
        supported: FORMAT,
    })
}

fn sync_dir(dir: &Path) -> Result<(), RedexError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| RedexError::io("fsync directory", dir, e))
}

fn read_head_file(dir: &Path) -> Option<u64> {
    let path = dir.join(HEAD_FILE);
    let raw = match fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the RedEX head file; keeping every segment's events");
            return None;
        }
    };
    let head = decode_mark(&raw).filter(|&h| h <= SEQ_LIMIT);
    if head.is_none() {
        tracing::warn!(path = %path.display(), "the RedEX head file is damaged; keeping every segment's events (the next retention sweep evicts again)");
    }
    head
}

fn write_head_file(dir: &Path, head: u64) -> Result<(), RedexError> {
    let tmp = dir.join(HEAD_TMP_FILE);
    fs::write(&tmp, encode_mark(head)).map_err(|e| RedexError::io("write", &tmp, e))?;
    let path = dir.join(HEAD_FILE);
    fs::rename(&tmp, &path).map_err(|e| RedexError::io("rename", &path, e))
}
