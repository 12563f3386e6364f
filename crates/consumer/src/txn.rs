//! The Kafka-transactional mode: outputs and offsets committed in one Kafka transaction.
//!
//! Design (outputs ride with their acks): [`Delivery::produce`](crate::Delivery::produce)
//! only buffers an output in the delivery. [`Delivery::ack`](crate::Delivery::ack) moves the
//! buffered outputs into the partition's state *under the tracker lock, in the same step as
//! the ack*; a nack or a dropped delivery discards them. A commit takes, partition by
//! partition under the same lock, the tracker's commit point (with the `wl1:` metadata) and
//! exactly the outputs of the records that commit point covers, then runs one transaction:
//! `begin`, produce the outputs, `send_offsets_to_transaction` (with the consumer's group
//! metadata), `commit`. So an output reaches a committed transaction only together with its
//! input's offset, and an input's offset only together with its outputs:
//! - a crash or an aborted transaction leaves neither visible (read_committed), and the input
//!   is processed again;
//! - a record still in flight, nacked or dropped at commit time has nothing in the
//!   transaction.
//!
//! A failed transaction is aborted and its outputs are put back in front of their
//! partitions' buffers, to be committed by the next attempt (with the newer offsets), unless
//! the partition was revoked meanwhile (then the new owner processes the inputs again).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use waterline_core::{OffsetAndMetadata, TopicPartition};

use crate::error::ConsumerError;

/// Settings of the Kafka-transactional mode
/// ([`OffsetStorage::KafkaTransactional`](crate::OffsetStorage::KafkaTransactional)).
///
/// The transactional id is `"{prefix}-{instance}"`. Kafka's KIP-447 model (brokers 2.5+, and
/// `waterline serve`): the consumer's group metadata goes with every
/// `send_offsets_to_transaction`, so the group coordinator fences a zombie by its group
/// generation, and one transactional id per *process* is enough, whatever partitions it owns.
/// Give every concurrently running process its own `instance` and keep it stable across
/// restarts (e.g. a pod or host name): a restarted process then aborts its predecessor's open
/// transaction at once instead of waiting for its timeout. Two live processes with the same
/// id fence each other: the older one fails with [`ConsumerError::Fenced`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTransactions {
    pub(crate) prefix: String,
    pub(crate) instance: String,
    pub(crate) transaction_timeout: Duration,
    pub(crate) max_aborts: u32,
    pub(crate) properties: Vec<(String, String)>,
}

impl KafkaTransactions {
    /// Transactional id `"{prefix}-{instance}"`. Defaults: 60 s transaction timeout, at most 5
    /// aborted commit attempts in a row.
    pub fn new(prefix: impl Into<String>, instance: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            instance: instance.into(),
            transaction_timeout: Duration::from_secs(60),
            max_aborts: 5,
            properties: Vec::new(),
        }
    }

    /// The producer's `transaction.timeout.ms`: the broker aborts a transaction left open
    /// longer (a transaction here lasts one commit).
    pub fn transaction_timeout(mut self, d: Duration) -> Self {
        self.transaction_timeout = d;
        self
    }

    /// Commit attempts that may abort in a row (each is retried with the same outputs) before
    /// the consumer stops with [`ConsumerError::TransactionAborted`] (default 5, >= 1).
    pub fn max_aborts(mut self, n: u32) -> Self {
        self.max_aborts = n;
        self
    }

    /// Sets a librdkafka property of the transactional producer (e.g. `compression.type`),
    /// applied after the connection properties it shares with the consumer. Waterline owns
    /// `transactional.id`, `bootstrap.servers` and `transaction.timeout.ms`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The transactional id: `"{prefix}-{instance}"`.
    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.prefix, self.instance)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.prefix.is_empty() || self.instance.is_empty() {
            return Err("transactional id prefix and instance must not be empty".into());
        }
        if self.max_aborts == 0 {
            return Err("max_aborts must be >= 1".into());
        }
        let ms = self.transaction_timeout.as_millis();
        if ms == 0 || ms > i32::MAX as u128 {
            return Err("transaction timeout must be between 1 ms and i32::MAX ms".into());
        }
        for (k, _) in &self.properties {
            if matches!(
                k.as_str(),
                "transactional.id" | "bootstrap.servers" | "transaction.timeout.ms"
            ) {
                return Err(format!("producer property {k} is set by Waterline"));
            }
        }
        Ok(())
    }
}

/// A record to produce in the transaction that commits its input
/// (see [`Delivery::produce`](crate::Delivery::produce)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    timestamp_ms: Option<i64>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl OutputRecord {
    /// A record for `topic`, with no key, payload (a tombstone until set), timestamp or
    /// headers; the partition is chosen by the producer's partitioner unless set.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: None,
            payload: None,
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = Some(payload.into());
        self
    }

    /// Sends to this partition instead of the partitioner's choice.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    pub fn with_timestamp_ms(mut self, ts: i64) -> Self {
        self.timestamp_ms = Some(ts);
        self
    }

    /// Appends a header (`None`: a null value).
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Vec<u8>>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The payload, if set.
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    /// The key, if set.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
}

/// Why a transaction did not commit.
pub(crate) enum TxnFailure {
    /// Aborted (or never begun): nothing of it is visible; may be retried.
    Aborted(String),
    /// The producer cannot go on (fenced, or another fatal error); stop the consumer.
    Fatal(ConsumerError),
}

/// The transactional producer a consumer owns, and its failure count.
pub(crate) struct TxnProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    transactional_id: String,
    timeout: Duration,
    pub max_aborts: u32,
    /// Aborted commit attempts in a row.
    pub aborts: AtomicU32,
    /// Set after a fatal error: no transaction is attempted any more.
    pub dead: AtomicBool,
}

impl std::fmt::Debug for TxnProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxnProducer")
            .field("transactional_id", &self.transactional_id)
            .finish_non_exhaustive()
    }
}

impl TxnProducer {
    /// Creates the producer and runs `init_transactions`, which fences any earlier producer
    /// with the same transactional id and completes or aborts its open transaction. Blocks
    /// for up to `timeout`.
    pub fn start(
        bootstrap: &str,
        settings: &KafkaTransactions,
        connection: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Self, ConsumerError> {
        let transactional_id = settings.transactional_id();
        let mut pc = ClientConfig::new();
        pc.set("bootstrap.servers", bootstrap);
        for (k, v) in connection {
            pc.set(*k, *v);
        }
        for (k, v) in &settings.properties {
            pc.set(k, v);
        }
        pc.set("transactional.id", &transactional_id).set(
            "transaction.timeout.ms",
            settings.transaction_timeout.as_millis().to_string(),
        );
        let producer: ThreadedProducer<DefaultProducerContext> = pc.create()?;
        producer
            .init_transactions(timeout)
            .map_err(|e| classify(&transactional_id, e, "init_transactions"))
            .map_err(|f| match f {
                TxnFailure::Fatal(e) => e,
                TxnFailure::Aborted(reason) => ConsumerError::TransactionAborted {
                    attempts: 1,
                    reason,
                },
            })?;
        Ok(Self {
            producer,
            transactional_id,
            timeout,
            max_aborts: settings.max_aborts,
            aborts: AtomicU32::new(0),
            dead: AtomicBool::new(false),
        })
    }

    /// One transaction: `outputs`, then `offsets` for `consumer`'s group, then commit. Any
    /// failure short of a fatal one aborts it.
    pub fn run<C, X>(
        &self,
        consumer: &C,
        outputs: &[&OutputRecord],
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), TxnFailure>
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        if self.dead.load(Ordering::Acquire) {
            return Err(TxnFailure::Aborted(
                "the transactional producer failed earlier".into(),
            ));
        }
        let r = self.try_run(consumer, outputs, offsets);
        if let Err(TxnFailure::Fatal(_)) = &r {
            self.dead.store(true, Ordering::Release);
        }
        r
    }

    fn try_run<C, X>(
        &self,
        consumer: &C,
        outputs: &[&OutputRecord],
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), TxnFailure>
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        let id = &self.transactional_id;
        self.producer
            .begin_transaction()
            .map_err(|e| classify(id, e, "begin_transaction"))?;
        let r = self.fill_and_commit(consumer, outputs, offsets);
        match r {
            Ok(()) => Ok(()),
            Err(TxnFailure::Fatal(e)) => Err(TxnFailure::Fatal(e)),
            Err(TxnFailure::Aborted(reason)) => match self.producer.abort_transaction(self.timeout)
            {
                Ok(()) => Err(TxnFailure::Aborted(reason)),
                Err(e) => match classify(id, e, "abort_transaction") {
                    TxnFailure::Fatal(e) => Err(TxnFailure::Fatal(e)),
                    // The transaction is in an unknown state: the producer cannot begin
                    // another one safely.
                    TxnFailure::Aborted(r) => {
                        Err(TxnFailure::Fatal(ConsumerError::TransactionFatal(format!(
                            "aborting after \"{reason}\" failed: {r}"
                        ))))
                    }
                },
            },
        }
    }

    fn fill_and_commit<C, X>(
        &self,
        consumer: &C,
        outputs: &[&OutputRecord],
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), TxnFailure>
    where
        C: Consumer<X>,
        X: ConsumerContext + 'static,
    {
        let id = &self.transactional_id;
        for o in outputs {
            self.send(o)?;
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (tp, o) in offsets {
            let Some(n) = o.offset() else { continue };
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(n))
                .map_err(|e| TxnFailure::Aborted(e.to_string()))?;
            if let Some(mut e) = tpl.find_partition(&tp.topic, tp.partition) {
                e.set_metadata(o.metadata.clone());
            }
        }
        if tpl.count() > 0 {
            let cgm = consumer
                .group_metadata()
                .ok_or_else(|| TxnFailure::Aborted("the consumer has no group metadata".into()))?;
            self.retrying(|| {
                self.producer
                    .send_offsets_to_transaction(&tpl, &cgm, self.timeout)
                    .map_err(|e| classify(id, e, "send_offsets_to_transaction"))
            })?;
        }
        self.retrying(|| {
            self.producer
                .commit_transaction(self.timeout)
                .map_err(|e| classify(id, e, "commit_transaction"))
        })
    }

    /// Runs `f` again (up to 3 times) while it fails with a retriable error.
    fn retrying(&self, f: impl Fn() -> Result<(), Retry>) -> Result<(), TxnFailure> {
        let mut tries = 0;
        loop {
            match f() {
                Ok(()) => return Ok(()),
                Err(Retry::Again(reason)) => {
                    tries += 1;
                    if tries >= 3 {
                        return Err(TxnFailure::Aborted(reason));
                    }
                    std::thread::sleep(Duration::from_millis(50 * tries));
                }
                Err(Retry::Fail(f)) => return Err(f),
            }
        }
    }

    fn send(&self, o: &OutputRecord) -> Result<(), TxnFailure> {
        let mut headers = OwnedHeaders::new_with_capacity(o.headers.len());
        for (key, value) in &o.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&o.topic).headers(headers);
        if let Some(p) = o.partition {
            rec = rec.partition(p);
        }
        if let Some(k) = &o.key {
            rec = rec.key(k);
        }
        if let Some(p) = &o.payload {
            rec = rec.payload(p);
        }
        if let Some(ts) = o.timestamp_ms {
            rec = rec.timestamp(ts);
        }
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if std::time::Instant::now() < deadline =>
                {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    return Err(TxnFailure::Aborted(format!(
                        "cannot produce to {}: {e}",
                        o.topic
                    )));
                }
            }
        }
    }
}

/// What a failed transactional call means.
enum Retry {
    /// Retriable: call again.
    Again(String),
    /// Not retriable.
    Fail(TxnFailure),
}

impl From<TxnFailure> for Retry {
    fn from(f: TxnFailure) -> Self {
        Retry::Fail(f)
    }
}

/// Sorts a transactional call's error into retriable, abortable and fatal.
fn classify<T: From<TxnFailure> + FromRetriable>(id: &str, e: KafkaError, call: &str) -> T {
    let reason = format!("{call}: {e}");
    match &e {
        KafkaError::Transaction(te) if te.is_fatal() => {
            T::from(TxnFailure::Fatal(if is_fenced(te.code()) {
                ConsumerError::Fenced {
                    transactional_id: id.to_string(),
                    reason,
                }
            } else {
                ConsumerError::Kafka(e)
            }))
        }
        KafkaError::Transaction(te) if te.is_retriable() && !te.txn_requires_abort() => {
            T::retriable(reason)
        }
        _ if e.rdkafka_error_code().is_some_and(is_fenced) => {
            T::from(TxnFailure::Fatal(ConsumerError::Fenced {
                transactional_id: id.to_string(),
                reason,
            }))
        }
        _ => T::from(TxnFailure::Aborted(reason)),
    }
}

fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::TransactionCoordinatorFenced
    )
}

/// How a retriable error is expressed in `T`.
trait FromRetriable {
    fn retriable(reason: String) -> Self;
}

impl FromRetriable for Retry {
    fn retriable(reason: String) -> Self {
        Retry::Again(reason)
    }
}

impl FromRetriable for TxnFailure {
    fn retriable(reason: String) -> Self {
        // Outside a retry loop a retriable error is an aborted attempt.
        TxnFailure::Aborted(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_validate() {
        let ok = KafkaTransactions::new("app", "host-1");
        assert_eq!(ok.transactional_id(), "app-host-1");
        assert!(ok.validate().is_ok());
        assert!(KafkaTransactions::new("", "i").validate().is_err());
        assert!(KafkaTransactions::new("p", "").validate().is_err());
        assert!(
            KafkaTransactions::new("p", "i")
                .max_aborts(0)
                .validate()
                .is_err()
        );
        assert!(
            KafkaTransactions::new("p", "i")
                .transaction_timeout(Duration::ZERO)
                .validate()
                .is_err()
        );
        let e = KafkaTransactions::new("p", "i")
            .set("transactional.id", "x")
            .validate()
            .unwrap_err();
        assert!(e.contains("set by Waterline"), "{e}");
    }

    #[test]
    fn output_records_build() {
        let o = OutputRecord::new("out")
            .with_key(b"k".to_vec())
            .with_payload(b"v".to_vec())
            .with_partition(2)
            .with_header("h", None);
        assert_eq!(
            (o.topic(), o.key(), o.payload()),
            ("out", Some(&b"k"[..]), Some(&b"v"[..]))
        );
    }
}
