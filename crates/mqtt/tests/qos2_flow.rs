//! QoS 2 both ways: PUBLISH, PUBREC, PUBREL, PUBCOMP from the publisher to the server and from
//! the server to the subscriber; a publisher's retry before PUBREL is not delivered twice.

mod common;

use common::{TestBroker, connect, pid, publish};
use mqtt_proto::v5::{self, Packet};
use mqtt_proto::{QoS, QosPid};
use strata_mqtt::MqttConfig;

#[tokio::test]
async fn qos2_is_delivered_exactly_once_through_both_handshakes() {
    let b = TestBroker::start(MqttConfig::default()).await;
    let (mut sub, _) = b.connect(connect("sub", true, 0)).await;
    sub.subscribe("q/#", QoS::Level2).await;
    let (mut publ, _) = b.connect(connect("pub", true, 0)).await;

    publ.send(publish("q/1", b"once", QosPid::Level2(pid(3)), false))
        .await;
    match publ.recv().await {
        Packet::Pubrec(r) => {
            assert_eq!(r.pid, pid(3));
            assert_eq!(r.reason_code, v5::PubrecReasonCode::Success);
        }
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // The same packet id again before PUBREL: acknowledged, not published again.
    publ.send(publish("q/1", b"once", QosPid::Level2(pid(3)), true))
        .await;
    assert!(matches!(publ.recv().await, Packet::Pubrec(r) if r.pid == pid(3)));
    publ.send(Packet::Pubrel(v5::Pubrel::new_success(pid(3))))
        .await;
    match publ.recv().await {
        Packet::Pubcomp(c) => {
            assert_eq!(c.pid, pid(3));
            assert_eq!(c.reason_code, v5::PubcompReasonCode::Success);
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // A PUBREL for a flow that is over is answered "not found".
    publ.send(Packet::Pubrel(v5::Pubrel::new_success(pid(3))))
        .await;
    assert!(matches!(
        publ.recv().await,
        Packet::Pubcomp(c) if c.reason_code == v5::PubcompReasonCode::PacketIdentifierNotFound
    ));

    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"once");
    sub.ack(&p, QoS::Level2).await;
    // Nothing else: the retry was not delivered.
    sub.assert_quiet().await;
}
