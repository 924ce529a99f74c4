//! QoS 1 end to end: the publisher's PUBACK, the subscriber's delivery with a packet id, and,
//! across a session resume, no redelivery of what the subscriber acknowledged and a DUP
//! redelivery of what it did not.

mod common;

use common::{Client, TestBroker, connect};
use mqtt_proto::v5::{self, Packet};
use mqtt_proto::{QoS, QosPid};
use strata_mqtt::MqttConfig;

/// A persistent subscriber to `a/+` and a publisher that has published `one` to `a/b`, with
/// the subscriber's delivery of it.
async fn delivered(b: &TestBroker) -> (Client, v5::Publish) {
    let (mut sub, _) = b.connect(connect("sub", true, 300)).await;
    sub.subscribe("a/+", QoS::Level1).await;
    let (mut publ, _) = b.connect(connect("pub", true, 0)).await;
    publ.publish_acked("a/b", b"one", 7).await;

    let p = sub.recv_publish().await;
    assert_eq!(&*p.topic_name, "a/b");
    assert_eq!(&p.payload[..], b"one");
    assert!(matches!(p.qos_pid, QosPid::Level1(_)), "{:?}", p.qos_pid);
    assert!(!p.dup);
    (sub, p)
}

/// Ends `sub`'s connection cleanly and resumes its session.
async fn resume(b: &TestBroker, mut sub: Client) -> Client {
    sub.send(Packet::Disconnect(v5::Disconnect::new(
        v5::DisconnectReasonCode::NormalDisconnect,
    )))
    .await;
    assert!(sub.next().await.is_none());
    let (sub, ack) = b.connect(connect("sub", false, 300)).await;
    assert!(ack.session_present);
    sub
}

#[tokio::test]
async fn acknowledged_delivery_is_not_redelivered_on_resume() {
    let b = TestBroker::start(MqttConfig::default()).await;
    let (mut sub, p) = delivered(&b).await;
    sub.ack(&p, QoS::Level1).await;
    // The PUBACK is handled before the PINGREQ behind it, so the session knows of it.
    sub.assert_quiet().await;
    let mut sub = resume(&b, sub).await;
    sub.assert_quiet().await;
}

#[tokio::test]
async fn unacknowledged_delivery_is_redelivered_with_dup_on_resume() {
    let b = TestBroker::start(MqttConfig::default()).await;
    let (sub, p) = delivered(&b).await;
    let mut sub = resume(&b, sub).await;
    let again = sub.recv_publish().await;
    assert_eq!(&again.payload[..], b"one");
    assert_eq!(again.qos_pid, p.qos_pid, "resent with its packet id");
    assert!(again.dup, "resent with DUP");
    sub.ack(&again, QoS::Level1).await;
    sub.assert_quiet().await;
}
