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

/// Encodes `table` into an envelope.
pub(crate) fn encode<M: CortexModel>(table: &Table<M>) -> Result<Vec<u8>, postcard::Error> {
    let body = postcard::to_stdvec(&RowsRef(table))?;
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
    header.crc32c = header.checksum(&body)?;
    let mut out = Vec::with_capacity(body.len() + 64);
    out.extend_from_slice(MAGIC);
    out = postcard::to_io(&header, out)?;
    out.extend_from_slice(&body);
    Ok(out)
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
