//! The Kafka wire protocol front end: a TCP listener that decodes Kafka requests with the
//! `kafka-protocol` crate, answers them from the [`strata_broker::Broker`], and sends Fetch
//! responses with file-engine data by `sendfile`.
//!
//! Start with `conn.rs` (one connection: frames in, responses out, in order), then
//! `apis/mod.rs` (the supported API versions and the dispatch) and one module per API family.
//! `fetch_encode.rs` is the one response encoded by hand, so that stored batches are attached
//! without a copy.

mod apis;
mod conn;
mod errors;
mod fetch_encode;
mod frame;
mod metrics;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;

use strata_broker::Broker;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use apis::{Decoded, SUPPORTED_APIS, ServedApi, decode_request, served_api};
pub use conn::ConnError;
pub use fetch_encode::{
    FetchedPartition, FetchedTopic, encode as encode_fetch_response, frame_bytes,
};
pub use frame::{FrameError, read_frame};
pub use metrics::KafkaMetrics;

/// Open Kafka connections at most, unless configured (Kafka's `max.connections` is
/// unbounded by default; a bound keeps a flood from taking every descriptor).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Kafka's default `socket.request.max.bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 << 20;

/// How the Kafka front end presents itself.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Host clients are told to connect to (Metadata, FindCoordinator).
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// Largest request accepted; larger frames close the connection.
    pub max_request_bytes: usize,
}

/// The front end: shared by every connection.
#[derive(Debug)]
pub struct Kafka {
    pub(crate) broker: Arc<Broker>,
    pub(crate) config: KafkaConfig,
    pub(crate) metrics: KafkaMetrics,
}

impl Kafka {
    /// A front end for `broker`.
    pub fn new(broker: Arc<Broker>, config: KafkaConfig, metrics: KafkaMetrics) -> Arc<Self> {
        Arc::new(Kafka {
            broker,
            config,
            metrics,
        })
    }

    /// Accepts connections until `drain` is cancelled, each in its own tracked task, at most
    /// `max_connections` at once. Accept errors back off and never end the listener.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        max_connections: usize,
        drain: strata_net::Drain,
    ) {
        let token = drain.token().clone();
        strata_net::serve(
            listener,
            "kafka",
            max_connections,
            drain,
            move |stream, peer| {
                let kafka = self.clone();
                let token = token.clone();
                async move { kafka.connection(stream, peer, token).await }
            },
        )
        .await
    }

    async fn connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        self.metrics.connections.inc();
        if let Err(e) = conn::run(&self, stream, peer, &shutdown).await {
            match e {
                conn::ConnError::Frame(FrameError::Closed) => {
                    tracing::debug!(%peer, "kafka connection closed by the client");
                }
                // A client that leaves while a response is on its way (a consumer closing
                // during a long-poll fetch) is not a fault.
                conn::ConnError::Io(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    tracing::debug!(%peer, reason = %e, "kafka client left before its response was written");
                }
                e => tracing::warn!(%peer, reason = %e, "closing kafka connection"),
            }
        }
        self.metrics.connections.dec();
    }
}
