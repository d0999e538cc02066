//! The on-disk record format.
//!
//! A persistent channel is a directory of *segments*. Segment `N` (the sequence number of its
//! first event, written as 20 decimal digits) is three files:
//!
//! * `N.idx` — one 20-byte index record per event, in sequence order;
//! * `N.dat` — the payloads longer than 8 bytes, back to back;
//! * `N.ts`  — one 8-byte append timestamp per event (nanoseconds since the Unix epoch,
//!   little-endian), in sequence order.
//!
//! An index record, all fields little-endian:
//!
//! ```text
//! offset  size  field
//!      0     8  seq       u64  the event's sequence number
//!      8     4  offset    u32  heap: byte offset of the payload in N.dat
//!                              inline: payload bytes 0..4 (zero padded)
//!     12     4  len       u32  heap: payload length in bytes
//!                              inline: payload bytes 4..8 (zero padded)
//!     16     3  checksum  u24  low 24 bits of CRC-32C over bytes 0..16, the 8 timestamp
//!                              bytes, the flags byte and (heap) the payload, in that order
//!     19     1  flags     u8   bit 7: INLINE; bits 0..3: inline payload length (0..=8);
//!                              bits 4..6: reserved, zero
//! ```
//!
//! Heap payloads are contiguous: each record's `offset` is the previous heap record's
//! `offset + len` (the first is 0), so the data file holds nothing but payloads.

/// The log never numbers an event at or past this seq (2^63): appends past it fail with
/// [`RedexError::SeqExhausted`](super::RedexError::SeqExhausted), and a segment file named
/// for a later first seq, or a head past it, is damage. A seq near `u64::MAX` could only
/// come from a renamed or damaged file; the cap leaves room for every record a file can
/// hold, so no seq arithmetic can overflow (found by fuzzing).
pub const SEQ_LIMIT: u64 = 1 << 63;
/// The size of an index record in bytes.
pub const INDEX_RECORD_LEN: usize = 20;
/// The size of a timestamp record in bytes.
pub const TS_RECORD_LEN: usize = 8;
/// Payloads of at most this many bytes live inside their index record.
pub const INLINE_MAX: usize = 8;

const FLAG_INLINE: u8 = 0x80;
const FLAG_RESERVED: u8 = 0x70;
const CHECKSUM_MASK: u32 = 0x00FF_FFFF;

/// Where an event's payload lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// Inside the record: the bytes (zero padded) and the length.
    Inline { bytes: [u8; INLINE_MAX], len: u8 },
    /// In the data file.
    Heap { offset: u32, len: u32 },
}

/// A decoded index record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexRecord {
    pub seq: u64,
    pub payload: Payload,
    pub checksum: u32,
}

/// Why 20 bytes are not a well-formed index record (before any checksum is looked at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordError {
    ReservedFlags(u8),
    InlineTooLong(u8),
    HeapLengthBits(u8),
    InlinePadding,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::ReservedFlags(b) => write!(f, "reserved flag bits set ({b:#04x})"),
            RecordError::InlineTooLong(n) => write!(f, "inline length {n} is over {INLINE_MAX}"),
            RecordError::HeapLengthBits(b) => {
                write!(f, "heap record with inline length bits set ({b:#04x})")
            }
            RecordError::InlinePadding => f.write_str("inline payload padding is not zero"),
        }
    }
}

impl IndexRecord {
    /// Builds the record for `payload`, appended at `seq` with timestamp `ts`, whose heap
    /// bytes (if any) start at `data_offset` of the segment's data file.
    pub fn new(seq: u64, ts: u64, payload: &[u8], data_offset: u32) -> IndexRecord {
        let payload_loc = if payload.len() <= INLINE_MAX {
            let mut bytes = [0u8; INLINE_MAX];
            bytes[..payload.len()].copy_from_slice(payload);
            Payload::Inline {
                bytes,
                len: payload.len() as u8,
            }
        } else {
            Payload::Heap {
                offset: data_offset,
                len: payload.len() as u32,
            }
        };
        let mut rec = IndexRecord {
            seq,
            payload: payload_loc,
            checksum: 0,
        };
        rec.checksum = rec.compute_checksum(ts, payload);
        rec
    }

    fn flags(&self) -> u8 {
        match self.payload {
            Payload::Inline { len, .. } => FLAG_INLINE | len,
            Payload::Heap { .. } => 0,
        }
    }

    fn body(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.seq.to_le_bytes());
        match self.payload {
            Payload::Inline { bytes, .. } => out[8..].copy_from_slice(&bytes),
            Payload::Heap { offset, len } => {
                out[8..12].copy_from_slice(&offset.to_le_bytes());
                out[12..16].copy_from_slice(&len.to_le_bytes());
            }
        }
        out
    }

    /// The checksum this record must carry for the given timestamp and heap payload
    /// (`heap` is ignored for inline records).
    pub fn compute_checksum(&self, ts: u64, heap: &[u8]) -> u32 {
        // Record body, timestamp and flags in one 8-byte-aligned buffer: one CRC call over
        // three aligned words and a byte for the fixed part.
        #[repr(C, align(8))]
        struct Fixed([u8; 25]);
        let mut fixed = Fixed([0u8; 25]);
        fixed.0[..16].copy_from_slice(&self.body());
        fixed.0[16..24].copy_from_slice(&ts.to_le_bytes());
        fixed.0[24] = self.flags();
        let mut crc = crc32c::crc32c(&fixed.0);
        if let Payload::Heap { .. } = self.payload {
            crc = crc32c::crc32c_append(crc, heap);
        }
        crc & CHECKSUM_MASK
    }

    /// Whether the stored checksum matches.
    pub fn verify(&self, ts: u64, heap: &[u8]) -> bool {
        self.checksum == self.compute_checksum(ts, heap)
    }

    pub fn encode(&self) -> [u8; INDEX_RECORD_LEN] {
        let mut out = [0u8; INDEX_RECORD_LEN];
        out[..16].copy_from_slice(&self.body());
        let word = self.checksum | (u32::from(self.flags()) << 24);
        out[16..].copy_from_slice(&word.to_le_bytes());
        out
    }

    pub fn decode(raw: &[u8; INDEX_RECORD_LEN]) -> Result<IndexRecord, RecordError> {
        let seq = u64::from_le_bytes(raw[..8].try_into().expect("8 bytes"));
        let word = u32::from_le_bytes(raw[16..].try_into().expect("4 bytes"));
        let flags = (word >> 24) as u8;
        if flags & FLAG_RESERVED != 0 {
            return Err(RecordError::ReservedFlags(flags));
        }
        let payload = if flags & FLAG_INLINE != 0 {
            let len = flags & 0x0F;
            if usize::from(len) > INLINE_MAX {
                return Err(RecordError::InlineTooLong(len));
            }
            let bytes: [u8; INLINE_MAX] = raw[8..16].try_into().expect("8 bytes");
            if bytes[usize::from(len)..].iter().any(|&b| b != 0) {
                return Err(RecordError::InlinePadding);
            }
            Payload::Inline { bytes, len }
        } else {
            if flags != 0 {
                return Err(RecordError::HeapLengthBits(flags));
            }
            Payload::Heap {
                offset: u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")),
                len: u32::from_le_bytes(raw[12..16].try_into().expect("4 bytes")),
            }
        };
        Ok(IndexRecord {
            seq,
            payload,
            checksum: word & CHECKSUM_MASK,
        })
    }

    /// Payload length in bytes.
    pub fn payload_len(&self) -> u64 {
        match self.payload {
            Payload::Inline { len, .. } => u64::from(len),
            Payload::Heap { len, .. } => u64::from(len),
        }
    }

    /// The heap byte range `(offset, len)`, or `None` for inline records.
    pub fn heap(&self) -> Option<(u64, u64)> {
        match self.payload {
            Payload::Heap { offset, len } => Some((u64::from(offset), u64::from(len))),
            Payload::Inline { .. } => None,
        }
    }

    /// The inline payload bytes, or `None` for heap records.
    pub fn inline(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Inline { bytes, len } => Some(&bytes[..usize::from(*len)]),
            Payload::Heap { .. } => None,
        }
    }
}

/// Decodes a little-endian timestamp record.
pub(crate) fn decode_ts(raw: &[u8]) -> u64 {
    u64::from_le_bytes(raw[..TS_RECORD_LEN].try_into().expect("8 bytes"))
}

/// The file name stem of the segment starting at `first_seq`.
pub(crate) fn segment_stem(first_seq: u64) -> String {
    format!("{first_seq:020}")
}

/// Parses a segment file name (`<20 digits>.<ext>`), returning the first seq and extension.
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_round_trip_for_every_length() {
        for len in 0..=INLINE_MAX {
            let payload: Vec<u8> = (1..=len as u8).collect();
            let rec = IndexRecord::new(42, 7, &payload, 999);
            let raw = rec.encode();
            let back = IndexRecord::decode(&raw).unwrap();
            assert_eq!(back, rec);
            assert_eq!(back.inline().unwrap(), &payload[..]);
            assert_eq!(back.payload_len(), len as u64);
            assert!(back.verify(7, &[]));
            assert!(!back.verify(8, &[]), "timestamp is covered by the checksum");
        }
    }

    #[test]
    fn heap_round_trip_and_layout() {
        let payload = vec![0xAB; 300];
        let rec = IndexRecord::new(0x0102_0304_0506_0708, 5, &payload, 0x1122_3344);
        let raw = rec.encode();
        assert_eq!(&raw[..8], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&raw[8..12], &0x1122_3344u32.to_le_bytes());
        assert_eq!(&raw[12..16], &300u32.to_le_bytes());
        assert_eq!(raw[19], 0, "heap records carry no flags");
        let back = IndexRecord::decode(&raw).unwrap();
        assert_eq!(back.heap(), Some((0x1122_3344, 300)));
        assert!(back.verify(5, &payload));
        let mut bad = payload.clone();
        bad[123] ^= 1;
        assert!(!back.verify(5, &bad));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let payload = b"0123456789abcdef";
        let rec = IndexRecord::new(9, 1234, payload, 64);
        let raw = rec.encode();
        for byte in 0..INDEX_RECORD_LEN {
            for bit in 0..8 {
                let mut flipped = raw;
                flipped[byte] ^= 1 << bit;
                match IndexRecord::decode(&flipped) {
                    Err(_) => {}
                    Ok(r) => assert!(!r.verify(1234, payload), "flip {byte}:{bit} undetected"),
                }
            }
        }
    }

    #[test]
    fn malformed_flags_are_typed_errors() {
        let mut raw = IndexRecord::new(1, 1, b"abc", 0).encode();
        raw[19] |= 0x10;
        assert!(matches!(
            IndexRecord::decode(&raw),
            Err(RecordError::ReservedFlags(_))
        ));
        let mut raw = IndexRecord::new(1, 1, b"abc", 0).encode();
        raw[19] = FLAG_INLINE | 9;
        assert_eq!(
            IndexRecord::decode(&raw),
            Err(RecordError::InlineTooLong(9))
        );
        let mut raw = IndexRecord::new(1, 1, b"abc", 0).encode();
        raw[15] = 1;
        assert_eq!(IndexRecord::decode(&raw), Err(RecordError::InlinePadding));
        let mut raw = IndexRecord::new(1, 1, &[0; 20], 0).encode();
        raw[19] = 3;
        assert_eq!(
            IndexRecord::decode(&raw),
            Err(RecordError::HeapLengthBits(3))
        );
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_stem(17), "00000000000000000017");
        assert_eq!(
            parse_segment_name("00000000000000000017.idx"),
            Some((17, "idx"))
        );
        assert_eq!(parse_segment_name("17.idx"), None);
        assert_eq!(parse_segment_name("0000000000000000001x.idx"), None);
        assert_eq!(parse_segment_name(".head"), None);
    }
}
