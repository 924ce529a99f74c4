//! `strata serve` settings: built-in defaults, then a TOML file (`--config`), then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use strata_mqtt::{MapRule, MqttConfig};
use strata_storage::{Durability, EngineKind, Model, StorageSpec};

/// Flags of `strata serve`; each overrides the same key in the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, without `--`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where data and state are kept [default: ./data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener [default: 0.0.0.0:9092]; port 0 picks a free port (logged).
    #[arg(long)]
    pub kafka_addr: Option<String>,
    /// Address clients are told to use [default: the listener's, with localhost for 0.0.0.0].
    #[arg(long)]
    pub kafka_advertised_addr: Option<String>,
    /// Admin HTTP listener (/health, /metrics) [default: 127.0.0.1:9644].
    #[arg(long)]
    pub admin_addr: Option<String>,
    /// Log level or filter (e.g. info, debug, strata_kafka=debug) [default: info].
    #[arg(long)]
    pub log_level: Option<String>,
    /// Create unknown topics on first use [default: true].
    #[arg(long)]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long)]
    pub num_partitions: Option<u32>,
    /// Storage engine of new topics without storage.engine [default: file].
    #[arg(long)]
    pub default_engine: Option<String>,
    /// Storage model of new topics without storage.model [default: dedicated].
    #[arg(long)]
    pub default_model: Option<String>,
    /// Durability of new topics without flush settings: os, fsync or interval:<ms> [default: os].
    #[arg(long)]
    pub default_durability: Option<String>,
    /// How long a new group waits for more members before its first rebalance [default: 3000].
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Largest Kafka request accepted, in bytes [default: 104857600].
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// Open Kafka connections at most; more are accepted and closed at once [default: 10000].
    #[arg(long)]
    pub kafka_max_connections: Option<usize>,
    /// On SIGTERM, how long open connections may finish what they are doing before the
    /// engines close, in ms [default: 10000].
    #[arg(long)]
    pub shutdown_timeout_ms: Option<u64>,
    /// MQTT listener (TCP) [default: 0.0.0.0:1883]; `off` for none.
    #[arg(long)]
    pub mqtt_addr: Option<String>,
    /// MQTT over WebSocket listener, path /mqtt [default: off].
    #[arg(long)]
    pub mqtt_ws_addr: Option<String>,
    /// MQTT users and ACL file (see the README) [default: none: anyone may do anything].
    #[arg(long)]
    pub mqtt_auth: Option<PathBuf>,
    /// Store MQTT publishes matching FILTER in the storage topic TOPIC (FILTER=TOPIC);
    /// repeatable, first match wins. Adds to the rules of the config file.
    #[arg(long = "mqtt-map", value_name = "FILTER=TOPIC")]
    pub mqtt_map: Vec<MapRule>,
    /// MQTT Receive Maximum: QoS 2 publishes a client may leave unreleased [default: 1024].
    #[arg(long)]
    pub mqtt_receive_maximum: Option<u16>,
    /// Largest MQTT packet accepted, in bytes [default: 1048576].
    #[arg(long)]
    pub mqtt_max_packet_size: Option<u32>,
    /// Cap on MQTT keep alive in seconds; 0 for none [default: 0].
    #[arg(long)]
    pub mqtt_max_keep_alive: Option<u16>,
    /// MQTT Topic Alias Maximum for client-to-server aliases [default: 16].
    #[arg(long)]
    pub mqtt_topic_alias_max: Option<u16>,
    /// Open MQTT connections (TCP and WebSocket each) at most [default: 100000].
    #[arg(long)]
    pub mqtt_max_connections: Option<usize>,
    /// MySQL-compatible server for topics with storage.engine=mysql,
    /// as mysql://USER:PASS@HOST:PORT/DB [default: none: the mysql engine is unavailable].
    #[arg(long, value_name = "URL")]
    pub mysql_url: Option<String>,
    /// Connections in the MySQL pool [default: 16].
    #[arg(long)]
    pub mysql_max_connections: Option<u32>,
    /// Run retention, tiering uploads and compaction this often, in ms [default: 30000].
    #[arg(long)]
    pub maintenance_interval_ms: Option<u64>,
    /// Bucket for topics with storage.engine=s3 and for tiered segments of file topics with
    /// remote.storage.enable=true [default: none: both are unavailable].
    #[arg(long, value_name = "NAME")]
    pub s3_bucket: Option<String>,
    /// S3-compatible endpoint, such as http://127.0.0.1:9000 for MinIO (path-style addressing)
    /// [default: AWS, or AWS_ENDPOINT].
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Region of the bucket [default: AWS_REGION, else us-east-1].
    #[arg(long)]
    pub s3_region: Option<String>,
    /// Access key [default: AWS_ACCESS_KEY_ID or the instance's credentials].
    #[arg(long)]
    pub s3_access_key: Option<String>,
    /// Secret key [default: AWS_SECRET_ACCESS_KEY].
    #[arg(long)]
    pub s3_secret_key: Option<String>,
    /// Key prefix of everything this node writes to the bucket [default: strata].
    #[arg(long)]
    pub s3_prefix: Option<String>,
    /// Longest time an s3 append waits to be uploaded with others, in ms [default: 250].
    #[arg(long)]
    pub s3_flush_ms: Option<u64>,
    /// Buffered bytes that start an upload at once [default: 8388608].
    #[arg(long)]
    pub s3_flush_bytes: Option<usize>,
}

/// The `[s3]` table of the TOML file. A build without the s3 engine still parses it, so that
/// one file serves every build; it refuses only a bucket.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct S3File {
    bucket: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    access_key: Option<String>,
    secret_key: Option<String>,
    prefix: Option<String>,
    flush_ms: Option<u64>,
    flush_bytes: Option<usize>,
}

/// The `[mysql]` table of the TOML file (parsed by every build, like `[s3]`).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct MysqlFile {
    url: Option<String>,
    max_connections: Option<u32>,
}

/// The `[mqtt]` table of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct MqttFile {
    addr: Option<String>,
    ws_addr: Option<String>,
    auth: Option<PathBuf>,
    #[serde(default)]
    map: Vec<MapRule>,
    receive_maximum: Option<u16>,
    max_packet_size: Option<u32>,
    max_keep_alive: Option<u16>,
    topic_alias_max: Option<u16>,
    max_connections: Option<usize>,
}

/// The same settings as read from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka_addr: Option<String>,
    kafka_advertised_addr: Option<String>,
    admin_addr: Option<String>,
    log_level: Option<String>,
    auto_create_topics: Option<bool>,
    num_partitions: Option<u32>,
    default_engine: Option<String>,
    default_model: Option<String>,
    default_durability: Option<String>,
    group_initial_rebalance_delay_ms: Option<u64>,
    max_request_bytes: Option<usize>,
    kafka_max_connections: Option<usize>,
    shutdown_timeout_ms: Option<u64>,
    maintenance_interval_ms: Option<u64>,
    #[serde(default)]
    mqtt: MqttFile,
    #[serde(default)]
    mysql: MysqlFile,
    #[serde(default)]
    s3: S3File,
}

/// Resolved MQTT settings.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// TCP listener, if any.
    pub addr: Option<String>,
    /// WebSocket listener, if any.
    pub ws_addr: Option<String>,
    /// Users and ACL file, if any.
    pub auth: Option<PathBuf>,
    /// Protocol settings and mapping rules.
    pub config: MqttConfig,
    /// Open connections at most, per listener.
    pub max_connections: usize,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub kafka_addr: String,
    pub kafka_advertised_addr: Option<String>,
    pub admin_addr: String,
    pub log_level: String,
    pub auto_create_topics: bool,
    pub num_partitions: u32,
    pub default_spec: StorageSpec,
    pub group_initial_rebalance_delay_ms: u64,
    pub max_request_bytes: usize,
    pub kafka_max_connections: usize,
    pub shutdown_timeout: std::time::Duration,
    pub mqtt: MqttSettings,
    #[cfg(feature = "mysql")]
    pub mysql: Option<strata_mysql::MysqlOptions>,
    #[cfg(feature = "s3")]
    pub s3: Option<strata_s3::S3Options>,
    pub maintenance_interval_ms: u64,
}

impl ServeConfig {
    /// Defaults, overridden by the file, overridden by the flags.
    pub fn resolve(args: &ServeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                args.$field
                    .clone()
                    .or(file.$field.clone())
                    .unwrap_or_else(|| $default)
            };
        }
        let engine: EngineKind = pick!(default_engine, "file".into()).parse()?;
        let model: Model = pick!(default_model, "dedicated".into()).parse()?;
        let durability: Durability = pick!(default_durability, "os".into()).parse()?;
        if engine == EngineKind::Memory {
            bail!(
                "default-engine memory would lose every auto-created topic on restart; create memory topics explicitly with storage.engine=memory"
            );
        }
        let default_spec = StorageSpec {
            engine,
            model,
            durability,
            ..StorageSpec::default()
        };
        default_spec.validate()?;
        let mqtt = resolve_mqtt(args, &file.mqtt)?;
        let mysql_url = args.mysql_url.clone().or(file.mysql.url.clone());
        #[cfg(feature = "mysql")]
        let mysql = mysql_url.map(|url| {
            let mut o = strata_mysql::MysqlOptions::new(url);
            if let Some(n) = args.mysql_max_connections.or(file.mysql.max_connections) {
                o.max_connections = n.max(1);
            }
            o
        });
        #[cfg(not(feature = "mysql"))]
        if mysql_url.is_some() {
            bail!("{}", strata_broker::missing_engine(EngineKind::Mysql));
        }
        #[cfg(feature = "s3")]
        let s3 = resolve_s3(args, &file.s3)?;
        #[cfg(not(feature = "s3"))]
        if args.s3_bucket.is_some() || file.s3.bucket.is_some() {
            bail!("{}", strata_broker::missing_engine(EngineKind::S3));
        }
        Ok(ServeConfig {
            mqtt,
            #[cfg(feature = "mysql")]
            mysql,
            #[cfg(feature = "s3")]
            s3,
            maintenance_interval_ms: args
                .maintenance_interval_ms
                .or(file.maintenance_interval_ms)
                .unwrap_or(30_000)
                .max(100),
            data_dir: pick!(data_dir, PathBuf::from("./data")),
            kafka_addr: pick!(kafka_addr, "0.0.0.0:9092".into()),
            kafka_advertised_addr: args
                .kafka_advertised_addr
                .clone()
                .or(file.kafka_advertised_addr.clone()),
            admin_addr: pick!(admin_addr, "127.0.0.1:9644".into()),
            log_level: pick!(log_level, "info".into()),
            auto_create_topics: pick!(auto_create_topics, true),
            num_partitions: pick!(num_partitions, 1),
            default_spec,
            group_initial_rebalance_delay_ms: pick!(group_initial_rebalance_delay_ms, 3000),
            max_request_bytes: pick!(max_request_bytes, strata_kafka::DEFAULT_MAX_REQUEST_BYTES),
            kafka_max_connections: pick!(
                kafka_max_connections,
                strata_kafka::DEFAULT_MAX_CONNECTIONS
            )
            .max(1),
            shutdown_timeout: std::time::Duration::from_millis(pick!(
                shutdown_timeout_ms,
                strata_net::DEFAULT_DRAIN_DEADLINE.as_millis() as u64
            )),
        })
    }

    /// The address to advertise for a listener bound at `bound`.
    pub fn advertised(&self, bound: SocketAddr) -> Result<(String, i32)> {
        match &self.kafka_advertised_addr {
            Some(a) => {
                let (host, port) = a
                    .rsplit_once(':')
                    .with_context(|| format!("kafka-advertised-addr {a:?} is not HOST:PORT"))?;
                let port: u16 = port
                    .parse()
                    .with_context(|| format!("kafka-advertised-addr {a:?} has no valid port"))?;
                // Port 0 in the advertised address means "the port actually bound".
                let port = if port == 0 { bound.port() } else { port };
                Ok((host.trim_matches(['[', ']']).to_owned(), i32::from(port)))
            }
            None if bound.ip().is_unspecified() => {
                Ok(("localhost".into(), i32::from(bound.port())))
            }
            None => Ok((bound.ip().to_string(), i32::from(bound.port()))),
        }
    }
}

fn resolve_mqtt(args: &ServeArgs, file: &MqttFile) -> Result<MqttSettings> {
    let listener = |flag: &Option<String>, key: &Option<String>, default: Option<&str>| {
        let v = flag.clone().or(key.clone()).or(default.map(str::to_owned));
        v.filter(|a| a != "off" && !a.is_empty())
    };
    let defaults = MqttConfig::default();
    let mut map = file.map.clone();
    for rule in &map {
        rule.check()
            .map_err(|e| anyhow::anyhow!("mqtt.map in the config file: {e}"))?;
    }
    map.extend(args.mqtt_map.iter().cloned());
    Ok(MqttSettings {
        addr: listener(&args.mqtt_addr, &file.addr, Some("0.0.0.0:1883")),
        ws_addr: listener(&args.mqtt_ws_addr, &file.ws_addr, None),
        auth: args.mqtt_auth.clone().or(file.auth.clone()),
        config: MqttConfig {
            receive_maximum: args
                .mqtt_receive_maximum
                .or(file.receive_maximum)
                .unwrap_or(defaults.receive_maximum)
                .max(1),
            max_packet_size: args
                .mqtt_max_packet_size
                .or(file.max_packet_size)
                .unwrap_or(defaults.max_packet_size)
                .max(64),
            max_keep_alive: args
                .mqtt_max_keep_alive
                .or(file.max_keep_alive)
                .unwrap_or(defaults.max_keep_alive),
            topic_alias_max: args
                .mqtt_topic_alias_max
                .or(file.topic_alias_max)
                .unwrap_or(defaults.topic_alias_max),
            map,
            ..defaults
        },
        max_connections: args
            .mqtt_max_connections
            .or(file.max_connections)
            .unwrap_or(strata_mqtt::DEFAULT_MAX_CONNECTIONS)
            .max(1),
    })
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(feature = "s3")]
fn resolve_s3(args: &ServeArgs, file: &S3File) -> Result<Option<strata_s3::S3Options>> {
    let Some(bucket) = args.s3_bucket.clone().or(file.bucket.clone()) else {
        let set = args.s3_endpoint.is_some() || file.endpoint.is_some();
        if set {
            bail!("an S3 endpoint is set but no bucket: add --s3-bucket NAME (or s3.bucket)");
        }
        return Ok(None);
    };
    let mut o = strata_s3::S3Options::new(bucket);
    o.endpoint = args.s3_endpoint.clone().or(file.endpoint.clone());
    o.region = args.s3_region.clone().or(file.region.clone());
    o.access_key = args.s3_access_key.clone().or(file.access_key.clone());
    o.secret_key = args.s3_secret_key.clone().or(file.secret_key.clone());
    if let Some(prefix) = args.s3_prefix.clone().or(file.prefix.clone()) {
        o.prefix = prefix;
    }
    if let Some(ms) = args.s3_flush_ms.or(file.flush_ms) {
        o.tuning.flush_interval = std::time::Duration::from_millis(ms.max(1));
    }
    if let Some(bytes) = args.s3_flush_bytes.or(file.flush_bytes) {
        o.tuning.flush_bytes = bytes.max(1);
    }
    Ok(Some(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_config_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/strata.toml");
        let c = ServeConfig::resolve(&ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/strata"));
        assert_eq!(c.kafka_max_connections, 10_000);
        assert_eq!(c.mqtt.max_connections, 100_000);
        assert_eq!(c.shutdown_timeout, std::time::Duration::from_secs(10));
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "kafka-addr = \"127.0.0.1:1000\"\nadmin-addr = \"127.0.0.1:2000\"\nnum-partitions = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            kafka_addr: Some("127.0.0.1:0".into()),
            ..ServeArgs::default()
        };
        let c = ServeConfig::resolve(&args).unwrap();
        assert_eq!(c.kafka_addr, "127.0.0.1:0");
        assert_eq!(c.admin_addr, "127.0.0.1:2000");
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        let bound: SocketAddr = "0.0.0.0:4321".parse().unwrap();
        assert_eq!(c.advertised(bound).unwrap(), ("localhost".into(), 4321));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "kafka-adress = \"x\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::resolve(&args).is_err());
        let args = ServeArgs {
            default_durability: Some("sometimes".into()),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::resolve(&args).is_err());
    }

    #[test]
    fn mqtt_settings_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "[mqtt]\nws-addr = \"127.0.0.1:8083\"\nauth = \"users.toml\"\nreceive-maximum = 10\n\n[[mqtt.map]]\nfilter = \"sensors/#\"\ntopic = \"sensors\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            mqtt_addr: Some("off".into()),
            mqtt_map: vec!["alerts/+=alerts".parse().unwrap()],
            ..ServeArgs::default()
        };
        let c = ServeConfig::resolve(&args).unwrap();
        assert_eq!(c.mqtt.addr, None);
        assert_eq!(c.mqtt.ws_addr.as_deref(), Some("127.0.0.1:8083"));
        assert_eq!(c.mqtt.auth, Some(PathBuf::from("users.toml")));
        assert_eq!(c.mqtt.config.receive_maximum, 10);
        let rules: Vec<String> = c.mqtt.config.map.iter().map(|r| r.to_string()).collect();
        assert_eq!(rules, ["sensors/#=sensors", "alerts/+=alerts"]);
        let c = ServeConfig::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(c.mqtt.addr.as_deref(), Some("0.0.0.0:1883"));
        assert_eq!(c.mqtt.ws_addr, None);
    }
}
