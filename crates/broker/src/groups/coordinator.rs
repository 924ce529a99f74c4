//! The coordinator's shared state: one lock over every group, the timers that drive
//! rebalances and sessions, and the writes of group metadata to the state log.
//!
//! Every request takes the lock, applies itself to its group and collects what must follow
//! (timers, a metadata write) in a [`Ctx`]; that is carried out after the lock is released, so
//! no lock is held across an `.await`. Timer tasks hold only a `Weak` to this state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

use super::group::{Ctx, Group, State, Timer};
use super::join::Reply;
use super::persist::{self, Writer};
use super::{
    Config, GroupDescription, GroupError, GroupListing, JoinRequest, JoinResponse, SyncRequest,
};
use crate::Broker;

/// Everything the coordinator knows, shared with its timer tasks.
#[derive(Debug)]
pub(super) struct Shared {
    pub config: Config,
    pub groups: Mutex<HashMap<String, Group>>,
    broker: OnceLock<Weak<Broker>>,
    writer: Writer,
    /// The running join and sync timer of each group: a new one replaces (aborts) the old, so
    /// that rebalance timers with long client timeouts do not pile up.
    phase_timers: Mutex<HashMap<(String, bool), tokio::task::AbortHandle>>,
}

/// What a request left to do once the lock is released.
#[derive(Debug)]
struct Work {
    group_id: String,
    timers: Vec<Timer>,
    write: Option<persist::Job>,
}

impl Shared {
    pub fn new(config: Config) -> Self {
        Shared {
            config,
            groups: Mutex::new(HashMap::new()),
            broker: OnceLock::new(),
            writer: Writer::default(),
            phase_timers: Mutex::new(HashMap::new()),
        }
    }

    fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }

    /// Runs `f` on the group map under the lock and collects its follow-up work for `group_id`.
    fn locked<R>(
        &self,
        group_id: &str,
        f: impl FnOnce(&mut HashMap<String, Group>, &mut Ctx<'_>) -> R,
    ) -> (R, Work) {
        let mut cx = Ctx::new(&self.config);
        let mut groups = self.groups.lock();
        let result = f(&mut groups, &mut cx);
        if groups.get(group_id).is_some_and(Group::is_unformed) {
            groups.remove(group_id);
        }
        let write = cx.persist.then(|| match groups.get(group_id) {
            Some(g) => self.writer.job(g),
            None => self.writer.delete_job(group_id),
        });
        drop(groups);
        let work = Work {
            group_id: group_id.to_owned(),
            timers: cx.timers,
            write,
        };
        (result, work)
    }

    /// Runs `f` on one existing group; `None` if there is no such group.
    fn with_group<R>(
        &self,
        group_id: &str,
        f: impl FnOnce(&mut Group, &mut Ctx<'_>) -> R,
    ) -> (Option<R>, Work) {
        self.locked(group_id, |groups, cx| {
            groups.get_mut(group_id).map(|g| f(g, cx))
        })
    }

    /// Starts the timers and writes the metadata a state change asked for. The write runs in
    /// its own task so that a caller that goes away cannot cut it short.
    async fn finish(self: &Arc<Self>, work: Work) {
        for timer in work.timers {
            self.start(&work.group_id, timer);
        }
        if let Some(job) = work.write
            && let Some(broker) = self.broker()
        {
            let me = Arc::clone(self);
            let task = tokio::spawn(async move { me.writer.write(&broker, job).await });
            if let Err(e) = task.await {
                tracing::error!(error = %e, "group metadata write task failed");
            }
        }
    }

    fn start(self: &Arc<Self>, group_id: &str, timer: Timer) {
        let weak = Arc::downgrade(self);
        let group_id = group_id.to_owned();
        let phase = match &timer {
            Timer::Join { .. } => Some((group_id.clone(), true)),
            Timer::Sync { .. } => Some((group_id.clone(), false)),
            _ => None,
        };
        let task = tokio::spawn({
            let phase = phase.clone();
            async move {
                match timer {
                    Timer::Join { token, after } => {
                        tokio::time::sleep(after).await;
                        fire(&weak, &group_id, |g, cx| g.on_join_timer(token, cx)).await;
                    }
                    Timer::Sync { generation, after } => {
                        tokio::time::sleep(after).await;
                        fire(&weak, &group_id, |g, cx| g.on_sync_timer(generation, cx)).await;
                    }
                    Timer::Pending { member_id, after } => {
                        tokio::time::sleep(after).await;
                        fire(&weak, &group_id, |g, cx| g.on_pending_timer(&member_id, cx)).await;
                    }
                    Timer::Session {
                        member_id,
                        incarnation,
                        mut at,
                    } => loop {
                        tokio::time::sleep_until(at.into()).await;
                        let next = fire(&weak, &group_id, |g, cx| {
                            g.on_session_timer(&member_id, incarnation, cx)
                        })
                        .await;
                        match next.flatten() {
                            Some(later) => at = later,
                            None => return,
                        }
                    },
                }
                if let (Some(key), Some(shared)) = (phase, weak.upgrade()) {
                    let mut timers = shared.phase_timers.lock();
                    if timers
                        .get(&key)
                        .is_some_and(|h| h.id() == tokio::task::id())
                    {
                        timers.remove(&key);
                    }
                }
            }
        });
        // A later join (or sync) timer of a group supersedes the earlier one, whose token or
        // generation is stale anyway.
        if let Some(key) = phase
            && let Some(old) = self.phase_timers.lock().insert(key, task.abort_handle())
        {
            old.abort();
        }
    }

    pub fn restore(self: &Arc<Self>, broker: &Arc<Broker>, live: &BTreeMap<String, Bytes>) {
        let _ = self.broker.set(Arc::downgrade(broker));
        let now = std::time::Instant::now();
        let range = persist::KEY_PREFIX.to_owned()..persist::KEY_END.to_owned();
        let groups = live
            .range(range)
            .filter_map(|(key, value)| match persist::decode(key, value, now) {
                Ok(g) => Some(g),
                Err(e) => {
                    tracing::error!(key, error = %e, "stored group metadata is unreadable");
                    None
                }
            })
            .collect();
        self.adopt(groups);
    }

    /// Takes in restored groups and starts their members' session watchers.
    pub fn adopt(self: &Arc<Self>, restored: Vec<Group>) {
        let mut timers = Vec::new();
        let mut groups = self.groups.lock();
        for group in restored {
            tracing::info!(
                group = %group.id,
                generation = group.generation,
                members = group.members.len(),
                "group restored"
            );
            for m in group.members.values() {
                let timer = Timer::Session {
                    member_id: m.id.clone(),
                    incarnation: m.incarnation,
                    at: m.deadline,
                };
                timers.push((group.id.clone(), timer));
            }
            groups.insert(group.id.clone(), group);
        }
        drop(groups);
        for (group_id, timer) in timers {
            self.start(&group_id, timer);
        }
    }

    pub async fn join(self: &Arc<Self>, req: JoinRequest) -> Result<JoinResponse, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let c = &self.config;
        if req.session_timeout_ms < c.min_session_timeout_ms
            || req.session_timeout_ms > c.max_session_timeout_ms
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        let group_id = req.group_id.clone();
        let (reply, work) = self.locked(&group_id, |groups, cx| {
            let group = match groups.get_mut(&group_id) {
                Some(g) => g,
                // Only a member without an id may create the group.
                None if req.member_id.is_empty() => groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(group_id.clone())),
                None => return Reply::Now(Err(GroupError::UnknownMemberId)),
            };
            group.join(req, cx)
        });
        self.finish(work).await;
        reply.get().await
    }

    pub async fn sync(self: &Arc<Self>, req: SyncRequest) -> Result<Bytes, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group_id = req.group_id.clone();
        let (reply, work) = self.with_group(&group_id, |g, cx| g.sync(req, cx));
        self.finish(work).await;
        match reply {
            Some(reply) => reply.get().await,
            None => Err(GroupError::UnknownMemberId),
        }
    }

    pub async fn heartbeat(
        self: &Arc<Self>,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let (result, work) = self.with_group(group_id, |g, cx| {
            g.heartbeat(generation_id, member_id, instance_id, cx)
        });
        self.finish(work).await;
        result.unwrap_or(Err(GroupError::UnknownMemberId))
    }

    pub async fn leave(
        self: &Arc<Self>,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Vec<(String, Option<String>, Result<(), GroupError>)> {
        if group_id.is_empty() {
            let invalid = Err(GroupError::InvalidGroupId);
            return members
                .into_iter()
                .map(|(m, i)| (m, i, invalid.clone()))
                .collect();
        }
        let (results, work) = self.locked(group_id, |groups, cx| {
            members
                .into_iter()
                .map(|(member_id, instance_id)| {
                    let result = match groups.get_mut(group_id) {
                        Some(g) => g.leave(&member_id, instance_id.as_deref(), cx),
                        None => Err(GroupError::UnknownMemberId),
                    };
                    (member_id, instance_id, result)
                })
                .collect()
        });
        self.finish(work).await;
        results
    }

    pub fn validate_commit(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        let mut cx = Ctx::new(&self.config);
        let mut groups = self.groups.lock();
        match groups.get_mut(group_id) {
            Some(g) => g.validate_commit(generation_id, member_id, instance_id, &mut cx),
            // No group management: a standalone consumer may commit.
            None if generation_id < 0 => Ok(()),
            // Kafka keeps a group with offsets as an Empty group, which has no members.
            None if self.has_offsets(group_id) => Err(GroupError::UnknownMemberId),
            None => Err(GroupError::IllegalGeneration),
        }
    }

    pub fn list(&self) -> Vec<GroupListing> {
        let mut listed: BTreeMap<String, GroupListing> = self
            .groups
            .lock()
            .values()
            .map(|g| {
                let listing = GroupListing {
                    group_id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state.name(),
                };
                (g.id.clone(), listing)
            })
            .collect();
        if let Some(broker) = self.broker() {
            for group_id in broker.groups_with_offsets() {
                listed.entry(group_id.clone()).or_insert(GroupListing {
                    group_id,
                    protocol_type: String::new(),
                    state: State::Empty.name(),
                });
            }
        }
        listed.into_values().collect()
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        if let Some(g) = self.groups.lock().get(group_id) {
            return g.describe();
        }
        GroupDescription {
            group_id: group_id.to_owned(),
            state: if self.has_offsets(group_id) {
                State::Empty.name()
            } else {
                "Dead"
            },
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }
    }

    fn has_offsets(&self, group_id: &str) -> bool {
        self.broker()
            .is_some_and(|b| !b.committed_offsets(group_id).is_empty())
    }

    pub async fn delete(self: &Arc<Self>, group_id: &str) -> Result<(), GroupError> {
        let has_offsets = self.has_offsets(group_id);
        let (result, work) = self.locked(group_id, |groups, cx| {
            match groups.get(group_id).map(|g| g.state) {
                Some(State::Empty) => {
                    groups.remove(group_id);
                    cx.persist = true;
                    Ok(())
                }
                Some(_) => Err(GroupError::NonEmptyGroup),
                None if has_offsets => {
                    cx.persist = true;
                    Ok(())
                }
                None => Err(GroupError::GroupIdNotFound),
            }
        });
        self.finish(work).await;
        if result.is_ok() {
            tracing::info!(group = group_id, "group deleted");
        }
        result
    }
}

/// Runs a timer's effect on its group, then the work that follows; `None` if the coordinator
/// or the group is gone.
async fn fire<R>(
    weak: &Weak<Shared>,
    group_id: &str,
    f: impl FnOnce(&mut Group, &mut Ctx<'_>) -> R,
) -> Option<R> {
    let shared = weak.upgrade()?;
    let (result, work) = shared.with_group(group_id, f);
    shared.finish(work).await;
    result
}
