//! The thread-safe tracker end to end: generations, concurrent acks, commit plans and stats,
//! lag, and a checkpoint barrier flowing through a policy.

use std::sync::Arc;

use waterline_core::{
    AckOutcome, AnyOf, Checkpoint, CommitDecision, CommitPolicy, EveryNAcks, OffsetAndMetadata,
    OffsetTracker, PolicyEvent, TopicPartition, TrackerConfig, TrackerError,
};

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("orders", p)
}

#[test]
fn stale_generation_acks_are_ignored_and_counted() {
    let t = OffsetTracker::new(TrackerConfig::default()).unwrap();
    t.assign_at(tp(0), 1, 0).unwrap();
    let g1 = t.hand_out(&tp(0), 0, 0).unwrap();
    // Rebalance: revoked and re-assigned under generation 2 from the same commit point.
    let old = t.revoke(&tp(0)).unwrap();
    assert_eq!(old.in_flight(), 1);
    assert_eq!(t.ack(&tp(0), 0, g1).unwrap(), AckOutcome::Stale);
    t.assign_at(tp(0), 2, 0).unwrap();
    assert_eq!(t.ack(&tp(0), 0, g1).unwrap(), AckOutcome::Stale);
    assert_eq!(t.commit_point(&tp(0)), Some(0));
    let g2 = t.hand_out(&tp(0), 0, 0).unwrap();
    assert_eq!(g2, 2);
    assert_eq!(
        t.ack(&tp(0), 0, g2).unwrap(),
        AckOutcome::Advanced { from: 0, to: 1 }
    );
    assert_eq!(t.stats().stale_acks, 2);
    assert!(matches!(
        t.hand_out(&tp(9), 0, 0),
        Err(TrackerError::NotAssigned(_))
    ));
    assert!(!t.should_process(&tp(9), 0));
    assert!(!t.can_hand_out(&tp(9)));
}

#[test]
fn concurrent_acks_on_many_partitions() {
    let t = Arc::new(OffsetTracker::new(TrackerConfig::default()).unwrap());
    for p in 0..8 {
        t.assign_at(tp(p), 1, 0).unwrap();
    }
    let handles: Vec<_> = (0..4)
        .map(|w| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                for p in [w, w + 4] {
                    for o in 0..5_000 {
                        t.hand_out(&tp(p), o, 0).unwrap();
                    }
                    // Reverse order: everything stays pending until offset 0.
                    for o in (0..5_000).rev() {
                        t.ack(&tp(p), o, 1).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for p in 0..8 {
        assert_eq!(t.commit_point(&tp(p)), Some(5_000));
    }
}

#[test]
fn commit_plans_stats_and_lag() {
    let t = OffsetTracker::new(TrackerConfig::default()).unwrap();
    t.assign_at(tp(0), 1, 100).unwrap();
    t.assign_committed(tp(1), 1, &OffsetAndMetadata::new(50, 0))
        .unwrap();
    for o in 100..110 {
        t.hand_out(&tp(0), o, 1_000 + o).unwrap();
    }
    for o in [100, 101, 105] {
        t.ack(&tp(0), o, 1).unwrap();
    }
    let plan = t.prepare_commit(2_000);
    // tp(1) is already committed at 50 with nothing new: only tp(0) is planned.
    assert_eq!(plan.entries.len(), 1);
    let e = &plan.entries[0];
    assert_eq!(e.offset_and_metadata.offset(), Some(102));
    assert!(e.offset_and_metadata.metadata.starts_with("wl1:"));
    t.commit_finished(&plan, false, 2_010, 10);
    let again = t.prepare_commit(2_020);
    assert_eq!(again.entries.len(), 1, "a failed commit is retried");
    t.commit_finished(&again, true, 2_030, 20);
    assert!(t.prepare_commit(2_040).is_empty());
    let s = t.stats();
    assert_eq!((s.attempted, s.succeeded, s.failed), (2, 1, 1));
    assert_eq!(
        s.offsets_committed, 0,
        "no previous commit for tp(0) to measure from"
    );
    assert_eq!(s.last_commit_ms, Some(2_030));
    assert_eq!(s.mean_commit_duration_ms, Some(15.0));
    t.ack(&tp(0), 102, 1).unwrap();
    let plan = t.prepare_commit(3_000);
    t.commit_finished(&plan, true, 3_001, 1);
    assert_eq!(t.stats().offsets_committed, 1);

    let lag = t.lag(
        |p| match p.partition {
            0 => Some(120),
            1 => Some(40), // stale high watermark below the commit point
            _ => None,
        },
        2_000,
    );
    assert_eq!(lag.partitions[0].lag, 17);
    assert_eq!(lag.partitions[0].in_flight, 6);
    assert_eq!(lag.partitions[0].oldest_unacked_age_ms, Some(2_000 - 1_103));
    assert_eq!(lag.partitions[1].lag, 0);
    assert_eq!(lag.total_lag, 17);
}

#[test]
fn checkpoint_commits_what_was_acked_before_the_barrier() {
    let t = OffsetTracker::new(TrackerConfig::default()).unwrap();
    t.assign_at(tp(0), 1, 0).unwrap();
    let mut policy = AnyOf::new(vec![
        Box::new(Checkpoint::default()),
        Box::new(EveryNAcks::new(1_000).unwrap()),
    ])
    .unwrap();
    for o in 0..10 {
        t.hand_out(&tp(0), o, 0).unwrap();
    }
    for o in [0, 1, 2, 5] {
        t.ack(&tp(0), o, 1).unwrap();
        assert_eq!(
            policy.on_event(&PolicyEvent::Acked {
                count: 1,
                now_ms: 0
            }),
            CommitDecision::Nothing
        );
    }
    let snapshot = t.snapshot(10);
    policy.on_event(&PolicyEvent::BarrierDeclared {
        id: 1,
        snapshot,
        now_ms: 10,
    });
    // Acks after the barrier must not be part of its commit.
    for o in [3, 4, 6] {
        t.ack(&tp(0), o, 1).unwrap();
    }
    let CommitDecision::CommitSnapshot { barrier, plan } =
        policy.on_event(&PolicyEvent::BarrierCompleted { id: 1, now_ms: 20 })
    else {
        panic!("barrier completion must commit its snapshot");
    };
    assert_eq!(barrier, 1);
    let oam = &plan.entries[0].offset_and_metadata;
    assert_eq!(oam.offset(), Some(3));
    let set = waterline_core::AckedSet::decode_string(3, &oam.metadata).unwrap();
    assert_eq!(set.ranges(), &[(5, 6)]);
    t.commit_started(&plan);
    t.commit_finished(&plan, true, 30, 1);
    assert_eq!(t.commit_point(&tp(0)), Some(7));
    assert_eq!(t.with_partition(&tp(0), |p| p.committed()), Some(Some(3)));
}

#[test]
fn bypassing_admission_is_reported_not_silent() {
    let cfg = TrackerConfig {
        metadata_budget: 16,
        ..TrackerConfig::default()
    };
    let t = OffsetTracker::new(cfg).unwrap();
    t.assign_at(tp(0), 1, 0).unwrap();
    for o in 0..400 {
        // Deliberately ignores `admit`.
        t.hand_out(&tp(0), o, 0).unwrap();
    }
    assert!(!t.can_hand_out(&tp(0)));
    for o in (1..400).step_by(2) {
        t.ack(&tp(0), o, 1).unwrap();
    }
    let err = t
        .with_partition(&tp(0), |p| p.commit_candidate(0))
        .unwrap()
        .unwrap_err();
    assert!(matches!(
        err,
        TrackerError::Encode(waterline_core::EncodeError::OverBudget { budget: 16, .. })
    ));
    let plan = t.prepare_commit(0);
    assert_eq!(plan.over_budget, vec![tp(0)]);
    // The safe fallback: the bare commit point, no metadata.
    assert_eq!(
        plan.entries[0].offset_and_metadata,
        OffsetAndMetadata::new(0, 0)
    );
    assert_eq!(t.stats().over_budget, 1);
}
