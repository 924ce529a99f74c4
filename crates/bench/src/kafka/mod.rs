//! `strata-bench kafka`: drives a running `strata serve` through a real Kafka client
//! (librdkafka, through the `rdkafka` crate) and reports one JSON line, beside the storage
//! engine's own figure for the same records measured in the same run.
//!
//! A run: create a topic with the asked storage (AdminClient) and read back the spec the node
//! gave it → warm up → the timed phase of the mode (produce flat out, produce at a rate,
//! produce and consume at a rate, or consume what an untimed produce wrote) → open the same
//! engine and model directly in a temporary directory and append the same records in batches
//! of the size the client formed (and read them back, for consume) → delete the topic → report.

mod admin;
mod args;
mod consume;
mod engine;
mod pace;
mod produce;
mod report;
mod stats;
mod values;

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use strata_storage::StorageSpec;

pub use args::{Acks, Codec, DurabilityArg, EngineArg, KafkaArgs, Mode, ModelArg, Plan};
pub use report::Report;

use crate::host::Host;
use crate::latency::Latencies;

use admin::Admin;
use consume::{Consumed, EndToEnd};
use engine::{Load, Reference};
use pace::Schedule;
use produce::{Produced, Producer};
use values::Values;

/// Runs one benchmark, prints its JSON line and appends it to `--jsonl`. A run in which
/// deliveries failed still reports, then returns an error.
pub fn run(args: KafkaArgs) -> Result<Report> {
    let plan = Plan::new(args)?;
    let parent = plan.args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let data = tempfile::Builder::new()
        .prefix("strata-bench-kafka-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a reference directory in {}", parent.display()))?;
    let host = Host::probe(data.path());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;

    let topic = format!(
        "strata-bench-{}-{}-{}",
        plan.args.mode.as_str(),
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let admin = Admin::connect(&plan)?;
    runtime.block_on(admin.create(&plan, &topic))?;
    let measured = runtime
        .block_on(admin.spec(&plan, &topic))
        .and_then(|spec| measure(&plan, &topic, spec, &runtime, data.path()));
    if !plan.args.keep_topic
        && let Err(e) = runtime.block_on(admin.delete(&topic))
    {
        eprintln!("strata-bench kafka: {e:#}");
    }
    let (kafka, reference, source) = measured?;
    let report = build_report(&plan, topic, host, kafka, reference, source);
    crate::report::emit(&report, Some(&plan.args.jsonl))?;
    if report.errors > 0 {
        bail!(
            "{} messages failed; first error: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(report)
}

/// What the Kafka side of a run measured.
#[derive(Debug)]
struct KafkaSide {
    /// The producing phase (for consume runs: the untimed fill).
    produced: Produced,
    /// The consumer's side, for e2e and consume runs.
    consumed: Option<Consumed>,
}

/// The timed phase of the mode, then the engine reference.
fn measure(
    plan: &Plan,
    topic: &str,
    spec: StorageSpec,
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
) -> Result<(KafkaSide, Reference, &'static str)> {
    let start = Instant::now();
    let producer = Producer::new(plan, topic, start)?;
    let mut values = Values::new(plan.record_len());
    let paced_count = match plan.amount {
        args::Amount::Messages(n) => n,
        args::Amount::For(_) => 0,
    };
    let rate = plan.rate.unwrap_or(1.0);
    let kafka = match plan.args.mode {
        Mode::Produce => {
            producer.warm_up(&mut values)?;
            let produced = producer.flat_out(plan.amount, &mut values)?;
            KafkaSide {
                produced,
                consumed: None,
            }
        }
        Mode::Latency => {
            producer.warm_up(&mut values)?;
            let schedule = Schedule::new(Instant::now(), rate);
            let produced = producer.paced(schedule, paced_count, false, &mut values)?;
            KafkaSide {
                produced,
                consumed: None,
            }
        }
        Mode::E2e => {
            let consumer = EndToEnd::start(plan, topic, start, paced_count)?;
            producer.warm_up(&mut values)?;
            consumer.wait_ready()?;
            let schedule = Schedule::new(Instant::now(), rate);
            let produced = producer.paced(schedule, paced_count, true, &mut values)?;
            let consumed = consumer.join().context("consuming end to end")?;
            KafkaSide {
                produced,
                consumed: Some(consumed),
            }
        }
        Mode::Consume => {
            producer.warm_up(&mut values)?;
            let produced = producer.flat_out(plan.amount, &mut values)?;
            // The warm-up messages are in the topic too.
            let expected = produced.ok + u64::from(plan.args.partitions);
            let consumed = consume::from_beginning(plan, topic, expected)
                .context("consuming from the beginning")?;
            KafkaSide {
                produced,
                consumed: Some(consumed),
            }
        }
    };
    drop(producer);

    let (per_batch, source) = match kafka.produced.batches.avg_messages() {
        Some(avg) => ((avg.round() as u32).max(1), "librdkafka-stats"),
        None => (
            engine::records_fitting(plan.args.batch_size, plan.record_len()),
            "batch-size",
        ),
    };
    let load = Load {
        records: kafka.produced.ok.max(1),
        record_len: plan.record_len(),
        per_batch,
        compression: plan.args.compression.record_compression(),
        partitions: plan.args.partitions,
    };
    // Write back what the node (and earlier runs) left dirty, so the reference does not pay
    // for it.
    crate::host::settle(dir)?;
    let read = plan.args.mode == Mode::Consume;
    let reference = runtime
        .block_on(engine::measure(spec, load, read, dir))
        .context("measuring the engine reference")?;
    Ok((kafka, reference, source))
}

fn build_report(
    plan: &Plan,
    topic: String,
    host: Host,
    kafka: KafkaSide,
    reference: Reference,
    source: &'static str,
) -> Report {
    let a = &plan.args;
    let p = &kafka.produced;
    let record_bytes = a.record_bytes;
    // The measured phase: the producer's, or the consumer's for e2e and consume.
    let (messages, secs, latency_of, latencies): (u64, f64, _, &Latencies) =
        match (a.mode, &kafka.consumed) {
            (Mode::E2e, Some(c)) => (c.received, c.secs, Some("end-to-end"), &c.latencies),
            (Mode::Consume, Some(c)) => (c.received, c.secs, None, &c.latencies),
            _ => (p.ok, p.secs, Some("delivery"), &p.latencies),
        };
    let bytes = match (a.mode, &kafka.consumed) {
        (Mode::Consume, Some(c)) => c.value_bytes,
        _ => messages * record_bytes,
    };
    let mb_per_s = bytes as f64 / 1e6 / secs;
    let paced = plan.rate.is_some();
    let engine = match (&reference.read, a.mode) {
        (Some(r), Mode::Consume) => r,
        _ => &reference.append,
    };
    let lag = p.lag.filter(|_| paced);
    Report {
        bench: "kafka",
        label: a.label.clone(),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        mode: a.mode.as_str(),
        topic,
        engine: a.engine.as_str(),
        model: a.model.as_str(),
        durability: plan.durability_name(),
        partitions: a.partitions,
        record_bytes,
        acks: a.acks.as_str(),
        compression: a.compression.as_str(),
        linger_ms: a.linger_ms,
        batch_size: a.batch_size,
        messages,
        secs,
        msgs_per_s: messages as f64 / secs,
        mb_per_s,
        rate_target: plan.rate,
        rate_achieved: paced.then(|| p.sent.saturating_sub(1) as f64 / p.send_secs.max(1e-9)),
        late_sends: lag.map(|l| l.late),
        max_send_lag_us: lag.map(|l| l.max.as_secs_f64() * 1e6),
        latency_of,
        p50_us: latency_of.and(latencies.quantile_us(0.5)),
        p99_us: latency_of.and(latencies.quantile_us(0.99)),
        p999_us: latency_of.and(latencies.quantile_us(0.999)),
        max_us: latency_of.and(latencies.max_us()),
        delivery_p50_us: p.latencies.quantile_us(0.5),
        delivery_p99_us: p.latencies.quantile_us(0.99),
        errors: p.errors + kafka.consumed.as_ref().map_or(0, |c| c.errors),
        first_error: p.first_error.clone(),
        first_message_ms: (a.mode == Mode::Consume)
            .then_some(kafka.consumed.as_ref())
            .flatten()
            .map(|c| c.first_after.as_secs_f64() * 1e3),
        fill_secs: (a.mode == Mode::Consume).then_some(p.secs),
        fill_msgs_per_s: (a.mode == Mode::Consume).then(|| p.ok as f64 / p.secs),
        client_batches: p.batches.batches,
        client_batch_bytes: p.batches.avg_bytes(),
        client_batch_msgs: p.batches.avg_messages(),
        engine_phase: if a.mode == Mode::Consume {
            "read"
        } else {
            "append"
        },
        engine_batch_bytes: reference.batch_bytes,
        engine_batch_msgs: reference.per_batch,
        engine_batch_source: source,
        engine_secs: engine.secs,
        engine_mb_per_s: engine.mb_per_s(),
        engine_msgs_per_s: engine.msgs_per_s(),
        engine_p50_us: engine.latencies.quantile_us(0.5),
        engine_p99_us: engine.latencies.quantile_us(0.99),
        engine_fsyncs: engine.fsyncs,
        engine_append_mb_per_s: reference.append.mb_per_s(),
        ratio: (!paced).then(|| mb_per_s / engine.mb_per_s()),
        host,
    }
}
