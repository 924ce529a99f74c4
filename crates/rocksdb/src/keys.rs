//! Key and value layouts. Every integer is big-endian so that keys sort numerically; the layout
//! is described in docs/format/rocksdb.md.

use strata_storage::{Bounds, Result, ShardId, ShardNo, StorageError, StorageSpec};

/// Column family holding every `shared`-model shard's batches.
pub const SHARED_CF: &str = "shared";
/// Column family holding batch summaries, ordered for timestamp lookups.
pub const INDEX_CF: &str = "index";
/// Column family holding shard descriptions and states.
pub const META_CF: &str = "meta";
/// Prefix of a `dedicated`-model topic's column family.
pub const TOPIC_CF_PREFIX: &str = "topic:";

/// Meta key of the next shard number.
pub const NEXT_NO_KEY: &[u8] = b"n";
const CONFIG_TAG: u8 = b'c';
const STATE_TAG: u8 = b's';

/// Data key: shard number, then the batch's base offset.
pub fn data_key(no: ShardNo, base: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&no.get().to_be_bytes());
    k[8..].copy_from_slice(&base.to_be_bytes());
    k
}

/// Maps a timestamp onto an unsigned value with the same order.
fn biased(ts: i64) -> u64 {
    (ts as u64) ^ (1 << 63)
}

/// Index key: shard number, the running maximum timestamp up to and including the batch, then
/// its base offset. The running maximum never decreases along a shard, so index keys sort by
/// offset and a seek by timestamp finds the first batch that can reach it.
pub fn index_key(no: ShardNo, ts_mark: i64, base: u64) -> [u8; 24] {
    let mut k = [0; 24];
    k[..8].copy_from_slice(&no.get().to_be_bytes());
    k[8..16].copy_from_slice(&biased(ts_mark).to_be_bytes());
    k[16..].copy_from_slice(&base.to_be_bytes());
    k
}

/// The first index key of a shard that can hold `ts`.
pub fn index_seek(no: ShardNo, ts: i64) -> [u8; 24] {
    index_key(no, ts, 0)
}

/// A shard's key range `[start, end)` in a keyspace prefixed by shard number.
pub fn shard_range(no: ShardNo) -> ([u8; 8], [u8; 8]) {
    (no.get().to_be_bytes(), no.next().get().to_be_bytes())
}

/// One batch's summary, the value of its index key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub ts_mark: i64,
    pub base: u64,
    pub last: u64,
    pub size: u32,
    pub max_ts: i64,
}

impl IndexEntry {
    pub fn key(&self, no: ShardNo) -> [u8; 24] {
        index_key(no, self.ts_mark, self.base)
    }

    pub fn value(&self) -> [u8; 20] {
        let mut v = [0; 20];
        v[..8].copy_from_slice(&self.last.to_be_bytes());
        v[8..12].copy_from_slice(&self.size.to_be_bytes());
        v[12..].copy_from_slice(&self.max_ts.to_be_bytes());
        v
    }

    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self> {
        if key.len() != 24 || value.len() != 20 {
            return Err(corrupt("index entry of the wrong length"));
        }
        let u = be64;
        Ok(IndexEntry {
            ts_mark: (u(&key[8..16]) ^ (1 << 63)) as i64,
            base: u(&key[16..24]),
            last: u(&value[..8]),
            size: be32(&value[8..12]),
            max_ts: u(&value[12..20]) as i64,
        })
    }
}

/// A shard's offsets and size, rewritten in the same write batch as every change to its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardState {
    pub log_start: u64,
    pub next_offset: u64,
    pub size: u64,
    /// Running maximum timestamp of the newest batch (`i64::MIN` when empty).
    pub ts_mark: i64,
}

impl ShardState {
    pub fn empty() -> Self {
        ShardState {
            ts_mark: i64::MIN,
            ..ShardState::default()
        }
    }

    pub fn bounds(&self) -> Bounds {
        Bounds {
            log_start: self.log_start,
            next_offset: self.next_offset,
            size_bytes: self.size,
        }
    }

    pub fn encode(&self) -> [u8; 32] {
        let mut v = [0; 32];
        v[..8].copy_from_slice(&self.log_start.to_be_bytes());
        v[8..16].copy_from_slice(&self.next_offset.to_be_bytes());
        v[16..24].copy_from_slice(&self.size.to_be_bytes());
        v[24..].copy_from_slice(&self.ts_mark.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Result<Self> {
        if v.len() != 32 {
            return Err(corrupt("shard state of the wrong length"));
        }
        let u = be64;
        Ok(ShardState {
            log_start: u(&v[..8]),
            next_offset: u(&v[8..16]),
            size: u(&v[16..24]),
            ts_mark: u(&v[24..32]) as i64,
        })
    }
}

/// Meta key of a shard's description.
pub fn config_key(no: ShardNo) -> [u8; 9] {
    let mut k = [CONFIG_TAG; 9];
    k[1..].copy_from_slice(&no.get().to_be_bytes());
    k
}

/// Meta key of a shard's state.
pub fn state_key(no: ShardNo) -> [u8; 9] {
    let mut k = [STATE_TAG; 9];
    k[1..].copy_from_slice(&no.get().to_be_bytes());
    k
}

/// Range of every config key.
pub fn config_range() -> ([u8; 1], [u8; 1]) {
    ([CONFIG_TAG], [CONFIG_TAG + 1])
}

/// A shard's description: its name on the first line, then its spec as text.
pub fn encode_config(id: &ShardId, spec: &StorageSpec) -> Vec<u8> {
    format!("{id}\n{}", spec.to_text()).into_bytes()
}

pub fn decode_config(v: &[u8]) -> Result<(ShardId, StorageSpec)> {
    let text = std::str::from_utf8(v).map_err(|_| corrupt("shard description is not UTF-8"))?;
    let (name, spec) = text
        .split_once('\n')
        .ok_or_else(|| corrupt("shard description without a name"))?;
    Ok((ShardId::parse(name)?, StorageSpec::from_text(spec)?))
}

/// Big-endian u64 of an 8-byte slice (lengths are checked by the callers).
fn be64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn corrupt(reason: &str) -> StorageError {
    StorageError::corruption("rocksdb meta", 0, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_time_mark_then_offset() {
        let a = index_key(ShardNo(3), -5, 10);
        let b = index_key(ShardNo(3), 7, 2);
        let c = index_key(ShardNo(3), 7, 9);
        let d = index_key(ShardNo(4), i64::MIN, 0);
        assert!(a < b && b < c && c < d);
        let e = IndexEntry {
            ts_mark: -5,
            base: 10,
            last: 19,
            size: 77,
            max_ts: -9,
        };
        assert_eq!(
            IndexEntry::decode(&e.key(ShardNo(3)), &e.value()).unwrap(),
            e
        );
    }

    #[test]
    fn config_round_trips() {
        let id = ShardId::new("a.b-c", 7).unwrap();
        let spec = StorageSpec::default();
        assert_eq!(
            decode_config(&encode_config(&id, &spec)).unwrap(),
            (id, spec)
        );
    }
}
