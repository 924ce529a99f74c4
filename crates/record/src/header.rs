//! The fixed 61-byte RecordBatch header and the framing helpers that only need it.

use crate::compression::Compression;
use crate::error::RecordError;

/// Bytes before the length-counted part of a batch: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the RecordBatch v2 header, up to and including recordsCount.
pub const HEADER_LEN: usize = 61;
/// The only batch format this crate accepts.
pub const MAGIC_V2: i8 = 2;

pub(crate) const LEADER_EPOCH_OFFSET: usize = 12;
pub(crate) const MAGIC_OFFSET: usize = 16;
pub(crate) const CRC_OFFSET: usize = 17;
/// The CRC covers everything from the attributes field to the end of the batch, which is why
/// base offset and leader epoch can be rewritten without recomputing it.
pub(crate) const CRC_START: usize = 21;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
const DELETE_HORIZON_BIT: i16 = 0x40;

/// How the timestamps of a batch were assigned (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer; each record carries its own.
    CreateTime,
    /// Set by the broker on append; every record reads as the batch's max timestamp.
    LogAppendTime,
}

impl TimestampType {
    /// The attribute bit for this type, to be OR-ed into the attributes field.
    pub fn attribute_bits(self) -> i16 {
        match self {
            TimestampType::CreateTime => 0,
            TimestampType::LogAppendTime => TIMESTAMP_TYPE_BIT,
        }
    }
}

/// The decoded fixed header of a RecordBatch v2, field for field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record; assigned by the broker on append.
    pub base_offset: i64,
    /// Bytes following this field (total length minus [`LOG_OVERHEAD`]).
    pub batch_length: i32,
    /// Leader epoch at append time; assigned by the broker.
    pub partition_leader_epoch: i32,
    /// Format version; always [`MAGIC_V2`] once parsed.
    pub magic: i8,
    /// CRC-32C of the bytes from `attributes` to the end of the batch.
    pub crc: u32,
    /// Codec, timestamp type, transactional, control and delete-horizon flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp the record timestamp deltas are relative to (first record's, in practice).
    pub base_timestamp: i64,
    /// Largest timestamp in the batch (the append time for `LogAppendTime`).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records the batch claims to hold.
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut x = [0; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

impl BatchHeader {
    /// Parses the 61-byte header at the start of `buf` (no CRC check).
    ///
    /// The magic byte is checked before the length so that a short legacy (v0/v1) message
    /// is reported as [`RecordError::BadMagic`] rather than as truncated.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, RecordError> {
        if let Some(&magic) = buf.get(MAGIC_OFFSET)
            && magic as i8 != MAGIC_V2
        {
            return Err(RecordError::BadMagic(magic as i8));
        }
        if buf.len() < HEADER_LEN {
            return Err(RecordError::TooShort {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_OFFSET),
            magic: buf[MAGIC_OFFSET] as i8,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, CRC_START),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Serialises the header exactly as [`BatchHeader::parse`] reads it.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let fields: [&[u8]; 13] = [
            &self.base_offset.to_be_bytes(),
            &self.batch_length.to_be_bytes(),
            &self.partition_leader_epoch.to_be_bytes(),
            &self.magic.to_be_bytes(),
            &self.crc.to_be_bytes(),
            &self.attributes.to_be_bytes(),
            &self.last_offset_delta.to_be_bytes(),
            &self.base_timestamp.to_be_bytes(),
            &self.max_timestamp.to_be_bytes(),
            &self.producer_id.to_be_bytes(),
            &self.producer_epoch.to_be_bytes(),
            &self.base_sequence.to_be_bytes(),
            &self.records_count.to_be_bytes(),
        ];
        let mut at = 0;
        for f in fields {
            out[at..at + f.len()].copy_from_slice(f);
            at += f.len();
        }
        out
    }

    /// The codec named by the attributes.
    pub fn compression(&self) -> Result<Compression, RecordError> {
        Compression::from_attributes(self.attributes)
    }

    /// Whether timestamps are producer-assigned or broker-assigned.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds a control record (transaction marker) rather than data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether `base_timestamp` holds a compaction delete horizon (KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }

    /// Offset of the last record (`base_offset + last_offset_delta`; wraps on garbage input).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Total size of the batch including [`LOG_OVERHEAD`]. A negative length field yields
    /// `LOG_OVERHEAD`, which is below [`HEADER_LEN`] and so fails any later length check.
    pub fn total_len(&self) -> usize {
        total_len(self.batch_length)
    }

    /// Number of offsets the batch occupies (`last_offset_delta + 1`, 0 if that is negative).
    pub fn record_count(&self) -> u32 {
        u32::try_from(i64::from(self.last_offset_delta) + 1).unwrap_or(0)
    }
}

fn total_len(batch_length: i32) -> usize {
    LOG_OVERHEAD + usize::try_from(batch_length).unwrap_or(0)
}

/// Reads only baseOffset and batchLength, so a storage engine can walk a file batch by batch.
///
/// Returns `(base_offset, total_len)`, or `None` when `buf` holds fewer than
/// [`LOG_OVERHEAD`] bytes. A `total_len` below [`HEADER_LEN`] means the length field is
/// corrupt (negative lengths are reported as [`LOG_OVERHEAD`]); callers walking a file must
/// treat it as the end of valid data rather than step over it.
pub fn peek_len(buf: &[u8]) -> Option<(i64, usize)> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    Some((be_i64(buf, 0), total_len(be_i32(buf, 8))))
}

/// Verifies the CRC-32C of one whole batch, given as a slice of exactly `total_len` bytes.
///
/// The length field is checked against the slice too: a CRC over the wrong extent would
/// mismatch anyway, but the length error says what actually went wrong.
pub fn verify_crc(batch: &[u8]) -> Result<(), RecordError> {
    if batch.len() < HEADER_LEN {
        return Err(RecordError::TooShort {
            need: HEADER_LEN,
            have: batch.len(),
        });
    }
    let declared = total_len(be_i32(batch, 8));
    if declared != batch.len() {
        return Err(RecordError::LengthMismatch {
            header: declared,
            actual: batch.len(),
        });
    }
    let expected = be_i32(batch, CRC_OFFSET) as u32;
    let computed = crc32c::crc32c(&batch[CRC_START..]);
    if expected != computed {
        return Err(RecordError::ChecksumMismatch { expected, computed });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchHeader {
        BatchHeader {
            base_offset: 0x0102_0304_0506_0708,
            batch_length: 49,
            partition_leader_epoch: 7,
            magic: MAGIC_V2,
            crc: 0xdead_beef,
            attributes: 0x10 | 0x08 | 3,
            last_offset_delta: 4,
            base_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_999,
            producer_id: 42,
            producer_epoch: 3,
            base_sequence: 100,
            records_count: 5,
        }
    }

    #[test]
    fn parse_reads_every_field_at_kafkas_offsets() {
        let h = sample();
        let bytes = h.encode();
        // Spot-check the layout against the wire spec, not just against encode().
        assert_eq!(bytes[..8], [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes[16], 2);
        assert_eq!(bytes[17..21], [0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytes[21..23], [0x00, 0x1b]);
        assert_eq!(bytes[57..61], [0, 0, 0, 5]);
        assert_eq!(BatchHeader::parse(&bytes), Ok(h));
    }

    #[test]
    fn attribute_accessors() {
        let h = sample();
        assert_eq!(h.compression(), Ok(Compression::Lz4));
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert!(h.is_transactional());
        assert!(!h.is_control());
        assert!(!h.has_delete_horizon());
        let plain = BatchHeader {
            attributes: 0x20 | 0x40,
            ..h
        };
        assert_eq!(plain.compression(), Ok(Compression::None));
        assert_eq!(plain.timestamp_type(), TimestampType::CreateTime);
        assert!(!plain.is_transactional());
        assert!(plain.is_control());
        assert!(plain.has_delete_horizon());
        let bad = BatchHeader { attributes: 6, ..h };
        assert_eq!(bad.compression(), Err(RecordError::UnknownCompression(6)));
    }

    #[test]
    fn derived_sizes() {
        let h = sample();
        assert_eq!(h.last_offset(), 0x0102_0304_0506_070c);
        assert_eq!(h.total_len(), 61);
        assert_eq!(h.record_count(), 5);
        let neg = BatchHeader {
            batch_length: -1,
            last_offset_delta: -7,
            base_offset: i64::MAX,
            ..h
        };
        assert_eq!(neg.total_len(), LOG_OVERHEAD);
        assert_eq!(neg.record_count(), 0);
        assert_eq!(neg.last_offset(), i64::MAX - 7);
        let max = BatchHeader {
            last_offset_delta: i32::MAX,
            ..h
        };
        assert_eq!(max.record_count(), 1 << 31);
    }

    #[test]
    fn parse_errors() {
        let bytes = sample().encode();
        assert_eq!(
            BatchHeader::parse(&bytes[..60]),
            Err(RecordError::TooShort { need: 61, have: 60 })
        );
        assert_eq!(
            BatchHeader::parse(&bytes[..16]),
            Err(RecordError::TooShort { need: 61, have: 16 })
        );
        let mut legacy = bytes;
        legacy[16] = 1;
        // A v1 message is shorter than 61 bytes; the magic must still be what is reported.
        assert_eq!(
            BatchHeader::parse(&legacy[..40]),
            Err(RecordError::BadMagic(1))
        );
        legacy[16] = 0xff;
        assert_eq!(BatchHeader::parse(&legacy), Err(RecordError::BadMagic(-1)));
    }

    #[test]
    fn peek_len_reads_only_the_framing() {
        let bytes = sample().encode();
        assert_eq!(peek_len(&bytes[..12]), Some((0x0102_0304_0506_0708, 61)));
        assert_eq!(peek_len(&bytes[..11]), None);
        let mut neg = bytes;
        neg[8..12].copy_from_slice(&(-100i32).to_be_bytes());
        assert_eq!(peek_len(&neg).map(|p| p.1), Some(LOG_OVERHEAD));
    }

    #[test]
    fn verify_crc_checks_length_then_checksum() {
        let mut bytes = sample().encode();
        let crc = crc32c::crc32c(&bytes[CRC_START..]);
        bytes[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(verify_crc(&bytes), Ok(()));

        // Base offset and leader epoch sit outside the checksum.
        bytes[0] ^= 0xff;
        bytes[LEADER_EPOCH_OFFSET] ^= 0xff;
        assert_eq!(verify_crc(&bytes), Ok(()));

        bytes[40] ^= 1;
        let computed = crc32c::crc32c(&bytes[CRC_START..]);
        assert_eq!(
            verify_crc(&bytes),
            Err(RecordError::ChecksumMismatch {
                expected: crc,
                computed
            })
        );
        assert_ne!(crc, computed);

        assert_eq!(
            verify_crc(&bytes[..50]),
            Err(RecordError::TooShort { need: 61, have: 50 })
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert_eq!(
            verify_crc(&long),
            Err(RecordError::LengthMismatch {
                header: 61,
                actual: 62
            })
        );
    }

    #[test]
    fn error_messages_name_the_cause() {
        let e = RecordError::ChecksumMismatch {
            expected: 0x1234_abcd,
            computed: 0xff,
        };
        assert_eq!(
            e.to_string(),
            "checksum mismatch: header says 0x1234abcd, computed 0x000000ff"
        );
        assert!(RecordError::BadMagic(1).to_string().contains("magic 1"));
    }
}
