//! Kafka request decoding: any frame is decoded or refused, never a panic or an abort.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_kafka::decode_request(bytes::Bytes::copy_from_slice(data));
});
