//! Requests, responses, configuration, outputs and views of the transaction coordinator.

use std::fmt;

pub use waterline_core::TopicPartition;

use crate::error::TxnError;
use crate::record::TxnRecord;

/// A caller-chosen token identifying one in-flight request. Responses (some released later, see
/// [`Output`]) are addressed by it, so it must be unique among the caller's in-flight requests.
pub type RequestId = u64;

/// Identifies one state record handed out in [`Output::writes`]. Ids increase by one per write
/// within a coordinator's lifetime; [`crate::TxnCoordinator::durable`] confirms a prefix.
pub type WriteId = u64;

/// Identifies one [`MarkerWrite`]; the broker confirms it with
/// [`crate::TxnCoordinator::markers_written`].
pub type MarkerId = u64;

/// "No producer id" in Kafka's protocol (`RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;

/// "No producer epoch" in Kafka's protocol (`RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Tunables, named after the Kafka broker settings they mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the largest transaction timeout a producer may ask for
    /// (InitProducerId answers INVALID_TRANSACTION_TIMEOUT above it). Kafka: 900_000.
    pub max_transaction_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: a transactional id with no transaction in flight
    /// (Empty, CompleteCommit, CompleteAbort) is forgotten this long after its last update
    /// (a tombstone is written). Kafka: 604_800_000 (7 days).
    pub transactional_id_expiration_ms: u64,
    /// Kafka answers CONCURRENT_TRANSACTIONS to InitProducerId, AddPartitionsToTxn,
    /// AddOffsetsToTxn and a repeated EndTxn while a transaction's markers are being written,
    /// and the client retries after a backoff. With `true` (the default) those requests are
    /// parked instead and evaluated once the markers are written, which saves the client a
    /// round trip and a backoff; `false` answers exactly as Kafka does.
    pub wait_for_markers: bool,
    /// When fewer producer ids than this remain in the pool, [`Output::needs_producer_ids`] is
    /// set so the broker hands over another block before the pool runs dry.
    pub producer_id_low_watermark: u64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_transaction_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3_600 * 1_000,
            wait_for_markers: true,
            producer_id_low_watermark: 16,
        }
    }
}

/// The state of a transactional id, as Kafka names it in DescribeTransactions and
/// ListTransactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction in progress (after InitProducerId).
    Empty,
    /// Partitions or offsets were added; the transaction is open.
    Ongoing,
    /// EndTxn(commit) is durable; COMMIT markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fencing InitProducerId is durable; ABORT markers are being
    /// written.
    PrepareAbort,
    /// The COMMIT markers are written.
    CompleteCommit,
    /// The ABORT markers are written.
    CompleteAbort,
    /// The transactional id expired. Never held in memory: it is the state of a tombstone record.
    Dead,
}

impl TxnState {
    /// All states, in Kafka's id order.
    pub const ALL: [TxnState; 7] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
    ];

    /// Kafka's name for the state (`"PrepareCommit"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
        }
    }

    /// Parses a Kafka state name exactly (ListTransactions filters are matched this way).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Kafka's numeric id of the state (`TransactionState.id`), used in the record format.
    pub fn id(self) -> u8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
        }
    }

    /// The state with Kafka's numeric id `id`.
    pub fn from_id(id: u8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.id() == id)
    }

    /// Markers are being written (PrepareCommit or PrepareAbort).
    pub fn is_completing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

impl fmt::Display for TxnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnResult {
    /// Commit: COMMIT markers; the groups' pending offsets are applied.
    Commit,
    /// Abort: ABORT markers; the groups' pending offsets are discarded.
    Abort,
}

/// InitProducerId with a transactional id (the broker serves InitProducerId without one, for
/// idempotent producers, on its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProducerIdRequest {
    /// Transactional id (non-empty; empty answers INVALID_REQUEST).
    pub transactional_id: String,
    /// `transaction.timeout.ms` of the producer.
    pub transaction_timeout_ms: i32,
    /// v3+ (KIP-360): the producer's current id, to bump its epoch after an error; -1 if none.
    pub producer_id: i64,
    /// v3+ (KIP-360): the producer's current epoch; -1 if none.
    pub producer_epoch: i16,
    /// Request version: below 4, PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.
    pub api_version: i16,
}

/// InitProducerId response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitProducerIdResponse {
    /// Error, if any.
    pub error: Option<TxnError>,
    /// Producer id (-1 on error).
    pub producer_id: i64,
    /// Producer epoch (-1 on error).
    pub producer_epoch: i16,
}

impl InitProducerIdResponse {
    pub(crate) fn error(error: TxnError) -> InitProducerIdResponse {
        InitProducerIdResponse {
            error: Some(error),
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        }
    }
}

/// AddPartitionsToTxn v0-3 (one transaction). For the batched v4+ form, the broker splits the
/// batch: each non-verify-only transaction is one of these, each verify-only one is a
/// [`crate::TxnCoordinator::verify_partitions`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitionsRequest {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id from InitProducerId.
    pub producer_id: i64,
    /// Producer epoch from InitProducerId.
    pub producer_epoch: i16,
    /// Partitions to add (the broker answers unknown or unauthorized partitions itself, with
    /// OPERATION_NOT_ATTEMPTED for the rest, before calling the coordinator).
    pub partitions: Vec<TopicPartition>,
    /// Request version: below 2, PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.
    pub api_version: i16,
}

/// AddOffsetsToTxn: the group's transactional offsets become part of the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOffsetsRequest {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Consumer group whose TxnOffsetCommits join the transaction.
    pub group_id: String,
    /// Request version: below 2, PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.
    pub api_version: i16,
}

/// EndTxn (v0-4: transaction version 1, no epoch bump per transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxnRequest {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Commit (`Commit`) or abort (`Abort`).
    pub result: TxnResult,
    /// Request version: below 2, PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.
    pub api_version: i16,
}

/// A request the coordinator answers (possibly later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// InitProducerId.
    InitProducerId(InitProducerIdRequest),
    /// AddPartitionsToTxn.
    AddPartitions(AddPartitionsRequest),
    /// AddOffsetsToTxn.
    AddOffsets(AddOffsetsRequest),
    /// EndTxn.
    EndTxn(EndTxnRequest),
}

impl Request {
    /// The transactional id the request is about.
    pub fn transactional_id(&self) -> &str {
        match self {
            Request::InitProducerId(r) => &r.transactional_id,
            Request::AddPartitions(r) => &r.transactional_id,
            Request::AddOffsets(r) => &r.transactional_id,
            Request::EndTxn(r) => &r.transactional_id,
        }
    }

    pub(crate) fn error_response(&self, error: TxnError) -> Response {
        match self {
            Request::InitProducerId(_) => {
                Response::InitProducerId(InitProducerIdResponse::error(error))
            }
            Request::AddPartitions(_) => Response::AddPartitions(Some(error)),
            Request::AddOffsets(_) => Response::AddOffsets(Some(error)),
            Request::EndTxn(_) => Response::EndTxn(Some(error)),
        }
    }
}

/// A response, addressed by [`RequestId`] in an [`Output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// InitProducerId response.
    InitProducerId(InitProducerIdResponse),
    /// AddPartitionsToTxn: the error applies to every partition of the request.
    AddPartitions(Option<TxnError>),
    /// AddOffsetsToTxn.
    AddOffsets(Option<TxnError>),
    /// EndTxn.
    EndTxn(Option<TxnError>),
}

impl Response {
    /// The response's error, if any.
    pub fn error(&self) -> Option<TxnError> {
        match self {
            Response::InitProducerId(r) => r.error,
            Response::AddPartitions(e) | Response::AddOffsets(e) | Response::EndTxn(e) => *e,
        }
    }

    /// Kafka error code of the response; 0 for none.
    pub fn error_code(&self) -> i16 {
        TxnError::code_of(self.error())
    }
}

/// A state record to persist, in [`Output::writes`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Confirm with [`crate::TxnCoordinator::durable`] once this record (and every earlier one)
    /// is fsynced.
    pub id: WriteId,
    /// The record: the transactional id's whole state after the change.
    pub record: TxnRecord,
}

/// "Write these transaction markers, then call [`crate::TxnCoordinator::markers_written`]."
///
/// Issued only once the PrepareCommit/PrepareAbort record it completes is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerWrite {
    /// Pass back to `markers_written`.
    pub id: MarkerId,
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id of the markers.
    pub producer_id: i64,
    /// Producer epoch of the markers (bumped when the abort fenced the producer).
    pub producer_epoch: i16,
    /// COMMIT or ABORT.
    pub result: TxnResult,
    /// Append one control batch (COMMIT/ABORT for producer id/epoch) to each, sorted.
    pub partitions: Vec<TopicPartition>,
    /// Apply (commit) or discard (abort) each group's pending transactional offsets of this
    /// producer id, sorted.
    pub groups: Vec<String>,
}

/// What a timer is for (informational: [`crate::TxnCoordinator::tick`] re-checks everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// An Ongoing transaction passes its timeout and is aborted.
    TransactionTimeout,
    /// An idle transactional id expires.
    Expiration,
}

/// "Call [`crate::TxnCoordinator::tick`] at or after `deadline_ms`."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRequest {
    /// Transactional id the timer belongs to.
    pub transactional_id: String,
    /// Absolute time, same clock as the `now_ms` inputs.
    pub deadline_ms: u64,
    /// What it is for.
    pub kind: TimerKind,
}

/// Everything one call produced. See the crate docs for the order the broker must keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Responses that may be sent now, each addressed to a request id. A request absent from
    /// every output so far is held: either its state record is not durable yet, or it waits
    /// for a transaction's markers.
    pub responses: Vec<(RequestId, Response)>,
    /// State records to append, in order, to the durable transaction state. Each is confirmed
    /// with [`crate::TxnCoordinator::durable`]; responses and markers that depend on a record
    /// are released only then.
    pub writes: Vec<Write>,
    /// Marker writes to perform now (their PrepareCommit/PrepareAbort records are durable).
    pub markers: Vec<MarkerWrite>,
    /// Deadlines scheduled by this call.
    pub timers: Vec<TimerRequest>,
    /// The producer-id pool is below the low watermark: hand over another block with
    /// [`crate::TxnCoordinator::add_producer_ids`].
    pub needs_producer_ids: bool,
}

impl Output {
    /// The response addressed to `id`, if this output has one.
    pub fn response(&self, id: RequestId) -> Option<&Response> {
        self.responses
            .iter()
            .find(|(r, _)| *r == id)
            .map(|(_, resp)| resp)
    }

    /// Appends another output (used when the caller batches calls).
    pub fn extend(&mut self, other: Output) {
        self.responses.extend(other.responses);
        self.writes.extend(other.writes);
        self.markers.extend(other.markers);
        self.timers.extend(other.timers);
        self.needs_producer_ids |= other.needs_producer_ids;
    }

    /// True if the output carries nothing.
    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
            && self.writes.is_empty()
            && self.markers.is_empty()
            && self.timers.is_empty()
            && !self.needs_producer_ids
    }
}

/// The fields of a TxnOffsetCommit that the transaction coordinator validates (the group
/// coordinator checks generation and member id, TxnOffsetCommit v3+, on its side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOffsetCommitCheck {
    /// Transactional id.
    pub transactional_id: String,
    /// Consumer group the offsets are for.
    pub group_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// TxnOffsetCommit version: from 5 on, a group that is not in the transaction answers
    /// TRANSACTION_ABORTABLE; before, INVALID_TXN_STATE.
    pub api_version: i16,
}

/// One transaction in a DescribeTransactions answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedTxn {
    /// Transactional id.
    pub transactional_id: String,
    /// Error: INVALID_REQUEST (empty id), TRANSACTIONAL_ID_NOT_FOUND,
    /// COORDINATOR_LOAD_IN_PROGRESS; the fields below are defaults then.
    pub error: Option<TxnError>,
    /// State.
    pub state: TxnState,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Transaction timeout.
    pub transaction_timeout_ms: i32,
    /// When the transaction started (first partition or group added); -1 if none.
    pub transaction_start_ms: i64,
    /// Partitions in the transaction, sorted.
    pub partitions: Vec<TopicPartition>,
}

/// One transaction in a ListTransactions answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTxn {
    /// Transactional id.
    pub transactional_id: String,
    /// Producer id.
    pub producer_id: i64,
    /// State.
    pub state: TxnState,
}

/// ListTransactions filters (each empty/`None` matches everything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListTransactionsFilter {
    /// State names, exactly as Kafka spells them; unknown names are reported back (and, as in
    /// Kafka, a filter of only unknown names matches nothing).
    pub states: Vec<String>,
    /// Producer ids.
    pub producer_ids: Vec<i64>,
    /// v1+ (KIP-994): only Ongoing transactions running longer than this many ms.
    pub min_duration_ms: Option<i64>,
}

/// ListTransactions answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListTransactionsResponse {
    /// COORDINATOR_LOAD_IN_PROGRESS while loading.
    pub error: Option<TxnError>,
    /// State filters that name no state.
    pub unknown_state_filters: Vec<String>,
    /// Matching transactions, sorted by transactional id.
    pub transactions: Vec<ListedTxn>,
}

/// A read-only view of one transactional id, for metrics, tooling and tests: exactly the
/// fields of its latest [`TxnRecord`] plus what is in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnView {
    /// The state as persisted (the latest record).
    pub record: TxnRecord,
    /// Requests parked until the transaction's markers are written.
    pub parked: Vec<RequestId>,
    /// The marker write in flight (PrepareX states once the record is durable).
    pub marker: Option<MarkerId>,
}
