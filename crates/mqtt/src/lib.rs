//! MQTT 3.1, 3.1.1 and 5.0 front end of Strata.
//!
//! [`Mqtt::open`] restores the MQTT state (sessions, retained messages) from the broker's
//! storage; [`Mqtt::serve_tcp`] and [`Mqtt::serve_ws`] accept clients over TCP and over
//! WebSocket (`/mqtt`, subprotocol `mqtt`).

mod auth;
mod bridge;
mod config;
mod conn;
mod error;
mod hub;
mod message;
/// Framing and decoding, public for the fuzz target.
pub mod packet;
mod store;
mod topic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use strata_broker::Broker;
use strata_net::Drain;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::{Auth, hash_password};
pub use config::{MapRule, MqttConfig};
pub use error::{MqttError, Result};
pub use hub::{Hub, HubMetrics};

/// Open MQTT connections per listener at most, unless configured (Mosquitto's
/// `max_connections` is unbounded by default; a bound keeps a flood from taking every
/// descriptor).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Receive Maximum: QoS 2 publishes a client may leave unreleased, unless configured.
pub const DEFAULT_RECEIVE_MAXIMUM: u16 = 1024;
/// Largest MQTT packet accepted, in bytes, unless configured.
pub const DEFAULT_MAX_PACKET_SIZE: u32 = 1 << 20;
/// Cap on keep alive in seconds, unless configured; 0 for none.
pub const DEFAULT_MAX_KEEP_ALIVE: u16 = 0;
/// Topic Alias Maximum for client-to-server aliases, unless configured.
pub const DEFAULT_TOPIC_ALIAS_MAX: u16 = 16;

/// The MQTT front end of one node.
#[derive(Debug, Clone)]
pub struct Mqtt {
    hub: Arc<Hub>,
}

impl Mqtt {
    /// Restores the MQTT state and resolves the mapped storage topics.
    pub async fn open(broker: Arc<Broker>, config: MqttConfig, auth: Auth) -> Result<Self> {
        Ok(Mqtt {
            hub: Hub::open(broker, config, auth).await?,
        })
    }

    /// The shared state, for metrics.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Open connections.
    pub fn connections(&self) -> u64 {
        self.hub.metrics.connections.load(Ordering::Relaxed)
    }

    /// Serves one client connection over any byte stream (a TCP socket, a WebSocket's
    /// bytes, an in-memory pipe) until it ends or `shutdown` is cancelled. `peer` names it in
    /// logs.
    pub async fn serve_connection<S>(&self, stream: S, peer: String, shutdown: CancellationToken)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        conn::run(self.hub.clone(), stream, peer, shutdown).await
    }

    /// Accepts MQTT clients over TCP until `drain` is cancelled, at most `max_connections`
    /// at once. Accept errors back off and never end the listener.
    pub async fn serve_tcp(self, listener: TcpListener, max_connections: usize, drain: Drain) {
        let token = drain.token().clone();
        strata_net::serve(
            listener,
            "mqtt",
            max_connections,
            drain,
            move |stream, peer| {
                conn::run(self.hub.clone(), stream, peer.to_string(), token.clone())
            },
        )
        .await
    }

    /// Accepts MQTT clients over WebSocket at `/mqtt` until `drain` is cancelled; each
    /// session is tracked by `drain`.
    pub async fn serve_ws(self, listener: TcpListener, drain: Drain) -> std::io::Result<()> {
        let app = Router::new()
            .route("/mqtt", get(upgrade))
            .with_state((self.hub.clone(), drain.clone()));
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(drain.token().clone().cancelled_owned())
        .await
    }
}

async fn upgrade(
    State((hub, drain)): State<(Arc<Hub>, Drain)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> impl IntoResponse {
    ws.protocols(["mqtt"])
        .max_message_size(hub.config.max_packet_size as usize + 8)
        .on_upgrade(move |socket| {
            let token = drain.token().clone();
            drain.track(ws_session(hub, socket, peer, token))
        })
}

/// Carries the MQTT byte stream inside binary WebSocket messages (a packet may span messages
/// and a message may hold several packets, as MQTT over WebSocket allows).
async fn ws_session(
    hub: Arc<Hub>,
    socket: WebSocket,
    peer: SocketAddr,
    shutdown: CancellationToken,
) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let mut conn = tokio::spawn(conn::run(hub, ours, format!("ws://{peer}"), shutdown));
    let (mut from_conn, mut to_conn) = tokio::io::split(theirs);
    let (mut sink, mut stream) = socket.split();
    let mut buf = bytes::BytesMut::with_capacity(16 * 1024);
    let mut server_closed = false;
    loop {
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(WsMessage::Binary(data))) => {
                    if to_conn.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Some(Ok(WsMessage::Text(_))) => {
                    tracing::warn!(%peer, "closing MQTT WebSocket: text frame (MQTT needs binary frames)");
                    break;
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            r = from_conn.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    server_closed = true;
                    break;
                }
                Ok(_) => {
                    if sink.send(WsMessage::Binary(buf.split().freeze())).await.is_err() {
                        break;
                    }
                    buf.reserve(16 * 1024);
                }
            },
        }
    }
    let mut conn_done = false;
    if server_closed {
        // The connection ended its side, and lingers after a DISCONNECT (see
        // `conn::finish::linger`, which bounds it): pass it what the client still sends until
        // it is done, so that the client reads the DISCONNECT before the close.
        let forward = async {
            while let Some(Ok(m)) = stream.next().await {
                let go_on = match m {
                    WsMessage::Binary(data) => to_conn.write_all(&data).await.is_ok(),
                    WsMessage::Close(_) => false,
                    _ => true,
                };
                if !go_on {
                    return;
                }
            }
        };
        tokio::select! {
            _ = forward => {}
            _ = &mut conn => conn_done = true,
        }
    }
    let _ = to_conn.shutdown().await;
    drop(to_conn);
    drop(from_conn);
    let _ = sink.close().await;
    if !conn_done {
        let _ = conn.await;
    }
}
