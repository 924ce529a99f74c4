//! The one error type of the crate.

use crate::compression::Compression;

/// Why a batch, a record or a builder call was rejected.
///
/// Every variant carries enough context to be logged as-is: a produce request that fails
/// validation should leave a line an operator can act on without a hex dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The buffer ends before the structure it should hold.
    #[error("batch too short: need {need} bytes, have {have}")]
    TooShort {
        /// Bytes required by the structure being read.
        need: usize,
        /// Bytes actually available.
        have: usize,
    },

    /// The magic byte is not 2: a legacy (v0/v1) message set or garbage.
    #[error("unsupported record batch magic {0} (only magic 2 is accepted)")]
    BadMagic(i8),

    /// The batch length field disagrees with the buffer that holds the batch.
    #[error("batch length field says {header} bytes in total, buffer holds {actual}")]
    LengthMismatch {
        /// Total length implied by the header (`LOG_OVERHEAD + batchLength`).
        header: usize,
        /// Length of the buffer.
        actual: usize,
    },

    /// The stored CRC-32C does not match the bytes from the attributes field to the end.
    #[error("checksum mismatch: header says {expected:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// CRC stored in the batch header.
        expected: u32,
        /// CRC computed over the batch.
        computed: u32,
    },

    /// The number of records disagrees with the header.
    #[error("record count mismatch: header says {header}, found {actual}")]
    RecordCountMismatch {
        /// The count the header claims (`recordsCount`).
        header: i64,
        /// The count found: either `lastOffsetDelta + 1` or the records actually present.
        actual: i64,
    },

    /// Compression bits 5, 6 or 7: no such codec.
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),

    /// The compressed payload could not be decompressed, or would exceed the size limit.
    #[error("{codec} decompression failed: {reason}")]
    Decompress {
        /// Codec named by the batch attributes.
        codec: Compression,
        /// What the decoder reported.
        reason: String,
    },

    /// The builder could not compress its records.
    #[error("{codec} compression failed: {reason}")]
    Compress {
        /// Codec the builder was asked to use.
        codec: Compression,
        /// What the encoder reported.
        reason: String,
    },

    /// A record inside the batch is structurally invalid.
    #[error("malformed record at index {index}: {reason}")]
    MalformedRecord {
        /// Zero-based position of the record within the batch.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A batch with no records: rejected on validation, and returned by an empty builder.
    #[error("batch has no records")]
    Empty,
}
