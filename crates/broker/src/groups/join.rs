//! JoinGroup applied to one group under the coordinator's lock, checked in the order Kafka
//! checks it: new dynamic members (with or without `MemberIdRequired`), static members taking
//! over their instance id, and known members rejoining.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::group::{Ctx, Group, State, Timer};
use super::member::{Member, new_member_id};
use super::{GroupError, JoinRequest, JoinResponse};

/// A request's answer: ready now, or once the rebalance gets there.
#[derive(Debug)]
pub(super) enum Reply<T> {
    Now(Result<T, GroupError>),
    Later(oneshot::Receiver<Result<T, GroupError>>),
}

impl<T> Reply<T> {
    pub async fn get(self) -> Result<T, GroupError> {
        match self {
            Reply::Now(r) => r,
            // The waiter was dropped without an answer: the group went away under it.
            Reply::Later(rx) => rx.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable)),
        }
    }
}

impl Group {
    /// Whether a member offering `protocols` of `protocol_type` fits the group: the group's
    /// protocol type, and a protocol every other member supports. `except` is the member's own
    /// current entry, whose old offer does not count (Kafka counts it, which refuses a lone
    /// member that switches protocols).
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)], except: &str) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let others: Vec<&Member> = self.members.values().filter(|m| m.id != except).collect();
        protocols
            .iter()
            .any(|(name, _)| others.iter().all(|m| m.supports(name)))
    }

    /// Kafka's `validateCurrentMember`: an instance id must map to this member id, and the
    /// member id must be in the group.
    pub fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if let Some(instance) = instance_id {
            return match self.static_members.get(instance) {
                Some(current) if current != member_id => Err(GroupError::FencedInstanceId),
                Some(_) => Ok(()),
                None => Err(GroupError::UnknownMemberId),
            };
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    /// JoinGroup.
    pub fn join(&mut self, req: JoinRequest, cx: &mut Ctx<'_>) -> Reply<JoinResponse> {
        let replacing = match (&req.group_instance_id, req.member_id.is_empty()) {
            (Some(instance), true) => self.static_members.get(instance).cloned(),
            _ => Some(req.member_id.clone()),
        };
        if !self.supports(
            &req.protocol_type,
            &req.protocols,
            replacing.as_deref().unwrap_or(""),
        ) {
            return Reply::Now(Err(GroupError::InconsistentGroupProtocol));
        }
        let reply = if req.member_id.is_empty() {
            self.join_new(req, cx)
        } else {
            self.join_known(req, cx)
        };
        self.try_complete_join(cx);
        reply
    }

    fn join_new(&mut self, req: JoinRequest, cx: &mut Ctx<'_>) -> Reply<JoinResponse> {
        let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
        let id = new_member_id(prefix);
        if let Some(instance) = req.group_instance_id.clone() {
            return match self.static_members.get(&instance).cloned() {
                Some(old) => self.replace_static_member(&instance, &old, id, &req, cx),
                None => self.add_member(id, &req, cx),
            };
        }
        if req.require_known_member_id {
            let after = std::time::Duration::from_millis(req.session_timeout_ms as u64);
            self.pending.insert(id.clone());
            cx.timers.push(Timer::Pending {
                member_id: id.clone(),
                after,
            });
            return Reply::Now(Err(GroupError::MemberIdRequired(id)));
        }
        self.add_member(id, &req, cx)
    }

    fn join_known(&mut self, req: JoinRequest, cx: &mut Ctx<'_>) -> Reply<JoinResponse> {
        let id = req.member_id.clone();
        if self.pending.contains(&id) {
            if req.group_instance_id.is_some() {
                // Ids handed out with MemberIdRequired belong to dynamic members only.
                return Reply::Now(Err(GroupError::UnknownMemberId));
            }
            return self.add_member(id, &req, cx);
        }
        if let Err(e) = self.check_member(&id, req.group_instance_id.as_deref()) {
            return Reply::Now(Err(e));
        }
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let member = self.members.get_mut(&id).expect("checked member");
        member.touch(cx.now);
        let unchanged = member.matches(&req.protocols);
        match self.state {
            State::PreparingRebalance => self.update_member(&id, &req, cx),
            // Same metadata: the member missed its JoinGroup answer; repeat it.
            State::CompletingRebalance if unchanged => Reply::Now(Ok(self.join_response(&id))),
            // A follower with nothing new can go straight on to SyncGroup. The leader's
            // JoinGroup always rebalances: it may have seen a change its metadata does not show.
            State::Stable if unchanged && !is_leader => {
                let mut response = self.join_response(&id);
                response.members.clear();
                Reply::Now(Ok(response))
            }
            State::CompletingRebalance | State::Stable => {
                let reply = self.update_member(&id, &req, cx);
                let reason = format!("member {id} rejoined; reason: {:?}", req.reason);
                self.prepare_rebalance(cx, &reason);
                reply
            }
            State::Empty => Reply::Now(Err(GroupError::UnknownMemberId)),
        }
    }

    fn update_member(
        &mut self,
        id: &str,
        req: &JoinRequest,
        cx: &mut Ctx<'_>,
    ) -> Reply<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        let incarnation = self.next_seq();
        let m = self.members.get_mut(id).expect("member to update");
        let before = m.session_timeout;
        m.update(req, tx);
        m.touch(cx.now);
        if m.session_timeout < before {
            // The watcher sleeps on the old, longer session: start one for the shorter.
            m.incarnation = incarnation;
            cx.timers.push(Timer::Session {
                member_id: id.to_owned(),
                incarnation,
                at: m.deadline,
            });
        }
        Reply::Later(rx)
    }

    fn add_member(
        &mut self,
        id: String,
        req: &JoinRequest,
        cx: &mut Ctx<'_>,
    ) -> Reply<JoinResponse> {
        let incarnation = self.next_seq();
        let mut member = Member::new(id.clone(), req, cx.now, incarnation);
        let (tx, rx) = oneshot::channel();
        member.join_reply = Some(tx);
        cx.timers.push(Timer::Session {
            member_id: id.clone(),
            incarnation,
            at: cx.now + member.session_timeout,
        });
        if self.state == State::PreparingRebalance && self.initial_delay_left.is_some() {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.pending.remove(&id);
        self.members.insert(id.clone(), member);
        let reason = format!("member {id} joined; reason: {:?}", req.reason);
        self.maybe_prepare_rebalance(cx, &reason);
        Reply::Later(rx)
    }

    /// A static member rejoined with no member id: it gets a new id and the old one is fenced.
    /// A Stable group whose member offers exactly what it offered before does not rebalance;
    /// the member is answered with the current generation and goes on to SyncGroup.
    fn replace_static_member(
        &mut self,
        instance: &str,
        old_id: &str,
        new_id: String,
        req: &JoinRequest,
        cx: &mut Ctx<'_>,
    ) -> Reply<JoinResponse> {
        let old_leader = self.leader.clone().unwrap_or_default();
        let mut member = self.members.remove(old_id).expect("mapped static member");
        member.answer_join(Err(GroupError::FencedInstanceId));
        member.answer_sync(Err(GroupError::FencedInstanceId));
        let unchanged = member.matches(&req.protocols);
        member.id = new_id.clone();
        member.incarnation = self.next_seq();
        member.touch(cx.now);
        cx.timers.push(Timer::Session {
            member_id: new_id.clone(),
            incarnation: member.incarnation,
            at: member.deadline,
        });
        let (tx, rx) = oneshot::channel();
        member.update(req, tx);
        self.members.insert(new_id.clone(), member);
        self.static_members
            .insert(instance.to_owned(), new_id.clone());
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        tracing::info!(group = %self.id, instance, old = old_id, new = %new_id, "static member replaced");
        match self.state {
            State::Stable if unchanged => {
                // The old leader id is returned so that even a replaced leader does not compute
                // an assignment a Stable group would not hand out.
                let mut response = self.join_response(&new_id);
                response.members.clear();
                response.leader = old_leader;
                self.members
                    .get_mut(&new_id)
                    .expect("just inserted")
                    .answer_join(Ok(response));
                cx.persist = true;
            }
            State::Stable | State::CompletingRebalance | State::Empty => {
                self.prepare_rebalance(cx, "static member rejoined");
            }
            State::PreparingRebalance => {}
        }
        Reply::Later(rx)
    }
}
