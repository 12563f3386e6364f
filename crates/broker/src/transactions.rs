//! Transactions: the bridge between the transaction handlers, the coordinator state machine
//! (`waterline-txn`), its durable state file, the partition logs (markers) and the groups'
//! transactional offsets.
//!
//! - The coordinator is a pure state machine behind one mutex. Each InitProducerId,
//!   AddPartitionsToTxn, AddOffsetsToTxn and EndTxn gets a fresh request id and a oneshot
//!   channel registered before the coordinator sees the request; every response an output
//!   carries is sent while the lock is held. The coordinator *holds* an answer until the
//!   records it depends on are durable (see waterline-txn's "order the broker must keep").
//! - **State file** `<data_dir>/transactions` (FORMAT: a sequence of waterline-txn
//!   `TxnRecord` frames, documented byte by byte in that crate's `record` module). Records
//!   are appended (`write`) under the coordinator lock in write-id order, so the file order is
//!   the coordinator's order. A syncer task fsyncs the file (`fdatasync`) outside the lock and
//!   then confirms `durable(highest id appended before the fsync)`: one fsync covers every
//!   record appended meanwhile (group commit). A failed append or fsync poisons the
//!   subsystem: the coordinator is shut down (parked requests answer NOT_COORDINATOR) and
//!   transactions are not served again until a restart recovers from the file.
//! - At start-up the file is decoded; a bad final frame is a torn write and is truncated
//!   (then fsynced); a bad frame before the last one is corruption and the broker refuses to
//!   start, naming the file. When the file grows past [`COMPACT_BYTES`] and every record is
//!   durable, it is rewritten from the coordinator's current records (temp file, fsync,
//!   rename, directory fsync).
//! - **Markers**: for each `MarkerWrite` a task appends a COMMIT/ABORT control batch to every
//!   partition of the transaction (the log ends the producer's transaction there: last stable
//!   offset, aborted-transaction index), waits until the group-commit thread has fsynced them,
//!   settles the groups' pending transactional offsets in one store transaction (fsynced), and
//!   only then confirms `markers_written`. Repeating all of it (after a crash) is harmless.
//!   A failure is retried every second: a transaction can only complete once its markers are
//!   durable.
//! - **Producer ids** come from the broker's durable allocator ([`ProducerIds::reserve`]) in
//!   blocks, shared with idempotent producers, so no id is ever issued twice.
//! - A timer task ticks the coordinator at its next deadline (transaction timeouts, id
//!   expiry), at least every second.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use waterline_txn::{
    DescribedTxn, ListTransactionsFilter, ListTransactionsResponse, MarkerWrite, Output, Request,
    RequestId, Response, TopicPartition, TxnConfig, TxnCoordinator, TxnError, TxnOffsetCommitCheck,
    TxnRecord, TxnResult, WriteId, decode_all,
};

use crate::error::BrokerError;
use crate::state::{BrokerState, SharedState};

/// File name of the transaction state inside the data dir.
pub const STATE_FILE: &str = "transactions";
/// The state file is rewritten from the live records once it is larger than this.
pub const COMPACT_BYTES: u64 = 16 << 20;
/// Producer ids handed to the coordinator per reservation.
const ID_BLOCK: i64 = 1000;
/// Longest the timer task sleeps without ticking the coordinator.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(1);
/// Pause before retrying a marker write that failed.
const MARKER_RETRY: Duration = Duration::from_secs(1);
/// How long a marker write waits for the group-commit fsync before retrying.
const MARKER_SYNC_WAIT: Duration = Duration::from_secs(30);

/// The transaction subsystem of one broker.
pub struct Transactions {
    shared: Arc<Shared>,
}

struct Shared {
    core: Mutex<Core>,
    path: PathBuf,
    dir: PathBuf,
    next_id: AtomicU64,
    syncer_wake: Notify,
    timer_wake: Notify,
    broker: OnceLock<Weak<BrokerState>>,
}

struct Core {
    coordinator: TxnCoordinator,
    waiters: HashMap<RequestId, oneshot::Sender<Response>>,
    /// The state file, open for appending; `None` once poisoned or closed.
    file: Option<Arc<File>>,
    file_len: u64,
    /// Highest write id appended to the file.
    appended: WriteId,
    /// Records read at start-up, handed to the coordinator by [`Transactions::start`].
    recovered: Option<Vec<TxnRecord>>,
    closed: bool,
}

impl Transactions {
    /// Reads (and repairs a torn tail of) `<data_dir>/transactions`. The coordinator answers
    /// COORDINATOR_LOAD_IN_PROGRESS until [`Transactions::start`]. Blocking.
    pub fn open(data_dir: &Path, config: TxnConfig) -> Result<Transactions, BrokerError> {
        let path = data_dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(BrokerError::io("reading", &path, e)),
        };
        let decoded = decode_all(&bytes);
        if let Some(error) = &decoded.error {
            if !is_torn_tail(&bytes, decoded.valid_len) {
                return Err(BrokerError::CorruptMetadata {
                    path: path.clone(),
                    reason: format!(
                        "transaction record at byte {} is invalid ({error}) and is not the last one",
                        decoded.valid_len
                    ),
                });
            }
            tracing::warn!(path = %path.display(), at = decoded.valid_len, %error,
                "truncating a torn transaction record");
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| BrokerError::io("opening", &path, e))?;
        if decoded.valid_len < bytes.len() || bytes.is_empty() {
            file.set_len(decoded.valid_len as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| BrokerError::io("truncating", &path, e))?;
            sync_dir(data_dir).map_err(|e| BrokerError::io("syncing", data_dir, e))?;
        }
        tracing::info!(records = decoded.records.len(), path = %path.display(), "transaction state read");
        Ok(Transactions {
            shared: Arc::new(Shared {
                core: Mutex::new(Core {
                    coordinator: TxnCoordinator::new(config),
                    waiters: HashMap::new(),
                    file: Some(Arc::new(file)),
                    file_len: decoded.valid_len as u64,
                    appended: 0,
                    recovered: Some(decoded.records),
                    closed: false,
                }),
                path,
                dir: data_dir.to_path_buf(),
                next_id: AtomicU64::new(1),
                syncer_wake: Notify::new(),
                timer_wake: Notify::new(),
                broker: OnceLock::new(),
            }),
        })
    }

    /// Loads the recovered state into the coordinator (transactions caught mid-commit get
    /// their markers written again; ongoing ones past their timeout are aborted) and starts the
    /// syncer and timer tasks. Call once, from inside the runtime, after the broker state is
    /// shared. Blocking (it may reserve producer ids durably); without a tokio runtime the
    /// tasks are not started (tests of other subsystems).
    pub fn start(state: &SharedState) -> Result<(), BrokerError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        let _entered = runtime.enter();
        let shared = state.transactions.shared.clone();
        if shared.broker.set(Arc::downgrade(state)).is_err() {
            return Ok(());
        }
        let ids = state.producer_ids.reserve(ID_BLOCK)?;
        {
            let mut core = shared.core.lock();
            core.coordinator.add_producer_ids(ids);
            let records = core.recovered.take().unwrap_or_default();
            let out = core.coordinator.load(records, now_ms());
            deliver(&shared, &mut core, out);
        }
        tokio::spawn(syncer_loop(shared.clone(), state.shutdown.clone()));
        tokio::spawn(timer_loop(shared, state.shutdown.clone()));
        Ok(())
    }

    /// Applies a coordinator request now, synchronously (so a connection's transaction
    /// requests take effect in the order sent), and returns a future of its answer, which the
    /// coordinator may hold until its state is durable or its markers are written.
    pub fn call(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Response> + Send + use<> {
        let kind = Kind::of(&request);
        let (tx, rx) = oneshot::channel();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let closed = {
            let mut core = self.shared.core.lock();
            if core.closed {
                true
            } else {
                core.waiters.insert(id, tx);
                let out = core.coordinator.handle(id, request, now_ms());
                deliver(&self.shared, &mut core, out);
                false
            }
        };
        async move {
            if closed {
                return kind.error(TxnError::NotCoordinator);
            }
            rx.await
                .unwrap_or_else(|_| kind.error(TxnError::NotCoordinator))
        }
    }

    /// KIP-890 verification for a transactional produce: each partition must be durably in
    /// the producer's ongoing transaction.
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Option<TxnError>)> {
        let core = self.shared.core.lock();
        if core.closed {
            return partitions
                .iter()
                .map(|p| (p.clone(), Some(TxnError::NotCoordinator)))
                .collect();
        }
        core.coordinator.verify_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        )
    }

    /// The transaction side of a TxnOffsetCommit; on `Ok` runs `stage` (which must only
    /// queue the offsets, synchronously) under the coordinator lock, so the transaction cannot
    /// end, and queue the settling of its offsets, before the stage is queued.
    pub fn check_offset_commit<R>(
        &self,
        check: &TxnOffsetCommitCheck,
        stage: impl FnOnce() -> R,
    ) -> Result<R, TxnError> {
        let core = self.shared.core.lock();
        if core.closed {
            return Err(TxnError::NotCoordinator);
        }
        core.coordinator.check_txn_offset_commit(check)?;
        Ok(stage())
    }

    /// DescribeTransactions.
    pub fn describe(&self, ids: &[String]) -> Vec<DescribedTxn> {
        self.shared
            .core
            .lock()
            .coordinator
            .describe_transactions(ids)
    }

    /// ListTransactions.
    pub fn list(&self, filter: &ListTransactionsFilter) -> ListTransactionsResponse {
        self.shared
            .core
            .lock()
            .coordinator
            .list_transactions(filter, now_ms())
    }

    /// The bytes of the state file not yet compacted away (for tests and metrics).
    pub fn state_file_len(&self) -> u64 {
        self.shared.core.lock().file_len
    }

    /// Where the state lives.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

/// The request kinds, for answering without the coordinator.
#[derive(Clone, Copy)]
enum Kind {
    InitProducerId,
    AddPartitions,
    AddOffsets,
    EndTxn,
}

impl Kind {
    fn of(r: &Request) -> Kind {
        match r {
            Request::InitProducerId(_) => Kind::InitProducerId,
            Request::AddPartitions(_) => Kind::AddPartitions,
            Request::AddOffsets(_) => Kind::AddOffsets,
            Request::EndTxn(_) => Kind::EndTxn,
        }
    }

    fn error(self, e: TxnError) -> Response {
        match self {
            Kind::InitProducerId => {
                Response::InitProducerId(waterline_txn::InitProducerIdResponse {
                    error: Some(e),
                    producer_id: waterline_txn::NO_PRODUCER_ID,
                    producer_epoch: waterline_txn::NO_PRODUCER_EPOCH,
                })
            }
            Kind::AddPartitions => Response::AddPartitions(Some(e)),
            Kind::AddOffsets => Response::AddOffsets(Some(e)),
            Kind::EndTxn => Response::EndTxn(Some(e)),
        }
    }
}

/// Wall-clock milliseconds (transaction start times are reported as wall time).
fn now_ms() -> u64 {
    u64::try_from(BrokerState::now_ms()).unwrap_or(0)
}

/// Whether the invalid frame at `valid_len` is the last one in `bytes` (a torn write) rather
/// than a damaged record followed by more.
fn is_torn_tail(bytes: &[u8], valid_len: usize) -> bool {
    let rest = &bytes[valid_len..];
    let Some(len) = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
        return true;
    };
    let frame = waterline_txn::HEADER_LEN as u64 + u64::from(u32::from_be_bytes(len));
    frame >= rest.len() as u64
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Acts on a coordinator output; called with the core lock held.
fn deliver(shared: &Arc<Shared>, core: &mut Core, out: Output) {
    for (rid, response) in out.responses {
        if let Some(tx) = core.waiters.remove(&rid) {
            let _ = tx.send(response);
        }
    }
    if let Some(last) = out.writes.last().map(|w| w.id) {
        let mut buf = Vec::new();
        for w in &out.writes {
            w.record.encode_into(&mut buf);
        }
        let written = match &core.file {
            Some(f) => (&**f).write_all(&buf),
            None => Err(std::io::Error::other(
                "the transaction state file is closed",
            )),
        };
        match written {
            Ok(()) => {
                core.appended = last;
                core.file_len += buf.len() as u64;
                shared.syncer_wake.notify_one();
            }
            Err(e) => {
                tracing::error!(path = %shared.path.display(), error = %e,
                    "appending to the transaction state failed; transactions are unavailable until restart");
                poison(shared, core);
                return;
            }
        }
    }
    for m in out.markers {
        tokio::spawn(write_markers(shared.clone(), m));
    }
    if !out.timers.is_empty() {
        shared.timer_wake.notify_one();
    }
    if out.needs_producer_ids
        && let Some(state) = shared.broker.get().and_then(Weak::upgrade)
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            match reserve_ids(&state).await {
                Ok(ids) => shared.core.lock().coordinator.add_producer_ids(ids),
                Err(e) => tracing::error!(error = %e, "reserving producer ids failed"),
            }
        });
    }
}

/// Stops serving transactions after a failed write: every held or parked request is answered
/// NOT_COORDINATOR and nothing is confirmed any more.
fn poison(shared: &Arc<Shared>, core: &mut Core) {
    core.file = None;
    stop_serving(core);
    shared.syncer_wake.notify_one();
}

/// Shuts the coordinator down: every held or parked request is answered (NOT_COORDINATOR)
/// and later calls are refused.
fn stop_serving(core: &mut Core) {
    core.closed = true;
    let out = core.coordinator.shutdown();
    for (rid, response) in out.responses {
        if let Some(tx) = core.waiters.remove(&rid) {
            let _ = tx.send(response);
        }
    }
    core.waiters.clear();
}

async fn reserve_ids(state: &SharedState) -> Result<std::ops::Range<i64>, BrokerError> {
    let s = state.clone();
    tokio::task::spawn_blocking(move || s.producer_ids.reserve(ID_BLOCK))
        .await
        .map_err(|e| BrokerError::Task(e.to_string()))?
}

/// Fsyncs the state file whenever records were appended, then confirms them.
async fn syncer_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shared.syncer_wake.notified() => {}
            _ = shutdown.cancelled() => {
                shut_down(&shared);
                return;
            }
        }
        loop {
            let (file, target) = {
                let core = shared.core.lock();
                match &core.file {
                    Some(f) if core.appended > core.coordinator.durable_up_to() => {
                        (f.clone(), core.appended)
                    }
                    _ => break,
                }
            };
            let synced = tokio::task::spawn_blocking(move || file.sync_data()).await;
            let mut core = shared.core.lock();
            if core.closed {
                return;
            }
            match synced {
                Ok(Ok(())) => {
                    let out = core.coordinator.durable(target);
                    deliver(&shared, &mut core, out);
                    maybe_compact(&shared, &mut core);
                }
                Ok(Err(e)) => {
                    tracing::error!(path = %shared.path.display(), error = %e,
                        "fsync of the transaction state failed; transactions are unavailable until restart");
                    poison(&shared, &mut core);
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "transaction state fsync task failed");
                    poison(&shared, &mut core);
                    return;
                }
            }
        }
    }
}

/// Rewrites the state file from the live records once it is large and fully durable.
fn maybe_compact(shared: &Arc<Shared>, core: &mut Core) {
    if core.file_len < COMPACT_BYTES || core.appended != core.coordinator.durable_up_to() {
        return;
    }
    let mut buf = Vec::new();
    for r in core.coordinator.records() {
        r.encode_into(&mut buf);
    }
    let tmp = shared.dir.join(format!("{STATE_FILE}.compacting"));
    let result = (|| -> std::io::Result<File> {
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &shared.path)?;
        sync_dir(&shared.dir)?;
        std::fs::OpenOptions::new().append(true).open(&shared.path)
    })();
    match result {
        Ok(f) => {
            tracing::info!(
                from = core.file_len,
                to = buf.len(),
                "transaction state compacted"
            );
            core.file = Some(Arc::new(f));
            core.file_len = buf.len() as u64;
        }
        Err(e) => {
            // The rename is atomic: either the old file (still complete) or the new one is in
            // place, but which one our handle points to is unclear, so stop writing.
            tracing::error!(path = %shared.path.display(), error = %e,
                "compacting the transaction state failed; transactions are unavailable until restart");
            poison(shared, core);
        }
    }
}

fn shut_down(shared: &Arc<Shared>) {
    let mut core = shared.core.lock();
    if !core.closed {
        stop_serving(&mut core);
    }
}

/// Ticks the coordinator at its next deadline.
async fn timer_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let sleep = {
            let core = shared.core.lock();
            if core.closed {
                return;
            }
            core.coordinator
                .next_deadline()
                .map(|d| Duration::from_millis(d.saturating_sub(now_ms())))
                .unwrap_or(MAX_TIMER_SLEEP)
                .min(MAX_TIMER_SLEEP)
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shared.timer_wake.notified() => {}
            _ = shutdown.cancelled() => {
                shut_down(&shared);
                return;
            }
        }
        let mut core = shared.core.lock();
        if core.closed {
            return;
        }
        let out = core.coordinator.tick(now_ms());
        deliver(&shared, &mut core, out);
    }
}

/// Writes one transaction's markers and settles its groups' offsets, then confirms.
async fn write_markers(shared: Arc<Shared>, marker: MarkerWrite) {
    let Some(state) = shared.broker.get().and_then(Weak::upgrade) else {
        return;
    };
    loop {
        match try_write_markers(&state, &marker).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(transactional_id = %marker.transactional_id, error = %e,
                    "writing transaction markers failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(MARKER_RETRY) => {}
                    _ = state.shutdown.cancelled() => return,
                }
            }
        }
    }
    let mut core = shared.core.lock();
    if core.closed {
        return;
    }
    let out = core.coordinator.markers_written(marker.id, now_ms());
    deliver(&shared, &mut core, out);
}

async fn try_write_markers(state: &SharedState, m: &MarkerWrite) -> Result<(), String> {
    let control = match m.result {
        TxnResult::Commit => waterline_log::ControlType::Commit,
        TxnResult::Abort => waterline_log::ControlType::Abort,
    };
    let s = state.clone();
    let partitions = m.partitions.clone();
    let (pid, epoch) = (m.producer_id, m.producer_epoch);
    let appended = tokio::task::spawn_blocking(move || {
        let now = BrokerState::now_ms();
        let mut waits = Vec::new();
        for tp in &partitions {
            // A partition of a deleted topic has nothing left to mark.
            let Some(p) = s.topics.partition(&tp.topic, tp.partition) else {
                continue;
            };
            match p.with_log(|log| log.append_marker(pid, epoch, control, 0, now)) {
                Some(Ok(Some(o))) => {
                    s.sync.mark_dirty(&p);
                    waits.push((p, o.last_offset + 1));
                }
                Some(Ok(None)) | None => {}
                Some(Err(e)) => return Err(format!("{}-{}: {e}", tp.topic, tp.partition)),
            }
        }
        Ok(waits)
    })
    .await
    .map_err(|e| e.to_string())??;
    for (p, end) in appended {
        crate::handlers::produce::wait_synced(&p, end, MARKER_SYNC_WAIT)
            .await
            .map_err(|code| format!("{p:?}: marker not made durable (error {code})"))?;
    }
    if !m.groups.is_empty() {
        // Every stage of this producer's offsets was queued under the coordinator lock while
        // the transaction was ongoing, so before this settlement (the writer keeps order).
        state
            .groups
            .complete_txn_offsets(pid, &m.groups, m.result == TxnResult::Commit)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_last_frame_is_torn_and_a_bad_middle_frame_is_not() {
        let rec = |id: &str| {
            let (mut c, _) = TxnCoordinator::recover(TxnConfig::default(), Vec::new(), 0);
            c.add_producer_ids(0..10);
            let out = c.init_producer_id(
                1,
                waterline_txn::InitProducerIdRequest {
                    transactional_id: id.into(),
                    transaction_timeout_ms: 1000,
                    producer_id: -1,
                    producer_epoch: -1,
                    api_version: 4,
                },
                0,
            );
            out.writes[0].record.encode()
        };
        let a = rec("a");
        let b = rec("b");
        let mut file = a.clone();
        file.extend_from_slice(&b[..b.len() - 1]);
        let d = decode_all(&file);
        assert!(d.error.is_some());
        assert!(is_torn_tail(&file, d.valid_len));

        let mut damaged = a.clone();
        damaged.extend_from_slice(&b);
        let last = a.len() + 9;
        damaged[last] ^= 0xff;
        damaged.extend_from_slice(&a);
        let d = decode_all(&damaged);
        assert_eq!(d.valid_len, a.len());
        assert!(!is_torn_tail(&damaged, d.valid_len));

        // Opening repairs the torn file (truncated to the valid prefix) and refuses the
        // damaged one, naming it.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), &file).unwrap();
        let t = Transactions::open(dir.path(), TxnConfig::default()).unwrap();
        assert_eq!(t.state_file_len(), a.len() as u64);
        assert_eq!(
            std::fs::metadata(dir.path().join(STATE_FILE))
                .unwrap()
                .len(),
            a.len() as u64
        );
        std::fs::write(dir.path().join(STATE_FILE), &damaged).unwrap();
        let err = Transactions::open(dir.path(), TxnConfig::default())
            .err()
            .expect("a damaged record before the last one refuses the start")
            .to_string();
        assert!(err.contains(STATE_FILE), "{err}");
    }
}
