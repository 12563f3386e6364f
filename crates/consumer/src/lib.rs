//! Waterline's Kafka consumer: records processed concurrently and acknowledged in any order,
//! commits that never pass an unfinished record, safe rebalances, and exactly-once into
//! PostgreSQL or into Kafka (transactions).
//!
//! Built on `rdkafka` and the Kafka protocol only, so it works with any Kafka-compatible
//! cluster. The bookkeeping is [`waterline_core::OffsetTracker`]'s: each hand-out and ack is
//! recorded there, and a commit writes the tracker's commit point (lowest unfinished offset)
//! plus the `wl1:` encoding of the offsets finished beyond it, so a restart skips them.
//!
//! ```no_run
//! # async fn run() -> Result<(), waterline_consumer::ConsumerError> {
//! use waterline_consumer::{Consumer, ConsumerConfig};
//! let consumer = Consumer::new(
//!     ConsumerConfig::builder("127.0.0.1:9092", "billing").topic("orders").build()?,
//! )?;
//! loop {
//!     let d = consumer.recv().await?;
//!     tokio::spawn(async move {
//!         // ... process d.record() ...
//!         d.ack();
//!     });
//! }
//! # }
//! ```
//!
//! Or let the consumer run the processing function and ack on `Ok` (nack on `Err`):
//!
//! ```no_run
//! # async fn run() -> Result<(), waterline_consumer::ConsumerError> {
//! use waterline_consumer::{Consumer, ConsumerConfig, Ordering};
//! let consumer = Consumer::new(
//!     ConsumerConfig::builder("127.0.0.1:9092", "billing")
//!         .topic("orders")
//!         .ordering(Ordering::Key)
//!         .build()?,
//! )?;
//! consumer
//!     .process(1000, |record| async move {
//!         // ... record.key(), record.payload() ...
//!         Ok::<(), String>(())
//!     })
//!     .await
//! # }
//! ```
//!
//! # Ordering modes
//! Records of a partition are taken in offset order; the [`Ordering`] mode decides which of
//! them may be in the application's hands at the same time (`P0: 1a 2b 3a 4c` = offsets 1..4
//! of partition 0 with keys a, b, a, c):
//! - [`Ordering::Unordered`]: `1a 2b 3a 4c` all at once (up to the limits below).
//! - [`Ordering::Partition`]: `1a`, then `2b`, then `3a`, then `4c`; partitions in parallel.
//! - [`Ordering::Key`]: `1a 2b 4c` at once; `3a` waits until `1a` is finished, then goes.
//!
//! Limits: [`max_in_flight_per_partition`](ConsumerConfigBuilder::max_in_flight_per_partition)
//! counts every record taken from a partition and not finished, including those waiting for
//! their key's turn (memory and the `wl1:` encoding budget bound them like in-flight ones);
//! [`max_concurrency`](ConsumerConfigBuilder::max_concurrency) counts records in the
//! application's hands over all partitions. A waiting record is unfinished: the commit point
//! never passes it, and after a crash or rebalance it is processed again (like a record in
//! flight), while records finished beyond the commit point are skipped (`wl1:` metadata).
//! A retrying or held record keeps its key (or, in partition order, its partition) busy and
//! blocks nothing else; dead-lettering it frees the key.
//!
//! # Failures
//! Transient client errors (a broker restarting, a leader moving) are logged and retried.
//! Fatal ones reach [`Consumer::recv`] / [`Consumer::process`] as typed errors and stop the
//! consumer: [`ConsumerError::AuthenticationFailed`], [`ConsumerError::AuthorizationFailed`],
//! [`ConsumerError::ClientFatal`] (librdkafka's fatal errors, e.g. fatal idempotence errors),
//! and [`ConsumerError::BrokersDown`] once every broker has been unreachable for longer than
//! [`brokers_down_timeout`](ConsumerConfigBuilder::brokers_down_timeout).
//!
//! # Guarantees
//! - **At least once**: a committed position never passes a record that was not acked (or
//!   dead-lettered). After a crash, only records in flight or acked-but-uncommitted at the
//!   crash are processed again.
//! - **Rebalances**: on revoke, hand-outs of the revoked partitions stop, in-flight records
//!   drain (up to the drain timeout), final positions are committed, then the partitions are
//!   given up. Eager (`roundrobin`) by default; with
//!   `.set("partition.assignment.strategy", "cooperative-sticky")` only the partitions that
//!   move are revoked and the others keep flowing. Partitions the group already took away
//!   (a lost assignment) are given up without a commit. Acks for a revoked generation are dropped and counted; no commit is issued for
//!   a partition after its revocation began.
//! - **Exactly once into PostgreSQL**: with [`OffsetStorage::Transactional`] and
//!   [`Delivery::begin_transaction`], the application writes its rows and the offsets in one
//!   transaction (`waterline_store_postgres::PostgresStore::commit_in`).
//! - **Exactly once into Kafka** (consume-transform-produce): with
//!   [`OffsetStorage::KafkaTransactional`], the application hands each record's outputs to
//!   [`Delivery::produce`] and acks; the consumer commits the outputs of the acked records and
//!   the commit point (with the `wl1:` metadata) in one Kafka transaction, on the commit
//!   policy, on revoke and at shutdown. A `read_committed` reader of the outputs sees each
//!   input's outputs exactly once, whatever crashes, aborts and rebalances happen; see below.
//!
//! # Exactly once into Kafka
//! The consumer owns a transactional producer (id `"{prefix}-{instance}"`, see
//! [`KafkaTransactions`]) and reads its inputs with `isolation.level=read_committed`.
//! - **Outputs ride with their acks.** [`Delivery::produce`] only buffers; [`Delivery::ack`]
//!   moves the outputs into the partition's state in the same step (under the same lock) as
//!   the ack; a nack or a dropped delivery discards them. A commit takes, per partition and
//!   under that lock, the commit point and exactly the outputs of the acks it covers, then
//!   runs `begin`, the produces, `send_offsets_to_transaction` with the consumer's group
//!   metadata, and `commit`. An output is therefore committed exactly when its input's offset
//!   is (by the commit point, or by the `wl1:` metadata for records acked beyond it), and a
//!   record unfinished at commit time has nothing in the transaction.
//! - **Aborts**: a transaction that fails is aborted (nothing of it becomes visible, the
//!   offsets do not move) and retried with the same outputs and newer offsets; after
//!   [`KafkaTransactions::max_aborts`] aborts in a row the consumer stops with
//!   [`ConsumerError::TransactionAborted`]. A crash at any point leaves the open transaction
//!   to be aborted by the restarted process (same transactional id) or by the broker's
//!   transaction timeout; the inputs are processed again from the last committed transaction.
//! - **Rebalances**: a revoke drains in-flight records, then commits one transaction for every
//!   partition (the revoked ones included) before the partitions are given up; if it fails,
//!   the revoked partitions' outputs are dropped with them and their new owner processes the
//!   inputs again. A lost assignment commits nothing. Zombies are fenced the KIP-447 way: the
//!   group coordinator refuses offsets sent with a stale group generation, so the zombie's
//!   transaction aborts. Another live producer with the same transactional id makes this one
//!   fail with [`ConsumerError::Fenced`].
//! - **Trade-offs**: outputs are held in memory from their ack to the next commit (bounded by
//!   the commit interval times the output rate) and produced at commit time, so a commit
//!   takes as long as producing them; in exchange, processing never stops for a commit and
//!   an output never waits on other records still in flight (unlike a "barrier" commit that
//!   pauses hand-outs until everything in flight is done). Outputs are visible to
//!   `read_committed` readers only after their transaction commits: the commit interval is
//!   the end-to-end latency floor. Dead-lettered records ([`Exhausted::DeadLetter`]) go
//!   through a separate, non-transactional producer (at least once). Snapshot commit
//!   policies (checkpoint barriers) commit the current position in this mode.
//!
//! # Runtime
//! Needs a multi-threaded tokio runtime ([`Consumer::new`] refuses a current-thread one with
//! [`ConsumerError::UnsupportedRuntime`]). Rebalance callbacks run inside [`Consumer::recv`] and
//! block that task while in-flight records drain (inside `block_in_place`, so the runtime's
//! other tasks move to other workers meanwhile); commits run on a dedicated thread.
#![deny(unsafe_code, missing_docs)]

mod config;
mod consumer;
mod delivery;
mod error;
mod events;
mod gate;
mod metrics;
mod native;
mod process;
#[cfg(test)]
mod proptests;
mod shared;
mod txn;

pub use config::{
    CONNECTION_PROPERTY_PREFIXES, ConsumerConfig, ConsumerConfigBuilder, EventListener, Exhausted,
    FailurePolicy, OffsetStorage, Ordering,
};
pub use consumer::{Consumer, Deliveries, ShutdownReport};
pub use delivery::{Delivery, Record, RecordHeaders, TxnAck};
pub use error::ConsumerError;
pub use events::ConsumerEvent;
pub use metrics::MetricsSnapshot;
pub use txn::{KafkaTransactions, OutputRecord};
pub use waterline_core;
pub use waterline_core::{
    AllOf, AnyOf, BarrierId, Checkpoint, CommitPolicy, EveryNAcks, Interval, Manual,
    OnWatermarkAdvance, ResetPolicy, ResetStrategy, TopicPartition, TrackerConfig,
};
pub use waterline_store;
