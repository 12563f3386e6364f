//! Waterline core: the offset model shared by every part of Waterline.
//!
//! Architecture invariant: this crate performs no I/O and never reads the system clock.
//! Callers feed it events (hand-outs, acks, ticks carrying the current time) and it hands
//! back decisions (what to commit, whether to admit more records, where to reset).
//!
//! * [`offset`]: topic-partitions, positions (numeric or opaque) and committed offsets.
//! * [`PartitionTracker`] / [`OffsetTracker`]: out-of-order acknowledgement, the commit point,
//!   admission control, restore. Numeric offsets only; opaque positions go straight to stores.
//! * [`encoding`]: the compact `wl1:` encoding of acked-beyond-commit offsets.
//! * [`policy`]: when to commit. [`reset`]: where to start. [`lag`]: lag and commit stats.
#![deny(unsafe_code, missing_docs)]

pub mod encoding;
pub mod error;
pub mod lag;
pub mod offset;
pub mod partition;
pub mod policy;
pub mod reset;
pub mod stats;
pub mod tracker;
mod window;

pub use encoding::{AckedSet, EncodingKind, MetadataForm};
pub use error::{
    DecodeError, EncodeError, InMemoryLogError, PolicyError, ResetConfigError, ResetError,
    TrackerError,
};
pub use lag::{LagReport, PartitionLag};
pub use offset::{OffsetAndMetadata, Position, TopicPartition};
pub use partition::{AckOutcome, PartitionTracker, TrackerConfig};
pub use policy::{
    AllOf, AnyOf, BarrierId, Checkpoint, CommitDecision, CommitPolicy, EveryNAcks, Interval,
    Manual, OnWatermarkAdvance, PolicyEvent, Want,
};
pub use reset::{InMemoryLog, OffsetResolver, ResetOp, ResetOutcome, ResetPolicy, ResetStrategy};
pub use stats::CommitStats;
pub use tracker::{CommitEntry, CommitPlan, CommitPlanner, Generation, OffsetTracker, PlanInput};
