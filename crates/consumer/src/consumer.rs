//! The consumer handle: hand-outs, back-pressure, the commit thread, lag and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::FutureExt;
use parking_lot::Mutex;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer as _;
use rdkafka::producer::FutureProducer;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use waterline_core::{
    BarrierId, CommitDecision, CommitPlan, CommitStats, LagReport, PolicyEvent, TopicPartition,
};

use crate::config::{ConsumerConfig, Exhausted, OffsetStorage};
use crate::delivery::{Delivery, Record};
use crate::error::{ConsumerError, fatal_error};
use crate::gate::Slot;
use crate::metrics::MetricsSnapshot;
use crate::native::{Client, ClientStream, Fetched};
use crate::shared::{Ctx, PartState, Redelivery, Shared, SharedParts, now_ms};
use crate::txn::TxnProducer;

/// Records buffered locally per partition before the partition is paused in the client.
const PAUSE_AT: usize = 512;

/// What admission decided for one record.
enum Step {
    /// Handed out: deliver it.
    Go,
    /// Already done (or a duplicate): drop it.
    Skip,
    /// Not now (in-flight window, encoding budget, or hold): keep it buffered.
    Wait,
}

/// What only `recv` touches; behind an async mutex, so one `recv` runs at a time (the
/// buffers and the single-writer counters rely on it too).
struct RecvState {
    stream: ClientStream,
    /// Redeliveries; drained with `try_recv` (their sender wakes `recv` through `wake`).
    rx: mpsc::UnboundedReceiver<Redelivery>,
    hot: HotParts,
}

/// Partition states by topic handle and partition, read under the map epoch they were read
/// under: a fetched record finds its partition without hashing or reading its topic name.
#[derive(Default)]
struct HotParts {
    epoch: u64,
    /// (topic handle address, partition, state). A topic handle lives as long as any of its
    /// partitions is assigned, and any change of assignment bumps the epoch, so an address
    /// seen here cannot stand for another topic.
    entries: Vec<(usize, i32, Arc<PartState>)>,
}

impl HotParts {
    fn get(&mut self, shared: &Shared, m: &Fetched) -> Option<&Arc<PartState>> {
        let epoch = shared.epoch.load(Ordering::Acquire);
        if self.epoch != epoch {
            self.epoch = epoch;
            self.entries.clear();
        }
        let (topic, partition) = (m.topic_ptr(), m.partition());
        let i = match self
            .entries
            .iter()
            .position(|e| e.0 == topic && e.1 == partition)
        {
            Some(i) => i,
            None => {
                let name = m.topic();
                // Known under another handle address: remember this one instead.
                if let Some(i) = self
                    .entries
                    .iter()
                    .position(|e| e.1 == partition && e.2.tp.topic == name)
                {
                    self.entries[i].0 = topic;
                    i
                } else {
                    let p = shared.part(&TopicPartition::new(name, partition))?;
                    self.entries.push((topic, partition, p));
                    self.entries.len() - 1
                }
            }
        };
        Some(&self.entries[i].2)
    }
}

/// What woke a waiting `recv`.
enum Woken {
    Message(rdkafka::error::KafkaResult<Fetched>),
    Other,
}

/// The receiving turn of a [`Consumer`], held: see [`Consumer::deliveries`].
pub struct Deliveries<'a> {
    consumer: &'a Consumer,
    state: futures::lock::MutexGuard<'a, RecvState>,
}

impl<'a> Deliveries<'a> {
    /// The next record, as [`Consumer::recv`] returns it.
    pub async fn next(&mut self) -> Result<Delivery, ConsumerError> {
        self.consumer.recv_with(&mut self.state).await
    }

    /// The records as a stream (it never ends; after a fatal error every item is
    /// [`ConsumerError::ShutDown`]).
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<Delivery, ConsumerError>> + Send + 'a {
        futures::stream::unfold(self, |mut d| async move {
            let item = d.next().await;
            Some((item, d))
        })
    }
}

impl std::fmt::Debug for Deliveries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries").finish_non_exhaustive()
    }
}

/// What [`Consumer::shutdown`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Records still in flight when the deadline passed (they will be processed again).
    pub abandoned_in_flight: u64,
    /// Whether the final commit succeeded.
    pub final_commit_ok: bool,
}

/// A Kafka consumer with out-of-order acknowledgement and safe commits.
///
/// Needs a multi-threaded tokio runtime: rebalance handling blocks the task that calls
/// [`recv`](Self::recv) while in-flight records drain, and acks arrive from other workers.
pub struct Consumer {
    shared: Arc<Shared>,
    recv: futures::lock::Mutex<RecvState>,
    kafka: Arc<Client>,
    committer: Mutex<Option<JoinHandle<()>>>,
    stop_committer: Arc<AtomicBool>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// Creates the consumer and subscribes (or assigns). Must be called inside a
    /// multi-threaded tokio runtime.
    pub fn new(config: ConsumerConfig) -> Result<Self, ConsumerError> {
        let handle = Handle::try_current().map_err(|_| ConsumerError::UnsupportedRuntime {
            reason: "Consumer::new was called outside a tokio runtime",
        })?;
        // Rebalances block the receiving task while records drain (`block_in_place`, which
        // a current-thread runtime cannot do) and store calls block on the runtime from a
        // helper thread: refuse now rather than hang at the first rebalance.
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(ConsumerError::UnsupportedRuntime {
                reason: "the runtime is not multi-threaded (use #[tokio::main] or \
                         #[tokio::test(flavor = \"multi_thread\")])",
            });
        }
        config.tracker.validate()?;
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.bootstrap_servers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Eager by default; `cooperative-sticky` (set by the application) revokes only
            // the partitions that move. Either way the revoke handler drains, commits, then
            // gives the partitions up.
            .set("partition.assignment.strategy", "roundrobin");
        for (k, v) in &config.properties {
            cc.set(k, v);
        }
        // Kafka-transactional mode: the producer exists (and has fenced any predecessor with
        // its transactional id, aborting that one's open transaction and pending offsets)
        // before the consumer reads committed offsets.
        let txn_producer = match &config.storage {
            OffsetStorage::KafkaTransactional(t) => {
                cc.set("isolation.level", "read_committed");
                let connection = config.connection_properties();
                let start = || {
                    TxnProducer::start(
                        &config.bootstrap_servers,
                        t,
                        &connection,
                        config.kafka_timeout,
                    )
                };
                // `init_transactions` blocks (up to the Kafka timeout).
                Some(tokio::task::block_in_place(start)?)
            }
            _ => None,
        };
        let dlq = match &config.failure.exhausted {
            Exhausted::DeadLetter(topic) => {
                let mut pc = ClientConfig::new();
                pc.set("bootstrap.servers", &config.bootstrap_servers)
                    .set("message.timeout.ms", "30000");
                for (k, v) in config.dead_letter_producer_properties() {
                    pc.set(k, v);
                }
                let producer: FutureProducer = pc.create()?;
                Some((producer, topic.clone()))
            }
            Exhausted::Hold => None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared::new(SharedParts {
            group: config.group_id.clone(),
            tracker_config: config.tracker,
            storage: config.storage.clone(),
            reset: config.reset.clone(),
            max_in_flight: config.max_in_flight_per_partition,
            drain_timeout: config.drain_timeout,
            kafka_timeout: config.kafka_timeout,
            failure: config.failure.clone(),
            listener: config.listener.clone(),
            ordering: config.ordering,
            max_concurrency: config.max_concurrency,
            brokers_down_timeout: config.brokers_down_timeout,
            final_commit: config.final_commit,
            policy: config.policy,
            redeliver: tx,
            handle,
            dlq,
            txn_producer,
        });
        let kafka: Client = cc.create_with_context(Ctx {
            shared: Arc::downgrade(&shared),
        })?;
        let kafka = Arc::new(kafka);
        let _ = shared.client.set(Arc::downgrade(&kafka));
        match &config.assignment {
            Some(tps) => {
                let mut tpl = TopicPartitionList::new();
                for tp in tps {
                    tpl.add_partition(&tp.topic, tp.partition);
                }
                shared.assign(kafka.as_ref(), &mut tpl);
                if let Some(e) = shared.fatal.lock().take() {
                    return Err(e);
                }
                kafka.assign(&tpl)?;
            }
            None => {
                let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
                kafka.subscribe(&topics)?;
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let committer = {
            let (shared, kafka, stop) =
                (Arc::clone(&shared), Arc::clone(&kafka), Arc::clone(&stop));
            let tick = config.commit_tick;
            std::thread::Builder::new()
                .name("waterline-commit".into())
                .spawn(move || commit_loop(&shared, &kafka, &stop, tick))
                .map_err(|e| ConsumerError::Config(format!("cannot start commit thread: {e}")))?
        };
        Ok(Self {
            shared,
            recv: futures::lock::Mutex::new(RecvState {
                stream: ClientStream::new(Arc::clone(&kafka)),
                rx,
                hot: HotParts {
                    epoch: u64::MAX,
                    entries: Vec::new(),
                },
            }),
            kafka,
            committer: Mutex::new(Some(committer)),
            stop_committer: stop,
        })
    }

    /// The next record to process. Records of one partition are handed out in offset order
    /// (redeliveries after a nack excepted); finish each with [`Delivery::ack`] or
    /// [`Delivery::nack`]. Transient client errors are logged and retried; errors returned are
    /// fatal (e.g. committed offsets could not be read), and after one every call fails with
    /// [`ConsumerError::ShutDown`].
    ///
    /// Several tasks may call it; they take turns. A single receiving loop can hold the turn
    /// with [`deliveries`](Self::deliveries) instead, which saves taking it per record.
    pub async fn recv(&self) -> Result<Delivery, ConsumerError> {
        let mut state = self.recv.lock().await;
        self.recv_with(&mut state).await
    }

    /// Takes the receiving turn for as long as the returned [`Deliveries`] lives (other
    /// [`recv`](Self::recv) calls wait meanwhile) and yields records as `recv` does, through
    /// [`Deliveries::next`] or as a [`Stream`](futures::Stream).
    pub async fn deliveries(&self) -> Deliveries<'_> {
        Deliveries {
            consumer: self,
            state: self.recv.lock().await,
        }
    }

    async fn recv_with(&self, state: &mut RecvState) -> Result<Delivery, ConsumerError> {
        let RecvState { stream, rx, hot } = state;
        loop {
            if self.shared.has_fatal.load(Ordering::Acquire)
                && let Some(e) = self.shared.fatal.lock().take()
            {
                self.shared.stopping.store(true, Ordering::Release);
                return Err(e);
            }
            if self.shared.stopping.load(Ordering::Acquire) {
                return Err(ConsumerError::ShutDown);
            }
            let brokers_down = self.shared.brokers_down_since.load(Ordering::Relaxed) != 0;
            if brokers_down {
                self.probe_brokers();
            }
            // At the concurrency limit nothing is handed out; fetched records are buffered
            // (the stream is still polled, so rebalances are served) until a delivery ends.
            let room = self.shared.has_room();
            // The flag is raised after each send, so clearing it before draining cannot lose
            // a redelivery: one sent after the drain raises it again.
            // A plain load first: the swap is a read-modify-write, wasted on the usual "no".
            if room
                && self.shared.redelivery_ready.load(Ordering::Acquire)
                && self.shared.redelivery_ready.swap(false, Ordering::AcqRel)
            {
                while let Ok(r) = rx.try_recv() {
                    if let Some(d) = self.redeliver(r) {
                        // More may wait behind this one: look again next time.
                        self.shared.redelivery_ready.store(true, Ordering::Release);
                        return Ok(d);
                    }
                }
            }
            // Records whose key's turn came are older than anything buffered: first.
            if room && let Some(d) = self.next_ready() {
                return Ok(d);
            }
            if room && let Some(d) = self.next_buffered() {
                return Ok(d);
            }
            // Fast path: a record is usually ready; skip setting up the wait below.
            if let Some(Ok(m)) = stream.next().now_or_never() {
                if let Some(d) = self.offer(hot, m) {
                    return Ok(d);
                }
                continue;
            }
            let woken = tokio::select! {
                biased;
                _ = self.shared.wake.notified() => Woken::Other,
                m = stream.next() => Woken::Message(m),
                // Buffered records wait for acks, which wake us through `wake`; re-check
                // regularly all the same. Only armed when something waits: registering a
                // timer from outside the runtime's workers costs a driver wake-up each time.
                _ = tokio::time::sleep(Duration::from_millis(25)),
                    if self.shared.maybe_waiting.load(Ordering::Acquire) => Woken::Other,
                // While the brokers are down: look at the clock of `brokers_down_timeout`.
                _ = tokio::time::sleep(Duration::from_millis(200)), if brokers_down => Woken::Other,
            };
            match woken {
                Woken::Message(Ok(m)) => {
                    if let Some(d) = self.offer(hot, m) {
                        return Ok(d);
                    }
                }
                Woken::Message(Err(e)) => match fatal_error(&e, "") {
                    // Reported by the next turn of the loop.
                    Some(fatal) => self.shared.fail(fatal),
                    None => {
                        tracing::warn!(error = %e, "Kafka client error; retrying");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Woken::Other => {}
            }
        }
    }

    /// Once every broker has been reported down for longer than `brokers_down_timeout`, asks
    /// the cluster for metadata (off the async workers, one probe at a time): an answer means
    /// they are back, no answer fails the consumer with [`ConsumerError::BrokersDown`].
    /// (librdkafka reports that all brokers went down, not that they came back; a received
    /// record or a successful commit also clears the clock.) Not on the commit thread: a
    /// commit blocks there while the brokers are down.
    fn probe_brokers(&self) {
        let Some(limit) = self.shared.brokers_down_timeout else {
            return;
        };
        let since = self.shared.brokers_down_since.load(Ordering::Acquire);
        let down_for = Duration::from_millis(u64::try_from(now_ms() - since).unwrap_or(0));
        if since == 0 || down_for < limit || self.shared.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (shared, kafka) = (Arc::clone(&self.shared), Arc::clone(&self.kafka));
        tokio::task::spawn_blocking(move || {
            match kafka.fetch_metadata(None, Duration::from_secs(1)) {
                Ok(_) => shared.brokers_down_since.store(0, Ordering::Release),
                Err(_) => shared.fail(ConsumerError::BrokersDown { down_for }),
            }
            shared.probing.store(false, Ordering::Release);
        });
    }

    fn redeliver(&self, r: Redelivery) -> Option<Delivery> {
        if !r.record.part()?.is_current() {
            return None;
        }
        self.shared.counters.bump(
            &self.shared.counters.retries,
            "waterline_consumer_retries_total",
        );
        Some(Delivery::new(r.record, r.attempt, r.slot))
    }

    /// A record whose key's turn came (ordered modes), if any.
    fn next_ready(&self) -> Option<Delivery> {
        if !self.shared.gate_ready.load(Ordering::Acquire)
            || !self.shared.gate_ready.swap(false, Ordering::AcqRel)
        {
            return None;
        }
        let parts: Vec<Arc<PartState>> = self.shared.parts.read().values().cloned().collect();
        for p in parts {
            if !p.is_current() {
                continue;
            }
            if p.user_paused.load(Ordering::Acquire) {
                // `resume` raises the flag again.
                continue;
            }
            let next = p.gate.lock().take_ready();
            if let Some((slot, record)) = next {
                // More may be ready: look again next time.
                self.shared.gate_ready.store(true, Ordering::Release);
                return Some(self.delivery(record, Some(slot)));
            }
        }
        None
    }

    /// A record the tracker handed out: to the application now, or into its partition's gate
    /// when its key is busy (ordered modes).
    fn admit(&self, p: &PartState, record: Record) -> Option<Delivery> {
        match p.slot_of(&record) {
            None => Some(self.delivery(record, None)),
            Some(slot) => p
                .enter_gate(slot, record)
                .map(|r| self.delivery(r, Some(slot))),
        }
    }

    /// Up to `n` records waiting behind `d`'s key slot, handed out with it as one batch (each
    /// holds the slot until it is finished). Call only within the receiving turn.
    pub(crate) fn followers(&self, d: &Delivery, n: usize) -> Vec<Delivery> {
        let (Some(slot), Some(p)) = (d.slot(), d.record().part()) else {
            return Vec::new();
        };
        if n == 0 || !p.is_current() {
            return Vec::new();
        }
        let records = p.gate.lock().take_followers(slot, n);
        records
            .into_iter()
            .map(|r| self.delivery(r, Some(slot)))
            .collect()
    }

    /// Admission and hand-out. Continuing a run below its end needs no lock (two loads and a
    /// store; the tracker records the run when next locked); anything else asks the tracker.
    fn try_hand_out(&self, p: &PartState, offset: i64) -> Step {
        if p.held.load(Ordering::Acquire)
            || p.user_paused.load(Ordering::Acquire)
            || !self.shared.has_room()
        {
            return Step::Wait;
        }
        // Only this turn writes `handed_to`.
        let to = p.handed_to.load(Ordering::Relaxed);
        if offset == to && offset < p.run_end.load(Ordering::Acquire) {
            if p.recorded_to.load(Ordering::Acquire) == to {
                // A new run: its start time, published with the run below.
                p.handed_since
                    .store(self.shared.coarse_now(), Ordering::Relaxed);
            }
            p.handed_to.store(offset + 1, Ordering::Release);
            return Step::Go;
        }
        let now = self.shared.coarse_now();
        let max = self.shared.max_in_flight;
        let mut t = p.lock();
        if p.released.load(Ordering::Acquire) || !t.should_process(offset) {
            Step::Skip
        } else if t.in_flight() >= max || !t.admit(offset) {
            Step::Wait
        } else {
            match t.hand_out(offset, now) {
                Ok(()) => {
                    let room = i64::try_from(max - t.in_flight()).unwrap_or(i64::MAX);
                    let end = t
                        .admit_run_end()
                        .min(t.next_hand_out().saturating_add(room));
                    p.run_end.store(end, Ordering::Release);
                    p.handed_to.store(offset + 1, Ordering::Release);
                    p.recorded_to.store(offset + 1, Ordering::Release);
                    Step::Go
                }
                Err(e) => {
                    // Only an offset at or below an earlier hand-out: a duplicate.
                    tracing::warn!(tp = %p.tp, offset, error = %e, "hand-out refused");
                    Step::Skip
                }
            }
        }
    }

    fn delivery(&self, record: Record, slot: Option<Slot>) -> Delivery {
        // Only `recv` hands out first deliveries, one call at a time (see `RecvState`).
        self.shared.counters.consumed_single_writer(record.size());
        Delivery::new(record, 1, slot)
    }

    fn skipped(&self) {
        self.shared.counters.bump(
            &self.shared.counters.skipped_done,
            "waterline_consumer_skipped_done_total",
        );
    }

    /// A fetched record: hand it out, or buffer it (pausing the partition when the buffer is
    /// large or the partition is held).
    fn offer(&self, hot: &mut HotParts, m: Fetched) -> Option<Delivery> {
        let p = hot.get(&self.shared, &m)?;
        let offset = m.offset();
        if p.revoking.load(Ordering::Acquire) || offset < p.next_fetch.load(Ordering::Relaxed) {
            return None;
        }
        p.next_fetch.store(offset + 1, Ordering::Relaxed);
        // A record arrived: the brokers are reachable.
        if self.shared.brokers_down_since.load(Ordering::Relaxed) != 0 {
            self.shared.brokers_down_since.store(0, Ordering::Relaxed);
        }
        // Buffer manipulation happens only inside `recv` (the rebalance callback included),
        // which one task runs at a time: `waiting` cannot change under us here.
        if p.waiting.load(Ordering::Acquire) == 0 {
            match self.try_hand_out(p, offset) {
                Step::Go => return self.admit(p, Record::fetched(m, Arc::clone(p))),
                Step::Skip => {
                    self.skipped();
                    return None;
                }
                Step::Wait => {}
            }
        }
        self.shared.maybe_waiting.store(true, Ordering::Release);
        let mut buf = p.buffer.lock();
        buf.push_back(Record::fetched(m, Arc::clone(p)));
        let len = buf.len();
        p.waiting.store(len, Ordering::Release);
        drop(buf);
        // Pausing makes the client drop and later refetch its prefetched records, so only
        // pause once the local buffer is large (or the partition is held).
        if len >= PAUSE_AT
            || p.held.load(Ordering::Acquire)
            || p.user_paused.load(Ordering::Acquire)
        {
            self.pause_client(p);
        }
        None
    }

    fn next_buffered(&self) -> Option<Delivery> {
        if !self.shared.maybe_waiting.load(Ordering::Acquire) {
            return None;
        }
        let waiting: Vec<Arc<PartState>> = self
            .shared
            .parts
            .read()
            .values()
            .filter(|p| p.waiting.load(Ordering::Acquire) > 0 || p.paused.load(Ordering::Acquire))
            .cloned()
            .collect();
        if waiting.is_empty() {
            // Set again (inside `recv` too) whenever a record is buffered or a partition paused.
            self.shared.maybe_waiting.store(false, Ordering::Release);
        }
        for p in waiting {
            if p.revoking.load(Ordering::Acquire) {
                continue;
            }
            let mut buf = p.buffer.lock();
            while let Some(front) = buf.front() {
                match self.try_hand_out(&p, front.offset()) {
                    Step::Wait => break,
                    Step::Skip => {
                        buf.pop_front();
                        self.skipped();
                    }
                    Step::Go => {
                        let record = buf.pop_front()?;
                        let len = buf.len();
                        p.waiting.store(len, Ordering::Release);
                        // Parked behind its key: keep going down the buffer.
                        let Some(d) = self.admit(&p, record) else {
                            continue;
                        };
                        drop(buf);
                        if len <= PAUSE_AT / 2 {
                            self.resume_client(&p);
                        }
                        return Some(d);
                    }
                }
            }
            let len = buf.len();
            p.waiting.store(len, Ordering::Release);
            drop(buf);
            if len <= PAUSE_AT / 2
                && !p.held.load(Ordering::Acquire)
                && !p.user_paused.load(Ordering::Acquire)
            {
                self.resume_client(&p);
            }
        }
        None
    }

    fn tpl(tp: &TopicPartition) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.topic, tp.partition);
        tpl
    }

    fn pause_client(&self, p: &PartState) {
        let tp = &p.tp;
        if !p.paused.swap(true, Ordering::AcqRel) {
            self.shared.counters.bump(
                &self.shared.counters.pauses,
                "waterline_consumer_pauses_total",
            );
            if let Err(e) = self.kafka.pause(&Self::tpl(tp)) {
                tracing::warn!(%tp, error = %e, "pause failed");
            }
        }
    }

    fn resume_client(&self, p: &PartState) {
        let tp = &p.tp;
        if p.user_paused.load(Ordering::Acquire) {
            return;
        }
        if p.paused.swap(false, Ordering::AcqRel)
            && let Err(e) = self.kafka.resume(&Self::tpl(tp))
        {
            tracing::warn!(%tp, error = %e, "resume failed");
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Stops handing out records of `partitions` (assigned ones; others are ignored) until
    /// [`resume`](Self::resume). Records already handed out, retrying or waiting for their
    /// key's turn are unaffected, and the client stops fetching them. A partition assigned
    /// anew (after a rebalance) starts unpaused, as in rdkafka.
    pub fn pause(&self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(p) = self.shared.part(tp) {
                p.user_paused.store(true, Ordering::Release);
                self.pause_client(&p);
            }
        }
    }

    /// Hands out records of `partitions` again after [`pause`](Self::pause).
    pub fn resume(&self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(p) = self.shared.part(tp)
                && p.user_paused.swap(false, Ordering::AcqRel)
            {
                if p.waiting.load(Ordering::Acquire) <= PAUSE_AT / 2
                    && !p.held.load(Ordering::Acquire)
                {
                    self.resume_client(&p);
                }
                // Records may wait in the buffer or the gate.
                self.shared.maybe_waiting.store(true, Ordering::Release);
                self.shared.gate_ready.store(true, Ordering::Release);
                self.shared.wake.notify_one();
            }
        }
    }

    /// The offset of the next record of `tp` that [`recv`](Self::recv) will take from the
    /// partition for the first time (records handed out before, retrying or waiting for their
    /// key's turn are behind it); `None` if `tp` is not assigned.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        let p = self.shared.part(tp)?;
        if let Some(front) = p.buffer.lock().front() {
            return Some(front.offset());
        }
        let fetched = p.next_fetch.load(Ordering::Relaxed);
        let handed = p.lock().next_hand_out();
        Some(fetched.max(handed))
    }

    /// The commit point of `tp`: the lowest offset not yet finished (what a commit now would
    /// record); `None` if `tp` is not assigned.
    pub fn committable(&self, tp: &TopicPartition) -> Option<i64> {
        Some(self.shared.part(tp)?.lock().commit_point())
    }

    /// Moves consumption of the assigned partition `tp` to `offset`. Records of `tp` handed
    /// out before are abandoned (their acks are ignored, as after a revocation, and Kafka
    /// transactional outputs of records acked but not committed are dropped); the next
    /// commit records `offset`. Waits for the receiving turn (not while holding
    /// [`deliveries`](Self::deliveries)).
    pub async fn seek(&self, tp: &TopicPartition, offset: i64) -> Result<(), ConsumerError> {
        // The turn: no fetched record of `tp` is between the client and its partition state.
        let _turn = self.recv.lock().await;
        let was_paused = self
            .shared
            .part(tp)
            .is_some_and(|p| p.paused.load(Ordering::Acquire));
        self.shared.restart_at(tp, offset)?;
        let kafka = Arc::clone(&self.kafka);
        let timeout = self.shared.kafka_timeout;
        let tpc = tp.clone();
        tokio::task::spawn_blocking(move || {
            // librdkafka discards what it fetched from the old position.
            kafka.seek(
                &tpc.topic,
                tpc.partition,
                rdkafka::Offset::Offset(offset),
                timeout,
            )?;
            if was_paused {
                // The new partition state starts unpaused.
                kafka.resume(&Self::tpl(&tpc))?;
            }
            Ok::<_, rdkafka::error::KafkaError>(())
        })
        .await
        .map_err(|_| ConsumerError::ShutDown)??;
        Ok(())
    }

    /// Partitions currently assigned, sorted.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.assigned()
    }

    /// Commit statistics from the tracker (attempts, successes, offsets committed).
    pub fn commit_stats(&self) -> CommitStats {
        self.shared.commit_stats()
    }

    /// Commits every assigned partition's current position now (not in
    /// [`OffsetStorage::Transactional`](crate::OffsetStorage::Transactional) mode, where it
    /// returns `false`). With
    /// [`OffsetStorage::KafkaTransactional`](crate::OffsetStorage::KafkaTransactional): one
    /// transaction with the outputs of everything acked.
    pub async fn commit_now(&self) -> bool {
        if self.shared.is_transactional() {
            return false;
        }
        let (shared, kafka) = (Arc::clone(&self.shared), Arc::clone(&self.kafka));
        tokio::task::spawn_blocking(move || shared.commit_all(kafka.as_ref()))
            .await
            .unwrap_or(false)
    }

    /// Asks the commit policy for a commit (honoured by [`waterline_core::Manual`] and policies
    /// built on it).
    pub fn request_commit(&self) {
        self.shared
            .policy
            .lock()
            .observe(&PolicyEvent::ManualRequest { now_ms: now_ms() });
    }

    /// Declares checkpoint barrier `id`: snapshots what is acknowledged now. With the
    /// [`waterline_core::Checkpoint`] policy, that snapshot is committed once the barrier
    /// completes, whatever was acknowledged after it.
    pub fn declare_barrier(&self, id: BarrierId) {
        let now = now_ms();
        let snapshot = self.shared.snapshot(now);
        self.shared
            .policy
            .lock()
            .observe(&PolicyEvent::BarrierDeclared {
                id,
                snapshot,
                now_ms: now,
            });
    }

    /// Completes barrier `id`: its snapshot may be committed.
    pub fn complete_barrier(&self, id: BarrierId) {
        self.shared
            .policy
            .lock()
            .observe(&PolicyEvent::BarrierCompleted {
                id,
                now_ms: now_ms(),
            });
    }

    /// Fetches every assigned partition's high watermark from the brokers and reports lag
    /// (commit point to log end), in-flight counts and oldest in-flight ages. Also updates the
    /// `waterline_consumer_lag` gauges and the snapshot's lag.
    pub async fn lag(&self) -> Result<LagReport, ConsumerError> {
        let tps = self.shared.assigned();
        let kafka = Arc::clone(&self.kafka);
        let timeout = self.shared.kafka_timeout;
        let hws = tokio::task::spawn_blocking(move || {
            let mut out = HashMap::new();
            for tp in tps {
                let (_, hi) = kafka.fetch_watermarks(&tp.topic, tp.partition, timeout)?;
                out.insert(tp, hi);
            }
            Ok::<_, rdkafka::error::KafkaError>(out)
        })
        .await
        .map_err(|_| ConsumerError::ShutDown)??;
        let report = self.shared.lag(|tp| hws.get(tp).copied(), now_ms());
        for p in &report.partitions {
            metrics::gauge!(
                "waterline_consumer_lag",
                "topic" => p.tp.topic.clone(),
                "partition" => p.tp.partition.to_string()
            )
            .set(p.lag as f64);
        }
        *self.shared.high_watermarks.lock() = hws;
        Ok(report)
    }

    /// A snapshot of the metrics (lag from the last [`lag`](Self::lag) call).
    pub fn metrics(&self) -> MetricsSnapshot {
        let hws = self.shared.high_watermarks.lock().clone();
        let now = now_ms();
        // In-flight figures for every partition, lag only where a watermark is known.
        let all = self
            .shared
            .lag(|tp| Some(hws.get(tp).copied().unwrap_or(0)), now);
        let lag = LagReport::from_partitions(
            all.partitions
                .iter()
                .filter(|p| hws.contains_key(&p.tp))
                .cloned()
                .collect(),
        );
        self.shared.counters.snapshot(
            self.shared.assigned().len(),
            all.total_in_flight,
            all.oldest_unacked_age_ms,
            lag,
        )
    }

    /// Graceful shutdown: stops handing out records, waits up to `deadline` for in-flight ones,
    /// commits final positions, and leaves the group. Later [`recv`](Self::recv) calls fail with
    /// [`ConsumerError::ShutDown`].
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.wake.notify_waiters();
        let until = Instant::now() + deadline;
        // Records waiting for their key's turn are never handed out now: wait for the others.
        let in_flight = || self.shared.in_hand();
        while in_flight() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let abandoned = in_flight();
        self.stop_commit_thread();
        let (shared, kafka) = (Arc::clone(&self.shared), Arc::clone(&self.kafka));
        let final_commit_ok = tokio::task::spawn_blocking(move || {
            let ok = if !shared.final_commit {
                true
            } else if shared.is_kafka_txn() {
                shared.commit_all(kafka.as_ref())
            } else if shared.is_transactional() {
                final_transactional_commit(&shared, kafka.as_ref())
            } else {
                shared.commit_all(kafka.as_ref())
            };
            // Leaving now runs the revoke handler here, off the async workers.
            kafka.unsubscribe();
            ok
        })
        .await
        .unwrap_or(false);
        ShutdownReport {
            abandoned_in_flight: abandoned,
            final_commit_ok,
        }
    }

    fn stop_commit_thread(&self) {
        self.stop_committer.store(true, Ordering::Release);
        if let Some(h) = self.committer.lock().take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.stop_commit_thread();
        // Breaks the reference cycles through the partition states (see `PartState`).
        self.shared.release_all();
    }
}

/// Final commit in transactional mode: only partitions whose transaction lock is free (no
/// step in progress), so the write cannot race an application transaction.
fn final_transactional_commit(shared: &Shared, kafka: &Client) -> bool {
    let parts: Vec<(TopicPartition, Arc<PartState>)> = shared
        .parts
        .read()
        .iter()
        .map(|(tp, p)| (tp.clone(), Arc::clone(p)))
        .collect();
    let mut guards = Vec::new();
    let mut locked = Vec::new();
    for (tp, p) in parts {
        if let Ok(g) = Arc::clone(&p.txn).try_lock_owned() {
            guards.push(g);
            locked.push(tp);
        }
    }
    let _g = shared.commit_lock.lock();
    let mut plan = shared.current_only(shared.snapshot(now_ms()));
    plan.entries.retain(|e| locked.contains(&e.tp));
    shared.commit_started(&plan);
    shared.commit_plan(kafka, &plan)
}

/// Evaluates the commit policy every `tick`; once `stop` is set, evaluates it one last time (so
/// a barrier completed just before shutdown is still committed) and returns.
fn commit_loop(shared: &Shared, kafka: &Client, stop: &AtomicBool, tick: Duration) {
    loop {
        std::thread::park_timeout(tick);
        shared.tick_clock();
        shared.counters.publish();
        let last = stop.load(Ordering::Acquire);
        if !shared.is_transactional() {
            commit_tick(shared, kafka);
        }
        if last {
            return;
        }
    }
}

fn commit_tick(shared: &Shared, kafka: &Client) {
    let now = now_ms();
    if shared.is_kafka_txn() {
        return txn_commit_tick(shared, kafka, now);
    }
    let acks = shared.take_acks();
    let decision = {
        let mut p = shared.policy.lock();
        if acks > 0 {
            p.observe(&PolicyEvent::Acked {
                count: acks,
                now_ms: now,
            });
        }
        p.on_event(&PolicyEvent::Tick { now_ms: now })
    };
    match decision {
        CommitDecision::CommitSnapshot { plan, .. } => commit_snapshot(shared, kafka, plan),
        CommitDecision::CommitCurrent => commit_current(shared, kafka, now),
        CommitDecision::Nothing => {
            // A failed commit is retried: with the current positions when acks mean done,
            // else with the very plan that failed (e.g. a checkpoint snapshot). Taken in its
            // own statement: the lock must be released before committing, which locks it.
            let failed = shared.failed_plan.lock().take();
            if let Some(failed) = failed {
                if shared.final_commit {
                    commit_current(shared, kafka, now);
                } else {
                    commit_snapshot(shared, kafka, failed);
                }
            }
        }
    }
}

/// Kafka-transactional mode: any commit decision (a snapshot one included: outputs go only
/// with their own offsets) commits everything acked, in one transaction; a failed one is
/// retried after a pause that grows with the aborts in a row.
fn txn_commit_tick(shared: &Shared, kafka: &Client, now: i64) {
    let acks = shared.take_acks();
    let decision = {
        let mut p = shared.policy.lock();
        if acks > 0 {
            p.observe(&PolicyEvent::Acked {
                count: acks,
                now_ms: now,
            });
        }
        p.on_event(&PolicyEvent::Tick { now_ms: now })
    };
    let retry = shared.failed_plan.lock().is_some();
    if matches!(decision, CommitDecision::Nothing) && !retry {
        return;
    }
    if retry {
        let aborts = shared
            .txn_producer
            .as_ref()
            .map_or(0, |p| p.aborts.load(Ordering::Acquire));
        std::thread::sleep(Duration::from_millis(50 * u64::from(aborts.min(20))));
    }
    shared.commit_all(kafka);
}

fn commit_snapshot(shared: &Shared, kafka: &Client, plan: CommitPlan) {
    let _g = shared.commit_lock.lock();
    let plan = shared.current_only(plan);
    shared.commit_started(&plan);
    shared.commit_plan(kafka, &plan);
}

fn commit_current(shared: &Shared, kafka: &Client, now: i64) {
    let _g = shared.commit_lock.lock();
    let plan = shared.current_only(shared.prepare_commit(now));
    shared.commit_plan(kafka, &plan);
}
