//! Waterline offset stores: one async trait, [`OffsetStore`], and its backends.
//!
//! - [`memory::MemoryStore`]: in-process, for tests and ephemeral use.
//! - [`file::FileStore`]: one pretty-printed JSON document per group, replaced atomically.
//! - [`redb::RedbStore`]: one embedded database file; the default durable store.
//! - [`coalescing::Coalescing`]: wraps any store and merges concurrent commits into one backend
//!   commit (one transaction, one fsync), answering each caller once that commit is durable.
//!
//! Offsets are keyed by (group, topic, partition). Every backend round-trips the three kinds of
//! [`Position`] exactly, with the metadata string, commit timestamp and
//! leader epoch.
//!
//! Architecture invariant: blocking disk work never runs on a tokio worker thread; it goes through
//! `spawn_blocking`, so these stores need a tokio runtime.
#![deny(unsafe_code, missing_docs)]

pub mod coalescing;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod file;
pub mod memory;
pub mod redb;
mod store;
mod validate;

pub use coalescing::{BarrierWait, Coalescing, CoalescingConfig, CoalescingStats, CommitWait};
pub use error::StoreError;
pub use file::FileStore;
pub use memory::MemoryStore;
pub use redb::{PendingTxnOffset, RedbOptions, RedbStore, TxnOffsetOp, TxnOpResult};
pub use store::{CommitBatch, GroupOffsets, OffsetStore, open_default};
pub use validate::{DEFAULT_MAX_METADATA_BYTES, Limits};
pub use waterline_core::{OffsetAndMetadata, Position, TopicPartition};
