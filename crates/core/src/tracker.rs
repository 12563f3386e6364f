//! Thread-safe offset tracking across the partitions assigned to a consumer.
//!
//! Locking: a read-write-locked map of per-partition mutexes. Hand-outs and acks take the map's
//! read lock (shared) and one partition's mutex, so acks on different partitions do not wait on
//! each other; the map is write-locked only by `assign` and `revoke`.
//!
//! Every assignment carries a generation. Hand-outs return it and acks must present it; an ack
//! for a partition that was revoked, or re-assigned since, is ignored and counted as stale, never
//! committed — a late ack from a previous owner must not commit for the new one.

use std::collections::HashMap;
use std::ops::DerefMut;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::error::{EncodeError, TrackerError};
use crate::lag::{LagReport, PartitionLag};
use crate::offset::{OffsetAndMetadata, TopicPartition};
use crate::partition::{AckOutcome, PartitionTracker, TrackerConfig};
use crate::stats::{CommitStats, StatsRecorder};

/// An assignment generation (Kafka's group generation id, or any counter the caller keeps).
/// It must differ between consecutive assignments of the same partition, or late acks from the
/// previous assignment cannot be told apart (standalone consumers, whose Kafka generation is
/// always -1, should keep their own counter).
pub type Generation = i32;

#[derive(Debug)]
struct Slot {
    generation: Generation,
    tracker: PartitionTracker,
}

/// One partition's entry in a commit plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitEntry {
    /// The partition.
    pub tp: TopicPartition,
    /// Generation the position was taken under; results for other generations are ignored.
    pub generation: Generation,
    /// What to commit (offset plus `wl1:` metadata).
    pub offset_and_metadata: OffsetAndMetadata,
    /// The committed offset before this commit, for the offsets-committed statistic.
    pub previous: Option<i64>,
}

/// What to write to the offset store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitPlan {
    /// Entries to commit.
    pub entries: Vec<CommitEntry>,
    /// Partitions whose acked set exceeded the budget: committed at the bare commit point
    /// (safe; those acked offsets will be processed again). Only if admission was bypassed.
    pub over_budget: Vec<TopicPartition>,
}

impl CommitPlan {
    /// Whether there is nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One partition as [`CommitPlanner`] sees it while planning: its current generation and its
/// tracker, locked by the caller for as long as the value lives.
#[derive(Debug)]
pub struct PlanInput<'a, T> {
    /// The partition.
    pub tp: &'a TopicPartition,
    /// Generation the partition is assigned under.
    pub generation: Generation,
    /// The partition's tracker (typically a lock guard).
    pub tracker: T,
}

/// The commit-plan logic and its statistics, over partitions the caller owns: used by
/// [`OffsetTracker`], and by callers that keep their own per-partition state (e.g. a consumer
/// that holds each partition's tracker beside other per-partition fields) but must plan,
/// account for and finish commits exactly as `OffsetTracker` does.
#[derive(Debug, Default)]
pub struct CommitPlanner {
    stats: Mutex<StatsRecorder>,
}

impl CommitPlanner {
    /// A planner with empty statistics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Plans over `partitions` (in the order given; pass them sorted for a stable plan): every
    /// one (`all`), or only those whose position changed since their last commit, which are
    /// then marked clean until new acks arrive (a failed commit marks them dirty again).
    fn plan<'a, T: DerefMut<Target = PartitionTracker>>(
        &self,
        now_ms: i64,
        all: bool,
        partitions: impl IntoIterator<Item = PlanInput<'a, T>>,
    ) -> CommitPlan {
        let mut plan = CommitPlan::default();
        for PlanInput {
            tp,
            generation,
            mut tracker,
        } in partitions
        {
            let t = &mut *tracker;
            if !all && !t.needs_commit() {
                continue;
            }
            let previous = t.committed();
            let oam = match t.commit_candidate(now_ms) {
                Ok(oam) => oam,
                Err(TrackerError::Encode(EncodeError::OverBudget { .. })) => {
                    // Safe: the acked offsets beyond the commit point are processed again.
                    plan.over_budget.push(tp.clone());
                    OffsetAndMetadata::new(t.commit_point(), now_ms)
                }
                // commit_candidate fails only on the budget.
                Err(_) => continue,
            };
            if !all {
                t.mark_taken();
            }
            plan.entries.push(CommitEntry {
                tp: tp.clone(),
                generation,
                offset_and_metadata: oam,
                previous,
            });
        }
        if !plan.over_budget.is_empty() {
            let mut stats = self.stats.lock();
            for _ in &plan.over_budget {
                stats.over_budget();
            }
        }
        plan
    }

    /// What to commit now: the `partitions` whose position changed since their last commit
    /// (marked clean until new acks arrive). Counted as a commit attempt if not empty.
    pub fn prepare_commit<'a, T: DerefMut<Target = PartitionTracker>>(
        &self,
        now_ms: i64,
        partitions: impl IntoIterator<Item = PlanInput<'a, T>>,
    ) -> CommitPlan {
        let plan = self.plan(now_ms, false, partitions);
        self.commit_started(&plan);
        plan
    }

    /// Every one of `partitions`' current position, leaving their dirty flags alone. Not
    /// counted as an attempt; call [`commit_started`](Self::commit_started) when committed.
    pub fn snapshot<'a, T: DerefMut<Target = PartitionTracker>>(
        &self,
        now_ms: i64,
        partitions: impl IntoIterator<Item = PlanInput<'a, T>>,
    ) -> CommitPlan {
        self.plan(now_ms, true, partitions)
    }

    /// Counts `plan` as a commit attempt.
    pub fn commit_started(&self, plan: &CommitPlan) {
        if !plan.is_empty() {
            self.stats.lock().attempted();
        }
    }

    /// Records the outcome of committing `plan`, which took `duration_ms`, finishing at
    /// `now_ms`. For each entry, `current` must call its second argument with the entry's
    /// tracker, locked, if the partition is still assigned under the entry's generation, and
    /// do nothing otherwise (results for other generations must not touch the new owner).
    pub fn commit_finished(
        &self,
        plan: &CommitPlan,
        ok: bool,
        now_ms: i64,
        duration_ms: u64,
        mut current: impl FnMut(&CommitEntry, &mut dyn FnMut(&mut PartitionTracker)),
    ) {
        if plan.is_empty() {
            return;
        }
        let mut advanced = 0u64;
        for e in &plan.entries {
            let Some(offset) = e.offset_and_metadata.offset() else {
                continue;
            };
            current(e, &mut |t: &mut PartitionTracker| {
                if ok {
                    if let Some(b) = t.committed().or(e.previous) {
                        advanced += offset.saturating_sub(b).max(0) as u64;
                    }
                    t.commit_succeeded(offset);
                } else {
                    t.commit_failed();
                }
            });
        }
        self.stats
            .lock()
            .finished(ok, advanced, now_ms, duration_ms);
    }

    /// Counts `n` acks ignored as stale.
    pub fn stale_acks(&self, n: u64) {
        self.stats.lock().stale_acks(n);
    }

    /// Commit statistics so far.
    pub fn stats(&self) -> CommitStats {
        self.stats.lock().snapshot()
    }
}

/// Offset tracking for all assigned partitions; share it behind an `Arc`.
#[derive(Debug)]
pub struct OffsetTracker {
    config: TrackerConfig,
    partitions: RwLock<HashMap<TopicPartition, Arc<Mutex<Slot>>>>,
    planner: CommitPlanner,
}

impl OffsetTracker {
    /// An empty tracker.
    pub fn new(config: TrackerConfig) -> Result<Self, TrackerError> {
        config.validate()?;
        Ok(Self {
            config,
            partitions: RwLock::new(HashMap::new()),
            planner: CommitPlanner::default(),
        })
    }

    fn slot(&self, tp: &TopicPartition) -> Option<Arc<Mutex<Slot>>> {
        self.partitions.read().get(tp).cloned()
    }

    /// Runs `f` on `tp`'s slot under the map's shared read lock (no reference-count traffic
    /// on the hot path; only assign/revoke wait for it).
    fn with_slot<R>(&self, tp: &TopicPartition, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        let map = self.partitions.read();
        let mut slot = map.get(tp)?.lock();
        Some(f(&mut slot))
    }

    fn insert(&self, tp: TopicPartition, generation: Generation, tracker: PartitionTracker) {
        self.partitions.write().insert(
            tp,
            Arc::new(Mutex::new(Slot {
                generation,
                tracker,
            })),
        );
    }

    /// Assigns `tp` under `generation`, restoring from its committed offset and metadata.
    /// Replaces any previous assignment (whose acks then become stale).
    pub fn assign_committed(
        &self,
        tp: TopicPartition,
        generation: Generation,
        committed: &OffsetAndMetadata,
    ) -> Result<(), TrackerError> {
        let tracker = PartitionTracker::restore(committed, self.config)?;
        self.insert(tp, generation, tracker);
        Ok(())
    }

    /// Assigns `tp` under `generation`, starting at `start` with nothing committed (`start` is
    /// typically resolved by a [`crate::reset::ResetPolicy`]).
    pub fn assign_at(
        &self,
        tp: TopicPartition,
        generation: Generation,
        start: i64,
    ) -> Result<(), TrackerError> {
        let tracker = PartitionTracker::new(start, self.config)?;
        self.insert(tp, generation, tracker);
        Ok(())
    }

    /// Revokes `tp`, returning its final state (e.g. to commit it before handing it over).
    pub fn revoke(&self, tp: &TopicPartition) -> Option<PartitionTracker> {
        let slot = self.partitions.write().remove(tp)?;
        let slot = slot.lock();
        Some(slot.tracker.clone())
    }

    /// Assigned partitions, sorted.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = self.partitions.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Generation `tp` is assigned under.
    pub fn generation(&self, tp: &TopicPartition) -> Option<Generation> {
        self.slot(tp).map(|s| s.lock().generation)
    }

    /// Runs `f` on `tp`'s single-threaded tracker.
    pub fn with_partition<R>(
        &self,
        tp: &TopicPartition,
        f: impl FnOnce(&mut PartitionTracker) -> R,
    ) -> Option<R> {
        self.with_slot(tp, |slot| f(&mut slot.tracker))
    }

    /// Records a hand-out at `now_ms`; returns the generation the ack must carry.
    pub fn hand_out(
        &self,
        tp: &TopicPartition,
        offset: i64,
        now_ms: i64,
    ) -> Result<Generation, TrackerError> {
        self.with_slot(tp, |slot| {
            slot.tracker.hand_out(offset, now_ms)?;
            Ok(slot.generation)
        })
        .unwrap_or_else(|| Err(TrackerError::NotAssigned(tp.to_string())))
    }

    /// Acknowledges `offset` handed out under `generation`. Acks for revoked partitions or
    /// other generations return [`AckOutcome::Stale`] and are counted, never applied.
    pub fn ack(
        &self,
        tp: &TopicPartition,
        offset: i64,
        generation: Generation,
    ) -> Result<AckOutcome, TrackerError> {
        let out = self.with_slot(tp, |slot| {
            if slot.generation == generation {
                slot.tracker.ack(offset)
            } else {
                Ok(AckOutcome::Stale)
            }
        });
        match out {
            Some(Ok(AckOutcome::Stale)) | None => {
                // Counted outside the partition lock.
                self.planner.stale_acks(1);
                Ok(AckOutcome::Stale)
            }
            Some(other) => other,
        }
    }

    /// Whether `offset` still needs processing; false for done offsets and unassigned partitions.
    pub fn should_process(&self, tp: &TopicPartition, offset: i64) -> bool {
        self.with_partition(tp, |t| t.should_process(offset))
            .unwrap_or(false)
    }

    /// Admission control: may `offset` be handed out now? False for unassigned partitions.
    pub fn admit(&self, tp: &TopicPartition, offset: i64) -> bool {
        self.with_partition(tp, |t| t.admit(offset))
            .unwrap_or(false)
    }

    /// Admission control for the next offset in sequence.
    pub fn can_hand_out(&self, tp: &TopicPartition) -> bool {
        self.with_partition(tp, |t| t.can_hand_out())
            .unwrap_or(false)
    }

    /// Current commit point of `tp`.
    pub fn commit_point(&self, tp: &TopicPartition) -> Option<i64> {
        self.with_partition(tp, |t| t.commit_point())
    }

    fn slots(&self) -> Vec<(TopicPartition, Arc<Mutex<Slot>>)> {
        let mut v: Vec<_> = self
            .partitions
            .read()
            .iter()
            .map(|(tp, s)| (tp.clone(), Arc::clone(s)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Each assigned partition, locked in turn, in `tp` order.
    fn locked(
        slots: &[(TopicPartition, Arc<Mutex<Slot>>)],
    ) -> impl Iterator<Item = PlanInput<'_, impl DerefMut<Target = PartitionTracker> + '_>> {
        slots.iter().map(|(tp, slot)| {
            let slot = slot.lock();
            let generation = slot.generation;
            PlanInput {
                tp,
                generation,
                tracker: MutexGuard::map(slot, |s| &mut s.tracker),
            }
        })
    }

    /// What to commit now: every partition whose position changed since its last commit.
    pub fn prepare_commit(&self, now_ms: i64) -> CommitPlan {
        self.planner
            .prepare_commit(now_ms, Self::locked(&self.slots()))
    }

    /// Every assigned partition's current position: the snapshot a checkpoint barrier commits.
    /// Not counted as an attempt; call [`commit_started`](Self::commit_started) when it is
    /// actually committed.
    pub fn snapshot(&self, now_ms: i64) -> CommitPlan {
        self.planner.snapshot(now_ms, Self::locked(&self.slots()))
    }

    /// Counts `plan` as a commit attempt (done by [`prepare_commit`](Self::prepare_commit)).
    pub fn commit_started(&self, plan: &CommitPlan) {
        self.planner.commit_started(plan);
    }

    /// Records the outcome of committing `plan`, which took `duration_ms`, finishing at `now_ms`.
    pub fn commit_finished(&self, plan: &CommitPlan, ok: bool, now_ms: i64, duration_ms: u64) {
        self.planner
            .commit_finished(plan, ok, now_ms, duration_ms, |e, apply| {
                if let Some(slot) = self.slot(&e.tp) {
                    let mut slot = slot.lock();
                    if slot.generation == e.generation {
                        apply(&mut slot.tracker);
                    }
                }
            });
    }

    /// Lag per assigned partition given each partition's high watermark (partitions without one
    /// are left out), at `now_ms`.
    pub fn lag(
        &self,
        high_watermark: impl Fn(&TopicPartition) -> Option<i64>,
        now_ms: i64,
    ) -> LagReport {
        let mut parts = Vec::new();
        for (tp, slot) in self.slots() {
            let Some(hw) = high_watermark(&tp) else {
                continue;
            };
            let slot = slot.lock();
            let t = &slot.tracker;
            parts.push(PartitionLag::new(
                tp,
                hw,
                t.commit_point(),
                t.in_flight(),
                t.oldest_unacked_age_ms(now_ms),
            ));
        }
        LagReport::from_partitions(parts)
    }

    /// Commit statistics so far.
    pub fn stats(&self) -> CommitStats {
        self.planner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Caller-owned per-partition state, as a consumer keeps it.
    struct Part {
        tp: TopicPartition,
        generation: Generation,
        tracker: Mutex<PartitionTracker>,
    }

    fn part(partition: i32, generation: Generation) -> Part {
        Part {
            tp: TopicPartition::new("t", partition),
            generation,
            tracker: Mutex::new(PartitionTracker::new(0, TrackerConfig::default()).unwrap()),
        }
    }

    fn inputs(
        parts: &[Part],
    ) -> impl Iterator<Item = PlanInput<'_, MutexGuard<'_, PartitionTracker>>> {
        parts.iter().map(|p| PlanInput {
            tp: &p.tp,
            generation: p.generation,
            tracker: p.tracker.lock(),
        })
    }

    fn finish(planner: &CommitPlanner, parts: &[Part], plan: &CommitPlan, ok: bool) {
        planner.commit_finished(plan, ok, 50, 2, |e, apply| {
            if let Some(p) = parts
                .iter()
                .find(|p| p.tp == e.tp && p.generation == e.generation)
            {
                apply(&mut p.tracker.lock());
            }
        });
    }

    #[test]
    fn planner_over_caller_owned_partitions() {
        let planner = CommitPlanner::new();
        let parts = [part(0, 1), part(1, 1)];
        let first = planner.prepare_commit(5, inputs(&parts));
        assert_eq!(first.entries.len(), 2, "never committed: both planned");
        finish(&planner, &parts, &first, true);
        assert!(
            planner.prepare_commit(6, inputs(&parts)).is_empty(),
            "committed and no new acks"
        );
        {
            let mut t = parts[0].tracker.lock();
            for o in 0..3 {
                t.hand_out(o, 0).unwrap();
            }
            t.ack(0).unwrap();
            t.ack(2).unwrap();
        }
        let plan = planner.prepare_commit(10, inputs(&parts));
        assert_eq!(plan.entries.len(), 1, "only the changed partition");
        let e = &plan.entries[0];
        assert_eq!((e.tp.partition, e.generation), (0, 1));
        assert_eq!(e.offset_and_metadata.offset(), Some(1));
        assert!(e.offset_and_metadata.metadata.starts_with("wl1:"));
        finish(&planner, &parts, &plan, false);
        let retry = planner.prepare_commit(12, inputs(&parts));
        assert_eq!(retry.entries.len(), 1, "a failed commit is planned again");
        let r = &retry.entries[0].offset_and_metadata;
        assert_eq!(
            (r.offset(), &r.metadata),
            (Some(1), &e.offset_and_metadata.metadata)
        );
        finish(&planner, &parts, &retry, true);
        assert_eq!(parts[0].tracker.lock().committed(), Some(1));
        assert!(planner.prepare_commit(13, inputs(&parts)).is_empty());

        let snap = planner.snapshot(20, inputs(&parts));
        assert_eq!(snap.entries.len(), 2, "a snapshot covers every partition");
        let s = planner.stats();
        assert_eq!((s.attempted, s.succeeded, s.failed), (3, 2, 1));
        assert_eq!(s.offsets_committed, 1);
        assert_eq!(s.last_commit_ms, Some(50));
    }

    #[test]
    fn planner_results_for_other_generations_are_ignored() {
        let planner = CommitPlanner::new();
        let old = [part(0, 1)];
        {
            let mut t = old[0].tracker.lock();
            t.hand_out(0, 0).unwrap();
            t.ack(0).unwrap();
        }
        let plan = planner.prepare_commit(10, inputs(&old));
        assert_eq!(plan.entries.len(), 1);
        // Re-assigned under generation 2 before the commit finished.
        let new = [part(0, 2)];
        finish(&planner, &new, &plan, true);
        assert_eq!(
            new[0].tracker.lock().committed(),
            None,
            "new owner untouched"
        );
        let s = planner.stats();
        assert_eq!((s.succeeded, s.offsets_committed), (1, 0));
        planner.stale_acks(3);
        assert_eq!(planner.stats().stale_acks, 3);
    }
}
