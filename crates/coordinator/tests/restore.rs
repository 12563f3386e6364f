//! Durable group metadata: which outputs ask for a write, and groups rebuilt from their records
//! after a restart (members keep their generation; absent members expire).

mod common;

use bytes::Bytes;
use common::*;
use waterline_coordinator::*;

const SESSION: u64 = SESSION_MS as u64;
const REBALANCE: u64 = REBALANCE_MS as u64;
/// The restarted broker's clock: far from the original run's.
const RESTART_MS: u64 = 5_000_000;

fn stores(out: &Output) -> Vec<GroupSnapshot> {
    out.metadata
        .iter()
        .filter_map(|u| match u {
            MetadataUpdate::Store(s) => Some(s.clone()),
            MetadataUpdate::Delete { .. } => None,
        })
        .collect()
}

/// The record as the broker would store and read it back.
fn through_disk(s: &GroupSnapshot) -> GroupSnapshot {
    GroupSnapshot::decode(&s.group_id, &s.encode()).expect("decodes")
}

/// A new coordinator (another process run: another nonce) restored from `records` at
/// [`RESTART_MS`].
fn restarted(records: &[GroupSnapshot]) -> Harness {
    let mut h = Harness::new(CoordinatorConfig {
        member_id_nonce: 0xfeed,
        ..test_config()
    });
    h.now = RESTART_MS;
    for r in records {
        h.c.restore_snapshot(through_disk(r), RESTART_MS)
            .expect("restores");
    }
    h
}

fn member_commit(group: &str, j: &Joined) -> OffsetCommitCheck {
    OffsetCommitCheck {
        group_id: group.to_owned(),
        generation_id: j.generation,
        member_id: j.member_id.clone(),
        group_instance_id: None,
        api_version: 9,
    }
}

#[test]
fn the_leaders_sync_output_carries_the_record_with_the_answers() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    // The last call was the leader's SyncGroup: its output answers both members and stores the
    // group, so the broker can write before delivering.
    assert_eq!(h.last.responses.len(), 2);
    let records = stores(&h.last);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.leader.as_deref(), Some(joined[0].member_id.as_str()));
    assert!(!r.rebalance_pending);
    for (m, j) in r.members.iter().zip({
        let mut sorted = joined.clone();
        sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        sorted
    }) {
        assert_eq!(m.member_id, j.member_id);
        assert_eq!(m.assignment, Some(assignment_for(&j.member_id)));
        assert_eq!(m.session_timeout_ms, SESSION);
        assert_eq!(m.protocols, vec![protocol("range")]);
    }
    // Heartbeats, commits and follower syncs in a Stable group write nothing.
    assert_eq!(h.heartbeat("g", &joined[1].member_id, 1), None);
    assert!(h.last.metadata.is_empty());
    h.sync(sync_req("g", &joined[1].member_id, 1));
    assert!(h.last.metadata.is_empty());
}

#[test]
fn restored_members_heartbeat_and_commit_in_their_generation() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let record = stores(&h.last).pop().expect("stored");

    let mut r = restarted(&[record]);
    assert_eq!(r.state("g"), GroupState::Stable);
    let view = r.c.group("g").expect("group");
    assert_eq!(view.generation_id, 1);
    assert_eq!(view.leader.as_deref(), Some(joined[0].member_id.as_str()));
    for j in &joined {
        assert_eq!(r.heartbeat("g", &j.member_id, 1), None);
        assert_eq!(
            r.c.validate_offset_commit(&member_commit("g", j), r.now),
            Ok(())
        );
        // SyncGroup (e.g. a retry) still hands out the stored assignment.
        let id = r.sync(sync_req("g", &j.member_id, 1));
        let s = r.sync_response(id).expect("answered");
        assert_eq!(s.error, None);
        assert_eq!(s.assignment, assignment_for(&j.member_id));
    }
    // A follower rejoining with unchanged metadata does not force a rebalance.
    let id = r.join(join_req("g", &joined[1].member_id));
    assert_eq!(r.joined(id).generation, 1);
    assert_eq!(r.state("g"), GroupState::Stable);
    // DescribeGroups reports the restored group as it was.
    let d = &r.c.describe_groups(&["g"])[0];
    assert_eq!(d.protocol_type, "consumer");
    assert_eq!(d.protocol_name, "range");
    assert_eq!(d.members.len(), 2);
    assert!(r.last.metadata.is_empty(), "restoring is not a change");
}

#[test]
fn ids_issued_after_a_restart_never_match_restored_ones() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 1);
    let record = stores(&h.last).pop().expect("stored");
    let mut r = restarted(&[record]);
    // The new run's sequence starts over; only the nonce keeps the ids apart.
    let id = r.join(join_req("g", ""));
    r.advance(REBALANCE);
    let newcomer = r.joined(id);
    assert_ne!(newcomer.member_id, joined[0].member_id);
    assert!(newcomer.member_id.contains("000000000000feed"));
}

#[test]
fn a_member_that_never_returns_expires_and_the_group_goes_empty() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 2);
    let (a, b) = (&joined[0].member_id, &joined[1].member_id);
    let record = stores(&h.last).pop().expect("stored");

    let mut r = restarted(&[record]);
    // The group has committed offsets (the broker registers them after the records).
    r.c.restore_group("g", RESTART_MS);
    // Sessions restart at the restart time, not at the time of the record.
    r.advance(SESSION - 1);
    assert_eq!(r.heartbeat("g", a, 1), None);
    assert_eq!(r.state("g"), GroupState::Stable);
    r.advance(1);
    // b never came back: evicted after its session timeout, and the group rebalances.
    assert_eq!(r.state("g"), GroupState::PreparingRebalance);
    let pending = stores(&r.last);
    assert!(
        pending
            .iter()
            .any(|s| s.rebalance_pending && s.members.len() == 1),
        "the removal is stored: {pending:?}"
    );
    assert_eq!(r.heartbeat("g", b, 1), Some(GroupError::UnknownMemberId));
    // a stops too: it expires, the round closes with nobody, the group is Empty and stored so.
    r.advance(SESSION + REBALANCE);
    assert_eq!(r.state("g"), GroupState::Empty);
    let empty = r.c.snapshot("g").expect("kept for its offsets");
    assert!(empty.members.is_empty());
    assert_eq!(empty.protocol_type.as_deref(), Some("consumer"));
}

#[test]
fn a_group_whose_members_all_vanish_goes_empty_and_is_forgotten_without_offsets() {
    let mut h = Harness::default();
    h.stable_group("g", 2);
    let record = stores(&h.last).pop().expect("stored");
    let mut r = restarted(&[record]);
    r.advance(SESSION - 1);
    assert_eq!(r.state("g"), GroupState::Stable);
    // Both sessions end in one tick: the round they leave behind closes at once, empty.
    r.advance(1);
    let updates = r.last.metadata.clone();
    assert_eq!(
        r.state("g"),
        GroupState::Dead,
        "no offsets: forgotten once Empty"
    );
    assert_eq!(
        updates.last(),
        Some(&MetadataUpdate::Delete {
            group_id: "g".into()
        }),
        "{updates:?}"
    );
}

#[test]
fn an_empty_group_with_offsets_restores_empty_with_its_protocol_type() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 1);
    assert_eq!(
        h.c.validate_offset_commit(&member_commit("g", &joined[0]), h.now),
        Ok(())
    );
    h.leave("g", &[(&joined[0].member_id, None)]);
    h.advance(REBALANCE);
    assert_eq!(h.state("g"), GroupState::Empty);
    let record = h.c.snapshot("g").expect("known");
    let mut r = restarted(&[record]);
    r.c.restore_group("g", RESTART_MS);
    assert_eq!(r.state("g"), GroupState::Empty);
    let d = &r.c.describe_groups(&["g"])[0];
    assert_eq!(d.protocol_type, "consumer");
    let listed = r.c.list_groups(&[]);
    assert_eq!(listed[0].protocol_type, "consumer");
    // Deleting it deletes its record.
    assert_eq!(r.c.delete_groups(&["g"]), vec![("g".to_owned(), None)]);
    assert_eq!(
        r.c.take_metadata_updates(),
        vec![MetadataUpdate::Delete {
            group_id: "g".into()
        }]
    );
}

#[test]
fn a_leave_is_stored_as_a_pending_rebalance_and_restores_into_a_join_round() {
    let mut h = Harness::default();
    let joined = h.stable_group("g", 3);
    let leaver = &joined[2].member_id;
    h.leave("g", &[(leaver, None)]);
    let record = stores(&h.last).pop().expect("the leave is stored");
    assert!(record.rebalance_pending);
    assert_eq!(record.members.len(), 2);
    assert!(record.members.iter().all(|m| &m.member_id != leaver));

    let mut r = restarted(&[record]);
    assert_eq!(r.state("g"), GroupState::PreparingRebalance);
    let (a, b) = (&joined[0].member_id, &joined[1].member_id);
    // Members learn of the round from their heartbeats and rejoin under their ids.
    assert_eq!(
        r.heartbeat("g", a, 1),
        Some(GroupError::RebalanceInProgress)
    );
    assert_eq!(
        r.heartbeat("g", leaver, 1),
        Some(GroupError::UnknownMemberId)
    );
    let ja = r.join(join_req("g", a));
    let jb = r.join(join_req("g", b));
    let (ja, jb) = (r.joined(ja), r.joined(jb));
    assert_eq!(ja.generation, 2);
    r.sync_all("g", &[ja, jb]);
    assert_eq!(stores(&r.last).len(), 1);
}

#[test]
fn a_replaced_static_member_is_stored_under_its_new_id() {
    let mut h = Harness::default();
    let first = h.join(static_join_req("g", "", "inst"));
    h.advance(0);
    let j = h.joined(first);
    let mut sync = sync_req("g", &j.member_id, j.generation);
    sync.assignments = vec![(j.member_id.clone(), Bytes::from_static(b"p0"))];
    h.sync(sync);
    // The instance restarts: new member id, same generation, no rebalance.
    let again = h.join(static_join_req("g", "", "inst"));
    let j2 = h.joined(again);
    assert_ne!(j2.member_id, j.member_id);
    assert_eq!(h.state("g"), GroupState::Stable);
    let record = stores(&h.last).pop().expect("the replacement is stored");
    assert_eq!(record.members[0].member_id, j2.member_id);
    assert_eq!(record.members[0].group_instance_id.as_deref(), Some("inst"));

    let mut r = restarted(&[record]);
    assert_eq!(
        r.heartbeat_as("g", &j2.member_id, Some("inst"), j2.generation),
        None
    );
    assert_eq!(
        r.heartbeat_as("g", &j.member_id, Some("inst"), j.generation),
        Some(GroupError::FencedInstanceId)
    );
}

#[test]
fn inconsistent_records_are_refused() {
    let mut h = Harness::default();
    h.stable_group("g", 2);
    let good = stores(&h.last).pop().expect("stored");
    let mut c = GroupCoordinator::new(test_config());

    let mut bad = good.clone();
    bad.leader = Some("nobody".into());
    assert!(matches!(
        c.restore_snapshot(bad, 0),
        Err(RestoreError::BadLeader { .. })
    ));
    let mut bad = good.clone();
    bad.members[1].member_id = bad.members[0].member_id.clone();
    assert!(matches!(
        c.restore_snapshot(bad, 0),
        Err(RestoreError::Duplicate { .. })
    ));
    let mut bad = good.clone();
    bad.members[0].assignment = None;
    assert!(matches!(
        c.restore_snapshot(bad, 0),
        Err(RestoreError::MissingAssignment { .. })
    ));
    let mut bad = good.clone();
    bad.protocol_name = None;
    assert!(matches!(
        c.restore_snapshot(bad, 0),
        Err(RestoreError::MissingProtocol { .. })
    ));
    let mut bad = good;
    bad.group_id.clear();
    assert_eq!(c.restore_snapshot(bad, 0), Err(RestoreError::EmptyGroupId));
    assert!(c.list_groups(&[]).is_empty());
}
