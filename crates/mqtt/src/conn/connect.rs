//! The handshake, in its steps: read CONNECT, assign the client id, authenticate, attach the
//! session, CONNACK, and the connection built from what CONNECT asked for.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_proto::Pid;
use mqtt_proto::v5::{self, ConnectReasonCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use super::{Conn, End, Stage, read_frame};
use crate::auth::{Identity, Login};
use crate::hub::{Attached, Hub, NEVER, OUTBOUND_CAPACITY, Outbound};
use crate::packet::{self, FirstPacket, Version};

/// A CONNECT refused: the CONNACK reason code and text.
struct Refusal {
    code: ConnectReasonCode,
    reason: &'static str,
}

/// What the handshake settled, to build the connection from.
struct Handshake {
    version: Version,
    connect: Box<v5::Connect>,
    client_id: Arc<str>,
    identity: Identity,
}

impl Handshake {
    /// The session expiry asked for.
    fn expiry(&self) -> u32 {
        session_expiry(self.version, &self.connect)
    }
}

/// Reads CONNECT, authenticates, attaches the session and sends CONNACK.
pub(super) async fn connect<R, W>(
    hub: &Arc<Hub>,
    rd: &mut R,
    wr: &mut W,
    inbuf: &mut BytesMut,
    peer: &str,
) -> Option<Conn>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (version, c) = read_connect(hub, rd, wr, inbuf, peer).await?;
    let Some(client_id) = assign_client_id(version, &c) else {
        tracing::info!(%peer, "refusing MQTT connection: empty client id with a persistent session");
        let r = Refusal {
            code: ConnectReasonCode::ClientIdentifierNotValid,
            reason: "",
        };
        send_and_close(wr, version, r).await;
        return None;
    };
    let identity = match authenticate(hub, &c, &client_id, peer).await {
        Ok(i) => i,
        Err(r) => {
            send_and_close(wr, version, r).await;
            return None;
        }
    };
    let hs = Handshake {
        version,
        connect: c,
        client_id,
        identity,
    };
    let client_id = &hs.client_id;
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let kick = Arc::new(Notify::new());
    let attached = match hub
        .attach(
            client_id,
            hs.connect.clean_start,
            hs.expiry(),
            tx,
            kick.clone(),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(%peer, %client_id, error = %e, "cannot attach the MQTT session");
            let r = Refusal {
                code: ConnectReasonCode::ServerUnavailable,
                reason: "session storage failed",
            };
            send_and_close(wr, version, r).await;
            return None;
        }
    };
    let ack = connack(hub, &hs, &attached);
    tracing::debug!(%peer, client_id = %hs.client_id, version = %version, present = attached.present, "MQTT client connected");
    let mut conn = Conn::new(hub, peer, hs, &attached, rx, kick);
    conn.send(&v5::Packet::Connack(ack));
    conn.start_backlog(attached);
    Some(conn)
}

/// Reads the first packet, which must be a CONNECT of a known protocol version, within the
/// connect timeout.
async fn read_connect<R, W>(
    hub: &Hub,
    rd: &mut R,
    wr: &mut W,
    inbuf: &mut BytesMut,
    peer: &str,
) -> Option<(Version, Box<v5::Connect>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max = hub.config.max_packet_size as usize;
    let frame =
        match tokio::time::timeout(hub.config.connect_timeout, read_frame(rd, inbuf, max)).await {
            Err(_) => {
                tracing::info!(%peer, "closing MQTT connection: no CONNECT in time");
                return None;
            }
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) | Ok(Err(End::Closed(_))) => return None,
            Ok(Err(End::Bad(b))) => {
                tracing::warn!(%peer, reason = %b, "closing MQTT connection before CONNECT");
                return None;
            }
            Ok(Err(_)) => return None,
        };
    match packet::decode_connect(&frame) {
        Ok(FirstPacket::Connect(v, c)) => Some((v, c)),
        Ok(FirstPacket::UnsupportedVersion(what)) => {
            tracing::info!(%peer, %what, "refusing MQTT connection: unsupported protocol version");
            // CONNACK return code 1, understood by every version's clients.
            let _ = wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            None
        }
        Err(b) => {
            tracing::warn!(%peer, reason = %b, "closing MQTT connection: bad CONNECT");
            None
        }
    }
}

/// The client id CONNECT gave, or one the server assigns. None when an id is needed and
/// cannot be assigned: a v3 client with an empty id asking for a persistent session.
fn assign_client_id(version: Version, c: &v5::Connect) -> Option<Arc<str>> {
    if !c.client_id.is_empty() {
        return Some(c.client_id.clone());
    }
    if !version.is_v5() && !c.clean_start {
        return None;
    }
    Some(Arc::from(random_id()))
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    rand::fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("strata-{hex}")
}

/// Checks the credentials. A client without any is let in at once when anonymous clients
/// are; otherwise the password check (argon2, slow on purpose) runs off the async threads.
async fn authenticate(
    hub: &Arc<Hub>,
    c: &v5::Connect,
    client_id: &Arc<str>,
    peer: &str,
) -> Result<Identity, Refusal> {
    if c.username.is_none()
        && c.password.is_none()
        && let Login::Allowed(i) = hub.auth.login(None, None, client_id)
    {
        return Ok(i);
    }
    let h = hub.clone();
    let user = c.username.clone();
    let pass = c.password.clone();
    let cid = client_id.clone();
    let login =
        tokio::task::spawn_blocking(move || h.auth.login(user.as_deref(), pass.as_deref(), &cid))
            .await
            .unwrap_or(Login::NotAuthorized);
    match login {
        Login::Allowed(i) => Ok(i),
        Login::BadCredentials => {
            tracing::info!(%peer, %client_id, user = ?c.username, "refusing MQTT connection: bad user name or password");
            Err(Refusal {
                code: ConnectReasonCode::BadUserNameOrPassword,
                reason: "bad user name or password",
            })
        }
        Login::NotAuthorized => {
            tracing::info!(%peer, %client_id, "refusing MQTT connection: anonymous clients are not allowed");
            Err(Refusal {
                code: ConnectReasonCode::NotAuthorized,
                reason: "anonymous clients are not allowed",
            })
        }
    }
}

/// The session expiry CONNECT asks for: its property (v5), or none and never for a v3 clean
/// and persistent session.
fn session_expiry(version: Version, c: &v5::Connect) -> u32 {
    if version.is_v5() {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        NEVER
    }
}

/// The keep alive in force and, when the server's cap changed it, the value to tell the
/// client.
fn keep_alive(hub: &Hub, asked: u16) -> (u16, Option<u16>) {
    let cap = hub.config.max_keep_alive;
    if cap > 0 && (asked == 0 || asked > cap) {
        (cap, Some(cap))
    } else {
        (asked, None)
    }
}

fn connack(hub: &Hub, hs: &Handshake, attached: &Attached) -> v5::Connack {
    let mut ack = v5::Connack::new(attached.present, ConnectReasonCode::Success);
    if hs.version.is_v5() {
        let p = &mut ack.properties;
        p.receive_max = Some(hub.config.receive_maximum);
        p.max_packet_size = Some(hub.config.max_packet_size);
        p.topic_alias_max = Some(hub.config.topic_alias_max);
        // The server assigned the id if CONNECT had none.
        p.assigned_client_id = hs
            .connect
            .client_id
            .is_empty()
            .then(|| hs.client_id.clone());
        p.server_keep_alive = keep_alive(hub, hs.connect.keep_alive).1;
        if hs.connect.properties.request_response_info == Some(true) {
            p.response_info = Some(Arc::from(format!("response/{}", hs.client_id)));
        }
    }
    ack
}

/// Sends a refusing CONNACK and closes.
async fn send_and_close<W: AsyncWrite + Unpin>(wr: &mut W, version: Version, r: Refusal) {
    let mut ack = v5::Connack::new(false, r.code);
    if !r.reason.is_empty() {
        ack.properties.reason_string = Some(Arc::from(r.reason));
    }
    let mut out = BytesMut::new();
    packet::encode(version, &v5::Packet::Connack(ack), &mut out);
    let _ = wr.write_all(&out).await;
    let _ = wr.shutdown().await;
}

impl Conn {
    fn new(
        hub: &Arc<Hub>,
        peer: &str,
        hs: Handshake,
        attached: &Attached,
        rx: mpsc::Receiver<Outbound>,
        kick: Arc<Notify>,
    ) -> Self {
        let props = &hs.connect.properties;
        let expiry = hs.expiry();
        let keep_alive = keep_alive(hub, hs.connect.keep_alive).0;
        Conn {
            hub: hub.clone(),
            version: hs.version,
            client_id: hs.client_id,
            peer: peer.to_owned(),
            identity: hs.identity,
            session: attached.session.clone(),
            conn_no: attached.conn,
            rx,
            kick,
            out: BytesMut::new(),
            keep_alive: Duration::from_millis(u64::from(keep_alive) * 1500),
            client_receive_max: props.receive_max.unwrap_or(u16::MAX).max(1),
            client_max_packet: props.max_packet_size.map_or(usize::MAX, |m| m as usize),
            client_alias_max: props.topic_alias_max.unwrap_or(0),
            problem_info: props.request_problem_info != Some(false),
            next_pid: 0,
            inflight: BTreeMap::new(),
            pending: VecDeque::new(),
            out_aliases: HashMap::new(),
            in_aliases: HashMap::new(),
            backlog_outstanding: BTreeSet::new(),
            backlog_end: None,
            expiry,
            will: hs.connect.last_will.map(|w| {
                let delay = w.properties.delay_interval.unwrap_or(0);
                (w, delay)
            }),
            _guard: None,
        }
    }

    fn start_backlog(&mut self, attached: Attached) {
        self._guard = Some(attached.guard);
        // QoS 2 flows an earlier connection left at PUBREL go on from there.
        for pid in attached.pubrel {
            if let Ok(p) = Pid::try_from(pid) {
                self.send(&v5::Packet::Pubrel(v5::Pubrel::new_success(p)));
                self.inflight.insert(pid, (Stage::Comp, None));
            }
        }
        self.backlog_end = attached.backlog_end;
        for d in attached.backlog {
            if let Some(o) = d.queue_offset {
                self.backlog_outstanding.insert(o);
            }
            self.deliver(d);
        }
        self.maybe_trim_backlog();
    }
}
