//! Property test: random interleavings of requests and clock ticks never panic, keep the group
//! invariants (see `Group::check_invariants`), keep generations monotonic, and answer every
//! parked request exactly once. A model of the broker's metadata table follows every
//! [`Output::metadata`] update: a Stable group's record always equals its current snapshot, a
//! forgotten group has none, and every record restores into a valid group (the same one, when no
//! rebalance was pending).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;

use crate::*;

const GROUPS: [&str; 2] = ["g0", "g1"];
const CLIENTS: usize = 5;

#[derive(Debug, Clone)]
enum Op {
    Join {
        client: usize,
        group: usize,
        protocols: u8,
        require_known: bool,
        forget_id: bool,
    },
    Sync {
        client: usize,
        group: usize,
    },
    Heartbeat {
        client: usize,
        group: usize,
        stale: bool,
    },
    Leave {
        clients: Vec<usize>,
        group: usize,
        by_instance: bool,
    },
    Commit {
        client: usize,
        group: usize,
        standalone: bool,
    },
    Tick {
        advance: u64,
    },
    Delete {
        group: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    let group = 0..GROUPS.len();
    prop_oneof![
        4 => (client.clone(), group.clone(), 0u8..4, any::<bool>(), prop::bool::weighted(0.15)).prop_map(
            |(client, group, protocols, require_known, forget_id)| Op::Join {
                client, group, protocols, require_known, forget_id
            }
        ),
        3 => (client.clone(), group.clone()).prop_map(|(client, group)| Op::Sync { client, group }),
        2 => (client.clone(), group.clone(), prop::bool::weighted(0.2))
            .prop_map(|(client, group, stale)| Op::Heartbeat { client, group, stale }),
        1 => (prop::collection::vec(client.clone(), 1..3), group.clone(), any::<bool>())
            .prop_map(|(clients, group, by_instance)| Op::Leave { clients, group, by_instance }),
        1 => (client.clone(), group.clone(), any::<bool>())
            .prop_map(|(client, group, standalone)| Op::Commit { client, group, standalone }),
        3 => prop_oneof![Just(0u64), 1u64..2_000, 2_000u64..40_000].prop_map(|advance| Op::Tick { advance }),
        1 => group.prop_map(|group| Op::Delete { group }),
    ]
}

#[derive(Debug, Default, Clone)]
struct Client {
    member_id: [String; 2],
    generation: [i32; 2],
}

fn instance(client: usize) -> Option<String> {
    // Clients 0 and 1 are static members.
    (client < 2).then(|| format!("instance-{client}"))
}

fn protocols(variant: u8) -> Vec<Protocol> {
    let p = |name: &str| Protocol {
        name: name.to_owned(),
        metadata: Bytes::from(format!("meta-{name}")),
    };
    match variant {
        0 => vec![p("range")],
        1 => vec![p("range"), p("roundrobin")],
        2 => vec![p("roundrobin"), p("range")],
        _ => vec![p("sticky")],
    }
}

struct World {
    c: GroupCoordinator,
    now: u64,
    next_id: RequestId,
    clients: Vec<Client>,
    /// Parked request -> (client, group index).
    outstanding: BTreeMap<RequestId, (usize, usize)>,
    answered: BTreeSet<RequestId>,
    generations: BTreeMap<String, i32>,
    /// The broker's metadata table: group id -> encoded record.
    durable: BTreeMap<String, Vec<u8>>,
}

impl World {
    fn apply_metadata(&mut self, updates: Vec<MetadataUpdate>) {
        for u in updates {
            match u {
                MetadataUpdate::Store(s) => {
                    self.durable.insert(s.group_id.clone(), s.encode());
                }
                MetadataUpdate::Delete { group_id } => {
                    self.durable.remove(&group_id);
                }
            }
        }
    }

    /// The durable records match the live groups and restore into valid groups.
    fn check_durable(&self) -> Result<(), String> {
        for g in GROUPS {
            let view = self.c.group(g);
            let stored = self.durable.get(g);
            match (&view, stored) {
                (None, Some(_)) => return Err(format!("{g}: forgotten but its record remains")),
                (Some(v), Some(bytes)) if v.state == GroupState::Stable => {
                    let decoded = GroupSnapshot::decode(g, bytes).map_err(|e| e.to_string())?;
                    if Some(&decoded) != self.c.snapshot(g).as_ref() {
                        return Err(format!("{g}: Stable but its record is stale: {decoded:?}"));
                    }
                }
                (Some(v), None) if v.state == GroupState::Stable => {
                    return Err(format!("{g}: Stable without a record"));
                }
                _ => {}
            }
        }
        let mut restored = GroupCoordinator::new(self.c.config().clone());
        for (g, bytes) in &self.durable {
            let snapshot = GroupSnapshot::decode(g, bytes).map_err(|e| format!("{g}: {e}"))?;
            restored
                .restore_snapshot(snapshot.clone(), self.now)
                .map_err(|e| format!("{g}: {e}"))?;
            let view = restored.group(g).ok_or("restored group missing")?;
            if snapshot.rebalance_pending {
                if view.state != GroupState::PreparingRebalance
                    || view.generation_id != snapshot.generation_id
                {
                    return Err(format!("{g}: pending record restored as {view:?}"));
                }
            } else if restored.snapshot(g).as_ref() != Some(&snapshot) {
                return Err(format!("{g}: restore is not a round trip"));
            }
        }
        restored.check_invariants()
    }

    fn absorb(&mut self, id: RequestId, who: (usize, usize), out: Output) -> Result<(), String> {
        self.apply_metadata(out.metadata.clone());
        let mut own_answered = false;
        for (rid, response) in &out.responses {
            if !self.answered.insert(*rid) {
                return Err(format!("request {rid} answered twice"));
            }
            let owner = if *rid == id && !self.outstanding.contains_key(rid) {
                own_answered = true;
                who
            } else {
                self.outstanding
                    .remove(rid)
                    .ok_or_else(|| format!("response to unknown request {rid}"))?
            };
            let (client, group) = owner;
            match response {
                Response::JoinGroup(r) => {
                    if r.error.is_none() {
                        // A later step of the same call may already have moved the group on
                        // (e.g. a batch leave), so only check the generation is not ahead.
                        let current = self.c.group(GROUPS[group]).map(|v| v.generation_id);
                        if current.is_some_and(|g| r.generation_id > g) {
                            return Err(format!(
                                "join answered generation {} ahead",
                                r.generation_id
                            ));
                        }
                        self.clients[client].generation[group] = r.generation_id;
                    }
                    if r.error.is_none() || r.error == Some(GroupError::MemberIdRequired) {
                        self.clients[client].member_id[group] = r.member_id.clone();
                    }
                    if matches!(
                        r.error,
                        Some(GroupError::UnknownMemberId | GroupError::FencedInstanceId)
                    ) {
                        self.clients[client].member_id[group].clear();
                    }
                }
                Response::SyncGroup(_) | Response::Heartbeat(_) | Response::LeaveGroup(_) => {}
            }
        }
        if !own_answered && id != u64::MAX {
            self.outstanding.insert(id, who);
        }
        for t in &out.timers {
            if t.deadline_ms < self.now {
                return Err(format!("timer in the past: {t:?}"));
            }
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        match op.clone() {
            Op::Join {
                client,
                group,
                protocols: variant,
                require_known,
                forget_id,
            } => {
                if forget_id {
                    self.clients[client].member_id[group].clear();
                }
                let req = JoinGroupRequest {
                    group_id: GROUPS[group].to_owned(),
                    member_id: self.clients[client].member_id[group].clone(),
                    group_instance_id: instance(client),
                    require_known_member_id: require_known,
                    supports_skip_assignment: require_known,
                    client_id: format!("client-{client}"),
                    client_host: "/127.0.0.1".to_owned(),
                    rebalance_timeout_ms: 20_000,
                    session_timeout_ms: 10_000,
                    protocol_type: "consumer".to_owned(),
                    protocols: protocols(variant),
                };
                let out = self.c.join_group(id, req, self.now);
                self.absorb(id, (client, group), out)?;
            }
            Op::Sync { client, group } => {
                let member_id = self.clients[client].member_id[group].clone();
                let view = self.c.group(GROUPS[group]);
                let assignments = view
                    .map(|v| {
                        v.members
                            .iter()
                            .map(|m| (m.clone(), Bytes::from(format!("assign-{m}"))))
                            .collect()
                    })
                    .unwrap_or_default();
                let req = SyncGroupRequest {
                    group_id: GROUPS[group].to_owned(),
                    generation_id: self.clients[client].generation[group],
                    member_id,
                    group_instance_id: instance(client),
                    protocol_type: Some("consumer".to_owned()),
                    protocol_name: None,
                    assignments,
                };
                let out = self.c.sync_group(id, req, self.now);
                self.absorb(id, (client, group), out)?;
            }
            Op::Heartbeat {
                client,
                group,
                stale,
            } => {
                let req = HeartbeatRequest {
                    group_id: GROUPS[group].to_owned(),
                    generation_id: self.clients[client].generation[group] - i32::from(stale),
                    member_id: self.clients[client].member_id[group].clone(),
                    group_instance_id: instance(client),
                };
                let out = self.c.heartbeat(id, req, self.now);
                self.absorb(id, (client, group), out)?;
            }
            Op::Leave {
                clients,
                group,
                by_instance,
            } => {
                let members = clients
                    .iter()
                    .map(|&client| LeavingMember {
                        member_id: if by_instance && instance(client).is_some() {
                            String::new()
                        } else {
                            self.clients[client].member_id[group].clone()
                        },
                        group_instance_id: instance(client),
                    })
                    .collect();
                let req = LeaveGroupRequest {
                    group_id: GROUPS[group].to_owned(),
                    members,
                };
                let out = self.c.leave_group(id, req, self.now);
                self.absorb(id, (clients[0], group), out)?;
            }
            Op::Commit {
                client,
                group,
                standalone,
            } => {
                let check = if standalone {
                    OffsetCommitCheck {
                        group_id: GROUPS[group].to_owned(),
                        generation_id: -1,
                        member_id: String::new(),
                        group_instance_id: None,
                        api_version: 8,
                    }
                } else {
                    OffsetCommitCheck {
                        group_id: GROUPS[group].to_owned(),
                        generation_id: self.clients[client].generation[group],
                        member_id: self.clients[client].member_id[group].clone(),
                        group_instance_id: instance(client),
                        api_version: 9,
                    }
                };
                let _ = self.c.validate_offset_commit(&check, self.now);
            }
            Op::Tick { advance } => {
                self.now += advance;
                let out = self.c.tick(self.now);
                self.absorb(u64::MAX, (0, 0), out)?;
                if let Some(d) = self.c.next_deadline()
                    && d <= self.now
                    && self.c.tick(self.now).responses.iter().any(|_| true)
                {
                    return Err("tick left due work behind".to_owned());
                }
            }
            Op::Delete { group } => {
                let _ = self.c.delete_groups(&[GROUPS[group]]);
                let updates = self.c.take_metadata_updates();
                self.apply_metadata(updates);
            }
        }
        let _ = self.c.describe_groups(&GROUPS);
        let _ = self.c.list_groups(&[]);
        self.c.check_invariants()?;
        self.check_durable()?;
        let parked: BTreeSet<RequestId> = self.c.parked_requests().into_iter().collect();
        let expected: BTreeSet<RequestId> = self.outstanding.keys().copied().collect();
        if parked != expected {
            return Err(format!("parked {parked:?} != outstanding {expected:?}"));
        }
        for g in GROUPS {
            match self.c.group(g) {
                Some(v) => {
                    let prev = self.generations.insert(g.to_owned(), v.generation_id);
                    if prev.is_some_and(|p| p > v.generation_id) {
                        return Err(format!("{g}: generation went back"));
                    }
                }
                None => {
                    self.generations.remove(g);
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_invariants(ops in prop::collection::vec(op(), 1..120), delay in prop_oneof![Just(0u64), Just(3_000u64)]) {
        let config = CoordinatorConfig {
            initial_rebalance_delay_ms: delay,
            min_session_timeout_ms: 1,
            max_group_size: 4,
            new_member_join_timeout_ms: 30_000,
            offsets_retention_ms: 100_000,
            ..CoordinatorConfig::default()
        };
        let mut world = World {
            c: GroupCoordinator::new(config),
            now: 0,
            next_id: 0,
            clients: vec![Client::default(); CLIENTS],
            outstanding: BTreeMap::new(),
            answered: BTreeSet::new(),
            generations: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        for op in &ops {
            if let Err(e) = world.step(op) {
                prop_assert!(false, "after {:?}: {}", op, e);
            }
        }
        // Shutting down answers everything still parked.
        let out = world.c.shutdown();
        world.absorb(u64::MAX, (0, 0), out).map_err(TestCaseError::fail)?;
        prop_assert!(world.outstanding.is_empty(), "unanswered: {:?}", world.outstanding);
    }
}
