//! Every setting of `strata serve`, declared once: each section is one struct that is both the
//! flag parser (`clap::Args`) and the `[section]` table of the TOML file (`Deserialize`). A
//! field is `None` when its layer (file, environment or flags) does not set it; `defaults()`
//! is the bottom layer, `merge` puts a higher layer over a lower one.
//!
//! Top-level keys are named as their flags; a section's keys drop the section's prefix
//! (`[mqtt] addr` is `--mqtt-addr`). Every help line ends with `[default: …]`, which a test
//! checks against `defaults()`.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};
use strata_mqtt::MapRule;
use strata_storage::StorageSpec;

/// Where data and state are kept unless configured.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// The Kafka listener unless configured.
pub const DEFAULT_KAFKA_ADDR: &str = "0.0.0.0:9092";
/// The admin HTTP listener unless configured.
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9644";
/// The log level unless configured.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The MQTT TCP listener unless configured.
pub const DEFAULT_MQTT_ADDR: &str = "0.0.0.0:1883";

/// Top-level settings, then the `[mqtt]`, `[mysql]` and `[s3]` sections.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// Where data and state are kept [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log level or filter (e.g. info, debug, strata_kafka=debug) [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// This node's id in the cluster, and the broker id Kafka clients see [default: 0].
    #[arg(long)]
    pub node_id: Option<u64>,
    /// Admin HTTP listener (/health, /metrics) [default: 127.0.0.1:9644].
    #[arg(long)]
    pub admin_addr: Option<String>,
    /// On SIGTERM, how long open connections may finish what they are doing before the
    /// engines close, in ms [default: 10000].
    #[arg(long)]
    pub shutdown_timeout_ms: Option<u64>,
    /// Kafka listener; port 0 picks a free port (logged) [default: 0.0.0.0:9092].
    #[arg(long, help_heading = "Kafka")]
    pub kafka_addr: Option<String>,
    /// Address clients are told to use
    /// [default: the listener's, with localhost for 0.0.0.0].
    #[arg(long, help_heading = "Kafka")]
    pub kafka_advertised_addr: Option<String>,
    /// Open Kafka connections at most; more are accepted and closed at once [default: 10000].
    #[arg(long, help_heading = "Kafka")]
    pub kafka_max_connections: Option<usize>,
    /// Largest Kafka request accepted, in bytes [default: 104857600].
    #[arg(long, help_heading = "Kafka")]
    pub max_request_bytes: Option<usize>,
    /// Create unknown topics on first use [default: true].
    #[arg(long, help_heading = "Topics and groups")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, help_heading = "Topics and groups")]
    pub num_partitions: Option<u32>,
    /// How long a new group waits for more members before its first rebalance, in ms
    /// [default: 3000].
    #[arg(long, help_heading = "Topics and groups")]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Storage engine of new topics without storage.engine [default: file].
    #[arg(long, help_heading = "Storage")]
    pub default_engine: Option<String>,
    /// Storage model of new topics without storage.model [default: dedicated].
    #[arg(long, help_heading = "Storage")]
    pub default_model: Option<String>,
    /// Durability of new topics without flush settings: os, fsync or interval:<ms>
    /// [default: os].
    #[arg(long, help_heading = "Storage")]
    pub default_durability: Option<String>,
    /// Run retention, tiering uploads and compaction this often, in ms [default: 30000].
    #[arg(long, help_heading = "Storage")]
    pub maintenance_interval_ms: Option<u64>,
    #[command(flatten, next_help_heading = "MQTT")]
    #[serde(default)]
    pub mqtt: MqttSection,
    #[command(flatten, next_help_heading = "MySQL engine")]
    #[serde(default)]
    pub mysql: MysqlSection,
    #[command(flatten, next_help_heading = "S3 engine and tiering")]
    #[serde(default)]
    pub s3: S3Section,
}

/// The `[mqtt]` section (flags `--mqtt-…`).
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MqttSection {
    /// MQTT listener (TCP); `off` for none [default: 0.0.0.0:1883].
    #[arg(long = "mqtt-addr")]
    pub addr: Option<String>,
    /// MQTT over WebSocket listener, path /mqtt; `off` for none [default: off].
    #[arg(long = "mqtt-ws-addr")]
    pub ws_addr: Option<String>,
    /// MQTT users and ACL file (see the README) [default: none: anyone may do anything].
    #[arg(long = "mqtt-auth")]
    pub auth: Option<PathBuf>,
    /// Store MQTT publishes matching FILTER in the storage topic TOPIC (FILTER=TOPIC);
    /// repeatable, first match wins; adds to the rules of the file and the environment
    /// [default: none].
    #[arg(long = "mqtt-map", value_name = "FILTER=TOPIC")]
    #[serde(default, skip_serializing)]
    pub map: Vec<MapRule>,
    /// MQTT Receive Maximum: QoS 2 publishes a client may leave unreleased [default: 1024].
    #[arg(long = "mqtt-receive-maximum")]
    pub receive_maximum: Option<u16>,
    /// Largest MQTT packet accepted, in bytes [default: 1048576].
    #[arg(long = "mqtt-max-packet-size")]
    pub max_packet_size: Option<u32>,
    /// Cap on MQTT keep alive in seconds; 0 for none [default: 0].
    #[arg(long = "mqtt-max-keep-alive")]
    pub max_keep_alive: Option<u16>,
    /// MQTT Topic Alias Maximum for client-to-server aliases [default: 16].
    #[arg(long = "mqtt-topic-alias-max")]
    pub topic_alias_max: Option<u16>,
    /// Open MQTT connections (TCP and WebSocket each) at most [default: 100000].
    #[arg(long = "mqtt-max-connections")]
    pub max_connections: Option<usize>,
}

/// The `[mysql]` section (flags `--mysql-…`). A build without the mysql engine still parses
/// it, so that one file serves every build; it refuses only a URL.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MysqlSection {
    /// MySQL-compatible server for topics with storage.engine=mysql, as
    /// mysql://USER:PASS@HOST:PORT/DB [default: none: the mysql engine is unavailable].
    #[arg(long = "mysql-url", value_name = "URL")]
    pub url: Option<String>,
    /// Connections in the MySQL pool [default: 16].
    #[arg(
        long = "mysql-max-connections",
        id = "mysql_max_connections",
        value_name = "MAX_CONNECTIONS"
    )]
    pub max_connections: Option<u32>,
}

/// The `[s3]` section (flags `--s3-…`), parsed by every build like `[mysql]`.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct S3Section {
    /// Bucket for topics with storage.engine=s3 and for tiered segments of file topics with
    /// remote.storage.enable=true [default: none: both are unavailable].
    #[arg(long = "s3-bucket", value_name = "NAME")]
    pub bucket: Option<String>,
    /// S3-compatible endpoint, such as http://127.0.0.1:9000 for MinIO (path-style
    /// addressing) [default: AWS, or AWS_ENDPOINT].
    #[arg(long = "s3-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Region of the bucket [default: AWS_REGION, else us-east-1].
    #[arg(long = "s3-region")]
    pub region: Option<String>,
    /// Access key [default: AWS_ACCESS_KEY_ID or the instance's credentials].
    #[arg(long = "s3-access-key")]
    pub access_key: Option<String>,
    /// Secret key [default: AWS_SECRET_ACCESS_KEY].
    #[arg(long = "s3-secret-key")]
    pub secret_key: Option<String>,
    /// Key prefix of everything this node writes to the bucket [default: strata].
    #[arg(long = "s3-prefix")]
    pub prefix: Option<String>,
    /// Longest time an s3 append waits to be uploaded with others, in ms [default: 250].
    #[arg(long = "s3-flush-ms")]
    pub flush_ms: Option<u64>,
    /// Buffered bytes that start an upload at once [default: 8388608].
    #[arg(long = "s3-flush-bytes")]
    pub flush_bytes: Option<usize>,
}

impl Settings {
    /// The bottom layer: every default, from the crate that owns the setting.
    pub fn defaults() -> Self {
        let spec = StorageSpec::default();
        Settings {
            data_dir: Some(DEFAULT_DATA_DIR.into()),
            log_level: Some(DEFAULT_LOG_LEVEL.into()),
            node_id: Some(0),
            admin_addr: Some(DEFAULT_ADMIN_ADDR.into()),
            shutdown_timeout_ms: Some(strata_net::DEFAULT_DRAIN_DEADLINE.as_millis() as u64),
            kafka_addr: Some(DEFAULT_KAFKA_ADDR.into()),
            kafka_advertised_addr: None,
            kafka_max_connections: Some(strata_kafka::DEFAULT_MAX_CONNECTIONS),
            max_request_bytes: Some(strata_kafka::DEFAULT_MAX_REQUEST_BYTES),
            auto_create_topics: Some(strata_broker::DEFAULT_AUTO_CREATE_TOPICS),
            num_partitions: Some(strata_broker::DEFAULT_NUM_PARTITIONS),
            group_initial_rebalance_delay_ms: Some(
                strata_broker::DEFAULT_GROUP_INITIAL_REBALANCE_DELAY_MS,
            ),
            default_engine: Some(spec.engine.to_string()),
            default_model: Some(spec.model.to_string()),
            default_durability: Some(spec.durability.to_string()),
            maintenance_interval_ms: Some(strata_broker::DEFAULT_MAINTENANCE_INTERVAL_MS),
            mqtt: MqttSection::defaults(),
            mysql: MysqlSection::defaults(),
            s3: S3Section::defaults(),
        }
    }

    /// `self` with every setting that `over` sets replaced by `over`'s; MQTT map rules add up.
    pub fn merge(self, over: Self) -> Self {
        Settings {
            data_dir: over.data_dir.or(self.data_dir),
            log_level: over.log_level.or(self.log_level),
            node_id: over.node_id.or(self.node_id),
            admin_addr: over.admin_addr.or(self.admin_addr),
            shutdown_timeout_ms: over.shutdown_timeout_ms.or(self.shutdown_timeout_ms),
            kafka_addr: over.kafka_addr.or(self.kafka_addr),
            kafka_advertised_addr: over.kafka_advertised_addr.or(self.kafka_advertised_addr),
            kafka_max_connections: over.kafka_max_connections.or(self.kafka_max_connections),
            max_request_bytes: over.max_request_bytes.or(self.max_request_bytes),
            auto_create_topics: over.auto_create_topics.or(self.auto_create_topics),
            num_partitions: over.num_partitions.or(self.num_partitions),
            group_initial_rebalance_delay_ms: over
                .group_initial_rebalance_delay_ms
                .or(self.group_initial_rebalance_delay_ms),
            default_engine: over.default_engine.or(self.default_engine),
            default_model: over.default_model.or(self.default_model),
            default_durability: over.default_durability.or(self.default_durability),
            maintenance_interval_ms: over
                .maintenance_interval_ms
                .or(self.maintenance_interval_ms),
            mqtt: self.mqtt.merge(over.mqtt),
            mysql: self.mysql.merge(over.mysql),
            s3: self.s3.merge(over.s3),
        }
    }
}

impl MqttSection {
    fn defaults() -> Self {
        MqttSection {
            addr: Some(DEFAULT_MQTT_ADDR.into()),
            ws_addr: None,
            auth: None,
            map: Vec::new(),
            receive_maximum: Some(strata_mqtt::DEFAULT_RECEIVE_MAXIMUM),
            max_packet_size: Some(strata_mqtt::DEFAULT_MAX_PACKET_SIZE),
            max_keep_alive: Some(strata_mqtt::DEFAULT_MAX_KEEP_ALIVE),
            topic_alias_max: Some(strata_mqtt::DEFAULT_TOPIC_ALIAS_MAX),
            max_connections: Some(strata_mqtt::DEFAULT_MAX_CONNECTIONS),
        }
    }

    fn merge(self, over: Self) -> Self {
        MqttSection {
            addr: over.addr.or(self.addr),
            ws_addr: over.ws_addr.or(self.ws_addr),
            auth: over.auth.or(self.auth),
            map: [self.map, over.map].concat(),
            receive_maximum: over.receive_maximum.or(self.receive_maximum),
            max_packet_size: over.max_packet_size.or(self.max_packet_size),
            max_keep_alive: over.max_keep_alive.or(self.max_keep_alive),
            topic_alias_max: over.topic_alias_max.or(self.topic_alias_max),
            max_connections: over.max_connections.or(self.max_connections),
        }
    }
}

impl MysqlSection {
    /// Defaults of the mysql engine; a build without it has none to give.
    fn defaults() -> Self {
        MysqlSection {
            url: None,
            #[cfg(feature = "mysql")]
            max_connections: Some(strata_mysql::DEFAULT_MAX_CONNECTIONS),
            #[cfg(not(feature = "mysql"))]
            max_connections: None,
        }
    }

    fn merge(self, over: Self) -> Self {
        MysqlSection {
            url: over.url.or(self.url),
            max_connections: over.max_connections.or(self.max_connections),
        }
    }
}

impl S3Section {
    /// Defaults of the s3 engine (`S3Options::new`); a build without it has none to give.
    fn defaults() -> Self {
        #[cfg(feature = "s3")]
        {
            let o = strata_s3::S3Options::new("");
            S3Section {
                prefix: Some(o.prefix),
                flush_ms: Some(o.tuning.flush_interval.as_millis() as u64),
                flush_bytes: Some(o.tuning.flush_bytes),
                ..S3Section::default()
            }
        }
        #[cfg(not(feature = "s3"))]
        S3Section::default()
    }

    fn merge(self, over: Self) -> Self {
        S3Section {
            bucket: over.bucket.or(self.bucket),
            endpoint: over.endpoint.or(self.endpoint),
            region: over.region.or(self.region),
            access_key: over.access_key.or(self.access_key),
            secret_key: over.secret_key.or(self.secret_key),
            prefix: over.prefix.or(self.prefix),
            flush_ms: over.flush_ms.or(self.flush_ms),
            flush_bytes: over.flush_bytes.or(self.flush_bytes),
        }
    }
}
