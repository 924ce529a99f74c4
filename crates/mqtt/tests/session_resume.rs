//! A persistent session outlives its connection: QoS 1 messages published while it is offline
//! are queued durably and delivered when it reconnects without clean start; a clean start
//! drops them.

mod common;

use std::time::Duration;

use common::{TestBroker, connect, pid, publish};
use mqtt_proto::v5::Packet;
use mqtt_proto::{QoS, QosPid};
use strata_mqtt::MqttConfig;

#[tokio::test]
async fn offline_messages_are_delivered_on_resume() {
    let b = TestBroker::start(MqttConfig::default()).await;
    let (mut sub, ack) = b.connect(connect("keeper", true, 300)).await;
    assert!(!ack.session_present);
    sub.subscribe("news/#", QoS::Level1).await;
    sub.send(Packet::Disconnect(mqtt_proto::v5::Disconnect::new(
        mqtt_proto::v5::DisconnectReasonCode::NormalDisconnect,
    )))
    .await;
    assert!(sub.next().await.is_none());

    let (mut publ, _) = b.connect(connect("pub", true, 0)).await;
    for (i, body) in [b"m1", b"m2"].iter().enumerate() {
        publ.send(publish("news/a", *body, QosPid::Level1(pid(i as u16 + 1))))
            .await;
        assert!(matches!(publ.recv().await, Packet::Puback(_)));
    }
    // QoS 0 is not queued for an offline session.
    publ.send(publish("news/a", b"lost", QosPid::Level0)).await;

    let (mut sub, ack) = b.connect(connect("keeper", false, 300)).await;
    assert!(ack.session_present);
    for body in [b"m1", b"m2"] {
        let p = sub.recv_publish().await;
        assert_eq!(&p.payload[..], body);
        let QosPid::Level1(id) = p.qos_pid else {
            panic!("expected QoS 1, got {:?}", p.qos_pid);
        };
        sub.send(Packet::Puback(mqtt_proto::v5::Puback::new_success(id)))
            .await;
    }
    assert!(sub.recv_within(Duration::from_millis(300)).await.is_none());
    drop(sub);

    // Clean start: the session and its subscription are gone.
    let (mut fresh, ack) = b.connect(connect("keeper", true, 300)).await;
    assert!(!ack.session_present);
    publ.send(publish("news/a", b"m3", QosPid::Level1(pid(9))))
        .await;
    assert!(matches!(publ.recv().await, Packet::Puback(_)));
    assert!(
        fresh
            .recv_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}
