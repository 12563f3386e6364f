//! Waterline's transaction coordinator as a pure state machine: requests, clock ticks and the
//! broker's confirmations in; responses, state records to persist, marker writes and timers out.
//!
//! [`TxnCoordinator`] implements the coordinator side of Kafka transactions (KIP-98) for every
//! transactional id of one node: InitProducerId with a transactional id (including KIP-360
//! epoch bumps), AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, the producer-side checks of
//! TxnOffsetCommit and KIP-890 verification, DescribeTransactions, ListTransactions, transaction
//! timeouts and transactional-id expiry. It does no I/O and never reads a clock: time is the
//! `now_ms` argument, and everything the broker must do (persist a record, write markers, arm a
//! timer, answer a request) is listed in the [`Output`] of each call. It knows nothing of the
//! wire format either: the broker decodes requests into this crate's types and encodes the
//! answers in the schema of the request's version. Errors are Kafka's, per request version
//! ([`TxnError::code`] is the protocol code).
//!
//! # Driving it
//!
//! Every request carries a caller-chosen [`RequestId`]. Each call returns an [`Output`]:
//!
//! - `writes`: [`Write`]s, each a [`TxnRecord`] (the transactional id's whole state after the
//!   change) with a [`WriteId`]. Ids increase by one per write. The broker appends the encoded
//!   records to its transaction state file **in that order**, fsyncs (one fsync may cover many
//!   writes, from many calls: group commit), and then calls [`TxnCoordinator::durable`] with
//!   the highest id the fsync covered.
//! - `responses`: `(RequestId, Response)` pairs that may be sent now. A request missing from
//!   the output is *held* or *parked*, and appears in a later output (of `durable`,
//!   `markers_written`, or `shutdown`). Every request is answered exactly once.
//! - `markers`: [`MarkerWrite`]s. For each, the broker appends a COMMIT or ABORT control batch
//!   for the producer id and epoch to every listed partition, applies (commit) or discards
//!   (abort) the pending transactional offsets of that producer id in every listed group,
//!   makes all of it durable, and then calls [`TxnCoordinator::markers_written`].
//! - `timers`: deadlines; the broker calls [`TxnCoordinator::tick`] at or after each. Keeping
//!   one wake-up armed at [`TxnCoordinator::next_deadline`] after every call is sufficient.
//! - `needs_producer_ids`: the producer-id pool is low; see below.
//!
//! ## The order the broker must keep (fsync ordering)
//!
//! 1. **A response is released only when every record it depends on is durable.** The
//!    coordinator applies a change to its memory at once but holds the answer: any response
//!    about a transactional id waits until every write about that id handed out so far is
//!    confirmed by `durable`. So the broker must never answer a request before the coordinator
//!    releases it, and must confirm `durable(id)` only after the fsync that covers record `id`
//!    **and every earlier one** returned. (Kafka answers after the append to
//!    `__transaction_state` is replicated; here it is fsynced.)
//! 2. **Markers are written only after their PrepareCommit/PrepareAbort record is durable.** A
//!    [`MarkerWrite`] is issued by the `durable` call that covers that record (or by
//!    [`TxnCoordinator::load`] for a record read back from disk), never earlier: otherwise a
//!    crash could leave a COMMIT marker in a partition for a transaction that recovery aborts.
//! 3. **The transaction completes only after its markers are durable.** Call
//!    `markers_written` only when the control batches and the group offsets are fsynced. It
//!    writes the CompleteCommit/CompleteAbort record; a crash before that record is durable
//!    makes recovery issue the same markers again, so **writing markers must be idempotent**
//!    (a second COMMIT for a producer with no open transaction in a partition changes
//!    nothing, as in Kafka).
//! 4. **A failed write poisons the coordinator.** If an append or fsync of the state file
//!    fails, do not retry it and do not confirm anything after it: call
//!    [`TxnCoordinator::shutdown`] (every held and parked request is answered
//!    NOT_COORDINATOR, and clients look the coordinator up again) and stop serving
//!    transactions until a restart recovers from what is on disk. (Reloading the same file in
//!    the same process could read back records the kernel failed to persist.)
//!
//! ```
//! use waterline_txn::*;
//!
//! let (mut c, _) = TxnCoordinator::recover(TxnConfig::default(), Vec::new(), 0);
//! c.add_producer_ids(1000..2000); // a block the broker reserved durably
//!
//! // InitProducerId: applied at once, answered once its record is durable.
//! let out = c.init_producer_id(1, InitProducerIdRequest {
//!     transactional_id: "app-1".into(),
//!     transaction_timeout_ms: 60_000,
//!     producer_id: NO_PRODUCER_ID,
//!     producer_epoch: NO_PRODUCER_EPOCH,
//!     api_version: 4,
//! }, 0);
//! assert!(out.response(1).is_none());
//! let fsynced = out.writes.last().unwrap().id; // the broker appended and fsynced the records
//! let out = c.durable(fsynced);
//! let Some(Response::InitProducerId(r)) = out.response(1) else { panic!() };
//! assert_eq!((r.producer_id, r.producer_epoch), (1000, 0));
//!
//! // AddPartitionsToTxn, then EndTxn(commit).
//! let out = c.add_partitions(2, AddPartitionsRequest {
//!     transactional_id: "app-1".into(),
//!     producer_id: 1000,
//!     producer_epoch: 0,
//!     partitions: vec![TopicPartition::new("out", 0)],
//!     api_version: 3,
//! }, 5);
//! c.durable(out.writes.last().unwrap().id);
//! let out = c.end_txn(3, EndTxnRequest {
//!     transactional_id: "app-1".into(),
//!     producer_id: 1000,
//!     producer_epoch: 0,
//!     result: TxnResult::Commit,
//!     api_version: 3,
//! }, 9);
//! assert!(out.markers.is_empty(), "no markers before PrepareCommit is durable");
//! let out = c.durable(out.writes.last().unwrap().id);
//! assert_eq!(out.response(3), Some(&Response::EndTxn(None)));
//! let marker = &out.markers[0];
//! assert_eq!(marker.partitions, vec![TopicPartition::new("out", 0)]);
//!
//! // The broker writes the COMMIT control batch, fsyncs it, and confirms.
//! let out = c.markers_written(marker.id, 12);
//! assert_eq!(out.writes[0].record.state, TxnState::CompleteCommit);
//! c.durable(out.writes[0].id);
//! ```
//!
//! ## Wiring it into the broker (checklist)
//!
//! 1. **State file**, e.g. `<data_dir>/transactions`: frames appended in write order. At
//!    startup decode it with [`decode_all`]; an error in the last frame is a torn write
//!    (truncate to `valid_len`, fsync); an error before it is corruption (refuse to start,
//!    naming the path). Build the coordinator with [`TxnCoordinator::new`] at once (requests
//!    answer COORDINATOR_LOAD_IN_PROGRESS) and [`TxnCoordinator::load`] the records; act on the
//!    returned output like any other (it may carry markers and aborts).
//! 2. **Producer ids**: give the broker's durable allocator a block reservation shared with
//!    idempotent producers, and call [`TxnCoordinator::add_producer_ids`] after loading and
//!    whenever an output has `needs_producer_ids`.
//! 3. **One writer**: the coordinator behind one mutex; a task appends `writes` in id order
//!    across calls, fsyncs once per batch, then calls `durable(highest id)`. A failed append or
//!    fsync poisons it: `shutdown()`, answer what it returns, stop serving transactions.
//! 4. **Answers**: a oneshot per request id, completed when the id shows up in any output; the
//!    handlers hand these waits back from `handlers::apply` like parked JoinGroups.
//! 5. **Timers**: a task sleeping until [`TxnCoordinator::next_deadline`], then `tick(now)`.
//! 6. **Markers**: per [`MarkerWrite`], append a control batch (COMMIT/ABORT, its producer id
//!    and epoch) to each partition, which also ends the producer's open transaction there
//!    (LSO, aborted-transaction index); apply or discard the groups' pending offsets of that
//!    producer id; fsync all of it; then `markers_written(id)`. Must be idempotent (recovery
//!    repeats it); a partition that no longer exists is skipped.
//! 7. **Handlers**: FindCoordinator key_type=1 (this node); InitProducerId with a
//!    transactional id (without one, the existing idempotent path); AddPartitionsToTxn v0-3
//!    (answer unknown topics per partition with UNKNOWN_TOPIC_OR_PARTITION and the rest
//!    OPERATION_NOT_ATTEMPTED before calling in; the coordinator's one error goes to every
//!    partition); AddOffsetsToTxn; EndTxn v0-4 (not v5: transaction version 2);
//!    DescribeTransactions; ListTransactions (v0-1). Add each to waterline-wire's request
//!    table.
//! 8. **TxnOffsetCommit**: the group coordinator's member/generation check (KIP-447: generation
//!    -1 with an empty member id is accepted) plus [`TxnCoordinator::check_txn_offset_commit`];
//!    then store the offsets durably as pending for (group, producer id), invisible to
//!    OffsetFetch (`require_stable` answers UNSTABLE_OFFSET_COMMIT) until a marker names the
//!    group.
//! 9. **Produce**: before appending a producer's first transactional batch to a partition in a
//!    transaction, [`TxnCoordinator::verify_partitions`] (KIP-890 part 1) so a batch outside
//!    an added partition cannot create a hanging transaction.
//! 10. **Compaction**: when the file is large and no write is unconfirmed, rewrite it from
//!     [`TxnCoordinator::records`] (new file, fsync, rename, fsync the directory).
//!
//! # States and transitions
//!
//! | from | event | to |
//! |---|---|---|
//! | (new id), Empty, CompleteCommit, CompleteAbort | InitProducerId | Empty, epoch + 1 |
//! | Empty, CompleteCommit, CompleteAbort, Ongoing | AddPartitionsToTxn, AddOffsetsToTxn | Ongoing |
//! | Ongoing | EndTxn(commit) | PrepareCommit |
//! | Ongoing | EndTxn(abort) | PrepareAbort |
//! | Ongoing | timeout, or InitProducerId of a new producer | PrepareAbort, epoch + 1 |
//! | PrepareCommit | `markers_written` | CompleteCommit |
//! | PrepareAbort | `markers_written` | CompleteAbort |
//! | Empty, CompleteCommit, CompleteAbort | `transactional.id.expiration.ms` idle | Dead (forgotten) |
//!
//! What each request answers (after the empty-id check: INVALID_REQUEST), by state:
//!
//! | request | unknown id, other producer id | stale epoch | Empty | Ongoing | PrepareCommit / PrepareAbort | CompleteCommit / CompleteAbort |
//! |---|---|---|---|---|---|---|
//! | InitProducerId | new producer id (KIP-360 form: PRODUCER_FENCED for another id) | KIP-360 form: PRODUCER_FENCED | epoch + 1 | abort under epoch + 1, wait, then epoch + 1 | wait | epoch + 1 |
//! | AddPartitionsToTxn, AddOffsetsToTxn | INVALID_PRODUCER_ID_MAPPING | PRODUCER_FENCED | Ongoing | added (OK at once if nothing new) | wait | Ongoing |
//! | EndTxn | INVALID_PRODUCER_ID_MAPPING | PRODUCER_FENCED | INVALID_TXN_STATE | PrepareCommit / PrepareAbort | same result: wait, else INVALID_TXN_STATE | same result: OK (retry), else INVALID_TXN_STATE |
//! | TxnOffsetCommit check | INVALID_PRODUCER_ID_MAPPING | INVALID_PRODUCER_EPOCH | INVALID_TXN_STATE (v5+: TRANSACTION_ABORTABLE) | OK if the group's addition is durable, else as Empty | CONCURRENT_TRANSACTIONS | as Empty |
//! | verification (produce path) | INVALID_PRODUCER_ID_MAPPING | PRODUCER_FENCED | TRANSACTION_ABORTABLE | OK per partition whose addition is durable, else TRANSACTION_ABORTABLE | CONCURRENT_TRANSACTIONS | TRANSACTION_ABORTABLE |
//!
//! "wait" is CONCURRENT_TRANSACTIONS in Kafka (and here with [`TxnConfig::wait_for_markers`]
//! off). InitProducerId first answers INVALID_REQUEST when only one of producer id and epoch
//! is set, and INVALID_TRANSACTION_TIMEOUT outside `1..=transaction.max.timeout.ms`.
//!
//! - **Empty**: after InitProducerId. Expires (a `Dead` tombstone record is written and the id
//!   is forgotten) after `transactional.id.expiration.ms` without a change, as do
//!   CompleteCommit and CompleteAbort.
//! - **Ongoing**: partitions or groups were added; the transaction timeout counts from the
//!   first addition. Past it, [`TxnCoordinator::tick`] aborts the transaction under a bumped
//!   epoch, which fences its producer (Kafka aborts when `start + timeout < now`).
//! - **PrepareCommit / PrepareAbort**: the end is durable; markers are being written.
//!   Requests that Kafka answers CONCURRENT_TRANSACTIONS here (InitProducerId, AddPartitions,
//!   AddOffsets, a repeated EndTxn) are parked and evaluated when the markers are written,
//!   unless [`TxnConfig::wait_for_markers`] is off.
//! - **CompleteCommit / CompleteAbort**: the markers are durable. A retried EndTxn with the
//!   same result answers OK; the opposite one INVALID_TXN_STATE. A new addition opens the next
//!   transaction under the same epoch (transaction version 1: no bump per transaction).
//! - **Dead**: never held; the state of tombstone records. (Kafka's PrepareEpochFence is not
//!   needed: the fence goes straight to PrepareAbort with the bumped epoch, the record Kafka
//!   persists too.)
//!
//! # Producer epochs and fencing
//!
//! InitProducerId bumps the epoch; every request with an older epoch of the same producer id
//! answers PRODUCER_FENCED (INVALID_PRODUCER_EPOCH on InitProducerId below v4 and on
//! AddPartitionsToTxn, AddOffsetsToTxn and EndTxn below v2, and on the TxnOffsetCommit
//! check), and a wrong producer id INVALID_PRODUCER_ID_MAPPING. On an Ongoing transaction,
//! InitProducerId first aborts it under epoch + 1 (the ABORT markers carry that epoch and
//! fence the old producer in every partition), then, once the abort completes, bumps again and
//! answers. KIP-360: an InitProducerId carrying the producer's current id and epoch bumps it
//! and remembers the old epoch, so a retry of that bump answers the same epoch; an epoch older
//! than both answers PRODUCER_FENCED. At epoch `i16::MAX - 1` the producer id is rotated (a new
//! id at epoch 0) so the coordinator always has one epoch left to fence with.
//!
//! # Producer ids
//!
//! Producer ids are an input: the broker owns the durable allocator (shared with idempotent
//! producers, so an id is never issued twice), reserves a block, and hands it over with
//! [`TxnCoordinator::add_producer_ids`]. The coordinator takes ids from that pool for new
//! transactional ids and rotations. While [`Output::needs_producer_ids`] is set the broker
//! should hand over another block; when the pool is empty, requests that need an id answer
//! COORDINATOR_LOAD_IN_PROGRESS (retriable), as Kafka's coordinator does while it waits for a
//! block. Ids left in the pool at a restart are never used.
//!
//! # Recovery
//!
//! [`TxnCoordinator::new`] starts *loading*: requests answer COORDINATOR_LOAD_IN_PROGRESS.
//! [`TxnCoordinator::load`] takes every record read back from the state file, in file order
//! ([`decode_all`] decodes a file and reports where a torn tail starts); the latest record per
//! transactional id wins and a `Dead` one removes it. A transaction found in
//! PrepareCommit/PrepareAbort has its marker write re-issued in the returned output; an
//! Ongoing one is aborted at its timeout (at once if the timeout passed while the broker was
//! down). Held and parked requests are not recovered: they died with the connections.
//!
//! **Compaction.** The file grows by one record per change. Once every write handed out is
//! confirmed, the broker may replace the file with [`TxnCoordinator::records`] (write a new
//! file, fsync, rename, fsync the directory); loading either file gives the same state.
//!
//! # FORMAT
//!
//! The state file is a sequence of frames, one [`TxnRecord`] each, appended in write order.
//! All integers are big-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `length`: u32, bytes after the CRC field (version byte + body); at most 16 MiB ([`MAX_RECORD_LEN`]) |
//! | 4 | 4 | `crc`: u32, CRC-32C (Castagnoli) of those `length` bytes |
//! | 8 | 1 | `version`: u8, [`FORMAT_VERSION`] = 1 |
//! | 9 | … | body, version 1 (below) |
//!
//! Body, version 1 (`str` is a u16 byte length followed by UTF-8 bytes; counts are u32):
//!
//! | size | field |
//! |---|---|
//! | 1 | state: Kafka's `TransactionState` id (0 Empty, 1 Ongoing, 2 PrepareCommit, 3 PrepareAbort, 4 CompleteCommit, 5 CompleteAbort, 6 Dead = tombstone) |
//! | 8 | producer id (i64) |
//! | 8 | previous producer id (i64, -1 none) |
//! | 2 | producer epoch (i16, -1 none) |
//! | 2 | last producer epoch (i16, -1 none; KIP-360) |
//! | 4 | transaction timeout ms (i32) |
//! | 8 | transaction start ms (i64, -1 none) |
//! | 8 | last update ms (u64) |
//! | str | transactional id |
//! | 4 + n × (str, 4) | partitions: count, then topic and partition (i32) each, sorted |
//! | 4 + n × str | groups added with AddOffsetsToTxn: count, then group id each, sorted |
//!
//! The body must end exactly at `length`. Decoding refuses, with a [`DecodeError`]: a buffer
//! that ends inside a frame (`Truncated`: a torn final write), a length above the maximum
//! (`TooLong`), a CRC mismatch (`CrcMismatch`), an unknown version (`UnknownVersion`), and a
//! body that does not parse (`Malformed`; element counts are bounded by the bytes left before
//! anything is allocated). A future version adds a version number; version 1 frames must keep
//! decoding (`tests/format.rs` holds a golden version-1 frame).
//!
//! # Differences from Kafka
//!
//! - Requests Kafka answers CONCURRENT_TRANSACTIONS while markers are written wait for them
//!   instead (configurable: [`TxnConfig::wait_for_markers`]), including the InitProducerId that
//!   fences an Ongoing transaction: it is answered with the bumped epoch after the abort
//!   instead of CONCURRENT_TRANSACTIONS and a retry.
//! - While a write is in flight Kafka answers CONCURRENT_TRANSACTIONS (a pending transition);
//!   here the change applies at once and later requests see it, with their answers held until
//!   it is durable. Pipelined requests therefore succeed in order.
//! - Timeouts and expiry fire at their exact deadline instead of on a 10-second scan.
//! - Transaction version 2 (KIP-890 part 2: EndTxn v5+ with an epoch bump per transaction,
//!   implicit partition addition) is not implemented; the broker advertises EndTxn up to v4.
//!   AddPartitionsToTxn v4+ (batched, broker to broker) needs no advertising on one node; its
//!   verify-only form is [`TxnCoordinator::verify_partitions`], for the produce path.
//! - DescribeTransactions and ListTransactions read the applied state, which may include a
//!   change whose record is not durable yet. The TxnOffsetCommit check and verification trust
//!   an added partition or group only once the record that added it is durable, as Kafka
//!   (which adds them to its metadata when the record is persisted).
#![deny(missing_docs)]

mod coordinator;
mod error;
mod record;
mod types;

#[cfg(test)]
mod proptests;

pub use coordinator::TxnCoordinator;
pub use error::{DecodeError, TxnError};
pub use record::{
    DecodedRecords, FORMAT_VERSION, HEADER_LEN, MAX_RECORD_LEN, MAX_STRING_LEN, TxnRecord,
    decode_all,
};
pub use types::*;
