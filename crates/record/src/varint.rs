//! Zigzag varints as Kafka writes them (protobuf `sint32`/`sint64` encoding).
//!
//! Decoding mirrors Kafka's `ByteUtils`: at most 5 bytes for a varint and 10 for a varlong,
//! and surplus high bits in the final byte are dropped rather than rejected, so anything the
//! Java client accepts is accepted here.

/// Why a varint could not be read.
pub(crate) type VarintError = &'static str;

const TRUNCATED: VarintError = "truncated varint";
const TOO_LONG: VarintError = "varint longer than its type allows";

/// Reads a zigzag varint (i32) at `*pos`, advancing `*pos` past it.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let raw = read_unsigned(buf, pos, 5)?;
    // Truncation to 32 bits is Kafka's behaviour for an over-wide fifth byte.
    let raw = raw as u32;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong (i64) at `*pos`, advancing `*pos` past it.
pub(crate) fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let raw = read_unsigned(buf, pos, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn read_unsigned(buf: &[u8], pos: &mut usize, max_bytes: usize) -> Result<u64, VarintError> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let Some(&b) = buf.get(*pos + i) else {
            return Err(TRUNCATED);
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err(TOO_LONG)
}

/// Appends `v` as a zigzag varint.
pub(crate) fn write_varint(out: &mut Vec<u8>, v: i32) {
    write_unsigned(out, u64::from(zigzag32(v)));
}

/// Appends `v` as a zigzag varlong.
pub(crate) fn write_varlong(out: &mut Vec<u8>, v: i64) {
    write_unsigned(out, zigzag64(v));
}

/// Encoded size of `v` as a zigzag varint.
pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Encoded size of `v` as a zigzag varlong.
pub(crate) fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn write_unsigned(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn unsigned_len(v: u64) -> usize {
    // One byte per started group of 7 significant bits; zero still takes a byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc32(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, v);
        out
    }

    fn enc64(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_varlong(&mut out, v);
        out
    }

    #[test]
    fn known_encodings() {
        // Values from the protobuf zigzag table and Kafka's ByteUtilsTest.
        assert_eq!(enc32(0), [0x00]);
        assert_eq!(enc32(-1), [0x01]);
        assert_eq!(enc32(1), [0x02]);
        assert_eq!(enc32(-2), [0x03]);
        assert_eq!(enc32(63), [0x7e]);
        assert_eq!(enc32(-64), [0x7f]);
        assert_eq!(enc32(64), [0x80, 0x01]);
        assert_eq!(enc32(i32::MAX), [0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc32(i32::MIN), [0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(enc64(i64::MIN).len(), 10);
        assert_eq!(enc64(i64::MAX), {
            let mut v = vec![0xfe; 1];
            v.extend([0xff; 8]);
            v.push(0x01);
            v
        });
    }

    #[test]
    fn round_trip_edges() {
        for v in [0, 1, -1, 63, -64, 64, -65, 8191, -8192, i32::MAX, i32::MIN] {
            let bytes = enc32(v);
            assert_eq!(bytes.len(), varint_len(v), "len of {v}");
            let mut pos = 0;
            assert_eq!(read_varint(&bytes, &mut pos), Ok(v));
            assert_eq!(pos, bytes.len());
        }
        for v in [
            0,
            1,
            -1,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
            -(1 << 62),
        ] {
            let bytes = enc64(v);
            assert_eq!(bytes.len(), varlong_len(v), "len of {v}");
            let mut pos = 0;
            assert_eq!(read_varlong(&bytes, &mut pos), Ok(v));
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn reads_at_offset_and_stops_after_value() {
        let buf = [0xaa, 0x80, 0x01, 0x05];
        let mut pos = 1;
        assert_eq!(read_varint(&buf, &mut pos), Ok(64));
        assert_eq!(pos, 3);
        assert_eq!(read_varint(&buf, &mut pos), Ok(-3));
        assert_eq!(pos, 4);
    }

    #[test]
    fn truncated_input_is_an_error_and_does_not_advance() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), Err(TRUNCATED));
        assert_eq!(read_varint(&[], &mut pos), Err(TRUNCATED));
        assert_eq!(read_varlong(&[0xff; 9], &mut pos), Err(TRUNCATED));
        assert_eq!(pos, 0);
    }

    #[test]
    fn overlong_input_is_rejected() {
        let mut pos = 0;
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut pos),
            Err(TOO_LONG)
        );
        assert_eq!(read_varlong(&[0x80; 11], &mut pos), Err(TOO_LONG));
    }

    #[test]
    fn surplus_bits_in_last_byte_are_dropped_like_kafka() {
        // 0x7f in the fifth byte sets bits 28..35; Kafka keeps only bits 28..31.
        let mut pos = 0;
        let v = read_varint(&[0x80, 0x80, 0x80, 0x80, 0x7f], &mut pos);
        assert_eq!(v, Ok(0x7800_0000));
    }

    #[test]
    fn non_canonical_padding_is_accepted() {
        // 0 encoded in two bytes: Kafka reads it, so must we.
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x00], &mut pos), Ok(0));
        assert_eq!(pos, 2);
    }
}
