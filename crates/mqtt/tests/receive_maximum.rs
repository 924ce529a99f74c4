//! A client that sends more unreleased QoS 2 publishes than the server's Receive Maximum is
//! disconnected with 0x93, and can read that: the server keeps draining its input for a
//! short linger instead of closing on a client that is still sending.

mod common;

use std::time::Duration;

use common::{EXPECT, TestBroker, connect, pid, publish, read_packet};
use mqtt_proto::QosPid;
use mqtt_proto::v5::{DisconnectReasonCode, Packet};
use strata_mqtt::MqttConfig;
use tokio::io::AsyncWriteExt;

const RECEIVE_MAXIMUM: u16 = 2;

fn config() -> MqttConfig {
    MqttConfig {
        receive_maximum: RECEIVE_MAXIMUM,
        ..MqttConfig::default()
    }
}

/// QoS 2 publishes with packet ids `1..=n`, each with a 1 KiB payload, as bytes.
fn publishes(n: u16) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        let p = publish("flood", &[b'x'; 1024], QosPid::Level2(pid(i)), false);
        out.extend_from_slice(p.encode().unwrap().as_ref());
    }
    out
}

#[tokio::test]
async fn client_still_sending_reads_the_disconnect_reason() {
    let b = TestBroker::start(config()).await;
    let (c, ack) = b.connect(connect("flooder", true, 0)).await;
    assert_eq!(ack.properties.receive_max, Some(RECEIVE_MAXIMUM));

    // Far more than the pipe holds, so the writes succeed only if the server keeps reading
    // after it gave up on the client.
    let flood = publishes(300);
    let (mut rd, mut wr) = tokio::io::split(c.io);
    let writer = tokio::spawn(async move {
        wr.write_all(&flood).await?;
        wr.shutdown().await
    });
    let mut buf = bytes::BytesMut::new();
    for i in 1..=RECEIVE_MAXIMUM {
        match read_packet(&mut rd, &mut buf).await {
            Some(Packet::Pubrec(r)) => assert_eq!(r.pid, pid(i)),
            other => panic!("expected PUBREC {i}, got {other:?}"),
        }
    }
    match read_packet(&mut rd, &mut buf).await {
        Some(Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, DisconnectReasonCode::ReceiveMaximumExceeded);
            assert!(d.properties.reason_string.is_some());
        }
        other => panic!("expected DISCONNECT 0x93, got {other:?}"),
    }
    let sent = tokio::time::timeout(EXPECT, writer).await.unwrap().unwrap();
    assert!(sent.is_ok(), "the client's sends failed: {sent:?}");
    assert!(read_packet(&mut rd, &mut buf).await.is_none());
}

#[tokio::test]
async fn linger_after_the_disconnect_is_bounded() {
    let b = TestBroker::start(config()).await;
    let (mut c, _) = b.connect(connect("flooder", true, 0)).await;
    c.io.write_all(&publishes(RECEIVE_MAXIMUM + 1))
        .await
        .unwrap();
    for _ in 0..RECEIVE_MAXIMUM {
        assert!(matches!(c.recv().await, Packet::Pubrec(_)));
    }
    assert!(matches!(
        c.recv().await,
        Packet::Disconnect(d) if d.reason_code == DisconnectReasonCode::ReceiveMaximumExceeded
    ));
    // The server shut its side down after DISCONNECT (TCP: FIN) but reads on for its linger
    // (0.5 s), then closes (TCP: a send would now meet a reset).
    assert!(c.next().await.is_none());
    tokio::time::pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = c.io.write_all(&publishes(1)).await;
    assert!(during.is_ok(), "closed without lingering: {during:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = c.io.write_all(&publishes(1)).await;
    assert_eq!(
        after.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::BrokenPipe),
        "still open after the linger"
    );
}
