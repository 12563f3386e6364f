//! State shared by the consumer handle, deliveries, the commit thread and the rebalance
//! callback.
//!
//! Split by concern: this module holds [`Shared`] itself (settings, counters, the partition
//! map, acknowledgement counts, commit planning); `partition` the per-partition state and its
//! tracker lock; `failure` nacks, retries and the dead-letter topic; `commit` writing offsets
//! (Kafka, external stores, Kafka transactions); `rebalance` assign, revoke and seek;
//! `context` the rdkafka client context (rebalance and error callbacks).
//!
//! Invariants:
//! - Each assigned partition has one [`PartState`] holding its core
//!   [`PartitionTracker`](waterline_core::PartitionTracker) (the bookkeeping of
//!   `waterline_core::OffsetTracker`, kept per partition so a delivery reaches its tracker
//!   without a map lookup). `parts` changes only in [`Shared::assign`] and [`Shared::revoke`],
//!   the latter under `commit_lock`; a revoked `PartState` is marked `released` under its
//!   tracker lock, after which acks through it are stale.
//! - Commit plans and commit statistics come from core's
//!   [`CommitPlanner`](waterline_core::CommitPlanner), the code `OffsetTracker` plans with.
//! - Every commit runs under `commit_lock` and re-checks each entry's generation against
//!   `parts`, so no commit is ever issued for a partition after its revocation began.
//! - With [`OffsetStorage::Transactional`], offsets are written only while holding the
//!   partition's transaction lock (application steps, revocation, shutdown).
//! - With [`OffsetStorage::KafkaTransactional`], offsets are written only by
//!   [`Shared::commit_transaction`], in a Kafka transaction carrying exactly the outputs of the
//!   acks they cover (taken under the tracker lock the position is read under).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{MappedMutexGuard, Mutex, MutexGuard, RwLock};
use rdkafka::producer::FutureProducer;
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc};
use waterline_core::{
    CommitPlan, CommitPlanner, CommitPolicy, CommitStats, LagReport, PartitionLag,
    PartitionTracker, PlanInput, ResetPolicy, TopicPartition, TrackerConfig,
};

use crate::config::{EventListener, FailurePolicy, OffsetStorage, Ordering as Order};
use crate::delivery::Record;
use crate::error::ConsumerError;
use crate::events::ConsumerEvent;
use crate::gate::Slot;
use crate::metrics::Counters;
use crate::native::Client;
use crate::txn::TxnProducer;

mod commit;
mod context;
mod failure;
mod partition;
mod rebalance;

pub(crate) use context::Ctx;
pub(crate) use partition::PartState;

/// Wall-clock milliseconds since the Unix epoch (the tracker takes time as an input).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A nacked record waiting to be delivered again.
#[derive(Debug)]
pub(crate) struct Redelivery {
    /// Carries its partition state (and so its generation).
    pub record: Record,
    pub attempt: u32,
    /// The key slot it holds (it keeps its key busy while it waits).
    pub slot: Option<Slot>,
}

/// See the module docs.
pub(crate) struct Shared {
    pub group: String,
    pub tracker_config: TrackerConfig,
    /// Commit planning and statistics: core's, over the partitions in `parts`.
    planner: CommitPlanner,
    pub parts: RwLock<HashMap<TopicPartition, Arc<PartState>>>,
    pub storage: OffsetStorage,
    pub reset: ResetPolicy,
    pub max_in_flight: u64,
    pub drain_timeout: Duration,
    pub kafka_timeout: Duration,
    pub failure: FailurePolicy,
    pub listener: Option<EventListener>,
    pub ordering: Order,
    /// Most deliveries in the application's hands at once (`None`: no limit).
    pub max_concurrency: Option<u64>,
    /// Deliveries in the application's hands (counted only with `max_concurrency`): `recv`
    /// alone adds (one turn at a time, so its check-then-add cannot overshoot), finishing
    /// deliveries subtract.
    pub active: AtomicU64,
    /// Some partition's gate has a ready record (raised after the push, like
    /// `redelivery_ready`).
    pub gate_ready: AtomicBool,
    /// Revocation waits on it for in-flight records to finish (acks of revoking partitions
    /// notify it under `drain_lock`, so a wake-up cannot fall between check and wait).
    drained: parking_lot::Condvar,
    drain_lock: Mutex<()>,
    /// How long all brokers may be down before the consumer fails.
    pub brokers_down_timeout: Option<Duration>,
    /// When librdkafka reported every broker down (ms since the epoch; 0: not down). Cleared by
    /// a received record, a successful commit or a successful probe.
    pub brokers_down_since: AtomicI64,
    /// A probe of the brokers is running (see `Consumer::probe_brokers`).
    pub probing: AtomicBool,
    /// Commit current positions on revoke and shutdown.
    pub final_commit: bool,
    pub counters: Counters,
    pub policy: Mutex<Box<dyn CommitPolicy>>,
    /// The last commit that failed, to retry at the next tick whatever the policy says.
    pub failed_plan: Mutex<Option<CommitPlan>>,
    pub commit_lock: Mutex<()>,
    next_generation: AtomicI32,
    pub redeliver: mpsc::UnboundedSender<Redelivery>,
    /// Raised after every send on `redeliver`, so `recv` only looks at the channel then.
    pub redelivery_ready: AtomicBool,
    /// Woken when a paused or held partition may move again.
    pub wake: Notify,
    pub handle: Handle,
    pub stopping: AtomicBool,
    /// An error from a callback (e.g. committed offsets unreadable) for `recv` to report.
    pub fatal: Mutex<Option<ConsumerError>>,
    /// Set with `fatal`, so `recv` checks a flag instead of a lock.
    pub has_fatal: AtomicBool,
    /// Some partition may have buffered records or be paused (cleared by `recv` when none is).
    pub maybe_waiting: AtomicBool,
    /// Bumped after every change of `parts`, so caches of it know to refresh.
    pub epoch: AtomicU64,
    pub high_watermarks: Mutex<HashMap<TopicPartition, i64>>,
    pub dlq: Option<(FutureProducer, String)>,
    /// The transactional producer (Kafka-transactional mode only).
    pub txn_producer: Option<TxnProducer>,
    /// Wall clock in ms, refreshed by the commit thread every tick: hand-outs read it instead
    /// of the system clock (it only feeds in-flight ages).
    clock_ms: AtomicI64,
    /// This value's own `Arc`, for the partition states it creates.
    me: Weak<Shared>,
    /// The Kafka client, for the partition states it creates (set once it exists; weak, as
    /// the client's context points back here).
    pub client: OnceLock<Weak<Client>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("group", &self.group)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

/// Arguments of [`Shared::new`].
pub(crate) struct SharedParts {
    pub group: String,
    pub tracker_config: TrackerConfig,
    pub storage: OffsetStorage,
    pub reset: ResetPolicy,
    pub max_in_flight: u64,
    pub drain_timeout: Duration,
    pub kafka_timeout: Duration,
    pub failure: FailurePolicy,
    pub listener: Option<EventListener>,
    pub ordering: Order,
    pub max_concurrency: Option<u64>,
    pub brokers_down_timeout: Option<Duration>,
    pub final_commit: bool,
    pub policy: Box<dyn CommitPolicy>,
    pub redeliver: mpsc::UnboundedSender<Redelivery>,
    pub handle: Handle,
    pub dlq: Option<(FutureProducer, String)>,
    pub txn_producer: Option<TxnProducer>,
}

impl Shared {
    pub fn new(p: SharedParts) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            group: p.group,
            tracker_config: p.tracker_config,
            planner: CommitPlanner::new(),
            parts: RwLock::new(HashMap::new()),
            storage: p.storage,
            reset: p.reset,
            max_in_flight: p.max_in_flight,
            drain_timeout: p.drain_timeout,
            kafka_timeout: p.kafka_timeout,
            failure: p.failure,
            listener: p.listener,
            ordering: p.ordering,
            max_concurrency: p.max_concurrency,
            active: AtomicU64::new(0),
            gate_ready: AtomicBool::new(false),
            drained: parking_lot::Condvar::new(),
            drain_lock: Mutex::new(()),
            brokers_down_timeout: p.brokers_down_timeout,
            brokers_down_since: AtomicI64::new(0),
            probing: AtomicBool::new(false),
            final_commit: p.final_commit,
            counters: Counters::new(),
            policy: Mutex::new(p.policy),
            failed_plan: Mutex::new(None),
            commit_lock: Mutex::new(()),
            next_generation: AtomicI32::new(0),
            redeliver: p.redeliver,
            redelivery_ready: AtomicBool::new(false),
            wake: Notify::new(),
            handle: p.handle,
            stopping: AtomicBool::new(false),
            fatal: Mutex::new(None),
            has_fatal: AtomicBool::new(false),
            maybe_waiting: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            high_watermarks: Mutex::new(HashMap::new()),
            dlq: p.dlq,
            txn_producer: p.txn_producer,
            clock_ms: AtomicI64::new(now_ms()),
            me: me.clone(),
            client: OnceLock::new(),
        })
    }

    /// Whether another delivery may go to the application (see `max_concurrency`).
    pub fn has_room(&self) -> bool {
        self.max_concurrency
            .is_none_or(|m| self.active.load(Ordering::Acquire) < m)
    }

    /// A delivery left the application's hands (only counted with `max_concurrency`).
    pub fn delivery_finished(&self) {
        if let Some(m) = self.max_concurrency {
            let before = self.active.fetch_sub(1, Ordering::AcqRel);
            if before >= m {
                // `recv` may be waiting for room.
                self.wake.notify_one();
            }
        }
    }

    /// Wakes a revocation waiting for in-flight records.
    pub fn notify_drained(&self) {
        let _g = self.drain_lock.lock();
        self.drained.notify_all();
    }

    /// Waits until `done()` or `deadline`, woken by [`notify_drained`](Self::notify_drained)
    /// (and every 50 ms all the same: a nack of a revoking partition finishes nothing).
    fn wait_drained(&self, deadline: Instant, done: impl Fn() -> bool) {
        loop {
            let mut g = self.drain_lock.lock();
            if done() {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            let until = deadline.min(now + Duration::from_millis(50));
            self.drained.wait_until(&mut g, until);
        }
    }

    /// The coarse clock (see `clock_ms`).
    pub fn coarse_now(&self) -> i64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    /// Refreshes the coarse clock.
    pub fn tick_clock(&self) {
        self.clock_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn emit(&self, e: ConsumerEvent) {
        if let Some(l) = &self.listener {
            l(&e);
        }
    }

    pub fn part(&self, tp: &TopicPartition) -> Option<Arc<PartState>> {
        self.parts.read().get(tp).cloned()
    }

    pub fn is_transactional(&self) -> bool {
        matches!(self.storage, OffsetStorage::Transactional(_))
    }

    /// Kafka-transactional mode: commits are Kafka transactions with the outputs.
    pub fn is_kafka_txn(&self) -> bool {
        self.txn_producer.is_some()
    }

    // ---- acknowledgements -------------------------------------------------------------------

    pub fn stale(&self) {
        self.counters.bump(
            &self.counters.stale_acks,
            "waterline_consumer_stale_acks_total",
        );
        self.planner.stale_acks(1);
    }

    /// Acks since the last call, over the assigned partitions (counted under their locks).
    pub fn take_acks(&self) -> u64 {
        self.parts
            .read()
            .values()
            .map(|p| std::mem::take(&mut p.lock().acks))
            .sum()
    }

    /// Runs `f` on `tp`'s tracker, if assigned.
    #[cfg(test)]
    pub fn with_partition<R>(
        &self,
        tp: &TopicPartition,
        f: impl FnOnce(&mut PartitionTracker) -> R,
    ) -> Option<R> {
        let p = self.part(tp)?;
        let mut t = p.lock();
        Some(f(&mut t.tracker))
    }

    /// Gives up every partition without committing (the consumer is being dropped): later
    /// acks are stale, and the partition states no longer keep each other alive.
    pub fn release_all(&self) {
        let parts = std::mem::take(&mut *self.parts.write());
        for p in parts.values() {
            let _t = p.lock();
            p.released.store(true, Ordering::Release);
            p.buffer.lock().clear();
            p.gate.lock().clear();
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Assigned partitions, sorted.
    pub fn assigned(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = self.parts.read().keys().cloned().collect();
        v.sort();
        v
    }

    fn parts_sorted(&self) -> Vec<Arc<PartState>> {
        let mut v: Vec<(TopicPartition, Arc<PartState>)> = self
            .parts
            .read()
            .iter()
            .map(|(tp, p)| (tp.clone(), Arc::clone(p)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// Records in the application's hands or retrying (in flight, less those waiting for
    /// their key's turn), over all assigned partitions: what a shutdown waits for.
    pub fn in_hand(&self) -> u64 {
        self.parts_sorted().iter().map(|p| p.in_hand()).sum()
    }

    /// Commit statistics so far.
    pub fn commit_stats(&self) -> CommitStats {
        self.planner.stats()
    }

    /// Lag per assigned partition with a known high watermark, at `now_ms`.
    pub fn lag(
        &self,
        high_watermark: impl Fn(&TopicPartition) -> Option<i64>,
        now_ms: i64,
    ) -> LagReport {
        let mut out = Vec::new();
        for p in self.parts_sorted() {
            let Some(hw) = high_watermark(&p.tp) else {
                continue;
            };
            let t = p.lock();
            out.push(PartitionLag::new(
                p.tp.clone(),
                hw,
                t.commit_point(),
                t.in_flight(),
                t.oldest_unacked_age_ms(now_ms),
            ));
        }
        LagReport::from_partitions(out)
    }

    /// Each assigned, unreleased partition in `parts`, its tracker locked in turn.
    fn plan_inputs(
        parts: &[Arc<PartState>],
    ) -> impl Iterator<Item = PlanInput<'_, MappedMutexGuard<'_, PartitionTracker>>> {
        parts.iter().filter_map(|p| {
            // `released` is read under the tracker lock, which revocation sets it under.
            let tracker = p.lock();
            (!p.released.load(Ordering::Acquire)).then(|| PlanInput {
                tp: &p.tp,
                generation: p.generation,
                tracker: MutexGuard::map(tracker, |t| &mut t.tracker),
            })
        })
    }

    /// Positions changed since their last commit; counted as a commit attempt.
    pub fn prepare_commit(&self, now_ms: i64) -> CommitPlan {
        self.planner
            .prepare_commit(now_ms, Self::plan_inputs(&self.parts_sorted()))
    }

    /// Every assigned partition's current position (not counted as an attempt).
    pub fn snapshot(&self, now_ms: i64) -> CommitPlan {
        self.planner
            .snapshot(now_ms, Self::plan_inputs(&self.parts_sorted()))
    }

    /// Counts `plan` as a commit attempt.
    pub fn commit_started(&self, plan: &CommitPlan) {
        self.planner.commit_started(plan);
    }

    /// Records the outcome of committing `plan`.
    pub fn commit_finished(&self, plan: &CommitPlan, ok: bool, now_ms: i64, duration_ms: u64) {
        self.planner
            .commit_finished(plan, ok, now_ms, duration_ms, |e, apply| {
                if let Some(p) = self.part(&e.tp).filter(|p| p.generation == e.generation) {
                    apply(&mut p.lock().tracker);
                }
            });
    }
}

/// Runs `f` to completion from synchronous code. On a runtime thread (the rebalance callback
/// runs inside `recv`) it runs on a helper thread, since blocking on the runtime from its own
/// thread is not allowed; the runtime must be multi-threaded so its other workers drive I/O.
/// `None` if the future panicked.
pub(crate) fn block_on<F>(handle: &Handle, f: F) -> Option<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    if Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(|| handle.block_on(f)).join().ok())
    } else {
        Some(handle.block_on(f))
    }
}

#[cfg(test)]
mod tests {
    use waterline_core::{Generation, Interval, ResetStrategy};

    use super::*;
    use crate::config::Exhausted;
    use crate::txn::OutputRecord;

    fn shared(failure: FailurePolicy) -> (Arc<Shared>, mpsc::UnboundedReceiver<Redelivery>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let s = Shared::new(SharedParts {
            group: "g".into(),
            tracker_config: TrackerConfig::default(),
            storage: OffsetStorage::Kafka,
            reset: ResetPolicy::single(ResetStrategy::Earliest).unwrap(),
            max_in_flight: 100,
            drain_timeout: Duration::from_millis(10),
            kafka_timeout: Duration::from_secs(1),
            failure,
            listener: None,
            ordering: Order::Unordered,
            max_concurrency: None,
            brokers_down_timeout: None,
            final_commit: true,
            policy: Box::new(Interval::new(1000).unwrap()),
            redeliver: tx,
            handle: Handle::current(),
            dlq: None,
            txn_producer: None,
        });
        (s, rx)
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// What `assign` does for one partition, without a Kafka client; offsets `start..end`
    /// handed out.
    fn assign_local(
        s: &Arc<Shared>,
        generation: Generation,
        start: i64,
        end: i64,
    ) -> Arc<PartState> {
        let t = PartitionTracker::new(start, TrackerConfig::default()).unwrap();
        s.install(PartState::new(tp(), generation, t, Arc::clone(s), None));
        let p = s.part(&tp()).unwrap();
        for o in start..end {
            p.lock().hand_out(o, 0).unwrap();
        }
        p
    }

    #[tokio::test]
    async fn acks_through_a_replaced_generation_are_stale_and_counted() {
        let (s, _rx) = shared(FailurePolicy::default());
        let g1 = assign_local(&s, 1, 0, 2);
        assert!(g1.ack(1));
        assert_eq!(s.with_partition(&tp(), |t| t.commit_point()), Some(0));
        // Re-assigned under generation 2: generation 1's acks are dropped and counted.
        let g2 = assign_local(&s, 2, 0, 1);
        assert!(!g1.ack(0));
        assert_eq!(s.counters.stale_acks.load(Ordering::Relaxed), 1);
        assert!(g2.ack(0));
        assert_eq!(s.with_partition(&tp(), |t| t.commit_point()), Some(1));
        assert_eq!(s.take_acks(), 1, "acks of the assigned generation");
        assert_eq!(s.take_acks(), 0, "taken");
    }

    /// Hand-outs `recv` made without the lock are recorded before anything reads the
    /// tracker: acks of them land, in-flight counts and commits include them.
    #[tokio::test]
    async fn unrecorded_hand_outs_are_recorded_at_the_next_lock() {
        let (s, _rx) = shared(FailurePolicy::default());
        let p = assign_local(&s, 1, 0, 1);
        // What `recv`'s fast path does for offsets 1..5 at time 7.
        p.handed_since.store(7, Ordering::Relaxed);
        p.handed_to.store(5, Ordering::Release);
        assert!(p.ack(3), "an unrecorded hand-out can be acked");
        assert_eq!(s.in_hand(), 4);
        assert_eq!(p.recorded_to.load(Ordering::Acquire), 5);
        assert!(p.ack(0));
        let plan = s.snapshot(0);
        assert_eq!(plan.entries[0].offset_and_metadata.offset(), Some(1));
        assert_eq!(
            s.with_partition(&tp(), |t| t.oldest_unacked_age_ms(10)),
            Some(Some(3)),
            "aged from the run's start"
        );
    }

    /// Outputs are kept with an ack that counts, and dropped with a stale or duplicate one.
    #[tokio::test]
    async fn outputs_go_with_acks_that_count() {
        let (s, _rx) = shared(FailurePolicy::default());
        let p = assign_local(&s, 1, 0, 3);
        let out = |n: &str| vec![OutputRecord::new("out").with_payload(n.as_bytes().to_vec())];
        assert!(p.ack_with(1, out("1")), "pending beyond the commit point");
        assert!(p.ack_with(0, out("0")), "advances");
        p.ack_with(0, out("dup"));
        let payloads: Vec<Vec<u8>> = p
            .lock()
            .outputs
            .iter()
            .map(|o| o.payload().unwrap().to_vec())
            .collect();
        assert_eq!(payloads, vec![b"1".to_vec(), b"0".to_vec()], "in ack order");
        s.release_all();
        assert!(!p.ack_with(2, out("stale")));
        assert_eq!(p.lock().outputs.len(), 2, "a stale ack adds nothing");
    }

    #[tokio::test]
    async fn acks_through_a_released_partition_are_stale() {
        let (s, _rx) = shared(FailurePolicy::default());
        let p = assign_local(&s, 1, 0, 2);
        assert!(p.ack(0));
        s.release_all();
        assert!(!p.ack(1), "held Arc, released partition");
        assert_eq!(s.counters.stale_acks.load(Ordering::Relaxed), 1);
        assert_eq!(s.commit_stats().stale_acks, 1);
        assert!(s.snapshot(0).is_empty());
        assert!(s.assigned().is_empty());
    }

    #[tokio::test]
    async fn offsets_if_acked_leaves_the_tracker_alone() {
        let (s, _rx) = shared(FailurePolicy::default());
        let p = assign_local(&s, 1, 10, 13);
        assert!(p.ack(11));
        let o = p.offsets_if_acked(10).unwrap();
        assert_eq!(o.offset(), Some(12));
        assert_eq!(
            s.with_partition(&tp(), |t| t.commit_point()),
            Some(10),
            "unchanged"
        );
        let o = p.offsets_if_acked(12).unwrap();
        assert_eq!(o.offset(), Some(10));
        assert!(o.metadata.starts_with("wl1:"), "acked set in metadata");
        p.revoking.store(true, Ordering::Release);
        assert!(p.offsets_if_acked(10).is_none(), "revoking");
    }

    #[tokio::test]
    async fn commit_plans_drop_revoked_and_reassigned_partitions() {
        let (s, _rx) = shared(FailurePolicy::default());
        let p = assign_local(&s, 1, 0, 1);
        p.ack(0);
        let plan = s.snapshot(0);
        assert_eq!(s.current_only(plan.clone()).entries.len(), 1);
        p.revoking.store(true, Ordering::Release);
        assert!(s.current_only(plan.clone()).is_empty());
        assign_local(&s, 2, 0, 0);
        assert!(s.current_only(plan).is_empty(), "plan of generation 1");
    }

    #[tokio::test]
    async fn nack_retries_then_holds() {
        let failure = FailurePolicy {
            max_attempts: 2,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            exhausted: Exhausted::Hold,
        };
        let (s, mut rx) = shared(failure);
        let p = assign_local(&s, 1, 0, 2);
        Shared::nack(Record::of_part(&p, 0), 1, None, "boom".into());
        let r = rx.recv().await.unwrap();
        assert_eq!((r.record.offset(), r.attempt), (0, 2));
        assert!(!p.held.load(Ordering::Acquire));
        Shared::nack(r.record, 2, None, "boom".into());
        let r = rx.recv().await.unwrap();
        assert_eq!(r.attempt, 3, "held records keep being redelivered");
        assert!(p.held.load(Ordering::Acquire));
        // Another record's success does not release the hold.
        assert!(p.ack(1));
        assert!(p.held.load(Ordering::Acquire));
        // Success releases the hold.
        assert!(p.ack(0));
        assert!(!p.held.load(Ordering::Acquire));
        assert_eq!(s.counters.failures.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn nack_after_revoke_is_not_retried() {
        let (s, mut rx) = shared(FailurePolicy::default());
        let p = assign_local(&s, 1, 0, 1);
        p.revoking.store(true, Ordering::Release);
        Shared::nack(Record::of_part(&p, 0), 1, None, "late".into());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(s.counters.stale_acks.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn hand_built_records_are_not_nacked_anywhere() {
        let (s, mut rx) = shared(FailurePolicy::default());
        Shared::nack(Record::new(tp(), 0), 1, None, "no partition".into());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(s.counters.failures.load(Ordering::Relaxed), 0);
    }
}
