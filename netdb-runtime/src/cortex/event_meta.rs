//! The fixed prefix of every CortEX event.
//!
//! An event stored in a RedEX payload is a 28-byte header followed by the body (the
//! postcard-encoded event). All fields are little-endian:
//!
//! ```text
//! offset  size  field           type  meaning
//!      0     2  dispatch        u16   the event's kind; see `cortex::dispatch` for the ranges
//!      2     1  flags           u8    bit 0: `seq_or_ts` is a timestamp (else a sequence
//!                                     number); bits 1..=7 reserved, zero
//!      3     1  header version  u8    1
//!      4     2  schema version  u16   the model schema version the body was encoded with
//!      6     2  reserved        u16   zero
//!      8     8  origin hash     u64   identifies the writer (process, node, or user-chosen)
//!     16     8  seq_or_ts       u64   the writer's sequence number or a timestamp in ns
//!     24     4  checksum        u32   CRC-32C of bytes 0..24 followed by the whole body
//!     28     -  body
//! ```
//!
//! RedEX already checksums what it stores; this checksum covers the event end to end, so a
//! body damaged anywhere between the writer and the fold (another log backend, a snapshot
//! tool, a bug) is a typed decode error rather than a garbled state.

/// Bit 0 of the flags byte.
const FLAG_TIMESTAMP: u8 = 0x01;
/// The header version this build writes and reads.
const HEADER_VERSION: u8 = 1;

/// What the `seq_or_ts` field of an [`EventMeta`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqOrTs {
    /// The writer's own sequence number for the event.
    Seq(u64),
    /// When the event was written, in nanoseconds since the Unix epoch.
    TimestampNs(u64),
}

/// The fixed header of a CortEX event.
///
/// ```
/// use netdb_runtime::cortex::{EventMeta, SeqOrTs};
///
/// let meta = EventMeta {
///     dispatch: 0x0001,
///     schema_version: 1,
///     origin_hash: 0xfeed,
///     seq_or_ts: SeqOrTs::Seq(7),
/// };
/// let bytes = meta.encode(b"body");
/// assert_eq!(bytes.len(), EventMeta::LEN + 4);
/// let (decoded, body) = EventMeta::decode(&bytes)?;
/// assert_eq!((decoded, body), (meta, &b"body"[..]));
/// # Ok::<(), netdb_runtime::cortex::EventMetaError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventMeta {
    /// The event's kind (see [`dispatch`](super::dispatch)).
    pub dispatch: u16,
    /// The model schema version the body was encoded with.
    pub schema_version: u16,
    /// Identifies the writer.
    pub origin_hash: u64,
    /// The writer's sequence number or a timestamp.
    pub seq_or_ts: SeqOrTs,
}

/// Why bytes are not a well-formed CortEX event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventMetaError {
    /// Fewer bytes than a header.
    #[error(
        "event of {len} bytes is shorter than the {}-byte CortEX event header",
        EventMeta::LEN
    )]
    Truncated {
        /// The length found.
        len: usize,
    },
    /// A header version this build does not know.
    #[error(
        "event header version {found} is not supported (this build reads version {supported}); \
         it was written by a newer netdb"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// Reserved bits or fields are set.
    #[error("event header has reserved bits set (flags {flags:#04x}, reserved {reserved:#06x})")]
    Reserved {
        /// The flags byte.
        flags: u8,
        /// The reserved field.
        reserved: u16,
    },
    /// Dispatch code 0.
    #[error("event has dispatch code 0, which is never valid")]
    InvalidDispatch,
    /// The checksum does not match the header and body.
    #[error(
        "event checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the header or body is damaged"
    )]
    ChecksumMismatch {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
}

impl EventMeta {
    /// The size of the header in bytes.
    pub const LEN: usize = 28;

    fn header(&self) -> [u8; 24] {
        let (flags, value) = match self.seq_or_ts {
            SeqOrTs::Seq(s) => (0, s),
            SeqOrTs::TimestampNs(t) => (FLAG_TIMESTAMP, t),
        };
        let mut h = [0u8; 24];
        h[0..2].copy_from_slice(&self.dispatch.to_le_bytes());
        h[2] = flags;
        h[3] = HEADER_VERSION;
        h[4..6].copy_from_slice(&self.schema_version.to_le_bytes());
        // 6..8 reserved, zero
        h[8..16].copy_from_slice(&self.origin_hash.to_le_bytes());
        h[16..24].copy_from_slice(&value.to_le_bytes());
        h
    }

    /// Appends the header and `body` to `out`.
    pub fn encode_into(&self, body: &[u8], out: &mut Vec<u8>) {
        let header = self.header();
        let crc = checksum(&header, body);
        out.reserve(Self::LEN + body.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(body);
    }

    /// Fills in the header of `event`, whose first [`LEN`](Self::LEN) bytes are reserved for
    /// it and the rest is the body: lets a writer encode the body in place.
    pub(crate) fn write_header(&self, event: &mut [u8]) {
        let (head, body) = event.split_at_mut(Self::LEN);
        let header = self.header();
        let crc = checksum(&header, body);
        head[..24].copy_from_slice(&header);
        head[24..].copy_from_slice(&crc.to_le_bytes());
    }

    /// The header followed by `body`.
    pub fn encode(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN + body.len());
        self.encode_into(body, &mut out);
        out
    }

    /// Splits an event into its verified header and its body.
    pub fn decode(event: &[u8]) -> Result<(EventMeta, &[u8]), EventMetaError> {
        let Some((head, body)) = event.split_first_chunk::<{ Self::LEN }>() else {
            return Err(EventMetaError::Truncated { len: event.len() });
        };
        let u16_at = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
        let u64_at = |i: usize| {
            u64::from_le_bytes(
                head[i..i + 8]
                    .try_into()
                    .expect("8 bytes of a 28-byte array"),
            )
        };
        let version = head[3];
        if version != HEADER_VERSION {
            return Err(EventMetaError::UnsupportedVersion {
                found: version,
                supported: HEADER_VERSION,
            });
        }
        let (flags, reserved) = (head[2], u16_at(6));
        if flags & !FLAG_TIMESTAMP != 0 || reserved != 0 {
            return Err(EventMetaError::Reserved { flags, reserved });
        }
        let stored = u32::from_le_bytes([head[24], head[25], head[26], head[27]]);
        let computed = checksum(
            head[..24].try_into().expect("24 bytes of a 28-byte array"),
            body,
        );
        if stored != computed {
            return Err(EventMetaError::ChecksumMismatch { stored, computed });
        }
        let dispatch = u16_at(0);
        if dispatch == super::dispatch::INVALID {
            return Err(EventMetaError::InvalidDispatch);
        }
        let value = u64_at(16);
        let meta = EventMeta {
            dispatch,
            schema_version: u16_at(4),
            origin_hash: u64_at(8),
            seq_or_ts: if flags & FLAG_TIMESTAMP != 0 {
                SeqOrTs::TimestampNs(value)
            } else {
                SeqOrTs::Seq(value)
            },
        };
        Ok((meta, body))
    }
}

/// CRC-32C of `header` followed by `body`. Events are mostly small: a small body is copied
/// behind the header into an aligned buffer, so the checksum is one call over contiguous,
/// aligned bytes (each call has a fixed cost that would otherwise dominate); a larger one
/// is checksummed where it lies.
fn checksum(header: &[u8; 24], body: &[u8]) -> u32 {
    #[repr(C, align(8))]
    struct Small([u8; 128]);
    let len = 24 + body.len();
    if len > 128 {
        return crc32c::crc32c_append(crc32c::crc32c(header), body);
    }
    let mut buf = Small([0; 128]);
    buf.0[..24].copy_from_slice(header);
    buf.0[24..len].copy_from_slice(body);
    crc32c::crc32c(&buf.0[..len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta() -> EventMeta {
        EventMeta {
            dispatch: 0x0102,
            schema_version: 3,
            origin_hash: 0x1122_3344_5566_7788,
            seq_or_ts: SeqOrTs::TimestampNs(0xAABB_CCDD),
        }
    }

    #[test]
    fn layout_is_little_endian_and_fixed() {
        let bytes = meta().encode(b"xyz");
        assert_eq!(&bytes[0..2], &[0x02, 0x01]);
        assert_eq!(bytes[2], FLAG_TIMESTAMP);
        assert_eq!(bytes[3], 1);
        assert_eq!(&bytes[4..6], &[3, 0]);
        assert_eq!(&bytes[6..8], &[0, 0]);
        assert_eq!(&bytes[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&bytes[16..24], &0xAABB_CCDDu64.to_le_bytes());
        let crc = crc32c::crc32c(&[&bytes[..24], b"xyz"].concat());
        assert_eq!(&bytes[24..28], &crc.to_le_bytes());
        assert_eq!(&bytes[28..], b"xyz");
    }

    #[test]
    fn the_checksum_is_the_same_for_small_and_large_bodies() {
        let header: [u8; 24] = std::array::from_fn(|i| i as u8 * 7);
        let body: Vec<u8> = (0..300u32).map(|i| (i * 31 % 251) as u8).collect();
        for len in [0, 1, 7, 8, 9, 103, 104, 105, 200, 300] {
            let whole = crc32c::crc32c(&[&header[..], &body[..len]].concat());
            assert_eq!(checksum(&header, &body[..len]), whole, "{len}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = meta().encode(b"body bytes");
        for len in 0..bytes.len() {
            let err = EventMeta::decode(&bytes[..len]).unwrap_err();
            if len < EventMeta::LEN {
                assert_eq!(err, EventMetaError::Truncated { len });
            } else {
                assert!(
                    matches!(err, EventMetaError::ChecksumMismatch { .. }),
                    "{len}: {err}"
                );
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_an_error() {
        let bytes = meta().encode(b"some body");
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[byte] ^= 1 << bit;
                assert!(EventMeta::decode(&flipped).is_err(), "flip {byte}:{bit}");
            }
        }
    }

    #[test]
    fn typed_errors_for_version_reserved_bits_and_dispatch_zero() {
        let reseal = |mut b: Vec<u8>| {
            let crc = crc32c::crc32c(&b[..24]);
            b[24..28].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut b = meta().encode(b"");
        b[3] = 2;
        assert_eq!(
            EventMeta::decode(&reseal(b)).unwrap_err(),
            EventMetaError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
        let mut b = meta().encode(b"");
        b[2] |= 0x80;
        assert!(matches!(
            EventMeta::decode(&reseal(b)),
            Err(EventMetaError::Reserved { flags: 0x81, .. })
        ));
        let mut b = meta().encode(b"");
        b[7] = 1;
        assert!(matches!(
            EventMeta::decode(&reseal(b)),
            Err(EventMetaError::Reserved {
                reserved: 0x0100,
                ..
            })
        ));
        let b = EventMeta {
            dispatch: 0,
            ..meta()
        }
        .encode(b"");
        assert_eq!(
            EventMeta::decode(&b).unwrap_err(),
            EventMetaError::InvalidDispatch
        );
    }

    proptest! {
        #[test]
        fn round_trips(
            dispatch in 1u16..,
            schema_version: u16,
            origin_hash: u64,
            value: u64,
            is_ts: bool,
            body in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let meta = EventMeta {
                dispatch,
                schema_version,
                origin_hash,
                seq_or_ts: if is_ts { SeqOrTs::TimestampNs(value) } else { SeqOrTs::Seq(value) },
            };
            let bytes = meta.encode(&body);
            let (back, rest) = EventMeta::decode(&bytes).unwrap();
            prop_assert_eq!(back, meta);
            prop_assert_eq!(rest, &body[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = EventMeta::decode(&bytes);
        }
    }
}
