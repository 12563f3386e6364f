//! [`GroupCoordinator`]: the entry point. It owns every group, routes requests to them, and
//! turns the clock input of [`GroupCoordinator::tick`] into timer events.

use std::collections::BTreeMap;

use crate::error::GroupError;
use crate::group::{Due, Effects, Group, Member};
use crate::snapshot::{GroupSnapshot, MetadataUpdate, RestoreError};
use crate::types::{
    CoordinatorConfig, DescribedGroup, DescribedMember, GroupState, GroupView, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    LeaveMemberResult, ListedGroup, OffsetCommitCheck, Output, Request, RequestId, Response,
    SyncGroupRequest, SyncGroupResponse,
};

/// The consumer-group coordinator of one node: a pure state machine over all its groups.
///
/// Every method takes `now_ms` where time matters and never reads a clock. Requests return an
/// [`Output`] listing responses (to the calling request and to earlier parked ones) and timers;
/// [`GroupCoordinator::tick`] fires the timers that are due.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    config: CoordinatorConfig,
    groups: BTreeMap<String, Group>,
    next_member_seq: u64,
    /// Metadata deletions decided by calls that return no [`Output`] (DeleteGroups), handed out
    /// by [`GroupCoordinator::take_metadata_updates`] or with the next output.
    unreported: Vec<MetadataUpdate>,
}

impl GroupCoordinator {
    /// A coordinator with no groups.
    pub fn new(config: CoordinatorConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            next_member_seq: 0,
            unreported: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// Handles any parkable request; see the per-request methods.
    pub fn handle(&mut self, id: RequestId, request: Request, now_ms: u64) -> Output {
        match request {
            Request::JoinGroup(r) => self.join_group(id, r, now_ms),
            Request::SyncGroup(r) => self.sync_group(id, r, now_ms),
            Request::Heartbeat(r) => self.heartbeat(id, r, now_ms),
            Request::LeaveGroup(r) => self.leave_group(id, r, now_ms),
        }
    }

    fn issue_member_id(&mut self, prefix: &str) -> String {
        self.next_member_seq += 1;
        format!(
            "{prefix}-{:016x}-{:016x}",
            self.config.member_id_nonce, self.next_member_seq
        )
    }

    /// JoinGroup. Usually parked until the join round completes; answered at once on errors,
    /// MEMBER_ID_REQUIRED, and rejoins that change nothing.
    pub fn join_group(&mut self, id: RequestId, req: JoinGroupRequest, now_ms: u64) -> Output {
        let mut fx = Effects::default();
        if let Some(response) = self.do_join(id, &req, now_ms, &mut fx) {
            fx.respond(id, Response::JoinGroup(response));
        }
        self.flush_metadata(Some(&req.group_id), &mut fx);
        finish(fx)
    }

    fn do_join(
        &mut self,
        id: RequestId,
        req: &JoinGroupRequest,
        now: u64,
        fx: &mut Effects,
    ) -> Option<JoinGroupResponse> {
        let fail = |e| Some(JoinGroupResponse::error(&req.member_id, e));
        if req.group_id.is_empty() {
            return fail(GroupError::InvalidGroupId);
        }
        let session = u64::try_from(req.session_timeout_ms).unwrap_or(0);
        if session < self.config.min_session_timeout_ms
            || session > self.config.max_session_timeout_ms
        {
            return fail(GroupError::InvalidSessionTimeout);
        }
        let unknown = req.member_id.is_empty();
        let new_id = if unknown {
            let prefix = req.group_instance_id.as_deref().unwrap_or(&req.client_id);
            self.issue_member_id(prefix)
        } else {
            String::new()
        };
        let created = !self.groups.contains_key(&req.group_id);
        if created {
            if !unknown {
                return fail(GroupError::UnknownMemberId);
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, now));
        }
        let cfg = &self.config;
        // Just ensured to exist; answering keeps the "every request is answered" promise total.
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fail(GroupError::UnknownMemberId);
        };
        let response = if !accept_joining_member(group, &req.member_id, cfg.max_group_size) {
            fail(GroupError::GroupMaxSizeReached)
        } else if unknown {
            unknown_member_join(group, cfg, id, req, new_id, now, fx)
        } else {
            known_member_join(group, cfg, id, req, now, fx)
        };
        group.try_complete_join(now, fx);
        let unused = group.members.is_empty() && group.pending_members.is_empty();
        if created && unused {
            self.groups.remove(&req.group_id);
        }
        response
    }

    /// SyncGroup. The leader's sync distributes the assignment and answers everyone; a
    /// follower's sync is parked until then (answered at once once Stable).
    pub fn sync_group(&mut self, id: RequestId, req: SyncGroupRequest, now_ms: u64) -> Output {
        let mut fx = Effects::default();
        if let Some(response) = self.do_sync(id, &req, now_ms, &mut fx) {
            fx.respond(id, Response::SyncGroup(response));
        }
        self.flush_metadata(Some(&req.group_id), &mut fx);
        finish(fx)
    }

    fn do_sync(
        &mut self,
        id: RequestId,
        req: &SyncGroupRequest,
        now: u64,
        fx: &mut Effects,
    ) -> Option<SyncGroupResponse> {
        let fail = |e| Some(SyncGroupResponse::error(e));
        if req.group_id.is_empty() {
            return fail(GroupError::InvalidGroupId);
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fail(GroupError::UnknownMemberId);
        };
        if let Err(e) = check_member(
            group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            return fail(e);
        }
        let type_ok = req
            .protocol_type
            .as_ref()
            .is_none_or(|t| group.protocol_type.as_ref() == Some(t));
        let name_ok = req
            .protocol_name
            .as_ref()
            .is_none_or(|n| group.protocol_name.as_ref() == Some(n));
        if !type_ok || !name_ok {
            return fail(GroupError::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => fail(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let Some(member) = group.members.get_mut(&req.member_id) else {
                    return fail(GroupError::UnknownMemberId);
                };
                if let Some(old) = member.awaiting_sync.replace(id)
                    && old != id
                {
                    // A retried SyncGroup supersedes the parked one; answer it so it is not lost.
                    fx.respond(
                        old,
                        Response::SyncGroup(SyncGroupResponse::error(
                            GroupError::RebalanceInProgress,
                        )),
                    );
                }
                group.sync_received(&req.member_id);
                if group.is_leader(&req.member_id) {
                    group.set_and_propagate_assignment(&req.assignments, now, fx);
                }
                None
            }
            GroupState::Stable => {
                group.sync_received(&req.member_id);
                let assignment = group
                    .members
                    .get(&req.member_id)
                    .and_then(|m| m.assignment.clone())
                    .unwrap_or_default();
                group.schedule_session(&req.member_id, now, fx);
                Some(SyncGroupResponse {
                    error: None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment,
                })
            }
        }
    }

    /// Heartbeat: always answered at once. REBALANCE_IN_PROGRESS tells a member to rejoin.
    pub fn heartbeat(&mut self, id: RequestId, req: HeartbeatRequest, now_ms: u64) -> Output {
        let mut fx = Effects::default();
        let error = self.do_heartbeat(&req, now_ms, &mut fx).err();
        fx.respond(id, Response::Heartbeat(HeartbeatResponse { error }));
        self.flush_metadata(Some(&req.group_id), &mut fx);
        finish(fx)
    }

    fn do_heartbeat(
        &mut self,
        req: &HeartbeatRequest,
        now: u64,
        fx: &mut Effects,
    ) -> Result<(), GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group = self
            .groups
            .get_mut(&req.group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        check_member(
            group,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        )?;
        match group.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                group.schedule_session(&req.member_id, now, fx);
                Ok(())
            }
            GroupState::PreparingRebalance => {
                group.schedule_session(&req.member_id, now, fx);
                Err(GroupError::RebalanceInProgress)
            }
        }
    }

    /// LeaveGroup with a batch of members (v3+; v0-2 is a batch of one). Always answered at
    /// once; may complete other members' parked requests.
    pub fn leave_group(&mut self, id: RequestId, req: LeaveGroupRequest, now_ms: u64) -> Output {
        let mut fx = Effects::default();
        let response = self.do_leave(&req, now_ms, &mut fx);
        fx.respond(id, Response::LeaveGroup(response));
        self.flush_metadata(Some(&req.group_id), &mut fx);
        finish(fx)
    }

    fn do_leave(
        &mut self,
        req: &LeaveGroupRequest,
        now: u64,
        fx: &mut Effects,
    ) -> LeaveGroupResponse {
        if req.group_id.is_empty() {
            return LeaveGroupResponse {
                error: Some(GroupError::InvalidGroupId),
                members: Vec::new(),
            };
        }
        let cfg = &self.config;
        let group = self.groups.get_mut(&req.group_id);
        let mut results = Vec::with_capacity(req.members.len());
        let mut group = group;
        for leaving in &req.members {
            let error = match group.as_deref_mut() {
                None => Some(GroupError::UnknownMemberId),
                Some(g) => leave_one(g, cfg, leaving, now, fx).err(),
            };
            results.push(LeaveMemberResult {
                member_id: leaving.member_id.clone(),
                group_instance_id: leaving.group_instance_id.clone(),
                error,
            });
        }
        LeaveGroupResponse {
            error: None,
            members: results,
        }
    }

    /// Fires every timer due at `now_ms`: session expiries (eviction and rebalance), the end of
    /// join rounds (initial delay or rebalance timeout: laggards are removed), sync timeouts,
    /// and offsets retention (reported in [`Output::expired_groups`]).
    pub fn tick(&mut self, now_ms: u64) -> Output {
        let mut fx = Effects::default();
        let cfg = &self.config;
        for group in self.groups.values_mut() {
            // Every handled event removes its own deadline and schedules only later ones (see
            // `group::after`), so this ends; the cap guards the saturating end of the clock.
            let mut budget = 4 * (group.members.len() + group.pending_members.len()) + 16;
            while budget > 0 {
                budget -= 1;
                match group.next_due(now_ms) {
                    None => break,
                    Some(Due::Join) => group.on_join_timer(now_ms, cfg, &mut fx),
                    Some(Due::Sync) => group.on_sync_timer(now_ms, cfg, &mut fx),
                    Some(Due::Session(member)) => {
                        group.on_session_timer(&member, now_ms, cfg, &mut fx)
                    }
                    Some(Due::PendingSession(member)) => {
                        group.remove_pending_member_and_update(&member, now_ms, &mut fx)
                    }
                }
            }
        }
        let retention = self.config.offsets_retention_ms;
        let mut expired = Vec::new();
        let mut forgotten = Vec::new();
        self.groups.retain(|id, g| {
            if g.state != GroupState::Empty || !g.pending_members.is_empty() {
                return true;
            }
            let keep = if !g.has_offsets {
                // Nothing left to remember: no members and no offsets.
                false
            } else if now_ms.saturating_sub(expiry_clock(g)) >= retention {
                expired.push(id.clone());
                false
            } else {
                true
            };
            if !keep && g.metadata_stored {
                forgotten.push(MetadataUpdate::Delete {
                    group_id: id.clone(),
                });
            }
            keep
        });
        self.unreported.extend(forgotten);
        self.flush_metadata(None, &mut fx);
        let mut out = finish(fx);
        out.expired_groups = expired;
        out
    }

    /// The earliest time at which [`GroupCoordinator::tick`] has something to do (including
    /// offsets expiry), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let retention = self.config.offsets_retention_ms;
        self.groups
            .values()
            .flat_map(|g| {
                let expiry = (g.state == GroupState::Empty && g.has_offsets)
                    .then(|| expiry_clock(g).saturating_add(retention));
                g.next_deadline().into_iter().chain(expiry)
            })
            .min()
    }

    /// DescribeGroups. An unknown group is described as `Dead` with no error, as Kafka does.
    pub fn describe_groups<S: AsRef<str>>(&self, group_ids: &[S]) -> Vec<DescribedGroup> {
        group_ids
            .iter()
            .map(|id| describe(id.as_ref(), self.groups.get(id.as_ref())))
            .collect()
    }

    /// ListGroups, optionally filtered by state (an empty filter lists all), sorted by id.
    pub fn list_groups(&self, states: &[GroupState]) -> Vec<ListedGroup> {
        self.groups
            .values()
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .map(|g| ListedGroup {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect()
    }

    /// DeleteGroups: only groups without members. `None` means deleted; the broker then deletes
    /// the group's committed offsets.
    pub fn delete_groups<S: AsRef<str>>(
        &mut self,
        group_ids: &[S],
    ) -> Vec<(String, Option<GroupError>)> {
        group_ids
            .iter()
            .map(|id| {
                let id = id.as_ref();
                let error = match self.groups.get(id) {
                    _ if id.is_empty() => Some(GroupError::InvalidGroupId),
                    None => Some(GroupError::GroupIdNotFound),
                    Some(g) if g.state == GroupState::Empty => {
                        if g.metadata_stored {
                            self.unreported.push(MetadataUpdate::Delete {
                                group_id: id.to_owned(),
                            });
                        }
                        self.groups.remove(id);
                        None
                    }
                    Some(_) => Some(GroupError::NonEmptyGroup),
                };
                (id.to_owned(), error)
            })
            .collect()
    }

    /// Decides whether an OffsetCommit may be applied, as Kafka's classic group coordinator
    /// does. `Ok` means the broker should store the offsets; the group then counts as having
    /// offsets (a standalone commit to an unknown group creates an Empty group, so it is listed,
    /// can be deleted and eventually expires). A valid commit from a member also counts as a
    /// heartbeat.
    pub fn validate_offset_commit(
        &mut self,
        check: &OffsetCommitCheck,
        now_ms: u64,
    ) -> Result<(), GroupError> {
        if check.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let Some(group) = self.groups.get_mut(&check.group_id) else {
            return if check.generation_id < 0 {
                let mut group = Group::new(&check.group_id, now_ms);
                group.has_offsets = true;
                self.groups.insert(check.group_id.clone(), group);
                Ok(())
            } else if check.api_version >= 9 {
                Err(GroupError::GroupIdNotFound)
            } else {
                Err(GroupError::IllegalGeneration)
            };
        };
        let standalone = check.generation_id < 0;
        if !(standalone && group.state == GroupState::Empty) {
            if !standalone || !check.member_id.is_empty() || check.group_instance_id.is_some() {
                validate_member(group, &check.member_id, check.group_instance_id.as_deref())?;
                if check.generation_id != group.generation {
                    return Err(GroupError::IllegalGeneration);
                }
            } else if group.state != GroupState::Empty {
                // Without member id and generation, only an empty group accepts commits.
                return Err(GroupError::UnknownMemberId);
            }
            if group.state == GroupState::CompletingRebalance {
                // The member has its new generation but not yet its assignment.
                return Err(GroupError::RebalanceInProgress);
            }
        }
        group.has_offsets = true;
        group.last_commit_ms = now_ms;
        if let Some(m) = group.members.get_mut(&check.member_id)
            && m.session_deadline.is_some()
        {
            m.session_deadline = Some(now_ms.saturating_add(m.session_timeout_ms.max(1)));
        }
        Ok(())
    }

    /// Registers a group known to have committed offsets, e.g. found in the offset store at
    /// startup (after [`GroupCoordinator::restore_snapshot`] for groups with stored metadata;
    /// groups without come back Empty). Offsets retention restarts from `now_ms`.
    pub fn restore_group(&mut self, group_id: &str, now_ms: u64) {
        if group_id.is_empty() {
            return;
        }
        let group = self
            .groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id, now_ms));
        group.has_offsets = true;
    }

    /// Rebuilds a group from its stored metadata (see [`GroupSnapshot`]) at restart time
    /// `now_ms`, replacing any group of that id. A snapshot with members comes back Stable in
    /// its generation (or straight into a join round if a rebalance was pending), every member's
    /// session restarting at `now_ms`; one without members comes back Empty with its protocol
    /// type. Call [`GroupCoordinator::restore_group`] afterwards if the group has offsets. The
    /// members' session deadlines are visible through [`GroupCoordinator::next_deadline`].
    pub fn restore_snapshot(
        &mut self,
        snapshot: GroupSnapshot,
        now_ms: u64,
    ) -> Result<(), RestoreError> {
        let group = Group::restore(snapshot, now_ms, &self.config)?;
        self.groups.insert(group.group_id.clone(), group);
        Ok(())
    }

    /// The current durable metadata of a group (what the last [`MetadataUpdate::Store`] for it
    /// said, if the group is Stable or Empty), for tools and tests.
    pub fn snapshot(&self, group_id: &str) -> Option<GroupSnapshot> {
        self.groups.get(group_id).map(Group::snapshot)
    }

    /// Metadata updates decided outside an [`Output`] (DeleteGroups deletes the records of the
    /// groups it forgets). The broker applies them like an output's `metadata`; anything not
    /// taken is reported with the next output.
    pub fn take_metadata_updates(&mut self) -> Vec<MetadataUpdate> {
        std::mem::take(&mut self.unreported)
    }

    /// Moves pending deletions and the records of changed groups (`group`, or all when `None`)
    /// into `fx`.
    fn flush_metadata(&mut self, group: Option<&str>, fx: &mut Effects) {
        fx.metadata.append(&mut self.unreported);
        let mut store = |g: &mut Group| {
            if g.metadata_dirty {
                g.metadata_dirty = false;
                g.metadata_stored = true;
                fx.metadata.push(MetadataUpdate::Store(g.snapshot()));
            }
        };
        match group {
            Some(id) => {
                if let Some(g) = self.groups.get_mut(id) {
                    store(g);
                }
            }
            None => self.groups.values_mut().for_each(store),
        }
    }

    /// A snapshot of one group, if it exists.
    pub fn group(&self, group_id: &str) -> Option<GroupView> {
        self.groups.get(group_id).map(|g| GroupView {
            group_id: g.group_id.clone(),
            state: g.state,
            generation_id: g.generation,
            leader: g.leader.clone(),
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol_name.clone(),
            members: g.members.keys().cloned().collect(),
            pending_members: g.pending_members.keys().cloned().collect(),
            state_since_ms: g.state_since_ms,
        })
    }

    /// Ids of all parked (unanswered) JoinGroup and SyncGroup requests, sorted.
    pub fn parked_requests(&self) -> Vec<RequestId> {
        let mut ids: Vec<RequestId> = self
            .groups
            .values()
            .flat_map(|g| g.members.values())
            .flat_map(|m| m.awaiting_join.into_iter().chain(m.awaiting_sync))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Stops coordinating: answers every parked request with NOT_COORDINATOR (clients then
    /// look the coordinator up again) and forgets all groups.
    pub fn shutdown(&mut self) -> Output {
        let mut fx = Effects::default();
        for group in std::mem::take(&mut self.groups).into_values() {
            for m in group.members.into_values() {
                if let Some(request) = m.awaiting_join {
                    fx.respond(
                        request,
                        Response::JoinGroup(JoinGroupResponse::error(
                            &m.member_id,
                            GroupError::NotCoordinator,
                        )),
                    );
                }
                if let Some(request) = m.awaiting_sync {
                    fx.respond(
                        request,
                        Response::SyncGroup(SyncGroupResponse::error(GroupError::NotCoordinator)),
                    );
                }
            }
        }
        finish(fx)
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        self.groups.values().try_for_each(Group::check_invariants)
    }
}

fn finish(fx: Effects) -> Output {
    Output {
        responses: fx.responses,
        timers: fx.timers,
        expired_groups: Vec::new(),
        metadata: fx.metadata,
    }
}

/// The time offsets retention counts from: when the group became empty, or for a group that
/// never had members (standalone consumers only) its last commit. Kafka expires standalone
/// offsets per partition by commit time; we only know the group's latest commit.
fn expiry_clock(g: &Group) -> u64 {
    if g.protocol_type.is_none() {
        g.state_since_ms.max(g.last_commit_ms)
    } else {
        g.state_since_ms
    }
}

/// Kafka's `group.max.size` admission rule.
fn accept_joining_member(group: &Group, member_id: &str, max: usize) -> bool {
    match group.state {
        GroupState::Empty | GroupState::Dead => true,
        GroupState::PreparingRebalance => {
            group
                .members
                .get(member_id)
                .is_some_and(|m| m.awaiting_join.is_some())
                || group
                    .members
                    .values()
                    .filter(|m| m.awaiting_join.is_some())
                    .count()
                    < max
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            group.members.contains_key(member_id) || group.members.len() < max
        }
    }
}

/// The identity checks shared by SyncGroup and Heartbeat, in Kafka's order.
fn check_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Result<(), GroupError> {
    if group.is_static_member_fenced(member_id, instance_id) {
        return Err(GroupError::FencedInstanceId);
    }
    if !group.members.contains_key(member_id) {
        return Err(GroupError::UnknownMemberId);
    }
    if generation != group.generation {
        return Err(GroupError::IllegalGeneration);
    }
    Ok(())
}

/// Offset-commit member check: a static member is identified by its instance id.
fn validate_member(
    group: &Group,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), GroupError> {
    match instance_id {
        Some(instance) => match group.static_members.get(instance) {
            None => Err(GroupError::UnknownMemberId),
            Some(owner) if owner != member_id => Err(GroupError::FencedInstanceId),
            Some(_) => Ok(()),
        },
        None if group.members.contains_key(member_id) => Ok(()),
        None => Err(GroupError::UnknownMemberId),
    }
}

fn new_member(req: &JoinGroupRequest, member_id: String) -> Member {
    let session = u64::try_from(req.session_timeout_ms).unwrap_or(0);
    Member {
        member_id,
        instance_id: req.group_instance_id.clone(),
        client_id: req.client_id.clone(),
        client_host: req.client_host.clone(),
        protocol_type: req.protocol_type.clone(),
        rebalance_timeout_ms: u64::try_from(req.rebalance_timeout_ms).unwrap_or(0),
        session_timeout_ms: session,
        protocols: req.protocols.clone(),
        assignment: None,
        awaiting_join: None,
        awaiting_sync: None,
        is_new: true,
        session_deadline: None,
    }
}

/// Refreshes a member's protocols and timeouts from a JoinGroup.
fn update_member(member: &mut Member, req: &JoinGroupRequest) {
    member.protocols = req.protocols.clone();
    member.rebalance_timeout_ms = u64::try_from(req.rebalance_timeout_ms).unwrap_or(0);
    member.session_timeout_ms = u64::try_from(req.session_timeout_ms).unwrap_or(0);
    member.client_id = req.client_id.clone();
    member.client_host = req.client_host.clone();
}

/// JoinGroup with an empty member id.
fn unknown_member_join(
    group: &mut Group,
    cfg: &CoordinatorConfig,
    id: RequestId,
    req: &JoinGroupRequest,
    new_id: String,
    now: u64,
    fx: &mut Effects,
) -> Option<JoinGroupResponse> {
    let old_static = req
        .group_instance_id
        .as_ref()
        .and_then(|i| group.static_members.get(i))
        .cloned();
    if !group.supports_protocols(&req.protocol_type, &req.protocols, old_static.as_deref()) {
        return Some(JoinGroupResponse::error(
            &req.member_id,
            GroupError::InconsistentGroupProtocol,
        ));
    }
    match (&req.group_instance_id, old_static) {
        (Some(instance), Some(old_id)) => {
            update_static_member(group, cfg, id, req, instance, &old_id, &new_id, now, fx)
        }
        (None, None) if req.require_known_member_id => {
            // JoinGroup v4+: hand out the id first, so a client that times out and retries is
            // recognised instead of piling up unknown members.
            let session = u64::try_from(req.session_timeout_ms).unwrap_or(0);
            group.add_pending_member(new_id.clone(), now.saturating_add(session.max(1)), fx);
            Some(JoinGroupResponse::error(
                &new_id,
                GroupError::MemberIdRequired,
            ))
        }
        _ => {
            group.add_member_and_rebalance(new_member(req, new_id), id, now, cfg, fx);
            None
        }
    }
}

/// A static member rejoined with an empty member id: it takes over its instance's membership
/// under a new id (the old id is fenced). A stable group whose protocol choice is unaffected
/// does not rebalance: the member gets the current generation and, via SyncGroup, its old
/// assignment.
#[allow(clippy::too_many_arguments)]
fn update_static_member(
    group: &mut Group,
    cfg: &CoordinatorConfig,
    id: RequestId,
    req: &JoinGroupRequest,
    instance: &str,
    old_id: &str,
    new_id: &str,
    now: u64,
    fx: &mut Effects,
) -> Option<JoinGroupResponse> {
    let previous_leader = group.leader.clone();
    group.replace_static_member(instance, old_id, new_id, fx);
    if let Some(m) = group.members.get_mut(new_id) {
        update_member(m, req);
    }
    group.schedule_session(new_id, now, fx);
    match group.state {
        GroupState::Stable if group.select_protocol() == group.protocol_name => {
            let is_leader = group.is_leader(new_id);
            let mut response = group.join_result(new_id, req.supports_skip_assignment && is_leader);
            if req.supports_skip_assignment {
                // v9+: the leader learns it leads but must not reassign a stable group.
                response.skip_assignment = is_leader;
            } else {
                // Older clients would run the assignor if they saw themselves as leader, and a
                // stable group would ignore the result: report the previous leader id instead.
                response.leader = previous_leader.unwrap_or_default();
            }
            Some(response)
        }
        GroupState::PreparingRebalance => {
            group.park_join(new_id, id, fx);
            None
        }
        _ => {
            // CompletingRebalance: the leader may be assigning to the old id, so start over.
            // Stable with a changed protocol choice: the assignment must be redone.
            group.park_join(new_id, id, fx);
            group.prepare_rebalance(now, cfg, fx);
            None
        }
    }
}

/// JoinGroup with a member id.
fn known_member_join(
    group: &mut Group,
    cfg: &CoordinatorConfig,
    id: RequestId,
    req: &JoinGroupRequest,
    now: u64,
    fx: &mut Effects,
) -> Option<JoinGroupResponse> {
    let member_id = req.member_id.as_str();
    let fail = |e| Some(JoinGroupResponse::error(member_id, e));
    if !group.supports_protocols(&req.protocol_type, &req.protocols, Some(member_id)) {
        return fail(GroupError::InconsistentGroupProtocol);
    }
    let instance = req.group_instance_id.as_deref();
    if group.pending_members.contains_key(member_id) {
        // The id handed out with MEMBER_ID_REQUIRED: the member really joins now.
        if group.is_static_member_fenced(member_id, instance) {
            return fail(GroupError::FencedInstanceId);
        }
        group.add_member_and_rebalance(new_member(req, member_id.to_owned()), id, now, cfg, fx);
        return None;
    }
    if group.is_static_member_fenced(member_id, instance) {
        return fail(GroupError::FencedInstanceId);
    }
    let instance_unknown = instance.is_some_and(|i| !group.static_members.contains_key(i));
    let Some(member) = group.members.get(member_id) else {
        return fail(GroupError::UnknownMemberId);
    };
    if instance_unknown {
        return fail(GroupError::UnknownMemberId);
    }
    let unchanged = member.protocols == req.protocols;
    let rebalance = match group.state {
        GroupState::Empty | GroupState::Dead => return fail(GroupError::UnknownMemberId),
        GroupState::PreparingRebalance => true,
        // Same metadata: the member probably missed the JoinGroup response; resend it.
        GroupState::CompletingRebalance => !unchanged,
        // The leader's JoinGroup always rebalances (it may have seen topic metadata change).
        GroupState::Stable => group.is_leader(member_id) || !unchanged,
    };
    if !rebalance {
        let with_members =
            group.is_leader(member_id) && group.state == GroupState::CompletingRebalance;
        return Some(group.join_result(member_id, with_members));
    }
    if let Some(m) = group.members.get_mut(member_id) {
        update_member(m, req);
    }
    group.park_join(member_id, id, fx);
    group.maybe_prepare_rebalance(now, cfg, fx);
    None
}

/// One member of a LeaveGroup batch.
fn leave_one(
    group: &mut Group,
    cfg: &CoordinatorConfig,
    leaving: &crate::types::LeavingMember,
    now: u64,
    fx: &mut Effects,
) -> Result<(), GroupError> {
    let instance = leaving.group_instance_id.as_deref();
    if leaving.member_id.is_empty() {
        // Admin removal of a static member by instance id.
        let current = instance
            .and_then(|i| group.static_members.get(i))
            .cloned()
            .ok_or(GroupError::UnknownMemberId)?;
        group.remove_member_and_update(&current, now, cfg, fx);
        return Ok(());
    }
    if group.pending_members.contains_key(&leaving.member_id) {
        group.remove_pending_member_and_update(&leaving.member_id, now, fx);
        return Ok(());
    }
    if group.is_static_member_fenced(&leaving.member_id, instance) {
        return Err(GroupError::FencedInstanceId);
    }
    if !group.members.contains_key(&leaving.member_id) {
        return Err(GroupError::UnknownMemberId);
    }
    group.remove_member_and_update(&leaving.member_id, now, cfg, fx);
    Ok(())
}

fn describe(group_id: &str, group: Option<&Group>) -> DescribedGroup {
    let dead = |error| DescribedGroup {
        group_id: group_id.to_owned(),
        error,
        state: GroupState::Dead,
        protocol_type: String::new(),
        protocol_name: String::new(),
        members: Vec::new(),
    };
    if group_id.is_empty() {
        return dead(Some(GroupError::InvalidGroupId));
    }
    let Some(g) = group else {
        return dead(None);
    };
    let stable = g.state == GroupState::Stable;
    let protocol = if stable {
        g.protocol_name.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let members = g
        .members
        .values()
        .map(|m| DescribedMember {
            member_id: m.member_id.clone(),
            group_instance_id: m.instance_id.clone(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            metadata: if stable {
                m.protocols
                    .iter()
                    .find(|p| p.name == protocol)
                    .map(|p| p.metadata.clone())
                    .unwrap_or_default()
            } else {
                Default::default()
            },
            assignment: if stable {
                m.assignment.clone().unwrap_or_default()
            } else {
                Default::default()
            },
        })
        .collect();
    DescribedGroup {
        group_id: group_id.to_owned(),
        error: None,
        state: g.state,
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol_name: protocol,
        members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_member_ids_are_unique_and_carry_the_nonce() {
        let mut a = GroupCoordinator::new(CoordinatorConfig {
            member_id_nonce: 0xabc,
            ..CoordinatorConfig::default()
        });
        let mut b = GroupCoordinator::new(CoordinatorConfig {
            member_id_nonce: 0xdef,
            ..CoordinatorConfig::default()
        });
        let ids_a: Vec<String> = (0..3).map(|_| a.issue_member_id("client")).collect();
        let ids_b: Vec<String> = (0..3).map(|_| b.issue_member_id("client")).collect();
        assert_eq!(ids_a[0], "client-0000000000000abc-0000000000000001");
        let all: std::collections::BTreeSet<&String> = ids_a.iter().chain(&ids_b).collect();
        assert_eq!(all.len(), 6);
    }
}
