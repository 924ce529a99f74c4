//! A small MQTT 3.1.1 client for load generation, on `mqtt-proto`'s codec: both servers under
//! test get exactly the same bytes, and the client costs little CPU of its own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use mqtt_proto::v3::{self, Packet};
use mqtt_proto::{Pid, QoS, QosPid, TopicFilter, TopicName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The reading half: packets in.
#[derive(Debug)]
pub struct Reader {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

/// The writing half: packets out, buffered until `flush`.
#[derive(Debug)]
pub struct Writer {
    wr: OwnedWriteHalf,
    buf: BytesMut,
}

fn frame_len(buf: &[u8]) -> Option<usize> {
    let mut remaining = 0usize;
    for i in 0..4 {
        let b = *buf.get(1 + i)?;
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let total = 2 + i + remaining;
            return (buf.len() >= total).then_some(total);
        }
    }
    None
}

impl Reader {
    /// The next packet; an error at end of stream.
    pub async fn next(&mut self) -> Result<Packet> {
        loop {
            if let Some(len) = frame_len(&self.buf) {
                let frame = self.buf.split_to(len);
                return Packet::decode(&frame)
                    .map_err(|e| anyhow::anyhow!("bad packet from the server: {e}"))?
                    .context("truncated packet from the server");
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}

impl Writer {
    /// Buffers a packet.
    pub fn push(&mut self, p: &Packet) {
        let bytes = p.encode().expect("bench packets are valid");
        self.buf.extend_from_slice(bytes.as_ref());
    }

    /// Writes out what is buffered.
    pub async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Connects (from `bind`, when given, so that many connections can share one server port),
/// sends CONNECT with a clean session and waits for CONNACK.
pub async fn connect(
    server: SocketAddr,
    bind: Option<IpAddr>,
    client_id: &str,
    keep_alive: u16,
) -> Result<(Reader, Writer)> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = bind {
        // Choose the port at connect time, so that ports in TIME_WAIT from an earlier run
        // against another server port stay usable.
        let yes: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and an int option of the right size.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&yes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let (rd, wr) = stream.into_split();
    let mut reader = Reader {
        rd,
        buf: BytesMut::new(),
    };
    let mut writer = Writer {
        wr,
        buf: BytesMut::new(),
    };
    writer.push(&Packet::Connect(v3::Connect::new(
        Arc::from(client_id),
        keep_alive,
    )));
    writer.flush().await?;
    match reader.next().await? {
        Packet::Connack(a) if a.code == v3::ConnectReturnCode::Accepted => {}
        other => bail!("CONNECT refused: {other:?}"),
    }
    Ok((reader, writer))
}

/// Subscribes to one filter and waits for SUBACK.
pub async fn subscribe(r: &mut Reader, w: &mut Writer, filter: &str, qos: QoS) -> Result<()> {
    let filter = TopicFilter::try_from(filter).map_err(|e| anyhow::anyhow!("{e}"))?;
    w.push(&Packet::Subscribe(v3::Subscribe::new(
        Pid::try_from(1).expect("non-zero"),
        vec![(filter, qos)],
    )));
    w.flush().await?;
    match r.next().await? {
        Packet::Suback(s)
            if s.topics
                .iter()
                .all(|c| *c != v3::SubscribeReturnCode::Failure) =>
        {
            Ok(())
        }
        other => bail!("SUBSCRIBE refused: {other:?}"),
    }
}

/// A PUBLISH packet.
pub fn publish(topic: &TopicName, qos: QoS, pid: u16, payload: Bytes) -> Packet {
    let pid = Pid::try_from(pid.max(1)).expect("non-zero");
    let qos_pid = match qos {
        QoS::Level0 => QosPid::Level0,
        QoS::Level1 => QosPid::Level1(pid),
        QoS::Level2 => QosPid::Level2(pid),
    };
    Packet::Publish(v3::Publish::new(qos_pid, topic.clone(), payload))
}
