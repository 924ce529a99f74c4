//! A group's state machine: rebalance preparation and completion, protocol choice and member
//! removal. The requests are in `join.rs` and `requests.rs`, the timers' effects in `expiry.rs`.
//!
//! Nothing here blocks or spawns: timers to start and the need to persist are recorded in a
//! [`Ctx`], which the coordinator carries out once it has released its lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::member::Member;
use super::{Config, GroupError, JoinMember, JoinResponse};

/// A group's state, named as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// A timer the coordinator starts on the group's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Timer {
    /// Ends the join phase; ignored unless `token` is still the group's `join_timer`.
    Join { token: u64, after: Duration },
    /// Removes members that have not sent SyncGroup for `generation`.
    Sync { generation: i32, after: Duration },
    /// Watches a member's session.
    Session {
        member_id: String,
        incarnation: u64,
        at: Instant,
    },
    /// Forgets a member id handed out with `MemberIdRequired` that was never used.
    Pending { member_id: String, after: Duration },
}

/// What a state change needs done after the lock is released.
#[derive(Debug)]
pub(super) struct Ctx<'a> {
    pub now: Instant,
    pub config: &'a Config,
    pub timers: Vec<Timer>,
    /// The group's metadata must be written to the state log.
    pub persist: bool,
}

impl<'a> Ctx<'a> {
    pub fn new(config: &'a Config) -> Self {
        Ctx {
            now: Instant::now(),
            config,
            timers: Vec::new(),
            persist: false,
        }
    }
}

/// One consumer group.
#[derive(Debug)]
pub(super) struct Group {
    pub id: String,
    pub state: State,
    /// Set by the first member; kept while Empty.
    pub protocol_type: Option<String>,
    /// The protocol of the current generation.
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Instance id → member id of static members.
    pub static_members: HashMap<String, String>,
    /// Ids handed out with `MemberIdRequired` and not yet used to join.
    pub pending: HashSet<String>,
    /// Members of this generation that have not sent SyncGroup yet.
    pub pending_sync: HashSet<String>,
    /// While a rebalance that started from Empty waits its initial delay: how much longer it
    /// may still be extended.
    pub initial_delay_left: Option<Duration>,
    /// A member joined during the current initial delay.
    pub new_member_added: bool,
    /// Token of the join timer that counts; earlier ones are stale.
    pub join_timer: u64,
    seq: u64,
}

impl Group {
    pub fn new(id: String) -> Self {
        Group {
            id,
            state: State::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashSet::new(),
            pending_sync: HashSet::new(),
            initial_delay_left: None,
            new_member_added: false,
            join_timer: 0,
            seq: 0,
        }
    }

    /// A fresh token or incarnation number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Never formed a generation and holds no one: nothing to keep (a group created by a
    /// JoinGroup that was refused, or whose member id was never used).
    pub fn is_unformed(&self) -> bool {
        self.state == State::Empty
            && self.generation == 0
            && self.members.is_empty()
            && self.pending.is_empty()
    }

    /// The longest rebalance timeout of any member.
    pub fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    /// Starts a rebalance unless one is already being prepared.
    pub fn maybe_prepare_rebalance(&mut self, cx: &mut Ctx<'_>, reason: &str) {
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(cx, reason);
        }
    }

    /// Moves to PreparingRebalance: members still waiting for an assignment are told to
    /// rejoin, and the join phase is bounded by the rebalance timeout (from Empty, by the
    /// initial delay, which later joins may extend up to the rebalance timeout).
    pub fn prepare_rebalance(&mut self, cx: &mut Ctx<'_>, reason: &str) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if m.answer_sync(Err(GroupError::RebalanceInProgress)) {
                    m.touch(cx.now);
                }
            }
        }
        self.pending_sync.clear();
        let timeout = self.rebalance_timeout();
        let token = self.next_seq();
        self.join_timer = token;
        let after = if self.state == State::Empty {
            let delay = cx.config.initial_rebalance_delay;
            self.initial_delay_left = Some(timeout.saturating_sub(delay));
            self.new_member_added = false;
            delay
        } else {
            self.initial_delay_left = None;
            timeout
        };
        tracing::info!(
            group = %self.id,
            from = self.state.name(),
            generation = self.generation,
            reason,
            "preparing to rebalance"
        );
        self.state = State::PreparingRebalance;
        cx.timers.push(Timer::Join { token, after });
        self.try_complete_join(cx);
    }

    /// Every member has rejoined and no member id handed out is still unused.
    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_reply.is_some())
    }

    /// Completes the join phase early once everyone has rejoined (not during an initial delay,
    /// which always runs its course so that members started together land in one generation).
    pub fn try_complete_join(&mut self, cx: &mut Ctx<'_>) {
        if self.state == State::PreparingRebalance
            && self.initial_delay_left.is_none()
            && self.all_joined()
        {
            self.complete_join(cx);
        }
    }

    /// Ends the join phase: dynamic members that did not rejoin are dropped, the generation is
    /// bumped, a protocol chosen and every pending JoinGroup answered.
    pub fn complete_join(&mut self, cx: &mut Ctx<'_>) {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_reply.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        if !gone.is_empty() {
            tracing::info!(group = %self.id, members = ?gone, "removing members that did not rejoin");
        }
        for id in &gone {
            self.remove(id, GroupError::UnknownMemberId);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Only static members that have not rejoined are left: give them another rebalance
            // timeout (their sessions may expire meanwhile).
            let token = self.next_seq();
            self.join_timer = token;
            self.initial_delay_left = None;
            let after = self.rebalance_timeout();
            cx.timers.push(Timer::Join { token, after });
            return;
        }
        self.join_timer = self.next_seq();
        self.initial_delay_left = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.state = State::Empty;
            tracing::info!(group = %self.id, generation = self.generation, "group is empty");
            cx.persist = true;
            return;
        }
        self.protocol = Some(self.select_protocol());
        self.state = State::CompletingRebalance;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "rebalance joined"
        );
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id);
            let m = self.members.get_mut(&id).expect("listed member");
            m.answer_join(Ok(response));
            m.touch(cx.now);
            m.is_new = false;
            self.pending_sync.insert(id);
        }
        cx.timers.push(Timer::Sync {
            generation: self.generation,
            after: self.rebalance_timeout(),
        });
    }

    /// Keeps the leader if it rejoined, else picks a member that did; false if none did.
    fn elect_joined_leader(&mut self) -> bool {
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.join_reply.is_some());
        if leader_joined {
            return true;
        }
        match self.members.values().find(|m| m.join_reply.is_some()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// Kafka's vote: among the protocols every member supports, each member votes for the one
    /// it prefers most; the most voted wins (ties go to the leader's preference).
    pub fn select_protocol(&self) -> String {
        let first = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next());
        let Some(first) = first else {
            return String::new();
        };
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            if let Some(choice) = m.vote(&candidates) {
                let at = candidates
                    .iter()
                    .position(|c| *c == choice)
                    .expect("a candidate");
                votes[at] += 1;
            }
        }
        // `max_by_key` keeps the last maximum: walk backwards so ties go to the earlier one.
        let best = (0..candidates.len()).rev().max_by_key(|i| votes[*i]);
        match best {
            Some(i) => candidates[i].to_owned(),
            // Joins are refused when no protocol would be common, so this is not expected.
            None => first
                .protocols
                .first()
                .map(|(n, _)| n.clone())
                .unwrap_or_default(),
        }
    }

    /// The JoinGroup answer for `member_id` in the current generation: the leader gets every
    /// member's metadata for the chosen protocol.
    pub fn join_response(&self, member_id: &str) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            skip_assignment: false,
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| JoinMember {
                        member_id: m.id.clone(),
                        group_instance_id: m.instance_id.clone(),
                        metadata: m.metadata(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Takes a member out of the group; a request it has pending is answered with `why`.
    pub fn remove(&mut self, member_id: &str, why: GroupError) -> Option<Member> {
        let mut m = self.members.remove(member_id)?;
        m.answer_join(Err(why.clone()));
        m.answer_sync(Err(why));
        if let Some(instance) = &m.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(m)
    }

    /// Removes a member (it left, or its session expired) and rebalances what is left.
    pub fn remove_and_rebalance(&mut self, member_id: &str, cx: &mut Ctx<'_>, reason: &str) {
        if self
            .remove(member_id, GroupError::UnknownMemberId)
            .is_none()
        {
            return;
        }
        match self.state {
            State::Empty => {}
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(cx, reason),
            State::PreparingRebalance => self.try_complete_join(cx),
        }
    }
}
