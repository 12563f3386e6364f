//! Waterline's Kafka consumer: records processed concurrently and acknowledged in any order,
//! commits that never pass an unfinished record, safe rebalances, and exactly-once into
//! PostgreSQL.
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
//!
//! # Runtime
//! Needs a multi-threaded tokio runtime. Rebalance callbacks run inside [`Consumer::recv`] and
//! block that task while in-flight records drain (inside `block_in_place`, so the runtime's
//! other tasks move to other workers meanwhile); commits run on a dedicated thread.
#![deny(unsafe_code, missing_docs)]

mod config;
mod consumer;
mod delivery;
mod error;
mod events;
mod metrics;
mod native;
mod shared;

pub use config::{
    CONNECTION_PROPERTY_PREFIXES, ConsumerConfig, ConsumerConfigBuilder, EventListener, Exhausted,
    FailurePolicy, OffsetStorage,
};
pub use consumer::{Consumer, Deliveries, ShutdownReport};
pub use delivery::{Delivery, Record, RecordHeaders, TxnAck};
pub use error::ConsumerError;
pub use events::ConsumerEvent;
pub use metrics::MetricsSnapshot;
pub use waterline_core;
pub use waterline_store;
