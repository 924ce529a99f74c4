//! Consumer groups: Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), as Apache Kafka's `GroupCoordinator` runs it.
//!
//! A group moves Empty → PreparingRebalance → CompletingRebalance → Stable. A rebalance collects
//! a JoinGroup from every member (or waits out the rebalance timeout), bumps the generation and
//! answers every pending JoinGroup; the leader's SyncGroup then hands each member its share and
//! the group becomes Stable. Sessions expire without heartbeats; members leave explicitly.
//!
//! Start with [`GroupCoordinator`]; `group.rs` holds the state machine's core, `join.rs` and
//! `requests.rs` the requests, `expiry.rs` what the timers do, `coordinator.rs` the locking,
//! timers and persistence around it all, and `persist.rs` the stored form of a group (key
//! `group/<id>` in the state log).

mod coordinator;
mod expiry;
mod group;
mod join;
mod member;
mod persist;
mod requests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::Broker;
use coordinator::Shared;

/// Kafka's `group.min.session.timeout.ms` default.
const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
/// Kafka's `group.max.session.timeout.ms` default.
const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

/// Why a group request failed; each maps onto one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The member id is not (or no longer) in the group.
    #[error("the member id is not known to the group")]
    UnknownMemberId,
    /// The request names a generation other than the group's current one.
    #[error("the generation id is not the group's current generation")]
    IllegalGeneration,
    /// The group is rebalancing: the member must rejoin.
    #[error("the group is rebalancing, rejoin is needed")]
    RebalanceInProgress,
    /// A new dynamic member must rejoin with this member id.
    #[error("a member id is required: rejoin with {0}")]
    MemberIdRequired(String),
    /// The protocol type or the protocols offered do not fit the group's.
    #[error("the protocol type or protocols are incompatible with the group's")]
    InconsistentGroupProtocol,
    /// The session timeout is outside the broker's allowed range.
    #[error("the session timeout is outside the allowed range")]
    InvalidSessionTimeout,
    /// Another member now holds this static member's group instance id.
    #[error("the group instance id is held by another member id")]
    FencedInstanceId,
    /// The group still has members.
    #[error("the group is not empty")]
    NonEmptyGroup,
    /// No such group.
    #[error("the group does not exist")]
    GroupIdNotFound,
    /// The group id is empty.
    #[error("the group id is not valid")]
    InvalidGroupId,
    /// The request could not be answered here now; the client should retry.
    #[error("the coordinator is not available")]
    CoordinatorNotAvailable,
    /// Anything else.
    #[error("unexpected server error: {0}")]
    UnknownServerError(String),
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The group.
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// Set for a static member (KIP-345).
    pub group_instance_id: Option<String>,
    /// The client's id.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Without a heartbeat for this long the member is removed.
    pub session_timeout_ms: i32,
    /// How long a rebalance waits for this member to rejoin; 0 or less means the session
    /// timeout (JoinGroup v0 has no such field).
    pub rebalance_timeout_ms: i32,
    /// E.g. "consumer"; every member of a group has the same.
    pub protocol_type: String,
    /// Protocols the member supports, preferred first, each with its metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4 and later: a new member gets an id and must rejoin with it.
    pub require_known_member_id: bool,
    /// Why the client joins (logged).
    pub reason: Option<String>,
}

/// A successful JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// The generation the member joined.
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The protocol chosen for this generation.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Always false (KIP-814 is not used).
    pub skip_assignment: bool,
    /// Every member with its metadata for the chosen protocol; empty except for the leader.
    pub members: Vec<JoinMember>,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id, if any.
    pub group_instance_id: Option<String>,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// The group.
    pub group_id: String,
    /// The generation the member joined.
    pub generation_id: i32,
    /// The member.
    pub member_id: String,
    /// Static instance id, if any.
    pub group_instance_id: Option<String>,
    /// If given, must be the group's protocol type.
    pub protocol_type: Option<String>,
    /// If given, must be the generation's protocol.
    pub protocol_name: Option<String>,
    /// The leader's assignment of every member; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A group in a ListGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type ("" if none yet).
    pub protocol_type: String,
    /// "Stable", "PreparingRebalance", "CompletingRebalance", "Empty" or "Dead".
    pub state: &'static str,
}

/// A DescribeGroups answer for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// State name, "Dead" for an unknown group.
    pub state: &'static str,
    /// Protocol type ("" if none).
    pub protocol_type: String,
    /// The chosen protocol when Stable, else "" (as Kafka reports it).
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
}

/// One member in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id, if any.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the chosen protocol (empty unless Stable).
    pub metadata: Bytes,
    /// Current assignment (empty unless Stable).
    pub assignment: Bytes,
}

/// Limits a coordinator runs with.
#[derive(Debug, Clone)]
struct Config {
    /// Kafka's `group.initial.rebalance.delay.ms`.
    initial_rebalance_delay: Duration,
    /// Allowed session timeouts, inclusive.
    min_session_timeout_ms: i32,
    max_session_timeout_ms: i32,
}

/// The group coordinator: every consumer group of this broker.
#[derive(Debug)]
pub struct GroupCoordinator {
    shared: Arc<Shared>,
}

impl GroupCoordinator {
    /// A coordinator with no groups. A group's first rebalance waits
    /// `initial_rebalance_delay_ms` for more members.
    pub fn new(initial_rebalance_delay_ms: u64) -> Self {
        Self::with_config(Config {
            initial_rebalance_delay: Duration::from_millis(initial_rebalance_delay_ms),
            min_session_timeout_ms: MIN_SESSION_TIMEOUT_MS,
            max_session_timeout_ms: MAX_SESSION_TIMEOUT_MS,
        })
    }

    fn with_config(config: Config) -> Self {
        GroupCoordinator {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// Loads the groups stored in the state log (keys `group/...`) and remembers the broker to
    /// persist through. Groups with members come back Stable in their stored generation, every
    /// session starting now.
    pub(crate) fn restore(&self, broker: &Arc<Broker>, live: &BTreeMap<String, Bytes>) {
        self.shared.restore(broker, live);
    }

    /// JoinGroup. Stays pending until the rebalance completes.
    pub async fn join(&self, req: JoinRequest) -> Result<JoinResponse, GroupError> {
        self.shared.join(req).await
    }

    /// SyncGroup: returns this member's assignment. A follower waits for the leader's SyncGroup.
    pub async fn sync(&self, req: SyncRequest) -> Result<Bytes, GroupError> {
        self.shared.sync(req).await
    }

    /// Heartbeat: keeps the member's session alive; `RebalanceInProgress` tells it to rejoin.
    pub async fn heartbeat(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.shared
            .heartbeat(group_id, generation_id, member_id, group_instance_id)
            .await
    }

    /// LeaveGroup for each `(member_id, group_instance_id)`; a member id may be empty when the
    /// instance id names the member. Returns each input with its outcome.
    pub async fn leave(
        &self,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Vec<(String, Option<String>, Result<(), GroupError>)> {
        self.shared.leave(group_id, members).await
    }

    /// Whether an OffsetCommit may be stored, by Kafka's rules: generation -1 with no member id
    /// is a standalone consumer, accepted while the group is unknown or Empty; anything else must
    /// come from a current member in the current generation. Members may commit while the group
    /// is Stable or PreparingRebalance; during CompletingRebalance the answer is
    /// `RebalanceInProgress`. A valid member's commit also refreshes its session.
    pub fn validate_commit(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        self.shared
            .validate_commit(group_id, generation_id, member_id, group_instance_id)
    }

    /// Every group, including groups known only by their committed offsets (listed Empty).
    pub fn list(&self) -> Vec<GroupListing> {
        self.shared.list()
    }

    /// One group; an unknown group is "Dead" with no members.
    pub fn describe(&self, group_id: &str) -> GroupDescription {
        self.shared.describe(group_id)
    }

    /// Deletes an Empty group and its stored metadata (committed offsets are the caller's to
    /// delete, through `Broker::delete_group_offsets`). A group known only by its committed
    /// offsets counts as Empty.
    pub async fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        self.shared.delete(group_id).await
    }
}
