//! Records handed to the application and their acknowledgement.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use waterline_core::{Generation, OffsetAndMetadata, TopicPartition};

use crate::error::ConsumerError;
use crate::gate::Slot;
use crate::native::{Fetched, header_at};
use crate::shared::{PartState, Shared};
use crate::txn::OutputRecord;

/// A consumed record.
///
/// A fetched record is read in place in the Kafka client's fetch buffer (no copy), so holding
/// it keeps that buffer in memory until the record is dropped; [`Clone`] makes an owned copy.
/// Records can also be built by hand ([`Record::new`]), e.g. to test processing code.
pub struct Record {
    // Declared first: a fetched body is dropped before `source`, whose partition state keeps
    // the client it was fetched by alive (see `native`).
    body: Body,
    source: Source,
    offset: i64,
}

enum Body {
    Fetched(Fetched),
    Owned(Box<Owned>),
}

#[derive(Clone, Default)]
struct Owned {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    /// `headers` in librdkafka's form, built on first use by [`rdkafka::Message::headers`].
    native_headers: std::sync::OnceLock<Option<rdkafka::message::OwnedHeaders>>,
}

/// Where a record came from.
#[derive(Clone)]
enum Source {
    /// Fetched for an assigned partition (the state it is acknowledged through).
    Part(Arc<PartState>),
    /// Built by hand, or a placeholder.
    Detached(Arc<TopicPartition>),
}

impl Record {
    /// A record of `tp` at `offset` with no key, payload, timestamp or headers; add them with
    /// the `with_*` methods.
    pub fn new(tp: TopicPartition, offset: i64) -> Self {
        Self {
            body: Body::Owned(Box::default()),
            source: Source::Detached(Arc::new(tp)),
            offset,
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.owned_mut().key = Some(key.into());
        self
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.owned_mut().payload = Some(payload.into());
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    pub fn with_timestamp_ms(mut self, ts: i64) -> Self {
        self.owned_mut().timestamp_ms = Some(ts);
        self
    }

    /// Appends a header (`None`: a null value).
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.owned_mut().headers.push((key.into(), value));
        self
    }

    /// A fetched message of `part`. Read in place when `part` holds the client the message
    /// came from (always, outside tests); copied otherwise, which keeps the rule of `native`.
    pub(crate) fn fetched(m: Fetched, part: Arc<PartState>) -> Self {
        let offset = m.offset();
        let body = if part.client.as_ref().is_some_and(|c| m.client_is(c)) {
            Body::Fetched(m)
        } else {
            Body::Owned(Box::new(copy_of(&m)))
        };
        Self {
            body,
            source: Source::Part(part),
            offset,
        }
    }

    /// A record of `part` with an owned payload, as if fetched.
    #[cfg(test)]
    pub(crate) fn of_part(part: &Arc<PartState>, offset: i64) -> Self {
        Self {
            body: Body::Owned(Box::new(Owned {
                payload: Some(b"x".to_vec()),
                ..Owned::default()
            })),
            source: Source::Part(Arc::clone(part)),
            offset,
        }
    }

    /// Copies a fetched body out of the client's buffer (before a long wait, so a retried
    /// record does not keep a whole fetch response in memory).
    pub(crate) fn detach(&mut self) {
        if let Body::Fetched(m) = &self.body {
            self.body = Body::Owned(Box::new(copy_of(m)));
        }
    }

    fn owned_mut(&mut self) -> &mut Owned {
        self.detach();
        match &mut self.body {
            Body::Owned(o) => {
                // Edited from here on: the native copy of the headers may go stale.
                o.native_headers = std::sync::OnceLock::new();
                o
            }
            Body::Fetched(_) => unreachable!("detached above"),
        }
    }

    /// The partition state the record is acknowledged through (`None` for hand-built records).
    pub(crate) fn part(&self) -> Option<&Arc<PartState>> {
        match &self.source {
            Source::Part(p) => Some(p),
            Source::Detached(_) => None,
        }
    }

    /// Topic and partition.
    pub fn tp(&self) -> &TopicPartition {
        match &self.source {
            Source::Part(p) => &p.tp,
            Source::Detached(tp) => tp,
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.tp().topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.tp().partition
    }

    /// Offset within the partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Fetched(m) => m.key(),
            Body::Owned(o) => o.key.as_deref(),
        }
    }

    /// Payload, if any (`None` is a tombstone).
    pub fn payload(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Fetched(m) => m.payload(),
            Body::Owned(o) => o.payload.as_deref(),
        }
    }

    /// Timestamp in ms since the Unix epoch, when the record has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        match &self.body {
            Body::Fetched(m) => m.timestamp_ms(),
            Body::Owned(o) => o.timestamp_ms,
        }
    }

    /// Headers in order, as key and value (a value may be null). Parsed on first use.
    pub fn headers(&self) -> RecordHeaders<'_> {
        RecordHeaders {
            record: self,
            native: match &self.body {
                Body::Fetched(m) => m.headers(),
                Body::Owned(_) => None,
            },
            next: 0,
        }
    }

    /// The first header named `key`, if it has a value.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers().find(|(k, _)| *k == key).and_then(|(_, v)| v)
    }

    /// The payload, mutable (copied out of the client's buffer first if fetched).
    pub(crate) fn payload_owned_mut(&mut self) -> Option<&mut [u8]> {
        self.owned_mut().payload.as_deref_mut()
    }

    /// The timestamp with its type, as rdkafka reports it.
    pub(crate) fn kafka_timestamp(&self) -> rdkafka::Timestamp {
        match &self.body {
            Body::Fetched(m) => m.timestamp(),
            Body::Owned(o) => o.timestamp_ms.map_or(
                rdkafka::Timestamp::NotAvailable,
                rdkafka::Timestamp::CreateTime,
            ),
        }
    }

    /// The headers in librdkafka's form (`None`: no headers).
    pub(crate) fn kafka_headers(&self) -> Option<&rdkafka::message::BorrowedHeaders> {
        match &self.body {
            Body::Fetched(m) => m.headers(),
            Body::Owned(o) => o
                .native_headers
                .get_or_init(|| {
                    (!o.headers.is_empty()).then(|| {
                        o.headers.iter().fold(
                            rdkafka::message::OwnedHeaders::new_with_capacity(o.headers.len()),
                            |h, (key, value)| {
                                h.insert(rdkafka::message::Header {
                                    key,
                                    value: value.as_deref(),
                                })
                            },
                        )
                    })
                })
                .as_ref()
                .map(rdkafka::message::OwnedHeaders::as_borrowed),
        }
    }

    /// Key plus payload length, for the bytes-consumed metric.
    pub(crate) fn size(&self) -> usize {
        match &self.body {
            Body::Fetched(m) => m.size(),
            Body::Owned(o) => {
                o.key.as_ref().map_or(0, Vec::len) + o.payload.as_ref().map_or(0, Vec::len)
            }
        }
    }

    /// The payload deserialized from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ConsumerError> {
        let p = self.payload().ok_or_else(|| ConsumerError::NoPayload {
            tp: self.tp().clone(),
            offset: self.offset,
        })?;
        serde_json::from_slice(p).map_err(|cause| ConsumerError::Deserialize {
            tp: self.tp().clone(),
            offset: self.offset,
            cause,
        })
    }

    /// The payload as UTF-8 text, if it is.
    pub fn payload_str(&self) -> Option<&str> {
        self.payload().and_then(|p| std::str::from_utf8(p).ok())
    }
}

fn copy_of(m: &Fetched) -> Owned {
    Owned {
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        timestamp_ms: m.timestamp_ms(),
        headers: m
            .headers()
            .map(|h| {
                (0..)
                    .map_while(|i| header_at(h, i))
                    .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
        native_headers: std::sync::OnceLock::new(),
    }
}

/// Iterator over a record's headers: `(key, value)`.
pub struct RecordHeaders<'a> {
    record: &'a Record,
    native: Option<&'a rdkafka::message::BorrowedHeaders>,
    next: usize,
}

impl<'a> Iterator for RecordHeaders<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        let item = match (&self.record.body, self.native) {
            (Body::Fetched(_), Some(h)) => header_at(h, i),
            (Body::Fetched(_), None) => None,
            (Body::Owned(o), _) => o.headers.get(i).map(|(k, v)| (k.as_str(), v.as_deref())),
        };
        if item.is_some() {
            self.next += 1;
        }
        item
    }
}

impl Clone for Record {
    /// An owned copy (a fetched body is copied out of the client's buffer).
    fn clone(&self) -> Self {
        let body = match &self.body {
            Body::Fetched(m) => Body::Owned(Box::new(copy_of(m))),
            Body::Owned(o) => Body::Owned(o.clone()),
        };
        Self {
            body,
            source: self.source.clone(),
            offset: self.offset,
        }
    }
}

impl PartialEq for Record {
    /// Same partition, offset, key, payload, timestamp and headers.
    fn eq(&self, other: &Self) -> bool {
        self.tp() == other.tp()
            && self.offset == other.offset
            && self.key() == other.key()
            && self.payload() == other.payload()
            && self.timestamp_ms() == other.timestamp_ms()
            && self.headers().eq(other.headers())
    }
}

impl Eq for Record {}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("tp", self.tp())
            .field("offset", &self.offset)
            .field("key_len", &self.key().map(<[u8]>::len))
            .field("payload_len", &self.payload().map(<[u8]>::len))
            .field("timestamp_ms", &self.timestamp_ms())
            .finish_non_exhaustive()
    }
}

/// A record handed out for processing, bound to the assignment generation it was handed out
/// under. Finish it with [`ack`](Self::ack) or [`nack`](Self::nack), in any order and from any
/// task; dropping it unfinished counts as a nack.
#[derive(Debug)]
pub struct Delivery {
    record: Record,
    attempt: u32,
    done: bool,
    /// Outputs to commit with this record (Kafka-transactional mode).
    outputs: Vec<OutputRecord>,
    /// The key slot this delivery holds (ordered modes): given back when the record is done,
    /// carried along when it is retried.
    slot: Option<Slot>,
    /// Counted in the consumer's `active` deliveries (only with a concurrency limit).
    counted: bool,
}

impl Delivery {
    /// `record` must come from a partition (`Record::fetched`). Counts against the global
    /// concurrency limit until finished.
    pub(crate) fn new(record: Record, attempt: u32, slot: Option<Slot>) -> Self {
        let counted = record.part().is_some_and(|p| {
            let counted = p.shared.max_concurrency.is_some();
            if counted {
                p.shared
                    .active
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            counted
        });
        Self {
            record,
            attempt,
            done: false,
            outputs: Vec::new(),
            slot,
            counted,
        }
    }

    /// Marks the delivery finished (once): it no longer counts against the concurrency limit.
    fn settle(&mut self) {
        self.done = true;
        if std::mem::take(&mut self.counted)
            && let Some(p) = self.record.part()
        {
            p.shared.delivery_finished();
        }
    }

    /// Gives the key slot back (the record is done for good).
    fn leave_gate(&mut self) {
        if let (Some(s), Some(p)) = (self.slot.take(), self.record.part()) {
            p.leave_gate(s);
        }
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The key slot this delivery holds (ordered modes).
    pub(crate) fn slot(&self) -> Option<Slot> {
        self.slot
    }

    /// Which delivery of this record this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The assignment generation the record was handed out under.
    pub fn generation(&self) -> Generation {
        self.record.part().map_or(0, |p| p.generation)
    }

    /// Marks the record done. Returns `false` when the ack was dropped because the partition
    /// was revoked (or re-assigned) since the hand-out; the record is then processed again by
    /// the partition's new owner.
    ///
    /// With [`OffsetStorage::KafkaTransactional`](crate::OffsetStorage::KafkaTransactional),
    /// the outputs given to [`produce`](Self::produce) go with the ack: they are committed in
    /// the same Kafka transaction as the offsets that mark this record done.
    pub fn ack(mut self) -> bool {
        self.settle();
        let outputs = std::mem::take(&mut self.outputs);
        let ok = self
            .record
            .part()
            .is_some_and(|p| p.ack_with(self.record.offset, outputs));
        // After the ack: the key's next record starts only once this one is done.
        self.leave_gate();
        ok
    }

    /// Adds an output of this record
    /// ([`OffsetStorage::KafkaTransactional`](crate::OffsetStorage::KafkaTransactional)).
    /// Nothing is sent yet: the output is produced in the Kafka transaction that commits this
    /// record's offset, after [`ack`](Self::ack). A nack, or dropping the delivery, discards
    /// the outputs (a redelivery starts with none), so an output becomes visible to
    /// `read_committed` readers exactly when its input is committed as done.
    ///
    /// Fails with [`ConsumerError::NotKafkaTransactional`] in the other modes.
    pub fn produce(&mut self, output: OutputRecord) -> Result<(), ConsumerError> {
        let transactional = self
            .record
            .part()
            .is_some_and(|p| p.shared.txn_producer.is_some());
        if !transactional {
            return Err(ConsumerError::NotKafkaTransactional);
        }
        self.outputs.push(output);
        Ok(())
    }

    /// The outputs given to [`produce`](Self::produce) so far.
    pub fn outputs(&self) -> &[OutputRecord] {
        &self.outputs
    }

    /// Reports a failed attempt; the [`FailurePolicy`](crate::FailurePolicy) decides what
    /// follows (redelivery, dead-letter topic, or holding the partition).
    pub fn nack(mut self, reason: impl Into<String>) {
        self.settle();
        let record = std::mem::replace(&mut self.record, placeholder());
        Shared::nack(record, self.attempt, self.slot.take(), reason.into());
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
        let revoked = || ConsumerError::Revoked(self.record.tp().clone());
        let part = match self.record.part() {
            Some(p) if p.is_current() => Arc::clone(p),
            _ => return Err(revoked()),
        };
        let guard = Arc::clone(&part.txn).lock_owned().await;
        // Re-check under the lock: a revocation takes every lock before giving partitions up.
        let offsets = part
            .offsets_if_acked(self.record.offset)
            .ok_or_else(revoked)?;
        self.settle();
        let record = std::mem::replace(&mut self.record, placeholder());
        Ok(TxnAck {
            offsets: vec![(record.tp().clone(), offsets)],
            delivery: Some(Delivery::new(record, self.attempt, self.slot.take())),
            _guard: guard,
        })
    }
}

/// A delivery's bookkeeping while its record is lent to a processing function
/// ([`Consumer::process`](crate::Consumer::process)); [`Delivery::rejoin`] makes the delivery
/// whole again to finish it.
#[derive(Debug)]
pub(crate) struct Ticket {
    attempt: u32,
    slot: Option<Slot>,
    counted: bool,
}

impl Delivery {
    /// Splits the record from its bookkeeping, finishing nothing: the ticket must be rejoined
    /// with the record ([`Delivery::rejoin`]) and the delivery acked or nacked.
    pub(crate) fn lend(mut self) -> (Record, Ticket) {
        self.done = true;
        let record = std::mem::replace(&mut self.record, placeholder());
        let ticket = Ticket {
            attempt: self.attempt,
            slot: self.slot.take(),
            counted: std::mem::take(&mut self.counted),
        };
        (record, ticket)
    }

    /// The delivery [`lend`](Self::lend) split, whole again.
    pub(crate) fn rejoin(record: Record, t: Ticket) -> Self {
        Self {
            record,
            attempt: t.attempt,
            done: false,
            outputs: Vec::new(),
            slot: t.slot,
            counted: t.counted,
        }
    }
}

/// What replaces a record moved out of a delivery (only on the nack and transaction paths).
fn placeholder() -> Record {
    static EMPTY_TP: std::sync::LazyLock<Arc<TopicPartition>> =
        std::sync::LazyLock::new(|| Arc::new(TopicPartition::new("", 0)));
    Record {
        body: Body::Owned(Box::default()),
        source: Source::Detached(Arc::clone(&EMPTY_TP)),
        offset: -1,
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
            self.settle();
            let record = std::mem::replace(&mut self.record, placeholder());
            let slot = self.slot.take();
            Shared::nack(
                record,
                self.attempt,
                slot,
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
            .and_then(|d| d.record.part())
            .map_or("", |p| p.shared.group.as_str())
    }

    /// The offsets to write in the application's transaction (e.g. with
    /// `PostgresStore::commit_in`).
    pub fn offsets(&self) -> &[(TopicPartition, OffsetAndMetadata)] {
        &self.offsets
    }

    /// The transaction committed: the record is done.
    pub fn committed(mut self) {
        if let Some(d) = self.delivery.take() {
            let part = d.record.part().cloned();
            if d.ack_committed(&self.offsets)
                && let Some(p) = part
            {
                // The application's transaction was the commit; count it as one.
                p.shared.counters.commit(true, 0);
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
    EMPTY.get_or_init(placeholder)
}

impl Delivery {
    /// Acks after the application's transaction made `offsets` durable, and records that
    /// commit with the tracker so later commits know where the store stands.
    fn ack_committed(mut self, offsets: &[(TopicPartition, OffsetAndMetadata)]) -> bool {
        self.settle();
        let Some(p) = self.record.part().cloned() else {
            return false;
        };
        let ok = p.ack(self.record.offset);
        if ok {
            for (_, o) in offsets {
                if let Some(off) = o.offset() {
                    p.lock().commit_succeeded(off);
                }
            }
        }
        self.leave_gate();
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(payload: Option<&[u8]>) -> Record {
        let r = Record::new(TopicPartition::new("t", 1), 7)
            .with_key(b"k".to_vec())
            .with_timestamp_ms(5)
            .with_header("a", Some(b"1".to_vec()))
            .with_header("n", None);
        match payload {
            Some(p) => r.with_payload(p),
            None => r,
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
        let h: Vec<_> = r.headers().collect();
        assert_eq!(h, vec![("a", Some(&b"1"[..])), ("n", None)]);
        assert_eq!((r.topic(), r.partition(), r.offset()), ("t", 1, 7));
        assert_eq!(r.timestamp_ms(), Some(5));
        assert_eq!(r.clone(), r, "a clone is equal");
        assert!(
            r.part().is_none(),
            "hand-built records have no partition state"
        );
    }
}
