//! QoS 1 end to end: the publisher's PUBACK, the subscriber's delivery with a packet id, and no
//! redelivery once the subscriber acknowledged it.

mod common;

use std::time::Duration;

use common::{TestBroker, connect, pid, publish};
use mqtt_proto::v5::{self, Packet};
use mqtt_proto::{QoS, QosPid};
use strata_mqtt::MqttConfig;

#[tokio::test]
async fn qos1_publish_is_acknowledged_and_delivered_once() {
    let b = TestBroker::start(MqttConfig::default()).await;
    let (mut sub, _) = b.connect(connect("sub", true, 0)).await;
    sub.subscribe("a/+", QoS::Level1).await;
    let (mut publ, _) = b.connect(connect("pub", true, 0)).await;

    publ.send(publish("a/b", b"one", QosPid::Level1(pid(7))))
        .await;
    match publ.recv().await {
        Packet::Puback(a) => {
            assert_eq!(a.pid, pid(7));
            assert_eq!(a.reason_code, v5::PubackReasonCode::Success);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }

    let p = sub.recv_publish().await;
    assert_eq!(&*p.topic_name, "a/b");
    assert_eq!(&p.payload[..], b"one");
    let QosPid::Level1(id) = p.qos_pid else {
        panic!("expected QoS 1, got {:?}", p.qos_pid);
    };
    assert!(!p.dup);
    sub.send(Packet::Puback(v5::Puback::new_success(id))).await;
    assert!(sub.recv_within(Duration::from_millis(300)).await.is_none());
}
