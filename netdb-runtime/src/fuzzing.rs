//! Entry points for the fuzz targets in `fuzz/` and for the tests that replay their corpora.
//!
//! Not public API: the functions here exist so that `cargo fuzz` (a separate workspace) and
//! `cargo test` run exactly the same code on the same inputs. Each takes arbitrary bytes,
//! feeds them to one decoder and checks what must hold of any input; it returns normally
//! when the decoder rejects the bytes with an error, because errors are the expected
//! answer to damaged input. Only a panic, a hang or unbounded memory is a finding.
//!
//! | Function | Decoder |
//! |---|---|
//! | [`event_meta`] | [`EventMeta::decode`], the 28-byte header of every CortEX event |
//! | [`index_record`] | the 20-byte RedEX index record and its checksum |
//! | [`recovery`] | opening (recovering) a persistent RedEX channel directory, reading it back, appending, closing and reopening it |
//! | [`snapshot`] | a model snapshot envelope and its rows |
//! | [`bundle`] | a `NetDb` bundle and the envelopes inside it |
//! | [`event`] | a model's event body, by dispatch code and schema version |
//!
//! Checksums stop random bytes long before the code behind them, so the targets also run
//! a *resealed* copy of their input where one is cheap to make: the event header's CRC,
//! the snapshot header's `body_len` and CRC, and (when the input asks for it) the index
//! records' checksums are recomputed first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cortex::snapshot as envelope;
use crate::cortex::{CortexEvent, CortexModel, EventContext, EventMeta, SeqOrTs, Table};
use crate::redex::format::{INDEX_RECORD_LEN, IndexRecord, TS_RECORD_LEN, segment_stem};
use crate::redex::{ChannelName, Redex, RedexFile, RedexFileConfig};

/// Decodes `data` as a CortEX event (header and body), as is and with its checksum
/// recomputed. A header that decodes must encode back to the same bytes.
pub fn event_meta(data: &[u8]) {
    check_event_meta(data);
    if data.len() >= EventMeta::LEN {
        let mut sealed = data.to_vec();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&data[..24]), &data[EventMeta::LEN..]);
        sealed[24..28].copy_from_slice(&crc.to_le_bytes());
        check_event_meta(&sealed);
    }
}

fn check_event_meta(bytes: &[u8]) {
    match EventMeta::decode(bytes) {
        Ok((meta, body)) => {
            assert_eq!(body, &bytes[EventMeta::LEN..]);
            assert_eq!(
                meta.encode(body),
                bytes,
                "a decoded header re-encodes differently"
            );
        }
        Err(e) => drop(e.to_string()),
    }
}

/// Decodes an index record. `data` is the 20-byte record (zero padded if shorter), then the
/// 8-byte timestamp (zero padded), then the heap payload the checksum covers. A record that
/// decodes must encode back to the same bytes, and one built for its payload must verify.
pub fn index_record(data: &[u8]) {
    let mut raw = [0u8; INDEX_RECORD_LEN];
    let n = data.len().min(INDEX_RECORD_LEN);
    raw[..n].copy_from_slice(&data[..n]);
    let rest = &data[n..];
    let mut ts = [0u8; TS_RECORD_LEN];
    let t = rest.len().min(TS_RECORD_LEN);
    ts[..t].copy_from_slice(&rest[..t]);
    let ts = u64::from_le_bytes(ts);
    let heap = &rest[t..];

    let rec = match IndexRecord::decode(&raw) {
        Ok(rec) => rec,
        Err(e) => return drop(e.to_string()),
    };
    assert_eq!(
        rec.encode(),
        raw,
        "a decoded index record re-encodes differently"
    );
    let verifies = rec.verify(ts, heap);
    let rebuilt = match (rec.inline(), rec.heap()) {
        (Some(inline), _) => IndexRecord::new(rec.seq, ts, inline, 0),
        (None, Some((offset, len))) if len == heap.len() as u64 && heap.len() > 8 => {
            IndexRecord::new(rec.seq, ts, heap, offset as u32)
        }
        _ => return,
    };
    assert!(
        rebuilt.verify(ts, heap),
        "a freshly built record does not verify"
    );
    assert_eq!(rebuilt.payload_len(), rec.payload_len());
    if verifies {
        assert_eq!(
            rebuilt, rec,
            "a verified record differs from the one built for it"
        );
    }
}

/// Decodes `data` as a snapshot envelope of model `M`, as is and resealed. Rows that decode
/// must survive a snapshot of the table they make.
pub fn snapshot<M: CortexModel>(data: &[u8]) {
    check_snapshot::<M>(data);
    if let Some(sealed) = envelope::reseal(data) {
        check_snapshot::<M>(&sealed);
    }
}

fn check_snapshot<M: CortexModel>(bytes: &[u8]) {
    let inspected = envelope::inspect(bytes);
    let (info, rows) = match envelope::decode::<M>(bytes) {
        Ok(decoded) => decoded,
        Err(e) => return drop(e.to_string()),
    };
    assert_eq!(
        inspected.as_ref().ok(),
        Some(&info),
        "decode accepted what inspect refused"
    );
    let table = Table::from_rows(rows, info.last_seq);
    let again = envelope::encode(&table).expect("a decoded table encodes");
    let (info2, rows2) = envelope::decode::<M>(&again).expect("a fresh snapshot decodes");
    assert_eq!(info2.last_seq, info.last_seq);
    assert_eq!(rows2.len(), table.len());
    assert!(
        rows2.iter().eq(table.iter()),
        "rows change across a snapshot"
    );
}

/// Decodes `data` as a `NetDb` bundle and inspects each envelope in it. Returns each
/// entry's channel and envelope (nothing when the bundle does not decode), so a caller that
/// knows the models can decode the rows with [`snapshot`].
pub fn bundle(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let body = match crate::netdb::decode_bundle(data) {
        Ok(body) => body,
        Err(e) => {
            drop(e.to_string());
            return Vec::new();
        }
    };
    body.models
        .into_iter()
        .map(|entry| {
            if let Err(e) = envelope::inspect(entry.envelope) {
                drop(e.to_string());
            }
            (entry.channel, entry.envelope.to_vec())
        })
        .collect()
}

/// Decodes an event body of model `M`: `data` is the dispatch code (u16 LE), the writer's
/// schema version (u16 LE) and the body, the three things the fold hands to
/// [`CortexEvent::decode_body`]. A decoded event must encode and decode back to itself (in
/// the current schema version), and is then applied to an empty table.
pub fn event<M: CortexModel>(data: &[u8])
where
    M::Event: PartialEq,
{
    let Some((head, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let dispatch = u16::from_le_bytes([head[0], head[1]]);
    let schema_version = u16::from_le_bytes([head[2], head[3]]);
    let current = M::SCHEMA.version;
    // The fold refuses events of a newer schema before it decodes them.
    if schema_version > current {
        return;
    }
    let event = match M::Event::decode_body(dispatch, schema_version, body) {
        Ok(event) => event,
        Err(e) => return drop(e.to_string()),
    };
    assert_eq!(
        event.dispatch(),
        dispatch,
        "decoded under another dispatch code"
    );
    let mut encoded = Vec::new();
    event
        .encode_body(&mut encoded)
        .expect("a decoded event encodes");
    let again = M::Event::decode_body(dispatch, current, &encoded)
        .unwrap_or_else(|e| panic!("a re-encoded event does not decode: {e}"));
    assert!(again == event, "an event changes across encode and decode");

    // The full event as the log stores it decodes to the same header and body.
    let meta = EventMeta {
        dispatch,
        schema_version: current,
        origin_hash: 1,
        seq_or_ts: SeqOrTs::Seq(0),
    };
    let stored = meta.encode(&encoded);
    assert_eq!(EventMeta::decode(&stored), Ok((meta, &encoded[..])));

    let mut table = Table::<M>::default();
    let ctx = EventContext {
        seq: 0,
        log_timestamp_ns: 1,
        meta,
    };
    let applied = {
        let mut tm = table.begin();
        event.apply(&mut tm, &ctx)
    };
    if applied.is_err() || table.take_fault().is_some() {
        table.rollback();
        assert!(table.is_empty(), "a rolled-back event left rows behind");
    } else {
        table.commit();
    }
}

/// The number of segment slots a [`recovery`] input can fill.
const RECOVERY_SLOTS: usize = 4;
/// The bytes before the first file chunk of a [`recovery`] input.
const RECOVERY_HEADER_LEN: usize = 31;

/// Flag bit: write a valid `.synced` mark.
const R_SYNCED: u8 = 0x01;
/// Flag bit: write a valid `.head` file.
const R_HEAD: u8 = 0x02;
/// Flag bit: recompute the checksum of every index record that decodes.
const R_RESEAL: u8 = 0x04;
/// Flag bit: write a `.format` marker of another format.
const R_FORMAT: u8 = 0x08;
/// Flag bit: tiny segments and hot window, so appends roll segments and reads go to disk.
const R_SMALL: u8 = 0x10;
/// Flag bit: sweep retention (keep 2 events) after the appends.
const R_SWEEP: u8 = 0x20;

/// Writes `data` as the files of a channel directory, opens the channel with the public
/// [`Redex`] API, reads every event back, appends, closes and reopens.
///
/// The input: a flags byte (`0x01` write a valid `.synced` mark, `0x02` a valid `.head`,
/// `0x04` recompute index checksums, `0x08` a foreign `.format`, `0x10` tiny segments,
/// `0x20` sweep retention), the mark and the head (u64 LE each), the first seqs of segment
/// slots 0..=2 (u16 LE each) and of slot 3 (u64 LE); then chunks of `[tag, len lo, len hi,
/// bytes...]`, appended to file `tag % 4` (index, data, timestamps, or a stray `.head.tmp`)
/// of slot `tag / 4 % 4`. [`recovery_input`] encodes a real directory this way.
///
/// What must hold: opening never panics; if every retained event reads back, there are
/// exactly `next_seq - first_seq` of them in order; events appended after recovery read
/// back as written; and a channel that closed cleanly reopens with the same bounds.
pub fn recovery(data: &[u8]) {
    let input = RecoveryInput::parse(data);
    let scratch = Scratch::new();
    let base = scratch.path();
    let channel: ChannelName = "fuzz/log".parse().expect("a valid channel name");
    let dir = base.join("fuzz").join("log");
    std::fs::create_dir_all(&dir).expect("create the channel directory");
    input.write(&dir);

    let mut config = RedexFileConfig::default().with_persistent(true);
    if input.flags & R_SMALL != 0 {
        config = config.with_segment_max_bytes(16).with_max_memory_bytes(64);
    }
    if input.flags & R_SWEEP != 0 {
        config = config.with_retention_max_events(2);
    }
    let Ok(redex) = Redex::with_persistent_dir(base) else {
        return;
    };
    let file = match redex.open_file(&channel, config.clone()) {
        Ok(file) => file,
        Err(e) => return drop(e.to_string()),
    };
    let report = file
        .recovery_report()
        .expect("a persistent file has a report");
    assert_eq!(
        (report.first_seq, report.next_seq),
        (file.first_seq(), file.next_seq())
    );
    let read_all = read_back(&file);

    let mut appended = Vec::new();
    for payload in [&b"abc"[..], &[0x5A; 40][..]] {
        match file.append(payload) {
            Ok(seq) => appended.push((seq, payload)),
            Err(e) => drop(e.to_string()),
        }
    }
    for &(seq, payload) in &appended {
        if let Ok(events) = file.read_range(seq, seq + 1) {
            assert_eq!(events.len(), 1, "an appended event is missing");
            assert_eq!(events[0].seq, seq);
            assert_eq!(&events[0].payload[..], payload, "an appended event changed");
        }
    }
    if input.flags & R_SWEEP != 0 {
        let _ = file.sweep_retention();
    }
    let bounds = (file.first_seq(), file.next_seq());
    let closed = file.close().is_ok();
    drop(file);
    drop(redex);
    if !(closed && read_all) {
        return;
    }
    let redex = Redex::with_persistent_dir(base).expect("the directory unlocks on drop");
    let file = redex
        .open_file(&channel, config)
        .unwrap_or_else(|e| panic!("a cleanly closed channel does not reopen: {e}"));
    assert_eq!(
        (file.first_seq(), file.next_seq()),
        bounds,
        "reopening moved the log's bounds"
    );
    let _ = file.close();
}

/// Reads every retained event; `true` when that worked.
fn read_back(file: &RedexFile) -> bool {
    let (first, next) = (file.first_seq(), file.next_seq());
    match file.read_range(first, next) {
        Ok(events) => {
            assert_eq!(
                events.len() as u64,
                next - first,
                "a read of the whole log returned too few or too many events"
            );
            for (k, ev) in events.iter().enumerate() {
                assert_eq!(ev.seq, first + k as u64, "events out of order");
            }
            true
        }
        Err(e) => {
            drop(e.to_string());
            false
        }
    }
}

/// A [`recovery`] input, parsed.
struct RecoveryInput {
    flags: u8,
    synced: u64,
    head: u64,
    firsts: [u64; RECOVERY_SLOTS],
    /// Per slot: index, data, timestamps, stray; `None` for a file no chunk names.
    files: [[Option<Vec<u8>>; 4]; RECOVERY_SLOTS],
}

impl RecoveryInput {
    fn parse(data: &[u8]) -> RecoveryInput {
        let mut header = [0u8; RECOVERY_HEADER_LEN];
        let n = data.len().min(RECOVERY_HEADER_LEN);
        header[..n].copy_from_slice(&data[..n]);
        let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8"));
        let u16_at = |i: usize| u64::from(u16::from_le_bytes([header[i], header[i + 1]]));
        let mut input = RecoveryInput {
            flags: header[0],
            synced: u64_at(1),
            head: u64_at(9),
            firsts: [u16_at(17), u16_at(19), u16_at(21), u64_at(23)],
            files: Default::default(),
        };
        let mut rest = &data[n..];
        while let [tag, lo, hi, tail @ ..] = rest {
            let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
            let slot = usize::from(tag / 4) % RECOVERY_SLOTS;
            input.files[slot][usize::from(tag % 4)]
                .get_or_insert_default()
                .extend_from_slice(&tail[..len]);
            rest = &tail[len..];
        }
        if input.flags & R_RESEAL != 0 {
            for files in &mut input.files {
                reseal_index(files);
            }
        }
        input
    }

    /// Writes the files into channel directory `dir`.
    fn write(&self, dir: &Path) {
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.join(name), bytes).expect("write a scratch file");
        };
        if self.flags & R_SYNCED != 0 {
            write(".synced", &crate::redex::encode_mark(self.synced));
        }
        if self.flags & R_HEAD != 0 {
            write(".head", &crate::redex::encode_mark(self.head));
        }
        if self.flags & R_FORMAT != 0 {
            write(".format", b"netdb-redex 2\n");
        }
        for (first, files) in self.firsts.iter().zip(&self.files) {
            let stem = segment_stem(*first);
            for (ext, bytes) in ["idx", "dat", "ts"].iter().zip(files) {
                if let Some(bytes) = bytes {
                    write(&format!("{stem}.{ext}"), bytes);
                }
            }
            if let Some(stray) = &files[3] {
                write(".head.tmp", stray);
            }
        }
    }
}

/// Recomputes the checksum of every index record in `files` that decodes, from its
/// timestamp and data as they are.
fn reseal_index(files: &mut [Option<Vec<u8>>; 4]) {
    let [Some(idx), dat, ts, _] = files else {
        return;
    };
    let (dat, ts) = (dat.as_deref().unwrap_or(&[]), ts.as_deref().unwrap_or(&[]));
    for (i, raw) in idx.chunks_exact_mut(INDEX_RECORD_LEN).enumerate() {
        let raw: &mut [u8; INDEX_RECORD_LEN] = raw.try_into().expect("a whole record");
        let Ok(mut rec) = IndexRecord::decode(raw) else {
            continue;
        };
        let t = ts
            .get(i * TS_RECORD_LEN..(i + 1) * TS_RECORD_LEN)
            .map_or(0, crate::redex::format::decode_ts);
        let heap = rec
            .heap()
            .and_then(|(off, len)| dat.get(off as usize..off.checked_add(len)? as usize))
            .unwrap_or(&[]);
        rec.checksum = rec.compute_checksum(t, heap);
        *raw = rec.encode();
    }
}

/// Encodes the channel directory `dir` (segments, `.synced`, `.head`) as a [`recovery`]
/// input: how the seed corpus is made from real logs. Segments past the four slots, and a
/// second segment whose first seq is over `u16::MAX`, are left out.
pub fn recovery_input(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; RECOVERY_HEADER_LEN];
    let mut mark = |name: &str, flag: u8, at: usize| -> std::io::Result<()> {
        match std::fs::read(dir.join(name)) {
            Ok(raw) => {
                if let Some(seq) = crate::redex::decode_mark(&raw) {
                    header[0] |= flag;
                    header[at..at + 8].copy_from_slice(&seq.to_le_bytes());
                }
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    };
    mark(".synced", R_SYNCED, 1)?;
    mark(".head", R_HEAD, 9)?;
    let mut firsts = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some((first, "idx")) = name
            .to_str()
            .and_then(crate::redex::format::parse_segment_name)
        {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    let mut chunks = Vec::new();
    let mut small_slot = 0usize;
    let mut big_used = false;
    for first in firsts {
        let slot = if let (Ok(small), true) = (u16::try_from(first), small_slot < 3) {
            header[17 + 2 * small_slot..19 + 2 * small_slot].copy_from_slice(&small.to_le_bytes());
            small_slot += 1;
            small_slot - 1
        } else if !big_used {
            header[23..31].copy_from_slice(&first.to_le_bytes());
            big_used = true;
            3
        } else {
            continue;
        };
        let stem = segment_stem(first);
        for (kind, ext) in ["idx", "dat", "ts"].iter().enumerate() {
            let bytes = std::fs::read(dir.join(format!("{stem}.{ext}")))?;
            let tag = (slot * 4 + kind) as u8;
            let mut rest = &bytes[..];
            // Empty files still get a chunk, so the segment's files all exist.
            loop {
                let take = rest.len().min(usize::from(u16::MAX));
                chunks.push(tag);
                chunks.extend_from_slice(&(take as u16).to_le_bytes());
                chunks.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if rest.is_empty() {
                    break;
                }
            }
        }
    }
    let mut out = header.to_vec();
    out.extend_from_slice(&chunks);
    Ok(out)
}

/// A scratch directory under the system's temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "netdb-fuzz-recovery-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        Scratch(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `check` on every saved input of `target` under `fuzz_dir` (`corpus/<target>/`, which
/// must hold at least one file, and `regressions/<target>/`, which may be absent), and
/// panics naming the first input `check` panics on. What the corpus-replay tests call.
pub fn replay_saved_inputs(fuzz_dir: &Path, target: &str, check: fn(&[u8])) {
    let mut corpus = 0;
    for (kind, must_exist) in [("corpus", true), ("regressions", false)] {
        let dir = fuzz_dir.join(kind).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        let mut paths: Vec<PathBuf> = entries
            .map(|e| {
                e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .path()
            })
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{} panics", path.display());
            if kind == "corpus" {
                corpus += 1;
            }
        }
    }
    assert!(corpus > 0, "the {target} corpus is empty");
}
