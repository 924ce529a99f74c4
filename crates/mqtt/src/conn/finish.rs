//! The end of a connection: the goodbye, the session handed back, the will.

use std::sync::Arc;
use std::time::Duration;

use mqtt_proto::v5::DisconnectReasonCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Conn, End, Stage};
use crate::hub::{Delivery, Leftovers};
use crate::message::{Message, Props, now_ms};
use crate::packet::disconnect;

/// How long a connection stays open after the server's DISCONNECT, so that a client still
/// sending reads the reason instead of a reset.
pub(super) const LINGER: Duration = Duration::from_millis(500);
/// Most a lingering connection reads (and discards) before it closes anyway.
pub(super) const LINGER_DRAIN: usize = 1 << 20;
/// Longest wait for the goodbye to be written.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

impl Conn {
    /// Says goodbye, hands undelivered messages back to the session and schedules the will.
    /// Returns whether the connection should linger before it closes (see [`linger`]).
    pub(super) async fn finish<W: AsyncWrite + Unpin>(&mut self, end: End, wr: &mut W) -> bool {
        let normal = matches!(end, End::Disconnected { with_will: false });
        let linger = self.goodbye(&end);
        if !self.out.is_empty() {
            let _ = tokio::time::timeout(GOODBYE_TIMEOUT, wr.write_all(&self.out)).await;
        }
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, wr.shutdown()).await;
        self.hand_back().await;
        if !normal {
            self.schedule_will();
        }
        linger
    }

    /// Logs why the connection ends and buffers the DISCONNECT that says so, if any. Returns
    /// whether a DISCONNECT was buffered (v5 only: v3 has no server DISCONNECT) for an end
    /// other than shutdown, which does not wait on clients.
    fn goodbye(&mut self, end: &End) -> bool {
        let (peer, client_id) = (&self.peer, &self.client_id);
        match end {
            End::Closed(None) | End::Disconnected { .. } => {
                tracing::debug!(%peer, %client_id, "MQTT client disconnected");
            }
            End::Closed(Some(e)) => {
                tracing::debug!(%peer, %client_id, error = %e, "MQTT connection failed");
            }
            End::Bad(b) => {
                tracing::warn!(%peer, %client_id, reason = %b, "closing MQTT connection");
                if self.version.is_v5() {
                    let reason = if self.problem_info {
                        b.reason.clone()
                    } else {
                        String::new()
                    };
                    self.send(&disconnect(b.code, &reason));
                    return true;
                }
            }
            End::KeepAlive => {
                tracing::info!(%peer, %client_id, "closing MQTT connection: keep alive timed out");
                self.send(&disconnect(DisconnectReasonCode::KeepAliveTimeout, ""));
                return self.version.is_v5();
            }
            End::TakenOver => {
                tracing::info!(%peer, %client_id, "closing MQTT connection: session taken over");
                self.send(&disconnect(DisconnectReasonCode::SessionTakenOver, ""));
                return self.version.is_v5();
            }
            End::Shutdown => {
                tracing::debug!(%peer, %client_id, "closing MQTT connection: server shutting down");
                if self.version.is_v5() {
                    self.send(&disconnect(DisconnectReasonCode::ServerShuttingDown, ""));
                }
            }
            End::Internal(e) => {
                tracing::error!(%peer, %client_id, error = %e, "closing MQTT connection");
                self.send(&disconnect(
                    DisconnectReasonCode::UnspecifiedError,
                    "server error",
                ));
                return self.version.is_v5();
            }
        }
        false
    }

    /// Hands undelivered messages and unfinished QoS 2 flows back to the session.
    async fn hand_back(&mut self) {
        let mut unsent: Vec<Delivery> = Vec::new();
        let mut pubrel: Vec<u16> = Vec::new();
        for (pid, (stage, d)) in std::mem::take(&mut self.inflight) {
            match (stage, d) {
                (Stage::Comp, _) => pubrel.push(pid),
                (_, Some(mut d)) => {
                    d.pid = Some(pid);
                    unsent.push(d);
                }
                (_, None) => {}
            }
        }
        unsent.extend(self.pending.drain(..));
        let trim_to = self
            .backlog_end
            .map(|end| self.backlog_outstanding.first().copied().unwrap_or(end));
        let left = Leftovers {
            unsent,
            pubrel,
            trim_to,
        };
        if let Err(e) = self
            .hub
            .detach(&self.session, self.conn_no, self.expiry, left, &mut self.rx)
            .await
        {
            tracing::error!(client_id = %self.client_id, error = %e, "cannot store the MQTT session");
        }
    }

    /// Schedules the will, if the client left one and may publish to its topic.
    fn schedule_will(&mut self) {
        let Some((w, delay)) = self.will.take() else {
            return;
        };
        let msg = Message {
            topic: Arc::from(&*w.topic_name),
            payload: w.payload,
            qos: w.qos,
            retain: w.retain,
            props: Props::from_will(w.properties),
            created_ms: now_ms(),
            origin: Some(self.client_id.clone()),
        };
        if self.identity.may_publish(&msg.topic) {
            self.hub.schedule_will(
                &self.session,
                self.conn_no,
                Arc::new(msg),
                delay.min(self.expiry),
            );
        } else {
            tracing::info!(client_id = %self.client_id, topic = %msg.topic, "will denied by the ACL");
        }
    }
}

/// After the server's DISCONNECT (the write side already shut down): reads and discards
/// what the client still sends, for at most [`LINGER`] and [`LINGER_DRAIN`] bytes or until it
/// closes. Closing a socket with unread input makes TCP send a reset, and a client still
/// sending would see a broken pipe instead of reading the DISCONNECT's reason code.
pub(super) async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut buf = vec![0u8; 8 * 1024];
    let mut left = LINGER_DRAIN;
    let drain = async {
        while left > 0 {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
