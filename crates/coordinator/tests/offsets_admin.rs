//! Offset-commit validation in every state, offsets expiry, restore, and the admin APIs
//! (DescribeGroups, ListGroups, DeleteGroups).

mod common;

use common::*;
use waterline_coordinator::*;

fn check(group: &str, generation: i32, member: &str, instance: Option<&str>) -> OffsetCommitCheck {
    OffsetCommitCheck {
        group_id: group.to_owned(),
        generation_id: generation,
        member_id: member.to_owned(),
        group_instance_id: instance.map(str::to_owned),
        api_version: 8,
    }
}

/// Runs one table of commit checks against the coordinator as it is.
fn expect_commits(
    h: &mut Harness,
    state: &str,
    table: &[(&str, OffsetCommitCheck, Result<(), GroupError>)],
) {
    for (name, c, want) in table {
        let got = h.c.validate_offset_commit(c, h.now);
        assert_eq!(&got, want, "{state}: {name}");
    }
}

#[test]
fn offset_commit_validation_in_every_state() {
    use GroupError::*;
    let mut h = Harness::default();

    // Nonexistent group.
    expect_commits(
        &mut h,
        "no group",
        &[
            (
                "generation with old api",
                check("new", 1, "m", None),
                Err(IllegalGeneration),
            ),
            (
                "generation with v9",
                OffsetCommitCheck {
                    api_version: 9,
                    ..check("new", 1, "m", None)
                },
                Err(GroupIdNotFound),
            ),
            (
                "empty group id",
                check("", -1, "", None),
                Err(InvalidGroupId),
            ),
        ],
    );
    assert!(h.c.group("new").is_none());
    // A standalone commit creates an Empty group that then lists and can be deleted.
    expect_commits(
        &mut h,
        "no group",
        &[("standalone", check("new", -1, "", None), Ok(()))],
    );
    assert_eq!(h.state("new"), GroupState::Empty);

    // Stable group of two (one static).
    let d = h.join(join_req("g", ""));
    let s = h.join(static_join_req("g", "", "i-s"));
    h.advance(0);
    let (d, s) = (h.joined(d), h.joined(s));
    // CompletingRebalance.
    expect_commits(
        &mut h,
        "CompletingRebalance",
        &[
            (
                "member",
                check("g", 1, &d.member_id, None),
                Err(RebalanceInProgress),
            ),
            (
                "static member",
                check("g", 1, &s.member_id, Some("i-s")),
                Err(RebalanceInProgress),
            ),
            (
                "stale generation",
                check("g", 0, &d.member_id, None),
                Err(IllegalGeneration),
            ),
            ("standalone", check("g", -1, "", None), Err(UnknownMemberId)),
            (
                "unknown member",
                check("g", 1, "ghost", None),
                Err(UnknownMemberId),
            ),
        ],
    );
    h.sync_all("g", &[d.clone(), s.clone()]);
    let stable = [
        ("member", check("g", 1, &d.member_id, None), Ok(())),
        (
            "static member",
            check("g", 1, &s.member_id, Some("i-s")),
            Ok(()),
        ),
        (
            "static member, wrong id",
            check("g", 1, &d.member_id, Some("i-s")),
            Err(FencedInstanceId),
        ),
        (
            "unknown instance",
            check("g", 1, &s.member_id, Some("i-x")),
            Err(UnknownMemberId),
        ),
        (
            "stale generation",
            check("g", 0, &d.member_id, None),
            Err(IllegalGeneration),
        ),
        (
            "future generation",
            check("g", 2, &d.member_id, None),
            Err(IllegalGeneration),
        ),
        (
            "unknown member",
            check("g", 1, "ghost", None),
            Err(UnknownMemberId),
        ),
        (
            "standalone to a live group",
            check("g", -1, "", None),
            Err(UnknownMemberId),
        ),
        (
            "member id without generation",
            check("g", -1, &d.member_id, None),
            Err(IllegalGeneration),
        ),
    ];
    expect_commits(&mut h, "Stable", &stable);

    // PreparingRebalance: members may still commit with the current generation.
    let _newcomer = h.join(join_req("g", ""));
    assert_eq!(h.state("g"), GroupState::PreparingRebalance);
    expect_commits(&mut h, "PreparingRebalance", &stable);

    // Empty: everyone left; only generation -1 commits are accepted.
    let ids: Vec<String> = h.c.group("g").expect("group").members;
    let members: Vec<(&str, Option<&str>)> = ids.iter().map(|m| (m.as_str(), None)).collect();
    h.leave("g", &members);
    assert_eq!(h.state("g"), GroupState::Empty);
    let generation = h.c.group("g").expect("group").generation_id;
    expect_commits(
        &mut h,
        "Empty",
        &[
            ("standalone", check("g", -1, "", None), Ok(())),
            (
                "admin with member id",
                check("g", -1, "whatever", None),
                Ok(()),
            ),
            (
                "former member",
                check("g", generation, &d.member_id, None),
                Err(UnknownMemberId),
            ),
            (
                "former static member",
                check("g", generation, &s.member_id, Some("i-s")),
                Err(UnknownMemberId),
            ),
        ],
    );

    // Dead (deleted): like a nonexistent group.
    assert_eq!(h.c.delete_groups(&["g"]), vec![("g".to_owned(), None)]);
    expect_commits(
        &mut h,
        "Dead",
        &[
            (
                "member of the deleted group",
                check("g", generation, &d.member_id, None),
                Err(IllegalGeneration),
            ),
            ("standalone", check("g", -1, "", None), Ok(())),
        ],
    );
}

#[test]
fn a_member_commit_counts_as_a_heartbeat() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 1);
    let m = joined[0].member_id.clone();
    h.advance(SESSION_MS as u64 - 1);
    assert_eq!(
        h.c.validate_offset_commit(&check("g", 1, &m, None), h.now),
        Ok(())
    );
    h.advance(SESSION_MS as u64 - 1);
    assert_eq!(h.state("g"), GroupState::Stable);
    h.advance(1);
    assert_eq!(h.state("g"), GroupState::Empty);
}

#[test]
fn offsets_of_a_group_empty_longer_than_retention_expire() {
    let mut h = Harness::new(CoordinatorConfig {
        offsets_retention_ms: 100_000,
        ..test_config()
    });
    let joined = h.stable_group("g", 1);
    assert_eq!(
        h.c.validate_offset_commit(&check("g", 1, &joined[0].member_id, None), h.now),
        Ok(())
    );
    h.advance(5_000);
    h.leave("g", &[(&joined[0].member_id, None)]);
    let empty_since = h.now;
    assert_eq!(h.c.group("g").expect("group").state_since_ms, empty_since);
    assert_eq!(h.c.next_deadline(), Some(empty_since + 100_000));
    // Standalone commits to an empty consumer group do not extend its retention (as in Kafka).
    h.advance(50_000);
    assert_eq!(
        h.c.validate_offset_commit(&check("g", -1, "", None), h.now),
        Ok(())
    );
    h.advance(49_999);
    assert!(h.last.expired_groups.is_empty());
    h.advance(1);
    assert_eq!(h.last.expired_groups, vec!["g".to_owned()]);
    assert!(h.c.group("g").is_none());
}

#[test]
fn standalone_groups_expire_after_their_last_commit() {
    let mut h = Harness::new(CoordinatorConfig {
        offsets_retention_ms: 100_000,
        ..test_config()
    });
    assert_eq!(
        h.c.validate_offset_commit(&check("s", -1, "", None), h.now),
        Ok(())
    );
    h.advance(90_000);
    assert_eq!(
        h.c.validate_offset_commit(&check("s", -1, "", None), h.now),
        Ok(())
    );
    h.advance(90_000);
    assert!(
        h.last.expired_groups.is_empty(),
        "the later commit restarted retention"
    );
    h.advance(10_000);
    assert_eq!(h.last.expired_groups, vec!["s".to_owned()]);
}

#[test]
fn a_group_with_members_never_expires() {
    let mut h = Harness::new(CoordinatorConfig {
        offsets_retention_ms: 1_000,
        ..test_config()
    });
    let joined = h.stable_group("g", 1);
    assert_eq!(
        h.c.validate_offset_commit(&check("g", 1, &joined[0].member_id, None), h.now),
        Ok(())
    );
    for _ in 0..5 {
        h.advance(5_000);
        assert_eq!(h.heartbeat("g", &joined[0].member_id, 1), None);
        assert!(h.last.expired_groups.is_empty());
    }
}

#[test]
fn restored_groups_come_back_empty_and_members_rejoin() {
    let mut h = Harness::default();
    h.c.restore_group("g", 0);
    h.c.restore_group("", 0);
    assert_eq!(h.c.list_groups(&[]).len(), 1);
    assert_eq!(h.state("g"), GroupState::Empty);
    // A member of the previous process run is unknown; it rejoins from scratch.
    assert_eq!(
        h.heartbeat("g", "old-member", 7),
        Some(GroupError::UnknownMemberId)
    );
    let r = h.join(join_req("g", "old-member"));
    assert_eq!(
        h.join_response(r).expect("answered").error,
        Some(GroupError::UnknownMemberId)
    );
    let r = h.join(join_req("g", ""));
    h.advance(0);
    assert_eq!(h.joined(r).generation, 1);
    // Restored groups survive ticks (they have offsets).
    assert_eq!(
        h.c.delete_groups(&["g"]),
        vec![("g".to_owned(), Some(GroupError::NonEmptyGroup))]
    );
}

#[test]
fn delete_groups_rules() {
    let mut h = Harness::default();
    h.stable_group("live", 1);
    h.c.restore_group("idle", 0);
    let mut req = join_req("pending-only", "");
    req.require_known_member_id = true;
    h.join(req);
    let got =
        h.c.delete_groups(&["live", "idle", "missing", "", "idle", "pending-only"]);
    assert_eq!(
        got,
        vec![
            ("live".to_owned(), Some(GroupError::NonEmptyGroup)),
            ("idle".to_owned(), None),
            ("missing".to_owned(), Some(GroupError::GroupIdNotFound)),
            ("".to_owned(), Some(GroupError::InvalidGroupId)),
            ("idle".to_owned(), Some(GroupError::GroupIdNotFound)),
            ("pending-only".to_owned(), None),
        ]
    );
    assert_eq!(h.state("live"), GroupState::Stable);
    assert_eq!(h.state("idle"), GroupState::Dead);
}

#[test]
fn list_groups_with_and_without_state_filter() {
    let mut h = Harness::default();
    h.stable_group("b-stable", 1);
    h.c.restore_group("a-empty", 0);
    h.join(join_req("c-preparing", ""));
    let all: Vec<(String, GroupState)> =
        h.c.list_groups(&[])
            .into_iter()
            .map(|g| (g.group_id, g.state))
            .collect();
    assert_eq!(
        all,
        vec![
            ("a-empty".to_owned(), GroupState::Empty),
            ("b-stable".to_owned(), GroupState::Stable),
            ("c-preparing".to_owned(), GroupState::PreparingRebalance),
        ]
    );
    let filter = [
        GroupState::from_name("stable").expect("known"),
        GroupState::Empty,
    ];
    let some: Vec<String> =
        h.c.list_groups(&filter)
            .into_iter()
            .map(|g| g.group_id)
            .collect();
    assert_eq!(some, vec!["a-empty".to_owned(), "b-stable".to_owned()]);
    assert_eq!(h.c.list_groups(&[GroupState::Dead]), vec![]);
    let stable = &h.c.list_groups(&[GroupState::Stable])[0];
    assert_eq!(stable.protocol_type, "consumer");
}

#[test]
fn group_state_names_round_trip() {
    for s in [
        GroupState::Empty,
        GroupState::PreparingRebalance,
        GroupState::CompletingRebalance,
        GroupState::Stable,
        GroupState::Dead,
    ] {
        assert_eq!(GroupState::from_name(s.name()), Some(s));
        assert_eq!(GroupState::from_name(&s.name().to_uppercase()), Some(s));
        assert_eq!(s.to_string(), s.name());
    }
    assert_eq!(GroupState::from_name("Rebalancing"), None);
}

#[test]
fn describe_groups() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    h.join(join_req("p", ""));
    let d = h.c.describe_groups(&["g", "p", "missing", ""]);
    let g = &d[0];
    assert_eq!((g.error, g.state), (None, GroupState::Stable));
    assert_eq!(
        (g.protocol_type.as_str(), g.protocol_name.as_str()),
        ("consumer", "range")
    );
    assert_eq!(g.members.len(), 2);
    for m in &g.members {
        assert_eq!(m.assignment, assignment_for(&m.member_id));
        assert_eq!(m.metadata, protocol("range").metadata);
        assert_eq!(m.client_host, "/127.0.0.1");
    }
    assert!(
        joined
            .iter()
            .all(|j| g.members.iter().any(|m| m.member_id == j.member_id))
    );
    // Not stable: members are listed without metadata or assignment.
    let p = &d[1];
    assert_eq!(p.state, GroupState::PreparingRebalance);
    assert_eq!(p.protocol_name, "");
    assert!(
        p.members
            .iter()
            .all(|m| m.metadata.is_empty() && m.assignment.is_empty())
    );
    assert_eq!((d[2].error, d[2].state), (None, GroupState::Dead));
    assert_eq!(d[3].error, Some(GroupError::InvalidGroupId));
}
