//! JoinGroup and SyncGroup: rounds, leaders, assignments, protocol selection, MEMBER_ID_REQUIRED.

mod common;

use bytes::Bytes;
use common::*;
use waterline_coordinator::*;

#[test]
fn first_member_becomes_leader_of_generation_one() {
    let mut h = Harness::default();
    let id = h.join(join_req("g", ""));
    assert!(
        h.join_response(id).is_none(),
        "join is parked until the round closes"
    );
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    h.advance(0);
    let r = h.join_response(id).expect("answered").clone();
    assert_eq!(r.error, None);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.leader, r.member_id);
    assert!(r.member_id.starts_with("client-"), "{}", r.member_id);
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata, Bytes::from("range-subscription"));
    assert_eq!(h.state("g"), GroupState::CompletingRebalance);
}

#[test]
fn three_members_join_in_one_round() {
    let mut h = Harness::default();
    let ids: Vec<_> = (0..3).map(|_| h.join(join_req("g", ""))).collect();
    h.advance(0);
    let joined: Vec<_> = ids.iter().map(|&id| h.joined(id)).collect();
    let leader = &joined[0].member_id;
    for j in &joined {
        assert_eq!(j.generation, 1);
        assert_eq!(&j.leader, leader);
    }
    let members_seen: Vec<usize> = ids
        .iter()
        .map(|&id| h.join_response(id).map_or(0, |r| r.members.len()))
        .collect();
    assert_eq!(
        members_seen,
        vec![3, 0, 0],
        "only the leader gets the member list"
    );
    let view = h.c.group("g").expect("group");
    assert_eq!(view.members.len(), 3);
    assert_eq!(view.leader.as_ref(), Some(leader));
}

#[test]
fn leader_assignment_is_delivered_to_all_and_followers_wait() {
    let mut h = Harness::default();
    let ids: Vec<_> = (0..3).map(|_| h.join(join_req("g", ""))).collect();
    h.advance(0);
    let joined: Vec<_> = ids.iter().map(|&id| h.joined(id)).collect();
    let f1 = h.sync(sync_req("g", &joined[1].member_id, 1));
    let f2 = h.sync(sync_req("g", &joined[2].member_id, 1));
    assert!(h.sync_response(f1).is_none() && h.sync_response(f2).is_none());
    assert_eq!(h.state("g"), GroupState::CompletingRebalance);

    let mut lead = sync_req("g", &joined[0].member_id, 1);
    // Member 2 gets nothing from the leader: it gets an empty assignment. Unknown ids are ignored.
    lead.assignments = vec![
        (joined[0].member_id.clone(), assignment_for("0")),
        (joined[1].member_id.clone(), assignment_for("1")),
        ("not-a-member".to_owned(), assignment_for("x")),
    ];
    let l = h.sync(lead);
    assert_eq!(h.state("g"), GroupState::Stable);
    let got = |h: &Harness, id| h.sync_response(id).expect("answered").clone();
    assert_eq!(got(&h, l).assignment, assignment_for("0"));
    assert_eq!(got(&h, f1).assignment, assignment_for("1"));
    assert_eq!(got(&h, f2).assignment, Bytes::new());
    assert_eq!(got(&h, f1).protocol_name.as_deref(), Some("range"));

    // Once stable, a (late or repeated) SyncGroup is answered at once with the stored assignment.
    let again = h.sync(sync_req("g", &joined[1].member_id, 1));
    assert_eq!(got(&h, again).assignment, assignment_for("1"));
}

#[test]
fn sync_errors() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let m = &joined[1].member_id;
    let table: Vec<(&str, SyncGroupRequest, Option<GroupError>)> = vec![
        ("ok", sync_req("g", m, 1), None),
        (
            "unknown group",
            sync_req("nope", m, 1),
            Some(GroupError::UnknownMemberId),
        ),
        (
            "empty group id",
            sync_req("", m, 1),
            Some(GroupError::InvalidGroupId),
        ),
        (
            "unknown member",
            sync_req("g", "ghost", 1),
            Some(GroupError::UnknownMemberId),
        ),
        (
            "old generation",
            sync_req("g", m, 0),
            Some(GroupError::IllegalGeneration),
        ),
        (
            "wrong protocol",
            SyncGroupRequest {
                protocol_name: Some("roundrobin".to_owned()),
                ..sync_req("g", m, 1)
            },
            Some(GroupError::InconsistentGroupProtocol),
        ),
        (
            "wrong type",
            SyncGroupRequest {
                protocol_type: Some("connect".to_owned()),
                ..sync_req("g", m, 1)
            },
            Some(GroupError::InconsistentGroupProtocol),
        ),
    ];
    for (name, req, want) in table {
        let id = h.sync(req);
        assert_eq!(h.sync_response(id).expect(name).error, want, "{name}");
    }
}

#[test]
fn follower_sync_during_rebalance_answers_rebalance_in_progress() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    // A third member arrives: the group goes back to PreparingRebalance.
    let _newcomer = h.join(join_req("g", ""));
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    let id = h.sync(sync_req("g", &joined[1].member_id, 1));
    assert_eq!(
        h.sync_response(id).expect("answered").error,
        Some(GroupError::RebalanceInProgress)
    );
}

#[test]
fn parked_follower_sync_is_released_when_a_rebalance_starts() {
    let mut h = Harness::default();
    let ids: Vec<_> = (0..2).map(|_| h.join(join_req("g", ""))).collect();
    h.advance(0);
    let follower = h.joined(ids[1]);
    let parked = h.sync(sync_req("g", &follower.member_id, 1));
    assert!(h.sync_response(parked).is_none());
    let _newcomer = h.join(join_req("g", ""));
    assert_eq!(
        h.sync_response(parked).expect("released").error,
        Some(GroupError::RebalanceInProgress)
    );
}

#[test]
fn rejoin_round_bumps_generation_and_keeps_leader() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    // The leader rejoining a stable group always starts a rebalance.
    let l = h.join(join_req("g", &joined[0].member_id));
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat("g", &joined[1].member_id, 1),
        Some(GroupError::RebalanceInProgress)
    );
    let f = h.join(join_req("g", &joined[1].member_id));
    // Everyone rejoined: the round completes without waiting for the timeout.
    let (l, f) = (h.joined(l), h.joined(f));
    assert_eq!((l.generation, f.generation), (2, 2));
    assert_eq!(l.leader, joined[0].member_id);
}

#[test]
fn follower_rejoin_without_change_does_not_rebalance() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let id = h.join(join_req("g", &joined[1].member_id));
    let r = h.joined(id);
    assert_eq!(r.generation, 1);
    assert_eq!(h.state("g"), GroupState::Stable);
    // Changed metadata does rebalance.
    let mut changed = join_req("g", &joined[1].member_id);
    changed.protocols = vec![Protocol {
        name: "range".to_owned(),
        metadata: Bytes::from_static(b"new-subscription"),
    }];
    h.join(changed);
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
}

#[test]
fn rejoin_during_completing_rebalance_with_same_metadata_resends_the_answer() {
    let mut h = Harness::default();
    let ids: Vec<_> = (0..2).map(|_| h.join(join_req("g", ""))).collect();
    h.advance(0);
    let leader = h.joined(ids[0]);
    let again = h.join(join_req("g", &leader.member_id));
    let r = h.join_response(again).expect("answered at once").clone();
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.members.len(), 2, "the leader gets the member list again");
    assert_eq!(h.state("g"), GroupState::CompletingRebalance);
}

#[test]
fn protocol_selection_and_inconsistent_protocols() {
    let mut h = Harness::default();
    let mut a = join_req("g", "");
    a.protocols = vec![protocol("roundrobin"), protocol("range")];
    let mut b = join_req("g", "");
    b.protocols = vec![protocol("range"), protocol("roundrobin")];
    let mut c = join_req("g", "");
    c.protocols = vec![protocol("roundrobin")];
    let ids = [h.join(a), h.join(b), h.join(c)];
    h.advance(0);
    // Only roundrobin is supported by all three.
    assert_eq!(
        h.join_response(ids[0])
            .expect("answered")
            .protocol_name
            .as_deref(),
        Some("roundrobin")
    );

    let table: Vec<(&str, JoinGroupRequest)> = vec![
        ("no common protocol", {
            let mut r = join_req("g", "");
            r.protocols = vec![protocol("sticky")];
            r
        }),
        ("other protocol type", {
            let mut r = join_req("g", "");
            r.protocol_type = "connect".to_owned();
            r.protocols = vec![protocol("roundrobin")];
            r
        }),
        ("no protocols at all into a new group", {
            let mut r = join_req("g2", "");
            r.protocols = Vec::new();
            r
        }),
        ("empty protocol type into a new group", {
            let mut r = join_req("g3", "");
            r.protocol_type = String::new();
            r
        }),
    ];
    for (name, req) in table {
        let id = h.join(req);
        let r = h.join_response(id).expect(name);
        assert_eq!(
            r.error,
            Some(GroupError::InconsistentGroupProtocol),
            "{name}"
        );
        assert_eq!(r.generation_id, -1, "{name}");
    }
    assert!(
        h.c.group("g2").is_none(),
        "a failed first join leaves no group behind"
    );
}

#[test]
fn join_validation_errors() {
    let mut h = Harness::new(CoordinatorConfig {
        min_session_timeout_ms: 6_000,
        max_session_timeout_ms: 60_000,
        max_group_size: 1,
        ..test_config()
    });
    let table: Vec<(&str, JoinGroupRequest, GroupError)> = vec![
        (
            "empty group id",
            join_req("", ""),
            GroupError::InvalidGroupId,
        ),
        (
            "session too short",
            JoinGroupRequest {
                session_timeout_ms: 5_999,
                ..join_req("g", "")
            },
            GroupError::InvalidSessionTimeout,
        ),
        (
            "session too long",
            JoinGroupRequest {
                session_timeout_ms: 60_001,
                ..join_req("g", "")
            },
            GroupError::InvalidSessionTimeout,
        ),
        (
            "negative session",
            JoinGroupRequest {
                session_timeout_ms: -1,
                ..join_req("g", "")
            },
            GroupError::InvalidSessionTimeout,
        ),
        (
            "known id, unknown group",
            join_req("nope", "m-1"),
            GroupError::UnknownMemberId,
        ),
    ];
    for (name, req, want) in table {
        let id = h.join(req);
        assert_eq!(h.join_response(id).expect(name).error, Some(want), "{name}");
    }
    let first = h.join(join_req("g", ""));
    h.advance(0);
    h.joined(first);
    let second = h.join(join_req("g", ""));
    assert_eq!(
        h.join_response(second).expect("answered").error,
        Some(GroupError::GroupMaxSizeReached)
    );
    // Kafka checks the size before the member id.
    let unknown = h.join(join_req("g", "ghost"));
    assert_eq!(
        h.join_response(unknown).expect("answered").error,
        Some(GroupError::GroupMaxSizeReached)
    );
    // The existing member may still rejoin.
    let again = h.join(join_req("g", &h.joined(first).member_id));
    assert_eq!(h.join_response(again).map(|r| r.error), Some(None));
}

#[test]
fn member_id_required_flow() {
    let mut h = Harness::default();
    let mut req = join_req("g", "");
    req.require_known_member_id = true;
    let first = h.join(req.clone());
    let r = h.join_response(first).expect("answered at once").clone();
    assert_eq!(r.error, Some(GroupError::MemberIdRequired));
    assert_eq!(GroupError::MemberIdRequired.code(), 79);
    let issued = r.member_id.clone();
    assert!(!issued.is_empty());
    let view = h.c.group("g").expect("group exists with a pending member");
    assert_eq!(view.pending_members, vec![issued.clone()]);
    assert!(view.members.is_empty());
    assert_eq!(view.state, GroupState::Empty);

    // Rejoining with the issued id makes it a member.
    req.member_id = issued.clone();
    let second = h.join(req);
    h.advance(0);
    let joined = h.joined(second);
    assert_eq!(joined.member_id, issued);
    assert_eq!(joined.leader, issued);
    assert!(h.c.group("g").expect("group").pending_members.is_empty());
}

#[test]
fn pending_member_blocks_round_until_it_joins_or_expires() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 1);
    let mut req = join_req("g", "");
    req.require_known_member_id = true;
    let pending = h.join(req);
    let issued = h
        .join_response(pending)
        .expect("answered")
        .member_id
        .clone();
    // The leader rejoins; the round waits for the pending member too.
    let l = h.join(join_req("g", &joined[0].member_id));
    assert!(h.join_response(l).is_none());
    // The pending member never comes back: after its session timeout the round completes.
    h.advance(SESSION_MS as u64);
    let l = h.joined(l);
    assert_eq!(l.generation, 2);
    let view = h.c.group("g").expect("group");
    assert!(!view.members.contains(&issued));
    assert!(view.pending_members.is_empty());
}

#[test]
fn retried_join_answers_the_superseded_one() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let first = h.join(join_req("g", &joined[0].member_id));
    let retry = h.join(join_req("g", &joined[0].member_id));
    assert_eq!(
        h.join_response(first)
            .expect("superseded request answered")
            .error,
        Some(GroupError::RebalanceInProgress)
    );
    assert!(h.join_response(retry).is_none());
    assert_eq!(h.c.parked_requests(), vec![retry]);
}

#[test]
fn shutdown_answers_parked_requests_with_not_coordinator() {
    let mut h = Harness::default();
    let a = h.join(join_req("g", ""));
    let out = h.c.shutdown();
    assert_eq!(out.response(a).map(Response::error_code), Some(16));
    assert!(h.c.list_groups(&[]).is_empty());
}
