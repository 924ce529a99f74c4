//! A second connection with the same client id takes the session over: the first is sent
//! DISCONNECT 0x8E and closed after a linger that the second does not wait for, the second is
//! connected with the session's subscriptions.

mod common;

use common::{TestBroker, connect};
use mqtt_proto::QoS;
use mqtt_proto::v5::{self, Packet};
use strata_mqtt::MqttConfig;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn second_connection_takes_the_session_over() {
    let b = TestBroker::start(MqttConfig::default()).await;
    let (mut first, _) = b.connect(connect("dev", true, 60)).await;
    first.subscribe("t", QoS::Level1).await;

    let (mut second, ack) = b.connect(connect("dev", false, 60)).await;
    assert!(ack.session_present, "the session was resumed");
    match first.recv().await {
        Packet::Disconnect(d) => {
            assert_eq!(d.reason_code, v5::DisconnectReasonCode::SessionTakenOver)
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert!(
        first.next().await.is_none(),
        "the first connection is shut down for writing"
    );
    // It lingers after its DISCONNECT, still reading, but the second connection had its
    // CONNACK without waiting for that: a write to the first is still taken.
    let lingering = first.io.write_all(&[0xC0, 0x00]).await;
    assert!(
        lingering.is_ok(),
        "no linger, or CONNACK waited for it: {lingering:?}"
    );

    // The subscription came along with the session.
    let (mut publ, _) = b.connect(connect("pub", true, 0)).await;
    publ.publish_acked("t", b"x", 1).await;
    let p = second.recv_publish().await;
    assert_eq!(&p.payload[..], b"x");
}
