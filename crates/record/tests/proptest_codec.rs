//! Property tests: arbitrary records survive builder → validate → records() under every
//! codec, and arbitrary or corrupted input never panics any entry point.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use strata_record::{
    Batch, BatchBuilder, BatchHeader, Compression, HEADER_LEN, RecordError, TimestampType,
    split_batches,
};

#[derive(Debug, Clone)]
struct Input {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

fn input() -> impl Strategy<Value = Input> {
    (
        option::of(vec(any::<u8>(), 0..40)),
        // Repetitive values now and then, so compressed codecs see both kinds of input.
        prop_oneof![
            option::of(vec(any::<u8>(), 0..200)),
            (0usize..3000).prop_map(|n| Some(vec![b'z'; n])),
        ],
        vec(("\\PC{0,6}", option::of(vec(any::<u8>(), 0..12))), 0..4),
        any::<i64>(),
    )
        .prop_map(|(key, value, headers, timestamp)| Input {
            key,
            value,
            headers,
            timestamp,
        })
}

fn codec() -> impl Strategy<Value = Compression> {
    prop::sample::select(Compression::ALL.to_vec())
}

fn build(codec: Compression, inputs: &[Input]) -> Bytes {
    let mut b = BatchBuilder::new(codec).producer(5, 1, 0);
    for r in inputs {
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        b.push(r.key.as_deref(), r.value.as_deref(), &headers, r.timestamp);
    }
    b.build().unwrap()
}

fn fix_crc(v: &mut [u8]) {
    let crc = crc32c::crc32c(&v[21..]);
    v[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Drives every reader entry point over `bytes`; the only requirement is not panicking.
fn exercise(bytes: Bytes) {
    for part in split_batches(bytes.clone()).flatten() {
        let _ = Batch::validate(part);
    }
    let _ = BatchHeader::parse(&bytes);
    let _ = strata_record::peek_len(&bytes);
    let _ = strata_record::verify_crc(&bytes);
    if let Ok(batch) = Batch::validate(bytes) {
        // Small cap: garbage that happens to decompress must not take long either.
        if let Ok(records) = batch.records_with_limit(1 << 20) {
            for r in records {
                if r.is_err() {
                    break;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn records_round_trip(codec in codec(), inputs in vec(input(), 1..30)) {
        let bytes = build(codec, &inputs);
        let batch = Batch::validate(bytes).unwrap();
        prop_assert_eq!(batch.header().compression().unwrap(), codec);
        prop_assert_eq!(batch.record_count() as usize, inputs.len());
        let max = inputs.iter().map(|r| r.timestamp).max().unwrap();
        prop_assert_eq!(batch.max_timestamp(), max);

        let records: Vec<_> = batch.records().unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(records.len(), inputs.len());
        for (i, (got, want)) in records.iter().zip(&inputs).enumerate() {
            prop_assert_eq!(got.offset, i as i64);
            prop_assert_eq!(got.timestamp, want.timestamp);
            prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
            prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
            prop_assert_eq!(got.attributes, 0);
            prop_assert_eq!(got.headers.len(), want.headers.len());
            for (h, (k, v)) in got.headers.iter().zip(&want.headers) {
                prop_assert_eq!(&h.key[..], k.as_bytes());
                prop_assert_eq!(h.value.as_deref(), v.as_deref());
            }
        }
    }

    #[test]
    fn log_append_time_reads_max_timestamp(codec in codec(), inputs in vec(input(), 1..5)) {
        let mut b = BatchBuilder::new(codec).timestamp_type(TimestampType::LogAppendTime);
        for r in &inputs {
            b.push(r.key.as_deref(), None, &[], r.timestamp);
        }
        let batch = Batch::validate(b.build().unwrap()).unwrap();
        let max = inputs.iter().map(|r| r.timestamp).max().unwrap();
        for r in batch.records().unwrap() {
            prop_assert_eq!(r.unwrap().timestamp, max);
        }
    }

    #[test]
    fn split_recovers_concatenated_batches(codecs in vec(codec(), 1..5), inputs in vec(input(), 1..4)) {
        let batches: Vec<Bytes> = codecs.iter().map(|&c| build(c, &inputs)).collect();
        let whole = Bytes::from(batches.concat());
        let parts: Vec<Bytes> = split_batches(whole).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(parts, batches);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        exercise(Bytes::from(bytes));
    }

    /// Random bytes behind a header that passes every check but the records themselves:
    /// this is what reaches the record parser and the decompressors.
    #[test]
    fn arbitrary_records_section_never_panics(
        codec_id in 0u8..8,
        count in 1i32..50,
        body in vec(any::<u8>(), 0..400),
    ) {
        let h = BatchHeader {
            base_offset: 0,
            batch_length: (HEADER_LEN - 12 + body.len()) as i32,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: i16::from(codec_id),
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: count,
        };
        let mut v = h.encode().to_vec();
        v.extend(&body);
        fix_crc(&mut v);
        exercise(Bytes::from(v));
    }

    /// Valid batches with a few bytes overwritten and the CRC repaired: near-misses that
    /// random bytes would almost never produce.
    #[test]
    fn corrupted_valid_batches_never_panic(
        codec in codec(),
        inputs in vec(input(), 1..6),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut v = build(codec, &inputs).to_vec();
        for (at, byte) in edits {
            let i = HEADER_LEN + at.index(v.len() - HEADER_LEN);
            v[i] = byte;
        }
        fix_crc(&mut v);
        exercise(Bytes::from(v));
    }

    #[test]
    fn any_corruption_of_the_crc_region_is_caught(
        inputs in vec(input(), 1..4),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut v = build(Compression::None, &inputs).to_vec();
        let i = 21 + at.index(v.len() - 21);
        v[i] ^= flip;
        let err = Batch::validate(Bytes::from(v)).unwrap_err();
        prop_assert!(matches!(err, RecordError::ChecksumMismatch { .. }), "{err}");
    }
}
