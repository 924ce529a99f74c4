//! The stored form of a group and the ordered writes of it to the broker's state log.
//!
//! Key `group/<group id>`; value JSON, written when the group becomes Stable (the leader's
//! SyncGroup), when it becomes Empty and when a static member is replaced without a rebalance;
//! deleted with the group. Byte strings are lowercase hex.
//!
//! ```text
//! group  := { "version": 1, "protocol_type": str|null, "protocol": str|null,
//!             "generation": i32, "leader": str|null, "members": [member] }
//! member := { "member_id": str, "group_instance_id": str|null, "client_id": str,
//!             "client_host": str, "session_timeout_ms": u64, "rebalance_timeout_ms": u64,
//!             "protocols": [[name, hex]], "assignment": hex }
//! ```
//!
//! Every protocol a member offered is kept, not just the chosen one, so that a member
//! rejoining after a restart with the same offer is recognised as unchanged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::group::{Group, State};
use super::member::Member;
use crate::Broker;

/// Keys of stored groups start with this.
pub(super) const KEY_PREFIX: &str = "group/";
/// The first key after every `group/...` key.
pub(super) const KEY_END: &str = "group0";
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    version: u32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    generation: i32,
    leader: Option<String>,
    members: Vec<StoredMember>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredMember {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u64,
    rebalance_timeout_ms: u64,
    protocols: Vec<(String, Hex)>,
    assignment: Hex,
}

/// Bytes as a hex string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hex(Bytes);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(self.0.len() * 2);
        for b in self.0.iter() {
            out.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
            out.push(char::from_digit(u32::from(b & 0xf), 16).expect("nibble"));
        }
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let digits = text.as_bytes();
        if digits.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd-length hex string"));
        }
        let nibble = |c: u8| {
            (c as char)
                .to_digit(16)
                .ok_or_else(|| serde::de::Error::custom("not a hex digit"))
        };
        let mut out = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks(2) {
            out.push((nibble(pair[0])? << 4 | nibble(pair[1])?) as u8);
        }
        Ok(Hex(Bytes::from(out)))
    }
}

/// The stored form of `group`.
pub(super) fn encode(group: &Group) -> Bytes {
    let stored = Stored {
        version: VERSION,
        protocol_type: group.protocol_type.clone(),
        protocol: group.protocol.clone(),
        generation: group.generation,
        leader: group.leader.clone(),
        members: group
            .members
            .values()
            .map(|m| StoredMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout.as_millis() as u64,
                rebalance_timeout_ms: m.rebalance_timeout.as_millis() as u64,
                protocols: m
                    .protocols
                    .iter()
                    .map(|(n, b)| (n.clone(), Hex(b.clone())))
                    .collect(),
                assignment: Hex(m.assignment.clone()),
            })
            .collect(),
    };
    Bytes::from(serde_json::to_vec(&stored).expect("group metadata serialises"))
}

/// A group from its stored form: Stable in its generation if it has members (every session
/// starting at `now`), else Empty.
pub(super) fn decode(key: &str, value: &[u8], now: Instant) -> Result<Group, String> {
    let id = key
        .strip_prefix(KEY_PREFIX)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| format!("{key:?} is not a group key"))?;
    let stored: Stored = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if stored.version != VERSION {
        return Err(format!("unknown group metadata version {}", stored.version));
    }
    let mut group = Group::new(id.to_owned());
    group.protocol_type = stored.protocol_type;
    group.generation = stored.generation;
    for sm in stored.members {
        let session_timeout = Duration::from_millis(sm.session_timeout_ms);
        let member = Member {
            id: sm.member_id.clone(),
            instance_id: sm.group_instance_id.clone(),
            client_id: sm.client_id,
            client_host: sm.client_host,
            session_timeout,
            rebalance_timeout: Duration::from_millis(sm.rebalance_timeout_ms),
            protocols: sm.protocols.into_iter().map(|(n, h)| (n, h.0)).collect(),
            assignment: sm.assignment.0,
            join_reply: None,
            sync_reply: None,
            is_new: false,
            deadline: now + session_timeout,
            incarnation: group.next_seq(),
        };
        if let Some(instance) = sm.group_instance_id {
            group.static_members.insert(instance, sm.member_id.clone());
        }
        group.members.insert(sm.member_id, member);
    }
    if !group.members.is_empty() {
        if stored.protocol.is_none() {
            return Err("a group with members has no protocol".into());
        }
        group.protocol = stored.protocol;
        group.state = State::Stable;
        group.leader = stored
            .leader
            .filter(|l| group.members.contains_key(l))
            .or_else(|| group.members.keys().next().cloned());
    }
    Ok(group)
}

/// One write of a group's metadata (`None` deletes it).
#[derive(Debug)]
pub(super) struct Job {
    group_id: String,
    version: u64,
    value: Option<Bytes>,
}

/// Writes group metadata in the order the changes happened. Jobs are made under the group
/// lock, each numbered; a job that is no longer its group's latest when its turn comes is
/// skipped, since a later one supersedes it.
#[derive(Debug, Default)]
pub(super) struct Writer {
    next: AtomicU64,
    latest: Mutex<HashMap<String, u64>>,
    turn: tokio::sync::Mutex<()>,
}

impl Writer {
    /// A job storing `group` as it is now.
    pub fn job(&self, group: &Group) -> Job {
        self.make(&group.id, Some(encode(group)))
    }

    /// A job deleting the group's metadata.
    pub fn delete_job(&self, group_id: &str) -> Job {
        self.make(group_id, None)
    }

    fn make(&self, group_id: &str, value: Option<Bytes>) -> Job {
        let version = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.latest.lock().insert(group_id.to_owned(), version);
        Job {
            group_id: group_id.to_owned(),
            version,
            value,
        }
    }

    /// Carries out `job` unless a later one for the same group exists. A failure is logged:
    /// the group goes on in memory, and a restart would bring back its previous stored state.
    pub async fn write(&self, broker: &Broker, job: Job) {
        let _turn = self.turn.lock().await;
        if self.latest.lock().get(&job.group_id) != Some(&job.version) {
            return;
        }
        let key = format!("{KEY_PREFIX}{}", job.group_id);
        if let Err(e) = broker.state().put(vec![(key, job.value)]).await {
            tracing::error!(group = %job.group_id, error = %e, "writing group metadata failed");
        }
        let mut latest = self.latest.lock();
        if latest.get(&job.group_id) == Some(&job.version) {
            latest.remove(&job.group_id);
        }
    }
}
