//! Test harness: drives a coordinator with a manual clock and records every response by
//! request id (checking none is answered twice).
#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::Bytes;
use waterline_coordinator::*;

pub const SESSION_MS: i32 = 10_000;
pub const REBALANCE_MS: i32 = 30_000;

/// Defaults for tests: no initial delay, small minimum session timeout.
pub fn test_config() -> CoordinatorConfig {
    CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        min_session_timeout_ms: 1,
        ..CoordinatorConfig::default()
    }
}

pub fn protocol(name: &str) -> Protocol {
    Protocol {
        name: name.to_owned(),
        metadata: Bytes::from(format!("{name}-subscription")),
    }
}

/// A v3-style dynamic JoinGroup (no MEMBER_ID_REQUIRED round trip).
pub fn join_req(group: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: None,
        require_known_member_id: false,
        supports_skip_assignment: false,
        client_id: "client".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        rebalance_timeout_ms: REBALANCE_MS,
        session_timeout_ms: SESSION_MS,
        protocol_type: "consumer".to_owned(),
        protocols: vec![protocol("range")],
    }
}

pub fn static_join_req(group: &str, member_id: &str, instance: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_instance_id: Some(instance.to_owned()),
        require_known_member_id: true,
        ..join_req(group, member_id)
    }
}

pub fn sync_req(group: &str, member_id: &str, generation: i32) -> SyncGroupRequest {
    SyncGroupRequest {
        group_id: group.to_owned(),
        generation_id: generation,
        member_id: member_id.to_owned(),
        group_instance_id: None,
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some("range".to_owned()),
        assignments: Vec::new(),
    }
}

pub fn assignment_for(member_id: &str) -> Bytes {
    Bytes::from(format!("assignment-of-{member_id}"))
}

/// A member that completed a join round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub member_id: String,
    pub generation: i32,
    pub leader: String,
}

pub struct Harness {
    pub c: GroupCoordinator,
    pub now: u64,
    next_id: RequestId,
    pub responses: BTreeMap<RequestId, Response>,
    pub last: Output,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(test_config())
    }
}

impl Harness {
    pub fn new(config: CoordinatorConfig) -> Harness {
        Harness {
            c: GroupCoordinator::new(config),
            now: 0,
            next_id: 1,
            responses: BTreeMap::new(),
            last: Output::default(),
        }
    }

    fn absorb(&mut self, out: Output) {
        for (id, response) in &out.responses {
            let previous = self.responses.insert(*id, response.clone());
            assert!(previous.is_none(), "request {id} answered twice");
        }
        self.last = out;
    }

    fn next(&mut self) -> RequestId {
        self.next_id += 1;
        self.next_id
    }

    pub fn join(&mut self, req: JoinGroupRequest) -> RequestId {
        let id = self.next();
        let out = self.c.join_group(id, req, self.now);
        self.absorb(out);
        id
    }

    pub fn sync(&mut self, req: SyncGroupRequest) -> RequestId {
        let id = self.next();
        let out = self.c.sync_group(id, req, self.now);
        self.absorb(out);
        id
    }

    pub fn heartbeat_as(
        &mut self,
        group: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Option<GroupError> {
        let id = self.next();
        let req = HeartbeatRequest {
            group_id: group.to_owned(),
            generation_id: generation,
            member_id: member_id.to_owned(),
            group_instance_id: instance.map(str::to_owned),
        };
        let out = self.c.heartbeat(id, req, self.now);
        self.absorb(out);
        match self.responses.get(&id) {
            Some(Response::Heartbeat(r)) => r.error,
            other => panic!("heartbeat not answered: {other:?}"),
        }
    }

    pub fn heartbeat(
        &mut self,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Option<GroupError> {
        self.heartbeat_as(group, member_id, None, generation)
    }

    pub fn leave(&mut self, group: &str, members: &[(&str, Option<&str>)]) -> LeaveGroupResponse {
        let id = self.next();
        let req = LeaveGroupRequest {
            group_id: group.to_owned(),
            members: members
                .iter()
                .map(|(m, i)| LeavingMember {
                    member_id: (*m).to_owned(),
                    group_instance_id: i.map(str::to_owned),
                })
                .collect(),
        };
        let out = self.c.leave_group(id, req, self.now);
        self.absorb(out);
        match self.responses.get(&id) {
            Some(Response::LeaveGroup(r)) => r.clone(),
            other => panic!("leave not answered: {other:?}"),
        }
    }

    /// Advances the clock and fires due timers.
    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
        let out = self.c.tick(self.now);
        self.absorb(out);
    }

    pub fn join_response(&self, id: RequestId) -> Option<&JoinGroupResponse> {
        match self.responses.get(&id) {
            Some(Response::JoinGroup(r)) => Some(r),
            None => None,
            Some(other) => panic!("not a join response: {other:?}"),
        }
    }

    pub fn sync_response(&self, id: RequestId) -> Option<&SyncGroupResponse> {
        match self.responses.get(&id) {
            Some(Response::SyncGroup(r)) => Some(r),
            None => None,
            Some(other) => panic!("not a sync response: {other:?}"),
        }
    }

    /// The successful join answer for `id`, as a [`Joined`].
    pub fn joined(&self, id: RequestId) -> Joined {
        let r = self
            .join_response(id)
            .unwrap_or_else(|| panic!("join {id} still parked"));
        assert_eq!(r.error, None, "join {id} failed: {r:?}");
        Joined {
            member_id: r.member_id.clone(),
            generation: r.generation_id,
            leader: r.leader.clone(),
        }
    }

    pub fn state(&self, group: &str) -> GroupState {
        self.c.group(group).map_or(GroupState::Dead, |g| g.state)
    }

    /// Forms a stable group of `n` dynamic members in one round; the leader assigns each member
    /// [`assignment_for`] its id. Returns members in join order.
    pub fn stable_group(&mut self, group: &str, n: usize) -> Vec<Joined> {
        let ids: Vec<RequestId> = (0..n).map(|_| self.join(join_req(group, ""))).collect();
        self.advance(0);
        let joined: Vec<Joined> = ids.iter().map(|&id| self.joined(id)).collect();
        self.sync_all(group, &joined);
        joined
    }

    /// Everyone syncs, followers first, the leader last with an assignment for every member.
    pub fn sync_all(&mut self, group: &str, joined: &[Joined]) {
        let leader = joined[0].leader.clone();
        let mut parked = Vec::new();
        for j in joined.iter().filter(|j| j.member_id != leader) {
            parked.push(self.sync(sync_req(group, &j.member_id, j.generation)));
        }
        let generation = joined[0].generation;
        let mut req = sync_req(group, &leader, generation);
        req.assignments = joined
            .iter()
            .map(|j| (j.member_id.clone(), assignment_for(&j.member_id)))
            .collect();
        parked.push(self.sync(req));
        for id in parked {
            let r = self.sync_response(id).expect("sync answered");
            assert_eq!(r.error, None);
        }
        assert_eq!(self.state(group), GroupState::Stable);
    }
}
