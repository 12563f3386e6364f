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
    /// Address to accept Kafka connections on [default: 127.0.0.1:9092]
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to [default: the listen address]
    #[arg(long, value_name = "HOST:PORT")]
    advertised: Option<String>,
    /// TOML file with broker settings (same names as the flags, with underscores)
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
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.advertised {
            config.advertised = Some(v);
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
        if let Some(v) = self.request_read_timeout_ms {
            config.request_read_timeout_ms = v;
        }
        if let Some(v) = self.max_connections {
            config.max_connections = Some(v);
        }
        if let Some(v) = self.max_connections_per_ip {
            config.max_connections_per_ip = Some(v);
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
        let broker = Broker::start(config)
            .await
            .with_context(|| format!("starting the broker on data dir {}", data_dir.display()))?;
        // The one line tools and tests wait for: keep its shape stable.
        println!(
            "waterline: ready on {} (data dir {})",
            broker.local_addr(),
            data_dir.display()
        );
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
