//! The one error type of the MQTT front end.

use std::io;
use std::path::PathBuf;

use strata_broker::BrokerError;
use strata_record::RecordError;
use strata_storage::StorageError;

/// Result alias for MQTT operations.
pub type Result<T, E = MqttError> = std::result::Result<T, E>;

/// What went wrong, storing MQTT state or loading its settings.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker refused or failed an operation (state log, produce, read).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A session queue's engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored or produced record batch is not valid.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Reading stored bytes failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A session description could not be encoded.
    #[error("session description: {0}")]
    SessionCodec(#[from] serde_json::Error),
    /// The storage topic of a mapping rule cannot be created.
    #[error("creating the storage topic {topic} for MQTT filter {filter}: {source}")]
    MapTopic {
        /// The storage topic.
        topic: String,
        /// The rule's MQTT filter.
        filter: String,
        /// Why.
        source: BrokerError,
    },
    /// The auth file cannot be read.
    #[error("reading the MQTT auth file {path}: {source}")]
    AuthRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The auth file's text is not valid; the message says where.
    #[error("{0}")]
    AuthInvalid(String),
    /// Hashing a password failed.
    #[error("hashing the password: {0}")]
    Hash(String),
}
