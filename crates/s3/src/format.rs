//! What the engine writes to the bucket: object keys, log objects and checkpoints.
//!
//! Everything under one prefix (`<prefix>/<model>/`):
//! - `log/<seq>`: the metadata log, one object per commit, created with a conditional write
//!   (`If-None-Match: *`) so that a second writer cannot replace one. In the shared model it
//!   also holds the batches of that commit; its index says which shard ranges are where.
//! - `data/<shard-no>/<seq>`: the dedicated model's per-shard object chains.
//! - `checkpoint/<seq>`: the whole state after log object `<seq>`, so that recovery reads one
//!   checkpoint and the log objects after it.
//!
//! A log object is `data ‖ index ‖ footer`; the index and checkpoints are zstd-compressed JSON
//! guarded by a CRC32C. The layout is documented in `docs/format/s3.md`.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use strata_storage::ShardNo;

/// Footer magic of a log object.
pub const LOG_MAGIC: &[u8; 8] = b"STRATA3L";
/// Header magic of a checkpoint.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"STRATA3C";
/// Format version written.
pub const VERSION: u32 = 1;
/// Footer length: magic, version, index length, index CRC32C, reserved.
pub const FOOTER_LEN: usize = 8 + 4 + 4 + 4 + 4;

/// One stored batch, as the index and checkpoints record it.
///
/// On the wire it is a JSON array of eight integers,
/// `[shard_no, base, last, max_ts, object_id, position, length, moved]`, where `moved` is 0,
/// or 1 + the number of the object a compaction moved the batch out of (its old copy is then
/// superseded). It is decoded into this struct once, here.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "[i64; 8]", into = "[i64; 8]")]
pub struct BatchRec {
    /// Shard number.
    pub no: ShardNo,
    /// Base offset.
    pub base: u64,
    /// Last offset.
    pub last: u64,
    /// Largest record timestamp in the batch.
    pub max_ts: i64,
    /// Engine-wide number of the object holding the bytes.
    pub object: u64,
    /// Byte position of the batch in that object.
    pub position: u64,
    /// Length of the batch in bytes.
    pub length: u32,
    /// Compaction: the object this batch was moved out of.
    pub moved_from: Option<u64>,
}

impl From<[i64; 8]> for BatchRec {
    fn from(r: [i64; 8]) -> Self {
        let [no, base, last, max_ts, object, position, length, moved] = r;
        BatchRec {
            no: ShardNo(no as u64),
            base: base as u64,
            last: last as u64,
            max_ts,
            object: object as u64,
            position: position as u64,
            length: length as u32,
            moved_from: (moved != 0).then(|| (moved - 1) as u64),
        }
    }
}

impl From<BatchRec> for [i64; 8] {
    fn from(b: BatchRec) -> Self {
        [
            b.no.get() as i64,
            b.base as i64,
            b.last as i64,
            b.max_ts,
            b.object as i64,
            b.position as i64,
            i64::from(b.length),
            b.moved_from.map_or(0, |o| o as i64 + 1),
        ]
    }
}

/// A data object a log entry refers to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRec {
    /// Engine-wide object number.
    pub id: u64,
    /// Key below the engine's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Log sequence number of the commit that wrote it.
    pub seq: u64,
    /// True for a log object (which recovery reads), false for a data-only object.
    pub log: bool,
}

/// A metadata change, applied after the batches of the same log object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A new shard.
    Create {
        /// Shard number, unique within the engine.
        #[serde(with = "shard_no")]
        no: ShardNo,
        /// `<topic>-<partition>`.
        name: String,
        /// The spec, as `StorageSpec::to_text`.
        spec: String,
    },
    /// A shard and its data are gone.
    Delete {
        /// Shard number.
        #[serde(with = "shard_no")]
        no: ShardNo,
    },
    /// New retention, segment or durability settings.
    Reconfigure {
        /// Shard number.
        #[serde(with = "shard_no")]
        no: ShardNo,
        /// The spec, as `StorageSpec::to_text`.
        spec: String,
    },
    /// The log start moved forward.
    Trim {
        /// Shard number.
        #[serde(with = "shard_no")]
        no: ShardNo,
        /// New first readable offset.
        log_start: u64,
    },
    /// Every batch at or after `next` is gone; the shard's epoch goes up by one.
    Truncate {
        /// Shard number.
        #[serde(with = "shard_no")]
        no: ShardNo,
        /// The new next offset.
        next: u64,
    },
}

/// The index of one log object.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LogIndex {
    /// Sequence number (also in the key).
    pub seq: u64,
    /// Objects written by this commit (in the shared model, the log object itself).
    pub objects: Vec<ObjectRec>,
    /// Batches stored by this commit, in order.
    pub batches: Vec<BatchRec>,
    /// Metadata changes, applied after the batches.
    pub ops: Vec<Op>,
}

/// A shard as a checkpoint records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRec {
    /// Shard number.
    #[serde(with = "shard_no")]
    pub no: ShardNo,
    /// `<topic>-<partition>`.
    pub name: String,
    /// The spec, as `StorageSpec::to_text`.
    pub spec: String,
    /// Number of truncations so far (write-ahead-log entries of older epochs are stale).
    pub epoch: u32,
    /// First readable offset.
    pub log_start: u64,
    /// Next offset.
    pub next: u64,
}

/// The whole state after log object `seq`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Checkpoint {
    /// The last log object this state includes.
    pub seq: u64,
    /// Next shard number to hand out.
    #[serde(with = "shard_no")]
    pub next_no: ShardNo,
    /// Next object number to hand out.
    pub next_object: u64,
    /// Every shard.
    pub shards: Vec<ShardRec>,
    /// Every object that still holds a live batch.
    pub objects: Vec<ObjectRec>,
    /// Every live batch (none moved).
    pub batches: Vec<BatchRec>,
}

/// Shard numbers are plain JSON numbers.
mod shard_no {
    use serde::{Deserialize, Deserializer, Serializer};
    use strata_storage::ShardNo;

    pub fn serialize<S: Serializer>(no: &ShardNo, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(no.get())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ShardNo, D::Error> {
        u64::deserialize(d).map(ShardNo)
    }
}

/// Key of log object `seq`.
pub fn log_key(seq: u64) -> String {
    format!("log/{seq:020}")
}

/// Key of checkpoint `seq`.
pub fn checkpoint_key(seq: u64) -> String {
    format!("checkpoint/{seq:020}")
}

/// Key of the dedicated model's object for shard `no` written by commit `seq`.
pub fn data_key(no: ShardNo, seq: u64) -> String {
    format!("data/{:010}/{seq:020}", no.get())
}

/// The sequence number in a `log/` or `checkpoint/` key's last part.
pub fn parse_seq(name: &str) -> Option<u64> {
    (name.len() == 20).then(|| name.parse().ok()).flatten()
}

fn compress<T: Serialize>(value: &T) -> Bytes {
    let json = serde_json::to_vec(value).expect("metadata serializes");
    Bytes::from(zstd::bulk::compress(&json, 3).expect("zstd compresses in memory"))
}

fn decompress<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let json = zstd::stream::decode_all(bytes).map_err(|e| format!("zstd: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("JSON: {e}"))
}

/// Appends `index` and the footer to `data`: a whole log object.
pub fn encode_log(mut data: BytesMut, index: &LogIndex) -> Bytes {
    let index = compress(index);
    data.reserve(index.len() + FOOTER_LEN);
    data.put_slice(&index);
    data.put_slice(LOG_MAGIC);
    data.put_u32_le(VERSION);
    data.put_u32_le(index.len() as u32);
    data.put_u32_le(crc32c::crc32c(&index));
    data.put_u32_le(0);
    data.freeze()
}

/// Reads a log object's footer (its last [`FOOTER_LEN`] bytes): the index length and CRC.
pub fn decode_footer(footer: &[u8]) -> Result<(usize, u32), String> {
    if footer.len() < FOOTER_LEN {
        return Err(format!(
            "object is {} bytes, shorter than a footer",
            footer.len()
        ));
    }
    let f = &footer[footer.len() - FOOTER_LEN..];
    if &f[..8] != LOG_MAGIC {
        return Err("footer magic is not STRATA3L".into());
    }
    let word = |i: usize| u32::from_le_bytes(f[i..i + 4].try_into().expect("4 bytes"));
    if word(8) != VERSION {
        return Err(format!("format version {} is not supported", word(8)));
    }
    Ok((word(12) as usize, word(16)))
}

/// Decodes a log object's index, checking its CRC.
pub fn decode_index(index: &[u8], crc: u32) -> Result<LogIndex, String> {
    if crc32c::crc32c(index) != crc {
        return Err("index checksum mismatch".into());
    }
    decompress(index)
}

/// A whole checkpoint object.
pub fn encode_checkpoint(cp: &Checkpoint) -> Bytes {
    let body = compress(cp);
    let mut out = BytesMut::with_capacity(body.len() + 20);
    out.put_slice(CHECKPOINT_MAGIC);
    out.put_u32_le(VERSION);
    out.put_u32_le(crc32c::crc32c(&body));
    out.put_u32_le(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// Decodes a checkpoint object, checking magic, version and CRC.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    if bytes.len() < 20 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err("not a checkpoint (magic STRATA3C missing)".into());
    }
    let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    if word(8) != VERSION {
        return Err(format!("format version {} is not supported", word(8)));
    }
    let body = &bytes[20..];
    if body.len() != word(16) as usize || crc32c::crc32c(body) != word(12) {
        return Err("checkpoint checksum or length mismatch".into());
    }
    decompress(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_object_round_trips() {
        let index = LogIndex {
            seq: 7,
            objects: vec![ObjectRec {
                id: 3,
                key: log_key(7),
                size: 100,
                seq: 7,
                log: true,
            }],
            batches: vec![BatchRec::from([1, 0, 9, 1234, 3, 0, 100, 0])],
            ops: vec![Op::Trim {
                no: ShardNo(1),
                log_start: 4,
            }],
        };
        let mut data = BytesMut::new();
        data.put_slice(&[7u8; 100]);
        let obj = encode_log(data, &index);
        let (len, crc) = decode_footer(&obj).unwrap();
        let start = obj.len() - FOOTER_LEN - len;
        assert_eq!(start, 100);
        let back = decode_index(&obj[start..obj.len() - FOOTER_LEN], crc).unwrap();
        assert_eq!(back.batches, index.batches);
        assert_eq!(back.ops, index.ops);
        let mut bad = obj.to_vec();
        bad[start + 2] ^= 1;
        assert!(decode_index(&bad[start..bad.len() - FOOTER_LEN], crc).is_err());
    }

    #[test]
    fn batch_records_keep_their_eight_number_form() {
        let moved = BatchRec {
            no: ShardNo(3),
            base: 100,
            last: 109,
            max_ts: -1,
            object: 12,
            position: 4096,
            length: 700,
            moved_from: Some(0),
        };
        let json = serde_json::to_string(&[
            moved,
            BatchRec {
                moved_from: None,
                ..moved
            },
        ])
        .unwrap();
        assert_eq!(
            json,
            "[[3,100,109,-1,12,4096,700,1],[3,100,109,-1,12,4096,700,0]]"
        );
        let back: Vec<BatchRec> = serde_json::from_str(&json).unwrap();
        assert_eq!(back[0], moved);
        assert_eq!(back[1].moved_from, None);
    }

    #[test]
    fn an_index_in_the_documented_form_decodes() {
        // The form docs/format/s3.md shows, as engines before the named BatchRec wrote it.
        let json = r#"{"seq": 42,
            "objects": [{"id": 7, "key": "log/00000000000000000042", "size": 300, "seq": 42, "log": true}],
            "batches": [[3, 1200, 1209, 1700000000000, 7, 0, 300, 0], [3, 1000, 1099, 5, 9, 40, 60, 6]],
            "ops": [{"op": "create", "no": 3, "name": "orders-0", "spec": "storage.engine=s3"},
                    {"op": "trim", "no": 3, "log_start": 1200}]}"#;
        let index: LogIndex = serde_json::from_str(json).unwrap();
        assert_eq!(index.batches[0].moved_from, None);
        assert_eq!(index.batches[0].max_ts, 1_700_000_000_000);
        assert_eq!(index.batches[1].moved_from, Some(5));
        assert_eq!(
            (index.batches[1].object, index.batches[1].position),
            (9, 40)
        );
        assert!(matches!(
            index.ops[1],
            Op::Trim {
                no: ShardNo(3),
                log_start: 1200
            }
        ));
        let again = serde_json::to_value(&index).unwrap();
        assert_eq!(
            again["batches"][1],
            serde_json::json!([3, 1000, 1099, 5, 9, 40, 60, 6])
        );
        assert_eq!(again["ops"][0]["no"], 3);
    }

    #[test]
    fn checkpoint_round_trips_and_detects_damage() {
        let cp = Checkpoint {
            seq: 9,
            next_no: ShardNo(2),
            ..Checkpoint::default()
        };
        let bytes = encode_checkpoint(&cp);
        assert_eq!(decode_checkpoint(&bytes).unwrap().seq, 9);
        let mut bad = bytes.to_vec();
        let n = bad.len();
        bad[n - 1] ^= 0x40;
        assert!(decode_checkpoint(&bad).is_err());
        assert_eq!(parse_seq("00000000000000000042"), Some(42));
        assert_eq!(parse_seq("42"), None);
    }
}
