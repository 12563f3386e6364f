//! Writing offsets: to the Kafka group, to an external store, or in a Kafka transaction with
//! the outputs of the acks they cover. Every commit runs under `commit_lock`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::MutexGuard;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use waterline_core::{CommitPlan, OffsetAndMetadata, PlanInput, TopicPartition};

use super::{PartState, Shared, block_on, now_ms};
use crate::config::OffsetStorage;
use crate::error::ConsumerError;
use crate::events::ConsumerEvent;
use crate::txn::{OutputRecord, TxnFailure};

impl Shared {
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
                let (error, fatal) = match failure {
                    TxnFailure::Fatal(e) => (e.to_string(), Some(e)),
                    TxnFailure::Aborted(reason) => {
                        let n = producer.aborts.fetch_add(1, Ordering::AcqRel) + 1;
                        let fatal = (n >= producer.max_aborts).then(|| {
                            producer.dead.store(true, Ordering::Release);
                            ConsumerError::TransactionAborted {
                                attempts: n,
                                reason: reason.clone(),
                            }
                        });
                        (reason, fatal)
                    }
                };
                tracing::warn!(%error, "commit transaction failed");
                // The event first: an application that sees the fatal error from `recv` has
                // already been told about every failed attempt.
                self.emit(ConsumerEvent::CommitFailed { error });
                if let Some(e) = fatal {
                    self.fail(e);
                }
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
