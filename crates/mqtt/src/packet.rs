//! Framing, version detection and the v3.1.1 ↔ v5.0 conversion.
//!
//! Packets are decoded by `mqtt-proto`. This module frames them (so that the maximum packet
//! size is enforced before a body is buffered), picks the protocol version from CONNECT, and
//! lifts MQTT 3.1/3.1.1 packets to their 5.0 form: one session engine then serves every
//! version, and packets go back down to 3.1.1 on the way out.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use mqtt_proto::v5::{self, DisconnectReasonCode};
use mqtt_proto::{Error as ProtoError, Protocol, QoS, v3};

/// The protocol version a client connected with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1 (`MQIsdp`, level 3).
    V310,
    /// MQTT 3.1.1 (level 4).
    V311,
    /// MQTT 5.0 (level 5).
    V5,
}

impl Version {
    /// Whether this is MQTT 5.0.
    pub fn is_v5(self) -> bool {
        self == Version::V5
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V310 => "3.1",
            Version::V311 => "3.1.1",
            Version::V5 => "5.0",
        })
    }
}

/// Why a client's input was refused: the reason code a v5 client is sent and a log text.
#[derive(Debug, Clone)]
pub struct BadInput {
    /// DISCONNECT reason code (v5), also the log's category.
    pub code: DisconnectReasonCode,
    /// What was wrong, for the log and the v5 reason string.
    pub reason: String,
}

impl BadInput {
    /// A malformed packet (0x81).
    pub fn malformed(reason: impl Into<String>) -> Self {
        BadInput {
            code: DisconnectReasonCode::MalformedPacket,
            reason: reason.into(),
        }
    }

    /// A protocol error (0x82).
    pub fn protocol(reason: impl Into<String>) -> Self {
        BadInput {
            code: DisconnectReasonCode::ProtocolError,
            reason: reason.into(),
        }
    }

    /// Any other reason code.
    pub fn new(code: DisconnectReasonCode, reason: impl Into<String>) -> Self {
        BadInput {
            code,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (reason code 0x{:02x})", self.reason, self.code as u8)
    }
}

fn from_proto(e: &ProtoError) -> BadInput {
    match e {
        ProtoError::InvalidTopicName(t) if t.contains('\0') => {
            BadInput::malformed("topic name contains U+0000")
        }
        ProtoError::InvalidTopicName(t) => BadInput::new(
            DisconnectReasonCode::TopicNameInvalid,
            format!("invalid topic name {t:?}"),
        ),
        ProtoError::InvalidTopicFilter(t) => BadInput::new(
            DisconnectReasonCode::TopicFilterInvalid,
            format!("invalid topic filter {t:?}"),
        ),
        ProtoError::ZeroPid => BadInput::protocol("packet identifier 0"),
        ProtoError::EmptySubscription => {
            BadInput::protocol("SUBSCRIBE or UNSUBSCRIBE without topics")
        }
        ProtoError::InvalidString => BadInput::malformed("a string is not valid UTF-8"),
        ProtoError::InvalidHeader => {
            BadInput::malformed("invalid fixed header (packet type or reserved flag bits)")
        }
        other => BadInput::malformed(other.to_string()),
    }
}

fn from_v5(e: &v5::ErrorV5) -> BadInput {
    match e {
        v5::ErrorV5::Common(c) => from_proto(c),
        v5::ErrorV5::InvalidPayloadFormat => BadInput::new(
            DisconnectReasonCode::PayloadFormatInvalid,
            "payload is marked UTF-8 but is not",
        ),
        v5::ErrorV5::DuplicatedProperty(_) | v5::ErrorV5::InvalidProperty(..) => {
            BadInput::protocol(e.to_string())
        }
        other => BadInput::malformed(other.to_string()),
    }
}

/// Length of the complete packet at the start of `buf`, `None` if more bytes are needed.
///
/// Refuses a remaining length that is not a valid variable byte integer, and a packet longer
/// than `max_packet` (checked from the fixed header, before the body arrives).
pub fn frame_len(buf: &[u8], max_packet: usize) -> Result<Option<usize>, BadInput> {
    let mut remaining: usize = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let total = 2 + i + remaining;
            if total > max_packet {
                return Err(BadInput::new(
                    DisconnectReasonCode::PacketTooLarge,
                    format!("packet of {total} bytes exceeds the maximum packet size {max_packet}"),
                ));
            }
            return Ok((buf.len() >= total).then_some(total));
        }
    }
    Err(BadInput::malformed(
        "remaining length is longer than 4 bytes",
    ))
}

/// What the first packet of a connection turned out to be.
#[derive(Debug)]
pub enum FirstPacket {
    /// A CONNECT, lifted to 5.0.
    Connect(Version, Box<v5::Connect>),
    /// A CONNECT naming a protocol level this server does not speak.
    UnsupportedVersion(String),
}

/// Decodes the first packet, which must be a CONNECT, and detects the protocol version.
pub fn decode_connect(frame: &[u8]) -> Result<FirstPacket, BadInput> {
    if frame[0] >> 4 != 1 {
        return Err(BadInput::protocol("the first packet is not CONNECT"));
    }
    match v5::Packet::decode(frame) {
        Ok(Some(v5::Packet::Connect(c))) => Ok(FirstPacket::Connect(Version::V5, Box::new(c))),
        Ok(_) => Err(BadInput::malformed("truncated CONNECT")),
        Err(v5::ErrorV5::Common(ProtoError::UnexpectedProtocol(_))) => {
            match v3::Packet::decode(frame) {
                Ok(Some(v3::Packet::Connect(c))) => {
                    let version = if c.protocol == Protocol::V310 {
                        Version::V310
                    } else {
                        Version::V311
                    };
                    Ok(FirstPacket::Connect(version, Box::new(connect_v3(c))))
                }
                Ok(_) => Err(BadInput::malformed("truncated CONNECT")),
                Err(e) => Err(from_proto(&e)),
            }
        }
        Err(v5::ErrorV5::Common(ProtoError::InvalidProtocol(name, level))) => Ok(
            FirstPacket::UnsupportedVersion(format!("protocol {name:?} level {level}")),
        ),
        Err(e) => Err(from_v5(&e)),
    }
}

/// Decodes one framed packet of a connection that speaks `version`.
pub fn decode(version: Version, frame: &[u8]) -> Result<v5::Packet, BadInput> {
    if version.is_v5() {
        return match v5::Packet::decode(frame) {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(BadInput::malformed(
                "packet shorter than its remaining length",
            )),
            Err(e) => Err(from_v5(&e)),
        };
    }
    match v3::Packet::decode(frame) {
        Ok(Some(p)) => lift(p),
        Ok(None) => Err(BadInput::malformed(
            "packet shorter than its remaining length",
        )),
        Err(e) => Err(from_proto(&e)),
    }
}

fn connect_v3(c: v3::Connect) -> v5::Connect {
    let mut out = v5::Connect::new(c.client_id, c.keep_alive);
    out.protocol = c.protocol;
    out.clean_start = c.clean_session;
    out.username = c.username;
    out.password = c.password;
    out.last_will = c.last_will.map(|w| {
        let mut will = v5::LastWill::new(w.qos, w.topic_name, w.message);
        will.retain = w.retain;
        will
    });
    out
}

fn lift(p: v3::Packet) -> Result<v5::Packet, BadInput> {
    Ok(match p {
        v3::Packet::Connect(_) => return Err(BadInput::protocol("second CONNECT")),
        v3::Packet::Publish(p) => {
            let mut out = v5::Publish::new(p.qos_pid, p.topic_name, p.payload);
            out.dup = p.dup;
            out.retain = p.retain;
            v5::Packet::Publish(out)
        }
        v3::Packet::Puback(pid) => v5::Packet::Puback(v5::Puback::new_success(pid)),
        v3::Packet::Pubrec(pid) => v5::Packet::Pubrec(v5::Pubrec::new_success(pid)),
        v3::Packet::Pubrel(pid) => v5::Packet::Pubrel(v5::Pubrel::new_success(pid)),
        v3::Packet::Pubcomp(pid) => v5::Packet::Pubcomp(v5::Pubcomp::new_success(pid)),
        v3::Packet::Subscribe(s) => v5::Packet::Subscribe(v5::Subscribe::new(
            s.pid,
            s.topics
                .into_iter()
                .map(|(f, qos)| (f, v5::SubscriptionOptions::new(qos)))
                .collect(),
        )),
        v3::Packet::Unsubscribe(u) => {
            v5::Packet::Unsubscribe(v5::Unsubscribe::new(u.pid, u.topics))
        }
        v3::Packet::Pingreq => v5::Packet::Pingreq,
        v3::Packet::Disconnect => v5::Packet::Disconnect(v5::Disconnect::new_normal()),
        v3::Packet::Connack(_)
        | v3::Packet::Suback(_)
        | v3::Packet::Unsuback(_)
        | v3::Packet::Pingresp => {
            return Err(BadInput::protocol("a packet only a server sends"));
        }
    })
}

/// Encodes `packet` for a client of `version` and appends it to `out`.
///
/// Packets with no 3.1.1 form (AUTH, a DISCONNECT sent by the server) are skipped for v3.
pub fn encode(version: Version, packet: &v5::Packet, out: &mut BytesMut) {
    if !version.is_v5()
        && let v5::Packet::Suback(s) = packet
    {
        encode_suback_v3(s, out);
        return;
    }
    let encoded = if version.is_v5() {
        packet.encode()
    } else {
        match lower(packet) {
            Some(p) => p.encode(),
            None => return,
        }
    };
    match encoded {
        Ok(bytes) => out.put_slice(bytes.as_ref()),
        // Only over-long fields fail, and every field was checked on the way in.
        Err(e) => tracing::error!(error = %e, packet = ?packet.get_type(), "cannot encode packet"),
    }
}

/// SUBACK for 3.1/3.1.1, written here because `mqtt-proto` 0.4 writes the failure code as 3
/// rather than 0x80.
fn encode_suback_v3(s: &v5::Suback, out: &mut BytesMut) {
    let remaining = 2 + s.topics.len();
    out.put_u8(0x90);
    let mut rl = Vec::with_capacity(4);
    write_varint(&mut rl, remaining);
    out.put_slice(&rl);
    out.put_u16(s.pid.value());
    for c in &s.topics {
        out.put_u8(match c {
            v5::SubscribeReasonCode::GrantedQoS0 => 0,
            v5::SubscribeReasonCode::GrantedQoS1 => 1,
            v5::SubscribeReasonCode::GrantedQoS2 => 2,
            _ => 0x80,
        });
    }
}

fn lower(p: &v5::Packet) -> Option<v3::Packet> {
    Some(match p {
        v5::Packet::Connack(c) => v3::Packet::Connack(v3::Connack::new(
            c.session_present,
            connack_code_v3(c.reason_code),
        )),
        v5::Packet::Publish(p) => v3::Packet::Publish(v3::Publish {
            dup: p.dup,
            retain: p.retain,
            qos_pid: p.qos_pid,
            topic_name: p.topic_name.clone(),
            payload: p.payload.clone(),
        }),
        v5::Packet::Puback(a) => v3::Packet::Puback(a.pid),
        v5::Packet::Pubrec(a) => v3::Packet::Pubrec(a.pid),
        v5::Packet::Pubrel(a) => v3::Packet::Pubrel(a.pid),
        v5::Packet::Pubcomp(a) => v3::Packet::Pubcomp(a.pid),
        v5::Packet::Unsuback(u) => v3::Packet::Unsuback(u.pid),
        v5::Packet::Pingresp => v3::Packet::Pingresp,
        _ => return None,
    })
}

/// The 3.1.1 CONNACK return code closest to a 5.0 reason code.
pub fn connack_code_v3(code: v5::ConnectReasonCode) -> v3::ConnectReturnCode {
    use v3::ConnectReturnCode as R;
    use v5::ConnectReasonCode as C;
    match code {
        C::Success => R::Accepted,
        C::UnsupportedProtocolVersion => R::UnacceptableProtocolVersion,
        C::ClientIdentifierNotValid => R::IdentifierRejected,
        C::BadUserNameOrPassword => R::BadUserNameOrPassword,
        C::NotAuthorized | C::Banned => R::NotAuthorized,
        _ => R::ServerUnavailable,
    }
}

/// Encodes a PUBLISH for a v5 client with several subscription identifiers.
///
/// `mqtt-proto` carries one identifier per PUBLISH; MQTT 5.0 allows one property per matching
/// subscription. The packet is encoded with none and the identifiers are spliced into its
/// property section, fixing both lengths.
pub fn encode_publish_v5(publish: &v5::Publish, sub_ids: &[u32], out: &mut BytesMut) {
    let packet = v5::Packet::Publish(publish.clone());
    let Ok(encoded) = packet.encode() else {
        tracing::error!("cannot encode PUBLISH");
        return;
    };
    let bytes = encoded.as_ref();
    if sub_ids.is_empty() {
        out.put_slice(bytes);
        return;
    }
    // Fixed header, then topic, packet id, property length, properties, payload.
    let (remaining, rl_len) = read_varint(&bytes[1..]).expect("encoded by mqtt-proto");
    let var_start = 1 + rl_len;
    let topic_len = u16::from_be_bytes([bytes[var_start], bytes[var_start + 1]]) as usize;
    let mut props_at = var_start + 2 + topic_len;
    if publish.qos_pid.qos() != QoS::Level0 {
        props_at += 2;
    }
    let (props_len, pl_len) = read_varint(&bytes[props_at..]).expect("encoded by mqtt-proto");
    let mut extra = Vec::with_capacity(sub_ids.len() * 5);
    for &id in sub_ids {
        extra.push(0x0b);
        write_varint(&mut extra, id as usize);
    }
    let new_props_len = props_len + extra.len();
    let mut new_pl = Vec::with_capacity(4);
    write_varint(&mut new_pl, new_props_len);
    let new_remaining = remaining - pl_len + new_pl.len() + extra.len();
    out.reserve(new_remaining + 5);
    out.put_u8(bytes[0]);
    let mut rl = Vec::with_capacity(4);
    write_varint(&mut rl, new_remaining);
    out.put_slice(&rl);
    out.put_slice(&bytes[var_start..props_at]);
    out.put_slice(&new_pl);
    out.put_slice(&extra);
    out.put_slice(&bytes[props_at + pl_len..]);
}

fn read_varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &b) in buf.iter().take(4).enumerate() {
        v |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn write_varint(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let mut b = (v & 0x7f) as u8;
        v >>= 7;
        if v > 0 {
            b |= 0x80;
        }
        out.push(b);
        if v == 0 {
            break;
        }
    }
}

/// A server DISCONNECT with a reason code and string (v5 only).
pub fn disconnect(code: DisconnectReasonCode, reason: &str) -> v5::Packet {
    let mut d = v5::Disconnect::new(code);
    if !reason.is_empty() {
        d.properties.reason_string = Some(Arc::from(reason));
    }
    v5::Packet::Disconnect(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_proto::{Pid, QosPid, TopicName};

    #[test]
    fn frame_len_needs_whole_packet_and_enforces_max() {
        assert_eq!(frame_len(&[0x30], 100).unwrap(), None);
        assert_eq!(frame_len(&[0x30, 2, 0], 100).unwrap(), None);
        assert_eq!(frame_len(&[0x30, 2, 0, 0], 100).unwrap(), Some(4));
        let e = frame_len(&[0x30, 0xff, 0x01], 100).unwrap_err();
        assert_eq!(e.code, DisconnectReasonCode::PacketTooLarge);
        let e = frame_len(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX).unwrap_err();
        assert_eq!(e.code, DisconnectReasonCode::MalformedPacket);
    }

    #[test]
    fn connect_versions_are_detected() {
        let c5 = v5::Packet::Connect(v5::Connect::new(Arc::from("c5"), 30));
        let frame = c5.encode().unwrap();
        match decode_connect(frame.as_ref()).unwrap() {
            FirstPacket::Connect(Version::V5, c) => assert_eq!(&*c.client_id, "c5"),
            other => panic!("{other:?}"),
        }
        let c3 = v3::Packet::Connect(v3::Connect::new(Arc::from("c3"), 30));
        let frame = c3.encode().unwrap();
        match decode_connect(frame.as_ref()).unwrap() {
            FirstPacket::Connect(Version::V311, c) => {
                assert_eq!(&*c.client_id, "c3");
                assert!(c.clean_start);
            }
            other => panic!("{other:?}"),
        }
        let mut bad = frame.as_ref().to_vec();
        bad[8] = 9; // protocol level
        assert!(matches!(
            decode_connect(&bad).unwrap(),
            FirstPacket::UnsupportedVersion(_)
        ));
    }

    #[test]
    fn reserved_bits_and_wildcard_topics_are_refused() {
        // SUBSCRIBE must carry flags 0b0010.
        let e = decode(Version::V311, &[0x80, 6, 0, 1, 0, 1, b'a', 0]).unwrap_err();
        assert_eq!(e.code, DisconnectReasonCode::MalformedPacket);
        // PUBLISH to "a/+".
        let e = decode(Version::V311, &[0x30, 5, 0, 3, b'a', b'/', b'+']).unwrap_err();
        assert_eq!(e.code, DisconnectReasonCode::TopicNameInvalid);
        // Invalid UTF-8 in the topic.
        let e = decode(Version::V5, &[0x30, 4, 0, 1, 0xff, 0]).unwrap_err();
        assert_eq!(e.code, DisconnectReasonCode::MalformedPacket);
    }

    #[test]
    fn v3_suback_failure_is_0x80() {
        let ack = v5::Suback::new(
            Pid::try_from(5).unwrap(),
            vec![
                v5::SubscribeReasonCode::GrantedQoS1,
                v5::SubscribeReasonCode::NotAuthorized,
            ],
        );
        let mut out = BytesMut::new();
        encode(Version::V311, &v5::Packet::Suback(ack), &mut out);
        assert_eq!(&out[..], &[0x90, 4, 0, 5, 1, 0x80]);
    }

    #[test]
    fn publish_carries_every_subscription_id() {
        let mut p = v5::Publish::new(
            QosPid::Level1(Pid::try_from(7).unwrap()),
            TopicName::try_from("a/b").unwrap(),
            Bytes::from_static(b"hello"),
        );
        p.properties.content_type = Some(Arc::from("text/plain"));
        let mut out = BytesMut::new();
        encode_publish_v5(&p, &[1, 300], &mut out);
        assert_eq!(frame_len(&out, 1 << 20).unwrap(), Some(out.len()));
        // Fixed header, topic, packet id, properties (both identifiers as variable byte
        // integers, 300 = 0xac 0x02, spliced in front of the content type), payload.
        let mut want = vec![0x32, 31, 0, 3, b'a', b'/', b'b', 0, 7, 18];
        want.extend_from_slice(&[0x0b, 1, 0x0b, 0xac, 0x02, 0x03, 0, 10]);
        want.extend_from_slice(b"text/plain");
        want.extend_from_slice(b"hello");
        assert_eq!(&out[..], &want[..]);
    }
}
