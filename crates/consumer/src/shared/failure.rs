//! Failure handling: nacks, retries with backoff, holding, and the dead-letter topic.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use super::{Redelivery, Shared};
use crate::config::Exhausted;
use crate::delivery::Record;
use crate::error::fatal_error;
use crate::gate::Slot;

impl Shared {
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

    pub(super) fn schedule(
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

    pub(super) fn dead_letter(
        this: &Arc<Self>,
        record: Record,
        slot: Option<Slot>,
        reason: String,
    ) {
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
}
