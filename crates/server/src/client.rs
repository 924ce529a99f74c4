//! A minimal Kafka admin client for the `strata topic` commands: one connection, one request
//! at a time, using the same protocol crate as the server.

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection to a Kafka-protocol server.
#[derive(Debug)]
pub struct AdminClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl AdminClient {
    /// Connects to `addr` (HOST:PORT).
    pub async fn connect(addr: &str) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        Ok(AdminClient {
            stream,
            correlation_id: 0,
        })
    }

    /// Sends one request at `version` and waits for its response.
    pub async fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let api =
            ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown API key {}", R::KEY))?;
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("strata-cli")))
            .encode(&mut buf, api.request_header_version(version))?;
        request.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).await?;
        let size = self
            .stream
            .read_i32()
            .await
            .context("reading the response")?;
        if !(0..=256 << 20).contains(&size) {
            bail!("response of {size} bytes");
        }
        let mut body = BytesMut::zeroed(size as usize);
        self.stream.read_exact(&mut body).await?;
        let mut body = body.freeze();
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "response for request {} while waiting for {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        let response = R::Response::decode(&mut body, version)?;
        if body.has_remaining() {
            bail!("{} bytes left after the response", body.remaining());
        }
        Ok(response)
    }
}
