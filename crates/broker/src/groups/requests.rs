//! SyncGroup, Heartbeat, LeaveGroup, the OffsetCommit check and DescribeGroups, applied to one
//! group under the coordinator's lock, checked in the order Kafka checks them.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::group::{Ctx, Group, State};
use super::join::Reply;
use super::{GroupDescription, GroupError, MemberDescription, SyncRequest};

impl Group {
    /// SyncGroup.
    pub fn sync(&mut self, req: SyncRequest, cx: &mut Ctx<'_>) -> Reply<Bytes> {
        if let Err(e) = self.check_sync(&req) {
            return Reply::Now(Err(e));
        }
        let id = req.member_id.as_str();
        match self.state {
            State::Empty => Reply::Now(Err(GroupError::UnknownMemberId)),
            State::PreparingRebalance => Reply::Now(Err(GroupError::RebalanceInProgress)),
            State::Stable => {
                self.pending_sync.remove(id);
                let m = self.members.get_mut(id).expect("checked member");
                m.touch(cx.now);
                Reply::Now(Ok(m.assignment.clone()))
            }
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let m = self.members.get_mut(id).expect("checked member");
                m.touch(cx.now);
                m.answer_sync(Err(GroupError::RebalanceInProgress));
                m.sync_reply = Some(tx);
                self.pending_sync.remove(id);
                if self.leader.as_deref() == Some(id) {
                    self.assign(req.assignments, cx);
                }
                Reply::Later(rx)
            }
        }
    }

    fn check_sync(&self, req: &SyncRequest) -> Result<(), GroupError> {
        self.check_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let fits = |given: &Option<String>, ours: &Option<String>| given.is_none() || given == ours;
        if !fits(&req.protocol_type, &self.protocol_type)
            || !fits(&req.protocol_name, &self.protocol)
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        Ok(())
    }

    /// The leader's assignment arrived: everyone gets theirs (empty if the leader left a member
    /// out) and the group is Stable.
    fn assign(&mut self, assignments: Vec<(String, Bytes)>, cx: &mut Ctx<'_>) {
        let mut given: std::collections::HashMap<String, Bytes> = assignments.into_iter().collect();
        for m in self.members.values_mut() {
            m.assignment = given.remove(&m.id).unwrap_or_default();
            if m.assignment.is_empty() {
                tracing::debug!(group = %self.id, member = %m.id, "empty assignment");
            }
            if m.answer_sync(Ok(m.assignment.clone())) {
                m.touch(cx.now);
            }
        }
        self.state = State::Stable;
        tracing::info!(group = %self.id, generation = self.generation, "group is stable");
        cx.persist = true;
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
        cx: &mut Ctx<'_>,
    ) -> Result<(), GroupError> {
        self.check_member(member_id, instance_id)?;
        if generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if self.state == State::Empty {
            return Err(GroupError::UnknownMemberId);
        }
        self.members
            .get_mut(member_id)
            .expect("checked member")
            .touch(cx.now);
        match self.state {
            State::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member; an empty member id with an instance id names a static member.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        cx: &mut Ctx<'_>,
    ) -> Result<(), GroupError> {
        let id = if member_id.is_empty() {
            instance_id
                .and_then(|i| self.static_members.get(i))
                .cloned()
                .ok_or(GroupError::UnknownMemberId)?
        } else if self.pending.remove(member_id) {
            self.try_complete_join(cx);
            return Ok(());
        } else {
            self.check_member(member_id, instance_id)?;
            member_id.to_owned()
        };
        tracing::info!(group = %self.id, member = %id, "member left");
        self.remove_and_rebalance(&id, cx, "member left");
        Ok(())
    }

    /// Kafka's `validateOffsetCommit` and the state check of `doCommitOffsets`.
    pub fn validate_commit(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
        cx: &mut Ctx<'_>,
    ) -> Result<(), GroupError> {
        if generation_id < 0 && self.state == State::Empty {
            return Ok(());
        }
        if generation_id < 0 && member_id.is_empty() && instance_id.is_none() {
            // Not a member, and the group has members: only they may commit.
            return Err(GroupError::UnknownMemberId);
        }
        self.check_member(member_id, instance_id)?;
        if generation_id != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            State::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            State::Empty => Ok(()),
            // During PreparingRebalance members still commit (e.g. before giving partitions
            // up); the heartbeat tells them to rejoin.
            State::Stable | State::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.touch(cx.now);
                }
                Ok(())
            }
        }
    }

    /// The group as DescribeGroups shows it: metadata and assignments only when Stable.
    pub fn describe(&self) -> GroupDescription {
        let stable = self.state == State::Stable;
        let protocol = if stable {
            self.protocol.clone().unwrap_or_default()
        } else {
            String::new()
        };
        GroupDescription {
            group_id: self.id.clone(),
            state: self.state.name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            members: self
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
            protocol,
        }
    }
}
