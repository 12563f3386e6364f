//! Consumer groups: the bridge between the group handlers, the coordinator state machine
//! (`waterline-coordinator`) and the durable offset store.
//!
//! - The coordinator is a pure state machine behind one mutex. Each JoinGroup, SyncGroup,
//!   Heartbeat and LeaveGroup gets a fresh request id and a oneshot channel. The channel is
//!   registered *before* the coordinator sees the request, and every response an output carries
//!   (for this request or for parked earlier ones) is sent while the lock is still held, so a
//!   response can never be produced for a waiter that does not exist yet.
//! - A timer task ticks the coordinator at its next deadline (woken early when a call schedules
//!   an earlier timer, and at least every [`MAX_TIMER_SLEEP_MS`]); it also deletes the committed
//!   offsets of groups the coordinator reports as expired (empty longer than the retention).
//! - Offsets live in a [`RedbStore`] at `<data_dir>/offsets.redb` behind the [`Coalescing`]
//!   wrapper: concurrent commits share one transaction and one fsync, and a commit returns only
//!   once it is durable.
//! - Group metadata (generation, protocol, leader, members with their metadata and
//!   assignments) survives restarts, as in Kafka: the coordinator lists in each output the
//!   records to store or delete, and `persist_metadata` writes them to the `group_metadata`
//!   table of the same `offsets.redb` (one transaction, fsynced) while the coordinator lock is
//!   still held and *before* that output's responses are delivered. So the SyncGroup answers
//!   that complete a rebalance reach members only once their generation is durable, and no
//!   other group call can observe (or answer from) a state that is not yet written. The write
//!   blocks the lock for one fsync; it happens only when a rebalance completes or membership
//!   shrinks, never for heartbeats or commits. At start-up every record is restored (members'
//!   sessions restart then), and every group with committed offsets is registered too (those
//!   without a record come back Empty), so they are listed, described, deletable and expire.
//! - Shutdown: when the broker's shutdown token fires, the timer task answers every parked
//!   request with NOT_COORDINATOR and later calls get that answer at once, so connections can
//!   drain; [`Groups::close`] then closes the store and releases its file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use waterline_coordinator::{
    CoordinatorConfig, DescribedGroup, GroupCoordinator, GroupError, GroupSnapshot, GroupState,
    GroupView, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, ListedGroup,
    MetadataUpdate, OffsetCommitCheck, Output, Request, RequestId, Response, SyncGroupResponse,
};
use waterline_store::{
    Coalescing, CoalescingConfig, CoalescingStats, GroupOffsets, Limits, OffsetAndMetadata,
    OffsetStore, RedbOptions, RedbStore, StoreError, TopicPartition, TxnOffsetOp,
};

use crate::config::BrokerConfig;
use crate::error::{BrokerError, ConfigError};

/// Longest the timer task sleeps without looking at the coordinator again. Offset commits move
/// deadlines without waking the task (that would cost a scan of all groups per commit), so this
/// bounds how late such a deadline (e.g. offsets expiry of a new standalone group) can fire.
pub const MAX_TIMER_SLEEP_MS: u64 = 1_000;

/// File name of the offset database inside the data dir.
pub const OFFSETS_FILE: &str = "offsets.redb";

/// Seven days, Kafka's default `offsets.retention.minutes`.
const SEVEN_DAYS_MS: u64 = 7 * 24 * 3600 * 1000;

/// Upper bound on `offset_metadata_max_bytes`: a metadata string is held in memory per partition
/// and written to the store, so an absurd limit would let one client bloat the database.
const METADATA_LIMIT_CAP: usize = 1 << 20;

/// Consumer-group settings (`[groups]` in the TOML config). Unknown keys are rejected.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// Kafka `group.initial.rebalance.delay.ms`: how long the first join round of an empty
    /// group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// Kafka `offsets.retention.minutes` in ms: committed offsets of a group that has been
    /// empty this long are deleted.
    pub offsets_retention_ms: u64,
    /// Kafka `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: u64,
    /// Kafka `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: u64,
    /// Kafka `offset.metadata.max.bytes`: longer commit metadata is refused per partition with
    /// OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            offsets_retention_ms: SEVEN_DAYS_MS,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            offset_metadata_max_bytes: 4_096,
        }
    }
}

impl GroupConfig {
    /// Checks value ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(format!("groups.{m}")));
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            return bad("min_session_timeout_ms must not exceed max_session_timeout_ms");
        }
        if self.offsets_retention_ms == 0 {
            return bad("offsets_retention_ms must be at least 1");
        }
        if self.offset_metadata_max_bytes > METADATA_LIMIT_CAP {
            return bad("offset_metadata_max_bytes must be at most 1048576");
        }
        Ok(())
    }

    fn coordinator_config(&self, nonce: u64) -> CoordinatorConfig {
        CoordinatorConfig {
            initial_rebalance_delay_ms: self.initial_rebalance_delay_ms,
            min_session_timeout_ms: self.min_session_timeout_ms,
            max_session_timeout_ms: self.max_session_timeout_ms,
            offsets_retention_ms: self.offsets_retention_ms,
            member_id_nonce: nonce,
            ..CoordinatorConfig::default()
        }
    }
}

/// A monotonic millisecond clock that starts at the wall-clock time of start-up, so deadlines
/// never jump when the system clock is adjusted.
#[derive(Debug)]
struct Clock {
    base_ms: u64,
    start: Instant,
}

impl Clock {
    fn new() -> Clock {
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            base_ms,
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.base_ms
            .saturating_add(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant of clock time `ms`; one beyond `Instant`'s range maps to a second from now
    /// (the timer task re-checks then).
    fn instant_of(&self, ms: u64) -> Instant {
        self.start
            .checked_add(Duration::from_millis(ms.saturating_sub(self.base_ms)))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
    }
}

/// Everything behind the coordinator lock.
struct Core {
    coordinator: GroupCoordinator,
    /// One sender per parked (or about to be answered) request.
    waiters: HashMap<RequestId, oneshot::Sender<Response>>,
    /// The time the timer task sleeps until; a call scheduling an earlier timer wakes it.
    armed_ms: u64,
    /// Set on shutdown: the coordinator has answered everything and forgotten all groups.
    closed: bool,
    /// Groups whose offsets are being deleted (deleted or expired, store deletion in flight),
    /// with a count of deletions in flight. Commits to them are refused (retriably) until the
    /// deletion is durable: otherwise a commit acknowledged after the coordinator forgot the
    /// group could be erased by the deletion that follows.
    deleting: HashMap<String, usize>,
}

impl Core {
    fn start_deleting(&mut self, group: &str) {
        *self.deleting.entry(group.to_owned()).or_default() += 1;
    }

    fn finish_deleting(&mut self, group: &str) {
        if let Some(n) = self.deleting.get_mut(group) {
            *n -= 1;
            if *n == 0 {
                self.deleting.remove(group);
            }
        }
    }
}

impl Core {
    /// Hands every response of `out` to its waiter. Returns the earliest new timer, if any.
    fn deliver(&mut self, out: &mut Output) -> Option<u64> {
        for (id, response) in out.responses.drain(..) {
            if let Some(tx) = self.waiters.remove(&id) {
                // The receiver is gone when the client disconnected; nothing to do then.
                let _ = tx.send(response);
            }
        }
        out.timers.iter().map(|t| t.deadline_ms).min()
    }
}

struct Shared {
    core: parking_lot::Mutex<Core>,
    /// `None` once closed. Cloned per operation so the lock is held only briefly.
    store: parking_lot::RwLock<Option<Arc<Coalescing<RedbStore>>>>,
    wake: Notify,
    next_id: AtomicU64,
    clock: Clock,
    config: GroupConfig,
    path: PathBuf,
    /// Partitions with transactional offsets awaiting their transaction's outcome, per group,
    /// with the producer ids that staged them (mirrors the store's `txn_offsets` table).
    txn_pending: parking_lot::Mutex<HashMap<String, HashMap<TopicPartition, Vec<i64>>>>,
    /// Group commit of transactional-offset writes.
    txn_writer: TxnWriter,
}

/// What a queued transactional-offset write reports back.
type TxnOpResult = Result<Vec<(String, TopicPartition)>, StoreError>;

/// A queue of transactional-offset writes drained by one thread: everything queued while the
/// previous batch was being written goes into the next store transaction (one fsync).
#[derive(Default)]
struct TxnWriter {
    queue: parking_lot::Mutex<TxnQueue>,
    wake: parking_lot::Condvar,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct TxnQueue {
    ops: Vec<(TxnOffsetOp, oneshot::Sender<TxnOpResult>)>,
    stop: bool,
}

impl TxnWriter {
    /// Queues `op` now (its place in the order is fixed here); resolves once it is durable.
    fn enqueue(
        &self,
        op: TxnOffsetOp,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + use<> {
        let (tx, rx) = oneshot::channel();
        let stopped = {
            let mut q = self.queue.lock();
            if q.stop {
                true
            } else {
                q.ops.push((op, tx));
                self.wake.notify_one();
                false
            }
        };
        async move {
            if stopped {
                return Err(StoreError::Closed);
            }
            rx.await.unwrap_or(Err(StoreError::Closed)).map(drop)
        }
    }

    fn stop(&self) {
        self.queue.lock().stop = true;
        self.wake.notify_one();
        if let Some(t) = self.thread.lock().take()
            && t.join().is_err()
        {
            tracing::error!("transactional offset writer panicked");
        }
    }
}

/// The writer thread: applies queued batches in order and keeps the pending index in step.
fn txn_writer_loop(shared: &Shared) {
    loop {
        let (batch, stop) = {
            let mut q = shared.txn_writer.queue.lock();
            while q.ops.is_empty() && !q.stop {
                shared.txn_writer.wake.wait(&mut q);
            }
            (std::mem::take(&mut q.ops), q.stop)
        };
        if !batch.is_empty() {
            let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let results = shared
                .store()
                .and_then(|store| store.inner().apply_txn_offset_ops_blocking(&ops));
            match results {
                Ok(results) => {
                    let mut pending = shared.txn_pending.lock();
                    for ((op, reply), result) in ops.iter().zip(replies).zip(results) {
                        if let Ok(done) = &result {
                            note_pending(&mut pending, op, done);
                        }
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing transactional offsets failed");
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        if stop {
            // Anything queued after the final take is refused by `enqueue`.
            return;
        }
    }
}

/// Applies a durable stage or settlement to the in-memory index of pending offsets.
fn note_pending(
    pending: &mut HashMap<String, HashMap<TopicPartition, Vec<i64>>>,
    op: &TxnOffsetOp,
    done: &[(String, TopicPartition)],
) {
    match op {
        TxnOffsetOp::Stage { producer_id, .. } => {
            for (group, tp) in done {
                let pids = pending
                    .entry(group.clone())
                    .or_default()
                    .entry(tp.clone())
                    .or_default();
                if !pids.contains(producer_id) {
                    pids.push(*producer_id);
                }
            }
        }
        TxnOffsetOp::Complete { producer_id, .. } => {
            for (group, tp) in done {
                if let Some(g) = pending.get_mut(group) {
                    if let Some(pids) = g.get_mut(tp) {
                        pids.retain(|p| p != producer_id);
                        if pids.is_empty() {
                            g.remove(tp);
                        }
                    }
                    if g.is_empty() {
                        pending.remove(group);
                    }
                }
            }
        }
    }
}

impl Shared {
    fn store(&self) -> Result<Arc<Coalescing<RedbStore>>, StoreError> {
        self.store.read().clone().ok_or(StoreError::Closed)
    }
}

/// The consumer-group subsystem of the broker; see the [module docs](self).
pub struct Groups {
    shared: Arc<Shared>,
    timer: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups")
            .field("config", &self.shared.config)
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// What kind of group request is being answered, for building an error response.
#[derive(Clone, Copy)]
enum Kind {
    Join,
    Sync,
    Heartbeat,
    Leave,
}

impl Kind {
    fn of(request: &Request) -> Kind {
        match request {
            Request::JoinGroup(_) => Kind::Join,
            Request::SyncGroup(_) => Kind::Sync,
            Request::Heartbeat(_) => Kind::Heartbeat,
            Request::LeaveGroup(_) => Kind::Leave,
        }
    }

    fn error(self, member_id: &str, error: GroupError) -> Response {
        match self {
            Kind::Join => Response::JoinGroup(JoinGroupResponse {
                error: Some(error),
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                skip_assignment: false,
                member_id: member_id.to_owned(),
                members: Vec::new(),
            }),
            Kind::Sync => Response::SyncGroup(SyncGroupResponse {
                error: Some(error),
                protocol_type: None,
                protocol_name: None,
                assignment: bytes::Bytes::new(),
            }),
            Kind::Heartbeat => Response::Heartbeat(HeartbeatResponse { error: Some(error) }),
            Kind::Leave => Response::LeaveGroup(LeaveGroupResponse {
                error: Some(error),
                members: Vec::new(),
            }),
        }
    }
}

fn member_of(request: &Request) -> String {
    match request {
        Request::JoinGroup(r) => r.member_id.clone(),
        Request::SyncGroup(r) => r.member_id.clone(),
        Request::Heartbeat(r) => r.member_id.clone(),
        Request::LeaveGroup(_) => String::new(),
    }
}

impl Groups {
    /// Opens `<data_dir>/offsets.redb` (creating it), registers every group found there with
    /// the coordinator, and starts the timer task. Blocking; must run inside a tokio runtime
    /// context (the coalescing and timer tasks are spawned on it), e.g. from `spawn_blocking`.
    pub fn open(config: &BrokerConfig, shutdown: CancellationToken) -> Result<Groups, BrokerError> {
        Groups::open_with_topics(config, shutdown, &|_| true)
    }

    /// [`Groups::open`], first deleting the committed offsets of every topic for which
    /// `topic_exists` is false: those of a topic deleted while its offsets were being removed
    /// (a crash, or a store failure, between the two). Commits to unknown topics are refused,
    /// so no other offsets can name a missing topic.
    pub fn open_with_topics(
        config: &BrokerConfig,
        shutdown: CancellationToken,
        topic_exists: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Groups, BrokerError> {
        let gc = config.groups.clone();
        gc.validate()?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| BrokerError::Task(format!("consumer groups need a tokio runtime: {e}")))?;
        let path = config.data_dir.join(OFFSETS_FILE);
        let limits = Limits {
            max_metadata_bytes: Some(gc.offset_metadata_max_bytes),
        };
        let (store, group_ids, records) =
            open_store(path.clone(), limits, topic_exists).map_err(|e| {
                BrokerError::io("opening offset store", &path, std::io::Error::other(e))
            })?;
        let store = {
            // Coalescing spawns its task on the current runtime: enter ours explicitly.
            let _guard = runtime.enter();
            Coalescing::with_config(
                store,
                CoalescingConfig {
                    limits,
                    ..CoalescingConfig::default()
                },
            )
            .map_err(|e| BrokerError::io("opening offset store", &path, std::io::Error::other(e)))?
        };
        let clock = Clock::new();
        let now = clock.now_ms();
        // Member ids must never repeat a restored one from an earlier run: mix in the start time
        // at nanosecond resolution.
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut coordinator = GroupCoordinator::new(gc.coordinator_config(nonce));
        let restored = restore_metadata(&mut coordinator, &records, now, &path)?;
        for g in &group_ids {
            coordinator.restore_group(g, now);
        }
        tracing::info!(
            groups = group_ids.len(),
            restored_groups = restored,
            path = %path.display(),
            "offset store opened"
        );
        let mut txn_pending: HashMap<String, HashMap<TopicPartition, Vec<i64>>> = HashMap::new();
        for p in store.inner().txn_offsets_blocking().map_err(|e| {
            BrokerError::io(
                "reading transactional offsets",
                &path,
                std::io::Error::other(e),
            )
        })? {
            coordinator.restore_group(&p.group, now);
            txn_pending
                .entry(p.group)
                .or_default()
                .entry(p.partition)
                .or_default()
                .push(p.producer_id);
        }
        let shared = Arc::new(Shared {
            txn_pending: parking_lot::Mutex::new(txn_pending),
            txn_writer: TxnWriter::default(),
            core: parking_lot::Mutex::new(Core {
                coordinator,
                waiters: HashMap::new(),
                armed_ms: u64::MAX,
                closed: false,
                deleting: HashMap::new(),
            }),
            store: parking_lot::RwLock::new(Some(Arc::new(store))),
            wake: Notify::new(),
            next_id: AtomicU64::new(1),
            clock,
            config: gc,
            path,
        });
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("waterline-txn-offsets".into())
            .spawn(move || txn_writer_loop(&writer_shared))
            .map_err(|e| {
                BrokerError::io(
                    "starting the transactional offset writer for",
                    &shared.path,
                    e,
                )
            })?;
        *shared.txn_writer.thread.lock() = Some(writer);
        let timer = runtime.spawn(timer_loop(shared.clone(), shutdown));
        Ok(Groups {
            shared,
            timer: parking_lot::Mutex::new(Some(timer)),
        })
    }

    /// The group settings.
    pub fn config(&self) -> &GroupConfig {
        &self.shared.config
    }

    /// Current time on the coordinator's clock (ms).
    pub fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Applies a JoinGroup, SyncGroup, Heartbeat or LeaveGroup to the coordinator now,
    /// synchronously, and returns a future of its answer (a parked JoinGroup/SyncGroup resolves
    /// when the round or the assignment completes it). Applying before returning is what lets
    /// a connection's requests take effect in the order they were sent while parked ones wait
    /// concurrently. The response variant always matches the request's.
    pub fn call(
        &self,
        request: Request,
    ) -> impl std::future::Future<Output = Response> + Send + use<> {
        let kind = Kind::of(&request);
        let member = member_of(&request);
        let (tx, rx) = oneshot::channel();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let closed = {
            let mut core = self.shared.core.lock();
            if core.closed {
                true
            } else {
                core.waiters.insert(id, tx);
                let now = self.shared.clock.now_ms();
                let mut out = core.coordinator.handle(id, request, now);
                persist_metadata(&self.shared, &mut out.metadata);
                if let Some(earliest) = core.deliver(&mut out)
                    && earliest < core.armed_ms
                {
                    core.armed_ms = earliest;
                    self.shared.wake.notify_one();
                }
                false
            }
        };
        async move {
            if closed {
                return kind.error(&member, GroupError::NotCoordinator);
            }
            match rx.await {
                Ok(response) => response,
                // The coordinator answers every parked request exactly once; a dropped sender
                // means the subsystem is going away.
                Err(_) => kind.error(&member, GroupError::NotCoordinator),
            }
        }
    }

    /// Validates an OffsetCommit's group fields (generation, member, state) with the
    /// coordinator. `Ok` means the offsets may be stored.
    pub fn validate_commit(&self, check: &OffsetCommitCheck) -> Result<(), GroupError> {
        let mut core = self.shared.core.lock();
        if core.closed {
            return Err(GroupError::NotCoordinator);
        }
        if core.deleting.contains_key(&check.group_id) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let now = self.shared.clock.now_ms();
        core.coordinator.validate_offset_commit(check, now)
    }

    /// Queues offsets for `group` now, synchronously (commits are applied in the order of
    /// these calls), and returns a future that resolves once they are durable (shared fsync).
    /// Afterwards the group is known to the coordinator even if a DeleteGroups made it forget
    /// the group while the commit was in flight: stored offsets always belong to a listed group.
    pub fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + use<> {
        let queued = self
            .shared
            .store()
            .and_then(|store| store.enqueue(group, offsets));
        let shared = self.shared.clone();
        let group = group.to_owned();
        async move {
            queued?.wait().await?;
            let now = shared.clock.now_ms();
            let mut core = shared.core.lock();
            if !core.closed {
                core.coordinator.restore_group(&group, now);
            }
            Ok(())
        }
    }

    /// Queues offsets of a TxnOffsetCommit now, synchronously, to be stored durably as pending
    /// for (`group`, `producer_id`): invisible to OffsetFetch until the transaction commits.
    /// Stages and settlements are applied in the order of these calls, many in one store
    /// transaction and one fsync; the future resolves once this one is durable. The group
    /// becomes known to the coordinator (it has offsets, if only pending ones).
    pub fn stage_txn_offsets(
        &self,
        producer_id: i64,
        group: &str,
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + use<> {
        let done = self.shared.txn_writer.enqueue(TxnOffsetOp::Stage {
            producer_id,
            group: group.to_owned(),
            offsets,
        });
        let shared = self.shared.clone();
        let group = group.to_owned();
        async move {
            done.await?;
            let now = shared.clock.now_ms();
            let mut core = shared.core.lock();
            if !core.closed {
                core.coordinator.restore_group(&group, now);
            }
            Ok(())
        }
    }

    /// Settles producer `producer_id`'s pending transactional offsets of `groups` (commit:
    /// they become the committed offsets; abort: dropped), durably, after every plain commit
    /// queued before this call. Idempotent.
    pub async fn complete_txn_offsets(
        &self,
        producer_id: i64,
        groups: &[String],
        commit: bool,
    ) -> Result<(), StoreError> {
        let store = self.shared.store()?;
        store.barrier()?.wait().await?;
        self.shared
            .txn_writer
            .enqueue(TxnOffsetOp::Complete {
                producer_id,
                groups: groups.to_vec(),
                commit,
            })
            .await
    }

    /// Whether `group` has a transactional offset for `tp` awaiting its transaction's outcome
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then).
    pub fn has_pending_txn_offset(&self, group: &str, tp: &TopicPartition) -> bool {
        self.shared
            .txn_pending
            .lock()
            .get(group)
            .is_some_and(|g| g.contains_key(tp))
    }

    /// All committed offsets of `group`, sorted by topic then partition.
    pub async fn committed(&self, group: &str) -> Result<GroupOffsets, StoreError> {
        self.shared.store()?.get_group(group).await
    }

    /// Deletes the given partitions' offsets of `group` (durably).
    pub async fn delete_offsets(
        &self,
        group: &str,
        tps: &[TopicPartition],
    ) -> Result<(), StoreError> {
        self.shared.store()?.delete(group, tps).await
    }

    /// Deletes every group's committed offsets of `topic` (durably), after every commit queued
    /// before this call has landed, so none of them can bring the offsets back. Call it once
    /// the topic is gone from the registry (commits to it are refused from then on). Returns
    /// how many partition offsets were deleted.
    pub async fn delete_topic_offsets(&self, topic: &str) -> Result<usize, StoreError> {
        let store = self.shared.store()?;
        store.barrier()?.wait().await?;
        let mut deleted = 0;
        for group in store.list_groups().await? {
            let gone = topics_gone(&*store, &group, &|t| t != topic).await?;
            if !gone.is_empty() {
                store.delete(&group, &gone).await?;
                deleted += gone.len();
            }
        }
        Ok(deleted)
    }

    /// DescribeGroups through the coordinator.
    pub fn describe(&self, group_ids: &[String]) -> Vec<DescribedGroup> {
        self.shared
            .core
            .lock()
            .coordinator
            .describe_groups(group_ids)
    }

    /// ListGroups through the coordinator (empty filter: all).
    pub fn list(&self, states: &[GroupState]) -> Vec<ListedGroup> {
        self.shared.core.lock().coordinator.list_groups(states)
    }

    /// A snapshot of one group.
    pub fn group(&self, group_id: &str) -> Option<GroupView> {
        self.shared.core.lock().coordinator.group(group_id)
    }

    /// DeleteGroups: the coordinator decides (only Empty groups), then the deleted groups'
    /// offsets are removed from the store. A group whose offsets could not be deleted is
    /// registered again (it still has offsets) and answered with the store's error.
    pub async fn delete_groups(&self, group_ids: &[String]) -> Vec<(String, Result<(), i16>)> {
        let decided = {
            let mut core = self.shared.core.lock();
            if core.closed {
                return group_ids
                    .iter()
                    .map(|g| (g.clone(), Err(GroupError::NotCoordinator.code())))
                    .collect();
            }
            let decided = core.coordinator.delete_groups(group_ids);
            persist_metadata(&self.shared, &mut core.coordinator.take_metadata_updates());
            for (group, error) in &decided {
                if error.is_none() {
                    core.start_deleting(group);
                }
            }
            decided
        };
        let mut results = Vec::with_capacity(decided.len());
        for (group, error) in decided {
            if let Some(e) = error {
                results.push((group, Err(e.code())));
                continue;
            }
            match delete_group_offsets(&self.shared, &group).await {
                Ok(()) => results.push((group, Ok(()))),
                Err(e) => {
                    tracing::error!(%group, error = %e, "deleting group offsets failed");
                    results.push((group, Err(store_error_code(&e))));
                }
            }
        }
        results
    }

    /// Counters of the coalescing store (shared fsyncs), if it is open.
    pub fn store_stats(&self) -> Option<CoalescingStats> {
        self.shared.store.read().as_ref().map(|s| s.stats())
    }

    /// Answers parked requests with NOT_COORDINATOR (if shutdown has not already), stops the
    /// timer task, then closes the offset store so its file can be reopened. Call after the
    /// connections have drained; later store operations fail with `Closed`.
    pub async fn close(&self) {
        self.shut_down_coordinator();
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || shared.txn_writer.stop()).await;
        let timer = self.timer.lock().take();
        if let Some(t) = timer {
            t.abort();
            let _ = t.await;
        }
        let store = self.shared.store.write().take();
        if let Some(store) = store
            && let Err(e) = store.close().await
        {
            tracing::error!(error = %e, "closing the offset store failed");
        }
    }

    fn shut_down_coordinator(&self) {
        shut_down(&self.shared);
    }
}

fn shut_down(shared: &Shared) {
    let mut core = shared.core.lock();
    if core.closed {
        return;
    }
    core.closed = true;
    let mut out = core.coordinator.shutdown();
    core.deliver(&mut out);
    // Anything left has no coordinator state behind it any more.
    core.waiters.clear();
}

/// Deletes a group's offsets from the store for a group already marked with
/// [`Core::start_deleting`], then unmarks it. On failure the group is registered again (it
/// still has offsets), so it stays listed and a later expiry or DeleteGroups retries.
async fn delete_group_offsets(shared: &Shared, group: &str) -> Result<(), StoreError> {
    let outcome = match shared.store() {
        Ok(store) => store.delete_group(group).await,
        Err(e) => Err(e),
    };
    let now = shared.clock.now_ms();
    let mut core = shared.core.lock();
    core.finish_deleting(group);
    if outcome.is_err() && !core.closed {
        core.coordinator.restore_group(group, now);
    }
    outcome
}

/// Maps a store failure to the Kafka error code answered for the affected partitions or group.
/// Never NONE: a commit that is not known to be durable must not be acknowledged.
pub fn store_error_code(e: &StoreError) -> i16 {
    use kafka_protocol::ResponseError;
    match e {
        StoreError::MetadataTooLarge { .. } => ResponseError::OffsetMetadataTooLarge.code(),
        StoreError::GroupNameTooLong { .. } => ResponseError::InvalidGroupId.code(),
        // Retriable for clients: they look the coordinator up again and retry.
        _ => ResponseError::CoordinatorNotAvailable.code(),
    }
}

/// Makes the coordinator's metadata updates durable (one redb transaction, fsynced), in order.
/// Called with the coordinator lock held, before the responses of the same output are
/// delivered (see the module docs). On a multi-threaded runtime the fsync runs under
/// `block_in_place`, so the worker's other tasks move to another thread meanwhile.
///
/// A failed write is logged and the responses are still delivered: the coordinator's state has
/// already moved on and answering with an error would not undo it. The failure poisons the
/// store (redb refuses writes after a failed fsync), so every OffsetCommit fails from then on
/// and clients see the problem; after a restart the group is as of its last good record (or
/// Empty), and members rejoin as they do against a broker without durable membership.
fn persist_metadata(shared: &Shared, updates: &mut Vec<MetadataUpdate>) {
    if updates.is_empty() {
        return;
    }
    let encoded: Vec<(&str, Option<Vec<u8>>)> = updates
        .iter()
        .map(|u| match u {
            MetadataUpdate::Store(s) => (s.group_id.as_str(), Some(s.encode())),
            MetadataUpdate::Delete { group_id } => (group_id.as_str(), None),
        })
        .collect();
    let writes: Vec<(&str, Option<&[u8]>)> =
        encoded.iter().map(|(g, r)| (*g, r.as_deref())).collect();
    let outcome = shared.store().and_then(|store| {
        let redb = store.inner();
        blocking_section(|| redb.write_group_metadata_blocking(&writes))
    });
    if let Err(e) = outcome {
        let groups: Vec<&str> = writes.iter().map(|(g, _)| *g).collect();
        tracing::error!(?groups, error = %e, "writing group metadata failed");
    }
    updates.clear();
}

/// Runs blocking disk work from async code: under `block_in_place` on a multi-threaded
/// runtime; directly elsewhere (current-thread runtimes, where that is not available, are used
/// by tests and tools only).
fn blocking_section<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Rebuilds every group that has a metadata record; returns how many. A record that does not
/// decode or restore is an error naming the group and the file: starting with the group
/// silently empty would make its live members lose their generation, the very thing the record
/// exists to prevent, and hide the damage.
fn restore_metadata(
    coordinator: &mut GroupCoordinator,
    records: &[(String, Vec<u8>)],
    now: u64,
    path: &std::path::Path,
) -> Result<usize, BrokerError> {
    for (group, bytes) in records {
        let corrupt = |reason: String| BrokerError::CorruptMetadata {
            path: path.to_path_buf(),
            reason: format!("group metadata of group {group:?}: {reason}"),
        };
        let snapshot = GroupSnapshot::decode(group, bytes).map_err(|e| corrupt(e.to_string()))?;
        coordinator
            .restore_snapshot(snapshot, now)
            .map_err(|e| corrupt(e.to_string()))?;
    }
    Ok(records.len())
}

/// Opens the redb store and lists its groups on a private single-thread runtime: the caller is
/// synchronous (start-up runs in `spawn_blocking`, tests on a current-thread runtime) and may
/// not block on the broker's runtime. The store itself is not tied to that runtime.
/// Group id and stored metadata record, as read at start-up.
type MetadataRecords = Vec<(String, Vec<u8>)>;

fn open_store(
    path: PathBuf,
    limits: Limits,
    topic_exists: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(RedbStore, Vec<String>, MetadataRecords), StoreError> {
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::TaskFailed(format!("building a runtime: {e}")))?;
            rt.block_on(async move {
                let options = RedbOptions {
                    limits,
                    ..RedbOptions::default()
                };
                let store = RedbStore::open_with(&path, options).await?;
                let groups = store.list_groups().await?;
                for group in &groups {
                    let gone = topics_gone(&store, group, topic_exists).await?;
                    if !gone.is_empty() {
                        tracing::info!(%group, partitions = gone.len(), "deleting offsets of deleted topics");
                        store.delete(group, &gone).await?;
                    }
                }
                let records = store.group_metadata().await?;
                Ok((store, groups, records))
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(StoreError::TaskFailed(
                "opening the offset store panicked".into(),
            ))
        })
    })
}

/// The partitions `group` has offsets for whose topic does not pass `keep`.
async fn topics_gone(
    store: &impl OffsetStore,
    group: &str,
    keep: &(dyn Fn(&str) -> bool + Sync),
) -> Result<Vec<TopicPartition>, StoreError> {
    Ok(store
        .get_group(group)
        .await?
        .into_iter()
        .map(|(tp, _)| tp)
        .filter(|tp| !keep(&tp.topic))
        .collect())
}

/// Ticks the coordinator at its deadlines, deletes expired groups' offsets, and answers parked
/// requests when the broker shuts down.
async fn timer_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let wake_at = {
            let mut core = shared.core.lock();
            let now = shared.clock.now_ms();
            let cap = now.saturating_add(MAX_TIMER_SLEEP_MS);
            let at = core.coordinator.next_deadline().map_or(cap, |d| d.min(cap));
            core.armed_ms = at;
            at
        };
        tokio::select! {
            _ = tokio::time::sleep_until(shared.clock.instant_of(wake_at).into()) => {}
            _ = shared.wake.notified() => continue,
            _ = shutdown.cancelled() => {
                shut_down(&shared);
                return;
            }
        }
        let expired = {
            let mut core = shared.core.lock();
            if core.closed {
                return;
            }
            let now = shared.clock.now_ms();
            let mut out = core.coordinator.tick(now);
            persist_metadata(&shared, &mut out.metadata);
            core.deliver(&mut out);
            for group in &out.expired_groups {
                core.start_deleting(group);
            }
            std::mem::take(&mut out.expired_groups)
        };
        for group in expired {
            match delete_group_offsets(&shared, &group).await {
                Ok(()) => {
                    tracing::info!(%group, "offsets expired: group was empty past the retention")
                }
                Err(e) => tracing::error!(%group, error = %e, "deleting expired offsets failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_are_kafkas() {
        let c = GroupConfig::default();
        assert_eq!(c.initial_rebalance_delay_ms, 3_000);
        assert_eq!(c.offsets_retention_ms, 604_800_000);
        assert_eq!(c.min_session_timeout_ms, 6_000);
        assert_eq!(c.max_session_timeout_ms, 1_800_000);
        assert_eq!(c.offset_metadata_max_bytes, 4_096);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn config_rejects_inverted_or_absurd_values() {
        for bad in [
            GroupConfig {
                min_session_timeout_ms: 10,
                max_session_timeout_ms: 5,
                ..GroupConfig::default()
            },
            GroupConfig {
                offsets_retention_ms: 0,
                ..GroupConfig::default()
            },
            GroupConfig {
                offset_metadata_max_bytes: METADATA_LIMIT_CAP + 1,
                ..GroupConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn store_errors_never_map_to_success() {
        for e in [
            StoreError::Closed,
            StoreError::TaskFailed("x".into()),
            StoreError::Poisoned { path: "p".into() },
            StoreError::GroupNameTooLong { len: 1, max: 0 },
        ] {
            assert_ne!(store_error_code(&e), 0, "{e:?}");
        }
    }

    #[tokio::test]
    async fn commits_wait_while_a_group_deletion_is_in_flight() {
        let (state, _dir) = test_util::state(0);
        let check = OffsetCommitCheck {
            group_id: "g".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            api_version: 8,
        };
        state.groups.shared.core.lock().start_deleting("g");
        state.groups.shared.core.lock().start_deleting("g");
        assert_eq!(
            state.groups.validate_commit(&check),
            Err(GroupError::CoordinatorNotAvailable)
        );
        state.groups.shared.core.lock().finish_deleting("g");
        assert!(
            state.groups.validate_commit(&check).is_err(),
            "one deletion still in flight"
        );
        state.groups.shared.core.lock().finish_deleting("g");
        assert_eq!(state.groups.validate_commit(&check), Ok(()));
    }

    #[tokio::test]
    async fn stored_offsets_always_belong_to_a_listed_group() {
        let (state, _dir) = test_util::state(0);
        let tp = TopicPartition::new("t", 0);
        // The coordinator never saw this group (as if DeleteGroups raced the commit).
        assert!(state.groups.group("raced").is_none());
        state
            .groups
            .commit("raced", &[(tp, OffsetAndMetadata::new(3, 0))])
            .await
            .unwrap();
        assert_eq!(
            state.groups.group("raced").map(|g| g.state),
            Some(GroupState::Empty)
        );
    }

    fn groups_config(dir: &std::path::Path) -> BrokerConfig {
        BrokerConfig {
            data_dir: dir.to_path_buf(),
            groups: GroupConfig {
                initial_rebalance_delay_ms: 0,
                ..GroupConfig::default()
            },
            ..BrokerConfig::default()
        }
    }

    fn join(member_id: &str) -> Request {
        Request::JoinGroup(waterline_coordinator::JoinGroupRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: None,
            require_known_member_id: false,
            supports_skip_assignment: false,
            client_id: "app".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![waterline_coordinator::Protocol {
                name: "range".into(),
                metadata: bytes::Bytes::from_static(b"subscription"),
            }],
        })
    }

    fn heartbeat(member_id: &str, generation_id: i32) -> Request {
        Request::Heartbeat(waterline_coordinator::HeartbeatRequest {
            group_id: "g".into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
        })
    }

    /// A one-member group that completed its first rebalance.
    async fn stable_member(groups: &Groups) -> (String, i32) {
        let Response::JoinGroup(joined) = groups.call(join("")).await else {
            panic!("not a join response")
        };
        assert_eq!(joined.error, None);
        let sync = waterline_coordinator::SyncGroupRequest {
            group_id: "g".into(),
            generation_id: joined.generation_id,
            member_id: joined.member_id.clone(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![(joined.member_id.clone(), bytes::Bytes::from_static(b"p0"))],
        };
        let Response::SyncGroup(synced) = groups.call(Request::SyncGroup(sync)).await else {
            panic!("not a sync response")
        };
        assert_eq!(synced.error, None);
        (joined.member_id, joined.generation_id)
    }

    #[tokio::test]
    async fn the_sync_answer_comes_after_the_record_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let groups = Groups::open(&groups_config(dir.path()), CancellationToken::new()).unwrap();
        let (member, generation) = stable_member(&groups).await;
        // The SyncGroup answer is in hand: its generation must already be in the table.
        let store = groups.shared.store().unwrap();
        let records = store.inner().group_metadata().await.unwrap();
        assert_eq!(records.len(), 1);
        let snapshot = GroupSnapshot::decode("g", &records[0].1).unwrap();
        assert_eq!(snapshot.generation_id, generation);
        assert_eq!(snapshot.members[0].member_id, member);
        groups.close().await;
    }

    #[tokio::test]
    async fn a_member_keeps_its_generation_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = groups_config(dir.path());
        let groups = Groups::open(&config, CancellationToken::new()).unwrap();
        let (member, generation) = stable_member(&groups).await;
        let tp = TopicPartition::new("t", 0);
        groups
            .commit("g", &[(tp.clone(), OffsetAndMetadata::new(5, 0))])
            .await
            .unwrap();
        // No clean shutdown of the coordinator matters here: the record was written before the
        // sync answer. Close only releases the file so it can be reopened.
        groups.close().await;

        let groups = Groups::open(&config, CancellationToken::new()).unwrap();
        let view = groups.group("g").expect("restored");
        assert_eq!(view.state, GroupState::Stable);
        assert_eq!(view.generation_id, generation);
        let Response::Heartbeat(hb) = groups.call(heartbeat(&member, generation)).await else {
            panic!("not a heartbeat response")
        };
        assert_eq!(hb.error, None);
        let check = OffsetCommitCheck {
            group_id: "g".into(),
            generation_id: generation,
            member_id: member.clone(),
            group_instance_id: None,
            api_version: 9,
        };
        assert_eq!(groups.validate_commit(&check), Ok(()));
        let described = groups.describe(&["g".to_owned()]);
        assert_eq!(described[0].protocol_type, "consumer");
        assert_eq!(described[0].protocol_name, "range");
        assert_eq!(
            described[0].members[0].assignment,
            bytes::Bytes::from_static(b"p0")
        );
        groups.close().await;
    }

    #[tokio::test]
    async fn leaving_empties_the_group_and_deleting_it_removes_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let config = groups_config(dir.path());
        let groups = Groups::open(&config, CancellationToken::new()).unwrap();
        let (member, _) = stable_member(&groups).await;
        groups
            .commit(
                "g",
                &[(TopicPartition::new("t", 0), OffsetAndMetadata::new(1, 0))],
            )
            .await
            .unwrap();
        let leave = waterline_coordinator::LeaveGroupRequest {
            group_id: "g".into(),
            members: vec![waterline_coordinator::LeavingMember {
                member_id: member,
                group_instance_id: None,
            }],
        };
        groups.call(Request::LeaveGroup(leave)).await;
        // The last member left: the round closes (rebalance timeout) and the group is Empty.
        for _ in 0..400 {
            if groups.group("g").map(|v| v.state) == Some(GroupState::Empty) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let records = groups
            .shared
            .store()
            .unwrap()
            .inner()
            .group_metadata()
            .await
            .unwrap();
        let snapshot = GroupSnapshot::decode("g", &records[0].1).unwrap();
        assert!(snapshot.members.is_empty() || snapshot.rebalance_pending);
        assert_eq!(groups.delete_groups(&["g".to_owned()]).await.len(), 1);
        let records = groups
            .shared
            .store()
            .unwrap()
            .inner()
            .group_metadata()
            .await
            .unwrap();
        assert!(records.is_empty(), "{records:?}");
        groups.close().await;
    }

    #[tokio::test]
    async fn a_corrupt_record_is_an_error_naming_the_group_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = groups_config(dir.path());
        let path = dir.path().join(OFFSETS_FILE);
        {
            let store = RedbStore::open(&path).await.unwrap();
            store
                .write_group_metadata_blocking(&[("broken-group", Some(&[1, 0, 0][..]))])
                .unwrap();
        }
        let err = Groups::open(&config, CancellationToken::new()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("broken-group"), "{text}");
        assert!(text.contains(OFFSETS_FILE), "{text}");
    }

    #[test]
    fn clock_is_monotonic_from_wall_time() {
        let c = Clock::new();
        let a = c.now_ms();
        let b = c.now_ms();
        assert!(b >= a);
        assert!(a >= c.base_ms);
        assert!(c.instant_of(a) >= c.start);
        assert!(c.instant_of(u64::MAX) > c.start);
    }
}

#[cfg(test)]
impl Groups {
    /// Drops the offset store while the coordinator keeps running, so every store operation
    /// fails from now on (to test that failures are never answered as success).
    pub(crate) fn detach_store(&self) {
        self.shared.store.write().take();
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! A broker state with chosen group settings, for handler tests.
    use std::sync::Arc;

    use super::GroupConfig;
    use crate::config::BrokerConfig;
    use crate::state::SharedState;

    /// A state over a fresh temp dir whose groups use `initial_delay_ms` and Kafka's other
    /// defaults. Must run inside a tokio runtime.
    pub fn state(initial_delay_ms: u64) -> (SharedState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            groups: GroupConfig {
                initial_rebalance_delay_ms: initial_delay_ms,
                ..GroupConfig::default()
            },
            ..BrokerConfig::default()
        };
        (
            {
                let state =
                    Arc::new(crate::server::build_state(config, "127.0.0.1".into(), 9092).unwrap());
                crate::transactions::Transactions::start(&state).unwrap();
                state
            },
            dir,
        )
    }
}
