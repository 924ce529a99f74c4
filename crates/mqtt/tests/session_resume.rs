//! A persistent session outlives its connection: QoS 1 messages published while it is offline
//! are queued durably and delivered when it reconnects without clean start; a clean start
//! drops them.

mod common;

use common::{TestBroker, connect, publish};
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
    publ.publish_acked("news/a", b"m1", 1).await;
    publ.publish_acked("news/a", b"m2", 2).await;
    // QoS 0 is not queued for an offline session.
    publ.send(publish("news/a", b"lost", QosPid::Level0, false))
        .await;

    let (mut sub, ack) = b.connect(connect("keeper", false, 300)).await;
    assert!(ack.session_present);
    for body in [b"m1", b"m2"] {
        let p = sub.recv_publish().await;
        assert_eq!(&p.payload[..], body);
        sub.ack(&p, QoS::Level1).await;
    }
    sub.assert_quiet().await;
    drop(sub);

    // Clean start: the session and its subscription are gone.
    let (mut fresh, ack) = b.connect(connect("keeper", true, 300)).await;
    assert!(!ack.session_present);
    publ.publish_acked("news/a", b"m3", 9).await;
    fresh.assert_quiet().await;
}
