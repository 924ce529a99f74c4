//! A Kafka listener on a fresh broker, and raw request/response helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_broker::{Broker, BrokerConfig};
use strata_kafka::{Kafka, KafkaConfig, KafkaMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A broker in a temporary directory with a Kafka listener on a free port.
pub async fn start() -> (Arc<Broker>, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.group_initial_rebalance_delay_ms = 10;
    let broker = Broker::open(config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kafka = Kafka::new(
        broker.clone(),
        KafkaConfig {
            advertised_host: "127.0.0.1".into(),
            advertised_port: i32::from(addr.port()),
            max_request_bytes: 1 << 20,
        },
        KafkaMetrics::unregistered(),
    );
    tokio::spawn(kafka.serve(
        listener,
        strata_kafka::DEFAULT_MAX_CONNECTIONS,
        strata_net::Drain::new(),
    ));
    (broker, addr, dir)
}

/// Sends one request and decodes its response; panics if the connection closes.
pub async fn call(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    corr: i32,
    req: &RequestKind,
) -> ResponseKind {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(s("versions-test")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&buf).await.unwrap();
    let read = async {
        let size = stream.read_i32().await?;
        let mut body = BytesMut::zeroed(size as usize);
        stream.read_exact(&mut body).await?;
        std::io::Result::Ok(body.freeze())
    };
    let mut body = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("{api:?} v{version}: no response"))
        .unwrap_or_else(|e| panic!("{api:?} v{version}: connection closed: {e}"));
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, corr, "{api:?} v{version}");
    let resp = ResponseKind::decode(api, &mut body, version)
        .unwrap_or_else(|e| panic!("{api:?} v{version}: undecodable response: {e}"));
    assert!(
        !body.has_remaining(),
        "{api:?} v{version}: {} trailing bytes",
        body.remaining()
    );
    resp
}
