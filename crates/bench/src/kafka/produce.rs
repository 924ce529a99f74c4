//! The producer: librdkafka through rdkafka's `ThreadedProducer`, whose own thread polls for
//! delivery reports, so that each report is timed when it arrives rather than when the sender
//! next looks.
//!
//! Every message carries its enqueue time as the delivery opaque (nanoseconds since the run's
//! start), and the delivery callback records enqueue → report in a histogram. Before timing,
//! one warm-up message per partition is produced and flushed, so that metadata, connections
//! and the broker's first append to each partition are not part of any figure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};

use super::args::{Amount, Plan};
use super::pace::{self, Lag, Schedule};
use super::stats::BatchTotals;
use super::values::Values;
use crate::latency::Latencies;

/// How often librdkafka reports statistics, in milliseconds.
const STATS_INTERVAL_MS: u64 = 100;
/// The delivery opaque of warm-up messages, which no figure includes.
const WARMUP: usize = usize::MAX;
/// Longest wait for outstanding deliveries at the end of a phase.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// What the delivery callback has seen.
#[derive(Debug, Default)]
struct Deliveries {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    warm_ok: u64,
    latencies: Latencies,
    last: Option<Instant>,
}

/// The producer's context: delivery reports and statistics land here, on the polling thread.
#[derive(Debug)]
struct Ctx {
    start: Instant,
    topic: String,
    deliveries: Mutex<Deliveries>,
    batches: Mutex<BatchTotals>,
    stats_seen: AtomicU64,
}

impl ClientContext for Ctx {
    fn stats_raw(&self, json: &[u8]) {
        lock(&self.batches).add_json(json, &self.topic);
        self.stats_seen.fetch_add(1, Ordering::Release);
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, enqueued: usize) {
        let now = Instant::now();
        let mut d = lock(&self.deliveries);
        match result {
            Ok(_) if enqueued == WARMUP => d.warm_ok += 1,
            Ok(_) => {
                d.ok += 1;
                d.latencies
                    .record(now - (self.start + Duration::from_nanos(enqueued as u64)));
                d.last = Some(now);
            }
            Err((e, _)) => {
                d.errors += 1;
                d.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one producing phase did.
#[derive(Debug)]
pub struct Produced {
    /// Messages enqueued (warm-up excluded).
    pub sent: u64,
    /// Messages acknowledged.
    pub ok: u64,
    /// Messages whose delivery failed, and the first failure.
    pub errors: u64,
    pub first_error: Option<String>,
    /// First enqueue to last delivery report.
    pub secs: f64,
    /// First enqueue to last enqueue.
    pub send_secs: f64,
    /// Enqueue → delivery report of each acknowledged message.
    pub latencies: Latencies,
    /// Paced phases: how far the sender fell behind.
    pub lag: Option<Lag>,
    /// The batches librdkafka formed, from its statistics.
    pub batches: BatchTotals,
}

/// A connected producer for the benchmark topic.
pub struct Producer {
    inner: ThreadedProducer<Ctx>,
    topic: String,
    partitions: u32,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Producer {
    /// A producer with the plan's settings; `start` is the instant enqueue times count from.
    pub fn new(plan: &Plan, topic: &str, start: Instant) -> Result<Producer> {
        let a = &plan.args;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &a.bootstrap)
            .set("client.id", "strata-bench-producer")
            .set("socket.nagle.disable", "true")
            .set("acks", a.acks.as_str())
            .set("linger.ms", a.linger_ms.to_string())
            .set("batch.size", a.batch_size.to_string())
            .set("compression.type", a.compression.as_str())
            .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string());
        let ctx = Ctx {
            start,
            topic: topic.to_owned(),
            deliveries: Mutex::default(),
            batches: Mutex::default(),
            stats_seen: AtomicU64::new(0),
        };
        let inner: ThreadedProducer<Ctx> = config
            .create_with_context(ctx)
            .context("creating the Kafka producer")?;
        Ok(Producer {
            inner,
            topic: topic.to_owned(),
            partitions: plan.args.partitions,
        })
    }

    /// Enqueues one message, waiting while librdkafka's queue is full; the opaque is the enqueue
    /// time unless `warmup`.
    fn send(&self, value: &[u8], partition: Option<i32>, warmup: bool) -> Result<()> {
        loop {
            let ctx = self.inner.context();
            let enqueued = if warmup {
                WARMUP
            } else {
                ctx.start.elapsed().as_nanos() as usize
            };
            let mut record =
                BaseRecord::<(), [u8], usize>::with_opaque_to(&self.topic, enqueued).payload(value);
            record.partition = partition;
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err((e, _)) => return Err(e).context("enqueueing a message"),
            }
        }
    }

    /// Produces one marked message to each partition and waits for all of them, so that the
    /// timed phase starts with metadata known and connections open.
    pub fn warm_up(&self, values: &mut Values) -> Result<()> {
        for p in 0..self.partitions {
            self.send(values.warmup(), Some(p as i32), true)?;
        }
        self.flush().context("warming up")?;
        // Leave the warm-up batches out of the statistics of the timed phase.
        self.await_stats();
        *lock(&self.inner.context().batches) = BatchTotals::default();
        let d = lock(&self.inner.context().deliveries);
        if d.warm_ok != u64::from(self.partitions) {
            bail!(
                "warm-up: {} of {} messages acknowledged; first error: {}",
                d.warm_ok,
                self.partitions,
                d.first_error.as_deref().unwrap_or("none")
            );
        }
        Ok(())
    }

    /// Produces as fast as librdkafka accepts messages, for `amount`.
    pub fn flat_out(&self, amount: Amount, values: &mut Values) -> Result<Produced> {
        let (mut sent, first) = (0u64, Instant::now());
        let deadline = match amount {
            Amount::For(d) => Some(first + d),
            Amount::Messages(_) => None,
        };
        loop {
            match amount {
                Amount::Messages(n) if sent >= n => break,
                // Checking the clock every 64 messages keeps it off the per-message path.
                Amount::For(_)
                    if sent % 64 == 0 && deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    break;
                }
                _ => {}
            }
            self.send(values.next(None), None, false)?;
            sent += 1;
        }
        let send_secs = first.elapsed().as_secs_f64();
        self.finish(sent, first, send_secs, None)
    }

    /// Produces `total` messages on `schedule`; with `stamp`, each value starts with its send
    /// time in nanoseconds since the run's start (little-endian), for an end-to-end consumer.
    pub fn paced(
        &self,
        schedule: Schedule,
        total: u64,
        stamp: bool,
        values: &mut Values,
    ) -> Result<Produced> {
        let start = self.inner.context().start;
        let first = Instant::now();
        let (lag, span) = pace::paced(schedule, total, |_| {
            let at = stamp.then(|| start.elapsed().as_nanos() as u64);
            self.send(values.next(at), None, false)
        })?;
        self.finish(total, first, span.as_secs_f64(), Some(lag))
    }

    /// Waits for every delivery and one more statistics report, then adds up the phase.
    fn finish(
        &self,
        sent: u64,
        first: Instant,
        send_secs: f64,
        lag: Option<Lag>,
    ) -> Result<Produced> {
        self.flush()?;
        self.await_stats();
        let ctx = self.inner.context();
        let mut d = lock(&ctx.deliveries);
        let last = d.last.unwrap_or(first);
        let batches = std::mem::take(&mut *lock(&ctx.batches));
        Ok(Produced {
            sent,
            ok: std::mem::take(&mut d.ok),
            errors: std::mem::take(&mut d.errors),
            first_error: d.first_error.take(),
            secs: last
                .saturating_duration_since(first)
                .as_secs_f64()
                .max(1e-9),
            send_secs,
            latencies: std::mem::take(&mut d.latencies),
            lag,
            batches,
        })
    }

    /// Waits (briefly) for two more statistics reports after a flush: the last batches are in
    /// the window of the next report, and the one after it surely covers them.
    fn await_stats(&self) {
        let ctx = self.inner.context();
        let seen = ctx.stats_seen.load(Ordering::Acquire);
        let give_up = Instant::now() + Duration::from_millis(STATS_INTERVAL_MS * 8);
        while ctx.stats_seen.load(Ordering::Acquire) < seen + 2 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn flush(&self) -> Result<()> {
        self.inner
            .flush(FLUSH_TIMEOUT)
            .with_context(|| format!("waiting {FLUSH_TIMEOUT:?} for outstanding deliveries"))
    }
}
