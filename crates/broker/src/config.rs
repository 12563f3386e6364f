//! Broker settings: defaults, TOML parsing and the fsync policy.

use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::ConfigError;
use crate::listener::{ListenerSpec, SecurityProtocol, split_host_port};

/// When appended data is fsynced relative to acknowledging a produce request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// acks=1/-1 produce requests are answered only once an fsync covering their batches has
    /// completed. Concurrent producers share fsyncs (group commit), so nothing acknowledged is
    /// lost on power failure.
    #[default]
    Always,
    /// Produce requests are answered right after the append; a background task fsyncs dirty
    /// partitions every `ms` milliseconds. A crash can lose up to `ms` of acknowledged writes.
    /// Consumers still only see data below the high watermark, which only covers synced data.
    Interval {
        /// Milliseconds between background fsyncs (at least 1).
        ms: u64,
    },
}

impl FromStr for FsyncPolicy {
    type Err = ConfigError;

    /// Parses `always` or `interval:MS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "always" {
            return Ok(FsyncPolicy::Always);
        }
        if let Some(ms) = s.strip_prefix("interval:")
            && let Ok(ms) = ms.parse::<u64>()
            && ms > 0
        {
            return Ok(FsyncPolicy::Interval { ms });
        }
        Err(ConfigError::Invalid(format!(
            "fsync: `{s}`: expected `always` or `interval:MS` with MS >= 1"
        )))
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything `waterline serve` can be told. Unknown keys in TOML are rejected.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Directory holding topics, producer-id state and the lock file.
    pub data_dir: PathBuf,
    /// Address to accept Kafka connections on (`host:port`; port 0 picks a free port).
    pub listen: String,
    /// `host:port` clients are told to connect to; default: the actual bound address.
    /// Applies to the first listener (`listen`, or the first of `listeners`).
    pub advertised: Option<String>,
    /// Address of the HTTP listener serving `/metrics`, `/healthz` and `/readyz`; none by
    /// default.
    pub http_listen: Option<String>,
    /// Listeners as `PROTOCOL://HOST:PORT` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); when
    /// set, `listen` is not used. At most one listener per protocol.
    pub listeners: Vec<String>,
    /// Advertised address per protocol, `PROTOCOL://HOST:PORT` (Kafka `advertised.listeners`);
    /// a listener without one advertises its bound address.
    pub advertised_listeners: Vec<String>,
    /// PEM certificate chain of the SSL and SASL_SSL listeners.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: when set, TLS clients must present a certificate signed by one of
    /// them (mutual TLS), and on SSL listeners their principal is `User:<subject DN>`.
    pub tls_client_ca: Option<PathBuf>,
    /// SASL mechanisms offered on SASL listeners, from PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    pub sasl_mechanisms: Vec<String>,
    /// Delay before answering a failed authentication, then closing the connection (Kafka
    /// `connection.failed.authentication.delay.ms`).
    pub failed_authentication_delay_ms: u64,
    /// Lifetime of an authenticated SASL session (Kafka `connections.max.reauth.ms`, KIP-368):
    /// clients re-authenticate on the same connection before it ends, and a connection whose
    /// session ended closes at its next request. 0 (the default, as in Kafka): no lifetime.
    pub connections_max_reauth_ms: u64,
    /// Largest request frame accepted before a SASL client has authenticated (Kafka
    /// `sasl.server.max.receive.size`).
    pub sasl_max_receive_bytes: usize,
    /// A SCRAM user created at start (both mechanisms) if it does not exist yet, with the
    /// password from the `WATERLINE_ADMIN_PASSWORD` environment variable.
    pub admin_user: Option<String>,
    /// Principals allowed everything whatever the ACLs say, `;`-separated in one string or as a
    /// list (`User:admin;User:ops`, Kafka `super.users`). `admin_user` is one automatically.
    pub super_users: Vec<String>,
    /// Whether requests are authorized against the ACLs. Unset (the default): on exactly when
    /// authentication is configured (a SASL listener, or `tls_client_ca`), so a broker without
    /// authentication behaves as if there were no ACLs at all.
    pub authorization: Option<bool>,
    /// PBKDF2 iterations of credentials this broker creates (`admin_user`); 4096..=16384.
    pub scram_iterations: u32,
    /// Create unknown topics when a Metadata or Produce request names them.
    pub auto_create_topics: bool,
    /// Partition count of auto-created topics (and of CreateTopics with -1 partitions).
    pub default_partitions: i32,
    /// Roll the active segment when it would exceed this many bytes.
    pub segment_bytes: u64,
    /// Roll the active segment when it is older than this many milliseconds.
    pub segment_ms: Option<i64>,
    /// Delete whole segments older than this many milliseconds.
    pub retention_ms: Option<i64>,
    /// Delete oldest whole segments while a partition holds more than this many bytes.
    pub retention_bytes: Option<u64>,
    /// When produced data is fsynced (see [`FsyncPolicy`]).
    pub fsync: FsyncPolicy,
    /// Largest request frame accepted (Kafka `socket.request.max.bytes`).
    pub max_frame_bytes: usize,
    /// Largest record batch accepted (Kafka `message.max.bytes`).
    pub max_message_bytes: usize,
    /// Milliseconds between retention checks.
    pub retention_check_ms: u64,
    /// Bytes of request frames being read or in flight, broker-wide (Kafka
    /// `queued.max.request.bytes`, which is unbounded there). A connection waits for room
    /// before reading a frame; frames above 1 MiB may use at most 7/8 of it, so small requests
    /// always find room even while large ones wait.
    pub max_queued_request_bytes: usize,
    /// Close a connection that sends nothing for this long (Kafka `connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// A frame that has started must arrive whole within this many milliseconds.
    pub request_read_timeout_ms: u64,
    /// Most connections at once (Kafka `max.connections`); more are closed at once.
    pub max_connections: Option<usize>,
    /// Most connections at once from one IP address (Kafka `max.connections.per.ip`).
    pub max_connections_per_ip: Option<usize>,
    /// Cleaning passes of compacted topics at once (Kafka `log.cleaner.threads`); 0 turns
    /// compaction off.
    pub cleaner_threads: usize,
    /// How often the cleaner looks for partitions due for compaction (Kafka
    /// `log.cleaner.backoff.ms`).
    pub cleaner_backoff_ms: u64,
    /// Memory of one pass's key map (Kafka `log.cleaner.dedupe.buffer.size`): about 27 bytes
    /// per key; a partition with more dirty keys is cleaned in several passes.
    pub cleaner_dedupe_buffer_bytes: usize,
    /// Bytes per second the cleaner may read and write in all (Kafka
    /// `log.cleaner.io.max.bytes.per.second`); unset: no limit.
    pub cleaner_io_max_bytes_per_second: Option<u64>,
    /// Nice value of the threads that run cleaning passes (0 = the broker's own priority, 19 =
    /// lowest). Compaction can wait; produce, fetch and commit answers should not wait for it
    /// when the CPUs are busy. No Kafka equivalent.
    pub cleaner_thread_nice: i32,
    /// Largest `transaction.timeout.ms` a transactional producer may ask for (Kafka
    /// `transaction.max.timeout.ms`); InitProducerId answers INVALID_TRANSACTION_TIMEOUT above.
    pub transaction_max_timeout_ms: i32,
    /// A transactional id with no transaction in flight is forgotten this long after its last
    /// use (Kafka `transactional.id.expiration.ms`).
    pub transactional_id_expiration_ms: u64,
    /// CreateTopics with a replication factor above 1 creates the topic with the one replica
    /// this node has instead of answering INVALID_REPLICATION_FACTOR as Kafka does. For test
    /// suites written for three-broker clusters (librdkafka's); off by default.
    pub accept_any_replication_factor: bool,
    /// Most partition-log files (segments, indexes) open at once: files are opened on demand
    /// through a cache of handles of this size, so the number of partitions is limited by
    /// disk, not by the process's open-file limit. Unset: half the process's open-file limit
    /// (`RLIMIT_NOFILE`, soft), leaving the other half for connections and the offset store.
    pub max_open_files: Option<usize>,
    /// Consumer groups and committed offsets (`[groups]`).
    pub groups: crate::groups::GroupConfig,
}

/// Smallest default bound on open partition-log files (a segment has up to four files).
pub const MIN_OPEN_FILES: usize = 32;

/// Kafka's default `log.segment.bytes`.
const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Seven days, Kafka's default `log.retention.ms` and `log.roll.ms`.
const SEVEN_DAYS_MS: i64 = 7 * 24 * 3600 * 1000;

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("./waterline-data"),
            listen: "127.0.0.1:9092".to_string(),
            advertised: None,
            http_listen: None,
            listeners: Vec::new(),
            advertised_listeners: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            sasl_mechanisms: waterline_sasl::Mechanism::ALL
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            failed_authentication_delay_ms: 100,
            connections_max_reauth_ms: 0,
            sasl_max_receive_bytes: 512 * 1024,
            admin_user: None,
            super_users: Vec::new(),
            authorization: None,
            scram_iterations: waterline_sasl::ScramMechanism::MIN_ITERATIONS,
            auto_create_topics: true,
            default_partitions: 1,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: Some(SEVEN_DAYS_MS),
            retention_ms: Some(SEVEN_DAYS_MS),
            retention_bytes: None,
            fsync: FsyncPolicy::Always,
            max_frame_bytes: 100 * 1024 * 1024,
            max_message_bytes: 1024 * 1024 + 12,
            retention_check_ms: 60_000,
            max_queued_request_bytes: 512 * 1024 * 1024,
            connections_max_idle_ms: 600_000,
            request_read_timeout_ms: 30_000,
            max_connections: None,
            max_connections_per_ip: None,
            cleaner_threads: 1,
            cleaner_backoff_ms: 15_000,
            cleaner_dedupe_buffer_bytes: 128 * 1024 * 1024,
            cleaner_io_max_bytes_per_second: None,
            cleaner_thread_nice: 10,
            transaction_max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 7 * 24 * 3600 * 1000,
            accept_any_replication_factor: false,
            max_open_files: None,
            groups: crate::groups::GroupConfig::default(),
        }
    }
}

impl BrokerConfig {
    /// The transaction coordinator's settings.
    pub fn txn_config(&self) -> waterline_txn::TxnConfig {
        waterline_txn::TxnConfig {
            max_transaction_timeout_ms: self.transaction_max_timeout_ms,
            transactional_id_expiration_ms: self.transactional_id_expiration_ms,
            ..waterline_txn::TxnConfig::default()
        }
    }

    /// The bound on open partition-log files: `max_open_files`, else half the process's
    /// open-file limit (at least [`MIN_OPEN_FILES`]).
    pub fn effective_max_open_files(&self) -> usize {
        self.max_open_files.unwrap_or_else(|| {
            let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or(1024, |(soft, _)| soft);
            usize::try_from(soft / 2)
                .unwrap_or(usize::MAX)
                .max(MIN_OPEN_FILES)
        })
    }

    /// Parses a TOML document (keys as the field names) over the defaults, then validates it.
    pub fn from_toml_str(s: &str) -> Result<Self, ConfigError> {
        let config: BrokerConfig =
            toml::from_str(s).map_err(|e| ConfigError::Toml(one_line_toml_error(s, &e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks value ranges that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.default_partitions < 1 {
            return bad("default_partitions must be at least 1");
        }
        if self.segment_bytes < 1024 {
            return bad("segment_bytes must be at least 1024");
        }
        // A frame must at least hold a request header; i32 is the wire's length type.
        if self.max_frame_bytes < 64 || self.max_frame_bytes > i32::MAX as usize {
            return bad("max_frame_bytes must be between 64 and 2147483647");
        }
        if self.max_message_bytes < 128 || self.max_message_bytes > i32::MAX as usize {
            return bad("max_message_bytes must be between 128 and 2147483647");
        }
        if matches!(self.fsync, FsyncPolicy::Interval { ms: 0 }) {
            return bad("fsync interval must be at least 1 ms");
        }
        if self.retention_check_ms == 0 {
            return bad("retention_check_ms must be at least 1");
        }
        if self.max_frame_bytes > self.max_queued_request_bytes / 8 * 7 {
            return bad(
                "max_frame_bytes must be at most 7/8 of max_queued_request_bytes (the rest is kept for small requests)",
            );
        }
        if self.max_queued_request_bytes > u32::MAX as usize {
            return bad("max_queued_request_bytes must be at most 4294967295");
        }
        if self.connections_max_idle_ms == 0 || self.request_read_timeout_ms == 0 {
            return bad("connections_max_idle_ms and request_read_timeout_ms must be at least 1");
        }
        if self.cleaner_backoff_ms == 0 || self.cleaner_io_max_bytes_per_second == Some(0) {
            return bad(
                "cleaner_backoff_ms and cleaner_io_max_bytes_per_second must be at least 1",
            );
        }
        if !(0..=19).contains(&self.cleaner_thread_nice) {
            return bad("cleaner_thread_nice must be between 0 and 19");
        }
        if self.cleaner_dedupe_buffer_bytes < 1024 * 1024 {
            return bad("cleaner_dedupe_buffer_bytes must be at least 1048576");
        }
        if self.transaction_max_timeout_ms < 1 || self.transactional_id_expiration_ms == 0 {
            return bad(
                "transaction_max_timeout_ms and transactional_id_expiration_ms must be at least 1",
            );
        }
        if self.max_open_files.is_some_and(|n| n < 4) {
            return bad("max_open_files must be at least 4");
        }
        if self.max_connections == Some(0) || self.max_connections_per_ip == Some(0) {
            return bad("max_connections and max_connections_per_ip must be at least 1");
        }
        self.groups.validate()?;
        let listeners = self.listener_specs()?;
        self.advertised_for(&listeners)?;
        if listeners.iter().any(|l| l.protocol.tls())
            && (self.tls_cert.is_none() || self.tls_key.is_none())
        {
            return bad("SSL and SASL_SSL listeners need tls_cert and tls_key");
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return bad("tls_client_ca needs tls_cert and tls_key");
        }
        let mechanisms = self.mechanisms()?;
        if listeners.iter().any(|l| l.protocol.sasl()) && mechanisms.is_empty() {
            return bad("SASL listeners need at least one of sasl_mechanisms");
        }
        if self.sasl_max_receive_bytes < 1024 {
            return bad("sasl_max_receive_bytes must be at least 1024");
        }
        waterline_sasl::ScramMechanism::Sha256
            .check_iterations(self.scram_iterations)
            .map_err(|e| ConfigError::Invalid(format!("scram_iterations: {e}")))?;
        if let Some(user) = &self.admin_user
            && !crate::auth::credentials::valid_user_name(user)
        {
            return Err(ConfigError::Invalid(format!(
                "admin_user: `{user}` must be 1 to 255 characters without control characters"
            )));
        }
        for p in self.super_user_list() {
            if !p
                .strip_prefix("User:")
                .is_some_and(crate::auth::credentials::valid_user_name)
            {
                return Err(ConfigError::Invalid(format!(
                    "super_users: `{p}` is not `User:<name>`"
                )));
            }
        }
        Ok(())
    }

    /// The super users: every `;`-separated entry of `super_users` (blanks dropped), and
    /// `User:<admin_user>`.
    pub fn super_user_list(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .super_users
            .iter()
            .flat_map(|s| s.split(';'))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(admin) = &self.admin_user {
            out.push(format!("User:{admin}"));
        }
        out.sort();
        out.dedup();
        out
    }

    /// Whether requests are authorized: `authorization` if set, else whether any listener
    /// authenticates its clients (SASL, or mutual TLS).
    pub fn authorization_enabled(&self) -> bool {
        self.authorization.unwrap_or_else(|| {
            self.tls_client_ca.is_some()
                || self
                    .listener_specs()
                    .is_ok_and(|ls| ls.iter().any(|l| l.protocol.sasl()))
        })
    }

    /// The listeners: `listeners`, or one PLAINTEXT listener on `listen`.
    pub fn listener_specs(&self) -> Result<Vec<ListenerSpec>, ConfigError> {
        if self.listeners.is_empty() {
            let (host, port) = split_host_port(&self.listen).ok_or_else(|| {
                ConfigError::Invalid(format!("listen: `{}` is not HOST:PORT", self.listen))
            })?;
            return Ok(vec![ListenerSpec {
                protocol: SecurityProtocol::Plaintext,
                host,
                port,
            }]);
        }
        let mut out: Vec<ListenerSpec> = Vec::new();
        for l in &self.listeners {
            let spec = ListenerSpec::parse("listeners", l)?;
            if out.iter().any(|o| o.protocol == spec.protocol) {
                return Err(ConfigError::Invalid(format!(
                    "listeners: more than one {} listener",
                    spec.protocol
                )));
            }
            out.push(spec);
        }
        Ok(out)
    }

    /// The configured advertised address of each listener (same order), if any.
    pub fn advertised_for(
        &self,
        listeners: &[ListenerSpec],
    ) -> Result<Vec<Option<(String, u16)>>, ConfigError> {
        let mut explicit = Vec::new();
        for a in &self.advertised_listeners {
            let spec = ListenerSpec::parse("advertised_listeners", a)?;
            if !listeners.iter().any(|l| l.protocol == spec.protocol) {
                return Err(ConfigError::Invalid(format!(
                    "advertised_listeners: `{a}` names no configured listener"
                )));
            }
            explicit.push(spec);
        }
        let first = match &self.advertised {
            Some(a) => Some(split_host_port(a).ok_or_else(|| {
                ConfigError::Invalid(format!("advertised: `{a}` is not HOST:PORT"))
            })?),
            None => None,
        };
        Ok(listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                explicit
                    .iter()
                    .find(|e| e.protocol == l.protocol)
                    .map(|e| (e.host.clone(), e.port))
                    .or_else(|| if i == 0 { first.clone() } else { None })
            })
            .collect())
    }

    /// The SASL mechanisms offered.
    pub fn mechanisms(&self) -> Result<Vec<waterline_sasl::Mechanism>, ConfigError> {
        self.sasl_mechanisms
            .iter()
            .map(|m| {
                waterline_sasl::Mechanism::parse(m).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "sasl_mechanisms: `{m}`: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                    ))
                })
            })
            .collect()
    }
}

/// toml's own rendering spans several lines (a source snippet with a caret); operators get one
/// line: `line L, column C: message`.
fn one_line_toml_error(source: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', " ");
    match err.span() {
        Some(span) => {
            let before = &source[..span.start.min(source.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = BrokerConfig::from_toml_str("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:9092");
        assert_eq!(c.data_dir, PathBuf::from("./waterline-data"));
        assert!(c.auto_create_topics);
        assert_eq!(c.default_partitions, 1);
        assert_eq!(c.fsync, FsyncPolicy::Always);
        assert_eq!(c.max_frame_bytes, 104_857_600);
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.max_queued_request_bytes, 512 << 20);
        assert_eq!(c.connections_max_idle_ms, 600_000);
        assert_eq!(c.request_read_timeout_ms, 30_000);
        assert_eq!((c.max_connections, c.max_connections_per_ip), (None, None));
        assert_eq!(c.cleaner_thread_nice, 10);
    }

    #[test]
    fn cleaner_thread_nice_outside_0_to_19_is_refused() {
        let err = BrokerConfig::from_toml_str("cleaner_thread_nice = 20").unwrap_err();
        assert!(err.to_string().contains("between 0 and 19"), "{err}");
        assert!(BrokerConfig::from_toml_str("cleaner_thread_nice = -1").is_err());
        assert!(BrokerConfig::from_toml_str("cleaner_thread_nice = 0").is_ok());
    }

    #[test]
    fn listeners_default_to_listen_and_take_advertised_addresses() {
        let c =
            BrokerConfig::from_toml_str("listen = \"0.0.0.0:1\"\nadvertised = \"h:2\"").unwrap();
        let l = c.listener_specs().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].to_string(), "PLAINTEXT://0.0.0.0:1");
        assert_eq!(c.advertised_for(&l).unwrap(), vec![Some(("h".into(), 2))]);
        let c = BrokerConfig::from_toml_str(
            "listeners = [\"PLAINTEXT://a:1\", \"SASL_SSL://b:2\"]\n\
             advertised_listeners = [\"SASL_SSL://ext:9\"]\n\
             tls_cert = \"c.pem\"\ntls_key = \"k.pem\"",
        )
        .unwrap();
        let l = c.listener_specs().unwrap();
        assert_eq!(l[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(
            c.advertised_for(&l).unwrap(),
            vec![None, Some(("ext".into(), 9))]
        );
    }

    #[test]
    fn toml_errors_are_one_line_with_position() {
        let err = BrokerConfig::from_toml_str("listen = \"x:1\"\ndefault_partitions = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("line 2, column 22"), "{err}");
    }

    #[test]
    fn toml_overrides_and_fsync_forms() {
        let c = BrokerConfig::from_toml_str(
            "listen = \"0.0.0.0:1\"\nfsync = \"interval:250\"\ndefault_partitions = 3\nretention_bytes = 10",
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:1");
        assert_eq!(c.fsync, FsyncPolicy::Interval { ms: 250 });
        assert_eq!(c.default_partitions, 3);
        assert_eq!(c.retention_bytes, Some(10));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        for bad in [
            "nope = 1",
            "fsync = \"sometimes\"",
            "fsync = \"interval:0\"",
            "default_partitions = 0",
            "max_frame_bytes = 3",
            "max_queued_request_bytes = 1000",
            "connections_max_idle_ms = 0",
            "max_connections = 0",
            "max_open_files = 3",
            "listen = 5",
            "listeners = [\"TLS://h:1\"]",
            "listeners = [\"SSL://h:1\"]",
            "listeners = [\"PLAINTEXT://h:1\", \"PLAINTEXT://h:2\"]",
            "advertised_listeners = [\"SSL://h:1\"]",
            "sasl_mechanisms = [\"GSSAPI\"]",
            "listeners = [\"SASL_PLAINTEXT://h:1\"]\nsasl_mechanisms = []",
            "scram_iterations = 100",
            "admin_user = \"\"",
        ] {
            assert!(BrokerConfig::from_toml_str(bad).is_err(), "{bad}");
        }
    }
}
