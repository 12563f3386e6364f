//! When to commit.
//!
//! A policy is fed [`PolicyEvent`]s (acks, clock ticks, commit point advances, checkpoint
//! barriers, manual requests) and answers with a [`CommitDecision`]. Time is an input: events
//! carry `now_ms`, nothing reads a clock.
//!
//! Each policy latches readiness ([`CommitPolicy::wants`]) until it fires, so combinations work
//! naturally: [`AnyOf`] fires when one member is ready ("100 acks or 5 s, whichever first"),
//! [`AllOf`] when all are ("at least 100 acks and at least 5 s since the last commit"). Firing
//! resets every member.
//!
//! Checkpoints: on [`PolicyEvent::BarrierDeclared`] the caller hands over the tracker's
//! [`OffsetTracker::snapshot`](crate::OffsetTracker::snapshot) taken at the barrier; once the
//! barrier completes the decision is to commit *that* snapshot, not later acks.

use std::collections::BTreeMap;
use std::fmt::Debug;

use crate::error::PolicyError;
use crate::offset::TopicPartition;
use crate::tracker::CommitPlan;

/// A checkpoint barrier id; ids increase with time.
pub type BarrierId = u64;

/// Something that happened that a policy may react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEvent {
    /// `count` acks were applied.
    Acked {
        /// Number of acks.
        count: u64,
        /// Current time.
        now_ms: i64,
    },
    /// The clock moved.
    Tick {
        /// Current time.
        now_ms: i64,
    },
    /// A partition's commit point moved to `to`.
    WatermarkAdvanced {
        /// The partition.
        tp: TopicPartition,
        /// New commit point.
        to: i64,
        /// Current time.
        now_ms: i64,
    },
    /// A barrier was declared; `snapshot` is what was acknowledged before it.
    BarrierDeclared {
        /// Barrier id.
        id: BarrierId,
        /// The tracker's snapshot at the barrier.
        snapshot: CommitPlan,
        /// Current time.
        now_ms: i64,
    },
    /// Every operator finished the barrier: its snapshot may be committed.
    BarrierCompleted {
        /// Barrier id.
        id: BarrierId,
        /// Current time.
        now_ms: i64,
    },
    /// The application asked for a commit.
    ManualRequest {
        /// Current time.
        now_ms: i64,
    },
}

impl PolicyEvent {
    /// The time the event carries.
    pub fn now_ms(&self) -> i64 {
        match self {
            PolicyEvent::Acked { now_ms, .. }
            | PolicyEvent::Tick { now_ms }
            | PolicyEvent::WatermarkAdvanced { now_ms, .. }
            | PolicyEvent::BarrierDeclared { now_ms, .. }
            | PolicyEvent::BarrierCompleted { now_ms, .. }
            | PolicyEvent::ManualRequest { now_ms } => *now_ms,
        }
    }
}

/// What a ready policy wants committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The tracker's current positions.
    Current,
    /// The snapshot taken at this barrier.
    Barrier(BarrierId),
}

/// The answer to an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitDecision {
    /// Do not commit now.
    Nothing,
    /// Commit the current positions ([`OffsetTracker::prepare_commit`](crate::OffsetTracker::prepare_commit)).
    CommitCurrent,
    /// Commit exactly this barrier snapshot.
    CommitSnapshot {
        /// The barrier.
        barrier: BarrierId,
        /// Positions acknowledged before the barrier.
        plan: CommitPlan,
    },
}

/// A commit policy: a state machine over [`PolicyEvent`]s.
pub trait CommitPolicy: Send + Debug {
    /// Updates state from an event.
    fn observe(&mut self, event: &PolicyEvent);
    /// Whether (and what) the policy wants committed now.
    fn wants(&self) -> Option<Want>;
    /// The policy fired with `want`: reset the latched state.
    fn fired(&mut self, want: Want, now_ms: i64);
    /// Removes and returns barrier `id`'s snapshot, if this policy holds it.
    fn take_snapshot(&mut self, _id: BarrierId) -> Option<CommitPlan> {
        None
    }

    /// Observes `event` and decides; firing resets the policy.
    fn on_event(&mut self, event: &PolicyEvent) -> CommitDecision {
        self.observe(event);
        let now = event.now_ms();
        match self.wants() {
            None => CommitDecision::Nothing,
            Some(Want::Current) => {
                self.fired(Want::Current, now);
                CommitDecision::CommitCurrent
            }
            Some(Want::Barrier(id)) => {
                let plan = self.take_snapshot(id);
                self.fired(Want::Barrier(id), now);
                match plan {
                    Some(plan) => CommitDecision::CommitSnapshot { barrier: id, plan },
                    None => CommitDecision::Nothing,
                }
            }
        }
    }
}

/// Commit after every N acks (N = 1: every record).
#[derive(Debug, Clone)]
pub struct EveryNAcks {
    n: u64,
    seen: u64,
}

impl EveryNAcks {
    /// Fires once `n >= 1` acks arrived since the last commit.
    pub fn new(n: u64) -> Result<Self, PolicyError> {
        if n == 0 {
            return Err(PolicyError::ZeroCount);
        }
        Ok(Self { n, seen: 0 })
    }

    /// Commit after every record.
    pub fn every_record() -> Self {
        Self { n: 1, seen: 0 }
    }
}

impl CommitPolicy for EveryNAcks {
    fn observe(&mut self, event: &PolicyEvent) {
        if let PolicyEvent::Acked { count, .. } = event {
            self.seen = self.seen.saturating_add(*count);
        }
    }
    fn wants(&self) -> Option<Want> {
        (self.seen >= self.n).then_some(Want::Current)
    }
    fn fired(&mut self, _want: Want, _now_ms: i64) {
        self.seen = 0;
    }
}

/// Commit when `interval_ms` has passed since the last commit and something was acked.
#[derive(Debug, Clone)]
pub struct Interval {
    interval_ms: i64,
    since_ms: Option<i64>,
    now_ms: i64,
    acked: bool,
}

impl Interval {
    /// Interval policy; the interval starts at the first event seen.
    pub fn new(interval_ms: i64) -> Result<Self, PolicyError> {
        if interval_ms <= 0 {
            return Err(PolicyError::ZeroInterval);
        }
        Ok(Self {
            interval_ms,
            since_ms: None,
            now_ms: i64::MIN,
            acked: false,
        })
    }
}

impl CommitPolicy for Interval {
    fn observe(&mut self, event: &PolicyEvent) {
        let now = event.now_ms();
        self.since_ms.get_or_insert(now);
        self.now_ms = self.now_ms.max(now);
        if matches!(event, PolicyEvent::Acked { count, .. } if *count > 0) {
            self.acked = true;
        }
    }
    fn wants(&self) -> Option<Want> {
        let since = self.since_ms?;
        (self.acked && self.now_ms.saturating_sub(since) >= self.interval_ms)
            .then_some(Want::Current)
    }
    fn fired(&mut self, _want: Want, now_ms: i64) {
        self.since_ms = Some(now_ms);
        self.acked = false;
    }
}

/// Commit whenever a partition's commit point advances.
#[derive(Debug, Clone, Default)]
pub struct OnWatermarkAdvance {
    advanced: bool,
}

impl CommitPolicy for OnWatermarkAdvance {
    fn observe(&mut self, event: &PolicyEvent) {
        if matches!(event, PolicyEvent::WatermarkAdvanced { .. }) {
            self.advanced = true;
        }
    }
    fn wants(&self) -> Option<Want> {
        self.advanced.then_some(Want::Current)
    }
    fn fired(&mut self, _want: Want, _now_ms: i64) {
        self.advanced = false;
    }
}

/// Commit only when asked.
#[derive(Debug, Clone, Default)]
pub struct Manual {
    requested: bool,
}

impl CommitPolicy for Manual {
    fn observe(&mut self, event: &PolicyEvent) {
        if matches!(event, PolicyEvent::ManualRequest { .. }) {
            self.requested = true;
        }
    }
    fn wants(&self) -> Option<Want> {
        self.requested.then_some(Want::Current)
    }
    fn fired(&mut self, _want: Want, _now_ms: i64) {
        self.requested = false;
    }
}

/// Commit barrier snapshots once their barrier completes.
///
/// Completing a barrier supersedes older ones (their snapshots are dropped). Completions of
/// unknown barriers are ignored.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    declared: BTreeMap<BarrierId, CommitPlan>,
    completed: Option<BarrierId>,
}

impl Checkpoint {
    /// Barriers declared and not yet committed or superseded.
    pub fn pending(&self) -> Vec<BarrierId> {
        self.declared.keys().copied().collect()
    }
}

impl CommitPolicy for Checkpoint {
    fn observe(&mut self, event: &PolicyEvent) {
        match event {
            PolicyEvent::BarrierDeclared { id, snapshot, .. } => {
                self.declared.insert(*id, snapshot.clone());
            }
            PolicyEvent::BarrierCompleted { id, .. } if self.declared.contains_key(id) => {
                self.completed = Some(self.completed.map_or(*id, |c| c.max(*id)));
            }
            _ => {}
        }
    }
    fn wants(&self) -> Option<Want> {
        self.completed.map(Want::Barrier)
    }
    fn fired(&mut self, want: Want, _now_ms: i64) {
        match want {
            Want::Barrier(id) => {
                self.declared.retain(|&k, _| k > id);
                if self.completed.is_some_and(|c| c <= id) {
                    self.completed = None;
                }
            }
            Want::Current => {
                // A commit of current positions covers every completed barrier.
                if let Some(c) = self.completed.take() {
                    self.declared.retain(|&k, _| k > c);
                }
            }
        }
    }
    fn take_snapshot(&mut self, id: BarrierId) -> Option<CommitPlan> {
        self.declared.get(&id).cloned()
    }
}

/// Fires when any member is ready; current positions win over a barrier snapshot (they include
/// it).
#[derive(Debug)]
pub struct AnyOf {
    members: Vec<Box<dyn CommitPolicy>>,
}

impl AnyOf {
    /// Needs at least one member.
    pub fn new(members: Vec<Box<dyn CommitPolicy>>) -> Result<Self, PolicyError> {
        if members.is_empty() {
            return Err(PolicyError::EmptyCombination);
        }
        Ok(Self { members })
    }
}

impl CommitPolicy for AnyOf {
    fn observe(&mut self, event: &PolicyEvent) {
        self.members.iter_mut().for_each(|m| m.observe(event));
    }
    fn wants(&self) -> Option<Want> {
        let wants: Vec<Want> = self.members.iter().filter_map(|m| m.wants()).collect();
        if wants.contains(&Want::Current) {
            Some(Want::Current)
        } else {
            wants.into_iter().next()
        }
    }
    fn fired(&mut self, want: Want, now_ms: i64) {
        self.members.iter_mut().for_each(|m| m.fired(want, now_ms));
    }
    fn take_snapshot(&mut self, id: BarrierId) -> Option<CommitPlan> {
        self.members.iter_mut().find_map(|m| m.take_snapshot(id))
    }
}

/// Fires when every member is ready; a barrier snapshot wins over current positions (it is the
/// stricter choice).
#[derive(Debug)]
pub struct AllOf {
    members: Vec<Box<dyn CommitPolicy>>,
}

impl AllOf {
    /// Needs at least one member.
    pub fn new(members: Vec<Box<dyn CommitPolicy>>) -> Result<Self, PolicyError> {
        if members.is_empty() {
            return Err(PolicyError::EmptyCombination);
        }
        Ok(Self { members })
    }
}

impl CommitPolicy for AllOf {
    fn observe(&mut self, event: &PolicyEvent) {
        self.members.iter_mut().for_each(|m| m.observe(event));
    }
    fn wants(&self) -> Option<Want> {
        let mut out = Want::Current;
        for m in &self.members {
            match m.wants()? {
                Want::Barrier(id) => out = Want::Barrier(id),
                Want::Current => {}
            }
        }
        Some(out)
    }
    fn fired(&mut self, want: Want, now_ms: i64) {
        self.members.iter_mut().for_each(|m| m.fired(want, now_ms));
    }
    fn take_snapshot(&mut self, id: BarrierId) -> Option<CommitPlan> {
        self.members.iter_mut().find_map(|m| m.take_snapshot(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OffsetAndMetadata;
    use crate::tracker::CommitEntry;

    fn acked(now_ms: i64) -> PolicyEvent {
        PolicyEvent::Acked { count: 1, now_ms }
    }
    fn tick(now_ms: i64) -> PolicyEvent {
        PolicyEvent::Tick { now_ms }
    }
    fn fires(p: &mut dyn CommitPolicy, e: PolicyEvent) -> bool {
        p.on_event(&e) != CommitDecision::Nothing
    }
    fn plan(offset: i64) -> CommitPlan {
        CommitPlan {
            entries: vec![CommitEntry {
                tp: TopicPartition::new("t", 0),
                generation: 1,
                offset_and_metadata: OffsetAndMetadata::new(offset, 0),
                previous: None,
            }],
            over_budget: vec![],
        }
    }

    #[test]
    fn every_record_and_every_n() {
        let mut p = EveryNAcks::every_record();
        assert!(fires(&mut p, acked(0)));
        assert!(!fires(&mut p, tick(1)));
        let mut p = EveryNAcks::new(3).unwrap();
        assert!(!fires(&mut p, acked(0)));
        assert!(!fires(&mut p, acked(0)));
        assert!(fires(&mut p, acked(0)));
        assert!(!fires(&mut p, acked(0)));
        assert!(fires(
            &mut p,
            PolicyEvent::Acked {
                count: 5,
                now_ms: 0
            }
        ));
        assert_eq!(EveryNAcks::new(0).unwrap_err(), PolicyError::ZeroCount);
    }

    #[test]
    fn interval_needs_time_and_acks() {
        let mut p = Interval::new(1000).unwrap();
        assert!(!fires(&mut p, tick(0)));
        assert!(!fires(&mut p, tick(5000))); // nothing acked
        assert!(fires(&mut p, acked(5000)));
        assert!(!fires(&mut p, acked(5500)));
        assert!(fires(&mut p, tick(6000)));
        assert_eq!(Interval::new(0).unwrap_err(), PolicyError::ZeroInterval);
    }

    #[test]
    fn watermark_and_manual() {
        let mut w = OnWatermarkAdvance::default();
        assert!(!fires(&mut w, acked(0)));
        let adv = PolicyEvent::WatermarkAdvanced {
            tp: TopicPartition::new("t", 0),
            to: 5,
            now_ms: 0,
        };
        assert!(fires(&mut w, adv.clone()));
        assert!(!fires(&mut w, tick(1)));
        let mut m = Manual::default();
        assert!(!fires(&mut m, adv));
        assert!(fires(&mut m, PolicyEvent::ManualRequest { now_ms: 0 }));
        assert!(!fires(&mut m, tick(1)));
    }

    #[test]
    fn checkpoint_commits_the_snapshot() {
        let mut p = Checkpoint::default();
        let declared = |id, off| PolicyEvent::BarrierDeclared {
            id,
            snapshot: plan(off),
            now_ms: 0,
        };
        assert!(!fires(&mut p, declared(1, 10)));
        assert!(!fires(&mut p, declared(2, 20)));
        assert!(!fires(&mut p, acked(0)));
        // Unknown barrier: ignored.
        assert!(!fires(
            &mut p,
            PolicyEvent::BarrierCompleted { id: 9, now_ms: 0 }
        ));
        let d = p.on_event(&PolicyEvent::BarrierCompleted { id: 1, now_ms: 0 });
        assert_eq!(
            d,
            CommitDecision::CommitSnapshot {
                barrier: 1,
                plan: plan(10)
            }
        );
        assert_eq!(p.pending(), vec![2]);
        let d = p.on_event(&PolicyEvent::BarrierCompleted { id: 2, now_ms: 0 });
        assert!(matches!(
            d,
            CommitDecision::CommitSnapshot { barrier: 2, .. }
        ));
        assert!(p.pending().is_empty());
    }

    #[test]
    fn later_barrier_supersedes_earlier() {
        let mut p = Checkpoint::default();
        for id in [1, 2] {
            p.observe(&PolicyEvent::BarrierDeclared {
                id,
                snapshot: plan(id as i64),
                now_ms: 0,
            });
        }
        let d = p.on_event(&PolicyEvent::BarrierCompleted { id: 2, now_ms: 0 });
        assert!(matches!(
            d,
            CommitDecision::CommitSnapshot { barrier: 2, .. }
        ));
        assert!(!fires(
            &mut p,
            PolicyEvent::BarrierCompleted { id: 1, now_ms: 0 }
        ));
    }

    #[test]
    fn n_or_five_seconds_whichever_first() {
        let mut p = AnyOf::new(vec![
            Box::new(EveryNAcks::new(3).unwrap()),
            Box::new(Interval::new(5000).unwrap()),
        ])
        .unwrap();
        assert!(!fires(&mut p, acked(0)));
        assert!(!fires(&mut p, acked(1)));
        assert!(fires(&mut p, acked(2))); // count first
        assert!(!fires(&mut p, acked(3000)));
        assert!(fires(&mut p, tick(5002))); // time first; resets the count too
        assert!(!fires(&mut p, acked(5003)));
        assert!(!fires(&mut p, acked(5004)));
        assert!(fires(&mut p, acked(5005)));
    }

    #[test]
    fn all_of_needs_every_member() {
        let mut p = AllOf::new(vec![
            Box::new(EveryNAcks::new(2).unwrap()),
            Box::new(Interval::new(100).unwrap()),
        ])
        .unwrap();
        assert!(!fires(&mut p, acked(0)));
        assert!(!fires(&mut p, acked(10))); // 2 acks, not yet 100 ms
        assert!(fires(&mut p, tick(100)));
        assert!(!fires(&mut p, tick(300))); // time, but no acks
        assert!(matches!(
            AllOf::new(vec![]),
            Err(PolicyError::EmptyCombination)
        ));
        assert!(matches!(
            AnyOf::new(vec![]),
            Err(PolicyError::EmptyCombination)
        ));
    }

    #[test]
    fn combinations_with_checkpoints() {
        let declared = PolicyEvent::BarrierDeclared {
            id: 7,
            snapshot: plan(70),
            now_ms: 0,
        };
        let done = PolicyEvent::BarrierCompleted { id: 7, now_ms: 0 };
        // Any: a checkpoint alone fires with its snapshot.
        let mut any = AnyOf::new(vec![
            Box::new(Checkpoint::default()),
            Box::new(EveryNAcks::new(10).unwrap()),
        ])
        .unwrap();
        any.observe(&declared);
        assert!(matches!(
            any.on_event(&done),
            CommitDecision::CommitSnapshot { barrier: 7, .. }
        ));
        // All: barrier plus manual request; the snapshot wins.
        let mut all = AllOf::new(vec![
            Box::new(Checkpoint::default()),
            Box::new(Manual::default()),
        ])
        .unwrap();
        all.observe(&declared);
        assert!(!fires(&mut all, done.clone()));
        assert_eq!(
            all.on_event(&PolicyEvent::ManualRequest { now_ms: 0 }),
            CommitDecision::CommitSnapshot {
                barrier: 7,
                plan: plan(70)
            }
        );
        // Any: current positions win over a completed barrier and supersede it.
        let mut any = AnyOf::new(vec![
            Box::new(Checkpoint::default()),
            Box::new(Manual::default()),
        ])
        .unwrap();
        any.observe(&declared);
        any.observe(&done);
        assert_eq!(
            any.on_event(&PolicyEvent::ManualRequest { now_ms: 0 }),
            CommitDecision::CommitCurrent
        );
        assert!(!fires(&mut any, tick(1)));
    }
}
