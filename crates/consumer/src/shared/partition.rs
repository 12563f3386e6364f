//! One assigned partition's state: its tracker (behind the lock that records lock-free
//! hand-outs first), its buffers and key gate, and acknowledgements.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};
use waterline_core::{AckOutcome, Generation, OffsetAndMetadata, PartitionTracker, TopicPartition};

use super::{Shared, now_ms};
use crate::config::Ordering as Order;
use crate::delivery::Record;
use crate::gate::{Gate, PARTITION_SLOT, Slot, key_slot};
use crate::native::Client;
use crate::txn::OutputRecord;

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
    pub(super) tracker: Mutex<Tracked>,
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
    pub(super) fn new(
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
