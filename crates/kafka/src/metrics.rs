//! Prometheus metrics of the Kafka front end.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The front end's metrics, registered in the server's registry.
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    /// Request latency by API.
    pub request_seconds: HistogramVec,
    /// Open client connections.
    pub connections: IntGauge,
    /// Connections closed for bad input, by reason.
    pub rejected: IntCounterVec,
}

impl KafkaMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "strata_kafka_request_seconds",
                "Time to handle a Kafka request, by API",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["api"],
        )?;
        let connections = IntGauge::new("strata_kafka_connections", "Open Kafka connections")?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "strata_kafka_connections_rejected_total",
                "Kafka connections closed because of bad input, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(KafkaMetrics {
            request_seconds,
            connections,
            rejected,
        })
    }

    /// Metrics registered nowhere (tests).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("fresh registry")
    }
}
