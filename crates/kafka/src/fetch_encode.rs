//! The Fetch response, encoded by hand so that stored batches can be attached as file
//! regions (sent with `sendfile`) or shared bytes instead of being copied into the response
//! buffer. Everything else follows Kafka's schema for versions 4 to 16; a test checks the
//! output against the `kafka-protocol` crate's encoder byte for byte.

use bytes::{BufMut, Bytes, BytesMut};
use strata_storage::{Piece, ReadChunk};

use crate::write::{Frame, Part};

/// One partition's part of a Fetch response.
#[derive(Debug)]
pub struct FetchedPartition {
    /// Partition number.
    pub index: i32,
    /// Error code.
    pub error_code: i16,
    /// High watermark (next offset).
    pub high_watermark: i64,
    /// Log start offset.
    pub log_start_offset: i64,
    /// The batches.
    pub records: ReadChunk,
}

/// One topic's part of a Fetch response.
#[derive(Debug)]
pub struct FetchedTopic {
    /// Topic name (versions below 13).
    pub name: String,
    /// Topic id (versions 13 and above).
    pub id: [u8; 16],
    /// Its partitions.
    pub partitions: Vec<FetchedPartition>,
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

struct Builder {
    flexible: bool,
    parts: Vec<Part>,
    buf: BytesMut,
}

impl Builder {
    fn array_len(&mut self, n: usize) {
        if self.flexible {
            put_uvarint(&mut self.buf, n as u32 + 1);
        } else {
            self.buf.put_i32(n as i32);
        }
    }

    fn string(&mut self, s: &str) {
        if self.flexible {
            put_uvarint(&mut self.buf, s.len() as u32 + 1);
        } else {
            self.buf.put_i16(s.len() as i16);
        }
        self.buf.put_slice(s.as_bytes());
    }

    fn no_tags(&mut self) {
        if self.flexible {
            self.buf.put_u8(0);
        }
    }

    fn records(&mut self, chunk: &ReadChunk) {
        if self.flexible {
            put_uvarint(&mut self.buf, chunk.len as u32 + 1);
        } else {
            self.buf.put_i32(chunk.len as i32);
        }
        if chunk.len == 0 {
            return;
        }
        self.parts.push(Part::Bytes(self.buf.split().freeze()));
        for piece in &chunk.pieces {
            self.parts.push(match piece {
                Piece::Bytes(b) => Part::Bytes(b.clone()),
                Piece::File(r) => Part::File(r.clone()),
            });
        }
    }
}

/// Encodes a whole response frame: size, header (correlation id, tags if flexible) and body.
pub fn encode(
    version: i16,
    correlation_id: i32,
    throttle_time_ms: i32,
    error_code: i16,
    topics: &[FetchedTopic],
) -> Frame {
    let flexible = version >= 12;
    let mut b = Builder {
        flexible,
        parts: Vec::new(),
        buf: BytesMut::with_capacity(256),
    };
    b.buf.put_i32(0); // size, filled in below
    b.buf.put_i32(correlation_id);
    b.no_tags();
    b.buf.put_i32(throttle_time_ms);
    if version >= 7 {
        b.buf.put_i16(error_code);
        b.buf.put_i32(0); // session id: fetch sessions are not kept
    }
    b.array_len(topics.len());
    for t in topics {
        if version < 13 {
            b.string(&t.name);
        } else {
            b.buf.put_slice(&t.id);
        }
        b.array_len(t.partitions.len());
        for p in &t.partitions {
            b.buf.put_i32(p.index);
            b.buf.put_i16(p.error_code);
            b.buf.put_i64(p.high_watermark);
            b.buf.put_i64(p.high_watermark); // last stable offset: no transactions
            if version >= 5 {
                b.buf.put_i64(p.log_start_offset);
            }
            // Aborted transactions: null.
            if flexible {
                b.buf.put_u8(0);
            } else {
                b.buf.put_i32(-1);
            }
            if version >= 11 {
                b.buf.put_i32(-1); // preferred read replica
            }
            b.records(&p.records);
            b.no_tags();
        }
        b.no_tags();
    }
    b.no_tags();
    let rest = b.buf.split().freeze();
    if !rest.is_empty() {
        b.parts.push(Part::Bytes(rest));
    }
    let total: usize = b.parts.iter().map(Part::len).sum();
    // The first part starts with the size placeholder.
    if let Some(Part::Bytes(first)) = b.parts.first_mut() {
        let mut head = BytesMut::from(&first[..]);
        head[..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
        *first = head.freeze();
    }
    Frame { parts: b.parts }
}

/// The bytes of a frame, for tests and callers without sockets.
pub fn frame_bytes(frame: &Frame) -> std::io::Result<Bytes> {
    let mut out = BytesMut::with_capacity(frame.len());
    for p in &frame.parts {
        match p {
            Part::Bytes(b) => out.extend_from_slice(b),
            Part::File(r) => r.read_to(&mut out)?,
        }
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use strata_storage::Bounds;

    fn chunk(data: &[u8]) -> ReadChunk {
        let mut c = ReadChunk {
            bounds: Bounds::default(),
            ..ReadChunk::default()
        };
        if !data.is_empty() {
            c.push(Piece::Bytes(Bytes::copy_from_slice(&data[..3])));
            c.push(Piece::Bytes(Bytes::copy_from_slice(&data[3..])));
        }
        c
    }

    #[test]
    fn matches_the_kafka_protocol_encoder_in_every_version() {
        let data = b"0123456789abcdef".repeat(5);
        let id = *uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788).as_bytes();
        for version in 4..=16i16 {
            let ours = encode(
                version,
                77,
                0,
                0,
                &[FetchedTopic {
                    name: "orders".into(),
                    id,
                    partitions: vec![
                        FetchedPartition {
                            index: 0,
                            error_code: 0,
                            high_watermark: 42,
                            log_start_offset: 3,
                            records: chunk(&data),
                        },
                        FetchedPartition {
                            index: 1,
                            error_code: 1,
                            high_watermark: 7,
                            log_start_offset: 0,
                            records: chunk(b""),
                        },
                    ],
                }],
            );
            let ours = frame_bytes(&ours).unwrap();
            let partition = |index, error_code, hw, ls, records: Option<Bytes>| {
                PartitionData::default()
                    .with_partition_index(index)
                    .with_error_code(error_code)
                    .with_high_watermark(hw)
                    .with_last_stable_offset(hw)
                    .with_log_start_offset(ls)
                    .with_aborted_transactions(None)
                    .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
                    .with_records(records)
            };
            let resp = FetchResponse::default()
                .with_session_id(0)
                .with_responses(vec![
                    FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_static_str("orders")))
                        .with_topic_id(uuid::Uuid::from_bytes(id))
                        .with_partitions(vec![
                            partition(0, 0, 42, 3, Some(Bytes::copy_from_slice(&data))),
                            partition(1, 1, 7, 0, Some(Bytes::new())),
                        ]),
                ]);
            let mut theirs = BytesMut::new();
            theirs.put_i32(0);
            let header_version = if version >= 12 { 1 } else { 0 };
            ResponseHeader::default()
                .with_correlation_id(77)
                .encode(&mut theirs, header_version)
                .unwrap();
            resp.encode(&mut theirs, version).unwrap();
            let len = theirs.len() as i32 - 4;
            theirs[..4].copy_from_slice(&len.to_be_bytes());
            assert_eq!(ours, theirs.freeze(), "version {version}");
            let mut check = ours.clone();
            assert_eq!(check.get_i32() as usize, ours.len() - 4);
        }
    }
}
