//! One client connection: CONNECT, then packets both ways until either side ends it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_proto::v5::{self, ConnectReasonCode, DisconnectReasonCode};
use mqtt_proto::{Pid, QoS, QosPid, TopicName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::{Identity, Login};
use crate::hub::{
    Attached, Delivery, Hub, Leftovers, NEVER, OUTBOUND_CAPACITY, Outbound, Session, split_shared,
};
use crate::message::{Message, Props, now_ms};
use crate::packet::{self, BadInput, FirstPacket, Version, disconnect};
use crate::topic::SubOptions;

/// Deliveries held back while the client's receive maximum is used up.
const PENDING_CAP: usize = 1000;
/// Write out once this much is buffered.
const WRITE_THRESHOLD: usize = 64 * 1024;
/// Largest read buffer a busy connection grows to.
const READ_BUFFER_MAX: usize = 64 * 1024;
/// Longest wait for a client to take what is written to it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The client closed the socket (or it failed).
    Closed(Option<std::io::Error>),
    /// DISCONNECT received; `with_will` for reason 0x04.
    Disconnected { with_will: bool },
    /// Bad input: the client is sent a DISCONNECT (v5) and dropped.
    Bad(BadInput),
    /// Silent longer than its keep alive allows.
    KeepAlive,
    /// Another connection took the session.
    TakenOver,
    /// The server could not do what was asked.
    Internal(crate::error::MqttError),
    /// The server is shutting down.
    Shutdown,
}

impl From<BadInput> for End {
    fn from(b: BadInput) -> Self {
        End::Bad(b)
    }
}

/// Serves one connection to its end. `peer` names it in logs.
/// On `shutdown` the connection finishes the packets in hand, sends DISCONNECT 0x8B (v5) and
/// hands its session back.
pub async fn run<S>(hub: Arc<Hub>, stream: S, peer: String, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    hub.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut inbuf = BytesMut::new();
    let result = Box::pin(connect(&hub, &mut rd, &mut wr, &mut inbuf, &peer)).await;
    if let Some(mut conn) = result {
        conn.serve(&mut rd, &mut wr, inbuf, &shutdown).await;
    }
    hub.metrics.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<BytesMut>, End> {
    loop {
        if !buf.is_empty()
            && let Some(len) = packet::frame_len(buf, max)?
        {
            return Ok(Some(buf.split_to(len)));
        }
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(1024);
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(End::Closed(Some(e))),
        }
    }
}

fn random_id() -> String {
    let mut b = [0u8; 8];
    rand::fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("strata-{hex}")
}

async fn send_and_close<W: AsyncWrite + Unpin>(wr: &mut W, version: Version, packet: v5::Packet) {
    let mut out = BytesMut::new();
    packet::encode(version, &packet, &mut out);
    let _ = wr.write_all(&out).await;
    let _ = wr.shutdown().await;
}

/// Reads CONNECT, authenticates, attaches the session and sends CONNACK.
async fn connect<R, W>(
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
    let (version, c) = match packet::decode_connect(&frame) {
        Ok(FirstPacket::Connect(v, c)) => (v, c),
        Ok(FirstPacket::UnsupportedVersion(what)) => {
            tracing::info!(%peer, %what, "refusing MQTT connection: unsupported protocol version");
            // CONNACK return code 1, understood by every version's clients.
            let _ = wr.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
            return None;
        }
        Err(b) => {
            tracing::warn!(%peer, reason = %b, "closing MQTT connection: bad CONNECT");
            return None;
        }
    };
    let refuse = |code: ConnectReasonCode, reason: &str| {
        let mut ack = v5::Connack::new(false, code);
        if !reason.is_empty() {
            ack.properties.reason_string = Some(Arc::from(reason));
        }
        v5::Packet::Connack(ack)
    };

    // Client identifier.
    let mut assigned = None;
    let client_id: Arc<str> = if c.client_id.is_empty() {
        if !version.is_v5() && !c.clean_start {
            tracing::info!(%peer, "refusing MQTT connection: empty client id with a persistent session");
            send_and_close(
                wr,
                version,
                refuse(ConnectReasonCode::ClientIdentifierNotValid, ""),
            )
            .await;
            return None;
        }
        let id: Arc<str> = Arc::from(random_id());
        assigned = Some(id.clone());
        id
    } else {
        c.client_id.clone()
    };

    // Credentials.
    let identity = if let Login::Allowed(i) = hub.auth.login(None, None, &client_id)
        && c.username.is_none()
        && c.password.is_none()
    {
        i
    } else {
        let h = hub.clone();
        let user = c.username.clone();
        let pass = c.password.clone();
        let cid = client_id.clone();
        let login = tokio::task::spawn_blocking(move || {
            h.auth.login(user.as_deref(), pass.as_deref(), &cid)
        })
        .await
        .unwrap_or(Login::NotAuthorized);
        match login {
            Login::Allowed(i) => i,
            Login::BadCredentials => {
                tracing::info!(%peer, client_id = %client_id, user = ?c.username, "refusing MQTT connection: bad user name or password");
                send_and_close(
                    wr,
                    version,
                    refuse(
                        ConnectReasonCode::BadUserNameOrPassword,
                        "bad user name or password",
                    ),
                )
                .await;
                return None;
            }
            Login::NotAuthorized => {
                tracing::info!(%peer, client_id = %client_id, "refusing MQTT connection: anonymous clients are not allowed");
                send_and_close(
                    wr,
                    version,
                    refuse(
                        ConnectReasonCode::NotAuthorized,
                        "anonymous clients are not allowed",
                    ),
                )
                .await;
                return None;
            }
        }
    };

    let expiry = if version.is_v5() {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        NEVER
    };
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let kick = Arc::new(tokio::sync::Notify::new());
    let attached = match hub
        .attach(&client_id, c.clean_start, expiry, tx, kick.clone())
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(%peer, client_id = %client_id, error = %e, "cannot attach the MQTT session");
            send_and_close(
                wr,
                version,
                refuse(
                    ConnectReasonCode::ServerUnavailable,
                    "session storage failed",
                ),
            )
            .await;
            return None;
        }
    };

    let mut keep_alive = c.keep_alive;
    let mut server_keep_alive = None;
    let cap = hub.config.max_keep_alive;
    if cap > 0 && (keep_alive == 0 || keep_alive > cap) {
        keep_alive = cap;
        server_keep_alive = Some(cap);
    }
    let mut ack = v5::Connack::new(attached.present, ConnectReasonCode::Success);
    if version.is_v5() {
        let p = &mut ack.properties;
        p.receive_max = Some(hub.config.receive_maximum);
        p.max_packet_size = Some(hub.config.max_packet_size);
        p.topic_alias_max = Some(hub.config.topic_alias_max);
        p.assigned_client_id = assigned;
        p.server_keep_alive = server_keep_alive;
        if c.properties.request_response_info == Some(true) {
            p.response_info = Some(Arc::from(format!("response/{client_id}")));
        }
    }
    let will = c.last_will.map(|w| {
        let delay = w.properties.delay_interval.unwrap_or(0);
        (w, delay)
    });
    tracing::debug!(%peer, client_id = %client_id, version = %version, present = attached.present, "MQTT client connected");
    let mut conn = Conn {
        hub: hub.clone(),
        version,
        client_id,
        peer: peer.to_owned(),
        identity,
        session: attached.session.clone(),
        conn_no: attached.conn,
        rx,
        kick,
        out: BytesMut::new(),
        keep_alive: Duration::from_millis(u64::from(keep_alive) * 1500),
        client_receive_max: c.properties.receive_max.unwrap_or(u16::MAX).max(1),
        client_max_packet: c
            .properties
            .max_packet_size
            .map_or(usize::MAX, |m| m as usize),
        client_alias_max: c.properties.topic_alias_max.unwrap_or(0),
        problem_info: c.properties.request_problem_info != Some(false),
        next_pid: 0,
        inflight: BTreeMap::new(),
        pending: VecDeque::new(),
        out_aliases: HashMap::new(),
        in_aliases: HashMap::new(),
        backlog_outstanding: BTreeSet::new(),
        backlog_end: None,
        expiry,
        will,
        _guard: None,
    };
    conn.send(&v5::Packet::Connack(ack));
    conn.start_backlog(attached);
    Some(conn)
}

#[derive(Debug)]
enum Stage {
    /// QoS 1 sent, waiting for PUBACK.
    Ack,
    /// QoS 2 sent, waiting for PUBREC.
    Rec,
    /// PUBREL sent, waiting for PUBCOMP.
    Comp,
}

struct Conn {
    hub: Arc<Hub>,
    version: Version,
    client_id: Arc<str>,
    peer: String,
    identity: Identity,
    session: Arc<Session>,
    conn_no: u64,
    rx: mpsc::Receiver<Outbound>,
    kick: Arc<tokio::sync::Notify>,
    out: BytesMut,
    /// 1.5 × the keep alive; zero for none.
    keep_alive: Duration,
    client_receive_max: u16,
    client_max_packet: usize,
    client_alias_max: u16,
    problem_info: bool,
    next_pid: u16,
    /// Outbound QoS 1/2 by packet id; a PUBREL resent after a reconnect has no delivery.
    inflight: BTreeMap<u16, (Stage, Option<Delivery>)>,
    pending: VecDeque<Delivery>,
    out_aliases: HashMap<Arc<str>, u16>,
    in_aliases: HashMap<u16, TopicName>,
    backlog_outstanding: BTreeSet<u64>,
    backlog_end: Option<u64>,
    expiry: u32,
    will: Option<(v5::LastWill, u32)>,
    /// The session's occupancy, released after detach so that a connection taking the
    /// session over finds it detached.
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Conn {
    fn send(&mut self, p: &v5::Packet) {
        packet::encode(self.version, p, &mut self.out);
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

    async fn serve<R, W>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        mut inbuf: BytesMut,
        shutdown: &CancellationToken,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let end = self.run_loop(rd, wr, &mut inbuf, shutdown).await;
        // Boxed, like the other awaits that an idle connection is not parked in, so that the
        // task of an idle connection holds only the state of `run_loop`'s wait.
        Box::pin(self.finish(end, wr)).await;
    }

    /// Says goodbye, hands undelivered messages back to the session and schedules the will.
    async fn finish<W: AsyncWrite + Unpin>(&mut self, end: End, wr: &mut W) {
        let normal = matches!(end, End::Disconnected { with_will: false });
        match &end {
            End::Closed(None) | End::Disconnected { .. } => {
                tracing::debug!(peer = %self.peer, client_id = %self.client_id, "MQTT client disconnected");
            }
            End::Closed(Some(e)) => {
                tracing::debug!(peer = %self.peer, client_id = %self.client_id, error = %e, "MQTT connection failed");
            }
            End::Bad(b) => {
                tracing::warn!(peer = %self.peer, client_id = %self.client_id, reason = %b, "closing MQTT connection");
                if self.version.is_v5() {
                    let reason = if self.problem_info {
                        b.reason.clone()
                    } else {
                        String::new()
                    };
                    self.send(&disconnect(b.code, &reason));
                }
            }
            End::KeepAlive => {
                tracing::info!(peer = %self.peer, client_id = %self.client_id, "closing MQTT connection: keep alive timed out");
                self.send(&disconnect(DisconnectReasonCode::KeepAliveTimeout, ""));
            }
            End::TakenOver => {
                tracing::info!(peer = %self.peer, client_id = %self.client_id, "closing MQTT connection: session taken over");
                self.send(&disconnect(DisconnectReasonCode::SessionTakenOver, ""));
            }
            End::Shutdown => {
                tracing::debug!(peer = %self.peer, client_id = %self.client_id, "closing MQTT connection: server shutting down");
                if self.version.is_v5() {
                    self.send(&disconnect(DisconnectReasonCode::ServerShuttingDown, ""));
                }
            }
            End::Internal(e) => {
                tracing::error!(peer = %self.peer, client_id = %self.client_id, error = %e, "closing MQTT connection");
                self.send(&disconnect(
                    DisconnectReasonCode::UnspecifiedError,
                    "server error",
                ));
            }
        }
        if !self.out.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(5), wr.write_all(&self.out)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), wr.shutdown()).await;

        // Hand undelivered messages back to the session.
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
        if let Err(e) = self
            .hub
            .detach(
                &self.session,
                self.conn_no,
                self.expiry,
                Leftovers {
                    unsent,
                    pubrel,
                    trim_to,
                },
                &mut self.rx,
            )
            .await
        {
            tracing::error!(client_id = %self.client_id, error = %e, "cannot store the MQTT session");
        }
        if !normal && let Some((w, delay)) = self.will.take() {
            let props = &w.properties;
            let msg = Message {
                topic: Arc::from(&*w.topic_name),
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                props: Props {
                    payload_is_utf8: props.payload_is_utf8,
                    message_expiry: props.message_expiry_interval,
                    response_topic: props.response_topic.clone(),
                    correlation_data: props.correlation_data.clone(),
                    user_properties: props.user_properties.clone(),
                    content_type: props.content_type.clone(),
                },
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

    async fn run_loop<R, W>(
        &mut self,
        rd: &mut R,
        wr: &mut W,
        inbuf: &mut BytesMut,
        shutdown: &CancellationToken,
    ) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let max = self.hub.config.max_packet_size as usize;
        let mut last_seen = Instant::now();
        // Packets that arrived right behind CONNECT.
        if let Err(end) = Box::pin(self.handle_buffered(wr, inbuf, max)).await {
            return end;
        }
        if inbuf.is_empty() {
            // Idle connections keep only a small buffer (below); CONNECT's goes.
            *inbuf = BytesMut::new();
        }
        loop {
            // Grow the read buffer for clients that fill it, up to 64 KiB; an idle or slow
            // client keeps a few hundred bytes.
            let spare = inbuf.capacity() - inbuf.len();
            if spare < 128 {
                inbuf.reserve(256);
            }
            let spare = inbuf.capacity() - inbuf.len();
            if !self.out.is_empty()
                && let Err(end) = Box::pin(self.write_out(wr)).await
            {
                return end;
            }
            let deadline = last_seen + self.keep_alive;
            let ka = !self.keep_alive.is_zero();
            let room = self.pending.len() < PENDING_CAP;
            tokio::select! {
                r = rd.read_buf(inbuf) => {
                    let filled = match r {
                        Ok(0) => return End::Closed(None),
                        Ok(n) => n == spare,
                        Err(e) => return End::Closed(Some(e)),
                    };
                    last_seen = Instant::now();
                    if let Err(end) = Box::pin(self.handle_buffered(wr, inbuf, max)).await {
                        return end;
                    }
                    if filled && inbuf.capacity() < READ_BUFFER_MAX {
                        inbuf.reserve(inbuf.capacity().max(1024));
                    }
                }
                o = self.rx.recv(), if room => {
                    let Some(o) = o else { return End::Closed(None) };
                    if let Err(end) = self.outbound(o) {
                        return end;
                    }
                    while self.out.len() < WRITE_THRESHOLD && self.pending.len() < PENDING_CAP {
                        match self.rx.try_recv() {
                            Ok(o) => {
                                if let Err(end) = self.outbound(o) {
                                    return end;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline), if ka => return End::KeepAlive,
                _ = self.kick.notified() => return End::TakenOver,
                _ = shutdown.cancelled() => return End::Shutdown,
            }
        }
    }

    /// Writes out what is buffered. A client that reads nothing for `WRITE_TIMEOUT` (or its
    /// keep alive, if longer) is dropped rather than holding the connection forever.
    async fn write_out<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        let limit = WRITE_TIMEOUT.max(self.keep_alive);
        match tokio::time::timeout(limit, wr.write_all(&self.out)).await {
            Ok(Ok(())) => {
                self.out.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(End::Closed(Some(e))),
            Err(_) => Err(End::Closed(Some(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing for too long",
            )))),
        }
    }

    /// Handles every complete packet in `inbuf`.
    async fn handle_buffered<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
        inbuf: &mut BytesMut,
        max: usize,
    ) -> Result<(), End> {
        while let Some(len) = packet::frame_len(inbuf, max)? {
            let frame = inbuf.split_to(len);
            let p = packet::decode(self.version, &frame)?;
            self.handle(p).await?;
            if self.out.len() >= WRITE_THRESHOLD {
                self.write_out(wr).await?;
            }
        }
        Ok(())
    }

    fn outbound(&mut self, o: Outbound) -> Result<(), End> {
        let Outbound::Deliver(d) = o;
        self.deliver(*d);
        Ok(())
    }

    fn take_pid(&mut self) -> Pid {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            if self.next_pid != 0 && !self.inflight.contains_key(&self.next_pid) {
                return Pid::try_from(self.next_pid).expect("non-zero");
            }
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let now = now_ms();
        if d.msg.expired(now) {
            self.completed(&d);
            return;
        }
        if d.qos == QoS::Level0 {
            self.write_publish(&d, QosPid::Level0, now, false);
            return;
        }
        if self.inflight.len() >= usize::from(self.client_receive_max) {
            self.pending.push_back(d);
            return;
        }
        // A message an earlier connection sent goes again with its packet id and DUP.
        let again = d
            .pid
            .filter(|p| !self.inflight.contains_key(p))
            .and_then(|p| Pid::try_from(p).ok());
        let pid = match again {
            Some(p) => p,
            None => self.take_pid(),
        };
        let (qos_pid, stage) = if d.qos == QoS::Level1 {
            (QosPid::Level1(pid), Stage::Ack)
        } else {
            (QosPid::Level2(pid), Stage::Rec)
        };
        if self.write_publish(&d, qos_pid, now, again.is_some()) {
            self.inflight.insert(pid.value(), (stage, Some(d)));
        } else {
            self.completed(&d);
        }
    }

    /// Encodes one PUBLISH; returns false if it was dropped for the client's size limit.
    fn write_publish(&mut self, d: &Delivery, qos_pid: QosPid, now: i64, dup: bool) -> bool {
        let m = &d.msg;
        let mut topic = TopicName::try_from(m.topic.clone()).expect("topic checked on publish");
        let mut p = v5::Publish::new(qos_pid, topic.clone(), m.payload.clone());
        p.retain = d.retain;
        p.dup = dup;
        let before = self.out.len();
        if self.version.is_v5() {
            let props = &mut p.properties;
            props.payload_is_utf8 = m.props.payload_is_utf8;
            props.message_expiry_interval = m.remaining_expiry(now);
            props.response_topic = m.props.response_topic.clone();
            props.correlation_data = m.props.correlation_data.clone();
            props.user_properties = m.props.user_properties.clone();
            props.content_type = m.props.content_type.clone();
            if self.client_alias_max > 0 {
                if let Some(&alias) = self.out_aliases.get(&m.topic) {
                    topic = TopicName::try_from("").expect("empty topic");
                    p.topic_name = topic;
                    props.topic_alias = Some(alias);
                } else if self.out_aliases.len() < usize::from(self.client_alias_max) {
                    let alias = self.out_aliases.len() as u16 + 1;
                    self.out_aliases.insert(m.topic.clone(), alias);
                    props.topic_alias = Some(alias);
                }
            }
            packet::encode_publish_v5(&p, &d.sub_ids, &mut self.out);
        } else {
            packet::encode(self.version, &v5::Packet::Publish(p), &mut self.out);
        }
        if self.out.len() - before > self.client_max_packet {
            self.out.truncate(before);
            tracing::debug!(client_id = %self.client_id, topic = %m.topic, "message larger than the client's maximum packet size; not sent");
            return false;
        }
        self.hub
            .metrics
            .messages_out
            .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// A delivery is done with (acknowledged, expired or dropped).
    fn completed(&mut self, d: &Delivery) {
        if let Some(o) = d.queue_offset {
            self.backlog_outstanding.remove(&o);
            self.maybe_trim_backlog();
        }
    }

    fn maybe_trim_backlog(&mut self) {
        if self.backlog_outstanding.is_empty()
            && let Some(end) = self.backlog_end.take()
        {
            let hub = self.hub.clone();
            let session = self.session.clone();
            tokio::spawn(async move { hub.trim_queue(&session, end).await });
        }
    }

    fn refill(&mut self) {
        while self.inflight.len() < usize::from(self.client_receive_max) {
            let Some(d) = self.pending.pop_front() else {
                break;
            };
            self.deliver(d);
        }
    }

    fn reason(&self, text: &str) -> Option<Arc<str>> {
        (self.problem_info && self.version.is_v5()).then(|| Arc::from(text))
    }

    async fn handle(&mut self, p: v5::Packet) -> Result<(), End> {
        match p {
            v5::Packet::Publish(p) => self.on_publish(p).await?,
            v5::Packet::Puback(a) => {
                let pid = a.pid.value();
                match self.inflight.remove(&pid) {
                    Some((Stage::Ack, d)) => {
                        if let Some(d) = d {
                            self.completed(&d);
                        }
                        self.refill();
                    }
                    Some(other) => {
                        self.inflight.insert(pid, other);
                    }
                    None => {}
                }
            }
            v5::Packet::Pubrec(r) => {
                let pid = r.pid.value();
                match self.inflight.remove(&pid) {
                    Some((Stage::Rec, d)) => {
                        if let Some(d) = &d {
                            self.completed(d);
                        }
                        if (r.reason_code as u8) < 0x80 {
                            self.inflight.insert(pid, (Stage::Comp, d));
                            self.send(&v5::Packet::Pubrel(v5::Pubrel::new_success(r.pid)));
                        } else {
                            self.refill();
                        }
                    }
                    Some(other) => {
                        self.inflight.insert(pid, other);
                    }
                    None => self.send(&v5::Packet::Pubrel(v5::Pubrel::new(
                        r.pid,
                        v5::PubrelReasonCode::PacketIdentifierNotFound,
                    ))),
                }
            }
            v5::Packet::Pubcomp(c) => {
                if let Some((Stage::Comp, _)) = self.inflight.remove(&c.pid.value()) {
                    self.refill();
                }
            }
            v5::Packet::Pubrel(r) => {
                let known = self.session.live.lock().awaiting_rel.remove(&r.pid.value());
                let code = if known || !self.version.is_v5() {
                    v5::PubcompReasonCode::Success
                } else {
                    v5::PubcompReasonCode::PacketIdentifierNotFound
                };
                self.send(&v5::Packet::Pubcomp(v5::Pubcomp::new(r.pid, code)));
            }
            v5::Packet::Subscribe(s) => self.on_subscribe(s).await?,
            v5::Packet::Unsubscribe(u) => {
                let mut codes = Vec::with_capacity(u.topics.len());
                for f in &u.topics {
                    codes.push(match self.hub.unsubscribe(&self.session, f).await {
                        Ok(true) => v5::UnsubscribeReasonCode::Success,
                        Ok(false) => v5::UnsubscribeReasonCode::NoSubscriptionExisted,
                        Err(e) => return Err(End::Internal(e)),
                    });
                }
                self.send(&v5::Packet::Unsuback(v5::Unsuback::new(u.pid, codes)));
            }
            v5::Packet::Pingreq => self.send(&v5::Packet::Pingresp),
            v5::Packet::Disconnect(d) => {
                if let Some(e) = d.properties.session_expiry_interval {
                    if self.expiry == 0 && e != 0 {
                        return Err(BadInput::protocol(
                            "DISCONNECT sets a session expiry on a session that had none",
                        )
                        .into());
                    }
                    self.expiry = e;
                }
                return Err(End::Disconnected {
                    with_will: d.reason_code == DisconnectReasonCode::DisconnectWithWillMessage,
                });
            }
            v5::Packet::Connect(_) => return Err(BadInput::protocol("second CONNECT").into()),
            v5::Packet::Auth(_) => {
                return Err(BadInput::protocol("AUTH without an authentication method").into());
            }
            v5::Packet::Connack(_)
            | v5::Packet::Suback(_)
            | v5::Packet::Unsuback(_)
            | v5::Packet::Pingresp => {
                return Err(BadInput::protocol("a packet only a server sends").into());
            }
        }
        Ok(())
    }

    async fn on_publish(&mut self, p: v5::Publish) -> Result<(), End> {
        let mut topic = p.topic_name.clone();
        if let Some(alias) = p.properties.topic_alias {
            if alias == 0 || alias > self.hub.config.topic_alias_max {
                return Err(BadInput::new(
                    DisconnectReasonCode::TopicAliasInvalid,
                    format!(
                        "topic alias {alias} is outside 1..={}",
                        self.hub.config.topic_alias_max
                    ),
                )
                .into());
            }
            if topic.is_empty() {
                topic = self.in_aliases.get(&alias).cloned().ok_or_else(|| {
                    BadInput::protocol(format!("topic alias {alias} was never set"))
                })?;
            } else {
                self.in_aliases.insert(alias, topic.clone());
            }
        } else if topic.is_empty() {
            return Err(if self.version.is_v5() {
                BadInput::protocol("PUBLISH without a topic name or alias")
            } else {
                BadInput::malformed("PUBLISH with an empty topic name")
            }
            .into());
        }
        let qos = p.qos_pid.qos();
        let pid = p.qos_pid.pid();
        if let Some(pid) = pid
            && qos == QoS::Level2
        {
            let live = self.session.live.lock();
            if live.awaiting_rel.contains(&pid.value()) {
                drop(live);
                self.send(&v5::Packet::Pubrec(v5::Pubrec::new_success(pid)));
                return Ok(());
            }
            if live.awaiting_rel.len() >= usize::from(self.hub.config.receive_maximum) {
                return Err(BadInput::new(
                    DisconnectReasonCode::ReceiveMaximumExceeded,
                    format!(
                        "more than {} QoS 2 publishes awaiting release",
                        self.hub.config.receive_maximum
                    ),
                )
                .into());
            }
        }
        if !self.identity.may_publish(&topic) {
            tracing::info!(client_id = %self.client_id, user = ?self.identity.user, topic = %topic, "publish denied by the ACL");
            let reason = self.reason("not authorised to publish to this topic");
            self.ack(qos, pid, true, reason);
            return Ok(());
        }
        let msg = Arc::new(Message {
            topic: Arc::from(&*topic),
            payload: p.payload,
            qos,
            retain: p.retain,
            props: Props::from_publish(&p.properties),
            created_ms: now_ms(),
            origin: Some(self.client_id.clone()),
        });
        if let Err(e) = self.hub.publish(msg).await {
            if qos == QoS::Level0 || !self.version.is_v5() {
                return Err(End::Internal(e));
            }
            tracing::error!(client_id = %self.client_id, topic = %topic, error = %e, "cannot store a published message");
            let code = 0x80;
            self.ack_code(
                qos,
                pid,
                code,
                self.reason("the server could not store the message"),
            );
            return Ok(());
        }
        self.ack(qos, pid, false, None);
        Ok(())
    }

    fn ack(&mut self, qos: QoS, pid: Option<Pid>, denied: bool, reason: Option<Arc<str>>) {
        let code = if denied && self.version.is_v5() {
            0x87
        } else {
            0
        };
        self.ack_code(qos, pid, code, reason);
    }

    fn ack_code(&mut self, qos: QoS, pid: Option<Pid>, code: u8, reason: Option<Arc<str>>) {
        let Some(pid) = pid else { return };
        match qos {
            QoS::Level0 => {}
            QoS::Level1 => {
                let mut a = v5::Puback::new(
                    pid,
                    v5::PubackReasonCode::from_u8(code).unwrap_or(v5::PubackReasonCode::Success),
                );
                a.properties.reason_string = reason;
                self.send(&v5::Packet::Puback(a));
            }
            QoS::Level2 => {
                if code < 0x80 {
                    self.session.live.lock().awaiting_rel.insert(pid.value());
                }
                let mut a = v5::Pubrec::new(
                    pid,
                    v5::PubrecReasonCode::from_u8(code).unwrap_or(v5::PubrecReasonCode::Success),
                );
                a.properties.reason_string = reason;
                self.send(&v5::Packet::Pubrec(a));
            }
        }
    }

    async fn on_subscribe(&mut self, s: v5::Subscribe) -> Result<(), End> {
        let sub_id = s.properties.subscription_id.map(|v| v.value());
        if sub_id == Some(0) {
            return Err(BadInput::protocol("subscription identifier 0").into());
        }
        let mut codes = Vec::with_capacity(s.topics.len());
        let mut retained: Vec<Delivery> = Vec::new();
        let mut denied = false;
        for (filter, opts) in &s.topics {
            let full: &str = filter;
            let (group, f) = split_shared(full);
            if full.starts_with("$share/") {
                let bad_group = group.is_none_or(|g| g.is_empty() || g.contains(['+', '#']));
                if bad_group || f.is_empty() {
                    codes.push(v5::SubscribeReasonCode::TopicFilterInvalid);
                    continue;
                }
                if opts.no_local && self.version.is_v5() {
                    return Err(BadInput::protocol("no local on a shared subscription").into());
                }
            }
            if !self.identity.may_subscribe(f) {
                tracing::info!(client_id = %self.client_id, user = ?self.identity.user, filter = %full, "subscribe denied by the ACL");
                codes.push(v5::SubscribeReasonCode::NotAuthorized);
                denied = true;
                continue;
            }
            let v5c = self.version.is_v5();
            let so = SubOptions {
                qos: opts.max_qos as u8,
                no_local: v5c && opts.no_local,
                retain_as_published: v5c && opts.retain_as_published,
                retain_handling: if v5c { opts.retain_handling as u8 } else { 0 },
                id: sub_id,
            };
            let existed = self
                .hub
                .subscribe(&self.session, full, so)
                .await
                .map_err(End::Internal)?;
            codes.push(match opts.max_qos {
                QoS::Level0 => v5::SubscribeReasonCode::GrantedQoS0,
                QoS::Level1 => v5::SubscribeReasonCode::GrantedQoS1,
                QoS::Level2 => v5::SubscribeReasonCode::GrantedQoS2,
            });
            let send_retained = group.is_none()
                && (so.retain_handling == 0 || (so.retain_handling == 1 && !existed));
            if send_retained {
                for m in self.hub.retained_for(f) {
                    let qos = QoS::from_u8((m.qos as u8).min(so.qos)).unwrap_or(QoS::Level0);
                    retained.push(Delivery {
                        msg: m,
                        qos,
                        retain: true,
                        sub_ids: sub_id.into_iter().collect(),
                        queue_offset: None,
                        pid: None,
                    });
                }
            }
        }
        let mut ack = v5::Suback::new(s.pid, codes);
        if denied {
            ack.properties.reason_string = self.reason("not authorised to subscribe to a filter");
        }
        self.send(&v5::Packet::Suback(ack));
        for d in retained {
            self.deliver(d);
        }
        Ok(())
    }
}
