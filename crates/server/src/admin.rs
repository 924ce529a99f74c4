//! The admin HTTP listener: `/health` and `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use strata_broker::Broker;
use strata_mqtt::Hub;
use tokio::net::TcpListener;

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub broker: Arc<Broker>,
    pub registry: Registry,
    pub mqtt: Arc<Hub>,
}

/// Serves the admin API until the listener fails.
pub async fn serve(listener: TcpListener, state: AdminState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app).await
}

async fn health(State(state): State<AdminState>) -> impl IntoResponse {
    let body = serde_json::json!({
        "status": "ok",
        "cluster_id": state.broker.cluster_id(),
        "node_id": state.broker.node_id(),
        "topics": state.broker.topics().len(),
        "cluster": cluster_status(state.broker.cluster()),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut out = Vec::new();
    let families = state.registry.gather();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    let mut text = String::from_utf8(out).unwrap_or_default();
    render_broker(&state.broker, &mut text);
    render_mqtt(&state.mqtt, &mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// A metric family: name, type, help, and how to read its value from `T`.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Per-topic and per-engine figures, read from the broker at scrape time. Topic and engine
/// names contain only `[A-Za-z0-9._-]`, so they need no escaping as label values.
fn render_broker(broker: &Broker, out: &mut String) {
    let topics = broker.topics();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let per_topic: [Family<strata_broker::Topic>; 5] = [
        (
            "strata_topic_bytes_in_total",
            "counter",
            "Bytes of record batches appended",
            |t| t.metrics.bytes_in.load(Ordering::Relaxed),
        ),
        (
            "strata_topic_messages_in_total",
            "counter",
            "Records appended",
            |t| t.metrics.messages_in.load(Ordering::Relaxed),
        ),
        (
            "strata_topic_bytes_out_total",
            "counter",
            "Bytes of record batches read by consumers",
            |t| t.metrics.bytes_out.load(Ordering::Relaxed),
        ),
        (
            "strata_topic_reads_total",
            "counter",
            "Partition reads that returned data",
            |t| t.metrics.reads.load(Ordering::Relaxed),
        ),
        (
            "strata_topic_partitions",
            "gauge",
            "Partitions of the topic",
            |t| u64::from(t.partition_count()),
        ),
    ];
    for (name, kind, help, value) in per_topic {
        family(out, name, kind, help);
        for t in &topics {
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {}", t.name, value(t));
        }
    }
    let engines = broker.engines();
    let per_engine: [Family<strata_storage::EngineStats>; 4] = [
        (
            "strata_engine_shards",
            "gauge",
            "Shards held by the engine",
            |s| s.shards,
        ),
        (
            "strata_engine_bytes",
            "gauge",
            "Bytes of record batches held by the engine",
            |s| s.bytes,
        ),
        (
            "strata_engine_open_files",
            "gauge",
            "Files the engine holds open",
            |s| s.open_files,
        ),
        (
            "strata_engine_fsyncs_total",
            "counter",
            "fsync calls made by the engine",
            |s| s.fsyncs,
        ),
    ];
    let stats: Vec<_> = engines.iter().map(|(n, e)| (*n, e.stats())).collect();
    for (name, kind, help, value) in per_engine {
        family(out, name, kind, help);
        for (engine, s) in &stats {
            let _ = writeln!(out, "{name}{{engine=\"{engine}\"}} {}", value(s));
        }
    }
}

/// MQTT front-end figures.
fn render_mqtt(hub: &Hub, out: &mut String) {
    let m = &hub.metrics;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let rows: [(&str, &str, &str, u64); 5] = [
        (
            "strata_mqtt_connections",
            "gauge",
            "Open MQTT connections",
            load(&m.connections),
        ),
        (
            "strata_mqtt_sessions",
            "gauge",
            "MQTT sessions, connected or not",
            hub.session_count() as u64,
        ),
        (
            "strata_mqtt_messages_in_total",
            "counter",
            "PUBLISH packets received from MQTT clients",
            load(&m.messages_in),
        ),
        (
            "strata_mqtt_messages_out_total",
            "counter",
            "PUBLISH packets sent to MQTT clients",
            load(&m.messages_out),
        ),
        (
            "strata_mqtt_dropped_total",
            "counter",
            "Deliveries dropped because a subscriber stayed too slow",
            load(&m.dropped),
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
}

/// This node's place in the cluster: whether it is registered and active, which node leads
/// the controller (the Raft group), and the voters.
fn cluster_status(cluster: &strata_cluster::Cluster) -> serde_json::Value {
    let metrics = cluster.raft().metrics().borrow().clone();
    let id = cluster.node_id();
    let state = cluster.read(|i| i.nodes.get(&id).map(|n| n.state));
    serde_json::json!({
        "state": match state {
            Some(strata_cluster::NodeState::Active) => "active",
            Some(strata_cluster::NodeState::Fenced) => "fenced",
            None => "unregistered",
        },
        "broker_epoch": cluster.broker_epoch(),
        "controller": metrics.current_leader,
        "voters": metrics.membership_config.membership().voter_ids().collect::<Vec<_>>(),
        "raft_term": metrics.current_term,
        "raft_applied_index": metrics.last_applied.map(|l| l.index),
    })
}
