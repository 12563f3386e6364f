//! Errors: the Kafka error codes the coordinator answers with, and the decoding errors of the
//! durable record format.

/// An error the coordinator answers with. Each variant maps 1:1 to a Kafka protocol error code
/// (see [`TxnError::code`]); "no error" is `None`/`Ok` at the use site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum TxnError {
    /// The coordinator is still loading its durable state, or has no producer ids to hand out
    /// yet; the client retries (14).
    #[error("the transaction coordinator is loading")]
    CoordinatorLoadInProgress,
    /// This node stopped coordinating (answered to parked requests on shutdown); the client
    /// looks the coordinator up again (16).
    #[error("this node is not the transaction coordinator")]
    NotCoordinator,
    /// Malformed request: empty transactional id, or only one of producer id and epoch set (42).
    #[error("the request is invalid")]
    InvalidRequest,
    /// The producer epoch is stale: the answer to fenced producers on request versions that
    /// predate PRODUCER_FENCED, and on TxnOffsetCommit (47).
    #[error("the producer epoch is not current")]
    InvalidProducerEpoch,
    /// The operation is not valid in the transaction's state, e.g. EndTxn on an Empty
    /// transaction or commit after abort (48).
    #[error("the operation is invalid in the transaction's state")]
    InvalidTxnState,
    /// The producer id is not the one assigned to the transactional id, or the transactional
    /// id is unknown (49).
    #[error("the producer id is not assigned to the transactional id")]
    InvalidProducerIdMapping,
    /// The transaction timeout is not in `1..=transaction.max.timeout.ms` (50).
    #[error("the transaction timeout is out of range")]
    InvalidTransactionTimeout,
    /// The transaction is completing (its markers are being written); retry (51).
    #[error("another operation on the transaction is in progress")]
    ConcurrentTransactions,
    /// A newer producer with the same transactional id (or a timeout abort) fenced this one (90).
    #[error("the producer was fenced by a newer epoch")]
    ProducerFenced,
    /// DescribeTransactions of an unknown transactional id (105).
    #[error("the transactional id was not found")]
    TransactionalIdNotFound,
    /// KIP-890 verification: the partition (or group) is not part of the ongoing transaction;
    /// the client can abort and continue (120).
    #[error("the transaction must be aborted")]
    TransactionAbortable,
}

impl TxnError {
    /// Kafka's numeric error code for this error.
    pub fn code(self) -> i16 {
        match self {
            TxnError::CoordinatorLoadInProgress => 14,
            TxnError::NotCoordinator => 16,
            TxnError::InvalidRequest => 42,
            TxnError::InvalidProducerEpoch => 47,
            TxnError::InvalidTxnState => 48,
            TxnError::InvalidProducerIdMapping => 49,
            TxnError::InvalidTransactionTimeout => 50,
            TxnError::ConcurrentTransactions => 51,
            TxnError::ProducerFenced => 90,
            TxnError::TransactionalIdNotFound => 105,
            TxnError::TransactionAbortable => 120,
        }
    }

    /// The code for an optional error: 0 (NONE) when there is no error.
    pub fn code_of(error: Option<TxnError>) -> i16 {
        error.map_or(0, TxnError::code)
    }

    /// Kafka's name of the error (`"PRODUCER_FENCED"`, ...), for logs and test transcripts.
    pub fn name(self) -> &'static str {
        match self {
            TxnError::CoordinatorLoadInProgress => "COORDINATOR_LOAD_IN_PROGRESS",
            TxnError::NotCoordinator => "NOT_COORDINATOR",
            TxnError::InvalidRequest => "INVALID_REQUEST",
            TxnError::InvalidProducerEpoch => "INVALID_PRODUCER_EPOCH",
            TxnError::InvalidTxnState => "INVALID_TXN_STATE",
            TxnError::InvalidProducerIdMapping => "INVALID_PRODUCER_ID_MAPPING",
            TxnError::InvalidTransactionTimeout => "INVALID_TRANSACTION_TIMEOUT",
            TxnError::ConcurrentTransactions => "CONCURRENT_TRANSACTIONS",
            TxnError::ProducerFenced => "PRODUCER_FENCED",
            TxnError::TransactionalIdNotFound => "TRANSACTIONAL_ID_NOT_FOUND",
            TxnError::TransactionAbortable => "TRANSACTION_ABORTABLE",
        }
    }

    /// PRODUCER_FENCED (KIP-588) exists from InitProducerId v4, AddPartitionsToTxn v2,
    /// AddOffsetsToTxn v2 and EndTxn v2 on; older versions get INVALID_PRODUCER_EPOCH, as Kafka
    /// answers them. `first_fenced_version` is the first version that understands it.
    pub(crate) fn for_version(self, api_version: i16, first_fenced_version: i16) -> TxnError {
        if self == TxnError::ProducerFenced && api_version < first_fenced_version {
            TxnError::InvalidProducerEpoch
        } else {
            self
        }
    }
}

/// Why bytes could not be decoded into a [`crate::TxnRecord`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ends inside a record (a torn write at the tail of a file).
    #[error("truncated record: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the record needs (header included), as far as known.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// The length field is larger than [`crate::MAX_RECORD_LEN`] (garbage, not a record).
    #[error("record length {0} exceeds the maximum")]
    TooLong(u32),
    /// The CRC-32C stored in the record does not match its bytes.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the record header.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// A format version this build does not know.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// The CRC matched but the body is not a valid record (a bug in the writer).
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}
