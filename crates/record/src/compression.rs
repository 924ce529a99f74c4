//! Compression codecs as Kafka uses them inside a RecordBatch.
//!
//! Only the bytes after the 61-byte header are compressed, as one stream holding every
//! record. Framing choices follow the Java client so that every Kafka client can read what
//! we write; decoding is lenient where clients in the wild disagree (see snappy below).

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use crate::error::RecordError;

/// Largest decompressed records section [`Batch::records`](crate::Batch::records) will
/// produce. Kafka sets no such limit, but without one a few kilobytes of crafted zstd could
/// demand gigabytes; 128 MiB is far above any batch a sane producer sends.
pub const MAX_DECOMPRESSED_LEN: usize = 128 << 20;

/// The codec named by bits 0–2 of the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records are stored as-is.
    None,
    /// A gzip stream (RFC 1952).
    Gzip,
    /// Snappy; xerial-framed when written here, raw or xerial-framed when read.
    Snappy,
    /// The LZ4 frame format with independent blocks.
    Lz4,
    /// A zstd frame.
    Zstd,
}

const CODEC_MASK: i16 = 0x07;

impl Compression {
    /// All codecs, in attribute-id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// Decodes the codec from batch attributes; ids 5–7 are [`RecordError::UnknownCompression`].
    pub fn from_attributes(attributes: i16) -> Result<Compression, RecordError> {
        let id = (attributes & CODEC_MASK) as u8;
        Compression::from_id(id).ok_or(RecordError::UnknownCompression(id))
    }

    /// The codec with Kafka id `id` (0 none … 4 zstd).
    pub fn from_id(id: u8) -> Option<Compression> {
        Compression::ALL.get(usize::from(id)).copied()
    }

    /// Kafka's numeric id of the codec.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The attribute bits that select this codec, to be OR-ed into the attributes field.
    pub fn attribute_bits(self) -> i16 {
        i16::from(self.id())
    }

    /// The name Kafka uses in `compression.type`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compression type {0:?} (expected none, gzip, snappy, lz4 or zstd)")]
pub struct ParseCompressionError(pub String);

impl FromStr for Compression {
    type Err = ParseCompressionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseCompressionError(s.to_owned()))
    }
}

// Java's snappy-java writes this 16-byte preamble (magic, version 1, compatible version 1)
// before length-prefixed raw snappy chunks of at most 32 KiB uncompressed each.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
const XERIAL_BLOCK: usize = 32 * 1024;

/// Compresses a records section with `codec` the way the Java producer does.
pub(crate) fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, RecordError> {
    let fail = |e: &dyn fmt::Display| RecordError::Compress {
        codec,
        reason: e.to_string(),
    };
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let out = Vec::with_capacity(data.len() / 2 + 64);
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            enc.write_all(data).map_err(|e| fail(&e))?;
            enc.finish().map_err(|e| fail(&e))
        }
        Compression::Snappy => snappy_xerial_compress(data).map_err(|e| fail(&e)),
        Compression::Lz4 => {
            // Kafka's Lz4BlockInputStream rejects linked blocks; 64 KiB is its default size.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let out = Vec::with_capacity(data.len() / 2 + 64);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            enc.write_all(data).map_err(|e| fail(&e))?;
            enc.finish().map_err(|e| fail(&e))
        }
        // Level 3 is Kafka's default compression.zstd.level.
        Compression::Zstd => zstd::bulk::compress(data, 3).map_err(|e| fail(&e)),
    }
}

fn snappy_xerial_compress(data: &[u8]) -> Result<Vec<u8>, snap::Error> {
    let blocks = data.len().div_ceil(XERIAL_BLOCK);
    let mut out = Vec::with_capacity(
        XERIAL_HEADER_LEN
            + blocks * 4
            + snap::raw::max_compress_len(data.len().min(XERIAL_BLOCK)) * blocks,
    );
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut enc = snap::raw::Encoder::new();
    for chunk in data.chunks(XERIAL_BLOCK) {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        out.resize(start + snap::raw::max_compress_len(chunk.len()), 0);
        let n = enc.compress(chunk, &mut out[start..])?;
        out.truncate(start + n);
        // A 32 KiB chunk compresses to well under 2 GiB, so the cast cannot truncate.
        out[len_at..start].copy_from_slice(&(n as u32).to_be_bytes());
    }
    Ok(out)
}

/// Decompresses a records section, refusing to produce more than `limit` bytes.
pub(crate) fn decompress(
    codec: Compression,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, RecordError> {
    let hint = data.len().saturating_mul(4);
    match codec {
        Compression::None => {
            if data.len() > limit {
                return Err(too_large(codec, limit));
            }
            Ok(data.to_vec())
        }
        // Multi-member, like java.util.zip.GZIPInputStream.
        Compression::Gzip => {
            read_bounded(flate2::read::MultiGzDecoder::new(data), codec, limit, hint)
        }
        Compression::Snappy => snappy_decompress(data, limit),
        Compression::Lz4 => {
            read_bounded(lz4_flex::frame::FrameDecoder::new(data), codec, limit, hint)
        }
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| {
                RecordError::Decompress {
                    codec,
                    reason: e.to_string(),
                }
            })?;
            read_bounded(dec, codec, limit, hint)
        }
    }
}

fn too_large(codec: Compression, limit: usize) -> RecordError {
    RecordError::Decompress {
        codec,
        reason: format!("decompressed size exceeds the {limit}-byte limit"),
    }
}

/// Reads `r` to the end without ever holding more than `limit + 1` bytes, so a small
/// decompression bomb fails fast instead of exhausting memory.
fn read_bounded(
    mut r: impl Read,
    codec: Compression,
    limit: usize,
    hint: usize,
) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(hint.min(limit));
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if filled > limit {
                return Err(too_large(codec, limit));
            }
            let grow = out.len().max(64 * 1024).min(limit + 1 - filled);
            out.reserve_exact(grow);
            out.resize(filled + grow, 0);
        }
        match r.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(RecordError::Decompress {
                    codec,
                    reason: e.to_string(),
                });
            }
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// librdkafka and sarama write raw snappy; the Java client and kafka-python write xerial
/// framing. A raw stream cannot start with the xerial magic (its first tag after the length
/// would be a copy with nothing to copy from), so sniffing the magic is unambiguous.
fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, RecordError> {
    let codec = Compression::Snappy;
    let fail = |reason: String| RecordError::Decompress { codec, reason };
    let mut dec = snap::raw::Decoder::new();
    if !data.starts_with(&XERIAL_MAGIC) {
        let n = snap::raw::decompress_len(data).map_err(|e| fail(e.to_string()))?;
        if n > limit {
            return Err(too_large(codec, limit));
        }
        return dec.decompress_vec(data).map_err(|e| fail(e.to_string()));
    }
    if data.len() < XERIAL_HEADER_LEN {
        return Err(fail("truncated xerial header".into()));
    }
    let mut out = Vec::new();
    let mut pos = XERIAL_HEADER_LEN;
    while pos < data.len() {
        let Some(len_bytes) = data.get(pos..pos + 4) else {
            return Err(fail("truncated xerial chunk length".into()));
        };
        let chunk_len =
            i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        pos += 4;
        let chunk = usize::try_from(chunk_len)
            .ok()
            .and_then(|n| data.get(pos..pos.checked_add(n)?))
            .ok_or_else(|| {
                fail(format!(
                    "xerial chunk length {chunk_len} exceeds the remaining input"
                ))
            })?;
        pos += chunk.len();
        let n = snap::raw::decompress_len(chunk).map_err(|e| fail(e.to_string()))?;
        let start = out.len();
        if n > limit - start {
            return Err(too_large(codec, limit));
        }
        out.resize(start + n, 0);
        let written = dec
            .decompress(chunk, &mut out[start..])
            .map_err(|e| fail(e.to_string()))?;
        out.truncate(start + written);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compressible but not trivially so: long runs broken by a slowly changing byte.
    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    #[test]
    fn names_and_ids_round_trip() {
        for c in Compression::ALL {
            assert_eq!(c.to_string().parse::<Compression>(), Ok(c));
            assert_eq!(c.name().to_uppercase().parse::<Compression>(), Ok(c));
            // Bits above the codec field belong to other flags and must not leak in.
            assert_eq!(
                Compression::from_attributes(c.attribute_bits() | 0x78),
                Ok(c)
            );
            assert_eq!(Compression::from_id(c.id()), Some(c));
        }
        assert_eq!(Compression::Zstd.attribute_bits(), 4);
        assert_eq!(
            "brotli".parse::<Compression>(),
            Err(ParseCompressionError("brotli".into()))
        );
    }

    #[test]
    fn codec_ids_five_to_seven_are_unknown() {
        for id in 5..=7 {
            assert_eq!(
                Compression::from_attributes(id),
                Err(RecordError::UnknownCompression(id as u8))
            );
        }
    }

    #[test]
    fn every_codec_round_trips_small_empty_and_multi_block_inputs() {
        // 200 KiB spans several xerial chunks and several LZ4 blocks.
        for len in [0, 1, 100, 200 * 1024] {
            let data = sample(len);
            for c in Compression::ALL {
                let packed = compress(c, &data).unwrap();
                let unpacked = decompress(c, &packed, MAX_DECOMPRESSED_LEN).unwrap();
                assert_eq!(unpacked, data, "{c} with {len} bytes");
            }
        }
    }

    #[test]
    fn snappy_writes_xerial_framing_and_reads_raw_too() {
        let data = sample(70 * 1024);
        let framed = compress(Compression::Snappy, &data).unwrap();
        assert_eq!(framed[..8], XERIAL_MAGIC);
        assert_eq!(framed[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            decompress(Compression::Snappy, &raw, usize::MAX).unwrap(),
            data
        );
    }

    #[test]
    fn lz4_frame_uses_independent_64k_blocks() {
        let packed = compress(Compression::Lz4, &sample(10)).unwrap();
        assert_eq!(packed[..4], [0x04, 0x22, 0x4d, 0x18]);
        let flg = packed[4];
        assert_eq!(flg >> 6, 1, "version");
        assert_ne!(flg & 0x20, 0, "block independence");
        assert_eq!(flg & 0x1c, 0, "no checksums or content size");
        assert_eq!((packed[5] >> 4) & 7, 4, "64 KiB blocks");
    }

    #[test]
    fn output_beyond_the_limit_is_refused() {
        let data = vec![0u8; 100_000];
        for c in Compression::ALL {
            let packed = compress(c, &data).unwrap();
            assert!(decompress(c, &packed, 100_000).is_ok(), "{c} at the limit");
            let err = decompress(c, &packed, 99_999).unwrap_err();
            assert!(
                matches!(&err, RecordError::Decompress { codec, reason } if *codec == c && reason.contains("limit")),
                "{c}: {err}"
            );
        }
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let data = sample(5000);
        for c in Compression::ALL.into_iter().skip(1) {
            let mut packed = compress(c, &data).unwrap();
            let keep = packed.len() / 2;
            packed.truncate(keep);
            let r = decompress(c, &packed, MAX_DECOMPRESSED_LEN);
            assert!(
                matches!(r, Err(RecordError::Decompress { .. })),
                "{c}: {r:?}"
            );
        }
    }

    #[test]
    fn xerial_chunk_length_is_bounds_checked() {
        let mut framed = compress(Compression::Snappy, &sample(100)).unwrap();
        framed[16..20].copy_from_slice(&i32::MAX.to_be_bytes());
        let err = decompress(Compression::Snappy, &framed, MAX_DECOMPRESSED_LEN).unwrap_err();
        assert!(
            err.to_string().contains("exceeds the remaining input"),
            "{err}"
        );
        framed[16..20].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(decompress(Compression::Snappy, &framed, MAX_DECOMPRESSED_LEN).is_err());
        assert!(decompress(Compression::Snappy, &framed[..12], MAX_DECOMPRESSED_LEN).is_err());
    }
}
