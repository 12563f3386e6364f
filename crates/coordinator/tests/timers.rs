//! Timers driven by `tick`: session timeouts, rebalance timeout, sync timeout, initial delay.

mod common;

use common::*;
use waterline_coordinator::*;

const SESSION: u64 = SESSION_MS as u64;
const REBALANCE: u64 = REBALANCE_MS as u64;

#[test]
fn session_timeout_evicts_a_member_and_rebalances() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let (a, b) = (&joined[0].member_id, &joined[1].member_id);
    // b's session timer was scheduled by its sync; it is reported as a timer request.
    h.advance(SESSION - 1);
    assert_eq!(h.heartbeat("g", a, 1), None);
    assert_eq!(h.state("g"), GroupState::Stable);
    h.advance(1);
    // b is gone; a learns of the rebalance from its next heartbeat and rejoins alone.
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat("g", b, 1), Some(GroupError::UnknownMemberId));
    assert_eq!(
        h.heartbeat("g", a, 1),
        Some(GroupError::RebalanceInProgress)
    );
    let r = h.join(join_req("g", a));
    assert_eq!(h.joined(r).generation, 2);
    assert_eq!(h.c.group("g").expect("group").members, vec![a.clone()]);
}

#[test]
fn everyone_expiring_leaves_an_empty_group() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let commit = OffsetCommitCheck {
        group_id: "g".to_owned(),
        generation_id: 1,
        member_id: joined[0].member_id.clone(),
        group_instance_id: None,
        api_version: 8,
    };
    assert_eq!(h.c.validate_offset_commit(&commit, h.now), Ok(()));
    h.advance(SESSION);
    let view = h.c.group("g").expect("kept: it has offsets");
    assert_eq!(view.state, GroupState::Empty);
    assert!(view.members.is_empty());
    assert_eq!(view.generation_id, 2);

    // Without offsets an empty group is forgotten by the tick that empties it.
    h.stable_group("h", 1);
    h.advance(SESSION);
    assert!(h.c.group("h").is_none());
    assert_eq!(h.state("h"), GroupState::Dead);
}

#[test]
fn timers_are_reported_and_next_deadline_tracks_them() {
    let mut h = Harness::default();
    let id = h.join(join_req("g", ""));
    assert!(
        h.last
            .timers
            .iter()
            .any(|t| t.kind == TimerKind::InitialRebalanceDelay && t.deadline_ms == 0)
    );
    assert_eq!(h.c.next_deadline(), Some(0));
    h.advance(0);
    let m = h.joined(id).member_id;
    assert!(h.last.timers.iter().any(|t| t.kind
        == TimerKind::Session {
            member_id: m.clone()
        }
        && t.deadline_ms == SESSION));
    assert!(
        h.last
            .timers
            .iter()
            .any(|t| t.kind == TimerKind::SyncTimeout && t.deadline_ms == REBALANCE)
    );
    assert_eq!(h.c.next_deadline(), Some(SESSION));
}

#[test]
fn rebalance_timeout_removes_members_that_did_not_rejoin() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 3);
    let (a, b, c) = (
        &joined[0].member_id,
        &joined[1].member_id,
        &joined[2].member_id,
    );
    let ra = h.join(join_req("g", a));
    let rb = h.join(join_req("g", b));
    // c keeps heartbeating but never rejoins.
    for _ in 0..3 {
        h.advance(SESSION - 1);
        assert_eq!(
            h.heartbeat("g", c, 1),
            Some(GroupError::RebalanceInProgress)
        );
    }
    assert!(h.join_response(ra).is_none());
    h.advance(REBALANCE - 3 * (SESSION - 1));
    let (ja, jb) = (h.joined(ra), h.joined(rb));
    assert_eq!((ja.generation, jb.generation), (2, 2));
    let view = h.c.group("g").expect("group");
    assert_eq!(view.members, {
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        v
    });
    assert_eq!(h.heartbeat("g", c, 1), Some(GroupError::UnknownMemberId));
}

#[test]
fn new_leader_is_chosen_when_the_leader_does_not_rejoin() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let follower = &joined[1].member_id;
    // Changed metadata makes the follower's rejoin start a round; the leader never rejoins.
    let mut req = join_req("g", follower);
    req.protocols = vec![protocol("range"), protocol("roundrobin")];
    let r = h.join(req);
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    h.advance(REBALANCE);
    let j = h.joined(r);
    assert_eq!(&j.leader, follower);
    assert_eq!(h.join_response(r).expect("answered").members.len(), 1);
}

#[test]
fn parked_members_are_not_evicted_by_their_session_timeout() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let (a, b) = (&joined[0].member_id, &joined[1].member_id);
    let ra = h.join(join_req("g", a));
    // a's JoinGroup is parked for longer than its session timeout: it is not evicted; b is.
    h.advance(REBALANCE);
    assert_eq!(h.joined(ra).generation, 2);
    assert_eq!(h.c.group("g").expect("group").members, vec![a.clone()]);
    assert_eq!(h.heartbeat("g", b, 1), Some(GroupError::UnknownMemberId));
}

#[test]
fn members_that_never_sync_are_removed_after_the_rebalance_timeout() {
    let mut h = Harness::default();
    let ids: Vec<_> = (0..2).map(|_| h.join(join_req("g", ""))).collect();
    h.advance(0);
    let (leader, follower) = (h.joined(ids[0]), h.joined(ids[1]));
    // The follower heartbeats (so its session stays alive) but never syncs; the leader syncs.
    let mut lead = sync_req("g", &leader.member_id, 1);
    lead.assignments = vec![(leader.member_id.clone(), assignment_for("l"))];
    let ls = h.sync(lead);
    assert_eq!(h.sync_response(ls).map(|r| r.error), Some(None));
    for _ in 0..3 {
        h.advance(SESSION - 1);
        assert_eq!(h.heartbeat("g", &follower.member_id, 1), None);
        assert_eq!(h.heartbeat("g", &leader.member_id, 1), None);
    }
    h.advance(REBALANCE - 3 * (SESSION - 1));
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    assert_eq!(
        h.heartbeat("g", &follower.member_id, 1),
        Some(GroupError::UnknownMemberId)
    );
}

#[test]
fn a_new_member_whose_join_is_parked_too_long_is_dropped() {
    let mut h = Harness::new(CoordinatorConfig {
        new_member_join_timeout_ms: 5_000,
        ..test_config()
    });
    let joined = h.stable_group("g", 1);
    let newcomer = h.join(join_req("g", ""));
    // The old member never rejoins either; the new member's own timeout fires first.
    h.advance(5_000);
    assert_eq!(
        h.join_response(newcomer).expect("dropped").error,
        Some(GroupError::UnknownMemberId)
    );
    let r = h.join(join_req("g", &joined[0].member_id));
    assert_eq!(h.joined(r).generation, 2);
}

#[test]
fn initial_rebalance_delay_waits_then_extends_per_new_member() {
    let mut h = Harness::new(CoordinatorConfig {
        initial_rebalance_delay_ms: 3_000,
        ..test_config()
    });
    let mut req = join_req("g", "");
    req.rebalance_timeout_ms = 7_000;
    let a = h.join(req.clone());
    h.advance(2_999);
    assert!(
        h.join_response(a).is_none(),
        "still inside the initial delay"
    );
    let b = h.join(req.clone());
    h.advance(1);
    // A member arrived during the delay: it is extended by another 3000 ms.
    assert!(h.join_response(a).is_none());
    let c = h.join(req.clone());
    h.advance(2_999);
    assert!(h.join_response(a).is_none());
    h.advance(1);
    // Extended once more, but only by what is left of the 7000 ms rebalance timeout (1000 ms).
    assert!(h.join_response(a).is_none());
    h.advance(999);
    assert!(h.join_response(a).is_none());
    h.advance(1);
    let joined: Vec<_> = [a, b, c].iter().map(|&id| h.joined(id)).collect();
    assert!(joined.iter().all(|j| j.generation == 1));
    assert_eq!(h.now, 7_000);
}

#[test]
fn initial_delay_does_not_complete_early_when_everyone_joined() {
    let mut h = Harness::new(CoordinatorConfig {
        initial_rebalance_delay_ms: 3_000,
        ..test_config()
    });
    let a = h.join(join_req("g", ""));
    h.advance(2_000);
    assert!(h.join_response(a).is_none());
    h.advance(1_000);
    assert_eq!(h.joined(a).generation, 1);
}

#[test]
fn only_static_members_not_rejoining_keep_the_round_open_until_their_sessions_expire() {
    let mut h = Harness::default();
    let s = h.join(static_join_req("g", "", "i-1"));
    h.advance(0);
    let s = h.joined(s);
    h.sync_all("g", std::slice::from_ref(&s));
    let commit = OffsetCommitCheck {
        group_id: "g".to_owned(),
        generation_id: 1,
        member_id: s.member_id.clone(),
        group_instance_id: Some("i-1".to_owned()),
        api_version: 8,
    };
    assert_eq!(h.c.validate_offset_commit(&commit, h.now), Ok(()));
    // A dynamic member joins and then leaves before the round ends.
    let d = h.join(join_req("g", ""));
    h.advance(1);
    let view = h.c.group("g").expect("group");
    let d_id = view
        .members
        .iter()
        .find(|m| **m != s.member_id)
        .expect("dynamic member")
        .clone();
    h.leave("g", &[(&d_id, None)]);
    assert_eq!(
        h.join_response(d).map(|r| r.error),
        Some(Some(GroupError::UnknownMemberId))
    );
    // Now only the static member remains, heartbeating but not rejoining. Static members are
    // kept through a round they miss, so the round cannot close and stays open past the
    // rebalance timeout...
    for step in 0..5 {
        if step > 0 {
            h.advance(SESSION - 1);
        }
        assert_eq!(
            h.heartbeat_as("g", &s.member_id, Some("i-1"), 1),
            Some(GroupError::RebalanceInProgress)
        );
    }
    assert!(h.now > REBALANCE + 1);
    let view = h.c.group("g").expect("group");
    assert_eq!(view.state, GroupState::PreparingRebalance);
    assert_eq!(view.members, vec![s.member_id.clone()]);
    // ...until its session expires.
    h.advance(SESSION);
    assert_eq!(h.state("g"), GroupState::Empty);
}
