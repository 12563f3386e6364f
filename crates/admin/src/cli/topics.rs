//! `waterline topics list | describe | create | delete | alter`.
//!
//! kafka-topics / kafka-configs parity for the flags that matter: `--partitions`,
//! `--replication-factor`, `--config KEY=VALUE` (repeatable), `--delete-config KEY`,
//! `--if-not-exists`, `--if-exists`. Only standard APIs are used (Metadata, ListOffsets,
//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, IncrementalAlterConfigs), so
//! the commands work against Kafka and Redpanda as well as `waterline serve`.

use waterline_core::TopicPartition;

use super::render::{TopicPartitionRow, TopicView, render_topic_describe, render_topic_list};
use super::{CliError, ConnectionArgs, Out, OutputFormat, TableOrJson, finish};
use crate::client::{
    AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource, NewTopic, OffsetSpec, TopicInfo,
};
use crate::codes;

/// `waterline topics ...`.
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    /// The topics subcommand.
    #[command(subcommand)]
    pub command: TopicsCommand,
}

/// Topics subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TopicsCommand {
    /// List topics with their partition counts.
    List(ListTopicsArgs),
    /// Describe topics: config overrides, and partitions with log start and end offsets and
    /// size on disk.
    ///
    /// The size (bytes of the leader replica's segment files) comes from DescribeLogDirs; a
    /// broker that does not answer it shows `-`.
    Describe(DescribeTopicsArgs),
    /// Create a topic, with config overrides.
    Create(CreateTopicArgs),
    /// Delete topics and their data.
    Delete(DeleteTopicsArgs),
    /// Set or delete a topic's config overrides, and grow its partitions.
    Alter(AlterTopicArgs),
}

/// `waterline topics list`.
#[derive(Debug, clap::Args)]
pub struct ListTopicsArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Also list internal topics (e.g. `__consumer_offsets` on Kafka).
    #[arg(long)]
    pub include_internal: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// `waterline topics describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeTopicsArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Topic to describe; repeatable. Without it, every topic.
    #[arg(long, value_name = "TOPIC")]
    pub topic: Vec<String>,
    /// Show every config with its source (topic, static-broker, dynamic-broker,
    /// dynamic-default, default), not only the topic's overrides.
    #[arg(long)]
    pub all_configs: bool,
    /// Without --topic: also describe internal topics.
    #[arg(long)]
    pub include_internal: bool,
    /// Output format (configs and partitions have no single CSV shape).
    #[arg(long, value_enum, default_value = "table")]
    pub output: TableOrJson,
}

/// `waterline topics create`.
#[derive(Debug, clap::Args)]
pub struct CreateTopicArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The topic to create.
    #[arg(long, value_name = "TOPIC", required = true)]
    pub topic: String,
    /// Number of partitions (default: the broker's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: Option<i32>,
    /// Replication factor (default: the broker's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i16).range(1..))]
    pub replication_factor: Option<i16>,
    /// A topic config override, KEY=VALUE (e.g. cleanup.policy=compact); repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Succeed without changing anything if the topic already exists.
    #[arg(long)]
    pub if_not_exists: bool,
    /// Only ask the broker to check the request; create nothing.
    #[arg(long)]
    pub validate_only: bool,
}

/// `waterline topics delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteTopicsArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Topic to delete; repeatable.
    #[arg(long, value_name = "TOPIC", required = true)]
    pub topic: Vec<String>,
    /// Succeed for topics that do not exist.
    #[arg(long)]
    pub if_exists: bool,
}

/// `waterline topics alter`.
#[derive(Debug, clap::Args)]
pub struct AlterTopicArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The topic to alter.
    #[arg(long, value_name = "TOPIC", required = true)]
    pub topic: String,
    /// Grow the topic to N partitions in total (partitions cannot be removed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: Option<i32>,
    /// Set a config override, KEY=VALUE; repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Remove a config override (back to the broker's value); repeatable or comma-separated.
    #[arg(long, value_name = "KEY")]
    pub delete_config: Vec<String>,
    /// Only ask the broker to check the changes; change nothing.
    #[arg(long)]
    pub validate_only: bool,
}

/// Runs `waterline topics ...` writing to `out`/`err`; returns the exit code.
pub async fn run_topics_with(args: TopicsArgs, out: Out<'_>, err: Out<'_>) -> u8 {
    let result = match args.command {
        TopicsCommand::List(a) => list(a, out).await,
        TopicsCommand::Describe(a) => describe(a, out).await,
        TopicsCommand::Create(a) => create(a, out).await,
        TopicsCommand::Delete(a) => delete(a, out).await,
        TopicsCommand::Alter(a) => alter(a, out).await,
    };
    finish("topics", result, err)
}

/// Parses `--config KEY=VALUE` values (split at the first `=`; the value may be empty or hold
/// more `=` and commas). A missing `=`, an empty key or a key given twice is a usage error.
pub fn parse_config_pairs(values: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(values.len());
    for v in values {
        let Some((key, value)) = v.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--config '{v}': expected KEY=VALUE, e.g. cleanup.policy=compact"
            )));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(CliError::Usage(format!("--config '{v}': empty key")));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(CliError::Usage(format!(
                "--config: '{key}' is given more than once"
            )));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Parses `--delete-config` values (each a key, or comma-separated keys), deduplicated.
pub fn parse_config_keys(values: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        for key in v.split(',').map(str::trim) {
            if key.is_empty() {
                return Err(CliError::Usage(format!("--delete-config '{v}': empty key")));
            }
            if key.contains('=') {
                return Err(CliError::Usage(format!(
                    "--delete-config '{key}': give the key only, without a value"
                )));
            }
            if !out.iter().any(|k| k == key) {
                out.push(key.to_string());
            }
        }
    }
    Ok(out)
}

/// The IncrementalAlterConfigs operations of `topics alter`: sets, then deletes. A key both
/// set and deleted is a usage error.
pub fn alter_ops(set: &[String], delete: &[String]) -> Result<Vec<AlterConfigOp>, CliError> {
    let set = parse_config_pairs(set)?;
    let delete = parse_config_keys(delete)?;
    if let Some((k, _)) = set.iter().find(|(k, _)| delete.contains(k)) {
        return Err(CliError::Usage(format!(
            "'{k}' is both set (--config) and deleted (--delete-config)"
        )));
    }
    Ok(set
        .into_iter()
        .map(|(k, v)| AlterConfigOp::Set(k, v))
        .chain(delete.into_iter().map(AlterConfigOp::Delete))
        .collect())
}

/// The configs `topics describe` shows: the topic's own overrides, or with `all` every
/// entry; sorted by name.
pub fn shown_configs(entries: Vec<ConfigEntry>, all: bool) -> Vec<ConfigEntry> {
    let mut shown: Vec<ConfigEntry> = entries
        .into_iter()
        .filter(|e| all || e.source == ConfigSource::Topic)
        .collect();
    shown.sort_by(|a, b| a.name.cmp(&b.name));
    shown
}

/// Topics to list or describe when none is named: without errors, internal ones only when
/// asked, sorted by name.
pub fn listed_topics(topics: Vec<TopicInfo>, include_internal: bool) -> Vec<TopicInfo> {
    let mut out: Vec<TopicInfo> = topics
        .into_iter()
        .filter(|t| t.error_code == codes::NONE && (include_internal || !t.internal))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

async fn list(args: ListTopicsArgs, out: Out<'_>) -> Result<(), CliError> {
    let mut client = args.conn.connect().await?;
    let meta = client.metadata(None).await?;
    let topics = listed_topics(meta.topics, args.include_internal);
    let _ = write!(out, "{}", render_topic_list(&topics, args.output));
    Ok(())
}

async fn describe(args: DescribeTopicsArgs, out: Out<'_>) -> Result<(), CliError> {
    let mut client = args.conn.connect().await?;
    let topics: Vec<TopicInfo> = if args.topic.is_empty() {
        listed_topics(client.metadata(None).await?.topics, args.include_internal)
    } else {
        let mut wanted: Vec<String> = Vec::new();
        for t in &args.topic {
            if !wanted.contains(t) {
                wanted.push(t.clone());
            }
        }
        let meta = client.metadata(Some(&wanted)).await?;
        let mut found = Vec::with_capacity(wanted.len());
        for name in &wanted {
            let code = meta
                .topics
                .iter()
                .find(|t| &t.name == name)
                .map_or(codes::UNKNOWN_TOPIC_OR_PARTITION, |t| t.error_code);
            match meta.topic(name) {
                Some(t) => found.push(t.clone()),
                None => {
                    let why = if code == codes::UNKNOWN_TOPIC_OR_PARTITION {
                        ": the topic does not exist"
                    } else {
                        ""
                    };
                    return Err(CliError::Failed(format!(
                        "Metadata failed for topic {name}: {}{why}",
                        codes::describe(code)
                    )));
                }
            }
        }
        found
    };
    // Partitions without a leader (or with an error) cannot answer ListOffsets: their
    // offsets show as `-` rather than failing the whole description.
    let partitions: Vec<TopicPartition> = topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.leader >= 0 && p.error_code == codes::NONE)
                .map(|p| TopicPartition::new(t.name.clone(), p.partition))
        })
        .collect();
    let at = |spec: OffsetSpec| -> Vec<(TopicPartition, OffsetSpec)> {
        partitions.iter().map(|tp| (tp.clone(), spec)).collect()
    };
    let (starts, ends) = if partitions.is_empty() {
        Default::default()
    } else {
        (
            client.list_offsets(&at(OffsetSpec::Earliest)).await?,
            client.list_offsets(&at(OffsetSpec::Latest)).await?,
        )
    };
    // Sizes are extra: a broker without DescribeLogDirs (or refusing it, e.g. unauthorised)
    // leaves them `-` instead of failing the description.
    let sizes = if partitions.is_empty() {
        Default::default()
    } else {
        client
            .describe_log_dirs(&partitions)
            .await
            .unwrap_or_default()
    };
    let resources: Vec<ConfigResource> = topics
        .iter()
        .map(|t| ConfigResource::Topic(t.name.clone()))
        .collect();
    let configs = client.describe_configs(&resources, false).await?;
    let mut views = Vec::with_capacity(topics.len());
    for (t, c) in topics.into_iter().zip(configs) {
        let entries = c.result.map_err(|e| CliError::Failed(e.to_string()))?;
        let rows = t
            .partitions
            .iter()
            .map(|p| {
                let tp = TopicPartition::new(t.name.clone(), p.partition);
                TopicPartitionRow {
                    partition: p.partition,
                    leader: p.leader,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    log_start: starts.get(&tp).copied().flatten(),
                    log_end: ends.get(&tp).copied().flatten(),
                    size: sizes.get(&tp).copied(),
                }
            })
            .collect();
        views.push(TopicView {
            topic: t.name,
            internal: t.internal,
            partitions: rows,
            configs: shown_configs(entries, args.all_configs),
            all_configs: args.all_configs,
        });
    }
    let _ = write!(out, "{}", render_topic_describe(&views, args.output.into()));
    Ok(())
}

async fn create(args: CreateTopicArgs, out: Out<'_>) -> Result<(), CliError> {
    // Checked before connecting: a usage error must not depend on the broker being up.
    let configs = parse_config_pairs(&args.config)?;
    let mut client = args.conn.connect().await?;
    let topic = NewTopic {
        name: args.topic.clone(),
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        configs,
    };
    let outcome = client
        .create_topics(std::slice::from_ref(&topic), args.validate_only)
        .await?
        .into_iter()
        .next();
    let name = &args.topic;
    match outcome.map(|o| o.result) {
        Some(Ok(())) if args.validate_only => {
            let _ = writeln!(
                out,
                "Topic '{name}' can be created (validate only: nothing changed)."
            );
        }
        Some(Ok(())) => {
            let _ = writeln!(out, "Created topic '{name}'.");
        }
        Some(Err(e)) if e.code == codes::TOPIC_ALREADY_EXISTS && args.if_not_exists => {
            let _ = writeln!(out, "Topic '{name}' already exists.");
        }
        Some(Err(e)) => return Err(CliError::Failed(e.to_string())),
        None => {
            return Err(CliError::Failed(format!(
                "CreateTopics: no answer for topic {name}"
            )));
        }
    }
    Ok(())
}

async fn delete(args: DeleteTopicsArgs, out: Out<'_>) -> Result<(), CliError> {
    let mut topics: Vec<String> = Vec::new();
    for t in &args.topic {
        if !topics.contains(t) {
            topics.push(t.clone());
        }
    }
    let mut client = args.conn.connect().await?;
    let outcomes = client.delete_topics(&topics).await?;
    let mut failed = Vec::new();
    for o in outcomes {
        match o.result {
            Ok(()) => {
                let _ = writeln!(out, "Deleted topic '{}'.", o.name);
            }
            Err(e) if e.code == codes::UNKNOWN_TOPIC_OR_PARTITION && args.if_exists => {
                let _ = writeln!(out, "Topic '{}' does not exist.", o.name);
            }
            Err(e) => failed.push(e.to_string()),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(failed.join("; ")))
    }
}

/// What `topics alter` changed, for its one-line report.
fn describe_ops(ops: &[AlterConfigOp]) -> String {
    ops.iter()
        .map(|op| match op {
            AlterConfigOp::Set(k, v) => format!("set {k}={v}"),
            AlterConfigOp::Delete(k) => format!("deleted {k}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn alter(args: AlterTopicArgs, out: Out<'_>) -> Result<(), CliError> {
    let ops = alter_ops(&args.config, &args.delete_config)?;
    if ops.is_empty() && args.partitions.is_none() {
        return Err(CliError::Usage(
            "topics alter: give --partitions N, --config KEY=VALUE or --delete-config KEY".into(),
        ));
    }
    let name = args.topic.clone();
    let resource = ConfigResource::Topic(name.clone());
    let grow = args.partitions.map(|n| vec![(name.clone(), n)]);
    let mut client = args.conn.connect().await?;
    // Both changes are checked by the broker before either is applied, so a refused config
    // does not leave the partitions grown (and the other way round).
    let passes: &[bool] = if args.validate_only {
        &[true]
    } else {
        &[true, false]
    };
    for &validate_only in passes {
        if !ops.is_empty() {
            client
                .incremental_alter_configs(&resource, &ops, validate_only)
                .await?
                .map_err(|e| CliError::Failed(e.to_string()))?;
        }
        if let Some(grow) = &grow {
            for o in client.create_partitions(grow, validate_only).await? {
                o.result.map_err(|e| CliError::Failed(e.to_string()))?;
            }
        }
    }
    let note = if args.validate_only {
        " (validate only: nothing changed)"
    } else {
        ""
    };
    if !ops.is_empty() {
        let verb = if args.validate_only {
            "Can update"
        } else {
            "Updated"
        };
        let _ = writeln!(
            out,
            "{verb} configs of topic '{name}': {}{note}.",
            describe_ops(&ops)
        );
    }
    if let Some(n) = args.partitions {
        let verb = if args.validate_only {
            "can grow to"
        } else {
            "now has"
        };
        let _ = writeln!(out, "Topic '{name}' {verb} {n} partitions{note}.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::PartitionInfo;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn config_pairs_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_config_pairs(&strings(&[
                "cleanup.policy=compact,delete",
                "a=b=c",
                "empty="
            ]))
            .unwrap(),
            vec![
                ("cleanup.policy".into(), "compact,delete".into()),
                ("a".into(), "b=c".into()),
                ("empty".into(), String::new()),
            ]
        );
    }

    #[test]
    fn bad_configs_are_one_line_usage_errors_naming_the_value() {
        for (args, msg) in [
            (
                &["retention.ms"][..],
                "--config 'retention.ms': expected KEY=VALUE, e.g. cleanup.policy=compact",
            ),
            (&["=1"], "--config '=1': empty key"),
            (&["a=1", "a=2"], "--config: 'a' is given more than once"),
        ] {
            let e = parse_config_pairs(&strings(args)).unwrap_err();
            assert_eq!((e.exit_code(), e.to_string()), (2, msg.to_string()));
        }
    }

    #[test]
    fn delete_config_keys_and_conflicts() {
        assert_eq!(
            parse_config_keys(&strings(&["a,b", "a", " c "])).unwrap(),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            parse_config_keys(&strings(&["a=1"]))
                .unwrap_err()
                .to_string(),
            "--delete-config 'a=1': give the key only, without a value"
        );
        assert_eq!(
            parse_config_keys(&strings(&["a,"]))
                .unwrap_err()
                .exit_code(),
            2
        );
        let ops = alter_ops(&strings(&["a=1"]), &strings(&["b"])).unwrap();
        assert_eq!(
            ops,
            vec![
                AlterConfigOp::Set("a".into(), "1".into()),
                AlterConfigOp::Delete("b".into())
            ]
        );
        assert_eq!(describe_ops(&ops), "set a=1, deleted b");
        let e = alter_ops(&strings(&["a=1"]), &strings(&["a"])).unwrap_err();
        assert_eq!(
            (e.exit_code(), e.to_string()),
            (
                2,
                "'a' is both set (--config) and deleted (--delete-config)".to_string()
            )
        );
    }

    fn entry(name: &str, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: name.into(),
            value: Some("v".into()),
            source,
            read_only: false,
            sensitive: false,
            synonyms: vec![],
        }
    }

    #[test]
    fn describe_shows_overrides_unless_all_configs() {
        let entries = vec![
            entry("segment.bytes", ConfigSource::Default),
            entry("retention.ms", ConfigSource::Topic),
            entry("cleanup.policy", ConfigSource::Topic),
            entry("max.message.bytes", ConfigSource::StaticBroker),
        ];
        let names = |v: Vec<ConfigEntry>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(
            names(shown_configs(entries.clone(), false)),
            vec!["cleanup.policy", "retention.ms"]
        );
        assert_eq!(
            names(shown_configs(entries, true)),
            vec![
                "cleanup.policy",
                "max.message.bytes",
                "retention.ms",
                "segment.bytes"
            ]
        );
    }

    #[test]
    fn listing_skips_internal_and_failed_topics_and_sorts() {
        let t = |name: &str, internal: bool, error_code: i16| TopicInfo {
            name: name.into(),
            error_code,
            internal,
            partitions: vec![PartitionInfo {
                partition: 0,
                leader: 1,
                error_code: 0,
                replicas: vec![1],
                isr: vec![1],
            }],
        };
        let all = vec![
            t("b", false, 0),
            t("__consumer_offsets", true, 0),
            t("a", false, 0),
            t("broken", false, 5),
        ];
        let names = |v: Vec<TopicInfo>| v.into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(listed_topics(all.clone(), false)), vec!["a", "b"]);
        assert_eq!(
            names(listed_topics(all, true)),
            vec!["__consumer_offsets", "a", "b"]
        );
    }
}
