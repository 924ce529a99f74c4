//! A will with a delay is published that long after the connection is lost, and not at all if
//! the session is resumed first. Time is paused once the storage writes are done, so the
//! delay costs no wall-clock time.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, EXPECT, TestBroker, connect};
use mqtt_proto::v5;
use mqtt_proto::{QoS, TopicName};
use strata_mqtt::MqttConfig;

const DELAY: u32 = 5;

async fn with_will(b: &TestBroker, id: &str) -> Client {
    let mut c = connect(id, true, 60);
    let mut will = v5::LastWill::new(
        QoS::Level1,
        TopicName::try_from(format!("will/{id}").as_str()).unwrap(),
        Bytes::from(id.to_owned()),
    );
    will.properties.delay_interval = Some(DELAY);
    c.last_will = Some(will);
    b.connect(c).await.0
}

#[tokio::test]
async fn delayed_will_fires_after_its_delay_unless_the_session_resumes() {
    let b = TestBroker::start(MqttConfig::default()).await;
    let (mut sub, _) = b.connect(connect("watcher", true, 0)).await;
    sub.subscribe("will/#", QoS::Level1).await;

    // Both lose their connection without DISCONNECT; "back" resumes its session at once.
    drop(with_will(&b, "lost").await);
    drop(with_will(&b, "back").await);
    // A connection is counted until its session is handed back and its will scheduled.
    let deadline = tokio::time::Instant::now() + EXPECT;
    while b.mqtt.connections() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lost connections did not end"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The session is attached (and the will's timer cancelled) before CONNACK.
    let (_back, ack) = b.connect(connect("back", false, 60)).await;
    assert!(ack.session_present);

    tokio::time::pause();
    let early = sub
        .recv_within(Duration::from_secs(u64::from(DELAY) - 2))
        .await;
    assert!(
        early.is_none(),
        "will published before its delay: {early:?}"
    );
    let p = sub.recv_publish().await;
    assert_eq!(&*p.topic_name, "will/lost");
    assert_eq!(&p.payload[..], b"lost");
    sub.ack(&p, QoS::Level1).await;
    let late = sub
        .recv_within(Duration::from_secs(u64::from(DELAY) * 3))
        .await;
    assert!(
        late.is_none(),
        "the resumed session's will was published: {late:?}"
    );
}
