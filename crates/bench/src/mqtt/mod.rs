//! `strata-bench mqtt`: drives a running `strata serve` over MQTT and, with `--mosquitto`,
//! a Debian `mosquitto` it starts itself on a free port, with the same load in the same run.
//! Prints one JSON line per server and case.
//!
//! Cases:
//! - `throughput`: M subscribers on `bench/<run>/#`, N publishers each sending `--messages`
//!   messages as fast as the server takes them (QoS 1 and 2 with a window of in-flight
//!   messages); reports messages delivered per second from the first publish to the last
//!   delivery, and how many were lost (QoS 0 may drop under load).
//! - `latency`: one publisher at `--rate`, one subscriber; each payload carries its send time;
//!   percentiles of publish-to-delivery time.
//! - `connections`: `--connections` idle clients (clean sessions); the server's resident memory
//!   before and after, per connection.

mod client;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Args, ValueEnum};
use mqtt_proto::v3::Packet;
use mqtt_proto::{QoS, TopicName};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::host::{Host, nofile_limit};
use crate::latency::Latencies;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Case {
    /// N publishers → M subscribers, flat out.
    Throughput,
    /// One publisher at a fixed rate → one subscriber.
    Latency,
    /// Many idle connections: memory per connection.
    Connections,
}

/// Flags of `strata-bench mqtt`.
#[derive(Debug, Clone, Args)]
pub struct MqttArgs {
    /// The Strata MQTT listener.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub server: SocketAddr,
    /// Process id of that server, for its memory (connections case).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Also start a Debian `mosquitto` on a free port and measure it in the same run.
    #[arg(long)]
    pub mosquitto: bool,
    /// The mosquitto binary.
    #[arg(long, default_value = "mosquitto")]
    pub mosquitto_bin: PathBuf,
    /// Which case.
    #[arg(long, value_enum, default_value = "throughput")]
    pub case: Case,
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Publishers (throughput).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscribers (throughput).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Payload bytes.
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Messages per publisher (throughput).
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// In-flight QoS 1/2 messages per publisher (throughput).
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Messages per second (latency).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds of the timed phase (latency).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Idle connections (connections).
    #[arg(long, default_value_t = 50_000)]
    pub connections: usize,
    /// Label for the JSON line.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Append the JSON lines to this file too.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
}

/// One server's result in one case.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub bench: &'static str,
    pub label: String,
    pub unix_time: u64,
    /// `strata` or `mosquitto`.
    pub server: &'static str,
    pub case: &'static str,
    pub qos: u8,
    pub publishers: usize,
    pub subscribers: usize,
    pub payload_bytes: usize,
    pub secs: f64,
    /// Messages published.
    pub published: u64,
    /// Messages delivered, over all subscribers.
    pub delivered: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Deliveries per second.
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub rate_target: Option<u64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub connections: Option<usize>,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// (after − before) ÷ connections.
    pub kib_per_connection: Option<f64>,
    /// This server's msgs/s (or KiB per connection) ÷ mosquitto's in the same run.
    pub vs_mosquitto: Option<f64>,
    pub mosquitto_version: Option<String>,
    #[serde(flatten)]
    pub host: Host,
}

/// Runs the case against Strata (and mosquitto); prints and returns the lines.
pub fn run(args: MqttArgs) -> Result<Vec<Report>> {
    if args.qos > 2 {
        bail!("--qos must be 0, 1 or 2");
    }
    raise_nofile();
    let host = Host::probe(Path::new("."));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let mut mosquitto = if args.mosquitto {
        Some(Mosquitto::start(&args.mosquitto_bin)?)
    } else {
        None
    };
    let mut out = Vec::new();
    let strata = runtime.block_on(measure(
        &args,
        args.server,
        args.server_pid,
        "strata",
        &host,
    ))?;
    out.push(strata);
    if let Some(m) = &mut mosquitto {
        let mut r = runtime.block_on(measure(
            &args,
            m.addr,
            Some(m.child.id()),
            "mosquitto",
            &host,
        ))?;
        r.mosquitto_version = Some(m.version.clone());
        let (s, o) = (&out[0], &r);
        let ratio = match args.case {
            Case::Connections => match (s.kib_per_connection, o.kib_per_connection) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            },
            Case::Latency => match (s.p99_us, o.p99_us) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            },
            Case::Throughput => (o.msgs_per_s > 0.0).then(|| s.msgs_per_s / o.msgs_per_s),
        };
        out[0].vs_mosquitto = ratio;
        out[0].mosquitto_version = Some(m.version.clone());
        out.push(r);
    }
    for r in &out {
        crate::report::emit(r, args.jsonl.as_deref())?;
    }
    Ok(out)
}

/// Raises the soft descriptor limit to the hard one (and the hard one too, when allowed), so
/// that tens of thousands of connections fit; mosquitto inherits it.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: 1 << 20,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

struct Mosquitto {
    child: Child,
    addr: SocketAddr,
    version: String,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start(bin: &Path) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = tempfile::tempdir()?;
        let conf = dir.path().join("mosquitto.conf");
        // The same limits Strata applies: 10,000 queued messages per client, no limit on
        // in-flight messages for 3.1.1 clients (Strata has none either), no persistence
        // (Strata's QoS 0 path never touches the disk either), Nagle off.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\nmax_inflight_messages 0\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\n"
            ),
        )?;
        let version = Command::new(bin)
            .arg("-h")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} (apt-get install mosquitto)", bin.display()))?;
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Mosquitto {
            child,
            addr,
            version,
            _dir: dir,
        })
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn qos_of(q: u8) -> QoS {
    QoS::from_u8(q).unwrap_or(QoS::Level0)
}

fn unix_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn blank(args: &MqttArgs, server: &'static str, host: &Host) -> Report {
    Report {
        bench: "mqtt",
        label: args.label.clone(),
        unix_time: unix_time(),
        server,
        case: match args.case {
            Case::Throughput => "throughput",
            Case::Latency => "latency",
            Case::Connections => "connections",
        },
        qos: args.qos,
        publishers: args.publishers,
        subscribers: args.subscribers,
        payload_bytes: args.payload_bytes,
        secs: 0.0,
        published: 0,
        delivered: 0,
        lost: 0,
        msgs_per_s: 0.0,
        mb_per_s: 0.0,
        rate_target: None,
        p50_us: None,
        p99_us: None,
        p999_us: None,
        max_us: None,
        connections: None,
        rss_before_kib: None,
        rss_after_kib: None,
        kib_per_connection: None,
        vs_mosquitto: None,
        mosquitto_version: None,
        host: host.clone(),
    }
}

async fn measure(
    args: &MqttArgs,
    addr: SocketAddr,
    pid: Option<u32>,
    server: &'static str,
    host: &Host,
) -> Result<Report> {
    let mut r = blank(args, server, host);
    match args.case {
        Case::Throughput => throughput(args, addr, &mut r).await?,
        Case::Latency => latency(args, addr, &mut r).await?,
        Case::Connections => {
            let net = if server == "strata" { 1 } else { 2 };
            connections(args, addr, pid, net, &mut r).await?
        }
    }
    Ok(r)
}

/// Reads deliveries until `expected` arrived or nothing came for two seconds; acknowledges
/// QoS 1 and 2. Returns the count and the time of the last delivery.
async fn subscriber_loop(
    mut rd: client::Reader,
    wr: Arc<tokio::sync::Mutex<client::Writer>>,
    expected: u64,
    mut on_payload: impl FnMut(&Bytes),
) -> Result<(u64, Instant)> {
    let mut got = 0u64;
    let mut last = Instant::now();
    while got < expected {
        let p = match tokio::time::timeout(Duration::from_secs(2), rd.next()).await {
            Err(_) => break,
            Ok(p) => p?,
        };
        match p {
            Packet::Publish(p) => {
                got += 1;
                last = Instant::now();
                on_payload(&p.payload);
                let ack = match p.qos_pid {
                    mqtt_proto::QosPid::Level0 => None,
                    mqtt_proto::QosPid::Level1(pid) => Some(Packet::Puback(pid)),
                    mqtt_proto::QosPid::Level2(pid) => Some(Packet::Pubrec(pid)),
                };
                if let Some(a) = ack {
                    let mut w = wr.lock().await;
                    w.push(&a);
                    w.flush().await?;
                }
            }
            Packet::Pubrel(pid) => {
                let mut w = wr.lock().await;
                w.push(&Packet::Pubcomp(pid));
                w.flush().await?;
            }
            _ => {}
        }
    }
    Ok((got, last))
}

async fn throughput(args: &MqttArgs, addr: SocketAddr, r: &mut Report) -> Result<()> {
    let run = format!("{}-{}", std::process::id(), unix_time());
    let qos = qos_of(args.qos);
    let expected = args.messages * args.publishers as u64;
    let mut subs = Vec::new();
    for i in 0..args.subscribers {
        let (mut rd, mut wr) =
            client::connect(addr, None, &format!("bench-sub-{run}-{i}"), 300).await?;
        client::subscribe(&mut rd, &mut wr, &format!("bench/{run}/#"), qos).await?;
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        subs.push(tokio::spawn(subscriber_loop(rd, wr, expected, |_| {})));
    }
    let payload = Bytes::from(vec![b'x'; args.payload_bytes]);
    let start = Instant::now();
    let mut pubs = Vec::new();
    for i in 0..args.publishers {
        let (rd, wr) = client::connect(addr, None, &format!("bench-pub-{run}-{i}"), 300).await?;
        let topic = TopicName::try_from(format!("bench/{run}/{i}").as_str())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        pubs.push(tokio::spawn(publisher(
            rd,
            wr,
            topic,
            qos,
            args.messages,
            args.window,
            payload.clone(),
        )));
    }
    let mut published = 0;
    for p in pubs {
        published += p.await??;
    }
    let mut delivered = 0;
    let mut last = start;
    for s in subs {
        let (n, t) = s.await??;
        delivered += n;
        last = last.max(t);
    }
    let secs = last.duration_since(start).as_secs_f64().max(1e-9);
    r.secs = secs;
    r.published = published;
    r.delivered = delivered;
    r.lost = expected * args.subscribers as u64 - delivered;
    r.msgs_per_s = delivered as f64 / secs;
    r.mb_per_s = r.msgs_per_s * args.payload_bytes as f64 / 1e6;
    Ok(())
}

/// Publishes `count` messages; QoS 1/2 keep at most `window` unacknowledged.
async fn publisher(
    mut rd: client::Reader,
    wr: client::Writer,
    topic: TopicName,
    qos: QoS,
    count: u64,
    window: usize,
    payload: Bytes,
) -> Result<u64> {
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let permits = Arc::new(Semaphore::new(window.max(1)));
    let acked = Arc::new(AtomicU64::new(0));
    let reader = if qos == QoS::Level0 {
        None
    } else {
        let wr = wr.clone();
        let permits = permits.clone();
        let acked = acked.clone();
        Some(tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < count {
                match rd.next().await? {
                    Packet::Puback(_) | Packet::Pubcomp(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        permits.add_permits(1);
                    }
                    Packet::Pubrec(pid) => {
                        let mut w = wr.lock().await;
                        w.push(&Packet::Pubrel(pid));
                        w.flush().await?;
                    }
                    _ => {}
                }
            }
            anyhow::Ok(())
        }))
    };
    let mut pid: u16 = 0;
    let mut sent = 0u64;
    while sent < count {
        let mut batch = 0;
        let mut w = wr.lock().await;
        while sent < count && batch < 64 {
            if qos != QoS::Level0 {
                match permits.try_acquire() {
                    Ok(p) => p.forget(),
                    Err(_) if batch > 0 => break,
                    Err(_) => {
                        drop(w);
                        permits.acquire().await?.forget();
                        w = wr.lock().await;
                    }
                }
            }
            pid = pid.wrapping_add(1).max(1);
            w.push(&client::publish(&topic, qos, pid, payload.clone()));
            sent += 1;
            batch += 1;
        }
        w.flush().await?;
    }
    if let Some(reader) = reader {
        reader.await??;
    }
    Ok(sent)
}

async fn latency(args: &MqttArgs, addr: SocketAddr, r: &mut Report) -> Result<()> {
    let run = format!("{}-{}", std::process::id(), unix_time());
    let qos = qos_of(args.qos);
    let origin = Instant::now();
    let (mut srd, mut swr) = client::connect(addr, None, &format!("bench-lsub-{run}"), 300).await?;
    let topic_s = format!("bench/{run}/lat");
    client::subscribe(&mut srd, &mut swr, &topic_s, qos).await?;
    let total = args.rate * args.duration_secs;
    let warmup = args.rate.min(total / 10);
    let swr = Arc::new(tokio::sync::Mutex::new(swr));
    let hist = Arc::new(parking_hist());
    let sub = {
        let hist = hist.clone();
        tokio::spawn(subscriber_loop(srd, swr, total, move |payload| {
            if payload.len() >= 16 {
                let seq = u64::from_be_bytes(payload[8..16].try_into().expect("8 bytes"));
                let sent = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                if seq >= warmup {
                    let now = origin.elapsed().as_nanos() as u64;
                    hist.lock()
                        .expect("histogram lock")
                        .record(Duration::from_nanos(now.saturating_sub(sent)));
                }
            }
        }))
    };
    let (prd, mut pwr) = client::connect(addr, None, &format!("bench-lpub-{run}"), 300).await?;
    let topic = TopicName::try_from(topic_s.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Acknowledgements are read and dropped.
    let drain = tokio::spawn(async move {
        let mut rd = prd;
        while rd.next().await.is_ok() {}
    });
    // The publisher paces itself on a thread of its own with the OS's fine-grained sleep, so
    // that messages leave evenly spaced rather than in bursts per timer tick.
    let period = Duration::from_nanos(1_000_000_000 / args.rate.max(1));
    let size = args.payload_bytes.max(16);
    let handle = tokio::runtime::Handle::current();
    let start = Instant::now();
    tokio::task::spawn_blocking(move || -> Result<()> {
        for seq in 0..total {
            let due = start + period * seq as u32;
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
            }
            let mut p = BytesMut::with_capacity(size);
            p.put_u64(origin.elapsed().as_nanos() as u64);
            p.put_u64(seq);
            p.resize(size, b'x');
            let pid = (seq % 65_535 + 1) as u16;
            pwr.push(&client::publish(&topic, qos, pid, p.freeze()));
            handle.block_on(pwr.flush())?;
        }
        Ok(())
    })
    .await??;
    let secs = start.elapsed().as_secs_f64();
    let (got, _) = sub.await??;
    drain.abort();
    let h = hist.lock().expect("histogram lock");
    r.secs = secs;
    r.published = total;
    r.delivered = got;
    r.lost = total - got;
    r.msgs_per_s = got as f64 / secs;
    r.mb_per_s = r.msgs_per_s * size as f64 / 1e6;
    r.rate_target = Some(args.rate);
    r.p50_us = h.quantile_us(0.5);
    r.p99_us = h.quantile_us(0.99);
    r.p999_us = h.quantile_us(0.999);
    r.max_us = h.max_us();
    Ok(())
}

fn parking_hist() -> std::sync::Mutex<Latencies> {
    std::sync::Mutex::new(Latencies::default())
}

async fn connections(
    args: &MqttArgs,
    addr: SocketAddr,
    pid: Option<u32>,
    net: u8,
    r: &mut Report,
) -> Result<()> {
    let run = format!("{}-{}", std::process::id(), unix_time());
    // One descriptor per connection here and in the server; refuse rather than hang.
    let limit = nofile_limit();
    if args.connections as u64 + 200 > limit {
        bail!(
            "{} connections need as many descriptors, and the limit here is {limit} (ulimit -n; raising it needs root with CAP_SYS_RESOURCE)",
            args.connections
        );
    }
    let before = pid.and_then(rss_kib);
    let start = Instant::now();
    let limit = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        // A loopback source address per 20,000 connections (one address has ~28,000 ports),
        // and other addresses for each server.
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, net, 1 + (i / 20_000) as u8));
        let permit = limit.clone().acquire_owned().await?;
        let id = format!("bench-idle-{run}-{i}");
        tasks.push(tokio::spawn(async move {
            let c = tokio::time::timeout(
                Duration::from_secs(10),
                client::connect(addr, Some(ip), &id, 900),
            )
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no CONNACK within 10 s")));
            drop(permit);
            c
        }));
    }
    let mut held = Vec::with_capacity(tasks.len());
    for t in tasks {
        held.push(t.await??);
    }
    r.secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pid.and_then(rss_kib);
    r.connections = Some(held.len());
    r.rss_before_kib = before;
    r.rss_after_kib = after;
    if let (Some(b), Some(a)) = (before, after) {
        r.kib_per_connection = Some(a.saturating_sub(b) as f64 / held.len().max(1) as f64);
    }
    r.msgs_per_s = held.len() as f64 / r.secs;
    drop(held);
    // Let the server see the closes before the next case.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}
