//! The offset model: topic-partitions and committed positions.
//!
//! Kafka semantics throughout: a committed offset is the *next* offset to read, i.e. the last
//! processed offset plus one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A topic name plus a partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index within the topic (non-negative in Kafka).
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where a consumer resumes.
///
/// Sequence-numbered sources (Kafka) use [`Position::Offset`]: the next offset to read.
/// Sources that are not sequence-numbered (files, custom sources) keep an opaque token that
/// only they can interpret, so the same stores and tools serve any resumable source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The next offset to read (last processed + 1).
    Offset(i64),
    /// An opaque text token, e.g. a file name and byte position.
    Text(String),
    /// An opaque binary token.
    Bytes(Vec<u8>),
}

impl Position {
    /// The numeric offset, if this is a sequence-numbered position.
    pub fn as_offset(&self) -> Option<i64> {
        match self {
            Position::Offset(o) => Some(*o),
            _ => None,
        }
    }
}

/// A committed position with the data Kafka keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetAndMetadata {
    /// Where to resume: for Kafka, the next offset to read.
    pub position: Position,
    /// Free-form metadata committed with the offset. Waterline stores its encoding of
    /// acknowledged-but-not-yet-committable offsets here.
    pub metadata: String,
    /// Commit time, milliseconds since the Unix epoch, as supplied by the caller.
    pub commit_timestamp_ms: i64,
    /// Leader epoch of the last consumed record, when known.
    pub leader_epoch: Option<i32>,
}

impl OffsetAndMetadata {
    /// A numeric committed offset with empty metadata.
    pub fn new(offset: i64, commit_timestamp_ms: i64) -> Self {
        Self {
            position: Position::Offset(offset),
            metadata: String::new(),
            commit_timestamp_ms,
            leader_epoch: None,
        }
    }

    /// Same, with metadata.
    pub fn with_metadata(mut self, metadata: impl Into<String>) -> Self {
        self.metadata = metadata.into();
        self
    }

    /// The numeric offset, if the position is sequence-numbered.
    pub fn offset(&self) -> Option<i64> {
        self.position.as_offset()
    }
}
