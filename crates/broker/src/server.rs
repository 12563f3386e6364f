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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Session;
use crate::auth::tls::{ReloadableTls, TlsFiles};
use crate::budget::{BudgetPermit, RequestBudget};
use crate::codec::{self, MIN_HEADER_BYTES};
use crate::config::BrokerConfig;
use crate::error::{BrokerError, ProtocolError};
use crate::handlers::{self, Applied, Connection, api_versions, produce};
use crate::listener::{ListenerInfo, SecurityProtocol};
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
    let metrics = crate::metrics::BrokerMetrics::new(sync.fsync_histogram());
    let credentials = crate::auth::Credentials::open(&config.data_dir)?;
    let mechanisms = config.mechanisms()?;
    // One PLAINTEXT listener until `Broker::start` knows the bound ones.
    let listener_settings = (
        format!("PLAINTEXT://{}", config.listen),
        format!("PLAINTEXT://{advertised_host}:{advertised_port}"),
    );
    let acls = crate::auth::Acls::open(&config.data_dir)?;
    let super_users = config.super_user_list();
    let authorization = config.authorization_enabled();
    Ok(BrokerState {
        acls,
        super_users,
        authorization,
        metrics,
        config,
        advertised_host,
        advertised_port,
        listener_settings,
        topics,
        producer_ids,
        sync,
        groups,
        transactions,
        credentials,
        mechanisms,
        shutdown,
    })
}

/// Entry point of the broker.
pub struct Broker;

impl Broker {
    /// Locks the data dir, loads topics, binds the listeners and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<RunningBroker, BrokerError> {
        Broker::start_with_routes(config, axum::Router::new()).await
    }

    /// [`start`](Self::start), with `routes` served beside `/metrics`, `/healthz` and
    /// `/readyz` on the HTTP listener (when `http_listen` is set): how `waterline serve` adds
    /// the dashboard, whose code lives with the operator tools rather than in the broker.
    pub async fn start_with_routes(
        config: BrokerConfig,
        routes: axum::Router,
    ) -> Result<RunningBroker, BrokerError> {
        config.validate()?;
        let lock = lock_data_dir(&config.data_dir)?;
        let admin = admin_user(&config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                ReloadableTls::new(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: config.tls_client_ca.clone(),
                })
                .map_err(|e| crate::error::ConfigError::Invalid(e.to_string()))?,
            )),
            _ => None,
        };
        let specs = config.listener_specs()?;
        let advertised_addrs = config.advertised_for(&specs)?;
        let mut bound = Vec::new();
        for (spec, advertised) in specs.iter().zip(advertised_addrs) {
            let addr = spec.addr();
            let listener = TcpListener::bind(&addr)
                .await
                .map_err(|e| BrokerError::io("binding", &addr, e))?;
            let local = listener
                .local_addr()
                .map_err(|e| BrokerError::io("binding", &addr, e))?;
            let (host, port) = advertised_or_bound(advertised, local);
            let info = Arc::new(ListenerInfo {
                protocol: spec.protocol,
                advertised_host: host,
                advertised_port: port,
            });
            bound.push((listener, local, info));
        }
        let (host, port) = {
            let first = &bound[0].2;
            (first.advertised_host.clone(), first.advertised_port)
        };
        let join = |f: &dyn Fn(&SocketAddr, &ListenerInfo) -> String| {
            bound
                .iter()
                .map(|(_, local, info)| format!("{}://{}", info.protocol, f(local, info)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let listener_settings = (
            join(&|local, _| local.to_string()),
            join(&|_, info| {
                crate::listener::join_host_port(
                    &info.advertised_host,
                    u16::try_from(info.advertised_port).unwrap_or(0),
                )
            }),
        );
        let state = tokio::task::spawn_blocking(move || {
            let mut state = build_state(config, host, port)?;
            state.listener_settings = listener_settings;
            if let Some((user, password)) = admin {
                ensure_admin_user(&state, &user, &password)?;
            }
            Ok::<_, BrokerError>(state)
        })
        .await
        .map_err(|e| BrokerError::Task(e.to_string()))??;
        let state = Arc::new(state);
        crate::transactions::Transactions::start(&state)?;
        if state.authorization {
            tracing::info!(
                acls = state.acls.snapshot().len(),
                super_users = ?state.super_users,
                "authorization on: requests are checked against the ACLs"
            );
        }
        let tracker = TaskTracker::new();
        let shared = Arc::new(Accepting {
            limits: FrameLimits {
                max_frame: state.config.max_frame_bytes,
                max_frame_setting: "max_frame_bytes",
                idle: Duration::from_millis(state.config.connections_max_idle_ms),
                read_timeout: Duration::from_millis(state.config.request_read_timeout_ms),
                budget: RequestBudget::new(state.config.max_queued_request_bytes),
            },
            counts: Arc::new(parking_lot::Mutex::new(ConnectionCounts::default())),
            tls: tls.clone(),
        });
        let mut accepts = Vec::new();
        let mut listeners = Vec::new();
        for (listener, local, info) in bound {
            tracing::info!(listener = %info.protocol, %local, advertised = %format!("{}:{}", info.advertised_host, info.advertised_port), "broker listening");
            listeners.push((info.protocol, local));
            accepts.push(tokio::spawn(accept_loop(
                state.clone(),
                listener,
                info,
                shared.clone(),
                tracker.clone(),
            )));
        }
        if let Some(tls) = tls {
            accepts.push(tokio::spawn(reload_tls_on_sighup(state.clone(), tls)));
        }
        let retention = tokio::spawn(retention_loop(state.clone()));
        let cleaner = tokio::spawn(crate::cleaner::cleaner_loop(state.clone()));
        let http = match state.config.http_listen.clone() {
            Some(addr) => Some(crate::http::start(state.clone(), &addr, routes).await?),
            None => None,
        };
        Ok(RunningBroker {
            state,
            listeners,
            accepts,
            http_addr: http.as_ref().map(|(a, _)| *a),
            http: http.map(|(_, t)| t),
            retention,
            cleaner,
            tracker,
            _lock: lock,
        })
    }
}

/// `--admin-user` and its password from `WATERLINE_ADMIN_PASSWORD`, when set.
fn admin_user(config: &BrokerConfig) -> Result<Option<(String, String)>, BrokerError> {
    let Some(user) = &config.admin_user else {
        return Ok(None);
    };
    match std::env::var("WATERLINE_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => Ok(Some((user.clone(), p))),
        _ => Err(crate::error::ConfigError::Invalid(format!(
            "admin_user `{user}` needs its password in the WATERLINE_ADMIN_PASSWORD environment variable"
        ))
        .into()),
    }
}

/// Creates the admin user's SCRAM-SHA-256 and SCRAM-SHA-512 credentials if it has none; an
/// existing user keeps its password (changed since through AlterUserScramCredentials, maybe).
fn ensure_admin_user(state: &BrokerState, user: &str, password: &str) -> Result<(), BrokerError> {
    if state.credentials.snapshot().contains_key(user) {
        return Ok(());
    }
    let mut changes = Vec::new();
    for m in waterline_sasl::ScramMechanism::ALL {
        let cred = waterline_sasl::ScramCredential::generate(
            m,
            password.as_bytes(),
            state.config.scram_iterations,
        )
        .map_err(|e| BrokerError::Task(format!("creating admin credentials: {e}")))?;
        changes.push(crate::auth::CredentialChange::Upsert(
            user.to_string(),
            cred,
        ));
    }
    state.credentials.apply(changes)?;
    tracing::info!(%user, "created the admin user (SCRAM-SHA-256, SCRAM-SHA-512)");
    Ok(())
}

/// Re-reads the TLS certificate and key on every SIGHUP, until shutdown; new connections use
/// them, open ones keep theirs.
async fn reload_tls_on_sighup(state: SharedState, tls: Arc<ReloadableTls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler: TLS certificates will not be reloaded");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = state.shutdown.cancelled() => return,
        }
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate and key reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed; keeping the previous certificate")
            }
        }
    }
}

/// A started broker; stop it with [`RunningBroker::shutdown`].
pub struct RunningBroker {
    state: SharedState,
    /// Each listener's protocol and bound address, in configuration order.
    listeners: Vec<(SecurityProtocol, SocketAddr)>,
    /// Accept loops (and the SIGHUP reloader).
    accepts: Vec<JoinHandle<()>>,
    /// The bound address of the HTTP listener (metrics, health), when configured.
    http_addr: Option<SocketAddr>,
    http: Option<JoinHandle<()>>,
    retention: JoinHandle<()>,
    /// Waits for cleaning passes in flight when it ends.
    cleaner: JoinHandle<()>,
    tracker: TaskTracker,
    /// Holds the data-dir lock until the broker is dropped.
    _lock: File,
}

impl RunningBroker {
    /// The bound address of the first listener (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners[0].1
    }

    /// Every listener's protocol and bound address, in configuration order.
    pub fn listeners(&self) -> &[(SecurityProtocol, SocketAddr)] {
        &self.listeners
    }

    /// The bound address of the HTTP listener (`/metrics`, `/healthz`, `/readyz`), when
    /// `http_listen` is set.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish (long polls return early), then syncs and
    /// closes every partition log cleanly.
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        self.state.shutdown.cancel();
        for a in self.accepts {
            let _ = a.await;
        }
        if let Some(http) = self.http {
            let _ = http.await;
        }
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
fn advertised_or_bound(configured: Option<(String, u16)>, bound: SocketAddr) -> (String, i32) {
    if let Some((host, port)) = configured {
        return (host, i32::from(port));
    }
    let ip = if bound.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        bound.ip().to_string()
    };
    (ip, i32::from(bound.port()))
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

/// What every listener's accept loop shares: frame limits and the request budget, the
/// connection counts (limits are broker-wide), the TLS configuration.
struct Accepting {
    limits: FrameLimits,
    counts: Arc<parking_lot::Mutex<ConnectionCounts>>,
    tls: Option<Arc<ReloadableTls>>,
}

async fn accept_loop(
    state: SharedState,
    listener: TcpListener,
    info: Arc<ListenerInfo>,
    shared: Arc<Accepting>,
    tracker: TaskTracker,
) {
    let counts = &shared.counts;
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
            Ok((stream, peer)) => match admit(counts, &state.config, peer.ip()) {
                Ok(slot) => {
                    let tls = if info.protocol.tls() {
                        shared.tls.clone()
                    } else {
                        None
                    };
                    tracker.spawn(serve_accepted(
                        state.clone(),
                        stream,
                        peer,
                        shared.limits.clone(),
                        slot,
                        info.clone(),
                        tls,
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

/// Runs the TLS handshake where the listener has TLS (within `request_read_timeout_ms`, so a
/// silent or plaintext client cannot hold the connection), then serves the connection.
async fn serve_accepted(
    state: SharedState,
    stream: TcpStream,
    peer: SocketAddr,
    limits: FrameLimits,
    slot: ConnectionSlot,
    listener: Arc<ListenerInfo>,
    tls: Option<Arc<ReloadableTls>>,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        let session = Session::on(peer, listener, None);
        let (rd, wr) = stream.into_split();
        return serve_connection(state, rd, wr, peer, limits, slot, session).await;
    };
    let handshake = tls.acceptor().accept(stream);
    let stream = match tokio::time::timeout(limits.read_timeout, handshake).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, listener = %listener.protocol, error = %e, "closing connection: TLS handshake failed (a plaintext client on a TLS listener, an untrusted client certificate?)");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, listener = %listener.protocol, "closing connection: TLS handshake did not complete within request_read_timeout_ms");
            return;
        }
    };
    let subject = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::auth::tls::subject_dn(c));
    let session = Session::on(peer, listener, subject);
    if session.principal() != crate::auth::ANONYMOUS {
        tracing::info!(%peer, principal = session.principal(), "TLS client certificate accepted");
    }
    let (rd, wr) = tokio::io::split(stream);
    serve_connection(state, rd, wr, peer, limits, slot, session).await
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
    /// The setting `max_frame` comes from, for the log line of a refused frame.
    max_frame_setting: &'static str,
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
        // A TLS client that closes between frames without close_notify (most do): as EOF.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
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
        if len >> 16 == 0x1603 {
            // A TLS record header (handshake, version 3.x) read as a frame length.
            return Err("a TLS handshake on a listener without TLS".to_string());
        }
        return Err(format!(
            "frame of {len} bytes exceeds {} {}",
            limits.max_frame_setting, limits.max_frame
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

async fn serve_connection<R, W>(
    state: SharedState,
    mut rd: R,
    mut wr: W,
    peer: SocketAddr,
    mut limits: FrameLimits,
    _slot: ConnectionSlot,
    session: Session,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _counted = state.metrics.connection_opened();
    tracing::debug!(%peer, "connection opened");
    let max_frame = limits.max_frame;
    let (tx, mut rx) = mpsc::channel::<oneshot::Receiver<Option<Bytes>>>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            match pending.await {
                Ok(Some(frame)) => {
                    // The flush matters for TLS: rustls may still hold the frame's last record
                    // when the socket pushed back (a no-op on plain TCP).
                    let written = async {
                        wr.write_all(&frame).await?;
                        wr.flush().await
                    };
                    if let Err(e) = written.await {
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
    let mut session = session;
    session.set_max_reauth_ms(state.config.connections_max_reauth_ms);
    let mut conn = Connection::with_session(peer, session);
    let mut unsupported = Unsupported::default();
    loop {
        // Before authentication only small SASL frames are expected (Kafka
        // `sasl.server.max.receive.size`).
        (limits.max_frame, limits.max_frame_setting) = if conn.session().authenticated() {
            (max_frame, "max_frame_bytes")
        } else {
            (
                max_frame.min(state.config.sasl_max_receive_bytes),
                "sasl_max_receive_bytes (not authenticated yet)",
            )
        };
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
                if let Some(reason) = conn.session().refuses(key) {
                    tracing::warn!(%peer, %reason, "closing connection");
                    drop(otx);
                    break;
                }
                let id = (key, header.request_api_version, header.correlation_id);
                let started = std::time::Instant::now();
                state.metrics.request(key, &request);
                // Applied here, in arrival order, before the next frame is read; only the
                // waits `apply` hands back overlap later requests.
                match handlers::apply(&state, &mut conn, *header, *request).await {
                    Applied::Ready(resp) => {
                        state.metrics.response(key, started, resp.as_ref());
                        respond(otx, peer, id, resp);
                    }
                    Applied::Waiting(work) => {
                        let state = state.clone();
                        tokio::spawn(async move {
                            let resp = work.await;
                            state.metrics.response(key, started, resp.as_ref());
                            drop(permit);
                            respond(otx, peer, id, resp)
                        });
                    }
                }
                if conn.session().closing() {
                    // A refused authentication: its (delayed) answer is the last one.
                    break;
                }
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
            max_frame_setting: "max_frame_bytes",
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
