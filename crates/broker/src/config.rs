//! Broker settings (from the server's config file and flags).

use std::path::PathBuf;

use strata_cluster::ClusterConfig;
#[cfg(feature = "mysql")]
use strata_mysql::MysqlOptions;
#[cfg(feature = "rocksdb")]
use strata_rocksdb::RocksOptions;
#[cfg(feature = "s3")]
use strata_s3::S3Options;
use strata_storage::StorageSpec;
use strata_storage::file::FileOptions;

/// How the broker runs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where engines keep their files and the broker its state.
    pub data_dir: PathBuf,
    /// This node's place in the cluster: its id (the broker id clients see) and the voters
    /// of the Raft group that holds the topics.
    pub cluster: ClusterConfig,
    /// Storage of topics created without storage configs.
    pub default_spec: StorageSpec,
    /// Create unknown topics on first use (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`).
    pub num_partitions: u32,
    /// Wait this long for more members before completing a new group's first rebalance.
    pub group_initial_rebalance_delay_ms: u64,
    /// Tuning of the file engines.
    pub file_options: FileOptions,
    /// Tuning of the RocksDB engine's database (under `data_dir/rocksdb`, opened on first use).
    #[cfg(feature = "rocksdb")]
    pub rocksdb: RocksOptions,
    /// The MySQL server for `storage.engine=mysql`; none: that engine is unavailable.
    #[cfg(feature = "mysql")]
    pub mysql: Option<MysqlOptions>,
    /// The bucket for `storage.engine=s3`; none: that engine is unavailable.
    #[cfg(feature = "s3")]
    pub s3: Option<S3Options>,
    /// Run retention and garbage collection this often.
    pub maintenance_interval_ms: u64,
}

impl BrokerConfig {
    /// Defaults rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            cluster: ClusterConfig::single(0),
            default_spec: StorageSpec::default(),
            auto_create_topics: crate::DEFAULT_AUTO_CREATE_TOPICS,
            num_partitions: crate::DEFAULT_NUM_PARTITIONS,
            group_initial_rebalance_delay_ms: crate::DEFAULT_GROUP_INITIAL_REBALANCE_DELAY_MS,
            file_options: FileOptions::default(),
            #[cfg(feature = "rocksdb")]
            rocksdb: RocksOptions::default(),
            #[cfg(feature = "mysql")]
            mysql: None,
            #[cfg(feature = "s3")]
            s3: None,
            maintenance_interval_ms: crate::DEFAULT_MAINTENANCE_INTERVAL_MS,
        }
    }
}
