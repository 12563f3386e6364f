//! The TCP server: listener, per-connection reader/writer, ordered responses, shutdown.
//!
//! Per connection, a reader task reads length-prefixed frames (refusing lengths <= 0, shorter
//! than a request header, or above `max_frame_bytes` before allocating), decodes each and
//! applies it with [`handlers::apply`] before reading the next, so a connection's requests take
//! effect in the order they were sent; only the waits `apply` hands back (an fsync, a long-poll
//! Fetch, a rebalance round) run concurrently, so they do not hold up later requests. A writer
//! task sends the responses strictly in arrival order: the reader queues one oneshot receiver
//! per request and the writer awaits them in turn. A protocol error closes the connection after the responses
//! already queued have been written.

use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::{BudgetPermit, RequestBudget};
use crate::codec::{self, MIN_HEADER_BYTES};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, ProtocolError};
use crate::handlers::{self, Applied, Connection, api_versions, produce};
use crate::producer_ids::ProducerIds;
use crate::state::{BrokerState, SharedState};
use crate::sync::SyncManager;
use crate::topics::{TopicDefaults, Topics};

/// Requests one connection may have in flight before the reader stops reading.
const MAX_IN_FLIGHT: usize = 64;

/// Builds the shared state: loads topics (recovering logs as needed), producer ids, and starts
/// the sync thread. Blocking. Does not take the data-dir lock.
pub fn build_state(
    config: BrokerConfig,
    advertised_host: String,
    advertised_port: i32,
) -> Result<BrokerState, BrokerError> {
    let storage: Arc<dyn waterline_log::Storage> = Arc::new(
        waterline_log::FsStorage::with_max_open_files(config.effective_max_open_files()),
    );
    build_state_with_storage(config, storage, advertised_host, advertised_port)
}

/// Like [`build_state`], with partition logs on the given storage (tests use
/// `waterline_log::MemStorage` to inject fsync failures). Topic metadata and producer ids stay
/// on the real file system under `config.data_dir`.
pub fn build_state_with_storage(
    config: BrokerConfig,
    storage: Arc<dyn waterline_log::Storage>,
    advertised_host: String,
    advertised_port: i32,
) -> Result<BrokerState, BrokerError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| BrokerError::io("creating", &config.data_dir, e))?;
    let topics = Topics::load(
        storage,
        &config.data_dir,
        TopicDefaults::from_config(&config),
        BrokerState::now_ms(),
    )?;
    let producer_ids = ProducerIds::open(&config.data_dir)?;
    let sync = SyncManager::start(config.fsync)
        .map_err(|e| BrokerError::io("starting sync thread for", &config.data_dir, e))?;
    let shutdown = CancellationToken::new();
    let groups = crate::groups::Groups::open_with_topics(&config, shutdown.clone(), &|t| {
        topics.get(t).is_some()
    })?;
    let transactions =
        crate::transactions::Transactions::open(&config.data_dir, config.txn_config())?;
    Ok(BrokerState {
        config,
        advertised_host,
        advertised_port,
        topics,
        producer_ids,
        sync,
        groups,
        transactions,
        shutdown,
    })
}

/// Entry point of the broker.
pub struct Broker;

impl Broker {
    /// Locks the data dir, loads topics, binds the listener and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<RunningBroker, BrokerError> {
        config.validate()?;
        let lock = lock_data_dir(&config.data_dir)?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|e| BrokerError::io("binding", &config.listen, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| BrokerError::io("binding", &config.listen, e))?;
        let (host, port) = advertised(&config, local_addr)?;
        let state = tokio::task::spawn_blocking(move || build_state(config, host, port))
            .await
            .map_err(|e| BrokerError::Task(e.to_string()))??;
        let state = Arc::new(state);
        crate::transactions::Transactions::start(&state)?;
        let tracker = TaskTracker::new();
        let accept = tokio::spawn(accept_loop(state.clone(), listener, tracker.clone()));
        let retention = tokio::spawn(retention_loop(state.clone()));
        let cleaner = tokio::spawn(crate::cleaner::cleaner_loop(state.clone()));
        tracing::info!(%local_addr, advertised = %format!("{}:{}", state.advertised_host, state.advertised_port), "broker listening");
        Ok(RunningBroker {
            state,
            local_addr,
            accept,
            retention,
            cleaner,
            tracker,
            _lock: lock,
        })
    }
}

/// A started broker; stop it with [`RunningBroker::shutdown`].
pub struct RunningBroker {
    state: SharedState,
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
    retention: JoinHandle<()>,
    /// Waits for cleaning passes in flight when it ends.
    cleaner: JoinHandle<()>,
    tracker: TaskTracker,
    /// Holds the data-dir lock until the broker is dropped.
    _lock: File,
}

impl RunningBroker {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish (long polls return early), then syncs and
    /// closes every partition log cleanly.
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        self.state.shutdown.cancel();
        let _ = self.accept.await;
        self.tracker.close();
        self.tracker.wait().await;
        self.state.groups.close().await;
        let _ = self.retention.await;
        let _ = self.cleaner.await;
        let state = self.state.clone();
        let failed = tokio::task::spawn_blocking(move || {
            state.sync.stop();
            state.topics.close_all()
        })
        .await
        .map_err(|e| BrokerError::Task(e.to_string()))?;
        if failed > 0 {
            return Err(BrokerError::Task(format!(
                "{failed} partition logs did not close cleanly"
            )));
        }
        tracing::info!("broker stopped; all partition logs closed");
        Ok(())
    }
}

fn lock_data_dir(dir: &std::path::Path) -> Result<File, BrokerError> {
    std::fs::create_dir_all(dir).map_err(|e| BrokerError::io("creating", dir, e))?;
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| BrokerError::io("opening", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(BrokerError::DataDirLocked(dir.to_path_buf()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(BrokerError::io("locking", &path, e)),
    }
}

/// The host and port to advertise: the configured one, else the bound address (with a wildcard
/// IP replaced by 127.0.0.1, which clients can reach; IPv4 because librdkafka may resolve
/// `localhost` to ::1).
fn advertised(config: &BrokerConfig, bound: SocketAddr) -> Result<(String, i32), BrokerError> {
    if let Some(a) = &config.advertised {
        let (host, port) = a
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                crate::error::ConfigError::Invalid(format!("advertised: `{a}` is not host:port"))
            })?;
        return Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)));
    }
    let ip = if bound.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bound.ip().to_string()
    };
    Ok((ip, i32::from(bound.port())))
}

/// Counts open connections, in all and per IP, against `max_connections` and
/// `max_connections_per_ip`.
#[derive(Debug, Default)]
struct ConnectionCounts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One counted connection; uncounted on drop.
struct ConnectionSlot {
    counts: Arc<parking_lot::Mutex<ConnectionCounts>>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Counts a new connection from `ip`, or says which limit it is over.
fn admit(
    counts: &Arc<parking_lot::Mutex<ConnectionCounts>>,
    config: &BrokerConfig,
    ip: IpAddr,
) -> Result<ConnectionSlot, &'static str> {
    let mut c = counts.lock();
    if config.max_connections.is_some_and(|max| c.total >= max) {
        return Err("max_connections");
    }
    let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    if config
        .max_connections_per_ip
        .is_some_and(|max| from_ip >= max)
    {
        return Err("max_connections_per_ip");
    }
    c.total += 1;
    *c.per_ip.entry(ip).or_default() += 1;
    Ok(ConnectionSlot {
        counts: Arc::clone(counts),
        ip,
    })
}

/// Says something at most once per interval (for conditions that repeat per connection).
struct Throttled {
    last: Option<std::time::Instant>,
    skipped: u64,
}

impl Throttled {
    const INTERVAL: Duration = Duration::from_secs(10);

    /// `Some(times it was skipped since last said)` when it is time to say it again.
    fn due(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::INTERVAL)
        {
            self.skipped += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.skipped))
    }
}

/// A spare file handle, given up to accept (and at once close) a connection when the process
/// is out of file handles: otherwise the connection would wait in the listen backlog, its
/// client hanging, instead of being refused.
fn spare_handle() -> Option<File> {
    File::open("/dev/null").ok()
}

async fn accept_loop(state: SharedState, listener: TcpListener, tracker: TaskTracker) {
    let limits = FrameLimits {
        max_frame: state.config.max_frame_bytes,
        idle: Duration::from_millis(state.config.connections_max_idle_ms),
        read_timeout: Duration::from_millis(state.config.request_read_timeout_ms),
        budget: RequestBudget::new(state.config.max_queued_request_bytes),
    };
    let counts = Arc::new(parking_lot::Mutex::new(ConnectionCounts::default()));
    let mut spare = spare_handle();
    let mut refused_log = Throttled {
        last: None,
        skipped: 0,
    };
    let mut exhausted_log = Throttled {
        last: None,
        skipped: 0,
    };
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = state.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => match admit(&counts, &state.config, peer.ip()) {
                Ok(slot) => {
                    tracker.spawn(serve_connection(
                        state.clone(),
                        stream,
                        peer,
                        limits.clone(),
                        slot,
                    ));
                }
                Err(limit) => {
                    drop(stream);
                    if let Some(skipped) = refused_log.due() {
                        tracing::warn!(%peer, limit, skipped, "connection refused: over {limit}");
                    }
                }
            },
            Err(e) if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) => {
                // Out of file handles: refuse the waiting connection rather than leave it
                // hanging, using the spare handle to accept it.
                drop(spare.take());
                if let Ok((stream, _)) = listener.accept().await {
                    drop(stream);
                }
                spare = spare_handle();
                if let Some(skipped) = exhausted_log.due() {
                    tracing::error!(error = %e, skipped, "out of file handles: refusing connections");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// errno values for "too many open files" (process / system); Linux and the BSDs agree.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

async fn retention_loop(state: SharedState) {
    let mut tick = tokio::time::interval(Duration::from_millis(state.config.retention_check_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.shutdown.cancelled() => return,
        }
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now = BrokerState::now_ms();
            for p in s.topics.all_partitions() {
                match p.with_log(|log| log.enforce_retention(now)) {
                    Some(Ok(n)) if n > 0 => {
                        tracing::info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments");
                    }
                    Some(Err(e)) => {
                        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
                    }
                    _ => {}
                }
            }
        })
        .await;
    }
}

/// Why a connection is being closed.
type CloseReason = String;

/// Limits on reading one frame.
#[derive(Clone)]
struct FrameLimits {
    max_frame: usize,
    idle: Duration,
    read_timeout: Duration,
    budget: Arc<RequestBudget>,
}

/// Largest read of a frame body at once: buffers grow with the bytes that arrive, never by a
/// claimed length alone.
const READ_CHUNK: usize = 64 * 1024;

/// Reads one frame; `Ok(None)` on a clean EOF between frames. Waits at most `idle` for a frame
/// to start; once it has, it must arrive whole within `read_timeout` (waiting for budget room
/// aside). Room for the whole frame is taken from the budget before its body is read and is
/// held by the returned permit.
async fn read_frame(
    rd: &mut (impl AsyncReadExt + Unpin),
    limits: &FrameLimits,
) -> Result<Option<(Bytes, BudgetPermit)>, CloseReason> {
    let mut len = [0u8; 4];
    match tokio::time::timeout(limits.idle, rd.read(&mut len[..1])).await {
        Err(_) => {
            return Err(format!(
                "idle for {} ms (connections_max_idle_ms)",
                limits.idle.as_millis()
            ));
        }
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("read error: {e}")),
    }
    let timed_out = |what: &str| {
        format!(
            "{what} did not arrive within {} ms (request_read_timeout_ms)",
            limits.read_timeout.as_millis()
        )
    };
    match tokio::time::timeout(limits.read_timeout, rd.read_exact(&mut len[1..])).await {
        Err(_) => return Err(timed_out("a frame length")),
        Ok(Err(e)) => return Err(format!("read error in a frame length: {e}")),
        Ok(Ok(_)) => {}
    }
    let len = i32::from_be_bytes(len);
    if len <= 0 {
        return Err(format!("invalid frame length {len}"));
    }
    let len = len as usize;
    if len < MIN_HEADER_BYTES {
        return Err(format!(
            "frame of {len} bytes is shorter than a request header"
        ));
    }
    if len > limits.max_frame {
        return Err(format!(
            "frame of {len} bytes exceeds max_frame_bytes {}",
            limits.max_frame
        ));
    }
    let permit = limits.budget.acquire(len).await;
    let mut buf = Vec::with_capacity(len.min(READ_CHUNK));
    let body = async {
        while buf.len() < len {
            let want = (len - buf.len()).min(READ_CHUNK);
            buf.reserve(want);
            let n = (&mut *rd).take(want as u64).read_buf(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(limits.read_timeout, body).await {
        Err(_) => Err(timed_out(&format!("a {len}-byte frame"))),
        Ok(Err(e)) => Err(format!("read error in a {len}-byte frame: {e}")),
        Ok(Ok(())) => Ok(Some((Bytes::from(buf), permit))),
    }
}

async fn serve_connection(
    state: SharedState,
    stream: TcpStream,
    peer: SocketAddr,
    limits: FrameLimits,
    _slot: ConnectionSlot,
) {
    let _ = stream.set_nodelay(true);
    tracing::debug!(%peer, "connection opened");
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<oneshot::Receiver<Option<Bytes>>>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            match pending.await {
                Ok(Some(frame)) => {
                    if let Err(e) = wr.write_all(&frame).await {
                        tracing::debug!(%peer, error = %e, "write failed");
                        break;
                    }
                }
                Ok(None) => {}
                // The request asked for the connection to be closed.
                Err(_) => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut conn = Connection::new(peer);
    let mut unsupported = Unsupported::default();
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd, &limits) => f,
            _ = state.shutdown.cancelled() => break,
        };
        // The permit holds the frame's budget room until its request is answered.
        let (frame, permit) = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(reason) => {
                tracing::warn!(%peer, %reason, "closing connection");
                break;
            }
        };
        let (otx, orx) = oneshot::channel();
        if tx.send(orx).await.is_err() {
            break;
        }
        match prepare(&state, frame, peer, &mut unsupported) {
            Prepared::Respond(bytes) => {
                let _ = otx.send(bytes);
            }
            Prepared::Close => {
                // Dropping otx makes the writer close after earlier responses.
                drop(otx);
                break;
            }
            Prepared::Dispatch(header, request, key) => {
                let id = (key, header.request_api_version, header.correlation_id);
                // Applied here, in arrival order, before the next frame is read; only the
                // waits `apply` hands back overlap later requests.
                let work = match handlers::apply(&state, &mut conn, *header, *request).await {
                    Applied::Ready(resp) => {
                        respond(otx, peer, id, resp);
                        continue;
                    }
                    Applied::Waiting(work) => work,
                };
                tokio::spawn(async move {
                    let resp = work.await;
                    drop(permit);
                    respond(otx, peer, id, resp)
                });
            }
        }
    }
    drop(tx);
    let _ = writer.await;
    tracing::debug!(%peer, "connection closed");
}

/// Encodes a response and hands it to the writer; `None` sends nothing (acks=0). An encoding
/// failure is logged and closes the connection after the earlier responses (dropping `otx`),
/// since skipping one answer would desynchronise the client.
fn respond(
    otx: oneshot::Sender<Option<Bytes>>,
    peer: SocketAddr,
    (key, version, corr): (ApiKey, i16, i32),
    resp: Option<ResponseKind>,
) {
    let Some(resp) = resp else {
        let _ = otx.send(None);
        return;
    };
    match codec::encode_response(key, version, corr, &resp) {
        Ok(bytes) => {
            let _ = otx.send(Some(bytes));
        }
        Err(e) => {
            tracing::error!(%peer, error = %e, "closing connection: response encoding failed");
        }
    }
}

enum Prepared {
    /// Answer at once with these bytes (or nothing).
    Respond(Option<Bytes>),
    /// Close the connection after earlier responses.
    Close,
    /// Run the handler.
    Dispatch(
        Box<kafka_protocol::messages::RequestHeader>,
        Box<kafka_protocol::messages::RequestKind>,
        ApiKey,
    ),
}

/// The unsupported APIs and features a connection used, so that each is logged once per
/// connection (at warn, naming it): a client failing on one otherwise times out or errors
/// with nothing in the broker's log, and a client retrying it must not flood the log.
#[derive(Default)]
struct Unsupported {
    seen: std::collections::HashSet<i16>,
}

impl Unsupported {
    /// Whether `what` is seen for the first time on this connection.
    fn first(&mut self, what: i16) -> bool {
        self.seen.insert(what)
    }

    /// Logs, once per connection, a request of an API (or version) this broker does not
    /// serve.
    fn api(&mut self, peer: SocketAddr, api_key: i16, version: i16, what: &str) {
        if self.first(api_key) {
            let api = ApiKey::try_from(api_key)
                .map(|k| format!("{k:?} ({api_key})"))
                .unwrap_or_else(|_| format!("unknown API key {api_key}"));
            tracing::warn!(
                %peer,
                "client sent {api} v{version}, which this broker {what}; answered UNSUPPORTED_VERSION (logged once per connection)"
            );
        }
    }
}

/// Decodes a frame and decides how to answer it.
fn prepare(
    state: &SharedState,
    frame: Bytes,
    peer: SocketAddr,
    unsupported: &mut Unsupported,
) -> Prepared {
    let _ = state;
    match codec::decode_request_bytes(frame.clone()) {
        Ok((header, request)) => match ApiKey::try_from(header.request_api_key) {
            Ok(key) => Prepared::Dispatch(Box::new(header), Box::new(request), key),
            Err(_) => Prepared::Close,
        },
        Err(ProtocolError::UnknownApiKey {
            api_key,
            correlation_id,
        }) => {
            let version = codec::header_prefix(&frame).map_or(0, |p| p.api_version);
            unsupported.api(peer, api_key, version, "does not know");
            raw(
                correlation_id,
                &ResponseError::UnsupportedVersion.code().to_be_bytes(),
            )
        }
        Err(ProtocolError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        }) => {
            if api_key == ApiKey::ApiVersions as i16 {
                tracing::info!(%peer, version, "ApiVersions newer than supported; answering with v0");
                return raw(correlation_id, &api_versions::unsupported_version_body());
            }
            if produce::is_legacy(api_key, version) {
                tracing::warn!(%peer, version, "Produce v0-2 is not served; answering UNSUPPORTED_VERSION");
                return match produce::legacy_unsupported(&frame) {
                    Ok(Some(body)) => raw(correlation_id, &body),
                    Ok(None) => Prepared::Respond(None),
                    Err(reason) => {
                        tracing::warn!(%peer, reason, "closing connection");
                        Prepared::Close
                    }
                };
            }
            let served = ApiKey::try_from(api_key)
                .ok()
                .and_then(handlers::supported_versions)
                .is_some();
            if served {
                // A version we never advertised: refuse it in its own schema when it decodes.
                let answer = codec::decode_beyond_served(frame.clone()).and_then(|(h, req)| {
                    let key = ApiKey::try_from(api_key).ok()?;
                    let resp = handlers::unsupported_version_response(req)?;
                    codec::encode_response(key, version, h.correlation_id, &resp).ok()
                });
                match answer {
                    Some(bytes) => {
                        unsupported.api(peer, api_key, version, "does not serve at that version");
                        Prepared::Respond(Some(bytes))
                    }
                    None => {
                        tracing::warn!(%peer, api_key, version, "closing connection: unsupported version");
                        Prepared::Close
                    }
                }
            } else {
                unsupported.api(peer, api_key, version, "does not serve");
                raw(
                    correlation_id,
                    &ResponseError::UnsupportedVersion.code().to_be_bytes(),
                )
            }
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "closing connection: malformed request");
            Prepared::Close
        }
    }
}

fn raw(correlation_id: i32, body: &[u8]) -> Prepared {
    match codec::encode_raw_response(correlation_id, body) {
        Ok(b) => Prepared::Respond(Some(b)),
        Err(_) => Prepared::Close,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn limits(max_frame: usize) -> FrameLimits {
        FrameLimits {
            max_frame,
            idle: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            budget: RequestBudget::new(64 << 20),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Frames trickled in arbitrary pieces (down to a byte at a time) are read back whole
        /// and in order, each holding budget room for exactly its length while held.
        #[test]
        fn trickled_frames_are_read_whole_and_in_order(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), MIN_HEADER_BYTES..3000), 1..6),
            pieces in prop::collection::vec(1usize..200, 1..50),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut wire = Vec::new();
                for b in &bodies {
                    wire.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    wire.extend_from_slice(b);
                }
                let (mut tx, mut rx) = tokio::io::duplex(64);
                let writer = tokio::spawn(async move {
                    let mut at = 0;
                    let mut i = 0;
                    while at < wire.len() {
                        let n = pieces[i % pieces.len()].min(wire.len() - at);
                        tx.write_all(&wire[at..at + n]).await.unwrap();
                        tokio::task::yield_now().await;
                        at += n;
                        i += 1;
                    }
                });
                let l = limits(1 << 20);
                for b in &bodies {
                    let (frame, permit) = read_frame(&mut rx, &l).await.unwrap().unwrap();
                    prop_assert_eq!(&frame[..], &b[..]);
                    prop_assert_eq!(l.budget.used(), b.len());
                    drop(permit);
                }
                writer.await.unwrap();
                prop_assert!(read_frame(&mut rx, &l).await.unwrap().is_none(), "clean EOF");
                Ok(())
            })?;
        }
    }

    #[tokio::test]
    async fn bad_lengths_and_truncated_frames_are_refused_without_holding_budget() {
        let l = limits(1000);
        for (wire, words) in [
            (vec![0, 0, 0, 0], "invalid frame length"),
            (vec![0xff, 0xff, 0xff, 0xff], "invalid frame length"),
            (vec![0, 0, 0, 3], "shorter than a request header"),
            (vec![0, 0, 0x10, 0], "exceeds max_frame_bytes"),
            (vec![0, 0, 0, 20, 1, 2, 3], "read error in a 20-byte frame"),
            (vec![0, 0], "read error in a frame length"),
        ] {
            let (mut tx, mut rx) = tokio::io::duplex(64);
            tx.write_all(&wire).await.unwrap();
            drop(tx);
            let err = read_frame(&mut rx, &l).await.unwrap_err();
            assert!(err.contains(words), "{wire:?}: {err}");
            assert_eq!(l.budget.used(), 0);
        }
    }
}
