//! Reading the records inside a batch.
//!
//! One parser serves two callers: validation walks the records of an uncompressed batch
//! without allocating anything, and [`Records`] yields owned [`Record`]s whose keys and
//! values are `Bytes` slices of the batch (or of its decompressed body).

use std::ops::Range;

use bytes::Bytes;

use crate::error::RecordError;
use crate::varint::{read_varint, read_varlong};

/// One record, with offset and timestamp resolved against the batch header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset: batch base offset plus the record's offset delta.
    pub offset: i64,
    /// Batch base timestamp plus the record's delta, or the batch max timestamp when the batch
    /// uses `LogAppendTime` (Kafka's rule: the broker's time replaces every record's).
    pub timestamp: i64,
    /// The key; `None` when the encoded length is negative.
    pub key: Option<Bytes>,
    /// The value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Headers in wire order; duplicate keys are kept.
    pub headers: Vec<RecordHeader>,
    /// Per-record attributes byte; unused by Kafka so far, carried through as read.
    pub attributes: i8,
}

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header key; UTF-8 per Kafka, not enforced on read.
    pub key: Bytes,
    /// Header value; `None` when the encoded length is negative.
    pub value: Option<Bytes>,
}

/// Positions of one parsed record within the buffer it was read from.
struct RawRecord {
    attributes: i8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: usize,
    end: usize,
}

/// Parses the record starting at `pos`, calling `on_header` for each header. Every length is
/// checked against the record's own declared extent before it is used, so garbage can
/// neither read past the record nor make the caller allocate more than the input implies.
fn parse_record(
    buf: &[u8],
    pos: usize,
    index: usize,
    mut on_header: impl FnMut(Range<usize>, Option<Range<usize>>),
) -> Result<RawRecord, RecordError> {
    let bad = |reason| RecordError::MalformedRecord { index, reason };
    let mut p = pos;
    let len = read_varint(buf, &mut p).map_err(bad)?;
    let len = usize::try_from(len).map_err(|_| bad("negative record length"))?;
    let end = p
        .checked_add(len)
        .filter(|&e| e <= buf.len())
        .ok_or_else(|| bad("record length exceeds the batch"))?;
    let body = &buf[..end];

    let &attributes = body
        .get(p)
        .ok_or_else(|| bad("record ends before its attributes"))?;
    p += 1;
    let timestamp_delta = read_varlong(body, &mut p).map_err(bad)?;
    let offset_delta = read_varint(body, &mut p).map_err(bad)?;
    let key = read_bytes(body, &mut p).map_err(bad)?;
    let value = read_bytes(body, &mut p).map_err(bad)?;
    let headers = read_varint(body, &mut p).map_err(bad)?;
    let headers = usize::try_from(headers).map_err(|_| bad("negative header count"))?;
    // Each header takes at least two bytes (two one-byte lengths).
    if headers > (end - p) / 2 {
        return Err(bad("header count exceeds the record"));
    }
    for _ in 0..headers {
        let key = read_bytes(body, &mut p)
            .map_err(bad)?
            .ok_or_else(|| bad("negative header key length"))?;
        let value = read_bytes(body, &mut p).map_err(bad)?;
        on_header(key, value);
    }
    if p != end {
        return Err(bad("record length disagrees with its contents"));
    }
    Ok(RawRecord {
        attributes: attributes as i8,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        end,
    })
}

/// Reads a varint length and the bytes it covers; any negative length means null, as in
/// Kafka's `DefaultRecord.readFrom`.
fn read_bytes(buf: &[u8], p: &mut usize) -> Result<Option<Range<usize>>, &'static str> {
    let len = read_varint(buf, p)?;
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    let start = *p;
    if len > buf.len() - start {
        return Err("field length exceeds the record");
    }
    *p += len;
    Ok(Some(start..*p))
}

/// Counts the records in `buf`, which must hold whole records and nothing else.
/// `first_index` only labels errors. Allocates nothing.
pub(crate) fn count_records(buf: &[u8], first_index: usize) -> Result<usize, RecordError> {
    let mut pos = 0;
    let mut n = 0;
    while pos < buf.len() {
        pos = parse_record(buf, pos, first_index + n, |_, _| {})?.end;
        n += 1;
    }
    Ok(n)
}

/// Iterator over the records of a batch; see [`Batch::records`](crate::Batch::records).
///
/// Yields at most one error, after which it is exhausted. Besides malformed records it
/// reports a records section that holds fewer or more records than the header claims.
#[derive(Debug, Clone)]
pub struct Records {
    buf: Bytes,
    pos: usize,
    index: usize,
    count: usize,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    done: bool,
}

impl Records {
    /// `buf` is the (decompressed) records section; the rest comes from the batch header.
    pub(crate) fn new(
        buf: Bytes,
        count: usize,
        base_offset: i64,
        base_timestamp: i64,
        log_append_time: Option<i64>,
    ) -> Records {
        Records {
            buf,
            pos: 0,
            index: 0,
            count,
            base_offset,
            base_timestamp,
            log_append_time,
            done: false,
        }
    }

    fn fail(&mut self, e: RecordError) -> Option<Result<Record, RecordError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl Iterator for Records {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let header_count = self.count as i64;
        if self.index == self.count {
            self.done = true;
            if self.pos == self.buf.len() {
                return None;
            }
            let extra = match count_records(&self.buf[self.pos..], self.index) {
                Ok(extra) => extra,
                Err(e) => return self.fail(e),
            };
            return self.fail(RecordError::RecordCountMismatch {
                header: header_count,
                actual: header_count + extra as i64,
            });
        }
        if self.pos == self.buf.len() {
            let actual = self.index as i64;
            return self.fail(RecordError::RecordCountMismatch {
                header: header_count,
                actual,
            });
        }
        let mut headers = Vec::new();
        let raw = match parse_record(&self.buf, self.pos, self.index, |k, v| headers.push((k, v))) {
            Ok(raw) => raw,
            Err(e) => return self.fail(e),
        };
        debug_assert_eq!(headers.len(), raw.headers);
        let slice = |r: Range<usize>| self.buf.slice(r);
        let record = Record {
            offset: self.base_offset.wrapping_add(i64::from(raw.offset_delta)),
            timestamp: self
                .log_append_time
                .unwrap_or(self.base_timestamp.wrapping_add(raw.timestamp_delta)),
            key: raw.key.map(slice),
            value: raw.value.map(slice),
            headers: headers
                .into_iter()
                .map(|(k, v)| RecordHeader {
                    key: slice(k),
                    value: v.map(slice),
                })
                .collect(),
            attributes: raw.attributes,
        };
        self.pos = raw.end;
        self.index += 1;
        Some(Ok(record))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            // One more than the remaining records: the trailing error slot.
            (0, Some(self.count - self.index + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::varint::{write_varint, write_varlong};

    /// Hand-encodes one record so the tests do not depend on the builder.
    fn encode(
        ts_delta: i64,
        off_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
    ) -> Vec<u8> {
        fn bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
            match b {
                Some(b) => {
                    write_varint(out, b.len() as i32);
                    out.extend_from_slice(b);
                }
                None => write_varint(out, -1),
            }
        }
        let mut body = vec![0u8];
        write_varlong(&mut body, ts_delta);
        write_varint(&mut body, off_delta);
        bytes(&mut body, key);
        bytes(&mut body, value);
        write_varint(&mut body, headers.len() as i32);
        for (k, v) in headers {
            bytes(&mut body, Some(k));
            bytes(&mut body, *v);
        }
        let mut out = Vec::new();
        write_varint(&mut out, body.len() as i32);
        out.extend(body);
        out
    }

    fn records(buf: Vec<u8>, count: usize) -> Records {
        Records::new(Bytes::from(buf), count, 1000, 50, None)
    }

    #[test]
    fn decodes_fields_and_resolves_offsets_and_timestamps() {
        let mut buf = encode(
            0,
            0,
            Some(b"k"),
            Some(b"v"),
            &[(b"h1", Some(b"x")), (b"h2", None)],
        );
        buf.extend(encode(-10, 1, None, None, &[]));
        let got: Vec<_> = records(buf, 2).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].offset, 1000);
        assert_eq!(got[0].timestamp, 50);
        assert_eq!(got[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(got[0].value.as_deref(), Some(&b"v"[..]));
        assert_eq!(got[0].headers.len(), 2);
        assert_eq!(got[0].headers[0].key, &b"h1"[..]);
        assert_eq!(got[0].headers[1].value, None);
        assert_eq!(got[1].offset, 1001);
        assert_eq!(got[1].timestamp, 40);
        assert_eq!((got[1].key.clone(), got[1].value.clone()), (None, None));
    }

    #[test]
    fn log_append_time_replaces_record_timestamps() {
        let buf = encode(123, 0, None, Some(b""), &[]);
        let r = Records::new(Bytes::from(buf), 1, 0, 50, Some(999))
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(r.timestamp, 999);
        assert_eq!(r.value.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn keys_are_slices_of_the_buffer_not_copies() {
        let buf = Bytes::from(encode(0, 0, Some(b"key"), None, &[]));
        let range = buf.as_ptr_range();
        let r = Records::new(buf.clone(), 1, 0, 0, None)
            .next()
            .unwrap()
            .unwrap();
        assert!(range.contains(&r.key.unwrap().as_ptr()));
    }

    #[test]
    fn fewer_or_more_records_than_claimed() {
        let one = encode(0, 0, None, None, &[]);
        let mut it = records(one.clone(), 2);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(
            it.next().unwrap(),
            Err(RecordError::RecordCountMismatch {
                header: 2,
                actual: 1
            })
        );
        assert!(it.next().is_none());

        let three = [one.clone(), one.clone(), one].concat();
        let results: Vec<_> = records(three, 1).collect();
        assert_eq!(results.len(), 2);
        assert_eq!(
            results[1],
            Err(RecordError::RecordCountMismatch {
                header: 1,
                actual: 3
            })
        );
    }

    #[test]
    fn malformed_records_are_reported_with_their_index() {
        let good = encode(0, 0, Some(b"abc"), None, &[]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x01], "negative record length"),
            (vec![0x7e], "record length exceeds the batch"),
            (
                {
                    let mut b = good.clone();
                    b[0] += 2;
                    b.extend([0, 0]);
                    b
                },
                "record length disagrees with its contents",
            ),
            (
                {
                    let mut b = good.clone();
                    b[0] = 8;
                    b
                },
                "field length exceeds the record",
            ),
            (vec![0x00], "record ends before its attributes"),
        ];
        for (bad, reason) in cases {
            let buf = [good.clone(), bad].concat();
            let results: Vec<_> = records(buf, 2).collect();
            assert_eq!(
                results.last().unwrap(),
                &Err(RecordError::MalformedRecord { index: 1, reason }),
                "{reason}"
            );
        }
    }

    #[test]
    fn header_count_is_bounded_before_allocating() {
        // A record claiming a billion headers in six bytes must fail without reserving memory.
        let mut body = vec![0u8, 0, 0, 1, 1];
        write_varint(&mut body, 1_000_000_000);
        let mut buf = Vec::new();
        write_varint(&mut buf, body.len() as i32);
        buf.extend(body);
        assert_eq!(
            records(buf, 1).next().unwrap(),
            Err(RecordError::MalformedRecord {
                index: 0,
                reason: "header count exceeds the record"
            })
        );
    }

    #[test]
    fn null_header_key_is_rejected() {
        let mut body = vec![0u8, 0, 0, 1, 1, 2];
        body.extend([1, 1]);
        let mut buf = Vec::new();
        write_varint(&mut buf, body.len() as i32);
        buf.extend(body);
        assert_eq!(
            records(buf, 1).next().unwrap(),
            Err(RecordError::MalformedRecord {
                index: 0,
                reason: "negative header key length"
            })
        );
    }

    #[test]
    fn count_records_walks_without_decoding() {
        let r = encode(5, 0, Some(b"a"), Some(b"b"), &[(b"k", None)]);
        assert_eq!(count_records(&[], 0), Ok(0));
        assert_eq!(
            count_records(&[r.clone(), r.clone(), r.clone()].concat(), 0),
            Ok(3)
        );
        let mut truncated = [r.clone(), r].concat();
        truncated.pop();
        assert!(matches!(
            count_records(&truncated, 7),
            Err(RecordError::MalformedRecord { index: 8, .. })
        ));
    }
}
