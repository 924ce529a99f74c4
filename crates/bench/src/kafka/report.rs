//! The one JSON line a Kafka run prints, and where it goes.
//!
//! Field names follow `strata-bench storage` where the two overlap (`bench`, `label`,
//! `unix_time`, `mb_per_s`, `p50_us`…, `ratio`, and the host facts), so both benches' lines
//! can sit in one results file. Rates use MB = 10^6 bytes of record values; latencies are in
//! microseconds. Fields that do not apply to a run are `null`, never left out.

use serde::Serialize;

use crate::host::Host;

/// Everything one run measured, with the configuration and host it was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always "kafka".
    pub bench: &'static str,
    /// The `--label` given, if any.
    pub label: Option<String>,
    /// When the run ended, seconds since the Unix epoch.
    pub unix_time: u64,

    // Configuration.
    pub mode: &'static str,
    pub topic: String,
    pub engine: &'static str,
    pub model: &'static str,
    /// `os`, `fsync` or `memory`, as the node described the topic.
    pub durability: &'static str,
    pub partitions: u32,
    pub record_bytes: u64,
    pub acks: &'static str,
    pub compression: &'static str,
    pub linger_ms: u32,
    /// Producer `batch.size`.
    pub batch_size: u64,

    // The Kafka path.
    /// Messages measured: acknowledged (produce, latency), received (e2e, consume).
    pub messages: u64,
    /// The measured phase: first send to last delivery report (produce, latency), first send
    /// to last receipt (e2e), first to last message received (consume).
    pub secs: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    /// Paced runs: the asked rate, and messages sent ÷ first-to-last send.
    pub rate_target: Option<f64>,
    pub rate_achieved: Option<f64>,
    /// Paced runs: sends more than 1 ms behind schedule, and the largest delay.
    pub late_sends: Option<u64>,
    pub max_send_lag_us: Option<f64>,
    /// What p50…max time: `delivery` (enqueue → delivery report) or `end-to-end` (send →
    /// consumer receipt); null for consume runs.
    pub latency_of: Option<&'static str>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    /// e2e runs: the producer's delivery latency measured alongside.
    pub delivery_p50_us: Option<f64>,
    pub delivery_p99_us: Option<f64>,
    /// Failed deliveries (or consumer errors), and the first error.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Consume runs: subscribing to the first message (group join included), and the untimed
    /// produce that filled the topic.
    pub first_message_ms: Option<f64>,
    pub fill_secs: Option<f64>,
    pub fill_msgs_per_s: Option<f64>,

    // What the client formed, from librdkafka's statistics.
    /// Produce requests' per-partition batches, their average bytes (after compression) and
    /// messages.
    pub client_batches: u64,
    pub client_batch_bytes: Option<f64>,
    pub client_batch_msgs: Option<f64>,

    // The reference: the engine itself, same spec, same records, same batch size.
    /// `append` (produce, latency, e2e) or `read` (consume): which engine phase the figures
    /// below are.
    pub engine_phase: &'static str,
    /// Average bytes of the batches the reference appended, and records in each.
    pub engine_batch_bytes: f64,
    pub engine_batch_msgs: u32,
    /// `librdkafka-stats` (records per batch as the client formed them) or `batch-size` (no
    /// statistics arrived: as many records as fit in --batch-size).
    pub engine_batch_source: &'static str,
    pub engine_secs: f64,
    pub engine_mb_per_s: f64,
    pub engine_msgs_per_s: f64,
    /// Latency of each engine append (or read).
    pub engine_p50_us: Option<f64>,
    pub engine_p99_us: Option<f64>,
    pub engine_fsyncs: u64,
    /// Consume runs: the reference's append rate too.
    pub engine_append_mb_per_s: f64,
    /// `mb_per_s / engine_mb_per_s` for produce and consume runs; null for paced runs,
    /// whose rate is set, not measured.
    pub ratio: Option<f64>,

    /// Facts about the machine (the file system is the reference's directory's).
    #[serde(flatten)]
    pub host: Host,
}
