//! Waterline's durable segmented partition log: record batches, offset and time indexes,
//! recovery.
#![deny(missing_docs)]

mod batch;
mod config;
mod error;
mod format;
mod partition;
mod producer;
pub mod storage;

pub use batch::{BatchHeader, split_batches};
pub use config::LogConfig;
pub use error::{BatchError, LogError};
pub use partition::{AppendOutcome, PartitionLog, SyncPoint};
pub use storage::{CrashMode, FsStorage, MemStorage, Storage, StorageFile};
