//! Building batches, for callers that originate records (the MQTT front end, benchmarks,
//! tests) rather than receiving them from Kafka producers.

use bytes::Bytes;

use crate::compression::{Compression, compress};
use crate::error::RecordError;
use crate::header::{
    BatchHeader, CRC_OFFSET, CRC_START, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, TimestampType,
};
use crate::varint::{varint_len, varlong_len, write_varint, write_varlong};

/// Accumulates records and encodes them as one RecordBatch v2.
///
/// The batch is written with base offset 0 and leader epoch -1, like a producer's; the
/// appending side rewrites both. Record timestamps are stored relative to the first pushed
/// record, and the max timestamp is the largest pushed.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    timestamp_type: TimestampType,
    transactional: bool,
    /// `HEADER_LEN` placeholder bytes, then the encoded records, so that an uncompressed
    /// batch is finished in place.
    buf: Vec<u8>,
    count: usize,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// An empty builder that will compress with `compression`; no producer id, CreateTime,
    /// not transactional.
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            buf: vec![0; HEADER_LEN],
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
        }
    }

    /// Sets the idempotent-producer fields (default -1, -1, -1).
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Sets the timestamp type. With `LogAppendTime` readers report the batch max timestamp for
    /// every record, so the per-record timestamps pushed become invisible.
    pub fn timestamp_type(mut self, t: TimestampType) -> Self {
        self.timestamp_type = t;
        self
    }

    /// Marks the batch as part of a transaction.
    pub fn transactional(mut self, yes: bool) -> Self {
        self.transactional = yes;
        self
    }

    /// Appends one record; its offset delta is the number of records pushed before it.
    ///
    /// # Panics
    ///
    /// If a key, value or header exceeds `i32::MAX` bytes, or the uncompressed batch would
    /// exceed `i32::MAX` bytes: the format cannot represent either.
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        timestamp: i64,
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        // Wrapping matches Java's long arithmetic, so extreme timestamps still round-trip.
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        let offset_delta = i32::try_from(self.count).unwrap_or(i32::MAX);
        let header_count = to_len(headers.len());

        let body_len = 1
            + varlong_len(ts_delta)
            + varint_len(offset_delta)
            + field_len(key)
            + field_len(value)
            + varint_len(header_count)
            + headers
                .iter()
                .map(|(k, v)| field_len(Some(k.as_bytes())) + field_len(*v))
                .sum::<usize>();
        let body_len_i32 = to_len(body_len);
        assert!(
            self.buf.len() + 5 + body_len - LOG_OVERHEAD <= i32::MAX as usize,
            "record batch would exceed i32::MAX bytes"
        );

        // record := length:varint attributes:i8 timestampDelta:varlong offsetDelta:varint
        //           key:bytes value:bytes headerCount:varint (headerKey:bytes headerValue:bytes)*
        // bytes    := length:varint (-1 = null) data
        self.buf.reserve(varint_len(body_len_i32) + body_len);
        write_varint(&mut self.buf, body_len_i32);
        self.buf.push(0);
        write_varlong(&mut self.buf, ts_delta);
        write_varint(&mut self.buf, offset_delta);
        write_field(&mut self.buf, key);
        write_field(&mut self.buf, value);
        write_varint(&mut self.buf, header_count);
        for (k, v) in headers {
            write_field(&mut self.buf, Some(k.as_bytes()));
            write_field(&mut self.buf, *v);
        }
        self.count += 1;
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size the batch would have uncompressed, header included: a bound for callers that cap
    /// batch sizes before building.
    pub fn uncompressed_len(&self) -> usize {
        self.buf.len()
    }

    /// Encodes the batch. Fails with [`RecordError::Empty`] when nothing was pushed (Kafka
    /// rejects empty batches on produce) and with [`RecordError::Compress`] if the codec
    /// fails.
    pub fn build(self) -> Result<Bytes, RecordError> {
        if self.count == 0 {
            return Err(RecordError::Empty);
        }
        let codec = self.compression;
        let mut buf = match codec {
            Compression::None => self.buf,
            _ => {
                let packed = compress(codec, &self.buf[HEADER_LEN..])?;
                let mut out = Vec::with_capacity(HEADER_LEN + packed.len());
                out.resize(HEADER_LEN, 0);
                out.extend_from_slice(&packed);
                out
            }
        };
        let batch_length =
            i32::try_from(buf.len() - LOG_OVERHEAD).map_err(|_| RecordError::Compress {
                codec,
                reason: "compressed batch exceeds i32::MAX bytes".into(),
            })?;
        let count = i32::try_from(self.count).unwrap_or(i32::MAX);
        let mut attributes = codec.attribute_bits() | self.timestamp_type.attribute_bits();
        if self.transactional {
            attributes |= 0x10;
        }
        let header = BatchHeader {
            base_offset: 0,
            batch_length,
            partition_leader_epoch: -1,
            magic: MAGIC_V2,
            crc: 0,
            attributes,
            last_offset_delta: count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count: count,
        };
        buf[..HEADER_LEN].copy_from_slice(&header.encode());
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_be_bytes());
        Ok(Bytes::from(buf))
    }
}

fn to_len(n: usize) -> i32 {
    i32::try_from(n)
        .unwrap_or_else(|_| panic!("length {n} exceeds the i32::MAX the record format allows"))
}

fn field_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varint_len(to_len(b.len())) + b.len(),
        None => 1,
    }
}

fn write_field(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            write_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
        None => write_varint(out, -1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::verify_crc;

    #[test]
    fn empty_builder_is_an_error() {
        let b = BatchBuilder::new(Compression::Gzip);
        assert!(b.is_empty());
        assert_eq!(b.build(), Err(RecordError::Empty));
    }

    #[test]
    fn header_fields_follow_the_pushed_records() {
        let mut b = BatchBuilder::new(Compression::None)
            .producer(77, 2, 1000)
            .transactional(true)
            .timestamp_type(TimestampType::LogAppendTime);
        b.push(None, Some(b"a"), &[], 500);
        b.push(None, Some(b"b"), &[], 900);
        b.push(None, Some(b"c"), &[], 100);
        assert_eq!(b.len(), 3);
        let bytes = b.build().unwrap();
        verify_crc(&bytes).unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(h.total_len(), bytes.len());
        assert_eq!((h.base_offset, h.partition_leader_epoch), (0, -1));
        assert_eq!((h.last_offset_delta, h.records_count), (2, 3));
        assert_eq!((h.base_timestamp, h.max_timestamp), (500, 900));
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (77, 2, 1000)
        );
        assert_eq!(h.attributes, 0x10 | 0x08);
    }

    #[test]
    fn exact_encoding_of_a_single_record() {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(Some(b"k"), None, &[("h", Some(b"v"))], 7);
        let bytes = b.build().unwrap();
        // length 11 | attrs | tsDelta 0 | offDelta 0 | key len 1 "k" | value null | 1 header: "h" "v"
        let expected = [22, 0, 0, 0, 2, b'k', 1, 2, 2, b'h', 2, b'v'];
        assert_eq!(bytes[HEADER_LEN..], expected);
        assert_eq!(bytes.len(), HEADER_LEN + expected.len());
    }

    #[test]
    fn compressed_batches_carry_the_codec_and_a_valid_crc() {
        for codec in Compression::ALL {
            let mut b = BatchBuilder::new(codec);
            for i in 0..100 {
                b.push(None, Some(&[b'x'; 100]), &[], i);
            }
            let raw_len = b.uncompressed_len();
            let bytes = b.build().unwrap();
            verify_crc(&bytes).unwrap();
            assert_eq!(BatchHeader::parse(&bytes).unwrap().compression(), Ok(codec));
            if codec != Compression::None {
                assert!(
                    bytes.len() < raw_len / 4,
                    "{codec} did not compress: {}",
                    bytes.len()
                );
            }
        }
    }
}
