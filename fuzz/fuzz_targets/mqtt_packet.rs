//! MQTT packet framing and decoding, for every protocol version: any bytes are decoded or
//! refused with a reason code, never a panic; whatever decodes also encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_mqtt::packet::{self, FirstPacket, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(Some(len)) = packet::frame_len(rest, 1 << 20) else {
        return;
    };
    let frame = &rest[..len];
    let mut out = bytes::BytesMut::new();
    match selector % 4 {
        0 => {
            if let Ok(FirstPacket::Connect(v, c)) = packet::decode_connect(frame) {
                packet::encode(v, &mqtt_proto::v5::Packet::Connect(*c), &mut out);
            }
        }
        n => {
            let version = [Version::V310, Version::V311, Version::V5][usize::from(n - 1)];
            if let Ok(p) = packet::decode(version, frame) {
                packet::encode(version, &p, &mut out);
                if let mqtt_proto::v5::Packet::Publish(p) = &p {
                    packet::encode_publish_v5(p, &[1, 268_435_455], &mut out);
                }
            }
        }
    }
});
