//! Events reported to a [`ConsumerConfigBuilder::on_event`](crate::ConsumerConfigBuilder::on_event)
//! listener.

use waterline_core::{Generation, OffsetAndMetadata, TopicPartition};

/// Something the consumer did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumerEvent {
    /// Partitions were assigned under `generation`; `positions` are the offsets consumption
    /// starts from.
    Assigned {
        /// Assignment generation (a counter local to this consumer).
        generation: Generation,
        /// Each partition with its start offset.
        positions: Vec<(TopicPartition, i64)>,
    },
    /// Partitions were revoked; their final positions were committed first (when `committed`;
    /// never with `final_commit(false)`).
    Revoked {
        /// The partitions.
        partitions: Vec<TopicPartition>,
        /// Whether the final commit succeeded.
        committed: bool,
        /// Records still in flight when the drain timeout expired (processed again elsewhere).
        abandoned_in_flight: u64,
    },
    /// A commit succeeded (it is durable in the offset storage).
    Committed {
        /// What was committed.
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    },
    /// A commit failed; the positions will be committed again later.
    CommitFailed {
        /// The error, as text.
        error: String,
    },
}
