//! Assignment changes: assign (restore from committed offsets or the reset policy), revoke
//! (stop, drain, commit, give up), and seek (restart a partition at an offset).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use waterline_core::{
    OffsetAndMetadata, OffsetResolver, PartitionTracker, Position, TopicPartition,
};

use super::{PartState, Shared, block_on, now_ms};
use crate::config::OffsetStorage;
use crate::error::ConsumerError;
use crate::events::ConsumerEvent;

impl Shared {
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
        generation: waterline_core::Generation,
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
    pub(super) fn install(&self, part: PartState) {
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

    pub(super) fn read_committed<C, X>(
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
