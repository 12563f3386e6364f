//! Heartbeat answers in every situation, and LeaveGroup (single, batch, by instance id).

mod common;

use common::*;
use waterline_coordinator::*;

#[test]
fn heartbeat_answers() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let (a, b) = (joined[0].member_id.clone(), joined[1].member_id.clone());
    let table: Vec<(&str, &str, &str, i32, Option<GroupError>)> = vec![
        ("stable member", "g", &a, 1, None),
        (
            "old generation",
            "g",
            &a,
            0,
            Some(GroupError::IllegalGeneration),
        ),
        (
            "future generation",
            "g",
            &b,
            2,
            Some(GroupError::IllegalGeneration),
        ),
        (
            "unknown member",
            "g",
            "ghost",
            1,
            Some(GroupError::UnknownMemberId),
        ),
        (
            "unknown group",
            "other",
            &a,
            1,
            Some(GroupError::UnknownMemberId),
        ),
        (
            "empty group id",
            "",
            &a,
            1,
            Some(GroupError::InvalidGroupId),
        ),
    ];
    for (name, group, member, generation, want) in table {
        assert_eq!(h.heartbeat(group, member, generation), want, "{name}");
    }
    // A newcomer starts a rebalance: members learn of it from their heartbeat.
    let newcomer = h.join(join_req("g", ""));
    assert_eq!(
        h.heartbeat("g", &b, 1),
        Some(GroupError::RebalanceInProgress)
    );
    let ra = h.join(join_req("g", &a));
    let rb = h.join(join_req("g", &b));
    let (ja, _jn, _jb) = (h.joined(ra), h.joined(newcomer), h.joined(rb));
    assert_eq!(ja.generation, 2);
    // CompletingRebalance: heartbeats with the new generation are fine.
    assert_eq!(h.heartbeat("g", &b, 2), None);
    assert_eq!(h.heartbeat("g", &b, 1), Some(GroupError::IllegalGeneration));
}

#[test]
fn heartbeats_keep_a_member_alive() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 1);
    let m = joined[0].member_id.clone();
    for _ in 0..10 {
        h.advance(SESSION_MS as u64 - 1);
        assert_eq!(h.heartbeat("g", &m, 1), None);
    }
    assert_eq!(h.state("g"), GroupState::Stable);
}

#[test]
fn single_leave_rebalances_the_rest() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let r = h.leave("g", &[(&joined[1].member_id, None)]);
    assert_eq!(r.error, None);
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].error, None);
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    let again = h.join(join_req("g", &joined[0].member_id));
    let j = h.joined(again);
    assert_eq!(j.generation, 2);
    assert_eq!(
        h.c.group("g").expect("group").members,
        vec![joined[0].member_id.clone()]
    );
}

#[test]
fn last_leave_empties_the_group() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 1);
    let r = h.leave("g", &[(&joined[0].member_id, None)]);
    assert_eq!(r.members[0].error, None);
    let view = h.c.group("g").expect("group kept while empty");
    assert_eq!(view.state, GroupState::Empty);
    assert_eq!(view.generation_id, 2, "the empty round is a generation too");
    assert_eq!(view.leader, None);
}

#[test]
fn batch_leave_reports_per_member() {
    let mut h = Harness::default();
    let ids: Vec<_> = (0..2).map(|_| h.join(join_req("g", ""))).collect();
    let st = h.join(static_join_req("g", "", "static-1"));
    h.advance(0);
    let joined: Vec<Joined> = ids.iter().chain([&st]).map(|&id| h.joined(id)).collect();
    h.sync_all("g", &joined);
    let r = h.leave(
        "g",
        &[
            (&joined[0].member_id, None),
            ("ghost", None),
            ("", Some("static-1")),
            ("", Some("no-such-instance")),
            (&joined[1].member_id, Some("static-1")),
        ],
    );
    let errors: Vec<_> = r.members.iter().map(|m| m.error).collect();
    assert_eq!(
        errors,
        vec![
            None,
            Some(GroupError::UnknownMemberId),
            None,
            Some(GroupError::UnknownMemberId),
            // static-1 was already removed above, so this is just an unknown instance and
            // member 1 leaves normally.
            None,
        ]
    );
    assert_eq!(r.members[1].member_id, "ghost");
    assert_eq!(h.state("g"), GroupState::Empty);
}

#[test]
fn leave_with_wrong_instance_is_fenced_and_unknown_group_reports_members() {
    let mut h = Harness::default();
    let a = h.join(static_join_req("g", "", "i-a"));
    let b = h.join(static_join_req("g", "", "i-b"));
    h.advance(0);
    let (a, b) = (h.joined(a), h.joined(b));
    let r = h.leave("g", &[(&a.member_id, Some("i-b"))]);
    assert_eq!(r.members[0].error, Some(GroupError::FencedInstanceId));
    assert!(
        h.c.group("g")
            .expect("group")
            .members
            .contains(&b.member_id)
    );

    let r = h.leave("unknown", &[("x", None), ("y", None)]);
    assert_eq!(r.error, None);
    assert!(
        r.members
            .iter()
            .all(|m| m.error == Some(GroupError::UnknownMemberId))
    );
    let r = h.leave("", &[("x", None)]);
    assert_eq!(r.error, Some(GroupError::InvalidGroupId));
}

#[test]
fn leave_of_a_pending_member_completes_the_round() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 1);
    let mut req = join_req("g", "");
    req.require_known_member_id = true;
    let p = h.join(req);
    let issued = h.join_response(p).expect("answered").member_id.clone();
    let l = h.join(join_req("g", &joined[0].member_id));
    assert!(h.join_response(l).is_none(), "waits for the pending member");
    let r = h.leave("g", &[(&issued, None)]);
    assert_eq!(r.members[0].error, None);
    assert_eq!(h.joined(l).generation, 2);
}
