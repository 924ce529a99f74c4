//! A validated batch and the operations the append path performs on it.

use bytes::{Bytes, BytesMut};

use crate::compression::{Compression, MAX_DECOMPRESSED_LEN, decompress};
use crate::error::RecordError;
use crate::header::{
    BatchHeader, HEADER_LEN, LEADER_EPOCH_OFFSET, MAGIC_OFFSET, TimestampType, verify_crc,
};
use crate::records::{Records, count_records};

/// A batch that passed [`Batch::validate`]. The bytes are exactly what the producer sent.
#[derive(Debug, Clone)]
pub struct Batch {
    bytes: Bytes,
    header: BatchHeader,
}

impl Batch {
    /// Validates one batch, without decompressing it.
    ///
    /// Checks, in order: magic 2 and a whole header; the length field equals the buffer
    /// length (so exactly one batch); the CRC-32C; a known codec; `records_count ==
    /// last_offset_delta + 1` and at least one record. For uncompressed batches the records
    /// are also walked (structure only, no allocation) and must number `records_count` and
    /// fill the batch exactly. Compressed payloads are checked only by the CRC: decompressing
    /// on the append path would cost more than the append itself.
    pub fn validate(bytes: Bytes) -> Result<Batch, RecordError> {
        let header = BatchHeader::parse(&bytes)?;
        // verify_crc also rejects a length field that disagrees with the buffer.
        verify_crc(&bytes)?;
        let compression = header.compression()?;
        let claimed = i64::from(header.records_count);
        let occupied = i64::from(header.last_offset_delta) + 1;
        if claimed != occupied {
            return Err(RecordError::RecordCountMismatch {
                header: claimed,
                actual: occupied,
            });
        }
        if claimed < 1 {
            return Err(RecordError::Empty);
        }
        if compression == Compression::None {
            let found = count_records(&bytes[HEADER_LEN..], 0)?;
            if found as i64 != claimed {
                return Err(RecordError::RecordCountMismatch {
                    header: claimed,
                    actual: found as i64,
                });
            }
        }
        Ok(Batch { bytes, header })
    }

    /// The parsed header (as received: base offset and leader epoch are the producer's).
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch, exactly as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Total size in bytes, header included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a valid batch holds at least a header and one record.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Number of records (equal to the offsets the batch occupies, once validated).
    pub fn record_count(&self) -> u32 {
        self.header.record_count()
    }

    /// The batch's max timestamp, as the producer (or broker, for LogAppendTime) set it.
    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp
    }

    /// Bytes `[0, 16)` of the batch — baseOffset, batchLength, partitionLeaderEpoch — with
    /// base offset and leader epoch replaced. The stored batch is this prefix followed by
    /// `as_bytes()[16..]`, which lets a file engine write it with `writev` and no copy; the
    /// CRC stays valid because it starts after these fields.
    pub fn rewritten_prefix(&self, base_offset: i64, leader_epoch: i32) -> [u8; 16] {
        let mut prefix = [0u8; MAGIC_OFFSET];
        prefix.copy_from_slice(&self.bytes[..MAGIC_OFFSET]);
        prefix[..8].copy_from_slice(&base_offset.to_be_bytes());
        prefix[LEADER_EPOCH_OFFSET..].copy_from_slice(&leader_epoch.to_be_bytes());
        prefix
    }

    /// The whole batch with base offset and leader epoch rewritten. Rewrites in place when
    /// this is the only handle to the buffer, otherwise copies once.
    pub fn into_stored(self, base_offset: i64, leader_epoch: i32) -> Bytes {
        let prefix = self.rewritten_prefix(base_offset, leader_epoch);
        match self.bytes.try_into_mut() {
            Ok(mut unique) => {
                unique[..MAGIC_OFFSET].copy_from_slice(&prefix);
                unique.freeze()
            }
            Err(shared) => {
                let mut copy = BytesMut::with_capacity(shared.len());
                copy.extend_from_slice(&prefix);
                copy.extend_from_slice(&shared[MAGIC_OFFSET..]);
                copy.freeze()
            }
        }
    }

    /// Like [`Batch::into_stored`], but keeps the result as a `Batch` with its header updated.
    pub fn rebased(self, base_offset: i64, leader_epoch: i32) -> Batch {
        let header = BatchHeader {
            base_offset,
            partition_leader_epoch: leader_epoch,
            ..self.header
        };
        Batch {
            bytes: self.into_stored(base_offset, leader_epoch),
            header,
        }
    }

    /// Iterates the records, decompressing first when needed (at most
    /// [`MAX_DECOMPRESSED_LEN`] bytes).
    pub fn records(&self) -> Result<Records, RecordError> {
        self.records_with_limit(MAX_DECOMPRESSED_LEN)
    }

    /// [`Batch::records`] with an explicit cap on the decompressed size.
    pub fn records_with_limit(&self, max_decompressed: usize) -> Result<Records, RecordError> {
        let h = &self.header;
        let body = match h.compression()? {
            Compression::None => self.bytes.slice(HEADER_LEN..),
            codec => Bytes::from(decompress(
                codec,
                &self.bytes[HEADER_LEN..],
                max_decompressed,
            )?),
        };
        let log_append_time =
            (h.timestamp_type() == TimestampType::LogAppendTime).then_some(h.max_timestamp);
        Ok(Records::new(
            body,
            h.record_count() as usize,
            h.base_offset,
            h.base_timestamp,
            log_append_time,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::BatchBuilder;
    use crate::header::{CRC_OFFSET, CRC_START};

    fn built(codec: Compression, n: usize) -> Bytes {
        let mut b = BatchBuilder::new(codec);
        for i in 0..n {
            b.push(
                Some(format!("k{i}").as_bytes()),
                Some(b"value"),
                &[],
                1000 + i as i64,
            );
        }
        b.build().unwrap()
    }

    /// Applies `edit` and recomputes the CRC, so the edit is what validation trips over.
    fn patched(bytes: &Bytes, edit: impl FnOnce(&mut Vec<u8>)) -> Bytes {
        let mut v = bytes.to_vec();
        edit(&mut v);
        let crc = crc32c::crc32c(&v[CRC_START..]);
        v[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(v)
    }

    #[test]
    fn valid_batches_pass_for_every_codec() {
        for codec in Compression::ALL {
            let bytes = built(codec, 3);
            let b = Batch::validate(bytes.clone()).unwrap();
            assert_eq!(b.as_bytes(), &bytes);
            assert_eq!(b.len(), bytes.len());
            assert!(!b.is_empty());
            assert_eq!(b.record_count(), 3);
            assert_eq!(b.max_timestamp(), 1002);
            assert_eq!(b.header().compression(), Ok(codec));
        }
    }

    #[test]
    fn each_corruption_yields_its_error() {
        let good = built(Compression::None, 3);
        let v = |b: Bytes| Batch::validate(b).unwrap_err();

        let mut magic = good.to_vec();
        magic[MAGIC_OFFSET] = 1;
        assert_eq!(v(magic.into()), RecordError::BadMagic(1));

        let mut flipped = good.to_vec();
        flipped[HEADER_LEN + 3] ^= 0x40;
        assert!(
            matches!(v(flipped.into()), RecordError::ChecksumMismatch { expected, computed } if expected != computed)
        );

        let mut crc_flipped = good.to_vec();
        crc_flipped[CRC_OFFSET] ^= 1;
        assert!(matches!(
            v(crc_flipped.into()),
            RecordError::ChecksumMismatch { .. }
        ));

        assert_eq!(
            v(good.slice(..good.len() - 1)),
            RecordError::LengthMismatch {
                header: good.len(),
                actual: good.len() - 1
            }
        );
        let two = Bytes::from([good.to_vec(), good.to_vec()].concat());
        assert_eq!(
            v(two),
            RecordError::LengthMismatch {
                header: good.len(),
                actual: 2 * good.len()
            }
        );
        assert_eq!(
            v(good.slice(..30)),
            RecordError::TooShort { need: 61, have: 30 }
        );

        // recordsCount disagrees with lastOffsetDelta.
        let count = patched(&good, |b| b[57..61].copy_from_slice(&4i32.to_be_bytes()));
        assert_eq!(
            v(count),
            RecordError::RecordCountMismatch {
                header: 4,
                actual: 3
            }
        );

        // Header consistent with itself but not with the records actually present.
        let walked = patched(&good, |b| {
            b[23..27].copy_from_slice(&1i32.to_be_bytes());
            b[57..61].copy_from_slice(&2i32.to_be_bytes());
        });
        assert_eq!(
            v(walked),
            RecordError::RecordCountMismatch {
                header: 2,
                actual: 3
            }
        );

        let empty = patched(&good.slice(..HEADER_LEN), |b| {
            b[8..12].copy_from_slice(&((HEADER_LEN - 12) as i32).to_be_bytes());
            b[23..27].copy_from_slice(&(-1i32).to_be_bytes());
            b[57..61].copy_from_slice(&0i32.to_be_bytes());
        });
        assert_eq!(v(empty), RecordError::Empty);

        let codec = patched(&good, |b| b[22] |= 7);
        assert_eq!(v(codec), RecordError::UnknownCompression(7));

        let malformed = patched(&good, |b| b[HEADER_LEN] = 0x01);
        assert!(matches!(
            v(malformed),
            RecordError::MalformedRecord { index: 0, .. }
        ));
    }

    #[test]
    fn compressed_payload_is_not_inspected_on_validate() {
        // Garbage behind a correct CRC passes validation and fails only when read.
        let good = built(Compression::Zstd, 3);
        let garbage = patched(&good, |b| b[HEADER_LEN..].fill(0xab));
        let batch = Batch::validate(garbage).unwrap();
        assert!(matches!(
            batch.records(),
            Err(RecordError::Decompress {
                codec: Compression::Zstd,
                ..
            })
        ));
    }

    #[test]
    fn rewritten_prefix_keeps_the_crc_valid() {
        let batch = Batch::validate(built(Compression::Lz4, 5)).unwrap();
        let prefix = batch.rewritten_prefix(1_000_000, 17);
        let stored = [&prefix[..], &batch.as_bytes()[16..]].concat();
        let again = Batch::validate(Bytes::from(stored)).unwrap();
        assert_eq!(again.header().base_offset, 1_000_000);
        assert_eq!(again.header().partition_leader_epoch, 17);
        assert_eq!(again.header().batch_length, batch.header().batch_length);
        assert_eq!(again.header().last_offset(), 1_000_004);
        let offsets: Vec<i64> = again
            .records()
            .unwrap()
            .map(|r| r.unwrap().offset)
            .collect();
        assert_eq!(
            offsets,
            [1_000_000, 1_000_001, 1_000_002, 1_000_003, 1_000_004]
        );
    }

    #[test]
    fn into_stored_rewrites_in_place_when_unique() {
        let bytes = built(Compression::None, 2);
        let ptr = bytes.as_ptr();
        let batch = Batch::validate(bytes).unwrap();
        let stored = batch.into_stored(42, 3);
        assert_eq!(stored.as_ptr(), ptr, "unique buffer should be reused");
        let b = Batch::validate(stored).unwrap();
        assert_eq!(
            (b.header().base_offset, b.header().partition_leader_epoch),
            (42, 3)
        );
    }

    #[test]
    fn into_stored_copies_when_shared_and_leaves_the_original_alone() {
        let bytes = built(Compression::None, 2);
        let keep = bytes.clone();
        let stored = Batch::validate(bytes).unwrap().into_stored(42, 3);
        assert_ne!(stored.as_ptr(), keep.as_ptr());
        assert_eq!(BatchHeader::parse(&keep).unwrap().base_offset, 0);
        assert_eq!(stored[16..], keep[16..]);
        let b = Batch::validate(stored).unwrap();
        assert_eq!(
            (b.header().base_offset, b.header().partition_leader_epoch),
            (42, 3)
        );
    }

    #[test]
    fn into_stored_on_a_slice_of_a_larger_buffer() {
        // What split_batches hands out: a view into the request buffer.
        let one = built(Compression::None, 2);
        let whole = Bytes::from([one.to_vec(), one.to_vec()].concat());
        let second = whole.slice(one.len()..);
        drop(whole);
        let stored = Batch::validate(second).unwrap().into_stored(9, 1);
        let b = Batch::validate(stored).unwrap();
        assert_eq!(b.header().base_offset, 9);
        assert_eq!(b.records().unwrap().count(), 2);
    }

    #[test]
    fn rebased_updates_header_and_bytes() {
        let b = Batch::validate(built(Compression::Gzip, 2))
            .unwrap()
            .rebased(100, 5);
        assert_eq!(b.header().base_offset, 100);
        assert_eq!(BatchHeader::parse(b.as_bytes()).unwrap(), *b.header());
        verify_crc(b.as_bytes()).unwrap();
    }

    #[test]
    fn decompression_limit_applies() {
        let b = Batch::validate(built(Compression::Snappy, 50)).unwrap();
        assert!(b.records_with_limit(10).is_err());
        assert_eq!(b.records_with_limit(1 << 20).unwrap().count(), 50);
    }
}
