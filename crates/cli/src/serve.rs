//! `waterline serve`: start the broker, print one ready line, stop cleanly on SIGTERM/SIGINT.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use waterline_broker::{Broker, BrokerConfig, FsyncPolicy};

/// Flags of `waterline serve`. Every flag overrides the same setting from `--config`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory holding the log, the offsets and the broker's state [default: ./waterline-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to accept Kafka connections on: shorthand for `--listener PLAINTEXT://HOST:PORT`
    /// [default: 127.0.0.1:9092 when no --listener is given]
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to, for the first listener [default: the bound
    /// address]
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,
    /// Serve Prometheus /metrics, /healthz and /readyz over HTTP on this address [default: off]
    #[arg(long, value_name = "HOST:PORT")]
    http_listen: Option<String>,
    /// A listener: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, at most one of each (repeatable)
    #[arg(long = "listener", value_name = "PROTOCOL://HOST:PORT")]
    listeners: Vec<String>,
    /// Address clients of one listener are told to connect to, by protocol (repeatable)
    #[arg(long = "advertised-listener", value_name = "PROTOCOL://HOST:PORT")]
    advertised_listeners: Vec<String>,
    /// PEM certificate chain of the SSL and SASL_SSL listeners (reloaded on SIGHUP)
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (reloaded on SIGHUP)
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: TLS clients must present a certificate they signed (mutual TLS);
    /// the principal on SSL listeners is then the certificate's subject
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// SASL mechanisms offered, comma-separated [default: SCRAM-SHA-256,SCRAM-SHA-512,PLAIN]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    sasl_mechanisms: Option<Vec<String>>,
    /// Create this SCRAM user at start if it does not exist, with the password in the
    /// WATERLINE_ADMIN_PASSWORD environment variable
    #[arg(long, value_name = "NAME")]
    admin_user: Option<String>,
    /// Principals allowed everything whatever the ACLs say, `;`-separated
    /// (`User:admin;User:ops`); the --admin-user is one automatically
    #[arg(long, value_name = "LIST")]
    super_users: Option<String>,
    /// Authorize requests against the ACLs (CreateAcls, `waterline acls`) [default: on exactly
    /// when a SASL listener or --tls-client-ca is configured]
    #[arg(long, value_name = "BOOL")]
    authorization: Option<bool>,
    /// TOML file with broker settings: the flags' names with underscores, and more (every key
    /// with its default is listed at the end of --help)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Create topics on first use by Metadata or Produce [default: true]
    #[arg(long, value_name = "BOOL")]
    auto_create_topics: Option<bool>,
    /// Partitions of an auto-created topic [default: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=100_000))]
    default_partitions: Option<i32>,
    /// Roll a segment when it reaches this many bytes [default: 1073741824]
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1024..))]
    segment_bytes: Option<u64>,
    /// Delete segments older than this many milliseconds [default: 604800000]
    #[arg(long, value_name = "MS")]
    retention_ms: Option<i64>,
    /// Delete oldest segments while a partition is larger than this [default: unlimited]
    #[arg(long, value_name = "BYTES")]
    retention_bytes: Option<u64>,
    /// When produce data is fsynced: `always` (before acks=1/all are answered, shared across
    /// producers) or `interval:MS` (answer at once, fsync every MS milliseconds; a crash can lose
    /// up to MS of acknowledged writes) [default: always]
    #[arg(long, value_name = "POLICY", value_parser = parse_fsync)]
    fsync: Option<FsyncPolicy>,
    /// Largest request frame accepted, in bytes [default: 104857600]
    #[arg(long, value_name = "BYTES")]
    max_frame_bytes: Option<usize>,
    /// Largest record batch accepted, in bytes [default: 1048588]
    #[arg(long, value_name = "BYTES")]
    max_message_bytes: Option<usize>,
    /// Bytes of requests being read or in flight, broker-wide; frames wait for room
    /// [default: 536870912]
    #[arg(long, value_name = "BYTES")]
    max_queued_request_bytes: Option<usize>,
    /// Lifetime of a SASL session; clients re-authenticate before it ends (KIP-368)
    /// [default: 0 = no lifetime]
    #[arg(long, value_name = "MS")]
    connections_max_reauth_ms: Option<u64>,
    /// Close connections that send nothing for this long [default: 600000]
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    connections_max_idle_ms: Option<u64>,
    /// A started request must arrive whole within this time [default: 30000]
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    request_read_timeout_ms: Option<u64>,
    /// Most connections at once; more are closed at once [default: unlimited]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_connections: Option<usize>,
    /// Most connections at once from one IP address [default: unlimited]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_connections_per_ip: Option<usize>,
    /// Most partition-log files open at once; others are opened on demand [default: half the
    /// process's open-file limit]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(4..))]
    max_open_files: Option<u64>,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}`: expected a whole number of at least 1")),
    }
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    if s == "always" {
        return Ok(FsyncPolicy::Always);
    }
    if let Some(ms) = s.strip_prefix("interval:") {
        let ms: u64 = ms
            .parse()
            .map_err(|_| format!("`{s}`: interval must be a whole number of milliseconds"))?;
        if ms == 0 {
            return Err(format!("`{s}`: interval must be at least 1 ms"));
        }
        return Ok(FsyncPolicy::Interval { ms });
    }
    Err(format!("`{s}`: expected `always` or `interval:MS`"))
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<BrokerConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                BrokerConfig::from_toml_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => BrokerConfig::default(),
        };
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if !self.listeners.is_empty() {
            config.listeners = self.listeners;
        }
        if let Some(v) = self.listen {
            // With listeners, `--listen` adds the PLAINTEXT one, first (its address is the one
            // the ready line names).
            if config.listeners.is_empty() {
                config.listen = v;
            } else {
                config.listeners.insert(0, format!("PLAINTEXT://{v}"));
            }
        }
        if let Some(v) = self.advertised {
            config.advertised = Some(v);
        }
        if let Some(v) = self.http_listen {
            config.http_listen = Some(v);
        }
        if !self.advertised_listeners.is_empty() {
            config.advertised_listeners = self.advertised_listeners;
        }
        if let Some(v) = self.tls_cert {
            config.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            config.tls_key = Some(v);
        }
        if let Some(v) = self.tls_client_ca {
            config.tls_client_ca = Some(v);
        }
        if let Some(v) = self.sasl_mechanisms {
            config.sasl_mechanisms = v;
        }
        if let Some(v) = self.admin_user {
            config.admin_user = Some(v);
        }
        if let Some(v) = self.super_users {
            config.super_users = vec![v];
        }
        if let Some(v) = self.authorization {
            config.authorization = Some(v);
        }
        if let Some(v) = self.auto_create_topics {
            config.auto_create_topics = v;
        }
        if let Some(v) = self.default_partitions {
            config.default_partitions = v;
        }
        if let Some(v) = self.segment_bytes {
            config.segment_bytes = v;
        }
        if let Some(v) = self.retention_ms {
            config.retention_ms = Some(v);
        }
        if let Some(v) = self.retention_bytes {
            config.retention_bytes = Some(v);
        }
        if let Some(v) = self.fsync {
            config.fsync = v;
        }
        if let Some(v) = self.max_frame_bytes {
            config.max_frame_bytes = v;
        }
        if let Some(v) = self.max_message_bytes {
            config.max_message_bytes = v;
        }
        if let Some(v) = self.max_queued_request_bytes {
            config.max_queued_request_bytes = v;
        }
        if let Some(v) = self.connections_max_idle_ms {
            config.connections_max_idle_ms = v;
        }
        if let Some(v) = self.connections_max_reauth_ms {
            config.connections_max_reauth_ms = v;
        }
        if let Some(v) = self.request_read_timeout_ms {
            config.request_read_timeout_ms = v;
        }
        if let Some(v) = self.max_connections {
            config.max_connections = Some(v);
        }
        if let Some(v) = self.max_connections_per_ip {
            config.max_connections_per_ip = Some(v);
        }
        if let Some(v) = self.max_open_files {
            config.max_open_files = Some(usize::try_from(v).unwrap_or(usize::MAX));
        }
        Ok(config)
    }
}

/// Runs the broker until SIGTERM or SIGINT, then shuts it down cleanly.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let data_dir = config.data_dir.clone();
        // The HTTP listener (when configured) also serves the dashboard at `/`, fed from the
        // broker's own state once it runs.
        let dashboard = waterline_admin::dashboard::SharedDashboard::default();
        let routes = waterline_admin::dashboard::router(dashboard.clone());
        let broker = Broker::start_with_routes(config, routes)
            .await
            .with_context(|| format!("starting the broker on data dir {}", data_dir.display()))?;
        if broker.http_addr().is_some() {
            tokio::spawn(crate::dashboard::feed(broker.state().clone(), dashboard));
        }
        // With several listeners, one line each before the ready line, so a reader of the
        // ready line has them all; with one, the ready line stays the first line.
        if broker.listeners().len() > 1 {
            for (protocol, addr) in broker.listeners() {
                println!("waterline: listener {protocol}://{addr}");
            }
        }
        // The one line tools and tests wait for: keep its shape stable.
        println!(
            "waterline: ready on {} (data dir {})",
            broker.local_addr(),
            data_dir.display()
        );
        if let Some(addr) = broker.http_addr() {
            println!("waterline: metrics on http://{addr}/metrics");
        }
        wait_for_stop_signal().await?;
        tracing::info!("stop signal received, shutting down");
        broker
            .shutdown()
            .await
            .context("shutting down the broker")?;
        tracing::info!("clean shutdown complete");
        Ok(())
    })
}

async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// One key of the config file: its TOML name (`groups.x` for `[groups]` keys), its default as
/// TOML (or why it has none), and what it does.
pub struct ConfigKey {
    /// The key; `section.key` for keys of a `[section]`.
    pub name: &'static str,
    /// The default, as TOML, or `(unset: ...)`.
    pub default: String,
    /// What it sets.
    pub help: &'static str,
}

/// Every key `waterline serve --config` accepts, with the defaults of this build (read from
/// `BrokerConfig::default()`, so they cannot drift from what the broker uses).
pub fn config_keys() -> Vec<ConfigKey> {
    let d = BrokerConfig::default();
    let g = &d.groups;
    let q = |s: &str| format!("{s:?}");
    fn opt<T: std::fmt::Display>(v: Option<T>, unset: &str) -> String {
        v.map(|x| x.to_string())
            .unwrap_or_else(|| format!("(unset: {unset})"))
    }
    let key = |name, default, help| ConfigKey {
        name,
        default,
        help,
    };
    vec![
        key(
            "data_dir",
            q(&d.data_dir.display().to_string()),
            "directory of the log, the offsets and the broker's state",
        ),
        key(
            "listen",
            q(&d.listen),
            "address to accept Kafka connections on",
        ),
        key(
            "advertised",
            opt(d.advertised.as_deref().map(q), "the listen address"),
            "address clients are told to connect to (first listener)",
        ),
        key(
            "listeners",
            "[]".to_string(),
            "listeners as \"PROTOCOL://HOST:PORT\" (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL); empty: PLAINTEXT on listen",
        ),
        key(
            "advertised_listeners",
            "[]".to_string(),
            "advertised address per protocol, \"PROTOCOL://HOST:PORT\"",
        ),
        key(
            "tls_cert",
            opt(
                d.tls_cert.as_ref().map(|p| q(&p.display().to_string())),
                "no TLS",
            ),
            "PEM certificate chain of TLS listeners (reloaded on SIGHUP)",
        ),
        key(
            "tls_key",
            opt(
                d.tls_key.as_ref().map(|p| q(&p.display().to_string())),
                "no TLS",
            ),
            "PEM private key of tls_cert",
        ),
        key(
            "tls_client_ca",
            opt(
                d.tls_client_ca
                    .as_ref()
                    .map(|p| q(&p.display().to_string())),
                "no client certificates",
            ),
            "PEM CAs of client certificates (mutual TLS; subject is the SSL principal)",
        ),
        key(
            "sasl_mechanisms",
            format!(
                "[{}]",
                d.sasl_mechanisms
                    .iter()
                    .map(|m| q(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "SASL mechanisms offered on SASL listeners",
        ),
        key(
            "connections_max_reauth_ms",
            d.connections_max_reauth_ms.to_string(),
            "SASL session lifetime; clients re-authenticate before it ends (0: none)",
        ),
        key(
            "failed_authentication_delay_ms",
            d.failed_authentication_delay_ms.to_string(),
            "a failed authentication is answered after this delay, then closed",
        ),
        key(
            "sasl_max_receive_bytes",
            d.sasl_max_receive_bytes.to_string(),
            "largest frame accepted before SASL authentication",
        ),
        key(
            "admin_user",
            opt(d.admin_user.as_deref().map(q), "none"),
            "SCRAM user created at start (password: WATERLINE_ADMIN_PASSWORD)",
        ),
        key(
            "super_users",
            "[]".to_string(),
            "principals allowed everything (`User:a;User:b`); admin_user is one",
        ),
        key(
            "authorization",
            opt(d.authorization, "on when SASL or mutual TLS is configured"),
            "check requests against the ACLs",
        ),
        key(
            "scram_iterations",
            d.scram_iterations.to_string(),
            "PBKDF2 iterations of credentials the broker creates",
        ),
        key(
            "http_listen",
            opt(d.http_listen.as_deref().map(q), "off"),
            "address of the HTTP listener: /metrics, /healthz, /readyz",
        ),
        key(
            "auto_create_topics",
            d.auto_create_topics.to_string(),
            "create topics on first use by Metadata or Produce",
        ),
        key(
            "default_partitions",
            d.default_partitions.to_string(),
            "partitions of an auto-created topic",
        ),
        key(
            "segment_bytes",
            d.segment_bytes.to_string(),
            "roll a segment at this size",
        ),
        key(
            "segment_ms",
            opt(d.segment_ms, "never by age"),
            "roll a segment older than this",
        ),
        key(
            "retention_ms",
            opt(d.retention_ms, "keep forever"),
            "delete segments older than this",
        ),
        key(
            "retention_bytes",
            opt(d.retention_bytes, "unlimited"),
            "delete oldest segments while a partition is larger",
        ),
        key(
            "fsync",
            q(&match d.fsync {
                FsyncPolicy::Always => "always".to_string(),
                FsyncPolicy::Interval { ms } => format!("interval:{ms}"),
            }),
            "\"always\" (before acks=1/all are answered) or \"interval:MS\"",
        ),
        key(
            "max_frame_bytes",
            d.max_frame_bytes.to_string(),
            "largest request frame accepted",
        ),
        key(
            "max_message_bytes",
            d.max_message_bytes.to_string(),
            "largest record batch accepted",
        ),
        key(
            "retention_check_ms",
            d.retention_check_ms.to_string(),
            "time between retention checks",
        ),
        key(
            "max_queued_request_bytes",
            d.max_queued_request_bytes.to_string(),
            "bytes of requests being read or in flight, broker-wide",
        ),
        key(
            "connections_max_idle_ms",
            d.connections_max_idle_ms.to_string(),
            "close connections idle this long",
        ),
        key(
            "request_read_timeout_ms",
            d.request_read_timeout_ms.to_string(),
            "a started request must arrive whole within this",
        ),
        key(
            "max_connections",
            opt(d.max_connections, "unlimited"),
            "most connections at once",
        ),
        key(
            "max_connections_per_ip",
            opt(d.max_connections_per_ip, "unlimited"),
            "most connections at once from one IP address",
        ),
        key(
            "max_open_files",
            opt(d.max_open_files, "half the open-file limit"),
            "most partition-log files open at once",
        ),
        key(
            "cleaner_threads",
            d.cleaner_threads.to_string(),
            "compaction passes at once; 0 turns compaction off",
        ),
        key(
            "cleaner_backoff_ms",
            d.cleaner_backoff_ms.to_string(),
            "how often the cleaner looks for work",
        ),
        key(
            "cleaner_dedupe_buffer_bytes",
            d.cleaner_dedupe_buffer_bytes.to_string(),
            "memory of one cleaning pass's key map (~27 bytes a key)",
        ),
        key(
            "cleaner_io_max_bytes_per_second",
            opt(d.cleaner_io_max_bytes_per_second, "unlimited"),
            "cleaner's read+write rate",
        ),
        key(
            "cleaner_thread_nice",
            d.cleaner_thread_nice.to_string(),
            "nice value of cleaning threads (0-19; higher yields the CPU to requests)",
        ),
        key(
            "transaction_max_timeout_ms",
            d.transaction_max_timeout_ms.to_string(),
            "largest transaction.timeout.ms a producer may ask for",
        ),
        key(
            "transactional_id_expiration_ms",
            d.transactional_id_expiration_ms.to_string(),
            "an idle transactional id is forgotten after this long",
        ),
        key(
            "accept_any_replication_factor",
            d.accept_any_replication_factor.to_string(),
            "create topics asking for more replicas with one (for test suites)",
        ),
        key(
            "groups.initial_rebalance_delay_ms",
            g.initial_rebalance_delay_ms.to_string(),
            "first join round of an empty group waits this long",
        ),
        key(
            "groups.offsets_retention_ms",
            g.offsets_retention_ms.to_string(),
            "offsets of a group empty this long are deleted",
        ),
        key(
            "groups.min_session_timeout_ms",
            g.min_session_timeout_ms.to_string(),
            "shortest session timeout a member may ask for",
        ),
        key(
            "groups.max_session_timeout_ms",
            g.max_session_timeout_ms.to_string(),
            "longest session timeout a member may ask for",
        ),
        key(
            "groups.offset_metadata_max_bytes",
            g.offset_metadata_max_bytes.to_string(),
            "longest commit metadata accepted",
        ),
    ]
}

/// The config file reference `waterline serve --help` ends with.
pub fn config_help() -> String {
    let keys = config_keys();
    let width = keys
        .iter()
        .map(|k| k.name.len() + 3 + k.default.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from(
        "Config file (--config FILE, TOML; a flag wins over the file), every key with its default:\n",
    );
    let mut section = "";
    for k in &keys {
        let (sec, name) = k.name.split_once('.').unwrap_or(("", k.name));
        if sec != section {
            out.push_str(&format!("  [{sec}]\n"));
            section = sec;
        }
        let setting = format!("{name} = {}", k.default);
        out.push_str(&format!("  {setting:<width$}  {}\n", k.help, width = width));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the config (read from its Debug form, which lists them all) is in the
    /// reference, and every default shown parses back to the default.
    #[test]
    fn the_config_reference_lists_every_key_with_its_default() {
        let debug = format!("{:?}", BrokerConfig::default());
        let keys = config_keys();
        let names: Vec<&str> = keys.iter().map(|k| k.name).collect();
        let mut fields = Vec::new();
        let mut section = String::new();
        for part in debug.split([',', '{']) {
            let part = part.trim();
            if let Some((field, value)) = part.split_once(": ") {
                let field = field.trim_start_matches(['{', ' ']);
                if value.starts_with("GroupConfig") {
                    section = format!("{field}.");
                    continue;
                }
                if field.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !field.is_empty() {
                    fields.push(format!("{section}{field}"));
                }
            }
        }
        for f in &fields {
            if f == "fsync.ms" {
                continue;
            }
            assert!(
                names.contains(&f.as_str()),
                "{f} is missing from serve --help"
            );
        }
        assert!(fields.len() >= names.len() - 1, "{fields:?}");
        let mut toml = String::new();
        let mut groups = String::from("[groups]\n");
        for k in &keys {
            if k.default.starts_with("(unset") {
                continue;
            }
            match k.name.strip_prefix("groups.") {
                Some(name) => groups.push_str(&format!("{name} = {}\n", k.default)),
                None => toml.push_str(&format!("{} = {}\n", k.name, k.default)),
            }
        }
        let parsed = BrokerConfig::from_toml_str(&(toml + &groups)).unwrap();
        assert_eq!(format!("{parsed:?}"), debug);
    }
}
