//! Cost of the coordinator's hot paths: a full join/sync round and steady-state heartbeats.

use bytes::Bytes;
use divan::Bencher;
use waterline_coordinator::{
    CoordinatorConfig, GroupCoordinator, HeartbeatRequest, JoinGroupRequest, Protocol,
    SyncGroupRequest,
};

fn main() {
    divan::main();
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        initial_rebalance_delay_ms: 0,
        ..CoordinatorConfig::default()
    }
}

fn join(group: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: None,
        require_known_member_id: false,
        supports_skip_assignment: true,
        client_id: "bench".to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        rebalance_timeout_ms: 60_000,
        session_timeout_ms: 10_000,
        protocol_type: "consumer".to_owned(),
        protocols: vec![Protocol {
            name: "range".to_owned(),
            metadata: Bytes::from_static(b"subscription"),
        }],
    }
}

/// Forms a stable group of `n` members; returns the coordinator and (member id, generation).
fn stable_group(n: usize) -> (GroupCoordinator, Vec<String>, i32) {
    let mut c = GroupCoordinator::new(config());
    for i in 0..n {
        let _ = c.join_group(i as u64, join("g", ""), 0);
    }
    let out = c.tick(0);
    let view = c.group("g").expect("group exists");
    let leader = view.leader.clone().expect("leader");
    let generation = view.generation_id;
    assert_eq!(out.responses.len(), n);
    let assignments = view
        .members
        .iter()
        .map(|m| (m.clone(), Bytes::from_static(b"assignment")))
        .collect();
    let _ = c.sync_group(
        1_000_000,
        SyncGroupRequest {
            group_id: "g".to_owned(),
            generation_id: generation,
            member_id: leader,
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments,
        },
        0,
    );
    (c, view.members, generation)
}

#[divan::bench(args = [1, 10, 100])]
fn join_sync_round(bencher: Bencher, members: usize) {
    bencher.bench(|| stable_group(members));
}

#[divan::bench(args = [10, 100])]
fn heartbeat(bencher: Bencher, members: usize) {
    let (mut c, ids, generation) = stable_group(members);
    let mut i = 0usize;
    bencher.bench_local(|| {
        i = (i + 1) % ids.len();
        c.heartbeat(
            i as u64,
            HeartbeatRequest {
                group_id: "g".to_owned(),
                generation_id: generation,
                member_id: ids[i].clone(),
                group_instance_id: None,
            },
            1,
        )
    });
}
