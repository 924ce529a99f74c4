//! What happens when time runs out: the end of a join phase, members that never sent
//! SyncGroup, expired sessions and member ids handed out but never used.

use std::time::Instant;

use super::GroupError;
use super::group::{Ctx, Group, State, Timer};

impl Group {
    /// The join timer fired.
    pub fn on_join_timer(&mut self, token: u64, cx: &mut Ctx<'_>) {
        if self.state != State::PreparingRebalance || token != self.join_timer {
            return;
        }
        if let Some(left) = self.initial_delay_left
            && self.new_member_added
            && !left.is_zero()
        {
            // Members are still arriving: wait once more, within the rebalance timeout.
            let after = cx.config.initial_rebalance_delay.min(left);
            self.initial_delay_left = Some(left - after);
            self.new_member_added = false;
            let token = self.next_seq();
            self.join_timer = token;
            cx.timers.push(Timer::Join { token, after });
            return;
        }
        self.complete_join(cx);
    }

    /// The sync timer fired: members of `generation` that never sent SyncGroup are removed.
    pub fn on_sync_timer(&mut self, generation: i32, cx: &mut Ctx<'_>) {
        let syncing = matches!(self.state, State::CompletingRebalance | State::Stable);
        if generation != self.generation || !syncing || self.pending_sync.is_empty() {
            return;
        }
        let late: Vec<String> = self.pending_sync.iter().cloned().collect();
        tracing::info!(group = %self.id, members = ?late, "removing members that did not sync");
        for id in &late {
            self.remove(id, GroupError::UnknownMemberId);
        }
        self.prepare_rebalance(cx, "members did not send SyncGroup in time");
    }

    /// A member's session watcher woke up: returns when to look again, or `None` when the
    /// member is gone (removed here if its session expired).
    pub fn on_session_timer(
        &mut self,
        member_id: &str,
        incarnation: u64,
        cx: &mut Ctx<'_>,
    ) -> Option<Instant> {
        let now = cx.now;
        let m = self.members.get_mut(member_id)?;
        if m.incarnation != incarnation {
            return None;
        }
        if m.deadline > now {
            // The deadline may later move earlier than it is now (a new member's long first
            // deadline ends when its rebalance completes): look again within one session.
            return Some(m.deadline.min(now + m.session_timeout));
        }
        // A member waiting on the rebalance cannot heartbeat; the rebalance and sync timers
        // bound that wait. A new member is only kept for the new-member join timeout.
        if !m.is_new && (m.join_reply.is_some() || m.sync_reply.is_some()) {
            m.touch(now);
            return Some(m.deadline);
        }
        tracing::info!(group = %self.id, member = member_id, "session expired, removing member");
        self.remove_and_rebalance(member_id, cx, "session expired");
        None
    }

    /// A member id handed out with `MemberIdRequired` was not used in time.
    pub fn on_pending_timer(&mut self, member_id: &str, cx: &mut Ctx<'_>) {
        if self.pending.remove(member_id) {
            self.try_complete_join(cx);
        }
    }
}
