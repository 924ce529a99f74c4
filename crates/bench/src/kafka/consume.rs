//! The consumers: one that reads while the producer sends (end-to-end latency), and one that
//! reads a filled topic from the beginning with a fresh group (throughput).
//!
//! Both poll rdkafka's `BaseConsumer` on a thread of their own. A run stops when the expected
//! messages have arrived, or fails after [`IDLE_LIMIT`] without any.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::args::Plan;
use super::values::{is_warmup, stamp_of};
use crate::latency::Latencies;

/// librdkafka stops fetching a partition whose local queue is over `queued.min.messages` and,
/// since 2.1, waits `fetch.queue.backoff.ms` (default 1000) before fetching it again. A
/// consumer slower than the node then idles most of the time: 100-byte records consumed at
/// 370,000/s with the default and 1,500,000/s with 10 ms here. The bench measures the node, so
/// it retries soon.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// A consumer that receives nothing for this long gives up.
pub const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// What a consumer received.
#[derive(Debug, Default)]
pub struct Consumed {
    /// Messages counted (end-to-end: warm-up excluded).
    pub received: u64,
    /// Bytes of their values.
    pub value_bytes: u64,
    /// From the first message counted to the last.
    pub secs: f64,
    /// From subscribing (or assigning) to the first message.
    pub first_after: Duration,
    /// End-to-end runs: send → receive of each message.
    pub latencies: Latencies,
    /// Errors the client reported and recovered from.
    pub errors: u64,
}

fn consumer(plan: &Plan, group: &str) -> Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", &plan.args.bootstrap)
        .set("client.id", "strata-bench-consumer")
        .set("socket.nagle.disable", "true")
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        .create()
        .context("creating the Kafka consumer")
}

/// A consumer reading every partition of `topic` from its current end, on its own thread.
#[derive(Debug)]
pub struct EndToEnd {
    ready: mpsc::Receiver<()>,
    handle: JoinHandle<Result<Consumed>>,
}

impl EndToEnd {
    /// Assigns every partition at its high watermark, then reads until `expected` stamped
    /// messages have arrived. It is ready once it has seen one warm-up message per partition;
    /// `start` is the instant stamps count from.
    pub fn start(plan: &Plan, topic: &str, start: Instant, expected: u64) -> Result<EndToEnd> {
        let c = consumer(plan, &format!("{topic}-e2e"))?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..plan.args.partitions as i32 {
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("reading the end of {topic}/{p}"))?;
            tpl.add_partition_offset(topic, p, Offset::Offset(high))
                .context("building the assignment")?;
        }
        c.assign(&tpl).context("assigning the partitions")?;
        let partitions = u64::from(plan.args.partitions);
        let (tx, ready) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("e2e consumer".into())
            .spawn(move || {
                let mut warm = 0;
                let mut tx = Some(tx);
                poll_until(&c, expected, Instant::now(), |value, now, out| {
                    if is_warmup(value) {
                        warm += 1;
                        if warm >= partitions {
                            tx.take().map(|t| t.send(()));
                        }
                        return false;
                    }
                    if let Some(sent) = stamp_of(value) {
                        let at = start + Duration::from_nanos(sent);
                        out.latencies.record(now.saturating_duration_since(at));
                    }
                    true
                })
            })
            .context("starting the consumer thread")?;
        Ok(EndToEnd { ready, handle })
    }

    /// Waits until the consumer has seen the warm-up messages.
    pub fn wait_ready(&self) -> Result<()> {
        self.ready
            .recv_timeout(IDLE_LIMIT)
            .context("the end-to-end consumer did not see the warm-up messages")
    }

    /// Waits for the consumer to finish.
    pub fn join(self) -> Result<Consumed> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))?
    }
}

/// Reads `expected` messages of `topic` from the beginning with a fresh consumer group.
pub fn from_beginning(plan: &Plan, topic: &str, expected: u64) -> Result<Consumed> {
    let c = consumer(plan, &format!("{topic}-consume"))?;
    c.subscribe(&[topic]).context("subscribing")?;
    poll_until(&c, expected, Instant::now(), |_, _, _| true)
}

/// Polls until `count` says yes to `expected` messages. `count` sees each value with its
/// arrival time, and may record into the tally.
fn poll_until(
    c: &BaseConsumer,
    expected: u64,
    began: Instant,
    mut count: impl FnMut(&[u8], Instant, &mut Consumed) -> bool,
) -> Result<Consumed> {
    let mut out = Consumed::default();
    let (mut first, mut last) = (None, began);
    let mut progress = Instant::now();
    while out.received < expected {
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let now = Instant::now();
                let value = m.payload().unwrap_or_default();
                if count(value, now, &mut out) {
                    first.get_or_insert(now);
                    last = now;
                    out.received += 1;
                    out.value_bytes += value.len() as u64;
                }
                progress = now;
            }
            Some(Err(e)) => {
                // librdkafka reports transport errors it then retries; count them, go on.
                out.errors += 1;
                eprintln!("strata-bench kafka: consumer: {e}");
            }
        }
        if progress.elapsed() > IDLE_LIMIT {
            bail!(
                "received {} of {expected} messages, then nothing for {IDLE_LIMIT:?}",
                out.received
            );
        }
    }
    let first = first.unwrap_or(began);
    out.first_after = first - began;
    out.secs = (last - first).as_secs_f64().max(1e-9);
    Ok(out)
}
