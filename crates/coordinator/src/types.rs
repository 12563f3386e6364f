//! Requests, responses, configuration and outputs of the coordinator.

use std::fmt;

use bytes::Bytes;

use crate::error::GroupError;
use crate::snapshot::MetadataUpdate;

/// A caller-chosen token identifying one in-flight request. A parked JoinGroup or SyncGroup is
/// answered later under this id, so it must be unique among the caller's in-flight requests.
pub type RequestId = u64;

/// Tunables, named after the Kafka broker settings they mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first round of an empty group waits for
    /// more members (extended per new member, bounded by the rebalance timeout). Kafka: 3000.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`. Kafka: 6000.
    pub min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`. Kafka: 1_800_000.
    pub max_session_timeout_ms: u64,
    /// `group.max.size`: members per group. Kafka: unbounded.
    pub max_group_size: usize,
    /// How long a brand-new member's parked JoinGroup may wait before it is dropped. Kafka: 300_000.
    pub new_member_join_timeout_ms: u64,
    /// `offsets.retention.minutes` in ms: how long an empty group keeps its offsets. Kafka: 7 days.
    pub offsets_retention_ms: u64,
    /// Mixed into issued member ids so ids issued by a previous process run (which may come
    /// back restored from group metadata) never collide with new ones. The broker should pass
    /// something random or the boot time; tests pass a constant.
    pub member_id_nonce: u64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_group_size: usize::MAX,
            new_member_join_timeout_ms: 300_000,
            offsets_retention_ms: 7 * 24 * 3_600 * 1_000,
            member_id_nonce: 0,
        }
    }
}

/// The state of a group, as Kafka names it in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    /// No members (possibly only committed offsets).
    Empty,
    /// A join round is open: members (re)join until all have or the round times out.
    PreparingRebalance,
    /// The round closed; waiting for the leader's SyncGroup with the assignment.
    CompletingRebalance,
    /// The leader's assignment has been distributed.
    Stable,
    /// The group does not exist (deleted, expired, or never created).
    Dead,
}

impl GroupState {
    /// Kafka's name for the state (`"PreparingRebalance"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Parses a Kafka state name, case-insensitively (ListGroups v4+ filters are matched this way).
    pub fn from_name(name: &str) -> Option<GroupState> {
        [
            GroupState::Empty,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
            GroupState::Stable,
            GroupState::Dead,
        ]
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One protocol a member supports (for consumers: an assignor name and its subscription bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// Protocol name, e.g. `"range"`.
    pub name: String,
    /// Opaque member metadata for this protocol.
    pub metadata: Bytes,
}

/// JoinGroup, any version (the broker fills version-dependent fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupRequest {
    /// Group id.
    pub group_id: String,
    /// Member id; empty for a member joining for the first time.
    pub member_id: String,
    /// `group.instance.id` of a static member (v5+).
    pub group_instance_id: Option<String>,
    /// True for JoinGroup v4+: an unknown dynamic member first gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
    /// True for JoinGroup v9+: a static leader rejoining a stable group is told to skip assignment.
    pub supports_skip_assignment: bool,
    /// Client id from the request header (prefix of issued member ids).
    pub client_id: String,
    /// Client address, reported by DescribeGroups.
    pub client_host: String,
    /// Rebalance timeout (v1+; the broker passes the session timeout for v0).
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Protocol type, e.g. `"consumer"`.
    pub protocol_type: String,
    /// Supported protocols in preference order.
    pub protocols: Vec<Protocol>,
}

/// A member as listed to the leader in its JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// The member's metadata for the selected protocol.
    pub metadata: Bytes,
}

/// JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupResponse {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// Generation the member joined (-1 on error).
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id (empty on error).
    pub leader: String,
    /// v9+: the leader must not run the assignor (static leader rejoining a stable group).
    pub skip_assignment: bool,
    /// The member's id (the newly issued one with MEMBER_ID_REQUIRED).
    pub member_id: String,
    /// All members with their metadata; only sent to the leader.
    pub members: Vec<JoinGroupMember>,
}

impl JoinGroupResponse {
    pub(crate) fn error(member_id: &str, error: GroupError) -> JoinGroupResponse {
        JoinGroupResponse {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupRequest {
    /// Group id.
    pub group_id: String,
    /// Generation from the JoinGroup response.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// v5+: protocol type, checked against the group's.
    pub protocol_type: Option<String>,
    /// v5+: protocol name, checked against the selected one.
    pub protocol_name: Option<String>,
    /// Leader only: member id to opaque assignment. Missing members get an empty assignment;
    /// ids that are not members are ignored.
    pub assignments: Vec<(String, Bytes)>,
}

/// SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroupResponse {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The selected protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment (empty on error).
    pub assignment: Bytes,
}

impl SyncGroupResponse {
    pub(crate) fn error(error: GroupError) -> SyncGroupResponse {
        SyncGroupResponse {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// Heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// Group id.
    pub group_id: String,
    /// Generation the member believes is current.
    pub generation_id: i32,
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
}

/// Heartbeat response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// Error, if any.
    pub error: Option<GroupError>,
}

/// One member leaving (LeaveGroup v3+ carries a batch; v0-2 a single member id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// Member id; may be empty when an admin removes a static member by instance id.
    pub member_id: String,
    /// `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
}

/// LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    /// Group id.
    pub group_id: String,
    /// Members leaving.
    pub members: Vec<LeavingMember>,
}

/// Per-member outcome of a LeaveGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResult {
    /// Member id as sent.
    pub member_id: String,
    /// `group.instance.id` as sent.
    pub group_instance_id: Option<String>,
    /// Error, if any.
    pub error: Option<GroupError>,
}

/// LeaveGroup response. For v0-2 the broker reports the single member's error at top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupResponse {
    /// Request-level error, if any.
    pub error: Option<GroupError>,
    /// Per-member results, in request order.
    pub members: Vec<LeaveMemberResult>,
}

/// A request the coordinator can park or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// JoinGroup.
    JoinGroup(JoinGroupRequest),
    /// SyncGroup.
    SyncGroup(SyncGroupRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    LeaveGroup(LeaveGroupRequest),
}

/// A response, addressed by [`RequestId`] in an [`Output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// JoinGroup response.
    JoinGroup(JoinGroupResponse),
    /// SyncGroup response.
    SyncGroup(SyncGroupResponse),
    /// Heartbeat response.
    Heartbeat(HeartbeatResponse),
    /// LeaveGroup response.
    LeaveGroup(LeaveGroupResponse),
}

impl Response {
    /// Kafka error code of the response's (top-level) error; 0 for none.
    pub fn error_code(&self) -> i16 {
        GroupError::code_of(match self {
            Response::JoinGroup(r) => r.error,
            Response::SyncGroup(r) => r.error,
            Response::Heartbeat(r) => r.error,
            Response::LeaveGroup(r) => r.error,
        })
    }
}

/// What a scheduled timer is for (informational: [`crate::GroupCoordinator::tick`] re-checks
/// everything, so a stale timer is harmless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerKind {
    /// A member's (or pending member's) session expires unless it heartbeats.
    Session {
        /// The member id.
        member_id: String,
    },
    /// The initial-rebalance delay of a group that was empty ends.
    InitialRebalanceDelay,
    /// The join round's rebalance timeout ends.
    RebalanceTimeout,
    /// Members that have not sent SyncGroup by now are removed.
    SyncTimeout,
}

/// "Call [`crate::GroupCoordinator::tick`] at or after `deadline_ms`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRequest {
    /// Group the timer belongs to.
    pub group_id: String,
    /// Absolute time, same clock as the `now_ms` inputs.
    pub deadline_ms: u64,
    /// What it is for.
    pub kind: TimerKind,
}

/// Everything one call produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Responses, in the order they were produced, each addressed to a request id: the calling
    /// request's own immediate answer and/or answers to earlier parked requests. A JoinGroup or
    /// SyncGroup absent from this list is parked.
    pub responses: Vec<(RequestId, Response)>,
    /// Timers scheduled by this call.
    pub timers: Vec<TimerRequest>,
    /// Groups whose committed offsets have expired (empty longer than the retention): the broker
    /// deletes their offsets. The coordinator has already forgotten them.
    pub expired_groups: Vec<String>,
    /// Group metadata to make durable, in order, *before* delivering `responses` (see
    /// [`crate::MetadataUpdate`]).
    pub metadata: Vec<MetadataUpdate>,
}

impl Output {
    /// The response addressed to `id`, if this output has one.
    pub fn response(&self, id: RequestId) -> Option<&Response> {
        self.responses
            .iter()
            .find(|(r, _)| *r == id)
            .map(|(_, resp)| resp)
    }

    /// Appends another output (used when the caller batches calls).
    pub fn extend(&mut self, other: Output) {
        self.responses.extend(other.responses);
        self.timers.extend(other.timers);
        self.expired_groups.extend(other.expired_groups);
        self.metadata.extend(other.metadata);
    }
}

/// One member in a DescribeGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the selected protocol (empty unless Stable).
    pub metadata: Bytes,
    /// Current assignment (empty unless Stable).
    pub assignment: Bytes,
}

/// One group in a DescribeGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    /// Group id.
    pub group_id: String,
    /// Error, if any (INVALID_GROUP_ID for an empty id; an unknown group is `Dead`, no error).
    pub error: Option<GroupError>,
    /// State.
    pub state: GroupState,
    /// Protocol type (empty if none).
    pub protocol_type: String,
    /// Selected protocol (empty unless Stable).
    pub protocol_name: String,
    /// Members.
    pub members: Vec<DescribedMember>,
}

/// One group in a ListGroups answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    /// Group id.
    pub group_id: String,
    /// Protocol type (empty if none).
    pub protocol_type: String,
    /// State.
    pub state: GroupState,
}

/// The fields of an OffsetCommit that the coordinator validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitCheck {
    /// Group id.
    pub group_id: String,
    /// Generation id; -1 from standalone (`assign()`) consumers and admin tools.
    pub generation_id: i32,
    /// Member id; empty from standalone consumers and admin tools.
    pub member_id: String,
    /// `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// OffsetCommit version: v9+ answers GROUP_ID_NOT_FOUND where older ones answer
    /// ILLEGAL_GENERATION (commit with a generation to an unknown group).
    pub api_version: i16,
}

/// A read-only view of a group, for metrics, tooling and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// Current generation.
    pub generation_id: i32,
    /// Leader member id.
    pub leader: Option<String>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Member ids, sorted.
    pub members: Vec<String>,
    /// Ids issued with MEMBER_ID_REQUIRED and not yet used to join, sorted.
    pub pending_members: Vec<String>,
    /// Time of the last state change (for an Empty group: when it became empty).
    pub state_since_ms: u64,
}
