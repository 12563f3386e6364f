//! Records handed to the application and their acknowledgement.

use std::sync::Arc;

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};
use serde::de::DeserializeOwned;
use waterline_core::{Generation, OffsetAndMetadata, TopicPartition};

use crate::error::ConsumerError;
use crate::shared::{PartState, Shared};

/// A consumed record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic and partition (shared by the partition's records: no copy per record).
    pub tp: Arc<TopicPartition>,
    /// Offset within the partition.
    pub offset: i64,
    /// Key, if any.
    pub key: Option<Vec<u8>>,
    /// Payload, if any (`None` is a tombstone).
    pub payload: Option<Vec<u8>>,
    /// Timestamp in ms since the Unix epoch, when the record has one.
    pub timestamp_ms: Option<i64>,
    /// Headers in order; a header value may be null.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// Copies `m` (its headers only if `headers`), whose partition the caller already knows
    /// as `tp`.
    pub(crate) fn from_message(
        m: &BorrowedMessage<'_>,
        tp: Arc<TopicPartition>,
        headers: bool,
    ) -> Self {
        let headers = if headers {
            m.headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Record {
            tp,
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers,
        }
    }

    /// Key plus payload length, for the bytes-consumed metric.
    pub(crate) fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len)
    }

    /// The payload deserialized from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ConsumerError> {
        let p = self
            .payload
            .as_deref()
            .ok_or_else(|| ConsumerError::NoPayload {
                tp: TopicPartition::clone(&self.tp),
                offset: self.offset,
            })?;
        serde_json::from_slice(p).map_err(|source| ConsumerError::Deserialize {
            tp: TopicPartition::clone(&self.tp),
            offset: self.offset,
            source,
        })
    }

    /// The payload as UTF-8 text, if it is.
    pub fn payload_str(&self) -> Option<&str> {
        self.payload
            .as_deref()
            .and_then(|p| std::str::from_utf8(p).ok())
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// A record handed out for processing, bound to the assignment generation it was handed out
/// under. Finish it with [`ack`](Self::ack) or [`nack`](Self::nack), in any order and from any
/// task; dropping it unfinished counts as a nack.
#[derive(Debug)]
pub struct Delivery {
    record: Record,
    generation: Generation,
    attempt: u32,
    shared: Arc<Shared>,
    /// The partition's state at hand-out (saves a lookup per ack).
    part: Option<Arc<PartState>>,
    done: bool,
}

impl Delivery {
    pub(crate) fn new(
        record: Record,
        generation: Generation,
        attempt: u32,
        shared: Arc<Shared>,
        part: Option<Arc<PartState>>,
    ) -> Self {
        Self {
            record,
            generation,
            attempt,
            shared,
            part,
            done: false,
        }
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Which delivery of this record this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The assignment generation the record was handed out under.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// Marks the record done. Returns `false` when the ack was dropped because the partition
    /// was revoked (or re-assigned) since the hand-out; the record is then processed again by
    /// the partition's new owner.
    pub fn ack(mut self) -> bool {
        self.done = true;
        self.shared.ack(
            &self.record.tp,
            self.record.offset,
            self.generation,
            self.part.as_ref(),
        )
    }

    /// Reports a failed attempt; the [`FailurePolicy`](crate::FailurePolicy) decides what
    /// follows (redelivery, dead-letter topic, or holding the partition).
    pub fn nack(mut self, reason: impl Into<String>) {
        self.done = true;
        let record = std::mem::replace(&mut self.record, empty_record());
        Shared::nack(
            &self.shared,
            record,
            self.generation,
            self.attempt,
            reason.into(),
        );
    }

    /// Starts an exactly-once step for this record
    /// ([`OffsetStorage::Transactional`](crate::OffsetStorage::Transactional)): waits for the partition's transaction lock and
    /// returns the offsets to write inside the application's transaction, computed as if this
    /// record were already done. Commit the transaction, then call
    /// [`TxnAck::committed`]; on failure call [`TxnAck::aborted`].
    ///
    /// Fails with [`ConsumerError::Revoked`] once the partition was revoked: the transaction
    /// must not run (the new owner processes the record).
    pub async fn begin_transaction(mut self) -> Result<TxnAck, ConsumerError> {
        let tp = TopicPartition::clone(&self.record.tp);
        let lock = self
            .shared
            .txn_lock(&tp, self.generation)
            .ok_or_else(|| ConsumerError::Revoked(tp.clone()))?;
        let guard = lock.lock_owned().await;
        // Re-check under the lock: a revocation takes every lock before giving partitions up.
        let offsets = self
            .shared
            .offsets_if_acked(&tp, self.record.offset, self.generation)
            .ok_or_else(|| ConsumerError::Revoked(tp.clone()))?;
        let record = std::mem::replace(&mut self.record, empty_record());
        self.done = true;
        Ok(TxnAck {
            delivery: Some(Delivery::new(
                record,
                self.generation,
                self.attempt,
                Arc::clone(&self.shared),
                self.part.take(),
            )),
            offsets: vec![(tp, offsets)],
            _guard: guard,
        })
    }
}

fn empty_record() -> Record {
    // Shared: a placeholder costs no allocation (it replaces records moved out of deliveries).
    static EMPTY_TP: std::sync::LazyLock<Arc<TopicPartition>> =
        std::sync::LazyLock::new(|| Arc::new(TopicPartition::new("", 0)));
    Record {
        tp: Arc::clone(&EMPTY_TP),
        offset: -1,
        key: None,
        payload: None,
        timestamp_ms: None,
        headers: Vec::new(),
    }
}

impl std::ops::Deref for Delivery {
    type Target = Record;
    fn deref(&self) -> &Record {
        &self.record
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.done {
            let record = std::mem::replace(&mut self.record, empty_record());
            Shared::nack(
                &self.shared,
                record,
                self.generation,
                self.attempt,
                "delivery dropped without ack".into(),
            );
        }
    }
}

/// An exactly-once step in progress: holds the partition's transaction lock, so steps on one
/// partition commit one after the other and revocation waits for them.
#[derive(Debug)]
pub struct TxnAck {
    delivery: Option<Delivery>,
    offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl TxnAck {
    /// The record.
    pub fn record(&self) -> &Record {
        self.delivery
            .as_ref()
            .map(Delivery::record)
            .unwrap_or_else(|| unreachable_record())
    }

    /// The group id to commit under.
    pub fn group(&self) -> &str {
        self.delivery
            .as_ref()
            .map(|d| d.shared.group.as_str())
            .unwrap_or("")
    }

    /// The offsets to write in the application's transaction (e.g. with
    /// `PostgresStore::commit_in`).
    pub fn offsets(&self) -> &[(TopicPartition, OffsetAndMetadata)] {
        &self.offsets
    }

    /// The transaction committed: the record is done.
    pub fn committed(mut self) {
        if let Some(d) = self.delivery.take() {
            let shared = Arc::clone(&d.shared);
            if d.ack_committed(&self.offsets) {
                // The application's transaction was the commit; count it as one.
                shared.counters.commit(true, 0);
            }
        }
    }

    /// The transaction rolled back: the record failed this attempt.
    pub fn aborted(mut self, reason: impl Into<String>) {
        if let Some(d) = self.delivery.take() {
            d.nack(reason);
        }
    }
}

impl Drop for TxnAck {
    fn drop(&mut self) {
        if let Some(d) = self.delivery.take() {
            d.nack("transaction step dropped");
        }
    }
}

fn unreachable_record() -> &'static Record {
    static EMPTY: std::sync::OnceLock<Record> = std::sync::OnceLock::new();
    EMPTY.get_or_init(empty_record)
}

impl Delivery {
    /// Acks after the application's transaction made `offsets` durable, and records that
    /// commit with the tracker so later commits know where the store stands.
    fn ack_committed(mut self, offsets: &[(TopicPartition, OffsetAndMetadata)]) -> bool {
        self.done = true;
        let ok = self.shared.ack(
            &self.record.tp,
            self.record.offset,
            self.generation,
            self.part.as_ref(),
        );
        if ok {
            for (tp, o) in offsets {
                if let Some(off) = o.offset() {
                    self.shared.with_partition(tp, |t| {
                        t.commit_succeeded(off);
                    });
                }
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(payload: Option<&[u8]>) -> Record {
        Record {
            tp: Arc::new(TopicPartition::new("t", 1)),
            offset: 7,
            key: Some(b"k".to_vec()),
            payload: payload.map(<[u8]>::to_vec),
            timestamp_ms: Some(5),
            headers: vec![("a".into(), Some(b"1".to_vec())), ("n".into(), None)],
        }
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u32,
    }

    #[test]
    fn json_payloads() {
        assert_eq!(
            rec(Some(br#"{"id":3}"#)).json::<Order>().unwrap(),
            Order { id: 3 }
        );
        let err = rec(Some(b"nope")).json::<Order>().unwrap_err();
        assert!(
            matches!(err, ConsumerError::Deserialize { offset: 7, .. }),
            "{err}"
        );
        let err = rec(None).json::<Order>().unwrap_err();
        assert!(matches!(err, ConsumerError::NoPayload { offset: 7, .. }));
    }

    #[test]
    fn headers_text_and_size() {
        let r = rec(Some(b"hello"));
        assert_eq!(r.header("a"), Some(&b"1"[..]));
        assert_eq!(r.header("n"), None);
        assert_eq!(r.header("zz"), None);
        assert_eq!(r.payload_str(), Some("hello"));
        assert_eq!(rec(Some(&[0xff])).payload_str(), None);
        assert_eq!(r.size(), 6);
    }
}
