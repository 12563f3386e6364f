//! The crate's error type.

use waterline_core::{ResetConfigError, TopicPartition, TrackerError};
use waterline_store::StoreError;

/// Everything the consumer can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The configuration is incomplete or inconsistent.
    #[error("invalid consumer configuration: {0}")]
    Config(String),
    /// The reset policy is invalid.
    #[error("invalid reset policy: {0}")]
    Reset(ResetConfigError),
    /// The Kafka client reported an error.
    #[error("Kafka error: {0}")]
    Kafka(rdkafka::error::KafkaError),
    /// The offset store failed.
    #[error("offset store error: {0}")]
    Store(StoreError),
    /// The offset tracker refused an operation.
    #[error("offset tracker error: {0}")]
    Tracker(TrackerError),
    /// A partition has no committed offset and the reset policy gave no start offset.
    #[error("cannot choose a start offset for {tp}: {reason}")]
    ResetFailed {
        /// The partition.
        tp: TopicPartition,
        /// Why the reset policy failed.
        reason: String,
    },
    /// The delivery's partition was revoked (or re-assigned) since it was handed out.
    #[error("partition {0} was revoked since this record was handed out")]
    Revoked(TopicPartition),
    /// A record's payload could not be deserialized.
    #[error("cannot deserialize the payload of {tp} offset {offset}: {cause}")]
    Deserialize {
        /// The record's partition.
        tp: TopicPartition,
        /// The record's offset.
        offset: i64,
        /// The decoder's error (part of the message, so not also `source()`).
        cause: serde_json::Error,
    },
    /// A record has no payload (a tombstone) but one was required.
    #[error("record {tp} offset {offset} has no payload")]
    NoPayload {
        /// The record's partition.
        tp: TopicPartition,
        /// The record's offset.
        offset: i64,
    },
    /// Another producer with the same transactional id took over (Kafka-transactional mode):
    /// this consumer stops; the other instance owns the id now.
    #[error("transactional producer {transactional_id} was fenced by a newer instance: {reason}")]
    Fenced {
        /// The fenced transactional id.
        transactional_id: String,
        /// The client's error.
        reason: String,
    },
    /// Commit transactions aborted too many times in a row (Kafka-transactional mode): none
    /// of their outputs or offsets is visible, and the consumer stops.
    #[error("commit transaction aborted {attempts} times in a row; last: {reason}")]
    TransactionAborted {
        /// Aborted attempts in a row.
        attempts: u32,
        /// Why the last one failed.
        reason: String,
    },
    /// The transactional producer failed beyond recovery (other than fencing).
    #[error("transactional producer failed: {0}")]
    TransactionFatal(String),
    /// [`Delivery::produce`](crate::Delivery::produce) needs
    /// [`OffsetStorage::KafkaTransactional`](crate::OffsetStorage::KafkaTransactional).
    #[error("producing outputs needs OffsetStorage::KafkaTransactional")]
    NotKafkaTransactional,
    /// The consumer is shutting down or was shut down.
    #[error("the consumer is shut down")]
    ShutDown,
}

// By hand rather than `#[from]`: each message prints the inner error, so it is not also
// returned as `source()` (a printed error chain would show it twice).
impl From<ResetConfigError> for ConsumerError {
    fn from(e: ResetConfigError) -> Self {
        ConsumerError::Reset(e)
    }
}

impl From<rdkafka::error::KafkaError> for ConsumerError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        ConsumerError::Kafka(e)
    }
}

impl From<StoreError> for ConsumerError {
    fn from(e: StoreError) -> Self {
        ConsumerError::Store(e)
    }
}

impl From<TrackerError> for ConsumerError {
    fn from(e: TrackerError) -> Self {
        ConsumerError::Tracker(e)
    }
}
