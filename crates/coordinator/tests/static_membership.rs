//! Static membership (group.instance.id): rejoin without rebalance, fencing of old ids.

mod common;

use common::*;
use waterline_coordinator::*;

/// Two static members "i-a" (leader) and "i-b", stable at generation 1.
fn static_pair(h: &mut Harness) -> (Joined, Joined) {
    let a = h.join(static_join_req("g", "", "i-a"));
    let b = h.join(static_join_req("g", "", "i-b"));
    assert!(
        h.join_response(a).is_none(),
        "static members skip MEMBER_ID_REQUIRED"
    );
    h.advance(0);
    let (a, b) = (h.joined(a), h.joined(b));
    assert!(a.member_id.starts_with("i-a-"), "{}", a.member_id);
    h.sync_all("g", &[a.clone(), b.clone()]);
    (a, b)
}

#[test]
fn static_follower_rejoin_replaces_its_id_without_rebalance() {
    let mut h = Harness::default();
    let (a, b) = static_pair(&mut h);
    // i-b restarts and rejoins with an empty member id and unchanged metadata.
    let r = h.join(static_join_req("g", "", "i-b"));
    let resp = h.join_response(r).expect("answered at once").clone();
    assert_eq!(resp.error, None);
    assert_eq!(resp.generation_id, 1, "no new generation");
    assert_ne!(resp.member_id, b.member_id);
    assert_eq!(resp.leader, a.member_id);
    assert!(resp.members.is_empty());
    assert_eq!(h.state("g"), GroupState::Stable);

    // Its SyncGroup under the new id returns the assignment the old id had.
    let mut sync = sync_req("g", &resp.member_id, 1);
    sync.group_instance_id = Some("i-b".to_owned());
    let s = h.sync(sync);
    assert_eq!(
        h.sync_response(s).expect("answered").assignment,
        assignment_for(&b.member_id)
    );

    // The old id is fenced everywhere.
    assert_eq!(
        h.heartbeat_as("g", &b.member_id, Some("i-b"), 1),
        Some(GroupError::FencedInstanceId)
    );
    let mut old_sync = sync_req("g", &b.member_id, 1);
    old_sync.group_instance_id = Some("i-b".to_owned());
    let s = h.sync(old_sync);
    assert_eq!(
        h.sync_response(s).expect("answered").error,
        Some(GroupError::FencedInstanceId)
    );
    let commit = OffsetCommitCheck {
        group_id: "g".to_owned(),
        generation_id: 1,
        member_id: b.member_id.clone(),
        group_instance_id: Some("i-b".to_owned()),
        api_version: 8,
    };
    assert_eq!(
        h.c.validate_offset_commit(&commit, h.now),
        Err(GroupError::FencedInstanceId)
    );
    let j = h.join(static_join_req("g", &b.member_id, "i-b"));
    assert_eq!(
        h.join_response(j).expect("answered").error,
        Some(GroupError::FencedInstanceId)
    );
    let l = h.leave("g", &[(&b.member_id, Some("i-b"))]);
    assert_eq!(l.members[0].error, Some(GroupError::FencedInstanceId));
    // Without its instance id the old id is simply unknown.
    assert_eq!(
        h.heartbeat("g", &b.member_id, 1),
        Some(GroupError::UnknownMemberId)
    );
    assert_eq!(h.state("g"), GroupState::Stable);
}

#[test]
fn static_leader_rejoin_v9_skips_assignment_and_older_versions_see_the_old_leader() {
    for supports_skip in [true, false] {
        let mut h = Harness::default();
        let (a, _b) = static_pair(&mut h);
        let mut req = static_join_req("g", "", "i-a");
        req.supports_skip_assignment = supports_skip;
        let r = h.join(req);
        let resp = h.join_response(r).expect("answered at once").clone();
        assert_eq!(resp.error, None);
        assert_eq!(resp.generation_id, 1);
        assert_eq!(h.state("g"), GroupState::Stable);
        let view = h.c.group("g").expect("group");
        assert_eq!(
            view.leader.as_ref(),
            Some(&resp.member_id),
            "leadership moves to the new id"
        );
        if supports_skip {
            assert!(resp.skip_assignment);
            assert_eq!(resp.leader, resp.member_id);
            assert_eq!(resp.members.len(), 2);
        } else {
            assert!(!resp.skip_assignment);
            assert_eq!(resp.leader, a.member_id, "pre-v9: the previous leader id");
            assert!(resp.members.is_empty());
        }
    }
}

#[test]
fn static_rejoin_with_a_protocol_change_rebalances() {
    let mut h = Harness::default();
    static_pair(&mut h);
    let mut req = static_join_req("g", "", "i-b");
    // Preferring roundrobin alone does not change the choice (a only supports range)...
    req.protocols = vec![protocol("roundrobin"), protocol("range")];
    let r = h.join(req);
    assert_eq!(h.join_response(r).map(|r| r.error), Some(None));
    assert_eq!(h.state("g"), GroupState::Stable);
    // ...but once a also prefers roundrobin, a rejoin of b that changes the vote does.
    let mut req = static_join_req("g", "", "i-a");
    req.protocols = vec![protocol("roundrobin"), protocol("range")];
    let ra = h.join(req);
    // Both now vote roundrobin, so the selected protocol would change: a round starts.
    assert!(h.join_response(ra).is_none());
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
}

#[test]
fn static_rejoin_during_completing_rebalance_rebalances_and_fences_parked_requests() {
    let mut h = Harness::default();
    let a = h.join(static_join_req("g", "", "i-a"));
    let b = h.join(static_join_req("g", "", "i-b"));
    h.advance(0);
    let (_a, b) = (h.joined(a), h.joined(b));
    let mut parked = sync_req("g", &b.member_id, 1);
    parked.group_instance_id = Some("i-b".to_owned());
    let parked = h.sync(parked);
    assert!(h.sync_response(parked).is_none());
    let r = h.join(static_join_req("g", "", "i-b"));
    assert_eq!(
        h.sync_response(parked).expect("old id fenced").error,
        Some(GroupError::FencedInstanceId)
    );
    assert!(h.join_response(r).is_none(), "a new round starts");
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
}

#[test]
fn static_rejoin_during_preparing_rebalance_takes_over_the_parked_join() {
    let mut h = Harness::default();
    let ids: Vec<_> = ["i-a", "i-b", "i-c"]
        .iter()
        .map(|i| h.join(static_join_req("g", "", i)))
        .collect();
    h.advance(0);
    let joined: Vec<_> = ids.iter().map(|&id| h.joined(id)).collect();
    h.sync_all("g", &joined);
    let (a, b, c) = (&joined[0], &joined[1], &joined[2]);
    let ra = h.join(static_join_req("g", &a.member_id, "i-a"));
    let rb_old = h.join(static_join_req("g", &b.member_id, "i-b"));
    assert!(h.join_response(rb_old).is_none(), "c has not rejoined yet");
    // i-b restarts while its old incarnation's JoinGroup is parked.
    let rb_new = h.join(static_join_req("g", "", "i-b"));
    assert_eq!(
        h.join_response(rb_old).expect("fenced").error,
        Some(GroupError::FencedInstanceId)
    );
    assert!(h.join_response(rb_new).is_none());
    let rc = h.join(static_join_req("g", &c.member_id, "i-c"));
    let (ja, jb, jc) = (h.joined(ra), h.joined(rb_new), h.joined(rc));
    assert_eq!((ja.generation, jb.generation, jc.generation), (2, 2, 2));
    assert_ne!(jb.member_id, b.member_id);
}

#[test]
fn admin_can_remove_a_static_member_by_instance_id() {
    let mut h = Harness::default();
    let (_a, b) = static_pair(&mut h);
    let r = h.leave("g", &[("", Some("i-b"))]);
    assert_eq!(r.members[0].error, None);
    assert!(
        !h.c.group("g")
            .expect("group")
            .members
            .contains(&b.member_id)
    );
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
}

#[test]
fn known_static_member_with_unknown_instance_is_unknown() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 1);
    let r = h.join(static_join_req(
        "g",
        &joined[0].member_id,
        "never-registered",
    ));
    assert_eq!(
        h.join_response(r).expect("answered").error,
        Some(GroupError::UnknownMemberId)
    );
}
