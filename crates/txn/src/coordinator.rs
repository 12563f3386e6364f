//! [`TxnCoordinator`]: the entry point. It owns every transactional id, applies requests and
//! clock ticks to them, and tracks which state records are durable so that no response or
//! marker write ever depends on a record that could still be lost.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;

use crate::error::TxnError;
use crate::record::{MAX_STRING_LEN, TxnRecord};
use crate::types::{
    AddOffsetsRequest, AddPartitionsRequest, DescribedTxn, EndTxnRequest, InitProducerIdRequest,
    InitProducerIdResponse, ListTransactionsFilter, ListTransactionsResponse, ListedTxn, MarkerId,
    MarkerWrite, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, Output, Request, RequestId, Response,
    TimerKind, TimerRequest, TopicPartition, TxnConfig, TxnOffsetCommitCheck, TxnResult, TxnState,
    TxnView, Write, WriteId,
};

/// First request versions that understand PRODUCER_FENCED (KIP-588).
const INIT_FENCED_VERSION: i16 = 4;
const ADD_FENCED_VERSION: i16 = 2;
const END_FENCED_VERSION: i16 = 2;
/// First TxnOffsetCommit version that understands TRANSACTION_ABORTABLE (KIP-890).
const TXN_OFFSET_COMMIT_ABORTABLE_VERSION: i16 = 5;

/// Kafka never hands out an epoch at or above `i16::MAX - 1`: the coordinator must always be
/// able to fence a producer with one more bump. At this epoch InitProducerId rotates the id.
fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// One transactional id.
#[derive(Debug, Clone)]
struct Txn {
    id: String,
    state: TxnState,
    producer_id: i64,
    previous_producer_id: i64,
    epoch: i16,
    last_epoch: i16,
    timeout_ms: i32,
    /// Partitions in the transaction, each with the write that added it: verification only
    /// trusts an addition once that write is durable (Kafka adds a partition to the metadata
    /// when its record is persisted).
    partitions: BTreeMap<TopicPartition, WriteId>,
    /// Groups added with AddOffsetsToTxn, likewise.
    groups: BTreeMap<String, WriteId>,
    start_ms: i64,
    last_update_ms: u64,
    /// The latest write about this id (durable once `<= durable_up_to`).
    last_write: Option<WriteId>,
    /// The marker write handed out and not yet confirmed.
    marker: Option<MarkerId>,
    /// Requests waiting for this transaction's markers (only in PrepareX states).
    parked: Vec<(RequestId, Request)>,
}

impl Txn {
    fn from_record(r: TxnRecord) -> Txn {
        Txn {
            id: r.transactional_id,
            state: r.state,
            producer_id: r.producer_id,
            previous_producer_id: r.previous_producer_id,
            epoch: r.producer_epoch,
            last_epoch: r.last_producer_epoch,
            timeout_ms: r.transaction_timeout_ms,
            partitions: r.partitions.into_iter().map(|p| (p, 0)).collect(),
            groups: r.groups.into_iter().map(|g| (g, 0)).collect(),
            start_ms: r.transaction_start_ms,
            last_update_ms: r.last_update_ms,
            last_write: None,
            marker: None,
            parked: Vec::new(),
        }
    }

    fn record(&self) -> TxnRecord {
        TxnRecord {
            transactional_id: self.id.clone(),
            state: self.state,
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            producer_epoch: self.epoch,
            last_producer_epoch: self.last_epoch,
            transaction_timeout_ms: self.timeout_ms,
            partitions: self.partitions.keys().cloned().collect(),
            groups: self.groups.keys().cloned().collect(),
            transaction_start_ms: self.start_ms,
            last_update_ms: self.last_update_ms,
        }
    }

    /// When an Ongoing transaction times out: Kafka aborts once `start + timeout < now`.
    fn timeout_deadline(&self) -> Option<u64> {
        (self.state == TxnState::Ongoing).then(|| {
            let start = u64::try_from(self.start_ms).unwrap_or(0);
            let timeout = u64::try_from(self.timeout_ms).unwrap_or(0);
            start.saturating_add(timeout).saturating_add(1)
        })
    }

    fn expiration_deadline(&self, expiration_ms: u64) -> Option<u64> {
        let idle = matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        );
        (idle && self.parked.is_empty()).then(|| self.last_update_ms.saturating_add(expiration_ms))
    }

    fn deadline(&self, expiration_ms: u64) -> Option<(u64, TimerKind)> {
        self.timeout_deadline()
            .map(|d| (d, TimerKind::TransactionTimeout))
            .or_else(|| {
                self.expiration_deadline(expiration_ms)
                    .map(|d| (d, TimerKind::Expiration))
            })
    }
}

/// The transaction coordinator of one node: a pure state machine over all its transactional ids.
///
/// Every method takes `now_ms` where time matters and never reads a clock. See the crate docs
/// for how the broker drives it and the order in which it must persist, confirm and answer.
#[derive(Debug, Clone)]
pub struct TxnCoordinator {
    config: TxnConfig,
    loading: bool,
    txns: BTreeMap<String, Txn>,
    /// The id the next write gets (ids start at 1).
    next_write: WriteId,
    /// Every write with an id at or below this is durable.
    durable_up_to: WriteId,
    /// Responses waiting for a write to become durable.
    held: BTreeMap<WriteId, Vec<(RequestId, Response)>>,
    /// Transactions whose markers may be written once the write (their PrepareX record) is
    /// durable.
    markers_after: BTreeMap<WriteId, String>,
    /// Tombstones written for expired ids, not yet durable.
    tombstones: BTreeMap<String, WriteId>,
    /// Marker writes handed out: marker id to transactional id.
    markers: BTreeMap<MarkerId, String>,
    next_marker: MarkerId,
    producer_ids: VecDeque<Range<i64>>,
}

/// Accumulates one call's output.
#[derive(Default)]
struct Fx {
    out: Output,
}

impl TxnCoordinator {
    /// A coordinator that is still loading: every request answers COORDINATOR_LOAD_IN_PROGRESS
    /// until [`TxnCoordinator::load`] installs the recovered state (call it with no records on
    /// a fresh data directory).
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            loading: true,
            txns: BTreeMap::new(),
            next_write: 1,
            durable_up_to: 0,
            held: BTreeMap::new(),
            markers_after: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            markers: BTreeMap::new(),
            next_marker: 1,
            producer_ids: VecDeque::new(),
        }
    }

    /// [`TxnCoordinator::new`] followed by [`TxnCoordinator::load`].
    pub fn recover(
        config: TxnConfig,
        records: impl IntoIterator<Item = TxnRecord>,
        now_ms: u64,
    ) -> (TxnCoordinator, Output) {
        let mut c = TxnCoordinator::new(config);
        let out = c.load(records, now_ms);
        (c, out)
    }

    /// Installs the durable state and starts serving. `records` are every record read back
    /// from the state file, in the order they were written; the latest per transactional id
    /// wins and a `Dead` one removes it. A transaction found in PrepareCommit/PrepareAbort gets
    /// its marker write in the returned output (its record is durable); an Ongoing one is
    /// aborted at its timeout by [`TxnCoordinator::tick`] (at once if that passed while the
    /// broker was down, so the output may carry PrepareAbort writes).
    ///
    /// Called on a coordinator that is already serving, it first does what
    /// [`TxnCoordinator::shutdown`] does (its answers are in the returned output).
    pub fn load(&mut self, records: impl IntoIterator<Item = TxnRecord>, now_ms: u64) -> Output {
        let mut fx = Fx::default();
        if !self.loading {
            fx.out.extend(self.shutdown());
        }
        let mut latest: BTreeMap<String, TxnRecord> = BTreeMap::new();
        for r in records {
            if r.state == TxnState::Dead {
                latest.remove(&r.transactional_id);
            } else {
                latest.insert(r.transactional_id.clone(), r);
            }
        }
        for (id, r) in latest {
            let txn = Txn::from_record(r);
            self.txns.insert(id.clone(), txn);
            if self.txns[&id].state.is_completing() {
                self.issue_marker(&id, &mut fx);
            }
            self.schedule(&id, &mut fx);
        }
        self.loading = false;
        // Transactions that timed out while the broker was down are aborted now.
        fx.out.extend(self.tick(now_ms));
        self.finish(fx)
    }

    /// The configuration.
    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    /// True until [`TxnCoordinator::load`] ran (and again after [`TxnCoordinator::shutdown`]).
    pub fn is_loading(&self) -> bool {
        self.loading
    }

    /// Hands the coordinator a block of producer ids it may issue (for new transactional ids
    /// and for rotating an id whose epochs are exhausted). The broker reserves the block
    /// durably first, from the same allocator as idempotent producers, so no id is ever issued
    /// twice; ids still in the pool at a restart are simply never used.
    pub fn add_producer_ids(&mut self, ids: Range<i64>) {
        if ids.start >= 0 && ids.start < ids.end {
            self.producer_ids.push_back(ids);
        }
    }

    /// Producer ids left in the pool.
    pub fn producer_ids_available(&self) -> u64 {
        self.producer_ids
            .iter()
            .map(|r| u64::try_from(r.end - r.start).unwrap_or(0))
            .sum()
    }

    fn take_producer_id(&mut self) -> Option<i64> {
        while let Some(r) = self.producer_ids.front_mut() {
            if r.start < r.end {
                let id = r.start;
                r.start += 1;
                return Some(id);
            }
            self.producer_ids.pop_front();
        }
        None
    }

    /// Handles any request; see the per-request methods.
    pub fn handle(&mut self, id: RequestId, request: Request, now_ms: u64) -> Output {
        let mut fx = Fx::default();
        self.apply(id, request, now_ms, &mut fx);
        self.finish(fx)
    }

    /// InitProducerId with a transactional id: issues the producer id and a bumped epoch
    /// (fencing every older epoch). On an Ongoing transaction it first aborts it with a bumped
    /// epoch (as Kafka does) and waits for the abort's markers; while markers are being
    /// written it waits too (see [`TxnConfig::wait_for_markers`]). Answered once the new state
    /// record is durable.
    pub fn init_producer_id(
        &mut self,
        id: RequestId,
        req: InitProducerIdRequest,
        now_ms: u64,
    ) -> Output {
        self.handle(id, Request::InitProducerId(req), now_ms)
    }

    /// AddPartitionsToTxn v0-3: the partitions join the transaction (it becomes Ongoing and its
    /// timeout starts if it was not). Answered once the record is durable.
    pub fn add_partitions(
        &mut self,
        id: RequestId,
        req: AddPartitionsRequest,
        now_ms: u64,
    ) -> Output {
        self.handle(id, Request::AddPartitions(req), now_ms)
    }

    /// AddOffsetsToTxn: the group's transactional offsets join the transaction.
    pub fn add_offsets(&mut self, id: RequestId, req: AddOffsetsRequest, now_ms: u64) -> Output {
        self.handle(id, Request::AddOffsets(req), now_ms)
    }

    /// EndTxn: an Ongoing transaction moves to PrepareCommit/PrepareAbort. Answered once that
    /// record is durable; the marker write is released at the same moment.
    pub fn end_txn(&mut self, id: RequestId, req: EndTxnRequest, now_ms: u64) -> Output {
        self.handle(id, Request::EndTxn(req), now_ms)
    }

    fn apply(&mut self, rid: RequestId, request: Request, now: u64, fx: &mut Fx) {
        // Kafka refuses malformed requests before it looks at any state (or notices it is
        // still loading).
        let invalid = self.malformed(&request);
        let response = if let Some(error) = invalid {
            Some(request.error_response(error))
        } else if self.loading {
            Some(request.error_response(TxnError::CoordinatorLoadInProgress))
        } else {
            match request {
                Request::InitProducerId(ref r) => self.do_init(r, now, fx).map(|res| {
                    Response::InitProducerId(res.unwrap_or_else(|e| {
                        InitProducerIdResponse::error(
                            e.for_version(r.api_version, INIT_FENCED_VERSION),
                        )
                    }))
                }),
                Request::AddPartitions(ref r) => {
                    let add = Addition::Partitions(&r.partitions);
                    let ids = (r.producer_id, r.producer_epoch);
                    self.do_add(&r.transactional_id, ids, add, now, fx)
                        .map(|res| {
                            Response::AddPartitions(
                                res.err()
                                    .map(|e| e.for_version(r.api_version, ADD_FENCED_VERSION)),
                            )
                        })
                }
                Request::AddOffsets(ref r) => {
                    let add = Addition::Group(&r.group_id);
                    let ids = (r.producer_id, r.producer_epoch);
                    self.do_add(&r.transactional_id, ids, add, now, fx)
                        .map(|res| {
                            Response::AddOffsets(
                                res.err()
                                    .map(|e| e.for_version(r.api_version, ADD_FENCED_VERSION)),
                            )
                        })
                }
                Request::EndTxn(ref r) => self.do_end(r, now, fx).map(|res| {
                    Response::EndTxn(
                        res.err()
                            .map(|e| e.for_version(r.api_version, END_FENCED_VERSION)),
                    )
                }),
            }
        };
        match response {
            Some(response) => {
                let hold = self.hold_for(request.transactional_id());
                self.reply(hold, rid, response, fx);
            }
            None => self.park(rid, request, fx),
        }
    }

    /// The checks that need no state: an empty (or overlong) transactional id, InitProducerId's
    /// timeout bounds and half-set KIP-360 producer id/epoch.
    fn malformed(&self, request: &Request) -> Option<TxnError> {
        let id = request.transactional_id();
        if id.is_empty() || id.len() > MAX_STRING_LEN {
            return Some(TxnError::InvalidRequest);
        }
        match request {
            Request::InitProducerId(r) => {
                if r.transaction_timeout_ms <= 0
                    || r.transaction_timeout_ms > self.config.max_transaction_timeout_ms
                {
                    Some(TxnError::InvalidTransactionTimeout)
                } else if (r.producer_id == NO_PRODUCER_ID)
                    != (r.producer_epoch == NO_PRODUCER_EPOCH)
                {
                    Some(TxnError::InvalidRequest)
                } else {
                    None
                }
            }
            Request::AddPartitions(r) => Addition::Partitions(&r.partitions)
                .too_long()
                .then_some(TxnError::InvalidRequest),
            Request::AddOffsets(r) => Addition::Group(&r.group_id)
                .too_long()
                .then_some(TxnError::InvalidRequest),
            Request::EndTxn(_) => None,
        }
    }

    /// Parks a request on its transaction, or answers CONCURRENT_TRANSACTIONS at once when
    /// configured to behave exactly as Kafka.
    fn park(&mut self, rid: RequestId, request: Request, fx: &mut Fx) {
        let txn_id = request.transactional_id().to_owned();
        if !self.config.wait_for_markers {
            let hold = self.hold_for(&txn_id);
            let response = request.error_response(TxnError::ConcurrentTransactions);
            self.reply(hold, rid, response, fx);
            return;
        }
        match self.txns.get_mut(&txn_id) {
            Some(txn) => txn.parked.push((rid, request)),
            None => {
                // Unreachable: only existing PrepareX transactions park. Answer rather than lose it.
                let response = request.error_response(TxnError::ConcurrentTransactions);
                fx.out.responses.push((rid, response));
            }
        }
    }

    /// The write a response about `txn_id` must wait for: the latest one about that id.
    fn hold_for(&self, txn_id: &str) -> Option<WriteId> {
        let w = match self.txns.get(txn_id) {
            Some(t) => t.last_write,
            None => self.tombstones.get(txn_id).copied(),
        };
        w.filter(|w| *w > self.durable_up_to)
    }

    fn reply(&mut self, hold: Option<WriteId>, rid: RequestId, response: Response, fx: &mut Fx) {
        match hold {
            Some(w) => self.held.entry(w).or_default().push((rid, response)),
            None => fx.out.responses.push((rid, response)),
        }
    }

    /// Appends a record of `txn_id`'s current state to the output and returns its write id.
    fn persist(&mut self, txn_id: &str, fx: &mut Fx) -> WriteId {
        let id = self.next_write;
        self.next_write += 1;
        if let Some(txn) = self.txns.get_mut(txn_id) {
            txn.last_write = Some(id);
            fx.out.writes.push(Write {
                id,
                record: txn.record(),
            });
        }
        id
    }

    fn schedule(&self, txn_id: &str, fx: &mut Fx) {
        if let Some((deadline_ms, kind)) = self
            .txns
            .get(txn_id)
            .and_then(|t| t.deadline(self.config.transactional_id_expiration_ms))
        {
            fx.out.timers.push(TimerRequest {
                transactional_id: txn_id.to_owned(),
                deadline_ms,
                kind,
            });
        }
    }

    fn do_init(
        &mut self,
        req: &InitProducerIdRequest,
        now: u64,
        fx: &mut Fx,
    ) -> Option<Result<InitProducerIdResponse, TxnError>> {
        // `malformed` checked the id, the timeout and the KIP-360 pair already.
        let txn_id = req.transactional_id.as_str();
        let expected = match (req.producer_id, req.producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
            (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => {
                return Some(Err(TxnError::InvalidRequest));
            }
            (p, e) => Some((p, e)),
        };
        if !self.txns.contains_key(txn_id) {
            let Some(pid) = self.take_producer_id() else {
                return Some(Err(TxnError::CoordinatorLoadInProgress));
            };
            let fresh = Txn {
                id: txn_id.to_owned(),
                state: TxnState::Empty,
                producer_id: pid,
                previous_producer_id: NO_PRODUCER_ID,
                epoch: NO_PRODUCER_EPOCH,
                last_epoch: NO_PRODUCER_EPOCH,
                timeout_ms: req.transaction_timeout_ms,
                partitions: BTreeMap::new(),
                groups: BTreeMap::new(),
                start_ms: -1,
                last_update_ms: now,
                last_write: None,
                marker: None,
                parked: Vec::new(),
            };
            self.txns.insert(txn_id.to_owned(), fresh);
        }
        let txn = self.txns.get(txn_id)?;
        let (state, cur_pid, cur_epoch, cur_last) =
            (txn.state, txn.producer_id, txn.epoch, txn.last_epoch);
        if let Some((pid, epoch)) = expected {
            // KIP-360: the producer proves it is the current one (or retries a rotation).
            let valid = cur_epoch == NO_PRODUCER_EPOCH
                || pid == cur_pid
                || (pid == txn.previous_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Some(Err(TxnError::ProducerFenced));
            }
        }
        match state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => None,
            TxnState::Ongoing => {
                // Fence the current producer: abort its transaction under a bumped epoch. The
                // request is answered after the abort completes (or CONCURRENT_TRANSACTIONS).
                self.abort_with_fence(txn_id, now, fx);
                None
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let rotate =
                    epoch_exhausted(cur_epoch) && expected.is_none_or(|(_, e)| e == cur_epoch);
                let (pid, epoch, last_epoch) = if rotate {
                    let Some(new_pid) = self.take_producer_id() else {
                        return Some(Err(TxnError::CoordinatorLoadInProgress));
                    };
                    let last = if expected.is_some() {
                        cur_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                    (new_pid, 0, last)
                } else {
                    let (epoch, last) = match expected {
                        None => (cur_epoch.checked_add(1), NO_PRODUCER_EPOCH),
                        Some((_, e)) if cur_epoch == NO_PRODUCER_EPOCH || e == cur_epoch => {
                            (cur_epoch.checked_add(1), cur_epoch)
                        }
                        // A retry of a bump whose answer was lost: same epoch again.
                        Some((_, e)) if e == cur_last => (Some(cur_epoch), cur_last),
                        Some(_) => return Some(Err(TxnError::ProducerFenced)),
                    };
                    let Some(epoch) = epoch else {
                        return Some(Err(TxnError::ProducerFenced));
                    };
                    (cur_pid, epoch, last)
                };
                let previous = cur_pid;
                let txn = self.txns.get_mut(txn_id)?;
                txn.producer_id = pid;
                txn.previous_producer_id = previous;
                txn.epoch = epoch;
                txn.last_epoch = last_epoch;
                txn.timeout_ms = req.transaction_timeout_ms;
                txn.state = TxnState::Empty;
                txn.partitions.clear();
                txn.groups.clear();
                txn.start_ms = -1;
                txn.last_update_ms = now;
                self.persist(txn_id, fx);
                self.schedule(txn_id, fx);
                Some(Ok(InitProducerIdResponse {
                    error: None,
                    producer_id: pid,
                    producer_epoch: epoch,
                }))
            }
            TxnState::Dead => Some(Err(TxnError::InvalidProducerIdMapping)),
        }
    }

    /// Ongoing → PrepareAbort under a bumped epoch (timeout, or a new producer's
    /// InitProducerId): every request of the old epoch is fenced from here on.
    fn abort_with_fence(&mut self, txn_id: &str, now: u64, fx: &mut Fx) {
        let Some(txn) = self.txns.get_mut(txn_id) else {
            return;
        };
        txn.epoch = txn.epoch.saturating_add(1);
        txn.last_epoch = NO_PRODUCER_EPOCH;
        txn.state = TxnState::PrepareAbort;
        txn.last_update_ms = now;
        let w = self.persist(txn_id, fx);
        self.markers_after.insert(w, txn_id.to_owned());
    }

    fn check_producer(&self, txn_id: &str, producer_id: i64, epoch: i16) -> Result<&Txn, TxnError> {
        if txn_id.is_empty() {
            return Err(TxnError::InvalidRequest);
        }
        let txn = self
            .txns
            .get(txn_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        if txn.producer_id != producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if txn.epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(txn)
    }

    fn do_add(
        &mut self,
        txn_id: &str,
        (producer_id, epoch): (i64, i16),
        addition: Addition<'_>,
        now: u64,
        fx: &mut Fx,
    ) -> Option<Result<(), TxnError>> {
        let txn = match self.check_producer(txn_id, producer_id, epoch) {
            Ok(txn) => txn,
            Err(e) => return Some(Err(e)),
        };
        match txn.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => return None,
            TxnState::Ongoing if addition.contained_in(txn) => return Some(Ok(())),
            TxnState::Dead => return Some(Err(TxnError::InvalidProducerIdMapping)),
            _ => {}
        }
        let txn = self.txns.get_mut(txn_id)?;
        let starts = txn.state != TxnState::Ongoing;
        if starts {
            txn.state = TxnState::Ongoing;
            txn.start_ms = i64::try_from(now).unwrap_or(i64::MAX);
        }
        match addition {
            // The id `persist` gives the write below.
            Addition::Partitions(ps) => {
                for p in ps {
                    txn.partitions.entry(p.clone()).or_insert(self.next_write);
                }
            }
            Addition::Group(g) => {
                txn.groups.entry(g.to_owned()).or_insert(self.next_write);
            }
        }
        txn.last_update_ms = now;
        self.persist(txn_id, fx);
        if starts {
            self.schedule(txn_id, fx);
        }
        Some(Ok(()))
    }

    fn do_end(
        &mut self,
        req: &EndTxnRequest,
        now: u64,
        fx: &mut Fx,
    ) -> Option<Result<(), TxnError>> {
        let txn_id = req.transactional_id.as_str();
        let txn = match self.check_producer(txn_id, req.producer_id, req.producer_epoch) {
            Ok(txn) => txn,
            Err(e) => return Some(Err(e)),
        };
        use TxnResult::{Abort, Commit};
        use TxnState::*;
        match (txn.state, req.result) {
            (Ongoing, result) => {
                let txn = self.txns.get_mut(txn_id)?;
                txn.state = if result == Commit {
                    PrepareCommit
                } else {
                    PrepareAbort
                };
                txn.last_update_ms = now;
                let w = self.persist(txn_id, fx);
                self.markers_after.insert(w, txn_id.to_owned());
                Some(Ok(()))
            }
            // A retry of an EndTxn whose answer was lost.
            (CompleteCommit, Commit) | (CompleteAbort, Abort) => Some(Ok(())),
            (PrepareCommit, Commit) | (PrepareAbort, Abort) => None,
            (Dead, _) => Some(Err(TxnError::InvalidProducerIdMapping)),
            _ => Some(Err(TxnError::InvalidTxnState)),
        }
    }

    /// Confirms that every write with an id up to `up_to` is durable (fsynced). Releases the
    /// responses that waited for them and the marker writes of transactions whose
    /// PrepareCommit/PrepareAbort record is now durable. Confirmations must cover a prefix of
    /// the writes in the order they were handed out; an id below an earlier confirmation is a
    /// no-op.
    pub fn durable(&mut self, up_to: WriteId) -> Output {
        let mut fx = Fx::default();
        let up_to = up_to.min(self.next_write - 1);
        if up_to <= self.durable_up_to {
            return self.finish(fx);
        }
        self.durable_up_to = up_to;
        let later = self.held.split_off(&(up_to + 1));
        for (_, responses) in std::mem::replace(&mut self.held, later) {
            fx.out.responses.extend(responses);
        }
        let later = self.markers_after.split_off(&(up_to + 1));
        for (_, txn_id) in std::mem::replace(&mut self.markers_after, later) {
            self.issue_marker(&txn_id, &mut fx);
        }
        self.tombstones.retain(|_, w| *w > up_to);
        self.finish(fx)
    }

    fn issue_marker(&mut self, txn_id: &str, fx: &mut Fx) {
        let Some(txn) = self.txns.get_mut(txn_id) else {
            return;
        };
        let result = match txn.state {
            TxnState::PrepareCommit => TxnResult::Commit,
            TxnState::PrepareAbort => TxnResult::Abort,
            _ => return,
        };
        if txn.marker.is_some() {
            return;
        }
        let id = self.next_marker;
        self.next_marker += 1;
        txn.marker = Some(id);
        self.markers.insert(id, txn_id.to_owned());
        fx.out.markers.push(MarkerWrite {
            id,
            transactional_id: txn_id.to_owned(),
            producer_id: txn.producer_id,
            producer_epoch: txn.epoch,
            result,
            partitions: txn.partitions.keys().cloned().collect(),
            groups: txn.groups.keys().cloned().collect(),
        });
    }

    /// Confirms that a [`MarkerWrite`] is done: its control batches are durable in every
    /// partition and its groups' offsets are applied or discarded durably. The transaction moves
    /// to CompleteCommit/CompleteAbort (a write), and the requests parked on it are evaluated
    /// now, in arrival order. An unknown or repeated marker id is ignored.
    pub fn markers_written(&mut self, marker: MarkerId, now_ms: u64) -> Output {
        let mut fx = Fx::default();
        let Some(txn_id) = self.markers.remove(&marker) else {
            return self.finish(fx);
        };
        let Some(txn) = self.txns.get_mut(&txn_id) else {
            return self.finish(fx);
        };
        if txn.marker != Some(marker) {
            return self.finish(fx);
        }
        txn.marker = None;
        txn.state = match txn.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            _ => TxnState::CompleteAbort,
        };
        txn.partitions.clear();
        txn.groups.clear();
        txn.last_update_ms = now_ms;
        let parked = std::mem::take(&mut txn.parked);
        self.persist(&txn_id, &mut fx);
        for (rid, request) in parked {
            self.apply(rid, request, now_ms, &mut fx);
        }
        self.schedule(&txn_id, &mut fx);
        self.finish(fx)
    }

    /// Fires everything due at `now_ms`: Ongoing transactions past their timeout are aborted
    /// with an epoch bump (fencing their producer, as Kafka does), and idle transactional ids
    /// past `transactional.id.expiration.ms` are forgotten (a tombstone is written).
    pub fn tick(&mut self, now_ms: u64) -> Output {
        let mut fx = Fx::default();
        if self.loading {
            return self.finish(fx);
        }
        let expiration = self.config.transactional_id_expiration_ms;
        let due: Vec<(String, TimerKind)> = self
            .txns
            .values()
            .filter_map(|t| {
                t.deadline(expiration)
                    .filter(|(d, _)| *d <= now_ms)
                    .map(|(_, kind)| (t.id.clone(), kind))
            })
            .collect();
        for (txn_id, kind) in due {
            match kind {
                TimerKind::TransactionTimeout => self.abort_with_fence(&txn_id, now_ms, &mut fx),
                TimerKind::Expiration => {
                    let Some(txn) = self.txns.get_mut(&txn_id) else {
                        continue;
                    };
                    txn.state = TxnState::Dead;
                    txn.last_update_ms = now_ms;
                    let w = self.persist(&txn_id, &mut fx);
                    self.txns.remove(&txn_id);
                    self.tombstones.insert(txn_id, w);
                }
            }
        }
        self.finish(fx)
    }

    /// The earliest time at which [`TxnCoordinator::tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let expiration = self.config.transactional_id_expiration_ms;
        self.txns
            .values()
            .filter_map(|t| t.deadline(expiration).map(|(d, _)| d))
            .min()
    }

    /// TxnOffsetCommit, producer side (KIP-890 verification): the transaction must be Ongoing
    /// under this producer id and epoch, with the group added by AddOffsetsToTxn (and that
    /// addition durable). The group
    /// coordinator checks generation and member on its own. On `Ok` the broker stores the
    /// offsets as pending for (group, producer id) until a [`MarkerWrite`] names the group.
    pub fn check_txn_offset_commit(&self, check: &TxnOffsetCommitCheck) -> Result<(), TxnError> {
        if self.loading {
            return Err(TxnError::CoordinatorLoadInProgress);
        }
        let txn = self
            .check_producer(
                &check.transactional_id,
                check.producer_id,
                check.producer_epoch,
            )
            .map_err(|e| {
                // Producers expect INVALID_PRODUCER_EPOCH from the offsets path.
                if e == TxnError::ProducerFenced {
                    TxnError::InvalidProducerEpoch
                } else {
                    e
                }
            })?;
        match txn.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing if self.added_durably(txn.groups.get(&check.group_id)) => Ok(()),
            _ if check.api_version >= TXN_OFFSET_COMMIT_ABORTABLE_VERSION => {
                Err(TxnError::TransactionAbortable)
            }
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// KIP-890 part 1 verification, as AddPartitionsToTxn v4+ with `verify_only` answers it:
    /// is each partition in the producer's ongoing transaction (and its addition durable, so a
    /// crash cannot leave a batch in a partition the recovered transaction does not know)?
    /// Read-only. Errors are the
    /// coordinator's own: the produce path maps PRODUCER_FENCED to INVALID_PRODUCER_EPOCH and,
    /// for clients older than KIP-890, TRANSACTION_ABORTABLE to INVALID_TXN_STATE.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Option<TxnError>)> {
        let all = |e: TxnError| partitions.iter().map(|p| (p.clone(), Some(e))).collect();
        if self.loading {
            return all(TxnError::CoordinatorLoadInProgress);
        }
        let txn = match self.check_producer(transactional_id, producer_id, producer_epoch) {
            Ok(txn) => txn,
            Err(e) => return all(e),
        };
        if txn.state.is_completing() {
            return all(TxnError::ConcurrentTransactions);
        }
        partitions
            .iter()
            .map(|p| {
                let error = (!self.added_durably(txn.partitions.get(p)))
                    .then_some(TxnError::TransactionAbortable);
                (p.clone(), error)
            })
            .collect()
    }

    /// An addition counts for verification once the write that made it is durable.
    fn added_durably(&self, added_by: Option<&WriteId>) -> bool {
        added_by.is_some_and(|w| *w <= self.durable_up_to)
    }

    /// DescribeTransactions.
    pub fn describe_transactions<S: AsRef<str>>(
        &self,
        transactional_ids: &[S],
    ) -> Vec<DescribedTxn> {
        transactional_ids
            .iter()
            .map(|id| {
                let id = id.as_ref();
                let fail = |e| DescribedTxn {
                    transactional_id: id.to_owned(),
                    error: Some(e),
                    state: TxnState::Dead,
                    producer_id: NO_PRODUCER_ID,
                    producer_epoch: NO_PRODUCER_EPOCH,
                    transaction_timeout_ms: 0,
                    transaction_start_ms: -1,
                    partitions: Vec::new(),
                };
                if self.loading {
                    return fail(TxnError::CoordinatorLoadInProgress);
                }
                if id.is_empty() {
                    return fail(TxnError::InvalidRequest);
                }
                match self.txns.get(id) {
                    None => fail(TxnError::TransactionalIdNotFound),
                    Some(t) => DescribedTxn {
                        transactional_id: id.to_owned(),
                        error: None,
                        state: t.state,
                        producer_id: t.producer_id,
                        producer_epoch: t.epoch,
                        transaction_timeout_ms: t.timeout_ms,
                        transaction_start_ms: t.start_ms,
                        partitions: t.partitions.keys().cloned().collect(),
                    },
                }
            })
            .collect()
    }

    /// ListTransactions with Kafka's filters (state names, producer ids, and v1+'s minimum
    /// duration of Ongoing transactions), sorted by transactional id.
    pub fn list_transactions(
        &self,
        filter: &ListTransactionsFilter,
        now_ms: u64,
    ) -> ListTransactionsResponse {
        if self.loading {
            return ListTransactionsResponse {
                error: Some(TxnError::CoordinatorLoadInProgress),
                ..Default::default()
            };
        }
        let mut states = BTreeSet::new();
        let mut unknown = Vec::new();
        for name in &filter.states {
            match TxnState::from_name(name) {
                Some(s) => {
                    states.insert(s);
                }
                None => unknown.push(name.clone()),
            }
        }
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let transactions = self
            .txns
            .values()
            // As Kafka: a filter naming only unknown states matches nothing.
            .filter(|t| filter.states.is_empty() || states.contains(&t.state))
            .filter(|t| {
                filter.producer_ids.is_empty() || filter.producer_ids.contains(&t.producer_id)
            })
            .filter(|t| match filter.min_duration_ms {
                Some(d) if d >= 0 => t.state == TxnState::Ongoing && now - t.start_ms > d,
                _ => true,
            })
            .map(|t| ListedTxn {
                transactional_id: t.id.clone(),
                producer_id: t.producer_id,
                state: t.state,
            })
            .collect();
        ListTransactionsResponse {
            error: None,
            unknown_state_filters: unknown,
            transactions,
        }
    }

    /// A read-only view of one transactional id.
    pub fn transaction(&self, transactional_id: &str) -> Option<TxnView> {
        self.txns.get(transactional_id).map(|t| TxnView {
            record: t.record(),
            parked: t.parked.iter().map(|(id, _)| *id).collect(),
            marker: t.marker,
        })
    }

    /// The current record of every transactional id, sorted by id: what a compacted state file
    /// holds (see the crate docs on compaction).
    pub fn records(&self) -> Vec<TxnRecord> {
        self.txns.values().map(Txn::record).collect()
    }

    /// Ids of every request not answered yet (parked on markers or held for durability), sorted.
    pub fn pending_requests(&self) -> Vec<RequestId> {
        let mut ids: Vec<RequestId> = self
            .txns
            .values()
            .flat_map(|t| t.parked.iter().map(|(id, _)| *id))
            .chain(self.held.values().flatten().map(|(id, _)| *id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The highest write id confirmed durable (0 before any).
    pub fn durable_up_to(&self) -> WriteId {
        self.durable_up_to
    }

    /// Stops coordinating: answers every parked and held request with NOT_COORDINATOR (clients
    /// look the coordinator up again), forgets all state and returns to loading. Used on
    /// shutdown and after a failed write (see "The order the broker must keep" in the crate
    /// docs).
    pub fn shutdown(&mut self) -> Output {
        let mut fx = Fx::default();
        for (_, txn) in std::mem::take(&mut self.txns) {
            for (rid, request) in txn.parked {
                fx.out
                    .responses
                    .push((rid, request.error_response(TxnError::NotCoordinator)));
            }
        }
        for (_, responses) in std::mem::take(&mut self.held) {
            for (rid, response) in responses {
                fx.out
                    .responses
                    .push((rid, response.replaced_by(TxnError::NotCoordinator)));
            }
        }
        self.markers_after.clear();
        self.tombstones.clear();
        self.markers.clear();
        // Write ids of this instance are never reused, so a late `durable` cannot confuse it.
        self.durable_up_to = self.next_write - 1;
        self.loading = true;
        self.finish(fx)
    }

    fn finish(&self, mut fx: Fx) -> Output {
        fx.out.needs_producer_ids =
            !self.loading && self.producer_ids_available() < self.config.producer_id_low_watermark;
        fx.out
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for t in self.txns.values() {
            if t.state == TxnState::Dead {
                return Err(format!("{}: Dead held in memory", t.id));
            }
            if !t.parked.is_empty() && !t.state.is_completing() {
                return Err(format!("{}: parked requests in {}", t.id, t.state));
            }
            if t.marker.is_some() && !t.state.is_completing() {
                return Err(format!("{}: marker outstanding in {}", t.id, t.state));
            }
            let open = matches!(
                t.state,
                TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
            );
            if !open && (!t.partitions.is_empty() || !t.groups.is_empty()) {
                return Err(format!("{}: partitions kept in {}", t.id, t.state));
            }
            if open && t.start_ms < 0 {
                return Err(format!("{}: open transaction without a start", t.id));
            }
            if t.state != TxnState::Empty && t.epoch < 0 {
                return Err(format!("{}: no epoch in {}", t.id, t.state));
            }
        }
        Ok(())
    }
}

/// What AddPartitionsToTxn / AddOffsetsToTxn add.
#[derive(Clone, Copy)]
enum Addition<'a> {
    Partitions(&'a [TopicPartition]),
    Group(&'a str),
}

impl Addition<'_> {
    fn too_long(&self) -> bool {
        match self {
            Addition::Partitions(ps) => ps.iter().any(|p| p.topic.len() > MAX_STRING_LEN),
            Addition::Group(g) => g.len() > MAX_STRING_LEN,
        }
    }

    fn contained_in(&self, txn: &Txn) -> bool {
        match self {
            Addition::Partitions(ps) => ps.iter().all(|p| txn.partitions.contains_key(p)),
            Addition::Group(g) => txn.groups.contains_key(*g),
        }
    }
}

impl Response {
    /// The same kind of response carrying `error` instead.
    pub(crate) fn replaced_by(&self, error: TxnError) -> Response {
        match self {
            Response::InitProducerId(_) => {
                Response::InitProducerId(InitProducerIdResponse::error(error))
            }
            Response::AddPartitions(_) => Response::AddPartitions(Some(error)),
            Response::AddOffsets(_) => Response::AddOffsets(Some(error)),
            Response::EndTxn(_) => Response::EndTxn(Some(error)),
        }
    }
}
