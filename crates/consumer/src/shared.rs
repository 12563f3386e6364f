//! State shared by the consumer handle, deliveries, the commit thread and the rebalance
//! callback.
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

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{MappedMutexGuard, Mutex, MutexGuard, RwLock};
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::{Notify, mpsc};
use waterline_core::{
    AckOutcome, CommitPlan, CommitPlanner, CommitPolicy, CommitStats, Generation, LagReport,
    OffsetAndMetadata, OffsetResolver, PartitionLag, PartitionTracker, PlanInput, Position,
    ResetPolicy, TopicPartition, TrackerConfig,
};

use crate::config::{EventListener, Exhausted, FailurePolicy, OffsetStorage, Ordering as Order};
use crate::delivery::Record;
use crate::error::{ConsumerError, fatal_error};
use crate::events::ConsumerEvent;
use crate::gate::{Gate, PARTITION_SLOT, Slot, key_slot};
use crate::metrics::Counters;
use crate::native::Client;
use crate::txn::{OutputRecord, TxnFailure, TxnProducer};

/// Wall-clock milliseconds since the Unix epoch (the tracker takes time as an input).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A partition's tracker and what is counted under its lock.
#[derive(Debug)]
pub(crate) struct Tracked {
    pub tracker: PartitionTracker,
    /// Acks since the commit thread last collected them (for count-based commit policies).
    pub acks: u64,
    /// Outputs of acked records not yet committed (Kafka-transactional mode), in ack order:
    /// exactly the outputs of the acks the tracker holds beyond its last successful commit.
    pub outputs: Vec<OutputRecord>,
}

impl std::ops::Deref for Tracked {
    type Target = PartitionTracker;
    fn deref(&self) -> &PartitionTracker {
        &self.tracker
    }
}

impl std::ops::DerefMut for Tracked {
    fn deref_mut(&mut self) -> &mut PartitionTracker {
        &mut self.tracker
    }
}

/// Per-partition state of one assignment generation, including its offset tracker. Records
/// keep an `Arc` to it, so an ack touches one mutex and no map.
///
/// Reference cycles (`shared.parts` → here → `shared`; buffered records → here) are broken
/// when the partition is revoked and when the consumer is dropped, which empty `parts` and
/// the buffers.
pub(crate) struct PartState {
    pub tp: TopicPartition,
    pub generation: Generation,
    /// The partition's out-of-order offset tracker; only through [`PartState::lock`].
    tracker: Mutex<Tracked>,
    /// Set (under the tracker lock) when the partition is given up: later acks are stale.
    pub released: AtomicBool,
    /// Set when revocation starts: nothing more is handed out.
    pub revoking: AtomicBool,
    /// Some record exhausted its attempts under [`Exhausted::Hold`] (`held_offsets` non-empty).
    pub held: AtomicBool,
    /// The held records; the hold ends when the last of them is acknowledged.
    pub held_offsets: Mutex<std::collections::BTreeSet<i64>>,
    /// Paused in the Kafka client.
    pub paused: AtomicBool,
    /// Records waiting in `buffer` (kept beside it so acks can check without locking).
    pub waiting: AtomicUsize,
    /// Fetched but not yet handed out (back-pressure or hold), in offset order.
    pub buffer: Mutex<VecDeque<Record>>,
    /// Records handed out by the tracker that wait for their key's turn
    /// ([`Order::Key`], [`Order::Partition`]); see `gate`.
    pub gate: Mutex<Gate<Record>>,
    /// Hand-outs stopped by the application ([`Consumer::pause`](crate::Consumer::pause)).
    pub user_paused: AtomicBool,
    /// Serializes exactly-once steps; revocation takes it.
    pub txn: Arc<tokio::sync::Mutex<()>>,
    /// The next offset to accept from the fetcher: drops records refetched after a pause.
    pub next_fetch: AtomicI64,
    /// Hand-outs the tracker has not recorded yet: every offset from the tracker's
    /// `next_hand_out` up to this one (exclusive) was handed out by `recv` without taking the
    /// tracker lock. Only the receiving turn writes it (release); [`PartState::lock`] records
    /// them before anything else reads the tracker, so no commit plan, ack or in-flight count
    /// misses one.
    pub handed_to: AtomicI64,
    /// When the oldest unrecorded hand-out happened (in-flight ages may be over-estimated,
    /// never under-estimated).
    pub handed_since: AtomicI64,
    /// The tracker's `next_hand_out` as of the last lock (tells `recv` when a new run starts).
    pub recorded_to: AtomicI64,
    /// Offsets below this may be handed out without the lock, continuing the run: the
    /// tracker's `admit_run_end`, capped by the in-flight limit, as of the last locked
    /// hand-out (acks only make both larger, so it stays safe).
    pub run_end: AtomicI64,
    pub shared: Arc<Shared>,
    /// The client this partition's records are fetched by; last, so it outlives `buffer`
    /// (records read in place must not outlive their client, see `native`).
    pub client: Option<Arc<Client>>,
}

impl std::fmt::Debug for PartState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartState")
            .field("tp", &self.tp)
            .field("generation", &self.generation)
            .field("released", &self.released)
            .field("revoking", &self.revoking)
            .finish_non_exhaustive()
    }
}

impl PartState {
    fn new(
        tp: TopicPartition,
        generation: Generation,
        tracker: PartitionTracker,
        shared: Arc<Shared>,
        client: Option<Arc<Client>>,
    ) -> Self {
        Self {
            tp,
            generation,
            tracker: Mutex::new(Tracked {
                tracker,
                acks: 0,
                outputs: Vec::new(),
            }),
            released: AtomicBool::new(false),
            revoking: AtomicBool::new(false),
            held: AtomicBool::new(false),
            held_offsets: Mutex::new(std::collections::BTreeSet::new()),
            paused: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            buffer: Mutex::new(VecDeque::new()),
            gate: Mutex::new(Gate::default()),
            user_paused: AtomicBool::new(false),
            txn: Arc::new(tokio::sync::Mutex::new(())),
            next_fetch: AtomicI64::new(i64::MIN),
            handed_to: AtomicI64::new(i64::MIN),
            handed_since: AtomicI64::new(0),
            recorded_to: AtomicI64::new(i64::MIN),
            run_end: AtomicI64::new(i64::MIN),
            shared,
            client,
        }
    }

    /// The tracker, locked, with every hand-out `recv` made without the lock recorded.
    pub fn lock(&self) -> MutexGuard<'_, Tracked> {
        let mut t = self.tracker.lock();
        let to = self.handed_to.load(Ordering::Acquire);
        if to > t.tracker.next_hand_out() {
            let since = self.handed_since.load(Ordering::Relaxed);
            if let Err(e) = t.tracker.hand_out_run(to, since) {
                // `recv` stays below the run end the tracker gave it, so this is a bug.
                tracing::error!(tp = %self.tp, to, error = %e, "unrecorded hand-outs refused");
            }
        }
        self.recorded_to
            .store(t.tracker.next_hand_out(), Ordering::Release);
        t
    }

    /// The slot `record` takes turns under in this consumer's ordering mode (`None`: no
    /// turn-taking).
    pub fn slot_of(&self, record: &Record) -> Option<Slot> {
        match self.shared.ordering {
            Order::Unordered => None,
            Order::Partition => Some(PARTITION_SLOT),
            Order::Key => key_slot(record.key()),
        }
    }

    /// `record` (already handed out by the tracker) asks for its key's turn: returned when it
    /// has it, kept in the gate otherwise.
    pub fn enter_gate(&self, slot: Slot, record: Record) -> Option<Record> {
        self.gate.lock().enter(slot, record)
    }

    /// A holder of `slot` finished; the key's next record, if any, becomes ready and `recv`
    /// is woken to hand it out.
    pub fn leave_gate(&self, slot: Slot) {
        if self.gate.lock().leave(slot) {
            self.shared.gate_ready.store(true, Ordering::Release);
            self.shared.wake.notify_one();
        }
    }

    /// Records handed out by the tracker and still in the application's hands (or retrying):
    /// the tracker's in-flight count without the records waiting in the gate.
    pub fn in_hand(&self) -> u64 {
        let in_flight = self.lock().in_flight();
        in_flight.saturating_sub(self.gate.lock().len() as u64)
    }

    /// Still assigned under this generation and not being revoked.
    pub fn is_current(&self) -> bool {
        !self.revoking.load(Ordering::Acquire) && !self.released.load(Ordering::Acquire)
    }

    /// Applies an ack of `offset`; false if it was stale (the partition was revoked since the
    /// hand-out).
    pub fn ack(&self, offset: i64) -> bool {
        self.ack_with(offset, Vec::new())
    }

    /// [`ack`](Self::ack), keeping `outputs` to commit with it (in the same step under the
    /// tracker lock, so a commit plan covers the ack exactly when it carries the outputs);
    /// they are dropped if the ack is stale or a duplicate.
    pub fn ack_with(&self, offset: i64, outputs: Vec<OutputRecord>) -> bool {
        let outcome = {
            let mut t = self.lock();
            if self.released.load(Ordering::Acquire) {
                None
            } else {
                t.acks += 1;
                let r = t.tracker.ack(offset);
                if !outputs.is_empty()
                    && matches!(r, Ok(AckOutcome::Advanced { .. } | AckOutcome::Pending))
                {
                    t.outputs.extend(outputs);
                }
                Some(r)
            }
        };
        match outcome {
            None | Some(Ok(AckOutcome::Stale)) => {
                self.shared.stale();
                false
            }
            Some(Ok(outcome)) => {
                let mut wake = matches!(outcome, AckOutcome::Advanced { .. })
                    && self.waiting.load(Ordering::Acquire) > 0;
                if self.held.load(Ordering::Acquire) {
                    let mut held = self.held_offsets.lock();
                    if held.remove(&offset) && held.is_empty() {
                        self.held.store(false, Ordering::Release);
                        wake = true;
                    }
                }
                if wake {
                    self.shared.wake.notify_one();
                }
                if self.revoking.load(Ordering::Acquire) {
                    self.shared.notify_drained();
                }
                true
            }
            Some(Err(e)) => {
                // Only offsets never handed out fail here; that is a bug in the caller's
                // bookkeeping, not a reason to stop consuming.
                tracing::warn!(tp = %self.tp, offset, error = %e, "ack refused by the tracker");
                false
            }
        }
    }

    /// The partition's commit as if `offset` were acked (the tracker itself is not changed);
    /// `None` once revocation began.
    pub fn offsets_if_acked(&self, offset: i64) -> Option<OffsetAndMetadata> {
        if !self.is_current() {
            return None;
        }
        let now = now_ms();
        let mut t = self.lock().tracker.clone();
        t.ack(offset).ok()?;
        t.commit_candidate(now)
            .ok()
            .or_else(|| Some(OffsetAndMetadata::new(t.commit_point(), now)))
    }
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

    /// Applies the failure policy to a nacked record (its partition state says which
    /// assignment it belongs to).
    pub fn nack(mut record: Record, attempt: u32, slot: Option<Slot>, reason: String) {
        let Some(part) = record.part().cloned() else {
            return;
        };
        let this = &part.shared;
        this.counters
            .bump(&this.counters.failures, "waterline_consumer_failures_total");
        if !part.is_current() {
            // Revoked: the new owner processes it; nothing to retry here.
            this.counters.bump(
                &this.counters.stale_acks,
                "waterline_consumer_stale_acks_total",
            );
            return;
        }
        tracing::debug!(tp = %part.tp, offset = record.offset(), attempt, %reason, "nack");
        // It waits now (backoff, producing): don't keep the client's fetch buffer meanwhile.
        record.detach();
        let f = &this.failure;
        // A retrying record keeps its key slot: later records of its key wait for it.
        if attempt < f.max_attempts {
            Self::schedule(this, record, attempt + 1, slot, f.delay(attempt));
            return;
        }
        match &f.exhausted {
            Exhausted::Hold => {
                // With a key slot the held record blocks its key (or, in partition order,
                // its partition) by keeping the slot; without one it holds the partition.
                if slot.is_none() {
                    part.held_offsets.lock().insert(record.offset());
                    part.held.store(true, Ordering::Release);
                }
                Self::schedule(this, record, attempt + 1, slot, f.max_backoff);
            }
            Exhausted::DeadLetter(_) => Self::dead_letter(this, record, slot, reason),
        }
    }

    fn schedule(
        this: &Arc<Self>,
        record: Record,
        attempt: u32,
        slot: Option<Slot>,
        delay: Duration,
    ) {
        let tx = this.redeliver.clone();
        let shared = Arc::clone(this);
        this.handle.spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Redelivery {
                record,
                attempt,
                slot,
            });
            shared.redelivery_ready.store(true, Ordering::Release);
            shared.wake.notify_one();
        });
    }

    fn dead_letter(this: &Arc<Self>, record: Record, slot: Option<Slot>, reason: String) {
        let Some((producer, topic)) = this.dlq.clone() else {
            return;
        };
        let Some(part) = record.part().cloned() else {
            return;
        };
        let shared = Arc::clone(this);
        this.handle.spawn(async move {
            let offset = record.offset().to_string();
            let partition = record.partition().to_string();
            let mut headers = OwnedHeaders::new();
            for (key, value) in record.headers() {
                headers = headers.insert(Header { key, value });
            }
            let headers = headers
                .insert(Header {
                    key: "waterline.source.topic",
                    value: Some(record.topic().as_bytes()),
                })
                .insert(Header {
                    key: "waterline.source.partition",
                    value: Some(partition.as_bytes()),
                })
                .insert(Header {
                    key: "waterline.source.offset",
                    value: Some(offset.as_bytes()),
                })
                .insert(Header {
                    key: "waterline.error",
                    value: Some(reason.as_bytes()),
                });
            let mut delay = shared.failure.backoff;
            loop {
                if !part.is_current() {
                    return;
                }
                let mut fr: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&topic).headers(headers.clone());
                if let Some(k) = record.key() {
                    fr = fr.key(k);
                }
                if let Some(p) = record.payload() {
                    fr = fr.payload(p);
                }
                if let Some(ts) = record.timestamp_ms() {
                    fr = fr.timestamp(ts);
                }
                match producer.send(fr, shared.kafka_timeout).await {
                    Ok(_) => {
                        shared.counters.bump(
                            &shared.counters.dead_lettered,
                            "waterline_consumer_dead_lettered_total",
                        );
                        part.ack(record.offset());
                        if let Some(s) = slot {
                            part.leave_gate(s);
                        }
                        return;
                    }
                    Err((e, _)) => {
                        if let Some(fatal) = fatal_error(&e, "") {
                            // The record stays unfinished: the commit point never passes it.
                            shared.fail(fatal);
                            return;
                        }
                        tracing::warn!(%topic, error = %e, "dead-letter produce failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(shared.failure.max_backoff);
                    }
                }
            }
        });
    }

    // ---- commits ----------------------------------------------------------------------------

    /// Drops plan entries whose partition was revoked or re-assigned. Call under `commit_lock`.
    pub fn current_only(&self, mut plan: CommitPlan) -> CommitPlan {
        let parts = self.parts.read();
        plan.entries.retain(|e| {
            parts.get(&e.tp).is_some_and(|p| {
                p.generation == e.generation && !p.revoking.load(Ordering::Acquire)
            })
        });
        plan
    }

    /// Writes `plan` to the offset storage and records the outcome. Call under `commit_lock`.
    pub fn commit_plan<C, X>(&self, consumer: &C, plan: &CommitPlan) -> bool
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        if plan.is_empty() {
            return true;
        }
        let started = Instant::now();
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = plan
            .entries
            .iter()
            .map(|e| (e.tp.clone(), e.offset_and_metadata.clone()))
            .collect();
        let result: Result<(), String> = match &self.storage {
            OffsetStorage::Kafka => kafka_commit(consumer, &offsets),
            // Offsets go only with their outputs (`commit_transaction`); never here.
            OffsetStorage::KafkaTransactional(_) => {
                Err("offsets are committed only inside transactions in this mode".into())
            }
            OffsetStorage::External(s) | OffsetStorage::Transactional(s) => {
                match block_on(&self.handle, s.commit(&self.group, &offsets)) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => Err(e.to_string()),
                    None => Err("store commit task panicked".into()),
                }
            }
        };
        let ok = result.is_ok();
        let micros = started.elapsed().as_micros() as u64;
        self.commit_finished(plan, ok, now_ms(), micros / 1000);
        self.counters.commit(ok, micros);
        match result {
            Ok(()) => {
                // Anything that failed before is superseded by this newer commit.
                *self.failed_plan.lock() = None;
                self.brokers_down_since.store(0, Ordering::Release);
                self.emit(ConsumerEvent::Committed { offsets })
            }
            Err(error) => {
                tracing::warn!(%error, "offset commit failed; will retry");
                *self.failed_plan.lock() = Some(plan.clone());
                self.emit(ConsumerEvent::CommitFailed { error });
            }
        }
        ok
    }

    /// Kafka-transactional mode: commits, in one transaction, the positions of every
    /// partition that changed (revoking ones only with `revoking`: the revocation's own
    /// commit) and the outputs of the acks they cover. Call under `commit_lock`. A failed transaction is aborted, its outputs go back to their
    /// partitions (if still assigned under the same generation) for the next attempt; after
    /// too many aborts in a row, or a fatal error (fencing), the consumer fails.
    pub fn commit_transaction<C, X>(&self, consumer: &C, revoking: bool) -> bool
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        let Some(producer) = &self.txn_producer else {
            return false;
        };
        if producer.dead.load(Ordering::Acquire) {
            return false;
        }
        let parts = self.parts_sorted();
        let mut taken: Vec<(Arc<PartState>, Vec<OutputRecord>)> = Vec::new();
        // Outputs are taken under the same tracker lock the plan reads the position under.
        let inputs = parts.iter().filter_map(|p| {
            let mut t = p.lock();
            if p.released.load(Ordering::Acquire)
                || (!revoking && p.revoking.load(Ordering::Acquire))
            {
                return None;
            }
            if !t.outputs.is_empty() {
                taken.push((Arc::clone(p), std::mem::take(&mut t.outputs)));
            }
            Some(PlanInput {
                tp: &p.tp,
                generation: p.generation,
                tracker: MutexGuard::map(t, |t| &mut t.tracker),
            })
        });
        let plan = self.planner.prepare_commit(now_ms(), inputs);
        if plan.is_empty() && taken.is_empty() {
            return true;
        }
        let started = Instant::now();
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = plan
            .entries
            .iter()
            .map(|e| (e.tp.clone(), e.offset_and_metadata.clone()))
            .collect();
        let outputs: Vec<&OutputRecord> = taken.iter().flat_map(|(_, o)| o.iter()).collect();
        let result = producer.run(consumer, &outputs, &offsets);
        drop(outputs);
        let ok = result.is_ok();
        let micros = started.elapsed().as_micros() as u64;
        self.commit_finished(&plan, ok, now_ms(), micros / 1000);
        self.counters.commit(ok, micros);
        match result {
            Ok(()) => {
                producer.aborts.store(0, Ordering::Release);
                *self.failed_plan.lock() = None;
                self.emit(ConsumerEvent::Committed { offsets });
            }
            Err(failure) => {
                // Back in front of what was acked since, for the next attempt.
                for (p, mut outs) in taken {
                    let mut t = p.lock();
                    if !p.released.load(Ordering::Acquire) {
                        outs.append(&mut t.outputs);
                        t.outputs = outs;
                    }
                }
                *self.failed_plan.lock() = Some(plan.clone());
                let error = match failure {
                    TxnFailure::Fatal(e) => {
                        let text = e.to_string();
                        self.fail(e);
                        text
                    }
                    TxnFailure::Aborted(reason) => {
                        let n = producer.aborts.fetch_add(1, Ordering::AcqRel) + 1;
                        if n >= producer.max_aborts {
                            producer.dead.store(true, Ordering::Release);
                            self.fail(ConsumerError::TransactionAborted {
                                attempts: n,
                                reason: reason.clone(),
                            });
                        }
                        reason
                    }
                };
                tracing::warn!(%error, "commit transaction failed");
                self.emit(ConsumerEvent::CommitFailed { error });
            }
        }
        ok
    }

    /// Commits every assigned partition's current position now.
    pub fn commit_all<C, X>(&self, consumer: &C) -> bool
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        let _g = self.commit_lock.lock();
        if self.is_kafka_txn() {
            return self.commit_transaction(consumer, false);
        }
        let plan = self.current_only(self.snapshot(now_ms()));
        self.commit_started(&plan);
        self.commit_plan(consumer, &plan)
    }

    // ---- rebalances -------------------------------------------------------------------------

    pub fn fail(&self, e: ConsumerError) {
        tracing::error!(error = %e, "consumer failed");
        let mut f = self.fatal.lock();
        if f.is_none() {
            *f = Some(e);
        }
        self.has_fatal.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Handles an assignment: restores each partition from its committed position (or the reset
    /// policy) and sets the start offsets in `tpl`, which the caller then assigns.
    pub fn assign<C, X>(&self, consumer: &C, tpl: &mut TopicPartitionList)
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        self.counters.bump(
            &self.counters.rebalances,
            "waterline_consumer_rebalances_total",
        );
        let generation = self.next_generation.fetch_add(1, Ordering::AcqRel) + 1;
        let tps: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        let committed = match self.read_committed(consumer, tpl, &tps) {
            Ok(c) => c,
            Err(e) => {
                // Consuming from a guessed position could skip records: stop instead.
                self.fail(e);
                let _ = tpl.set_all_offsets(Offset::End);
                return;
            }
        };
        let resolver = KafkaResolver {
            consumer,
            timeout: self.kafka_timeout,
            _ctx: std::marker::PhantomData,
        };
        let mut positions = Vec::with_capacity(tps.len());
        // Only `None` while the consumer is being dropped, or in tests without a client.
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let client = self.client.get().and_then(Weak::upgrade);
        for tp in tps {
            let cfg = self.tracker_config;
            let (start, tracker) = match committed.get(&tp).and_then(|o| o.offset().map(|n| (n, o)))
            {
                Some((n, oam)) => match PartitionTracker::restore(oam, cfg) {
                    Ok(t) => (n, t),
                    Err(e) => {
                        // Unusable metadata: the acked offsets beyond `n` are processed again.
                        tracing::warn!(%tp, error = %e, "ignoring committed metadata");
                        match PartitionTracker::new(n, cfg) {
                            Ok(t) => (n, t),
                            Err(e) => {
                                self.fail(e.into());
                                continue;
                            }
                        }
                    }
                },
                None => match self.reset.resolve(&tp, &resolver) {
                    Ok(n) => match PartitionTracker::new(n, cfg) {
                        Ok(t) => (n, t),
                        Err(e) => {
                            self.fail(e.into());
                            continue;
                        }
                    },
                    Err(e) => {
                        self.fail(ConsumerError::ResetFailed {
                            tp: tp.clone(),
                            reason: e.to_string(),
                        });
                        continue;
                    }
                },
            };
            if let Err(e) = tpl.set_partition_offset(&tp.topic, tp.partition, Offset::Offset(start))
            {
                self.fail(e.into());
            }
            self.install(PartState::new(
                tp.clone(),
                generation,
                tracker,
                Arc::clone(&me),
                client.clone(),
            ));
            positions.push((tp, start));
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        tracing::info!(generation, partitions = positions.len(), "assigned");
        self.emit(ConsumerEvent::Assigned {
            generation,
            positions,
        });
    }

    /// Restarts `tp` at `offset` under a new generation (a seek): what was handed out, buffered
    /// or waiting in the old one is abandoned (acks of it are stale), and the next commit
    /// records `offset`.
    pub fn restart_at(&self, tp: &TopicPartition, offset: i64) -> Result<(), ConsumerError> {
        let me = self.me.upgrade().ok_or(ConsumerError::ShutDown)?;
        // Commits re-check generations under this lock; none sees a half-made switch.
        let _g = self.commit_lock.lock();
        let old = self
            .part(tp)
            .filter(|p| p.is_current())
            .ok_or_else(|| ConsumerError::NotAssigned(tp.clone()))?;
        let tracker = PartitionTracker::new(offset, self.tracker_config)?;
        let generation = self.next_generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.install(PartState::new(
            tp.clone(),
            generation,
            tracker,
            me,
            old.client.clone(),
        ));
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Installs a partition state for `tp` without a Kafka client (tests drive it by hand).
    #[cfg(test)]
    pub fn install_local(
        self: &Arc<Self>,
        tp: TopicPartition,
        generation: Generation,
        tracker: PartitionTracker,
    ) -> Arc<PartState> {
        self.install(PartState::new(
            tp.clone(),
            generation,
            tracker,
            Arc::clone(self),
            None,
        ));
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.part(&tp).expect("just installed")
    }

    /// Makes `part` the partition's current state.
    fn install(&self, part: PartState) {
        let tp = part.tp.clone();
        if let Some(old) = self.parts.write().insert(tp, Arc::new(part)) {
            // Re-assigned without a revocation (not expected with the eager protocol): the
            // old generation's acks become stale.
            let _t = old.lock();
            old.released.store(true, Ordering::Release);
            old.buffer.lock().clear();
            old.gate.lock().clear();
        }
    }

    fn read_committed<C, X>(
        &self,
        consumer: &C,
        tpl: &TopicPartitionList,
        tps: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, OffsetAndMetadata>, ConsumerError>
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        let mut out = HashMap::new();
        match &self.storage {
            OffsetStorage::Kafka | OffsetStorage::KafkaTransactional(_) => {
                let got = consumer.committed_offsets(tpl.clone(), self.kafka_timeout)?;
                for e in got.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        let mut oam = OffsetAndMetadata::new(o, 0);
                        oam.metadata = e.metadata().to_string();
                        out.insert(TopicPartition::new(e.topic(), e.partition()), oam);
                    }
                }
            }
            OffsetStorage::External(s) | OffsetStorage::Transactional(s) => {
                let all = block_on(&self.handle, s.get_group(&self.group))
                    .ok_or(ConsumerError::ShutDown)??;
                for (tp, oam) in all {
                    if tps.contains(&tp) && matches!(oam.position, Position::Offset(_)) {
                        out.insert(tp, oam);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Handles a revocation: stops hand-outs, drains in-flight records (up to the drain
    /// timeout), commits the final positions (unless `lost`: the group already gave the
    /// partitions to someone else, so a commit would be refused), then forgets the partitions.
    pub fn revoke<C, X>(&self, consumer: &C, tps: &[TopicPartition], lost: bool)
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        self.counters.bump(
            &self.counters.rebalances,
            "waterline_consumer_rebalances_total",
        );
        let parts: Vec<(TopicPartition, Arc<PartState>)> = tps
            .iter()
            .filter_map(|tp| self.part(tp).map(|p| (tp.clone(), p)))
            .collect();
        // Records waiting for their key's turn are forgotten with the partition: they were
        // never in the application's hands, and the commit point has not passed them.
        let mut gated = 0u64;
        for (_, p) in &parts {
            p.revoking.store(true, Ordering::Release);
            p.buffer.lock().clear();
            p.waiting.store(0, Ordering::Release);
            gated += p.gate.lock().clear() as u64;
        }
        let deadline = Instant::now() + self.drain_timeout;
        let in_flight = || -> u64 {
            let n: u64 = parts.iter().map(|(_, p)| p.lock().in_flight()).sum();
            n.saturating_sub(gated)
        };
        // Acks of revoking partitions notify `drained`.
        self.wait_drained(deadline, || in_flight() == 0);
        // Exactly-once steps hold these locks until their transaction ended.
        let mut guards = Vec::new();
        for (_, p) in &parts {
            let left = deadline.saturating_duration_since(Instant::now());
            let lock = Arc::clone(&p.txn);
            let got = match lock.clone().try_lock_owned() {
                Ok(g) => Some(g),
                Err(_) => block_on(&self.handle, async move {
                    tokio::time::timeout(left, lock.lock_owned()).await.ok()
                })
                .flatten(),
            };
            guards.extend(got);
        }
        let abandoned = in_flight();
        let committed = {
            let _g = self.commit_lock.lock();
            let mut plan = self.snapshot(now_ms());
            plan.entries.retain(|e| tps.contains(&e.tp));
            plan.entries.retain(|e| {
                parts
                    .iter()
                    .any(|(tp, p)| *tp == e.tp && p.generation == e.generation)
            });
            let ok = if !self.final_commit || lost {
                false
            } else if self.is_kafka_txn() {
                // Everything acked, on every partition: outputs never go without offsets.
                self.commit_transaction(consumer, true)
            } else {
                self.commit_started(&plan);
                self.commit_plan(consumer, &plan)
            };
            let mut map = self.parts.write();
            for (tp, p) in &parts {
                // Under the tracker lock: an ack either lands before (and was part of the
                // state above) or sees `released` and counts as stale.
                let _t = p.lock();
                p.released.store(true, Ordering::Release);
                map.remove(tp);
            }
            self.epoch.fetch_add(1, Ordering::AcqRel);
            ok
        };
        drop(guards);
        if abandoned > 0 {
            tracing::warn!(abandoned, "drain timeout expired with records in flight");
        }
        tracing::info!(partitions = parts.len(), committed, "revoked");
        self.emit(ConsumerEvent::Revoked {
            partitions: parts.into_iter().map(|(tp, _)| tp).collect(),
            committed,
            abandoned_in_flight: abandoned,
        });
    }
}

fn kafka_commit<C, X>(
    consumer: &C,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
) -> Result<(), String>
where
    C: Consumer<X>,
    X: ConsumerContext + 'static,
{
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (tp, o) in offsets {
        let Some(n) = o.offset() else { continue };
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(n))
            .map_err(|e| e.to_string())?;
        if let Some(mut e) = tpl.find_partition(&tp.topic, tp.partition) {
            e.set_metadata(o.metadata.clone());
        }
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| e.to_string())
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

/// Log bounds and timestamp lookups through the Kafka client, for reset policies.
struct KafkaResolver<'a, C, X> {
    consumer: &'a C,
    timeout: Duration,
    _ctx: std::marker::PhantomData<X>,
}

impl<C, X> OffsetResolver for KafkaResolver<'_, C, X>
where
    C: Consumer<X>,
    X: ConsumerContext + 'static,
{
    type Error = rdkafka::error::KafkaError;

    fn earliest(&self, tp: &TopicPartition) -> Result<i64, Self::Error> {
        self.consumer
            .fetch_watermarks(&tp.topic, tp.partition, self.timeout)
            .map(|(lo, _)| lo)
    }
    fn latest(&self, tp: &TopicPartition) -> Result<i64, Self::Error> {
        self.consumer
            .fetch_watermarks(&tp.topic, tp.partition, self.timeout)
            .map(|(_, hi)| hi)
    }
    fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        ts_ms: i64,
    ) -> Result<Option<i64>, Self::Error> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ts_ms))?;
        let got = self.consumer.offsets_for_times(tpl, self.timeout)?;
        Ok(got
            .find_partition(&tp.topic, tp.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            }))
    }
}

/// The Kafka client's context: routes rebalances to [`Shared`].
pub(crate) struct Ctx {
    /// Weak: partition states hold the client, and `Shared` holds them.
    pub shared: Weak<Shared>,
}

impl ClientContext for Ctx {
    /// Client-wide errors: fatal ones stop the consumer (reported by `recv`), every broker
    /// being down starts the clock of `brokers_down_timeout`, the rest is logged (the client
    /// retries them itself).
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let shared = self.shared.upgrade();
        if let Some(fatal) = fatal_error(&error, reason) {
            match shared {
                Some(s) => s.fail(fatal),
                None => tracing::error!(error = %fatal, "fatal Kafka client error"),
            }
            return;
        }
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown)
            && let Some(s) = &shared
        {
            let _ = s.brokers_down_since.compare_exchange(
                0,
                now_ms().max(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        tracing::warn!(%error, reason, "Kafka client error; retrying");
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        base: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        // This runs inside `recv`'s poll, usually on a runtime worker, and blocks while
        // partitions drain and commit (up to the drain timeout): let the runtime move its
        // other tasks to other workers meanwhile.
        let multi_thread = Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(|| self.handle_rebalance(base, err, tpl));
        } else {
            self.handle_rebalance(base, err, tpl);
        }
    }
}

impl Ctx {
    fn handle_rebalance(
        &self,
        base: &rdkafka::consumer::BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::consumer::RebalanceProtocol;
        use rdkafka::types::RDKafkaRespErr as E;
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        // Gives up `tpl` in the client (all of the assignment under the eager protocol).
        let give_up = |tpl: &TopicPartitionList| {
            let r = if cooperative {
                base.incremental_unassign(tpl)
            } else {
                base.unassign()
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "giving up partitions failed");
            }
        };
        // Gone only while the client itself is being torn down: nothing left to hand out.
        let Some(shared) = self.shared.upgrade() else {
            if err != E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
                give_up(tpl);
            }
            return;
        };
        match err {
            E::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Cooperative: `tpl` holds only the partitions added.
                shared.assign(base, tpl);
                let r = if cooperative {
                    base.incremental_assign(tpl)
                } else {
                    base.assign(tpl)
                };
                if let Err(e) = r {
                    shared.fail(e.into());
                }
            }
            E::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Cooperative: only the partitions that move; eager: everything.
                let tps: Vec<TopicPartition> = if cooperative {
                    tpl.elements()
                        .iter()
                        .map(|e| TopicPartition::new(e.topic(), e.partition()))
                        .collect()
                } else {
                    shared.parts.read().keys().cloned().collect()
                };
                shared.revoke(base, &tps, base.assignment_lost());
                give_up(tpl);
            }
            _ => {
                tracing::error!(?err, "rebalance error; giving up the assignment");
                let tps: Vec<TopicPartition> = shared.parts.read().keys().cloned().collect();
                shared.revoke(base, &tps, base.assignment_lost());
                match base.assignment() {
                    Ok(all) if cooperative => give_up(&all),
                    _ => give_up(tpl),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use waterline_core::{Interval, ResetStrategy};

    use super::*;

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
