//! A broker over the file engine in a temporary directory, and an MQTT 5 client that speaks to
//! it over an in-memory pipe (`tokio::io::duplex`), one packet at a time.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqtt_proto::v5::{self, Packet};
use mqtt_proto::{Pid, QoS, QosPid, TopicFilter, TopicName};
use strata_broker::{Broker, BrokerConfig};
use strata_mqtt::{Auth, Mqtt, MqttConfig, packet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;

/// Longest wait for a packet that is expected.
pub const EXPECT: Duration = Duration::from_secs(10);

/// A running MQTT front end over a real broker.
pub struct TestBroker {
    pub mqtt: Mqtt,
    pub broker: Arc<Broker>,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start(config: MqttConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
        let mqtt = Mqtt::open(broker.clone(), config, Auth::open())
            .await
            .unwrap();
        TestBroker {
            mqtt,
            broker,
            shutdown: CancellationToken::new(),
            _dir: dir,
        }
    }

    /// A new connection, before CONNECT.
    pub fn open(&self) -> Client {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let mqtt = self.mqtt.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            mqtt.serve_connection(theirs, "test".into(), shutdown).await;
        });
        Client {
            io: ours,
            buf: BytesMut::new(),
        }
    }

    /// Connects and returns the client with its CONNACK, which must be a success.
    pub async fn connect(&self, connect: v5::Connect) -> (Client, v5::Connack) {
        let mut c = self.open();
        c.send(Packet::Connect(connect)).await;
        match c.recv().await {
            Packet::Connack(ack) => {
                assert_eq!(ack.reason_code, v5::ConnectReasonCode::Success);
                (c, ack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }
}

/// CONNECT of an MQTT 5 client.
pub fn connect(client_id: &str, clean_start: bool, session_expiry: u32) -> v5::Connect {
    let mut c = v5::Connect::new(Arc::from(client_id), 0);
    c.clean_start = clean_start;
    if session_expiry > 0 {
        c.properties.session_expiry_interval = Some(session_expiry);
    }
    c
}

pub fn pid(n: u16) -> Pid {
    Pid::try_from(n).unwrap()
}

/// PUBLISH, with DUP set if `dup` (a resend).
pub fn publish(topic: &str, payload: &[u8], qos_pid: QosPid, dup: bool) -> Packet {
    let mut p = v5::Publish::new(
        qos_pid,
        TopicName::try_from(topic).unwrap(),
        Bytes::copy_from_slice(payload),
    );
    p.dup = dup;
    Packet::Publish(p)
}

pub fn subscribe(n: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(v5::Subscribe::new(
        pid(n),
        vec![(
            TopicFilter::try_from(filter).unwrap(),
            v5::SubscriptionOptions::new(qos),
        )],
    ))
}

/// The next packet from `rd` (with `buf` holding what was read past the last one), or None at
/// end of stream.
pub async fn read_packet<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) -> Option<Packet> {
    loop {
        if let Some(len) = packet::frame_len(buf, usize::MAX).unwrap() {
            let frame = buf.split_to(len);
            return Some(Packet::decode(&frame).unwrap().expect("a whole packet"));
        }
        if rd.read_buf(buf).await.unwrap() == 0 {
            return None;
        }
    }
}

/// One end of a connection, speaking MQTT 5.
pub struct Client {
    pub io: DuplexStream,
    buf: BytesMut,
}

impl Client {
    pub async fn send(&mut self, p: Packet) {
        let bytes = p.encode().unwrap();
        self.io.write_all(bytes.as_ref()).await.unwrap();
    }

    /// The next packet; panics at end of stream or after [`EXPECT`].
    pub async fn recv(&mut self) -> Packet {
        match tokio::time::timeout(EXPECT, self.next()).await {
            Ok(Some(p)) => p,
            Ok(None) => panic!("connection closed while a packet was expected"),
            Err(_) => panic!("no packet within {EXPECT:?}"),
        }
    }

    /// The next packet, or None if the server closed the connection.
    pub async fn next(&mut self) -> Option<Packet> {
        read_packet(&mut self.io, &mut self.buf).await
    }

    /// The next packet if one comes within `wait`, None if none does; panics if the server
    /// closes the connection meanwhile.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Packet> {
        match tokio::time::timeout(wait, self.next()).await {
            Ok(Some(p)) => Some(p),
            Ok(None) => panic!("connection closed while waiting for a packet"),
            Err(_) => None,
        }
    }

    /// Sends PINGREQ and asserts that the next packet is its PINGRESP: nothing else was queued
    /// for this client ahead of it.
    pub async fn assert_quiet(&mut self) {
        self.send(Packet::Pingreq).await;
        match self.recv().await {
            Packet::Pingresp => {}
            other => panic!("expected nothing but PINGRESP, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 with packet id `n` and checks the PUBACK: that id, success.
    pub async fn publish_acked(&mut self, topic: &str, payload: &[u8], n: u16) {
        self.send(publish(topic, payload, QosPid::Level1(pid(n)), false))
            .await;
        match self.recv().await {
            Packet::Puback(a) => {
                assert_eq!(a.pid, pid(n));
                assert_eq!(a.reason_code, v5::PubackReasonCode::Success);
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// Acknowledges a delivery, which must have QoS `qos`: PUBACK for QoS 1; PUBREC, the
    /// server's PUBREL, PUBCOMP for QoS 2; nothing for QoS 0.
    pub async fn ack(&mut self, p: &v5::Publish, qos: QoS) {
        match (p.qos_pid, qos) {
            (QosPid::Level0, QoS::Level0) => {}
            (QosPid::Level1(id), QoS::Level1) => {
                self.send(Packet::Puback(v5::Puback::new_success(id))).await;
            }
            (QosPid::Level2(id), QoS::Level2) => {
                self.send(Packet::Pubrec(v5::Pubrec::new_success(id))).await;
                match self.recv().await {
                    Packet::Pubrel(r) => assert_eq!(r.pid, id),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(Packet::Pubcomp(v5::Pubcomp::new_success(id)))
                    .await;
            }
            (got, want) => panic!("expected a delivery at {want:?}, got {got:?}"),
        }
    }

    /// Subscribes and checks the grant.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(subscribe(1, filter, qos)).await;
        match self.recv().await {
            Packet::Suback(s) => assert_eq!(s.topics.len(), 1),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// The next PUBLISH, which must come.
    pub async fn recv_publish(&mut self) -> v5::Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}
