//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use waterline_core::TopicPartition;

/// Everything a store operation can fail with.
///
/// Cloneable (sources are behind `Arc`) so the coalescing wrapper can hand the same failure to
/// every caller whose batch was part of a failed shared commit.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on a store file or directory failed.
    #[error("I/O error while trying to {op} {path}: {cause}")]
    Io {
        /// What was being done, e.g. "fsync".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error (part of the message, so not also `source()`).
        cause: Arc<io::Error>,
    },
    /// A store file exists but does not hold a valid document or database (torn, truncated,
    /// edited by hand, or not a store file at all).
    #[error("corrupt store file {path}: {reason}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A store file was written in a format version this build does not read.
    #[error("store file {path} has format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// The offending file.
        path: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The only version this build reads and writes.
        supported: u64,
    },
    /// A committed metadata string is longer than the store's configured limit.
    #[error(
        "metadata for group {group:?} partition {topic_partition} is {len} bytes, over the limit of {max} bytes"
    )]
    MetadataTooLarge {
        /// The group being committed.
        group: String,
        /// The partition whose metadata is too long.
        topic_partition: TopicPartition,
        /// The metadata's length in bytes.
        len: usize,
        /// The configured limit in bytes.
        max: usize,
    },
    /// A group name cannot be stored by this backend (the file store maps names to file names,
    /// which the file system limits in length).
    #[error("group name of {len} bytes is too long for this store (at most {max} bytes)")]
    GroupNameTooLong {
        /// The group name's length in bytes.
        len: usize,
        /// The longest name this backend accepts, in bytes (fewer when it needs escaping).
        max: usize,
    },
    /// The embedded database reported an error.
    #[error("database error in {path}: {cause}")]
    Redb {
        /// The database file.
        path: PathBuf,
        /// redb's error (part of the message, so not also `source()`).
        cause: Arc<::redb::Error>,
    },
    /// Another process (or another store in this process) holds the store's lock.
    #[error("store {path} is already open elsewhere")]
    Locked {
        /// The locked file.
        path: PathBuf,
    },
    /// An earlier fsync failed; the store refuses further writes because a retried fsync can
    /// report success for data the kernel already dropped.
    #[error("store {path} refuses writes after an earlier fsync failure; reopen it")]
    Poisoned {
        /// The store's file or directory.
        path: PathBuf,
    },
    /// A database-server backend (e.g. PostgreSQL, in its own crate) failed an operation: the
    /// server refused it or the connection failed. Whether a commit took effect is unknown.
    #[error("{backend} {op} failed: {cause}")]
    Backend {
        /// Which backend, e.g. "PostgreSQL".
        backend: &'static str,
        /// What was being done, e.g. "commit offsets".
        op: &'static str,
        /// The backend's error (part of the message, so not also `source()`).
        cause: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The store was closed with [`OffsetStore::close`](crate::OffsetStore::close).
    #[error("store is closed")]
    Closed,
    /// The coalescing wrapper was created outside a tokio runtime, which it needs for its task.
    #[error("no tokio runtime to run the coalescing task on")]
    NoRuntime,
    /// A background blocking task panicked or was cancelled.
    #[error("store background task failed: {0}")]
    TaskFailed(String),
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            cause: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        StoreError::Corrupt {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Runs blocking disk work off the async worker threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::TaskFailed(e.to_string())),
    }
}
