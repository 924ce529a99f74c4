//! `strata serve`: one node with the Kafka and MQTT listeners and the admin API.

use std::sync::Arc;

use anyhow::{Context, Result};
use prometheus::Registry;
use strata_broker::{Broker, BrokerConfig};
use strata_kafka::{Kafka, KafkaConfig, KafkaMetrics};
use strata_mqtt::{Auth, Mqtt};
use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::config::ServeConfig;

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub async fn run(config: ServeConfig) -> Result<()> {
    // Listeners first: a node that cannot bind its ports must fail before it touches the
    // data directory.
    let kafka_listener = TcpListener::bind(&config.kafka_addr)
        .await
        .with_context(|| format!("binding the Kafka listener to {}", config.kafka_addr))?;
    let kafka_addr = kafka_listener.local_addr()?;
    let (host, port) = config.advertised(kafka_addr)?;
    let admin_listener = TcpListener::bind(&config.admin_addr)
        .await
        .with_context(|| format!("binding the admin listener to {}", config.admin_addr))?;
    let admin_addr = admin_listener.local_addr()?;
    let mqtt_listener = match &config.mqtt.addr {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding the MQTT listener to {a}"))?,
        ),
        None => None,
    };
    let mqtt_ws_listener = match &config.mqtt.ws_addr {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding the MQTT WebSocket listener to {a}"))?,
        ),
        None => None,
    };
    let auth = match &config.mqtt.auth {
        Some(path) => Auth::load(path)?,
        None => Auth::open(),
    };

    let mut broker_config = BrokerConfig::new(&config.data_dir);
    broker_config.auto_create_topics = config.auto_create_topics;
    broker_config.num_partitions = config.num_partitions;
    broker_config.default_spec = config.default_spec;
    broker_config.group_initial_rebalance_delay_ms = config.group_initial_rebalance_delay_ms;
    #[cfg(feature = "mysql")]
    {
        broker_config.mysql = config.mysql.clone();
    }
    #[cfg(feature = "s3")]
    {
        broker_config.s3 = config.s3.clone();
    }
    broker_config.maintenance_interval_ms = config.maintenance_interval_ms;
    let broker = Broker::open(broker_config)
        .await
        .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;

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
    let mqtt_addr = mqtt_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let mqtt_ws_addr = mqtt_ws_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_owned(), |a| a.to_string());
    tracing::info!(
        kafka = %kafka_addr,
        mqtt = %show(mqtt_addr),
        mqtt_ws = %show(mqtt_ws_addr),
        advertised = %format!("{host}:{port}"),
        admin = %admin_addr,
        data_dir = %config.data_dir.display(),
        "strata listening"
    );
    let mut kafka_task = tokio::spawn(kafka.serve(kafka_listener));
    let mut mqtt_task = tokio::spawn({
        let mqtt = mqtt.clone();
        async move {
            match mqtt_listener {
                Some(l) => mqtt.serve_tcp(l).await,
                None => std::future::pending().await,
            }
        }
    });
    let mut mqtt_ws_task = tokio::spawn({
        let mqtt = mqtt.clone();
        async move {
            match mqtt_ws_listener {
                Some(l) => mqtt.serve_ws(l).await,
                None => std::future::pending().await,
            }
        }
    });
    let mut admin_task = tokio::spawn(admin::serve(
        admin_listener,
        AdminState {
            broker: broker.clone(),
            registry,
            mqtt: mqtt.hub().clone(),
        },
    ));
    let result = tokio::select! {
        r = &mut kafka_task => r.context("Kafka listener task")?.context("Kafka listener failed"),
        r = &mut admin_task => r.context("admin listener task")?.context("admin listener failed"),
        r = &mut mqtt_task => r.context("MQTT listener task")?.context("MQTT listener failed"),
        r = &mut mqtt_ws_task => r.context("MQTT WebSocket listener task")?.context("MQTT WebSocket listener failed"),
        r = shutdown_signal() => r,
    };
    tracing::info!("shutting down");
    // Stop taking connections before the engines close; requests in flight on open
    // connections then fail cleanly with "engine is closed".
    kafka_task.abort();
    admin_task.abort();
    mqtt_task.abort();
    mqtt_ws_task.abort();
    shutdown(&broker).await?;
    result
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
