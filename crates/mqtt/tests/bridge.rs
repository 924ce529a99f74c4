//! A mapped filter in both directions: a record a Kafka producer appends to the storage topic
//! reaches MQTT subscribers, and an MQTT publish is stored there once and delivered once (the
//! reader skips what came from MQTT).

mod common;

use std::time::Duration;

use common::{TestBroker, connect};
use mqtt_proto::QoS;
use strata_mqtt::MqttConfig;
use strata_record::{BatchBuilder, Compression};

#[tokio::test]
async fn storage_records_reach_mqtt_and_mqtt_publishes_are_stored_once() {
    let config = MqttConfig {
        map: vec!["sensors/#=sensors".parse().unwrap()],
        ..MqttConfig::default()
    };
    let b = TestBroker::start(config).await;
    let topic = b
        .broker
        .topic("sensors")
        .expect("the mapped topic is created");
    let partition = topic.partition(0).unwrap();
    let (mut sub, _) = b.connect(connect("sub", true, 0)).await;
    sub.subscribe("sensors/#", QoS::Level1).await;

    let mut batch = BatchBuilder::new(Compression::None);
    batch.push(Some(b"sensors/kafka"), Some(b"21.5"), &[], 0);
    b.broker
        .produce(&topic, &partition, batch.build().unwrap())
        .await
        .unwrap();
    let p = sub.recv_publish().await;
    assert_eq!(&*p.topic_name, "sensors/kafka");
    assert_eq!(&p.payload[..], b"21.5");
    sub.ack(&p, QoS::Level1).await;

    let (mut publ, _) = b.connect(connect("pub", true, 0)).await;
    publ.publish_acked("sensors/mqtt", b"7", 1).await;
    let bounds = b.broker.bounds(&topic, &partition).await.unwrap();
    assert_eq!(bounds.next_offset, 2, "the MQTT publish is stored");
    let p = sub.recv_publish().await;
    assert_eq!(&*p.topic_name, "sensors/mqtt");
    sub.ack(&p, QoS::Level1).await;
    // The reader that would deliver it again reads the record on its own time: give it that.
    let again = sub.recv_within(Duration::from_millis(1500)).await;
    assert!(again.is_none(), "delivered twice: {again:?}");
    sub.assert_quiet().await;
}
