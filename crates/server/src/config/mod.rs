//! `strata serve` settings: built-in defaults, then a TOML file (`--config`), then `STRATA_*`
//! environment variables, then flags. Each setting is declared once, in `settings`.

mod env;
mod settings;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use strata_broker::BrokerConfig;
use strata_mqtt::MqttConfig;
use strata_storage::{Durability, EngineKind, Model, StorageSpec};

use settings::MqttSection;
pub use settings::Settings;

/// Flags of `strata serve`; each overrides the same setting of the environment and the file.
#[derive(Debug, Clone, Default, Args)]
#[command(
    after_help = "Every flag can also be set in the environment as STRATA_<FLAG> \
    (--kafka-addr: STRATA_KAFKA_ADDR). Precedence: defaults, then the file, then the \
    environment, then flags. strata.example.toml lists every setting of the file."
)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, without `--`; a section's
    /// keys without its prefix) [default: none].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
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
    /// What the broker is opened with: the data directory, topic and group defaults, and
    /// the engines' connections.
    pub broker: BrokerConfig,
    pub kafka_addr: String,
    pub kafka_advertised_addr: Option<String>,
    pub admin_addr: String,
    pub log_level: String,
    pub max_request_bytes: usize,
    pub kafka_max_connections: usize,
    pub shutdown_timeout: Duration,
    pub mqtt: MqttSettings,
}

/// The value of a setting that `Settings::defaults` gives a value (an error names the field
/// if it did not).
macro_rules! set {
    (&$s:ident . $field:ident) => {
        $s.$field
            .as_ref()
            .with_context(|| concat!(stringify!($field), " has no default"))?
    };
    ($s:ident . $field:ident) => {
        $s.$field
            .with_context(|| concat!(stringify!($field), " has no default"))?
    };
}

impl ServeConfig {
    /// Defaults, overridden by the file, by the process environment, by the flags.
    pub fn resolve(args: &ServeArgs) -> Result<Self> {
        Self::resolve_with(args, |name| std::env::var(name).ok())
    }

    /// As `resolve`, with the environment variables that `env` finds.
    fn resolve_with(flags: &ServeArgs, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = env::layer(env)?;
        let file = match flags.config.as_ref().or(env.config.as_ref()) {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        let s = Settings::defaults()
            .merge(file)
            .merge(env.settings)
            .merge(flags.settings.clone());
        Self::from_settings(s)
    }

    fn from_settings(s: Settings) -> Result<Self> {
        let default_spec = default_spec(&s)?;
        #[cfg(feature = "mysql")]
        let mysql = resolve_mysql(&s.mysql)?;
        #[cfg(not(feature = "mysql"))]
        if s.mysql.url.is_some() {
            bail!("{}", strata_broker::missing_engine(EngineKind::Mysql));
        }
        #[cfg(feature = "s3")]
        let s3 = resolve_s3(&s.s3)?;
        #[cfg(not(feature = "s3"))]
        if s.s3.bucket.is_some() {
            bail!("{}", strata_broker::missing_engine(EngineKind::S3));
        }
        let mut broker = BrokerConfig::new(set!(s.data_dir));
        let node_id = set!(s.node_id);
        if node_id > i32::MAX as u64 {
            bail!(
                "node-id {node_id} is above {}, the largest Kafka broker id",
                i32::MAX
            );
        }
        broker.cluster = strata_cluster::ClusterConfig::single(node_id);
        broker.auto_create_topics = set!(s.auto_create_topics);
        broker.num_partitions = set!(s.num_partitions);
        broker.default_spec = default_spec;
        broker.group_initial_rebalance_delay_ms = set!(s.group_initial_rebalance_delay_ms);
        broker.maintenance_interval_ms = set!(s.maintenance_interval_ms).max(100);
        #[cfg(feature = "mysql")]
        {
            broker.mysql = mysql;
        }
        #[cfg(feature = "s3")]
        {
            broker.s3 = s3;
        }
        Ok(ServeConfig {
            broker,
            mqtt: resolve_mqtt(s.mqtt)?,
            kafka_addr: set!(s.kafka_addr),
            kafka_advertised_addr: s.kafka_advertised_addr,
            admin_addr: set!(s.admin_addr),
            log_level: set!(s.log_level),
            max_request_bytes: set!(s.max_request_bytes),
            kafka_max_connections: set!(s.kafka_max_connections).max(1),
            shutdown_timeout: Duration::from_millis(set!(s.shutdown_timeout_ms)),
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

fn default_spec(s: &Settings) -> Result<StorageSpec> {
    let engine: EngineKind = set!(&s.default_engine).as_str().parse()?;
    let model: Model = set!(&s.default_model).as_str().parse()?;
    let durability: Durability = set!(&s.default_durability).as_str().parse()?;
    if engine == EngineKind::Memory {
        bail!(
            "default-engine memory would lose every auto-created topic on restart; create memory topics explicitly with storage.engine=memory"
        );
    }
    let spec = StorageSpec {
        engine,
        model,
        durability,
        ..StorageSpec::default()
    };
    spec.validate()?;
    Ok(spec)
}

/// A listener address; `off` or empty for none.
fn listener(addr: Option<String>) -> Option<String> {
    addr.filter(|a| a != "off" && !a.is_empty())
}

fn resolve_mqtt(m: MqttSection) -> Result<MqttSettings> {
    Ok(MqttSettings {
        addr: listener(m.addr),
        ws_addr: listener(m.ws_addr),
        auth: m.auth,
        config: MqttConfig {
            receive_maximum: set!(m.receive_maximum).max(1),
            max_packet_size: set!(m.max_packet_size).max(64),
            max_keep_alive: set!(m.max_keep_alive),
            topic_alias_max: set!(m.topic_alias_max),
            map: m.map,
            ..MqttConfig::default()
        },
        max_connections: set!(m.max_connections).max(1),
    })
}

fn read_file(path: &Path) -> Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let file: Settings =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    for rule in &file.mqtt.map {
        rule.check()
            .map_err(|e| anyhow::anyhow!("mqtt.map in the config file: {e}"))?;
    }
    Ok(file)
}

#[cfg(feature = "mysql")]
fn resolve_mysql(m: &settings::MysqlSection) -> Result<Option<strata_mysql::MysqlOptions>> {
    let Some(url) = m.url.clone() else {
        return Ok(None);
    };
    let mut o = strata_mysql::MysqlOptions::new(url);
    o.max_connections = set!(m.max_connections).max(1);
    Ok(Some(o))
}

#[cfg(feature = "s3")]
fn resolve_s3(s: &settings::S3Section) -> Result<Option<strata_s3::S3Options>> {
    let Some(bucket) = s.bucket.clone() else {
        if s.endpoint.is_some() {
            bail!("an S3 endpoint is set but no bucket: add --s3-bucket NAME (or s3.bucket)");
        }
        return Ok(None);
    };
    let mut o = strata_s3::S3Options::new(bucket);
    o.endpoint = s.endpoint.clone();
    o.region = s.region.clone();
    o.access_key = s.access_key.clone();
    o.secret_key = s.secret_key.clone();
    o.prefix = set!(&s.prefix).clone();
    o.tuning.flush_interval = Duration::from_millis(set!(s.flush_ms).max(1));
    o.tuning.flush_bytes = set!(s.flush_bytes).max(1);
    Ok(Some(o))
}
