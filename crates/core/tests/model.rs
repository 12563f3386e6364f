//! Model-based test of the tracker under any interleaving of hand-out, ack (any order, stale
//! generations included), commit (succeeding or failing), crash and restore.
//!
//! Invariants checked after every step:
//! * the commit point never passes an offset that exists in the log and was not acknowledged;
//! * every committed offset satisfies the same;
//! * after a restore, an offset acknowledged before the restored commit is never handed out
//!   again (`should_process` is false), and an offset never acknowledged always is;
//! * admission control refuses a record only while something is in flight (no deadlock), and
//!   a commit never exceeds the metadata budget.

use std::collections::BTreeSet;

use proptest::prelude::*;
use waterline_core::{
    AckOutcome, AckedSet, OffsetAndMetadata, OffsetTracker, TopicPartition, TrackerConfig,
};

#[derive(Debug, Clone)]
enum Op {
    /// Deliver up to this many next records (subject to admission).
    Deliver(u8),
    /// Ack the in-flight record at this index (mod len).
    Ack(usize),
    /// A late ack from a previous generation.
    ZombieAck(usize),
    /// Commit; the store succeeds or fails.
    Commit(bool),
    /// Crash: lose all in-memory state, restore from the last successful commit.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..20).prop_map(Op::Deliver),
        6 => any::<usize>().prop_map(Op::Ack),
        1 => any::<usize>().prop_map(Op::ZombieAck),
        2 => any::<bool>().prop_map(Op::Commit),
        1 => Just(Op::Crash),
    ]
}

struct World {
    log: Vec<i64>,
    tp: TopicPartition,
    cfg: TrackerConfig,
    tracker: OffsetTracker,
    generation: i32,
    /// Next log index to read.
    pos: usize,
    in_flight: Vec<(i64, i32)>,
    zombies: Vec<(i64, i32)>,
    /// Offsets acknowledged under a live generation.
    done: BTreeSet<i64>,
    committed: Option<OffsetAndMetadata>,
    /// Offsets acknowledged that the current tracker knows of (acked since the last restore,
    /// or restored from the commit).
    known: BTreeSet<i64>,
    /// `known` when the last successful commit was prepared.
    done_at_commit: BTreeSet<i64>,
    stale_expected: u64,
}

impl World {
    fn new(log: Vec<i64>, budget: usize) -> Self {
        let cfg = TrackerConfig {
            metadata_budget: budget,
            ..TrackerConfig::default()
        };
        let tp = TopicPartition::new("t", 0);
        let tracker = OffsetTracker::new(cfg).unwrap();
        tracker.assign_at(tp.clone(), 1, 0).unwrap();
        Self {
            log,
            tp,
            cfg,
            tracker,
            generation: 1,
            pos: 0,
            in_flight: Vec::new(),
            zombies: Vec::new(),
            done: BTreeSet::new(),
            known: BTreeSet::new(),
            committed: None,
            done_at_commit: BTreeSet::new(),
            stale_expected: 0,
        }
    }

    fn exists(&self, o: i64) -> bool {
        self.log.binary_search(&o).is_ok()
    }

    /// No log offset below `c` is unacknowledged.
    fn assert_safe(&self, c: i64, what: &str) {
        for &o in self.log.iter().take_while(|&&o| o < c) {
            assert!(
                self.done.contains(&o),
                "{what} {c} passed unacked offset {o}"
            );
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Deliver(n) => {
                for _ in 0..n {
                    let Some(&o) = self.log.get(self.pos) else {
                        break;
                    };
                    if !self.tracker.should_process(&self.tp, o) {
                        self.pos += 1;
                        continue;
                    }
                    if !self.tracker.admit(&self.tp, o) {
                        // Liveness: admission only waits for something in flight.
                        assert!(
                            !self.in_flight.is_empty(),
                            "admission refused {o} with nothing in flight"
                        );
                        break;
                    }
                    let g = self.tracker.hand_out(&self.tp, o, 0).unwrap();
                    assert_eq!(g, self.generation);
                    self.in_flight.push((o, g));
                    self.pos += 1;
                }
            }
            Op::Ack(i) => {
                if self.in_flight.is_empty() {
                    return;
                }
                let (o, g) = self.in_flight.swap_remove(i % self.in_flight.len());
                let out = self.tracker.ack(&self.tp, o, g).unwrap();
                assert!(matches!(
                    out,
                    AckOutcome::Advanced { .. } | AckOutcome::Pending
                ));
                self.done.insert(o);
                self.known.insert(o);
            }
            Op::ZombieAck(i) => {
                if self.zombies.is_empty() {
                    return;
                }
                let (o, g) = self.zombies.swap_remove(i % self.zombies.len());
                let before = self.tracker.commit_point(&self.tp);
                assert_eq!(self.tracker.ack(&self.tp, o, g).unwrap(), AckOutcome::Stale);
                assert_eq!(self.tracker.commit_point(&self.tp), before);
                self.stale_expected += 1;
            }
            Op::Commit(ok) => {
                let plan = self.tracker.prepare_commit(1);
                assert!(
                    plan.over_budget.is_empty(),
                    "admission let the budget overflow"
                );
                self.tracker.commit_finished(&plan, ok, 2, 1);
                if let (true, Some(e)) = (ok, plan.entries.first()) {
                    let oam = e.offset_and_metadata.clone();
                    let c = oam.offset().unwrap();
                    assert!(oam.metadata.len() <= self.cfg.metadata_budget);
                    self.assert_safe(c, "commit");
                    let set = AckedSet::decode_string(c, &oam.metadata).unwrap();
                    for &(s, e) in set.ranges() {
                        for x in s..e {
                            assert!(
                                self.done.contains(&x) || !self.exists(x),
                                "metadata claims unacked {x} done"
                            );
                        }
                    }
                    self.committed = Some(oam);
                    self.done_at_commit = self.known.clone();
                }
            }
            Op::Crash => {
                self.generation += 1;
                self.tracker = OffsetTracker::new(self.cfg).unwrap();
                match &self.committed {
                    Some(c) => self
                        .tracker
                        .assign_committed(self.tp.clone(), self.generation, c)
                        .unwrap(),
                    None => self
                        .tracker
                        .assign_at(self.tp.clone(), self.generation, 0)
                        .unwrap(),
                }
                self.zombies.append(&mut self.in_flight);
                let c = self.tracker.commit_point(&self.tp).unwrap();
                self.pos = self.log.partition_point(|&o| o < c);
                for &o in &self.log[self.pos..] {
                    let should = self.tracker.should_process(&self.tp, o);
                    if self.done_at_commit.contains(&o) {
                        assert!(!should, "acked {o} would be re-delivered");
                    }
                    if !self.done.contains(&o) {
                        assert!(should, "unacked {o} would be skipped");
                    }
                }
                self.known = self.done_at_commit.clone();
                // Zombie acks before the crash were counted by the old tracker.
                self.stale_expected = 0;
            }
        }
        let c = self.tracker.commit_point(&self.tp).unwrap();
        self.assert_safe(c, "commit point");
        for &(o, _) in &self.in_flight {
            assert!(o >= c, "in-flight {o} below commit point {c}");
        }
        assert_eq!(self.tracker.stats().stale_acks, self.stale_expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn tracker_matches_model(
        gaps in proptest::collection::vec(proptest::bool::weighted(0.1), 400),
        budget in prop_oneof![Just(24usize), Just(64), Just(4096)],
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let log: Vec<i64> = (0..400i64).filter(|&o| !gaps[o as usize]).collect();
        let mut w = World::new(log, budget);
        for op in &ops {
            w.step(op);
        }
    }
}
