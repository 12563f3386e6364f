//! Waterline's consumer-group coordinator as a pure state machine: requests and clock ticks in,
//! responses and timers out.
//!
//! [`GroupCoordinator`] implements Kafka's classic group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, DescribeGroups, ListGroups, DeleteGroups and offset-commit
//! validation) for every group of one node. It does no I/O and never reads a clock: time is the
//! `now_ms` argument of each call, so the broker (or a test) decides what "now" is. It knows
//! nothing of the wire format either: the broker decodes Kafka requests into this crate's
//! request types and encodes the responses in the schema of the request's version.
//!
//! # Driving it
//!
//! Every request carries a caller-chosen [`RequestId`]. A call returns an [`Output`]:
//!
//! - `responses`: `(RequestId, Response)` pairs. They may include the calling request's own
//!   answer and answers to requests parked earlier. A JoinGroup or SyncGroup whose id is absent
//!   is *parked*: Kafka answers those only when the join round completes or the leader's
//!   assignment arrives. The broker keeps a future per parked id and completes it when the id
//!   shows up in a later output. Every parked request is answered exactly once (on
//!   [`GroupCoordinator::shutdown`] with NOT_COORDINATOR at the latest).
//! - `timers`: deadlines scheduled by the call. The broker calls [`GroupCoordinator::tick`] at
//!   (or after) each. Stale timers are harmless: `tick` re-checks everything that is due.
//!   Offset commits (which count as heartbeats) and offsets retention move deadlines without a
//!   timer entry, so after each call the broker should also keep a wake-up armed at
//!   [`GroupCoordinator::next_deadline`]; doing only that is sufficient too.
//! - `expired_groups`: groups whose committed offsets the broker must delete (see below).
//! - `metadata`: group records to store or delete durably *before* delivering `responses`
//!   (see [`MetadataUpdate`] and the record format in [`snapshot`]).
//!
//! Requests never fire timers themselves; only `tick` does.
//!
//! ```
//! use bytes::Bytes;
//! use waterline_coordinator::*;
//!
//! let config = CoordinatorConfig { initial_rebalance_delay_ms: 0, ..Default::default() };
//! let mut coordinator = GroupCoordinator::new(config);
//! let join = JoinGroupRequest {
//!     group_id: "g".into(),
//!     member_id: String::new(),
//!     group_instance_id: None,
//!     require_known_member_id: false,
//!     supports_skip_assignment: false,
//!     client_id: "app".into(),
//!     client_host: "/10.0.0.1".into(),
//!     rebalance_timeout_ms: 30_000,
//!     session_timeout_ms: 10_000,
//!     protocol_type: "consumer".into(),
//!     protocols: vec![Protocol { name: "range".into(), metadata: Bytes::new() }],
//! };
//! // The JoinGroup is parked until the round closes (here: the zero initial delay expires).
//! let out = coordinator.join_group(1, join, 0);
//! assert!(out.response(1).is_none());
//! let out = coordinator.tick(0);
//! let Some(Response::JoinGroup(joined)) = out.response(1) else { panic!("not answered") };
//! assert_eq!(joined.leader, joined.member_id);
//!
//! // The leader sends the assignment; the group becomes Stable.
//! let sync = SyncGroupRequest {
//!     group_id: "g".into(),
//!     generation_id: joined.generation_id,
//!     member_id: joined.member_id.clone(),
//!     group_instance_id: None,
//!     protocol_type: None,
//!     protocol_name: None,
//!     assignments: vec![(joined.member_id.clone(), Bytes::from_static(b"p0"))],
//! };
//! let out = coordinator.sync_group(2, sync, 5);
//! let Some(Response::SyncGroup(synced)) = out.response(2) else { panic!("not answered") };
//! assert_eq!(synced.assignment, Bytes::from_static(b"p0"));
//! assert_eq!(coordinator.group("g").map(|g| g.state), Some(GroupState::Stable));
//! ```
//!
//! # States and transitions
//!
//! ```text
//! Empty ──join──▶ PreparingRebalance ──round closes──▶ CompletingRebalance ──leader sync──▶ Stable
//!   ▲                │   ▲                                    │                             │
//!   │                │   └─────── join / leave / expiry ──────┴─────────────────────────────┘
//!   └─ round closes ─┘
//!      with no members
//! ```
//!
//! - **Empty**: no members (maybe committed offsets, maybe ids handed out with
//!   MEMBER_ID_REQUIRED). A join opens a round with the *initial rebalance delay*.
//! - **PreparingRebalance**: a join round is open. Members (re)send JoinGroup, which parks.
//!   Heartbeats and SyncGroups answer REBALANCE_IN_PROGRESS so members know to rejoin. The round
//!   closes when every member and pending id has joined (only for rounds bounded by the
//!   rebalance timeout), or when its timer fires. Dynamic members that did not rejoin are
//!   removed; static members are kept. A leader that did not rejoin is replaced by one that
//!   did. The generation is bumped, a protocol is selected, and every parked JoinGroup is
//!   answered (the leader's answer lists all members and their metadata).
//! - **CompletingRebalance**: waiting for the leader's SyncGroup. Followers' SyncGroups park.
//!   Offset commits answer REBALANCE_IN_PROGRESS. The leader's SyncGroup stores the
//!   assignments (missing members get empty bytes) and answers every parked SyncGroup.
//! - **Stable**: SyncGroup answers at once with the stored assignment. A new member, a leave,
//!   an expiry, the leader's JoinGroup or a follower JoinGroup with changed metadata opens a
//!   new round (parked SyncGroups are answered REBALANCE_IN_PROGRESS first).
//! - **Dead**: never stored. It is the state DescribeGroups reports for unknown groups. Groups
//!   are forgotten when deleted, when their offsets expire, or when they are Empty with no
//!   offsets and no pending ids (at the next tick).
//!
//! # Timers
//!
//! | timer | armed | on expiry |
//! |---|---|---|
//! | initial rebalance delay | an Empty group's first join | extended by the delay again (bounded in total by the rebalance timeout) if members arrived meanwhile, else the round closes |
//! | rebalance timeout (max over members) | round opened in a non-empty group | round closes without the laggards |
//! | sync timeout (= rebalance timeout) | round closed | members that sent no SyncGroup are removed, new round |
//! | session timeout | heartbeat, join/sync answered, commit | member removed (rebalance); ignored while the member has a parked request |
//! | session timeout of a pending id | MEMBER_ID_REQUIRED | id forgotten |
//! | new-member join timeout | a new member's JoinGroup parks | member dropped (its JoinGroup answered UNKNOWN_MEMBER_ID) |
//! | offsets retention | group becomes Empty; standalone commit | group reported in `expired_groups` and forgotten |
//!
//! # Static membership
//!
//! A member with a `group.instance.id` that rejoins with an empty member id takes over its
//! instance's membership under a new member id. The old id is *fenced*: its requests (and any
//! of its parked ones) answer FENCED_INSTANCE_ID. In a Stable group whose protocol choice is
//! unaffected this happens without a rebalance. The member gets the current generation and,
//! through SyncGroup, the assignment the old id had. On JoinGroup v9+ a rejoining static leader
//! is told it leads with `skip_assignment`. Older versions are told the previous leader id, so
//! the member does not run an assignment that a stable group would ignore. Static members skip
//! MEMBER_ID_REQUIRED and are kept through rounds they miss until their session expires.
//!
//! # Offsets
//!
//! Committed offsets live in the offset store, not here. [`GroupCoordinator::validate_offset_commit`]
//! answers Kafka's rules (generation -1 without a member id is accepted only while the group
//! has no members; members need their current generation; CompletingRebalance answers
//! REBALANCE_IN_PROGRESS; static ids are checked through their instance id). The coordinator
//! remembers which groups have offsets and since when they are empty. A group Empty for longer
//! than `offsets_retention_ms` is reported once in [`Output::expired_groups`] so the broker
//! deletes its offsets. A group that never had members (standalone consumers) counts from its
//! last commit.
//!
//! # Recovery
//!
//! Group metadata survives a restart, as in Kafka (which keeps it in `__consumer_offsets`): the
//! generation, protocol type and name, leader, and every member with its ids, client id and
//! host, timeouts, protocols and assignment. The coordinator does no I/O; it lists in
//! [`Output::metadata`] the records the broker must store or delete (after a rebalance
//! completes, before the SyncGroup answers are delivered; when a member is removed or replaced;
//! when the group empties or is forgotten), and [`GroupSnapshot::encode`] /
//! [`GroupSnapshot::decode`] define the record.
//!
//! At startup the broker calls [`GroupCoordinator::restore_snapshot`] for every stored record:
//! the group comes back Stable (or Empty) in its generation, with each member's session
//! restarting at the restore time, so a live member's next heartbeat and commit succeed without
//! a rebalance, and a member that never comes back expires after its session timeout as usual.
//! A record written while a rebalance was pending (a member had left) restores straight into a
//! join round. Then [`GroupCoordinator::restore_group`] registers every group with committed
//! offsets (those without a record list as Empty, can be deleted, and expire).
//! `member_id_nonce` should differ between process runs, so that ids issued after a restart
//! can never match restored ones.
//!
//! # Differences from Kafka
//!
//! - Protocol-selection ties go to the smallest protocol name (Kafka: hash order).
//! - When a known member rejoins with new protocols, its own old protocols do not count toward
//!   the protocols "every member supports" (Kafka counts them, refusing a sole member's change).
//! - A retried JoinGroup/SyncGroup from the same member answers the superseded parked one with
//!   REBALANCE_IN_PROGRESS (Kafka drops it), since the broker must answer every request.
//! - Standalone offset expiry is per group (latest commit), not per partition.
#![deny(missing_docs)]

mod coordinator;
mod error;
mod group;
pub mod snapshot;
mod types;

#[cfg(test)]
mod proptests;

pub use coordinator::GroupCoordinator;
pub use error::GroupError;
pub use snapshot::{
    GroupSnapshot, MemberSnapshot, MetadataUpdate, RestoreError, SNAPSHOT_VERSION,
    SnapshotDecodeError,
};
pub use types::*;
