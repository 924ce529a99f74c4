//! One member of a group: what it offered, its session and the requests it is waiting on.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{GroupError, JoinRequest, JoinResponse};

/// Where a pending JoinGroup is answered.
pub(super) type JoinReply = oneshot::Sender<Result<JoinResponse, GroupError>>;
/// Where a pending SyncGroup is answered.
pub(super) type SyncReply = oneshot::Sender<Result<Bytes, GroupError>>;

/// How long a new member's first JoinGroup may stay pending. It has no member id to heartbeat
/// with yet, and a client that gave up and retried would otherwise leave a defunct member in
/// the rebalance (Kafka's `NewMemberJoinTimeoutMs`).
pub(super) const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// A member of a group.
#[derive(Debug)]
pub(super) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// Protocols the member supports, preferred first, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// This generation's assignment, from the leader's SyncGroup.
    pub assignment: Bytes,
    /// Set while the member's JoinGroup is pending: it has joined the coming generation.
    pub join_reply: Option<JoinReply>,
    /// Set while the member's SyncGroup waits for the leader's.
    pub sync_reply: Option<SyncReply>,
    /// Joined but not yet through a completed rebalance.
    pub is_new: bool,
    /// The session ends here unless the member is heard from again.
    pub deadline: Instant,
    /// Tells this member's session watcher from one of an earlier member with the same id.
    pub incarnation: u64,
}

impl Member {
    /// A member from its first JoinGroup; its session watcher has `incarnation`.
    pub fn new(id: String, req: &JoinRequest, now: Instant, incarnation: u64) -> Self {
        let (session_timeout, rebalance_timeout) = timeouts(req);
        Member {
            id,
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout,
            rebalance_timeout,
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            join_reply: None,
            sync_reply: None,
            is_new: true,
            deadline: now + NEW_MEMBER_JOIN_TIMEOUT,
            incarnation,
        }
    }

    /// Takes the protocols and timeouts of a later JoinGroup and waits for the rebalance.
    pub fn update(&mut self, req: &JoinRequest, reply: JoinReply) {
        let (session_timeout, rebalance_timeout) = timeouts(req);
        self.session_timeout = session_timeout;
        self.rebalance_timeout = rebalance_timeout;
        self.protocols = req.protocols.clone();
        // A second JoinGroup supersedes the first, which is told to retry.
        self.answer_join(Err(GroupError::RebalanceInProgress));
        self.join_reply = Some(reply);
    }

    /// Whether the member offers `protocol`.
    pub fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// The member's metadata for `protocol` (empty if it does not offer it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Whether a JoinGroup offers exactly what the member offered before.
    pub fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The member's most preferred protocol among `candidates`.
    pub fn vote<'a>(&self, candidates: &[&'a str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .find_map(|(name, _)| candidates.iter().find(|c| **c == name.as_str()).copied())
    }

    /// The member was heard from: its session restarts.
    pub fn touch(&mut self, now: Instant) {
        self.deadline = now + self.session_timeout;
    }

    /// Answers a pending JoinGroup, if any; returns whether there was one.
    pub fn answer_join(&mut self, result: Result<JoinResponse, GroupError>) -> bool {
        match self.join_reply.take() {
            Some(tx) => {
                // The client may have gone away; nothing to do then.
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    /// Answers a pending SyncGroup, if any; returns whether there was one.
    pub fn answer_sync(&mut self, result: Result<Bytes, GroupError>) -> bool {
        match self.sync_reply.take() {
            Some(tx) => {
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }
}

fn timeouts(req: &JoinRequest) -> (Duration, Duration) {
    let session = req.session_timeout_ms.max(0) as u64;
    let rebalance = if req.rebalance_timeout_ms > 0 {
        req.rebalance_timeout_ms as u64
    } else {
        session
    };
    (
        Duration::from_millis(session),
        Duration::from_millis(rebalance),
    )
}

/// A fresh member id, `<prefix>-<uuid>`, the prefix being the client id (or the instance id of
/// a static member) as in Kafka.
pub(super) fn new_member_id(prefix: &str) -> String {
    let r: u128 = rand::random();
    // A version-4 UUID: four version bits, two variant bits, the rest random.
    let r = (r & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    format!(
        "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (r >> 96) as u32,
        (r >> 80) as u16,
        (r >> 64) as u16,
        (r >> 48) as u16,
        r & 0xffff_ffff_ffff
    )
}
