//! The crate's error type.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use waterline_core::{PolicyError, ResetConfigError, TopicPartition, TrackerError};
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
    /// The partition is not assigned to this consumer (or is being revoked).
    #[error("partition {0} is not assigned to this consumer")]
    NotAssigned(TopicPartition),
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
    /// A commit policy's settings are invalid.
    #[error("invalid commit policy: {0}")]
    Policy(PolicyError),
    /// The consumer needs a multi-threaded tokio runtime.
    #[error("unsupported tokio runtime: {reason}")]
    UnsupportedRuntime {
        /// What is wrong with the runtime it was created in.
        reason: &'static str,
    },
    /// The cluster refused the client's credentials (SASL or SSL): retrying cannot help.
    #[error("authentication failed: {reason}")]
    AuthenticationFailed {
        /// The client's error.
        reason: String,
    },
    /// The cluster refused access to a topic, the group or the cluster itself.
    #[error("not authorized: {reason}")]
    AuthorizationFailed {
        /// The client's error (it names the resource).
        reason: String,
    },
    /// The Kafka client hit an unrecoverable error (librdkafka's fatal errors, e.g. a fatal
    /// idempotence error or a fenced static member) and cannot continue.
    #[error("fatal Kafka client error: {reason}")]
    ClientFatal {
        /// The client's error.
        reason: String,
    },
    /// Every broker stayed unreachable for longer than the configured
    /// [`brokers_down_timeout`](crate::ConsumerConfigBuilder::brokers_down_timeout).
    #[error("all brokers unreachable for {down_for:?}")]
    BrokersDown {
        /// How long they have been down.
        down_for: Duration,
    },
}

/// The typed fatal error `e` stands for, if it is one (`reason`: the client's text, when it
/// came with one); `None` for errors the client recovers from by itself (a broker restart, a
/// leader change, a topic not created yet), which are logged and retried.
pub(crate) fn fatal_error(e: &KafkaError, reason: &str) -> Option<ConsumerError> {
    let code = e.rdkafka_error_code()?;
    let reason = if reason.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {reason}")
    };
    classify(code, reason)
}

fn classify(code: RDKafkaErrorCode, reason: String) -> Option<ConsumerError> {
    use RDKafkaErrorCode as C;
    Some(match code {
        C::Authentication | C::SaslAuthenticationFailed => {
            ConsumerError::AuthenticationFailed { reason }
        }
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed => ConsumerError::AuthorizationFailed { reason },
        // librdkafka raises recoverable idempotence errors itself and escalates the fatal
        // ones to `Fatal`.
        C::Fatal | C::FencedInstanceId => ConsumerError::ClientFatal { reason },
        _ => return None,
    })
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

impl From<PolicyError> for ConsumerError {
    fn from(e: PolicyError) -> Self {
        ConsumerError::Policy(e)
    }
}

impl From<TrackerError> for ConsumerError {
    fn from(e: TrackerError) -> Self {
        ConsumerError::Tracker(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_client_errors_are_typed_and_transient_ones_are_not() {
        let fatal = |code| classify(code, "x".into());
        assert!(matches!(
            fatal(RDKafkaErrorCode::SaslAuthenticationFailed),
            Some(ConsumerError::AuthenticationFailed { .. })
        ));
        assert!(matches!(
            fatal(RDKafkaErrorCode::Authentication),
            Some(ConsumerError::AuthenticationFailed { .. })
        ));
        assert!(matches!(
            fatal(RDKafkaErrorCode::TopicAuthorizationFailed),
            Some(ConsumerError::AuthorizationFailed { .. })
        ));
        assert!(matches!(
            fatal(RDKafkaErrorCode::GroupAuthorizationFailed),
            Some(ConsumerError::AuthorizationFailed { .. })
        ));
        assert!(matches!(
            fatal(RDKafkaErrorCode::Fatal),
            Some(ConsumerError::ClientFatal { .. })
        ));
        for transient in [
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::RequestTimedOut,
        ] {
            assert!(fatal(transient).is_none(), "{transient:?}");
        }
        let e = KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed);
        let typed = fatal_error(&e, "").unwrap();
        assert!(typed.to_string().starts_with("not authorized"), "{typed}");
        let policy: ConsumerError = PolicyError::ZeroCount.into();
        assert!(policy.to_string().contains("N >= 1"), "{policy}");
    }
}
