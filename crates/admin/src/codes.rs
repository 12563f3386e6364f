//! Kafka protocol error codes and their names, so errors read as words rather than numbers.

/// Kafka error code names indexed by `code + 1` (code -1 is UNKNOWN_SERVER_ERROR).
///
/// Invariant: entry `i` is the name of error code `i - 1`; codes are contiguous from -1.
const NAMES: &[&str] = &[
    "UNKNOWN_SERVER_ERROR",
    "NONE",
    "OFFSET_OUT_OF_RANGE",
    "CORRUPT_MESSAGE",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "INVALID_FETCH_SIZE",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_OR_FOLLOWER",
    "REQUEST_TIMED_OUT",
    "BROKER_NOT_AVAILABLE",
    "REPLICA_NOT_AVAILABLE",
    "MESSAGE_TOO_LARGE",
    "STALE_CONTROLLER_EPOCH",
    "OFFSET_METADATA_TOO_LARGE",
    "NETWORK_EXCEPTION",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "INVALID_TOPIC_EXCEPTION",
    "RECORD_LIST_TOO_LARGE",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "INVALID_REQUIRED_ACKS",
    "ILLEGAL_GENERATION",
    "INCONSISTENT_GROUP_PROTOCOL",
    "INVALID_GROUP_ID",
    "UNKNOWN_MEMBER_ID",
    "INVALID_SESSION_TIMEOUT",
    "REBALANCE_IN_PROGRESS",
    "INVALID_COMMIT_OFFSET_SIZE",
    "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "INVALID_TIMESTAMP",
    "UNSUPPORTED_SASL_MECHANISM",
    "ILLEGAL_SASL_STATE",
    "UNSUPPORTED_VERSION",
    "TOPIC_ALREADY_EXISTS",
    "INVALID_PARTITIONS",
    "INVALID_REPLICATION_FACTOR",
    "INVALID_REPLICA_ASSIGNMENT",
    "INVALID_CONFIG",
    "NOT_CONTROLLER",
    "INVALID_REQUEST",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT",
    "POLICY_VIOLATION",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "DUPLICATE_SEQUENCE_NUMBER",
    "INVALID_PRODUCER_EPOCH",
    "INVALID_TXN_STATE",
    "INVALID_PRODUCER_ID_MAPPING",
    "INVALID_TRANSACTION_TIMEOUT",
    "CONCURRENT_TRANSACTIONS",
    "TRANSACTION_COORDINATOR_FENCED",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
    "SECURITY_DISABLED",
    "OPERATION_NOT_ATTEMPTED",
    "KAFKA_STORAGE_ERROR",
    "LOG_DIR_NOT_FOUND",
    "SASL_AUTHENTICATION_FAILED",
    "UNKNOWN_PRODUCER_ID",
    "REASSIGNMENT_IN_PROGRESS",
    "DELEGATION_TOKEN_AUTH_DISABLED",
    "DELEGATION_TOKEN_NOT_FOUND",
    "DELEGATION_TOKEN_OWNER_MISMATCH",
    "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
    "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
    "DELEGATION_TOKEN_EXPIRED",
    "INVALID_PRINCIPAL_TYPE",
    "NON_EMPTY_GROUP",
    "GROUP_ID_NOT_FOUND",
    "FETCH_SESSION_ID_NOT_FOUND",
    "INVALID_FETCH_SESSION_EPOCH",
    "LISTENER_NOT_FOUND",
    "TOPIC_DELETION_DISABLED",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "UNSUPPORTED_COMPRESSION_TYPE",
    "STALE_BROKER_EPOCH",
    "OFFSET_NOT_AVAILABLE",
    "MEMBER_ID_REQUIRED",
    "PREFERRED_LEADER_NOT_AVAILABLE",
    "GROUP_MAX_SIZE_REACHED",
    "FENCED_INSTANCE_ID",
    "ELIGIBLE_LEADERS_NOT_AVAILABLE",
    "ELECTION_NOT_NEEDED",
    "NO_REASSIGNMENT_IN_PROGRESS",
    "GROUP_SUBSCRIBED_TO_TOPIC",
    "INVALID_RECORD",
    "UNSTABLE_OFFSET_COMMIT",
    "THROTTLING_QUOTA_EXCEEDED",
    "PRODUCER_FENCED",
    "RESOURCE_NOT_FOUND",
    "DUPLICATE_RESOURCE",
    "UNACCEPTABLE_CREDENTIAL",
    "INCONSISTENT_VOTER_SET",
    "INVALID_UPDATE_VERSION",
    "FEATURE_UPDATE_FAILED",
    "PRINCIPAL_DESERIALIZATION_FAILURE",
    "SNAPSHOT_NOT_FOUND",
    "POSITION_OUT_OF_RANGE",
    "UNKNOWN_TOPIC_ID",
    "DUPLICATE_BROKER_REGISTRATION",
    "BROKER_ID_NOT_REGISTERED",
    "INCONSISTENT_TOPIC_ID",
    "INCONSISTENT_CLUSTER_ID",
    "TRANSACTIONAL_ID_NOT_FOUND",
    "FETCH_SESSION_TOPIC_ID_ERROR",
    "INELIGIBLE_REPLICA",
    "NEW_LEADER_ELECTED",
    "OFFSET_MOVED_TO_TIERED_STORAGE",
    "FENCED_MEMBER_EPOCH",
    "UNRELEASED_INSTANCE_ID",
    "UNSUPPORTED_ASSIGNOR",
    "STALE_MEMBER_EPOCH",
    "MISMATCHED_ENDPOINT_TYPE",
    "UNSUPPORTED_ENDPOINT_TYPE",
    "UNKNOWN_CONTROLLER_ID",
    "UNKNOWN_SUBSCRIPTION_ID",
    "TELEMETRY_TOO_LARGE",
    "INVALID_REGISTRATION",
    "TRANSACTION_ABORTABLE",
    "INVALID_RECORD_STATE",
    "SHARE_SESSION_NOT_FOUND",
    "INVALID_SHARE_SESSION_EPOCH",
    "FENCED_STATE_EPOCH",
    "INVALID_VOTER_KEY",
    "DUPLICATE_VOTER",
    "VOTER_NOT_FOUND",
];

/// Code 0: no error.
pub const NONE: i16 = 0;
/// Code 3: the topic or partition does not exist.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Code 5: the partition has no leader right now.
pub const LEADER_NOT_AVAILABLE: i16 = 5;
/// Code 14: the coordinator is still loading group state; retry.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// Code 15: no coordinator is available for the group yet; retry.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// Code 16: the broker asked is not the group's coordinator; look it up again.
pub const NOT_COORDINATOR: i16 = 16;
/// Code 25: the member is unknown, e.g. an admin commit to a group that has members.
pub const UNKNOWN_MEMBER_ID: i16 = 25;
/// Code 35: the API version asked for is not supported.
pub const UNSUPPORTED_VERSION: i16 = 35;
/// Code 36: a topic of that name already exists.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Code 37: the partition count is invalid (e.g. not more than the topic has).
pub const INVALID_PARTITIONS: i16 = 37;
/// Code 40: a config key or value was refused.
pub const INVALID_CONFIG: i16 = 40;
/// Code 41: the broker asked is not the controller; ask the controller.
pub const NOT_CONTROLLER: i16 = 41;
/// Code 69: the group does not exist.
pub const GROUP_ID_NOT_FOUND: i16 = 69;

/// The protocol name of a Kafka error code, e.g. 25 -> `UNKNOWN_MEMBER_ID`.
///
/// Codes this table does not know (newer brokers) give `None`; callers print the number.
pub fn error_name(code: i16) -> Option<&'static str> {
    let index = usize::try_from(i32::from(code) + 1).ok()?;
    NAMES.get(index).copied()
}

/// `NAME (code N)` for messages; unknown codes read `UNKNOWN_ERROR_CODE (code N)`.
pub fn describe(code: i16) -> String {
    match error_name(code) {
        Some(name) => format!("{name} (code {code})"),
        None => format!("UNKNOWN_ERROR_CODE (code {code})"),
    }
}

/// Whether retrying the same request (after re-resolving the coordinator) can succeed.
pub fn is_coordinator_retriable(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_codes_have_their_protocol_names() {
        for (code, name) in [
            (-1, "UNKNOWN_SERVER_ERROR"),
            (0, "NONE"),
            (3, "UNKNOWN_TOPIC_OR_PARTITION"),
            (16, "NOT_COORDINATOR"),
            (25, "UNKNOWN_MEMBER_ID"),
            (27, "REBALANCE_IN_PROGRESS"),
            (35, "UNSUPPORTED_VERSION"),
            (68, "NON_EMPTY_GROUP"),
            (69, "GROUP_ID_NOT_FOUND"),
            (86, "GROUP_SUBSCRIBED_TO_TOPIC"),
            (127, "VOTER_NOT_FOUND"),
        ] {
            assert_eq!(error_name(code), Some(name), "code {code}");
        }
    }

    #[test]
    fn unknown_codes_are_reported_by_number() {
        assert_eq!(error_name(-2), None);
        assert_eq!(error_name(i16::MAX), None);
        assert_eq!(describe(900), "UNKNOWN_ERROR_CODE (code 900)");
        assert_eq!(describe(25), "UNKNOWN_MEMBER_ID (code 25)");
    }
}
