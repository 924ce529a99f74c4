//! Request decoding never panics: arbitrary bytes, and arbitrary bodies behind a valid API key
//! and version, are either decoded or refused with an error.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use strata_kafka::{SUPPORTED_APIS, decode_request};

/// A Metadata v1 request whose topics array claims i32::MAX entries in a 4-byte body: an
/// unbounded decoder would reserve ~150 GB and abort the process.
#[test]
fn a_huge_array_length_is_refused_not_fatal() {
    let mut frame = BytesMut::new();
    frame.put_i16(3);
    frame.put_i16(1);
    frame.put_i32(9);
    frame.put_i16(-1); // null client id
    frame.put_i32(i32::MAX);
    assert!(decode_request(frame.freeze()).is_err());
    // The same for a flexible version (compact array).
    let mut frame = BytesMut::new();
    frame.put_i16(3);
    frame.put_i16(9);
    frame.put_i32(9);
    frame.put_i16(-1);
    frame.put_u8(0); // header tags
    frame.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // compact length 2^31 - 1
    assert!(decode_request(frame.freeze()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_frames(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(Bytes::from(frame));
    }

    #[test]
    fn arbitrary_bodies_of_served_apis(
        pick in 0usize..1000,
        version_pick in any::<u16>(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let served = SUPPORTED_APIS[pick % SUPPORTED_APIS.len()];
        let (api, min, max) = (served.key, served.min, served.max);
        let version = min + (version_pick % (max - min + 1) as u16) as i16;
        let mut frame = BytesMut::new();
        frame.put_i16(api as i16);
        frame.put_i16(version);
        frame.put_i32(7);
        frame.put_slice(&body);
        let _ = decode_request(frame.freeze());
    }
}
