//! One client connection: CONNECT, then packets both ways until either side ends it.
//!
//! - `connect` — the handshake: read CONNECT, assign the client id, authenticate, attach the
//!   session, CONNACK
//! - `inbound` — packets from the client
//! - `outbound` — deliveries to the client, their packet ids and flow control
//! - `finish` — the goodbye: DISCONNECT, the session handed back, the will

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use mqtt_proto::TopicName;
use mqtt_proto::v5;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod connect;
mod finish;
mod inbound;
mod outbound;

use crate::auth::Identity;
use crate::hub::{Delivery, Hub, Outbound, Session};
use crate::packet::{self, BadInput, Version};

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
    let result = Box::pin(connect::connect(&hub, &mut rd, &mut wr, &mut inbuf, &peer)).await;
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
    pub(super) fn send(&mut self, p: &v5::Packet) {
        packet::encode(self.version, p, &mut self.out);
    }

    pub(super) fn reason(&self, text: &str) -> Option<Arc<str>> {
        (self.problem_info && self.version.is_v5()).then(|| Arc::from(text))
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
        let linger = Box::pin(self.finish(end, wr)).await;
        // The session is detached: a client reconnecting with this id need not wait for the
        // linger.
        self._guard = None;
        if linger {
            Box::pin(finish::linger(rd)).await;
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
}
