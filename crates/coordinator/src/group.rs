//! One group's state and its transitions. Everything here is synchronous and clock-free: `now`
//! is passed in and every effect (a response to a parked request, a timer) is pushed into an
//! [`Effects`] sink.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::error::GroupError;
use crate::snapshot::{GroupSnapshot, MemberSnapshot, MetadataUpdate, RestoreError};
use crate::types::{
    CoordinatorConfig, GroupState, JoinGroupMember, JoinGroupResponse, Protocol, RequestId,
    Response, SyncGroupResponse, TimerKind, TimerRequest,
};

/// Responses and timers produced while handling one call.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub responses: Vec<(RequestId, Response)>,
    pub timers: Vec<TimerRequest>,
    pub metadata: Vec<MetadataUpdate>,
}

impl Effects {
    pub fn respond(&mut self, id: RequestId, response: Response) {
        self.responses.push((id, response));
    }

    fn timer(&mut self, group_id: &str, deadline_ms: u64, kind: TimerKind) {
        self.timers.push(TimerRequest {
            group_id: group_id.to_owned(),
            deadline_ms,
            kind,
        });
    }
}

/// A group member.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    pub rebalance_timeout_ms: u64,
    pub session_timeout_ms: u64,
    pub protocols: Vec<Protocol>,
    /// Assignment of the current generation; `None` until the leader's SyncGroup delivers it.
    pub assignment: Option<Bytes>,
    /// A parked JoinGroup.
    pub awaiting_join: Option<RequestId>,
    /// A parked SyncGroup.
    pub awaiting_sync: Option<RequestId>,
    /// Joined but has not yet completed a join round (may be dropped by the new-member timeout).
    pub is_new: bool,
    /// When the member is evicted unless it heartbeats. `None` while a parked request stands in
    /// for heartbeats (Kafka: members awaiting join/sync satisfy their heartbeats).
    pub session_deadline: Option<u64>,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }
}

/// Which timer bounds the open join round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinTimer {
    /// Initial delay of a group that was empty: never completes early; may be extended while new
    /// members keep arriving, by at most `remaining_ms` in total.
    Initial { deadline: u64, remaining_ms: u64 },
    /// Rebalance timeout: completes early once every member has rejoined.
    Rebalance { deadline: u64 },
}

impl JoinTimer {
    pub fn deadline(self) -> u64 {
        match self {
            JoinTimer::Initial { deadline, .. } | JoinTimer::Rebalance { deadline } => deadline,
        }
    }
}

/// A due timer event of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Due {
    Join,
    Sync,
    Session(String),
    PendingSession(String),
}

/// A consumer group.
///
/// Invariants (checked by the property tests): `leader` is a member iff there are members;
/// `static_members` maps exactly the members with an instance id; Empty has no members;
/// CompletingRebalance and Stable have members and a protocol name; PreparingRebalance has a
/// join timer; Stable implies every member has an assignment.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub state_since_ms: u64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// Ids issued with MEMBER_ID_REQUIRED -> session deadline.
    pub pending_members: BTreeMap<String, u64>,
    /// Members that have not sent SyncGroup for the current generation.
    pub pending_sync: BTreeSet<String>,
    /// A new member arrived during the initial delay (the delay may be extended once more).
    pub new_member_added: bool,
    pub join_timer: Option<JoinTimer>,
    pub sync_deadline: Option<u64>,
    /// Offsets may exist for this group (a commit was accepted, or it was restored from the store).
    pub has_offsets: bool,
    /// Last accepted commit, for groups that never had members (standalone consumers).
    pub last_commit_ms: u64,
    /// The durable metadata changed (rebalance completed, group emptied, member removed or
    /// replaced) and the broker has not been asked to store it yet.
    pub metadata_dirty: bool,
    /// A metadata record may exist for this group (stored or restored), so forgetting the
    /// group must delete it.
    pub metadata_stored: bool,
}

/// Deadline `delay` after `now`, at least 1 ms later so that a timer rescheduled while handling
/// a due timer is never due in the same tick (this is what makes `tick` terminate).
fn after(now: u64, delay: u64) -> u64 {
    now.saturating_add(delay.max(1))
}

impl Group {
    pub fn new(group_id: &str, now: u64) -> Group {
        Group {
            group_id: group_id.to_owned(),
            state: GroupState::Empty,
            state_since_ms: now,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            join_timer: None,
            sync_deadline: None,
            has_offsets: false,
            last_commit_ms: now,
            metadata_dirty: false,
            metadata_stored: false,
        }
    }

    fn transition(&mut self, state: GroupState, now: u64) {
        self.state = state;
        self.state_since_ms = now;
        // Stable: a rebalance completed (Kafka stores the group before answering the SyncGroups).
        // Empty: the generation ended with no members left.
        if matches!(state, GroupState::Stable | GroupState::Empty) {
            self.metadata_dirty = true;
        }
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Largest rebalance timeout among members (bounds a join round).
    pub fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// True if `instance_id` belongs to a different member than `member_id`.
    pub fn is_static_member_fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|owner| owner != member_id)
    }

    /// Whether a member with these protocols may join. An empty group accepts any non-empty
    /// protocol type and list; otherwise the type must match and one protocol must be supported
    /// by every other member. `exclude` is the joining member's own id (its old protocols do not
    /// vote; Kafka counts them, which wrongly refuses a sole member changing its protocols).
    pub fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[Protocol],
        exclude: Option<&str>,
    ) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| {
                self.members
                    .values()
                    .filter(|m| Some(m.member_id.as_str()) != exclude)
                    .all(|m| m.supports(&p.name))
            })
    }

    /// Kafka's protocol selection: among protocols every member supports, each member votes for
    /// its most preferred; most votes wins. Ties go to the smallest name (Kafka leaves them to
    /// hash order; we want determinism).
    pub fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(choice) = member
                .protocols
                .iter()
                .map(|p| p.name.as_str())
                .find(|name| candidates.contains(name))
            {
                *votes.entry(choice).or_default() += 1;
            }
        }
        // BTreeMap iterates names ascending; keep the first maximum.
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, c)| count > c) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    /// Everyone has a parked JoinGroup and no MEMBER_ID_REQUIRED id is outstanding.
    fn has_all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Member list with selected-protocol metadata, as sent to the leader.
    fn member_metadata(&self) -> Vec<JoinGroupMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinGroupMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    /// The JoinGroup answer for `member_id` in the current generation.
    pub fn join_result(&self, member_id: &str, with_members: bool) -> JoinGroupResponse {
        JoinGroupResponse {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: if with_members {
                self.member_metadata()
            } else {
                Vec::new()
            },
        }
    }

    pub fn schedule_session(&mut self, member_id: &str, now: u64, fx: &mut Effects) {
        let gid = self.group_id.clone();
        if let Some(m) = self.members.get_mut(member_id) {
            let deadline = after(now, m.session_timeout_ms);
            m.session_deadline = Some(deadline);
            fx.timer(
                &gid,
                deadline,
                TimerKind::Session {
                    member_id: member_id.to_owned(),
                },
            );
        }
    }

    pub fn add_pending_member(&mut self, member_id: String, deadline: u64, fx: &mut Effects) {
        fx.timer(
            &self.group_id,
            deadline,
            TimerKind::Session {
                member_id: member_id.clone(),
            },
        );
        self.pending_members.insert(member_id, deadline);
    }

    /// Parks `request` as the member's JoinGroup, answering a previously parked one (a client
    /// retry) so that no request is left unanswered.
    pub fn park_join(&mut self, member_id: &str, request: RequestId, fx: &mut Effects) {
        if let Some(m) = self.members.get_mut(member_id)
            && let Some(old) = m.awaiting_join.replace(request)
            && old != request
        {
            fx.respond(
                old,
                Response::JoinGroup(JoinGroupResponse::error(
                    member_id,
                    GroupError::RebalanceInProgress,
                )),
            );
        }
    }

    /// Adds a member with a parked JoinGroup and starts (or feeds) a rebalance.
    pub fn add_member_and_rebalance(
        &mut self,
        mut member: Member,
        request: RequestId,
        now: u64,
        cfg: &CoordinatorConfig,
        fx: &mut Effects,
    ) {
        let id = member.member_id.clone();
        member.is_new = true;
        member.awaiting_join = Some(request);
        // A new member may only be dropped after the (long) new-member timeout: it cannot
        // heartbeat while its JoinGroup is parked.
        let deadline = after(now, cfg.new_member_join_timeout_ms);
        member.session_deadline = Some(deadline);
        fx.timer(
            &self.group_id,
            deadline,
            TimerKind::Session {
                member_id: id.clone(),
            },
        );
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.pending_members.remove(&id);
        self.members.insert(id.clone(), member);
        if self.leader.is_none() {
            self.leader = Some(id);
        }
        self.maybe_prepare_rebalance(now, cfg, fx);
    }

    pub fn maybe_prepare_rebalance(&mut self, now: u64, cfg: &CoordinatorConfig, fx: &mut Effects) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now, cfg, fx);
        }
    }

    /// Opens a join round.
    pub fn prepare_rebalance(&mut self, now: u64, cfg: &CoordinatorConfig, fx: &mut Effects) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for the leader's assignment must rejoin instead.
            self.reset_and_propagate_assignment_error(GroupError::RebalanceInProgress, now, fx);
        }
        self.sync_deadline = None;
        self.pending_sync.clear();
        let rebalance_timeout = self.rebalance_timeout_ms();
        let timer = if self.state == GroupState::Empty {
            let delay = cfg.initial_rebalance_delay_ms;
            fx.timer(
                &self.group_id,
                now.saturating_add(delay),
                TimerKind::InitialRebalanceDelay,
            );
            JoinTimer::Initial {
                deadline: now.saturating_add(delay),
                remaining_ms: rebalance_timeout.saturating_sub(delay),
            }
        } else {
            let deadline = after(now, rebalance_timeout);
            fx.timer(&self.group_id, deadline, TimerKind::RebalanceTimeout);
            JoinTimer::Rebalance { deadline }
        };
        self.join_timer = Some(timer);
        self.transition(GroupState::PreparingRebalance, now);
        self.try_complete_join(now, fx);
    }

    /// Closes the round early if it is bounded by the rebalance timeout and everyone rejoined.
    pub fn try_complete_join(&mut self, now: u64, fx: &mut Effects) {
        if self.state == GroupState::PreparingRebalance
            && matches!(self.join_timer, Some(JoinTimer::Rebalance { .. }))
            && self.has_all_members_joined()
        {
            self.complete_join(now, fx);
        }
    }

    /// The join timer fired.
    pub fn on_join_timer(&mut self, now: u64, cfg: &CoordinatorConfig, fx: &mut Effects) {
        match self.join_timer {
            Some(JoinTimer::Initial { remaining_ms, .. })
                if self.new_member_added && remaining_ms > 0 =>
            {
                // Members are still arriving: wait a little longer, within the rebalance timeout.
                self.new_member_added = false;
                let delay = cfg.initial_rebalance_delay_ms.min(remaining_ms);
                let deadline = now.saturating_add(delay);
                fx.timer(&self.group_id, deadline, TimerKind::InitialRebalanceDelay);
                self.join_timer = Some(JoinTimer::Initial {
                    deadline,
                    remaining_ms: remaining_ms - delay,
                });
            }
            Some(_) => self.complete_join(now, fx),
            None => {}
        }
    }

    /// Ends the join round: drops dynamic members that did not rejoin, then starts the next
    /// generation and answers every parked JoinGroup.
    fn complete_join(&mut self, now: u64, fx: &mut Effects) {
        self.join_timer = None;
        self.new_member_added = false;
        let laggards: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in laggards {
            self.remove_member(&id, fx);
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Only static members are left and none rejoined: keep waiting until their sessions
            // expire (Kafka does the same).
            let deadline = after(now, self.rebalance_timeout_ms());
            fx.timer(&self.group_id, deadline, TimerKind::RebalanceTimeout);
            self.join_timer = Some(JoinTimer::Rebalance { deadline });
            return;
        }
        self.generation = self.generation.saturating_add(1);
        for m in self.members.values_mut() {
            m.assignment = None;
        }
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, now);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(GroupState::CompletingRebalance, now);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let is_leader = self.is_leader(id);
            let result = self.join_result(id, is_leader);
            if let Some(m) = self.members.get_mut(id) {
                m.is_new = false;
                if let Some(request) = m.awaiting_join.take() {
                    fx.respond(request, Response::JoinGroup(result));
                }
            }
            self.schedule_session(id, now, fx);
        }
        // Members that never send SyncGroup are removed after the rebalance timeout.
        self.pending_sync = ids.into_iter().collect();
        let deadline = after(now, self.rebalance_timeout_ms());
        fx.timer(&self.group_id, deadline, TimerKind::SyncTimeout);
        self.sync_deadline = Some(deadline);
    }

    /// Makes sure the leader is a member that rejoined; false if no member rejoined.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// Clears assignments and answers parked SyncGroups with `error`.
    /// Answered members' sessions restart: a session timer that fired while they were parked
    /// was ignored (`on_session_timer`), so they need a new one.
    fn reset_and_propagate_assignment_error(
        &mut self,
        error: GroupError,
        now: u64,
        fx: &mut Effects,
    ) {
        let mut answered = Vec::new();
        for m in self.members.values_mut() {
            m.assignment = None;
            if let Some(request) = m.awaiting_sync.take() {
                fx.respond(
                    request,
                    Response::SyncGroup(SyncGroupResponse::error(error)),
                );
                answered.push(m.member_id.clone());
            }
        }
        for id in answered {
            self.schedule_session(&id, now, fx);
        }
    }

    /// Stores the leader's assignment, answers parked SyncGroups and becomes Stable.
    pub fn set_and_propagate_assignment(
        &mut self,
        assignments: &[(String, Bytes)],
        now: u64,
        fx: &mut Effects,
    ) {
        let mut by_member: BTreeMap<&str, &Bytes> = BTreeMap::new();
        for (id, bytes) in assignments {
            by_member.insert(id, bytes);
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in &ids {
            let assignment = by_member
                .get(id.as_str())
                .map(|b| (*b).clone())
                .unwrap_or_default();
            let response = SyncGroupResponse {
                error: None,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                assignment: assignment.clone(),
            };
            let mut answered = false;
            if let Some(m) = self.members.get_mut(id) {
                m.assignment = Some(assignment);
                if let Some(request) = m.awaiting_sync.take() {
                    fx.respond(request, Response::SyncGroup(response));
                    answered = true;
                }
            }
            if answered {
                self.schedule_session(id, now, fx);
            }
        }
        self.transition(GroupState::Stable, now);
    }

    /// A member sent SyncGroup for the current generation.
    pub fn sync_received(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
    }

    /// The sync timeout fired: members that never sent SyncGroup are removed and the group
    /// rebalances without them.
    pub fn on_sync_timer(&mut self, now: u64, cfg: &CoordinatorConfig, fx: &mut Effects) {
        self.sync_deadline = None;
        if !matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) || self.pending_sync.is_empty()
        {
            return;
        }
        let laggards: Vec<String> = std::mem::take(&mut self.pending_sync).into_iter().collect();
        for id in laggards {
            self.remove_member(&id, fx);
        }
        self.prepare_rebalance(now, cfg, fx);
    }

    /// Removes a member without reacting to it; answers its parked requests with
    /// UNKNOWN_MEMBER_ID. Returns whether it was a member.
    pub fn remove_member(&mut self, member_id: &str, fx: &mut Effects) -> bool {
        let Some(m) = self.members.remove(member_id) else {
            return false;
        };
        // A removed member must not come back as a member after a restart.
        self.metadata_dirty = true;
        if let Some(request) = m.awaiting_join {
            fx.respond(
                request,
                Response::JoinGroup(JoinGroupResponse::error(
                    member_id,
                    GroupError::UnknownMemberId,
                )),
            );
        }
        if let Some(request) = m.awaiting_sync {
            fx.respond(
                request,
                Response::SyncGroup(SyncGroupResponse::error(GroupError::UnknownMemberId)),
            );
        }
        if let Some(instance) = &m.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(member_id);
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        true
    }

    /// Removes a member and reacts: a stable or completing group rebalances; an open round may
    /// now be complete.
    pub fn remove_member_and_update(
        &mut self,
        member_id: &str,
        now: u64,
        cfg: &CoordinatorConfig,
        fx: &mut Effects,
    ) {
        if !self.remove_member(member_id, fx) {
            return;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now, cfg, fx)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub fn remove_pending_member_and_update(
        &mut self,
        member_id: &str,
        now: u64,
        fx: &mut Effects,
    ) {
        if self.pending_members.remove(member_id).is_some() {
            self.try_complete_join(now, fx);
        }
    }

    /// Gives the member `new_id` the identity of static member `old_id`, fencing the old id:
    /// its parked requests are answered with FENCED_INSTANCE_ID.
    pub fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_id: &str,
        new_id: &str,
        fx: &mut Effects,
    ) {
        let Some(mut m) = self.members.remove(old_id) else {
            return;
        };
        // The new id must be known after a restart (a stable group takes it over without a
        // rebalance, so no later write would record it).
        self.metadata_dirty = true;
        if let Some(request) = m.awaiting_join.take() {
            fx.respond(
                request,
                Response::JoinGroup(JoinGroupResponse::error(
                    old_id,
                    GroupError::FencedInstanceId,
                )),
            );
        }
        if let Some(request) = m.awaiting_sync.take() {
            fx.respond(
                request,
                Response::SyncGroup(SyncGroupResponse::error(GroupError::FencedInstanceId)),
            );
        }
        m.member_id = new_id.to_owned();
        self.members.insert(new_id.to_owned(), m);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_owned());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_owned());
        }
        self.static_members
            .insert(instance_id.to_owned(), new_id.to_owned());
    }

    /// The earliest timer of this group that is due at `now`, if any. Ties: join, sync, then
    /// sessions in member-id order.
    pub fn next_due(&self, now: u64) -> Option<Due> {
        let mut best: Option<(u64, Due)> = None;
        let mut consider = |deadline: u64, due: Due| {
            if deadline <= now && best.as_ref().is_none_or(|(d, _)| deadline < *d) {
                best = Some((deadline, due));
            }
        };
        if let Some(t) = self.join_timer {
            consider(t.deadline(), Due::Join);
        }
        if let Some(d) = self.sync_deadline {
            consider(d, Due::Sync);
        }
        for m in self.members.values() {
            if let Some(d) = m.session_deadline {
                consider(d, Due::Session(m.member_id.clone()));
            }
        }
        for (id, d) in &self.pending_members {
            consider(*d, Due::PendingSession(id.clone()));
        }
        best.map(|(_, due)| due)
    }

    /// The earliest deadline of this group's timers.
    pub fn next_deadline(&self) -> Option<u64> {
        let members = self.members.values().filter_map(|m| m.session_deadline);
        let pending = self.pending_members.values().copied();
        self.join_timer
            .map(JoinTimer::deadline)
            .into_iter()
            .chain(self.sync_deadline)
            .chain(members)
            .chain(pending)
            .min()
    }

    /// A member's session timer fired.
    pub fn on_session_timer(
        &mut self,
        member_id: &str,
        now: u64,
        cfg: &CoordinatorConfig,
        fx: &mut Effects,
    ) {
        let Some(m) = self.members.get_mut(member_id) else {
            return;
        };
        if !m.is_new && (m.awaiting_join.is_some() || m.awaiting_sync.is_some()) {
            // A parked request stands in for heartbeats; the session restarts when it completes.
            m.session_deadline = None;
            return;
        }
        self.remove_member_and_update(member_id, now, cfg, fx);
    }

    /// The group's durable metadata now. Stable and Empty groups are stored as they are; a
    /// group between rebalances is stored with `rebalance_pending` and without the members
    /// that never completed a round (they have no generation to keep).
    pub fn snapshot(&self) -> GroupSnapshot {
        let settled = matches!(self.state, GroupState::Stable | GroupState::Empty);
        let members: Vec<MemberSnapshot> = self
            .members
            .values()
            .filter(|m| settled || !m.is_new)
            .map(|m| MemberSnapshot {
                member_id: m.member_id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocols: m.protocols.clone(),
                assignment: m.assignment.clone(),
            })
            .collect();
        let leader = self
            .leader
            .clone()
            .filter(|l| members.iter().any(|m| &m.member_id == l))
            .or_else(|| members.first().map(|m| m.member_id.clone()));
        GroupSnapshot {
            group_id: self.group_id.clone(),
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            // A group without (settled) members restores Empty, which has no selected protocol.
            protocol_name: self.protocol_name.clone().filter(|_| !members.is_empty()),
            leader,
            rebalance_pending: !settled && !members.is_empty(),
            members,
        }
    }

    /// Rebuilds a group from its snapshot at restart time `now`: Empty without members, else
    /// Stable with every member's session restarting at `now` (a member that does not come back
    /// expires as usual), then a join round at once if a rebalance was pending.
    pub fn restore(
        snapshot: GroupSnapshot,
        now: u64,
        cfg: &CoordinatorConfig,
    ) -> Result<Group, RestoreError> {
        snapshot.validate()?;
        let mut g = Group::new(&snapshot.group_id, now);
        g.generation = snapshot.generation_id;
        g.protocol_type = snapshot.protocol_type.clone();
        g.metadata_stored = true;
        let pending = snapshot.rebalance_pending;
        if snapshot.members.is_empty() {
            return Ok(g);
        }
        g.protocol_name = snapshot.protocol_name;
        g.leader = snapshot.leader;
        let protocol_type = g.protocol_type.clone().unwrap_or_default();
        for m in snapshot.members {
            if let Some(instance) = &m.group_instance_id {
                g.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let member = Member {
                member_id: m.member_id.clone(),
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                protocol_type: protocol_type.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocols: m.protocols,
                // A pending rebalance clears assignments anyway; Stable needs one per member.
                assignment: Some(m.assignment.unwrap_or_default()),
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                session_deadline: Some(after(now, m.session_timeout_ms)),
            };
            g.members.insert(m.member_id, member);
        }
        g.state = GroupState::Stable;
        if pending {
            // Timers are not reported here: the caller arms its wake-up at `next_deadline`.
            let mut fx = Effects::default();
            g.prepare_rebalance(now, cfg, &mut fx);
        }
        // Restoring is not a change: the record already says exactly this.
        g.metadata_dirty = false;
        Ok(g)
    }

    #[cfg(test)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let g = &self.group_id;
        match &self.leader {
            Some(l) if !self.members.contains_key(l) => {
                return Err(format!("{g}: leader {l} is not a member"));
            }
            None if !self.members.is_empty() => return Err(format!("{g}: members but no leader")),
            _ => {}
        }
        for (instance, id) in &self.static_members {
            let ok = self
                .members
                .get(id)
                .is_some_and(|m| m.instance_id.as_deref() == Some(instance));
            if !ok {
                return Err(format!("{g}: static map {instance}->{id} is stale"));
            }
        }
        for m in self.members.values() {
            if let Some(i) = &m.instance_id
                && self.static_members.get(i) != Some(&m.member_id)
            {
                return Err(format!("{g}: static member {} not mapped", m.member_id));
            }
            if m.awaiting_sync.is_some() && self.state != GroupState::CompletingRebalance {
                return Err(format!("{g}: parked sync outside CompletingRebalance"));
            }
            if m.awaiting_join.is_some() && self.state != GroupState::PreparingRebalance {
                return Err(format!("{g}: parked join outside PreparingRebalance"));
            }
            if m.awaiting_join.is_none()
                && m.awaiting_sync.is_none()
                && m.session_deadline.is_none()
            {
                return Err(format!("{g}: member {} has no session timer", m.member_id));
            }
        }
        match self.state {
            GroupState::Empty if !self.members.is_empty() => {
                Err(format!("{g}: Empty with members"))
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if self.members.is_empty() || self.protocol_name.is_none() =>
            {
                Err(format!("{g}: {} without members or protocol", self.state))
            }
            GroupState::Stable if self.members.values().any(|m| m.assignment.is_none()) => {
                Err(format!("{g}: Stable with a member lacking an assignment"))
            }
            GroupState::PreparingRebalance if self.join_timer.is_none() => {
                Err(format!("{g}: PreparingRebalance without a join timer"))
            }
            GroupState::Dead => Err(format!("{g}: Dead group kept")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        Member {
            member_id: id.to_owned(),
            instance_id: None,
            client_id: "c".to_owned(),
            client_host: "h".to_owned(),
            protocol_type: "consumer".to_owned(),
            rebalance_timeout_ms: 1_000,
            session_timeout_ms: 1_000,
            protocols: protocols
                .iter()
                .map(|p| Protocol {
                    name: (*p).to_owned(),
                    metadata: Bytes::new(),
                })
                .collect(),
            assignment: None,
            awaiting_join: None,
            awaiting_sync: None,
            is_new: false,
            session_deadline: Some(1_000),
        }
    }

    /// Member id and its protocols, in preference order.
    type Spec<'a> = (&'a str, &'a [&'a str]);

    fn group(members: &[Spec<'_>]) -> Group {
        let mut g = Group::new("g", 0);
        g.state = GroupState::Stable;
        g.protocol_type = Some("consumer".to_owned());
        for (id, protocols) in members {
            g.members.insert((*id).to_owned(), member(id, protocols));
        }
        g.leader = g.members.keys().next().cloned();
        g
    }

    fn protos(names: &[&str]) -> Vec<Protocol> {
        member("x", names).protocols
    }

    #[test]
    fn protocol_selection_table() {
        let table: &[(&[Spec<'_>], Option<&str>)] = &[
            (&[("a", &["range"])], Some("range")),
            // Most first-choice votes among the common protocols wins.
            (
                &[
                    ("a", &["rr", "range"]),
                    ("b", &["rr", "range"]),
                    ("c", &["range", "rr"]),
                ],
                Some("rr"),
            ),
            // A protocol not everyone supports cannot win, even with more votes.
            (
                &[
                    ("a", &["sticky", "range"]),
                    ("b", &["sticky", "range"]),
                    ("c", &["range"]),
                ],
                Some("range"),
            ),
            // Ties go to the smallest name.
            (
                &[("a", &["rr", "range"]), ("b", &["range", "rr"])],
                Some("range"),
            ),
            (&[("a", &["rr"]), ("b", &["range"])], None),
            (&[], None),
        ];
        for (members, want) in table {
            assert_eq!(
                group(members).select_protocol().as_deref(),
                *want,
                "{members:?}"
            );
        }
    }

    #[test]
    fn supports_protocols_table() {
        let g = group(&[("a", &["range", "rr"]), ("b", &["rr"])]);
        let table: &[(&str, &[&str], Option<&str>, bool)] = &[
            ("consumer", &["rr"], None, true),
            ("consumer", &["range"], None, false),
            ("connect", &["rr"], None, false),
            ("consumer", &[], None, false),
            // b changing its own protocols: only a's support matters.
            ("consumer", &["range"], Some("b"), true),
        ];
        for (ptype, names, exclude, want) in table {
            assert_eq!(
                g.supports_protocols(ptype, &protos(names), *exclude),
                *want,
                "{ptype} {names:?} {exclude:?}"
            );
        }
        let mut empty = Group::new("e", 0);
        assert!(empty.supports_protocols("anything", &protos(&["x"]), None));
        assert!(!empty.supports_protocols("", &protos(&["x"]), None));
        empty.state = GroupState::Empty;
        assert!(!empty.supports_protocols("consumer", &[], None));
    }

    #[test]
    fn removing_the_leader_hands_leadership_to_a_remaining_member() {
        let mut g = group(&[("a", &["range"]), ("b", &["range"])]);
        let mut fx = Effects::default();
        assert!(g.remove_member("a", &mut fx));
        assert_eq!(g.leader.as_deref(), Some("b"));
        assert!(!g.remove_member("a", &mut fx));
        assert!(g.remove_member("b", &mut fx));
        assert_eq!(g.leader, None);
    }
}
