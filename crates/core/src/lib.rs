//! Waterline core: the offset model shared by every part of Waterline.
//!
//! Architecture invariant: this crate performs no I/O and never reads the system clock.
//! Callers feed it events (hand-outs, acks, ticks carrying the current time) and it hands
//! back decisions (what to commit, whether to admit more records, where to reset).
#![deny(unsafe_code, missing_docs)]

pub mod offset;

pub use offset::{OffsetAndMetadata, Position, TopicPartition};
