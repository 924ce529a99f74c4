//! `strata serve`: one node with the Kafka and MQTT listeners and the admin API.

use std::sync::Arc;

use anyhow::{Context, Result};
use prometheus::Registry;
use strata_broker::Broker;
use strata_kafka::{Kafka, KafkaConfig, KafkaMetrics};
use strata_mqtt::{Auth, Mqtt};
use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::config::ServeConfig;

/// The node's listeners, bound before anything else.
struct Listeners {
    kafka: TcpListener,
    admin: TcpListener,
    mqtt: Option<TcpListener>,
    mqtt_ws: Option<TcpListener>,
}

impl Listeners {
    /// Binds every listener; a node that cannot bind its ports fails before it touches the
    /// data directory.
    async fn bind(config: &ServeConfig) -> Result<Self> {
        let mqtt = match &config.mqtt.addr {
            Some(a) => Some(bind(a, "MQTT").await?),
            None => None,
        };
        let mqtt_ws = match &config.mqtt.ws_addr {
            Some(a) => Some(bind(a, "MQTT WebSocket").await?),
            None => None,
        };
        Ok(Self {
            kafka: bind(&config.kafka_addr, "Kafka").await?,
            admin: bind(&config.admin_addr, "admin").await?,
            mqtt,
            mqtt_ws,
        })
    }

    /// Logs the bound addresses (tests and scripts read the `strata listening` line).
    fn announce(&self, config: &ServeConfig, advertised: &str) -> Result<()> {
        let show = |l: &Option<TcpListener>| -> Result<String> {
            Ok(match l {
                Some(l) => l.local_addr()?.to_string(),
                None => "off".to_owned(),
            })
        };
        tracing::info!(
            kafka = %self.kafka.local_addr()?,
            mqtt = %show(&self.mqtt)?,
            mqtt_ws = %show(&self.mqtt_ws)?,
            advertised = %advertised,
            admin = %self.admin.local_addr()?,
            data_dir = %config.broker.data_dir.display(),
            "strata listening"
        );
        Ok(())
    }
}

async fn bind(addr: &str, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

/// Opens the broker on the data directory with the configured engines.
async fn open_broker(config: &ServeConfig) -> Result<Arc<Broker>> {
    Broker::open(config.broker.clone()).await.with_context(|| {
        format!(
            "opening the data directory {}",
            config.broker.data_dir.display()
        )
    })
}

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(config: ServeConfig) -> Result<()> {
    let listeners = Listeners::bind(&config).await?;
    let (host, port) = config.advertised(listeners.kafka.local_addr()?)?;
    descriptor_limit(&config);
    let auth = match &config.mqtt.auth {
        Some(path) => Auth::load(path)?,
        None => Auth::open(),
    };
    let broker = open_broker(&config).await?;

    let registry = Registry::new();
    let metrics = KafkaMetrics::register(&registry)?;
    let kafka = Kafka::new(
        broker.clone(),
        KafkaConfig {
            advertised_host: host.clone(),
            advertised_port: port,
            max_request_bytes: config.max_request_bytes,
        },
        metrics,
    );
    let mqtt = Mqtt::open(broker.clone(), config.mqtt.config.clone(), auth)
        .await
        .context("restoring the MQTT state")?;
    listeners.announce(&config, &format!("{host}:{port}"))?;
    let drain = strata_net::Drain::new();
    let mut kafka_task =
        tokio::spawn(kafka.serve(listeners.kafka, config.kafka_max_connections, drain.clone()));
    if let Some(l) = listeners.mqtt {
        drain.spawn(
            mqtt.clone()
                .serve_tcp(l, config.mqtt.max_connections, drain.clone()),
        );
    }
    let mut mqtt_ws_task = tokio::spawn({
        let mqtt = mqtt.clone();
        let drain = drain.clone();
        async move {
            match listeners.mqtt_ws {
                Some(l) => mqtt.serve_ws(l, drain).await,
                None => std::future::pending().await,
            }
        }
    });
    let mut admin_task = tokio::spawn(admin::serve(
        listeners.admin,
        AdminState {
            broker: broker.clone(),
            registry,
            mqtt: mqtt.hub().clone(),
        },
    ));
    let result = tokio::select! {
        r = &mut kafka_task => r.context("Kafka listener task"),
        r = &mut admin_task => r.context("admin listener task")?.context("admin listener failed"),
        r = &mut mqtt_ws_task => r.context("MQTT WebSocket listener task")?.context("MQTT WebSocket listener failed"),
        r = shutdown_signal() => r,
    };
    drain_connections(&drain, &config).await;
    admin_task.abort();
    mqtt_ws_task.abort();
    shutdown(&broker).await?;
    result
}

/// Stops accepting and lets open connections finish the request in hand (a produce with
/// acks=all is answered once durable), up to the shutdown deadline.
async fn drain_connections(drain: &strata_net::Drain, config: &ServeConfig) {
    tracing::info!(
        connections = drain.open(),
        deadline_ms = config.shutdown_timeout.as_millis() as u64,
        "shutting down: draining connections"
    );
    let left = drain.drain(config.shutdown_timeout).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "connections still open at the shutdown deadline; closing them"
        );
    }
}

/// Raises the descriptor limit and warns once when it is still below what the connection
/// caps can take.
fn descriptor_limit(config: &ServeConfig) {
    let caps = config.kafka_max_connections as u64
        + config
            .mqtt
            .addr
            .as_ref()
            .map_or(0, |_| config.mqtt.max_connections as u64)
        + config
            .mqtt
            .ws_addr
            .as_ref()
            .map_or(0, |_| config.mqtt.max_connections as u64);
    match strata_net::raise_nofile_limit() {
        Ok(l) => {
            tracing::info!(
                soft = l.soft,
                hard = l.hard,
                was = l.was,
                "file descriptor limit"
            );
            let needed = caps + strata_net::DESCRIPTOR_RESERVE;
            if l.soft < needed {
                tracing::warn!(
                    limit = l.soft,
                    needed,
                    "the file descriptor limit is below the connection caps plus {} for segments; connections beyond it are closed at once (raise LimitNOFILE / ulimit -n, or lower kafka-max-connections and mqtt.max-connections)",
                    strata_net::DESCRIPTOR_RESERVE
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the file descriptor limit"),
    }
}

async fn shutdown(broker: &Arc<Broker>) -> Result<()> {
    broker
        .shutdown()
        .await
        .context("closing the storage engines")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
