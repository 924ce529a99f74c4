//! MQTT 3.1, 3.1.1 and 5.0 front end of Strata.
//!
//! [`Mqtt::open`] restores the MQTT state (sessions, retained messages) from the broker's
//! storage; [`Mqtt::serve_tcp`] and [`Mqtt::serve_ws`] accept clients over TCP and over
//! WebSocket (`/mqtt`, subprotocol `mqtt`).

pub mod auth;
pub mod bridge;
pub mod config;
pub mod conn;
pub mod hub;
pub mod message;
pub mod packet;
pub mod store;
pub mod topic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use strata_broker::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub use auth::{Auth, hash_password};
pub use config::{MapRule, MqttConfig};
pub use hub::Hub;

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

    /// Accepts MQTT clients over TCP until the task is dropped.
    pub async fn serve_tcp(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accepting an MQTT connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let hub = self.hub.clone();
            tokio::spawn(conn::run(hub, stream, peer.to_string()));
        }
    }

    /// Accepts MQTT clients over WebSocket at `/mqtt` until the task is dropped.
    pub async fn serve_ws(self, listener: TcpListener) -> std::io::Result<()> {
        let app = Router::new()
            .route("/mqtt", get(upgrade))
            .with_state(self.hub.clone());
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    }
}

async fn upgrade(
    State(hub): State<Arc<Hub>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> impl IntoResponse {
    ws.protocols(["mqtt"])
        .max_message_size(hub.config.max_packet_size as usize + 8)
        .on_upgrade(move |socket| ws_session(hub, socket, peer))
}

/// Carries the MQTT byte stream inside binary WebSocket messages (a packet may span messages
/// and a message may hold several packets, as MQTT over WebSocket allows).
async fn ws_session(hub: Arc<Hub>, socket: WebSocket, peer: SocketAddr) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let conn = tokio::spawn(conn::run(hub, ours, format!("ws://{peer}")));
    let (mut from_conn, mut to_conn) = tokio::io::split(theirs);
    let (mut sink, mut stream) = socket.split();
    let mut buf = bytes::BytesMut::with_capacity(16 * 1024);
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
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if sink.send(WsMessage::Binary(buf.split().freeze())).await.is_err() {
                        break;
                    }
                    buf.reserve(16 * 1024);
                }
            },
        }
    }
    let _ = to_conn.shutdown().await;
    drop(to_conn);
    drop(from_conn);
    let _ = sink.close().await;
    let _ = conn.await;
}
