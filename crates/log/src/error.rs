//! Error types: [`BatchError`] for record batch validation, [`LogError`] for log operations.

use std::path::PathBuf;

/// Why a record batch was rejected. The broker maps these to Kafka error codes: `TooLarge` to
/// MESSAGE_TOO_LARGE, `BadRecordCount`/`BadOffsetDelta`/`BadRecords` to INVALID_RECORD, the rest
/// to CORRUPT_MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes are present than the batch header or its declared length needs.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The batch length field is smaller than a v2 header.
    #[error("record batch length {0} is smaller than the v2 header")]
    BadLength(i32),
    /// The batch is larger than the configured maximum.
    #[error("record batch of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Size of the batch in bytes.
        size: usize,
        /// Largest accepted batch.
        max: usize,
    },
    /// Magic byte is not 2 (only record batch v2 is supported).
    #[error("unsupported record batch magic {0}")]
    BadMagic(i8),
    /// CRC-32C over attributes..end does not match the header.
    #[error("record batch CRC mismatch: header says {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch {
        /// CRC stored in the header.
        expected: u32,
        /// CRC computed over the bytes.
        actual: u32,
    },
    /// Record count is not positive or not plausible for the bytes present.
    #[error("record batch has an invalid record count {0}")]
    BadRecordCount(i32),
    /// last_offset_delta does not equal record_count - 1.
    #[error(
        "record batch last offset delta {last_offset_delta} does not match {record_count} records"
    )]
    BadOffsetDelta {
        /// lastOffsetDelta from the header.
        last_offset_delta: i32,
        /// recordCount from the header.
        record_count: i32,
    },
    /// The records section of an uncompressed batch is malformed.
    #[error("malformed records in batch: {0}")]
    BadRecords(&'static str),
    /// `append` was given more bytes than the one batch they start with.
    #[error("{0} bytes follow the batch; append takes exactly one batch")]
    TrailingBytes(usize),
    /// The batch uses an unknown compression codec.
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    /// A compressed batch could not be decompressed (or expands beyond the safety limit).
    #[error("cannot decompress record batch: {0}")]
    Decompress(String),
    /// `append` was given a control batch: transaction markers are written by the log itself
    /// ([`crate::PartitionLog::append_marker`]); Kafka answers clients INVALID_RECORD.
    #[error("control batches cannot be appended; markers are written by append_marker")]
    ControlBatch,
}

/// Errors from [`crate::PartitionLog`] operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file could not be opened because the process or the system is out of file
    /// descriptors (EMFILE/ENFILE), even after the storage closed the handles it caches.
    /// Nothing was read, written or fsynced: the log stays usable and the operation can be
    /// retried (the broker answers KAFKA_STORAGE_ERROR, which clients retry).
    #[error("out of file descriptors for {path}: {cause}")]
    OutOfDescriptors {
        /// File or directory that could not be opened.
        path: PathBuf,
        /// Underlying error (EMFILE or ENFILE).
        cause: std::io::Error,
    },
    /// An I/O operation on `path` failed.
    #[error("I/O error on {path}: {cause}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error (part of the message, so not also returned by `source()`).
        cause: std::io::Error,
    },
    /// A file's contents are invalid in a way recovery cannot repair.
    #[error("corrupt data in {path} at byte {offset}: {reason}")]
    Corrupt {
        /// File involved.
        path: PathBuf,
        /// Byte position of the problem.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The batch passed to `append` is invalid.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The requested offset is outside [log_start_offset, log_end_offset].
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        /// Requested offset.
        offset: i64,
        /// Log start offset.
        start: i64,
        /// Log end offset.
        end: i64,
    },
    /// An idempotent producer's sequence does not follow its last appended batch.
    #[error(
        "out of order sequence for producer {producer_id}: expected {expected}, got {received}"
    )]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Next expected sequence.
        expected: i32,
        /// Sequence received.
        received: i32,
    },
    /// A producer with an older epoch than the current one tried to append (zombie).
    #[error(
        "producer {producer_id} fenced: epoch {epoch} is older than current epoch {current_epoch}"
    )]
    ProducerFenced {
        /// Producer id.
        producer_id: i64,
        /// Epoch in the batch.
        epoch: i16,
        /// Current epoch of that producer id.
        current_epoch: i16,
    },
    /// A producer id with no state in this log sent a sequence other than 0.
    #[error("unknown producer {producer_id} sent sequence {sequence} (expected 0)")]
    UnknownProducerId {
        /// Producer id.
        producer_id: i64,
        /// Sequence received.
        sequence: i32,
    },
    /// Assigning offsets to the batch would overflow i64.
    #[error("offset overflow appending at {0}")]
    OffsetOverflow(i64),
    /// A previous write or fsync failed; the log refuses further writes until reopened.
    #[error("log is poisoned by an earlier I/O failure; reopen it to recover")]
    Poisoned,
}

impl LogError {
    /// An I/O error on `path`; [`LogError::OutOfDescriptors`] if the storage could not open
    /// a handle for lack of descriptors (see [`crate::storage::is_out_of_descriptors`]).
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        if crate::storage::is_out_of_descriptors(&cause) {
            return LogError::OutOfDescriptors {
                path: path.into(),
                cause,
            };
        }
        LogError::Io {
            path: path.into(),
            cause,
        }
    }

    /// Whether the operation failed without changing anything and may succeed if retried
    /// (today: [`LogError::OutOfDescriptors`]); such an error never poisons the log.
    pub fn is_retriable(&self) -> bool {
        matches!(self, LogError::OutOfDescriptors { .. })
    }
}

/// Errors from a cleaning pass ([`crate::CleanPlan::run`]). A failed pass changes nothing the
/// log reads; its `.cleaned` files are overwritten by the next pass or deleted by `open`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CleanError {
    /// Reading a segment or writing a cleaned file failed.
    #[error("I/O error on {path}: {cause}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error (part of the message, so not also returned by `source()`).
        cause: std::io::Error,
    },
    /// A stored batch failed validation or its records could not be decoded.
    #[error("corrupt batch in {path} at byte {offset}: {reason}")]
    Corrupt {
        /// Segment file.
        path: PathBuf,
        /// Byte position of the batch.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The first dirty batch alone has more records than the offset map can hold: raise the
    /// cleaner's `dedupe_buffer_bytes`.
    #[error("offset map holds {capacity} keys, but one batch has {records} records")]
    MapTooSmall {
        /// Records in the batch.
        records: usize,
        /// Keys the map can hold.
        capacity: usize,
    },
    /// A log-level operation (index writing) failed.
    #[error(transparent)]
    Log(#[from] LogError),
}
