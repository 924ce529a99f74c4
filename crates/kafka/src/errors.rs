//! Broker and group errors as Kafka error codes.

use strata_broker::BrokerError;
use strata_broker::groups::GroupError;
use strata_storage::StorageError;

/// Kafka error codes used here (`org.apache.kafka.common.protocol.Errors`).
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_CONFIG: i16 = 40;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const INVALID_RECORD: i16 = 87;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
}

/// The Kafka error code for a broker error.
pub fn broker_code(e: &BrokerError) -> i16 {
    use code::*;
    match e {
        BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => {
            UNKNOWN_TOPIC_OR_PARTITION
        }
        BrokerError::TopicExists(_) => TOPIC_ALREADY_EXISTS,
        BrokerError::InvalidTopic { .. } => INVALID_TOPIC_EXCEPTION,
        BrokerError::InvalidConfig(_) => INVALID_CONFIG,
        BrokerError::InvalidPartitions(_) => INVALID_PARTITIONS,
        BrokerError::InvalidReplicationFactor(_) => INVALID_REPLICATION_FACTOR,
        BrokerError::CorruptRecord(_) => CORRUPT_MESSAGE,
        BrokerError::InvalidRecord(_) => INVALID_RECORD,
        BrokerError::RecordTooLarge { .. } => MESSAGE_TOO_LARGE,
        BrokerError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        BrokerError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
        BrokerError::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
        BrokerError::Storage(s) => storage_code(s),
        BrokerError::DataDirInUse(_) => UNKNOWN_SERVER_ERROR,
        BrokerError::Cluster(c) => cluster_code(c),
    }
}

/// A change the cluster could not commit: a client retries NOT_CONTROLLER.
fn cluster_code(e: &strata_cluster::ClusterError) -> i16 {
    use code::*;
    use strata_cluster::ClusterError;
    match e {
        ClusterError::NotLeader { .. } | ClusterError::NoLeader(_) => NOT_CONTROLLER,
        ClusterError::Rejected(_) => INVALID_REQUEST,
        _ => UNKNOWN_SERVER_ERROR,
    }
}

fn storage_code(e: &StorageError) -> i16 {
    use code::*;
    match e {
        StorageError::ShardNotFound(_) => UNKNOWN_TOPIC_OR_PARTITION,
        StorageError::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
        StorageError::InvalidBatch(_) => CORRUPT_MESSAGE,
        StorageError::BatchTooLarge { .. } => MESSAGE_TOO_LARGE,
        StorageError::InvalidSpec(_) => INVALID_CONFIG,
        _ => KAFKA_STORAGE_ERROR,
    }
}

/// The Kafka error code for a group error.
pub fn group_code(e: &GroupError) -> i16 {
    use code::*;
    match e {
        GroupError::UnknownMemberId => UNKNOWN_MEMBER_ID,
        GroupError::IllegalGeneration => ILLEGAL_GENERATION,
        GroupError::RebalanceInProgress => REBALANCE_IN_PROGRESS,
        GroupError::MemberIdRequired(_) => MEMBER_ID_REQUIRED,
        GroupError::InconsistentGroupProtocol => INCONSISTENT_GROUP_PROTOCOL,
        GroupError::InvalidSessionTimeout => INVALID_SESSION_TIMEOUT,
        GroupError::FencedInstanceId => FENCED_INSTANCE_ID,
        GroupError::NonEmptyGroup => NON_EMPTY_GROUP,
        GroupError::GroupIdNotFound => GROUP_ID_NOT_FOUND,
        GroupError::InvalidGroupId => INVALID_GROUP_ID,
        GroupError::CoordinatorNotAvailable => COORDINATOR_NOT_AVAILABLE,
        GroupError::UnknownServerError(_) => UNKNOWN_SERVER_ERROR,
    }
}
