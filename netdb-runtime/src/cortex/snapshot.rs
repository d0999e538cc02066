//! The snapshot envelope: a self-describing wrapper around a model's postcard-encoded rows.
//!
//! ```text
//! magic     8 bytes   "NDBSNAP\0"
//! header    postcard  { format: u8 = 1, channel: String, schema_version: u16,
//!                       fingerprint: u64, last_seq: Option<u64>, rows: u64,
//!                       body_len: u64, crc32c: u32 }
//! body      postcard  Vec<Row> (in id order), `body_len` bytes
//! ```
//!
//! `crc32c` is the CRC-32C of the header encoded with `crc32c` set to zero, followed by the
//! body: a damaged `last_seq` or version is caught like a damaged row.
//!
//! ```text
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::SnapshotError;
use super::model::CortexModel;
use super::postcard_out::{self, put_varint, varint_len};
use super::table::Table;

/// The first eight bytes of every model snapshot.
pub const MAGIC: &[u8; 8] = b"NDBSNAP\0";
/// The envelope format this build writes and reads.
const FORMAT: u8 = 1;

#[derive(Debug, Serialize, Deserialize)]
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

impl Header {
    /// The checksum of this header (with the checksum field zero) and `body`.
    fn checksum(&self, body: &[u8]) -> Result<u32, postcard::Error> {
        let zeroed = Header {
            channel: self.channel.clone(),
            crc32c: 0,
            ..*self
        };
        let head = postcard::to_stdvec(&zeroed)?;
        Ok(crc32c::crc32c_append(crc32c::crc32c(&head), body))
    }
}

/// What a snapshot's envelope says about it, read without decoding the rows.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The model's channel.
    pub channel: String,
    /// The schema version that wrote it.
    pub schema_version: u16,
    /// That schema's fingerprint.
    pub fingerprint: u64,
    /// The last event folded into it.
    pub last_seq: Option<u64>,
    /// How many rows it holds.
    pub rows: u64,
}

impl fmt::Debug for SnapshotInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotInfo")
            .field("channel", &self.channel)
            .field("schema_version", &self.schema_version)
            .field("fingerprint", &format_args!("{:#018x}", self.fingerprint))
            .field("last_seq", &self.last_seq)
            .field("rows", &self.rows)
            .finish()
    }
}

/// The header as [`encode_into`] writes it: [`Header`]'s fields in its order, so the same
/// bytes, with the channel borrowed.
#[derive(Serialize)]
struct HeaderOut<'a> {
    format: u8,
    channel: &'a str,
    schema_version: u16,
    fingerprint: u64,
    last_seq: Option<u64>,
    rows: u64,
    body_len: u64,
    crc32c: u32,
}

/// Encodes `table` into an envelope.
pub(crate) fn encode<M: CortexModel>(table: &Table<M>) -> Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::new();
    encode_into(table, &mut out, false)?;
    shrink_if_oversized(&mut out);
    Ok(out)
}

/// Gives back the capacity of a vector reserved from an estimate far above what was written
/// (a table whose first rows are much larger than the rest), which the caller would
/// otherwise hold as long as the bytes.
pub(crate) fn shrink_if_oversized(out: &mut Vec<u8>) {
    if out.capacity() > 2 * out.len() {
        out.shrink_to_fit();
    }
}

/// Appends `table`'s envelope to `out`. With `length_prefixed`, the envelope is preceded by
/// its length as a varint: a postcard byte string, as a bundle entry holds it.
///
/// The rows are encoded once, straight into `out`, behind a gap left for what precedes
/// them: the length, the magic and the header, whose `body_len` and checksum are known only
/// once the rows are written. The gap is sized for the expected body length and a 5-byte
/// checksum varint; the rare envelope whose prefix turns out shorter or longer moves its
/// body once.
pub(crate) fn encode_into<M: CortexModel>(
    table: &Table<M>,
    out: &mut Vec<u8>,
    length_prefixed: bool,
) -> Result<(), postcard::Error> {
    let start = out.len();
    let expected_body = expected_body_len(table);
    let mut header = HeaderOut {
        format: FORMAT,
        channel: M::CHANNEL,
        schema_version: M::SCHEMA.version,
        fingerprint: M::SCHEMA.fingerprint,
        last_seq: table.folded_through_seq(),
        rows: table.len() as u64,
        body_len: expected_body as u64,
        crc32c: u32::MAX,
    };
    let mut prefix = Vec::with_capacity(64 + M::CHANNEL.len());
    write_prefix(&header, length_prefixed, &mut prefix)?;
    let gap = prefix.len();
    // Only a hint: when an estimate too large to allocate fails, the vector grows as needed.
    let _ = out.try_reserve(gap + expected_body);
    out.resize(start + gap, 0);
    if let Err(e) = postcard_out::append(&RowsRef(table), out) {
        out.truncate(start);
        return Err(e);
    }
    let body = &out[start + gap..];
    header.body_len = body.len() as u64;
    header.crc32c = 0;
    prefix.clear();
    postcard_out::append(&header, &mut prefix)?;
    header.crc32c = crc32c::crc32c_append(crc32c::crc32c(&prefix), body);
    prefix.clear();
    write_prefix(&header, length_prefixed, &mut prefix)?;
    if prefix.len() == gap {
        out[start..start + gap].copy_from_slice(&prefix);
    } else {
        out.splice(start..start + gap, prefix);
    }
    Ok(())
}

/// Writes what precedes the body: the envelope's length as a varint (with
/// `length_prefixed`), the magic and the header.
fn write_prefix(
    header: &HeaderOut<'_>,
    length_prefixed: bool,
    out: &mut Vec<u8>,
) -> Result<(), postcard::Error> {
    let mut head = Vec::with_capacity(64 + header.channel.len());
    head.extend_from_slice(MAGIC);
    postcard_out::append(header, &mut head)?;
    if length_prefixed {
        put_varint(out, head.len() as u64 + header.body_len);
    }
    out.extend_from_slice(&head);
    Ok(())
}

/// The body length `table` is expected to encode to: the rows' count, then its first rows'
/// average size for each row, with an eighth more for rows larger than those. A table that
/// grows past it reallocates; one far below it gives the capacity back
/// ([`shrink_if_oversized`]).
fn expected_body_len<M: CortexModel>(table: &Table<M>) -> usize {
    const SAMPLE: usize = 32;
    let rows = table.len();
    let mut sample = Vec::new();
    let sampled = table
        .iter()
        .take(SAMPLE)
        .take_while(|row| postcard_out::append(row, &mut sample).is_ok())
        .count();
    let per_row = sample.len().div_ceil(sampled.max(1));
    varint_len(rows as u64) + rows * per_row + rows * per_row / 8
}

struct RowsRef<'a, M: CortexModel>(&'a Table<M>);

impl<M: CortexModel> Serialize for RowsRef<'_, M> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

/// Reads an envelope's header and returns it with the verified body.
fn open(bytes: &[u8]) -> Result<(SnapshotInfo, &[u8]), SnapshotError> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(SnapshotError::NotASnapshot)?;
    // Read the format byte on its own first, so a newer envelope is reported as such rather
    // than as a header that does not decode.
    match rest.first() {
        Some(&FORMAT) => {}
        Some(&found) => {
            return Err(SnapshotError::UnsupportedFormat {
                found,
                supported: FORMAT,
            });
        }
        None => {
            return Err(SnapshotError::Corrupt {
                reason: "it ends after the magic".into(),
            });
        }
    }
    let (header, body): (Header, &[u8]) =
        postcard::take_from_bytes(rest).map_err(|e| SnapshotError::Corrupt {
            reason: format!("the header does not decode ({e})"),
        })?;
    if body.len() as u64 != header.body_len {
        return Err(SnapshotError::Corrupt {
            reason: format!(
                "the body is {} bytes, the header says {}",
                body.len(),
                header.body_len
            ),
        });
    }
    let crc = header.checksum(body).map_err(|e| SnapshotError::Corrupt {
        reason: format!("the header does not re-encode ({e})"),
    })?;
    if crc != header.crc32c {
        return Err(SnapshotError::Corrupt {
            reason: format!(
                "the checksum is {crc:#010x}, the header says {:#010x}",
                header.crc32c
            ),
        });
    }
    let info = SnapshotInfo {
        channel: header.channel,
        schema_version: header.schema_version,
        fingerprint: header.fingerprint,
        last_seq: header.last_seq,
        rows: header.rows,
    };
    Ok((info, body))
}

/// `bytes` with the header's `body_len` and checksum recomputed to match what follows the
/// header, or `None` when there is no header to fix. Lets the fuzzers reach the row
/// decoders, which a random checksum would almost always keep them from.
pub(crate) fn reseal(bytes: &[u8]) -> Option<Vec<u8>> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (mut header, body): (Header, &[u8]) = postcard::take_from_bytes(rest).ok()?;
    header.body_len = body.len() as u64;
    header.crc32c = header.checksum(body).ok()?;
    let mut out = MAGIC.to_vec();
    out = postcard::to_io(&header, out).ok()?;
    out.extend_from_slice(body);
    Some(out)
}

/// Reads a snapshot's envelope (and verifies its checksum) without decoding the rows.
pub fn inspect(bytes: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
    open(bytes).map(|(info, _)| info)
}

/// Decodes an envelope into rows of the current schema, migrating older versions.
pub(crate) fn decode<M: CortexModel>(
    bytes: &[u8],
) -> Result<(SnapshotInfo, Vec<M>), SnapshotError> {
    let (info, body) = open(bytes)?;
    let channel = M::CHANNEL;
    if info.channel != channel {
        return Err(SnapshotError::WrongModel {
            expected: channel.to_owned(),
            found: info.channel,
        });
    }
    let current = M::SCHEMA;
    let decode_err = |source| SnapshotError::Decode {
        channel: channel.to_owned(),
        version: info.schema_version,
        source,
    };
    let rows = if info.schema_version == current.version {
        if info.fingerprint != current.fingerprint {
            return Err(SnapshotError::SchemaChanged {
                channel: channel.to_owned(),
                version: current.version,
                expected: current.fingerprint,
                found: info.fingerprint,
            });
        }
        let (rows, rest) = postcard::take_from_bytes::<Vec<M>>(body).map_err(decode_err)?;
        if !rest.is_empty() {
            return Err(SnapshotError::Corrupt {
                reason: format!("{} bytes follow the rows in the body", rest.len()),
            });
        }
        if rows.len() as u64 != info.rows {
            return Err(SnapshotError::Corrupt {
                reason: format!(
                    "the body holds {} rows, the header says {}",
                    rows.len(),
                    info.rows
                ),
            });
        }
        rows
    } else if info.schema_version > current.version {
        return Err(SnapshotError::NewerVersion {
            channel: channel.to_owned(),
            found: info.schema_version,
            current: current.version,
        });
    } else {
        let migration = M::migrations()
            .iter()
            .find(|m| m.from_version == info.schema_version)
            .ok_or_else(|| SnapshotError::NoMigration {
                channel: channel.to_owned(),
                found: info.schema_version,
                current: current.version,
            })?;
        if let Some(expected) = migration.from_fingerprint
            && expected != info.fingerprint
        {
            return Err(SnapshotError::MigrationMismatch {
                channel: channel.to_owned(),
                version: info.schema_version,
                expected,
                found: info.fingerprint,
            });
        }
        (migration.decode)(body).map_err(decode_err)?
    };
    // A migration may merge or split rows, so only a same-version body's count is checked.
    Ok((info, rows))
}

#[cfg(test)]
pub(crate) mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::__private::NoEvents;
    use crate::cortex::{Field, IdOrder, NoFilter, Query, Schema, Watch};

    /// A row with a field of most kinds serde knows.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Row {
        id: u64,
        title: String,
        tags: Vec<String>,
        kind: Kind,
        score: Option<i64>,
        ratio: f64,
        flag: bool,
        at: u64,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) enum Kind {
        Plain,
        Weighted(u32),
        Pair { a: i16, b: char },
    }

    const FIELDS: &[Field] = &[Field {
        name: "id",
        ty: "u64",
    }];

    impl CortexModel for Row {
        type Id = u64;
        type Event = NoEvents;
        type Filter = NoFilter;
        type OrderBy = IdOrder;
        type Indexes = ();
        type Query<'a> = Query<'a, Self>;
        type Watch = Watch<Self>;
        const CHANNEL: &'static str = "test/rows";
        const SCHEMA: Schema = Schema::new(3, FIELDS);
        fn id(&self) -> &u64 {
            &self.id
        }
    }

    /// The envelope as the first implementation wrote it: rows through `postcard::to_stdvec`,
    /// the header through `postcard::to_io`, then the body copied after it.
    fn encode_reference<M: CortexModel>(table: &Table<M>) -> Vec<u8> {
        let body = postcard::to_stdvec(&RowsRef(table)).unwrap();
        let mut header = Header {
            format: FORMAT,
            channel: M::CHANNEL.to_owned(),
            schema_version: M::SCHEMA.version,
            fingerprint: M::SCHEMA.fingerprint,
            last_seq: table.folded_through_seq(),
            rows: table.len() as u64,
            body_len: body.len() as u64,
            crc32c: 0,
        };
        header.crc32c = header.checksum(&body).unwrap();
        let mut out = MAGIC.to_vec();
        out = postcard::to_io(&header, out).unwrap();
        out.extend_from_slice(&body);
        out
    }

    /// A deterministic pseudo-random sequence.
    pub(crate) fn next(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 11
    }

    pub(crate) fn row(id: u64, state: &mut u64, title_len: usize) -> Row {
        let r = next(state);
        Row {
            id,
            title: "é".repeat(title_len / 2) + &"t".repeat(title_len % 2),
            tags: (0..r % 3).map(|i| format!("tag{i}")).collect(),
            kind: match r % 3 {
                0 => Kind::Plain,
                1 => Kind::Weighted((r >> 8) as u32),
                _ => Kind::Pair {
                    a: (r >> 16) as i16,
                    b: char::from_u32((r >> 20) as u32 % 0xD000).unwrap_or('x'),
                },
            },
            score: (!r.is_multiple_of(5)).then_some((r as i64) >> (r % 64)),
            ratio: r as f64 / 7.0,
            flag: r.is_multiple_of(2),
            at: next(state) << (r % 12),
        }
    }

    fn check(table: &Table<Row>, crcs: &mut Vec<u32>) {
        let reference = encode_reference(table);
        let ours = encode(table).unwrap();
        assert_eq!(ours, reference, "{} rows", table.len());
        // Inside a bundle: a byte string, written in place after what precedes it.
        let mut prefixed = vec![7; 3];
        encode_into(table, &mut prefixed, true).unwrap();
        let mut expected = vec![7; 3];
        expected.extend(postcard::to_stdvec(&serde_bytes(&reference)).unwrap());
        assert_eq!(prefixed, expected, "{} rows, length prefixed", table.len());
        let (_, rows) = decode::<Row>(&ours).unwrap();
        assert!(rows.iter().eq(table.iter()));
        let (header, _): (Header, &[u8]) = postcard::take_from_bytes(&ours[8..]).unwrap();
        crcs.push(header.crc32c);
    }

    struct Bytes<'a>(&'a [u8]);
    impl Serialize for Bytes<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
    fn serde_bytes(b: &[u8]) -> Bytes<'_> {
        Bytes(b)
    }

    /// Damage anywhere in a large body is a typed error, and what decodes is the table that
    /// was encoded.
    #[test]
    fn damage_anywhere_in_a_large_body_is_a_typed_error() {
        let mut state = 7;
        let n = 12_000;
        let rows: Vec<Row> = (0..n).map(|i| row(i * 2, &mut state, 5)).collect();
        let table = Table::from_rows(rows, Some(n));
        let bytes = encode(&table).unwrap();
        let (info, back) = decode::<Row>(&bytes).unwrap();
        assert_eq!(info.rows, n);
        assert!(back.iter().eq(table.iter()));
        // Cut short, at every tenth of the way: the checksum no longer matches.
        for cut in (1..10).map(|k| bytes.len() * k / 10) {
            assert!(matches!(
                decode::<Row>(&bytes[..cut]),
                Err(SnapshotError::Corrupt { .. })
            ));
        }
        // Cut short past the checksum (resealed): the rows stop early, wherever that is.
        let header_len = bytes.len() - encoded_body_len(&bytes);
        for keep in [1, 100, 5000, 20_000, 100_000] {
            let damaged = reseal(&bytes[..header_len + keep]).unwrap();
            match decode::<Row>(&damaged) {
                Err(SnapshotError::Decode { .. } | SnapshotError::Corrupt { .. }) => {}
                other => panic!("{keep} body bytes kept: {other:?}"),
            }
        }
        // A row count the body does not hold: one row fewer, under the full table's header.
        let mut fewer: Vec<Row> = table.iter().cloned().collect();
        fewer.pop();
        let short = encode(&Table::from_rows(fewer, Some(n))).unwrap();
        let mut spliced = bytes[..header_len].to_vec();
        spliced.extend_from_slice(&short[short.len() - encoded_body_len(&short)..]);
        let spliced = reseal(&spliced).unwrap();
        assert!(matches!(
            decode::<Row>(&spliced),
            Err(SnapshotError::Corrupt { .. })
        ));
    }

    fn encoded_body_len(bytes: &[u8]) -> usize {
        open(bytes).unwrap().1.len()
    }

    /// The id map and the id order hold the same rows.
    fn consistent(table: &Table<Row>) {
        let ids: Vec<u64> = table.iter().map(|r| r.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        for r in table.iter() {
            assert_eq!(table.find_unique(&r.id), Some(r));
        }
        assert_eq!(table.rows().len(), ids.len());
    }

    /// Rows out of id order (as a migration may return them) are sorted, later duplicates of
    /// an id winning.
    #[test]
    fn rows_out_of_order_are_sorted_and_the_last_duplicate_wins() {
        let mut state = 3;
        let mut rows: Vec<Row> = (0..50).map(|i| row(i, &mut state, 2)).collect();
        let mut dup = rows[10].clone();
        dup.title = "the later one".into();
        rows.reverse();
        rows.push(dup.clone());
        let table = Table::from_rows(rows, None);
        assert_eq!(table.len(), 50);
        assert!(table.iter().map(|r| r.id).eq(0..50));
        assert_eq!(table.find_unique(&10), Some(&dup));
        consistent(&table);
        // In order up to a point, then not.
        let mut sorted: Vec<Row> = (0..50).map(|i| row(i, &mut state, 2)).collect();
        sorted.swap(30, 31);
        let table = Table::from_rows(sorted, None);
        assert!(table.iter().map(|r| r.id).eq(0..50));
        consistent(&table);
    }

    #[test]
    fn envelopes_keep_the_bytes_of_the_first_encoder() {
        let mut state = 42;
        let mut crcs = Vec::new();
        check(&Table::from_rows(Vec::new(), None), &mut crcs);
        check(&Table::from_rows(Vec::new(), Some(0)), &mut crcs);
        // Bodies around the varint boundaries of `body_len` (128 and 16 384 bytes), and
        // enough tables for checksums of every varint length.
        for n in (0..40).chain([200, 600, 601, 602, 603, 2000, 20_000]) {
            for seq in [None, Some(n as u64), Some(u64::MAX)] {
                let rows = (0..n)
                    .map(|i| row(i as u64 * 3, &mut state, i % 7))
                    .collect();
                check(&Table::from_rows(rows, seq), &mut crcs);
            }
        }
        // Rows that grow: the body outgrows the estimate taken from its first rows (at 300
        // rows, past the 16 KiB its `body_len` varint was sized for).
        for n in [300, 3000] {
            let rows = (0..n)
                .map(|i| row(i, &mut state, if i < 40 { 0 } else { 100 }))
                .collect();
            check(&Table::from_rows(rows, Some(9)), &mut crcs);
        }
        // Rows that shrink: the estimate from the first rows is far too large, and the
        // capacity is given back.
        let rows = (0..3000)
            .map(|i| row(i, &mut state, if i < 40 { 400 } else { 0 }))
            .collect();
        let table = Table::from_rows(rows, Some(9));
        check(&table, &mut crcs);
        let bytes = encode(&table).unwrap();
        assert!(bytes.capacity() <= 2 * bytes.len());
        // A table written through the fold, in slots out of id order.
        let mut table = Table::<Row>::default();
        {
            let mut t = table.begin();
            for i in (0..500).rev() {
                t.insert(row(i, &mut state, 3));
            }
            for i in (0..500).step_by(7) {
                t.remove(&i);
            }
        }
        table.commit();
        check(&table, &mut crcs);
        assert!(
            crcs.iter().any(|&c| c < 1 << 28),
            "no checksum with a shorter varint"
        );
    }
}
