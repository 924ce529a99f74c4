//! Record values: a pool of distinct pseudo-random values built before timing, and the
//! send-time stamp that end-to-end runs carry in a value's first 8 bytes.
//!
//! The pool is larger than any batch, so that no batch repeats a value: with compression on,
//! the client's batches are then as incompressible as the engine reference's, whose records are
//! all distinct too.

/// Bytes of distinct values in the pool: more than a batch can hold (the default `batch.size`
/// is about 1 MB, librdkafka's largest 2 GB in theory but the node refuses batches above
/// `max.message.bytes`, 1 MiB by default).
const POOL_BYTES: usize = 8 << 20;
/// A stamp no real send time has: it marks warm-up messages.
pub const WARMUP_STAMP: u64 = u64::MAX;
/// Bytes of the stamp at the start of a value.
pub const STAMP_LEN: usize = 8;

/// Values of one length, handed out in turn.
#[derive(Debug, Clone)]
pub struct Values {
    /// `count` values of `len` bytes, back to back.
    pool: Vec<u8>,
    len: usize,
    count: usize,
    scratch: Vec<u8>,
    warm: Vec<u8>,
    next: usize,
}

impl Values {
    /// A pool of `len`-byte values.
    pub fn new(len: usize) -> Values {
        let count = (POOL_BYTES / len.max(1)).max(16);
        let mut pool = vec![0u8; count * len];
        fill_pseudo_random(&mut pool, &mut 0x9E37_79B9_7F4A_7C15_u64);
        let mut warm = pool[..len].to_vec();
        stamp(&mut warm, WARMUP_STAMP);
        Values {
            scratch: warm.clone(),
            pool,
            len,
            count,
            warm,
            next: 0,
        }
    }

    fn value(&self, i: usize) -> &[u8] {
        &self.pool[i * self.len..(i + 1) * self.len]
    }

    /// The next value; with `at`, a copy of it stamped with that send time.
    pub fn next(&mut self, at: Option<u64>) -> &[u8] {
        let i = self.next;
        self.next = (i + 1) % self.count;
        match at {
            None => self.value(i),
            Some(t) => {
                self.scratch
                    .copy_from_slice(&self.pool[i * self.len..(i + 1) * self.len]);
                stamp(&mut self.scratch, t);
                &self.scratch
            }
        }
    }

    /// A value marked as warm-up.
    pub fn warmup(&self) -> &[u8] {
        &self.warm
    }
}

/// Writes `t` little-endian into the first bytes of `value` (as many as fit).
fn stamp(value: &mut [u8], t: u64) {
    let n = value.len().min(STAMP_LEN);
    value[..n].copy_from_slice(&t.to_le_bytes()[..n]);
}

/// The send time a value carries, or `None` for a warm-up value or one too short to carry it.
pub fn stamp_of(value: &[u8]) -> Option<u64> {
    let bytes: [u8; STAMP_LEN] = value.get(..STAMP_LEN)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes)).filter(|t| *t != WARMUP_STAMP)
}

/// True for a value marked as warm-up.
pub fn is_warmup(value: &[u8]) -> bool {
    value.len() >= STAMP_LEN && stamp_of(value).is_none()
}

/// xorshift64: incompressible-looking bytes without a dependency or a per-byte call.
pub fn fill_pseudo_random(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_warmup_is_marked() {
        let mut v = Values::new(100);
        let a = v.next(None).to_vec();
        assert_eq!(a.len(), 100);
        assert_ne!(a, v.next(None), "consecutive values differ");
        let s = v.next(Some(123_456_789)).to_vec();
        assert_eq!(stamp_of(&s), Some(123_456_789));
        assert_eq!(s[8..], v.value(2)[8..], "only the stamp is overwritten");
        assert!(v.count * 100 > 4 << 20, "the pool outlasts any batch");
        assert!(is_warmup(v.warmup()));
        assert!(!is_warmup(&s));
        assert_eq!(stamp_of(&s[..7]), None);
    }
}
