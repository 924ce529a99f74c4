//! Kafka RecordBatch v2 (magic 2): the unit of append, storage and transfer in Strata.
//!
//! Batches are stored exactly as producers send them. The append path
//! ([`split_batches`] → [`Batch::validate`] → [`Batch::rewritten_prefix`] or
//! [`Batch::into_stored`]) works on `Bytes` slices, allocates nothing per record and never
//! decompresses; only base offset and partition leader epoch are rewritten, and both sit
//! before the CRC-covered region. Reading records ([`Batch::records`]) and building batches
//! ([`BatchBuilder`]) are for the less hot paths: consumers inside Strata, protocol
//! translation, tests and benchmarks.
//!
//! Layout (big-endian):
//!
//! ```text
//! baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32
//! | attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64
//! | producerId i64 | producerEpoch i16 | baseSequence i32 | recordsCount i32 | records
//! ```
//!
//! The CRC is CRC-32C over `attributes..end`. When compressed, `records` is a single
//! compressed stream of all records.
//!
//! All input is treated as hostile: every length is bounded by the bytes actually present
//! before it is used, and decompression is capped at [`MAX_DECOMPRESSED_LEN`] by default.

mod batch;
mod builder;
mod compression;
mod error;
mod header;
mod records;
mod split;
mod varint;

pub use batch::Batch;
pub use builder::BatchBuilder;
pub use compression::{Compression, MAX_DECOMPRESSED_LEN, ParseCompressionError};
pub use error::RecordError;
pub use header::{
    BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, TimestampType, peek_len, verify_crc,
};
pub use records::{Record, RecordHeader, Records};
pub use split::{BatchSplit, split_batches};
