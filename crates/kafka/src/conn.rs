//! One client connection: read a frame, answer it, write the response, in order.
//!
//! Kafka clients rely on responses coming back in request order on a connection, so requests
//! are handled one at a time; a long-polling Fetch holds its connection as it does in Kafka.
//! Anything the connection cannot parse closes it with a logged reason — never the server.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Buf;
use kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::frame::{FrameError, read_frame};
use crate::{Kafka, apis};
use tokio_util::sync::CancellationToken;

/// Why a connection ends.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Framing failed (or the client left).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An API key this server does not know.
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    /// A request that does not decode.
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// What failed.
        reason: String,
    },
    /// A version of an API that is not supported.
    #[error("{api:?} v{version} is not supported")]
    Unsupported {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
    },
    /// The response could not be encoded.
    #[error("encoding the {api:?} v{version} response failed: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// Its version.
        version: i16,
        /// What failed.
        reason: String,
    },
    /// Writing failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ConnError {
    fn label(&self) -> &'static str {
        match self {
            ConnError::Frame(FrameError::TooLarge { .. }) => "oversized_frame",
            ConnError::Frame(FrameError::BadSize(_)) => "bad_frame_size",
            ConnError::Frame(_) => "io",
            ConnError::UnknownApi(_) => "unknown_api",
            ConnError::Malformed { .. } => "malformed",
            ConnError::Unsupported { .. } => "unsupported_version",
            ConnError::Encode { .. } => "encode",
            ConnError::Io(_) => "io",
        }
    }
}

pub(crate) async fn run(
    kafka: &Kafka,
    mut stream: TcpStream,
    peer: SocketAddr,
    shutdown: &CancellationToken,
) -> Result<(), ConnError> {
    loop {
        // On shutdown the request in hand is answered; the connection closes before the next.
        let next = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            f = read_frame(&mut stream, kafka.config.max_request_bytes) => f,
        };
        let frame = match next {
            Ok(f) => f,
            Err(e) => {
                if !matches!(e, FrameError::Closed | FrameError::Io(_)) {
                    let e = ConnError::Frame(e);
                    kafka.metrics.rejected.with_label_values(&[e.label()]).inc();
                    return Err(e);
                }
                return Err(e.into());
            }
        };
        let started = Instant::now();
        let api = (&frame[..2]).get_i16();
        let response = apis::handle(kafka, frame, peer).await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                kafka.metrics.rejected.with_label_values(&[e.label()]).inc();
                return Err(e);
            }
        };
        if !response.is_empty() {
            response.write_to(&mut stream).await?;
            stream.flush().await?;
        }
        let name = apis::api_label(api);
        kafka
            .metrics
            .request_seconds
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
    }
}
