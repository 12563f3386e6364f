//! Command-line layer: `waterline groups`, `waterline offsets`, `waterline lag`,
//! `waterline topics`, `waterline users`.
//!
//! Exit codes: 0 success, 1 operation failed (including partial failure), 2 usage error.
//! Usage errors that clap cannot see (no reset mode, two modes, malformed datetime, unknown
//! topic) are detected here and reported as one line. Rendering lives in [`render`] and works
//! on plain data, so output formats are tested without a broker.

mod groups;
mod lag;
mod offsets;
pub mod render;
mod snapshot;
mod topics;
mod users;

use std::process::ExitCode;
use std::time::Duration;

use waterline_core::TopicPartition;

use crate::client::{AdminClient, ClientConfig, ClusterMetadata};
use crate::error::ClientError;

pub use groups::{DescribeArgs, GroupsArgs, GroupsCommand, ListArgs, run_groups_with};
pub(crate) use lag::LagTracker;
pub use lag::{CHECK_FAILED_EXIT, LagArgs, run_lag_with};
pub use offsets::{
    DeleteArgs, ExportArgs, OffsetsArgs, OffsetsCommand, ResetArgs, run_offsets_with,
};
pub(crate) use snapshot::PartitionState;
pub use topics::{
    AlterTopicArgs, CreateTopicArgs, DeleteTopicsArgs, DescribeTopicsArgs, ListTopicsArgs,
    TopicsArgs, TopicsCommand, alter_ops, listed_topics, parse_config_keys, parse_config_pairs,
    run_topics_with, shown_configs,
};

/// Runs `waterline groups ...` on standard output/error; returns the exit code.
pub async fn run_groups(args: GroupsArgs) -> ExitCode {
    ExitCode::from(run_groups_with(args, &mut std::io::stdout(), &mut std::io::stderr()).await)
}

/// Runs `waterline offsets ...` on standard output/error; returns the exit code.
pub async fn run_offsets(args: OffsetsArgs) -> ExitCode {
    ExitCode::from(run_offsets_with(args, &mut std::io::stdout(), &mut std::io::stderr()).await)
}

pub use users::{UsersArgs, UsersCommand, run_users_with};

/// Runs `waterline users ...` on standard output/error; returns the exit code.
pub async fn run_users(args: UsersArgs) -> ExitCode {
    ExitCode::from(run_users_with(args, &mut std::io::stdout(), &mut std::io::stderr()).await)
}

/// Runs `waterline topics ...` on standard output/error; returns the exit code.
pub async fn run_topics(args: TopicsArgs) -> ExitCode {
    ExitCode::from(run_topics_with(args, &mut std::io::stdout(), &mut std::io::stderr()).await)
}

/// Runs `waterline lag ...` on standard output/error; returns the exit code. `--watch`
/// redraws in place when standard output is a terminal.
pub async fn run_lag(args: LagArgs) -> ExitCode {
    use std::io::IsTerminal;
    let in_place = std::io::stdout().is_terminal();
    ExitCode::from(
        run_lag_with(
            args,
            in_place,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )
        .await,
    )
}

/// Connection options shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Broker address(es), comma-separated `host[:port]` (port 9092 when left out).
    #[arg(
        long,
        env = "WATERLINE_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT"
    )]
    pub bootstrap_server: String,
    /// Timeout for connecting and for each request, in milliseconds.
    #[arg(
        long,
        env = "WATERLINE_TIMEOUT_MS",
        default_value_t = DEFAULT_TIMEOUT_MS,
        value_name = "MS"
    )]
    pub timeout_ms: u64,
    /// Kafka client properties file (security.protocol, sasl.mechanism, sasl.username,
    /// sasl.password or sasl.jaas.config, ssl.ca.location, ssl.certificate.location,
    /// ssl.key.location), as Kafka's tools take it.
    #[arg(long, env = "WATERLINE_COMMAND_CONFIG", value_name = "FILE")]
    pub command_config: Option<std::path::PathBuf>,
}

/// The default of `--timeout-ms`.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// The Kafka port a bootstrap address without one gets, as Kafka's own tools assume.
pub const DEFAULT_KAFKA_PORT: u16 = 9092;

/// `host` -> `host:9092`; `host:port` and `[v6]:port` are kept; a bare IPv6 address gets
/// brackets and the port.
pub fn with_default_port(addr: &str) -> String {
    let addr = addr.trim();
    if addr.starts_with('[') {
        return if addr.ends_with(']') {
            format!("{addr}:{DEFAULT_KAFKA_PORT}")
        } else {
            addr.to_string()
        };
    }
    match addr.matches(':').count() {
        0 => format!("{addr}:{DEFAULT_KAFKA_PORT}"),
        1 => addr.to_string(),
        // More than one colon: a bare IPv6 address.
        _ => format!("[{addr}]:{DEFAULT_KAFKA_PORT}"),
    }
}

impl ConnectionArgs {
    /// The bootstrap addresses, each with a port.
    pub fn bootstrap(&self) -> Vec<String> {
        self.bootstrap_server
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(with_default_port)
            .collect()
    }

    /// The TLS and SASL settings of `--command-config` (none without it).
    pub fn security(&self) -> Result<crate::client::Security, CliError> {
        let Some(path) = &self.command_config else {
            return Ok(crate::client::Security::plaintext());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("--command-config {}: {e}", path.display())))?;
        crate::client::security::parse_properties(&text)
            .and_then(|p| crate::client::Security::from_properties(&p))
            .map_err(|e| CliError::Usage(format!("--command-config {}: {e}", path.display())))
    }

    /// Connects an [`AdminClient`].
    pub async fn connect(&self) -> Result<AdminClient, CliError> {
        let mut config = ClientConfig::new(self.bootstrap());
        config.request_timeout = Duration::from_millis(self.timeout_ms.max(1));
        config.security = std::sync::Arc::new(self.security()?);
        AdminClient::connect(config).await.map_err(CliError::from)
    }

    /// The flags that point a printed command (an undo, a plan to apply) at this same
    /// cluster, shell-quoted: `--bootstrap-server ADDRS`, and `--timeout-ms MS` when not the
    /// default.
    pub fn flags(&self) -> String {
        let mut out = format!(
            "--bootstrap-server {}",
            shell_quote(&self.bootstrap().join(","))
        );
        if self.timeout_ms != DEFAULT_TIMEOUT_MS {
            out.push_str(&format!(" --timeout-ms {}", self.timeout_ms));
        }
        if let Some(path) = &self.command_config {
            out.push_str(&format!(
                " --command-config {}",
                shell_quote(&path.display().to_string())
            ));
        }
        out
    }
}

/// Quotes `s` for a POSIX shell when it holds anything but safe characters.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/@%+=[]".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// Output format of a command whose output has no flat CSV form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableOrJson {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

impl From<TableOrJson> for OutputFormat {
    fn from(f: TableOrJson) -> Self {
        match f {
            TableOrJson::Table => OutputFormat::Table,
            TableOrJson::Json => OutputFormat::Json,
        }
    }
}

/// Why a command failed, which decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The operation failed: exit code 1.
    #[error("{0}")]
    Failed(String),
    /// `lag --check` found a partition at or past the chosen status: exit code 3.
    #[error("check failed: {0}")]
    Check(String),
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        // The one broker answer an operator meets by mistyping a name: say it in words.
        if let ClientError::Kafka {
            code: crate::codes::GROUP_ID_NOT_FOUND,
            context,
            ..
        } = &e
            && let Some(group) = context.strip_prefix("group ")
        {
            return CliError::Failed(format!("group '{group}' does not exist"));
        }
        CliError::Failed(e.to_string())
    }
}

impl From<crate::error::FileError> for CliError {
    fn from(e: crate::error::FileError) -> Self {
        CliError::Failed(e.to_string())
    }
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
            CliError::Check(_) => lag::CHECK_FAILED_EXIT,
        }
    }
}

/// Where a command writes: standard output and standard error, or buffers in tests.
pub type Out<'a> = &'a mut (dyn std::io::Write + Send);

/// Prints the error (one line) to `err` and maps the result to an exit code.
pub(crate) fn finish(command: &str, result: Result<(), CliError>, err: Out<'_>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            // One line: newlines inside messages would break scripts that read stderr.
            let msg = e.to_string().replace('\n', " ");
            let _ = writeln!(err, "waterline {command}: error: {msg}");
            e.exit_code()
        }
    }
}

/// Whether a described group exists, for `groups describe` and `lag` alike: it has members
/// or committed offsets, or the broker knows it (no GROUP_ID_NOT_FOUND) in a state other than
/// Dead or Empty (a rebalance in progress). A group with neither members nor offsets is what
/// Kafka removes, and what brokers report for ids they never saw.
pub(crate) fn group_exists(
    error_code: i16,
    state: &str,
    has_members: bool,
    has_offsets: bool,
) -> bool {
    has_members
        || has_offsets
        || (error_code != crate::codes::GROUP_ID_NOT_FOUND
            && !matches!(state, "Dead" | "Empty" | ""))
}

/// Milliseconds since the Unix epoch (the CLI is the only place that reads the clock).
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Per-partition bytes asked for in the batched read of next records (time lag).
const NEXT_RECORD_BATCH_BYTES: i32 = 64 << 10;
/// Partitions retried one by one with a larger limit when the batched read came back cut.
const NEXT_RECORD_RETRIES: usize = 32;

/// Timestamps of the next record each group consumer will read: the first data record at or
/// after its committed offset, for partitions with lag. Its age is the exact time lag (also on
/// compacted topics and past transaction markers, where no record sits at the committed offset
/// itself). One batched Fetch per leader; partitions whose first batch did not fit, or that the
/// batch could not answer (a partition error fails a whole Fetch), are retried singly (up to a
/// bound), and any left unreadable are simply absent: time lag then reads unknown, and the
/// command goes on.
pub(crate) async fn next_record_times(
    client: &mut AdminClient,
    committed: &std::collections::BTreeMap<TopicPartition, i64>,
    log_ends: &std::collections::BTreeMap<TopicPartition, Option<i64>>,
) -> std::collections::BTreeMap<TopicPartition, i64> {
    let behind: Vec<(TopicPartition, i64)> = committed
        .iter()
        .filter(|(tp, c)| {
            log_ends
                .get(*tp)
                .copied()
                .flatten()
                .is_some_and(|e| **c < e)
        })
        .map(|(tp, c)| (tp.clone(), *c))
        .collect();
    let mut out = std::collections::BTreeMap::new();
    if behind.is_empty() {
        return out;
    }
    let found = client
        .fetch_records(&behind, NEXT_RECORD_BATCH_BYTES)
        .await
        .unwrap_or_default();
    let mut missing = Vec::new();
    for (tp, offset) in &behind {
        match found.get(tp).copied().flatten() {
            Some(r) => {
                out.insert(tp.clone(), r.timestamp_ms);
            }
            None => missing.push((tp.clone(), *offset)),
        }
    }
    for (tp, offset) in missing.into_iter().take(NEXT_RECORD_RETRIES) {
        if let Ok(Some(r)) = client.fetch_record(&tp, offset).await {
            out.insert(tp, r.timestamp_ms);
        }
    }
    out
}

/// A parsed `--topic T[:P,P...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub topic: String,
    /// Partitions, or `None` for all.
    pub partitions: Option<Vec<i32>>,
}

/// Parses `T` or `T:P,P...`.
pub fn parse_topic_spec(s: &str) -> Result<TopicSpec, CliError> {
    let (topic, parts) = match s.rsplit_once(':') {
        Some((t, p)) => (t, Some(p)),
        None => (s, None),
    };
    if topic.is_empty() {
        return Err(CliError::Usage(format!("--topic '{s}': empty topic name")));
    }
    let partitions =
        match parts {
            None => None,
            Some(p) => {
                Some(
                    p.split(',')
                        .map(|x| {
                            x.trim().parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        CliError::Usage(format!(
                            "--topic '{s}': partition '{x}' is not a non-negative integer"
                        ))
                    })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
        };
    Ok(TopicSpec {
        topic: topic.to_string(),
        partitions,
    })
}

/// Expands topic specs against metadata; unknown topics or partitions are usage errors.
pub fn resolve_topics(
    specs: &[TopicSpec],
    meta: &ClusterMetadata,
) -> Result<Vec<TopicPartition>, CliError> {
    let mut out = std::collections::BTreeSet::new();
    for spec in specs {
        let Some(topic) = meta.topic(&spec.topic) else {
            return Err(CliError::Usage(format!("unknown topic '{}'", spec.topic)));
        };
        match &spec.partitions {
            None => {
                for p in &topic.partitions {
                    out.insert(TopicPartition::new(spec.topic.clone(), p.partition));
                }
            }
            Some(ps) => {
                for p in ps {
                    if !topic.partitions.iter().any(|x| x.partition == *p) {
                        return Err(CliError::Usage(format!(
                            "topic '{}' has no partition {p} ({} partitions)",
                            spec.topic,
                            topic.partitions.len()
                        )));
                    }
                    out.insert(TopicPartition::new(spec.topic.clone(), *p));
                }
            }
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{PartitionInfo, TopicInfo};

    #[test]
    fn bootstrap_addresses_without_a_port_get_9092() {
        for (given, expect) in [
            ("127.0.0.1", "127.0.0.1:9092"),
            ("kafka.internal", "kafka.internal:9092"),
            ("h:19092", "h:19092"),
            ("::1", "[::1]:9092"),
            ("[::1]", "[::1]:9092"),
            ("[::1]:9093", "[::1]:9093"),
        ] {
            assert_eq!(with_default_port(given), expect, "{given}");
        }
        let conn = ConnectionArgs {
            bootstrap_server: "a, b:1".into(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            command_config: None,
        };
        assert_eq!(conn.bootstrap(), vec!["a:9092", "b:1"]);
        assert_eq!(conn.flags(), "--bootstrap-server a:9092,b:1");
        let conn = ConnectionArgs {
            bootstrap_server: "h:1".into(),
            timeout_ms: 500,
            command_config: Some("/etc/my client.properties".into()),
        };
        assert_eq!(
            conn.flags(),
            "--bootstrap-server h:1 --timeout-ms 500 --command-config '/etc/my client.properties'"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/tmp/a-b_c.csv"), "/tmp/a-b_c.csv");
        assert_eq!(shell_quote("my group"), "'my group'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn group_id_not_found_reads_as_words() {
        let e = CliError::from(ClientError::Kafka {
            api: "OffsetDelete",
            context: "group billing".into(),
            code: crate::codes::GROUP_ID_NOT_FOUND,
        });
        assert_eq!(e.to_string(), "group 'billing' does not exist");
    }

    #[test]
    fn topic_specs() {
        assert_eq!(
            parse_topic_spec("orders").unwrap(),
            TopicSpec {
                topic: "orders".into(),
                partitions: None
            }
        );
        assert_eq!(
            parse_topic_spec("orders:0,2").unwrap().partitions,
            Some(vec![0, 2])
        );
        let err = parse_topic_spec("orders:x").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "--topic 'orders:x': partition 'x' is not a non-negative integer"
        );
    }

    #[test]
    fn a_group_exists_when_it_has_members_offsets_or_a_live_state() {
        use crate::codes::{GROUP_ID_NOT_FOUND, NONE};
        // (error code, state, members, offsets) -> exists
        for (code, state, members, offsets, exists) in [
            (GROUP_ID_NOT_FOUND, "Dead", false, false, false),
            // Offsets or members prove the group, whatever else the broker said.
            (GROUP_ID_NOT_FOUND, "Dead", false, true, true),
            (
                GROUP_ID_NOT_FOUND,
                "PreparingRebalance",
                false,
                false,
                false,
            ),
            (NONE, "Dead", false, false, false),
            (NONE, "Empty", false, false, false),
            (NONE, "Empty", false, true, true),
            (NONE, "Dead", false, true, true),
            (NONE, "Stable", true, false, true),
            (NONE, "PreparingRebalance", false, false, true),
        ] {
            assert_eq!(
                group_exists(code, state, members, offsets),
                exists,
                "{code} {state} {members} {offsets}"
            );
        }
    }

    #[test]
    fn unknown_topics_and_partitions_are_usage_errors() {
        let meta = ClusterMetadata {
            brokers: vec![],
            controller_id: None,
            topics: vec![TopicInfo {
                name: "t".into(),
                error_code: 0,
                internal: false,
                partitions: (0..2)
                    .map(|p| PartitionInfo {
                        partition: p,
                        leader: 1,
                        error_code: 0,
                        replicas: vec![1],
                        isr: vec![1],
                    })
                    .collect(),
            }],
        };
        let all = resolve_topics(&[parse_topic_spec("t").unwrap()], &meta).unwrap();
        assert_eq!(all.len(), 2);
        let err = resolve_topics(&[parse_topic_spec("nope").unwrap()], &meta).unwrap_err();
        assert_eq!(
            (err.exit_code(), err.to_string()),
            (2, "unknown topic 'nope'".to_string())
        );
        let err = resolve_topics(&[parse_topic_spec("t:5").unwrap()], &meta).unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic 't' has no partition 5 (2 partitions)"
        );
    }
}
