//! `waterline offsets reset | export | delete`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use waterline_core::TopicPartition;

use super::render::{render_drift, render_plan, render_plan_warnings};
use super::{
    CliError, ConnectionArgs, Out, OutputFormat, finish, group_exists, now_ms, parse_topic_spec,
    resolve_topics, shell_quote,
};
use crate::client::{AdminClient, OffsetSpec};
use crate::codes;
use crate::csvio::{CsvRow, write_csv};
use crate::error::FileError;
use crate::files::{
    BackupFormat, FileOffset, backup_file_name, parse_offsets_file_located, parse_plan, read_text,
    render_backup, write_durably,
};
use crate::reset::{PartitionInput, ResetMode, ResetPlan, describe_time_range, plan};
use crate::timefmt::{parse_datetime_ms, parse_duration_ms};

/// `waterline offsets ...`.
#[derive(Debug, clap::Args)]
pub struct OffsetsArgs {
    /// The offsets subcommand.
    #[command(subcommand)]
    pub command: OffsetsCommand,
}

/// Offsets subcommands.
// Parsed once per process: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, clap::Subcommand)]
pub enum OffsetsCommand {
    /// Plan (default: dry run) or apply (--execute) a reset of a group's offsets.
    #[command(
        override_usage = "waterline offsets reset <--group <GROUP>...|--all-groups> <SCOPE> <MODE> [--dry-run|--execute] [OPTIONS]\n       waterline offsets reset --execute --plan <FILE> [OPTIONS]"
    )]
    Reset(ResetArgs),
    /// Print groups' committed offsets as CSV (kafka-consumer-groups format).
    Export(ExportArgs),
    /// Delete a group's committed offsets for topics or partitions (dry run by default;
    /// --execute saves a backup first).
    Delete(DeleteArgs),
}

/// `waterline offsets reset`.
///
/// Scope and mode flags are checked here rather than by clap so that every mistake is one
/// line and exit code 2.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The group to reset; repeatable (each group is planned, backed up and reset on its
    /// own). Required unless --all-groups or --plan (a plan file names its group).
    #[arg(
        long,
        value_name = "GROUP",
        required_unless_present_any = ["plan", "all_groups"]
    )]
    pub group: Vec<String>,
    /// Reset every group of the cluster (each with its own backup). With --execute, no group
    /// may have active members.
    #[arg(long, conflicts_with_all = ["group", "plan"])]
    pub all_groups: bool,
    /// Topic, or topic:partition,partition...; repeatable.
    #[arg(help_heading = "Scope (give one)", long, value_name = "TOPIC[:P,P...]")]
    pub topic: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(help_heading = "Scope (give one)", long)]
    pub all_topics: bool,
    /// Take partitions and offsets from a CSV file or a backup.
    #[arg(help_heading = "Scope (give one)", long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Reset to the log start offset.
    #[arg(help_heading = "Reset mode (give one)", long)]
    pub to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(help_heading = "Reset mode (give one)", long)]
    pub to_latest: bool,
    /// Reset to the committed offset (log end where there is none).
    #[arg(help_heading = "Reset mode (give one)", long)]
    pub to_current: bool,
    /// Reset to this offset.
    #[arg(
        help_heading = "Reset mode (give one)",
        long,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub to_offset: Option<i64>,
    /// Move the committed offset by N (negative rewinds).
    #[arg(
        help_heading = "Reset mode (give one)",
        long,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub shift_by: Option<i64>,
    /// Reset to the first record at or after YYYY-MM-DDTHH:mm:SS.sss[zone].
    #[arg(help_heading = "Reset mode (give one)", long, value_name = "DATETIME")]
    pub to_datetime: Option<String>,
    /// Reset to the first record at or after now minus an ISO-8601 duration (e.g. PT1H).
    #[arg(help_heading = "Reset mode (give one)", long, value_name = "DURATION")]
    pub by_duration: Option<String>,
    /// Reset to another group's committed offsets.
    #[arg(help_heading = "Reset mode (give one)", long, value_name = "GROUP")]
    pub to_group: Option<String>,
    /// Only show the plan (the default).
    #[arg(long)]
    pub dry_run: bool,
    /// Apply the plan. Saves the previous offsets to a backup file first.
    #[arg(long)]
    pub execute: bool,
    /// Print the plan as CSV (topic,partition,offset) instead of a table.
    #[arg(long)]
    pub export: bool,
    /// Output format of the plan (table or json); --export means csv.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// With --dry-run: also write the plan to this file.
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,
    /// With --execute: apply this plan file, if the group's offsets still match it.
    #[arg(long, value_name = "FILE", help_heading = "Scope (give one)")]
    pub plan: Option<PathBuf>,
    /// Directory for backup files [default: $XDG_DATA_HOME/waterline/backups, else
    /// ~/.local/share/waterline/backups]
    #[arg(long, value_name = "DIR", env = "WATERLINE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Backup file format.
    #[arg(long, value_enum, default_value = "csv")]
    pub backup_format: BackupFormat,
}

/// `waterline offsets export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Group to export; repeatable. Several groups give `group,topic,partition,offset` lines.
    #[arg(long, value_name = "GROUP", required = true)]
    pub group: Vec<String>,
    /// Only these topics (topic or topic:p,p); repeatable.
    #[arg(long, value_name = "TOPIC[:P,P...]")]
    pub topic: Vec<String>,
}

/// `waterline offsets delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// The group.
    #[arg(long, value_name = "GROUP", required = true)]
    pub group: String,
    /// Topic, or topic:partition,partition...; repeatable. Topics that no longer exist are
    /// accepted: the group's own offsets decide.
    #[arg(long, value_name = "TOPIC[:P,P...]", required = true)]
    pub topic: Vec<String>,
    /// Only show the offsets that would be deleted (the default).
    #[arg(long)]
    pub dry_run: bool,
    /// Delete them. Saves them to a backup file first.
    #[arg(long)]
    pub execute: bool,
    /// Directory for backup files [default: $XDG_DATA_HOME/waterline/backups, else
    /// ~/.local/share/waterline/backups]
    #[arg(long, value_name = "DIR", env = "WATERLINE_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Backup file format.
    #[arg(long, value_enum, default_value = "csv")]
    pub backup_format: BackupFormat,
}

/// Runs `waterline offsets ...` writing to `out`/`err`; returns the exit code.
pub async fn run_offsets_with(args: OffsetsArgs, out: Out<'_>, err: Out<'_>) -> u8 {
    let result = match args.command {
        OffsetsCommand::Reset(a) => reset(a, out, &mut *err).await,
        OffsetsCommand::Export(a) => export(a, out).await,
        OffsetsCommand::Delete(a) => delete(a, out, &mut *err).await,
    };
    finish("offsets", result, err)
}

/// Where the partitions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    Topics(Vec<super::TopicSpec>),
    AllTopics,
    File(PathBuf),
    Plan(PathBuf),
}

/// The validated reset request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResetRequest {
    /// The group this request plans (set per group from `groups`).
    group: String,
    /// The groups named with --group (empty with --all-groups or --plan).
    groups: Vec<String>,
    /// --all-groups.
    all_groups: bool,
    scope: Scope,
    mode: ResetMode,
    execute: bool,
    format: OutputFormat,
}

const MODE_FLAGS: &str = "--to-earliest, --to-latest, --to-current, --to-offset, --shift-by, --to-datetime, --by-duration, --to-group";

/// Checks scope, mode and execution flags; every failure is a one-line usage error.
fn validate(args: &ResetArgs, now: i64) -> Result<ResetRequest, CliError> {
    let usage = |m: String| Err(CliError::Usage(m));
    if args.dry_run && args.execute {
        return usage("--dry-run and --execute are mutually exclusive".into());
    }
    if args.plan_out.is_some() && args.execute {
        return usage(
            "--plan-out writes a dry-run plan; it cannot be combined with --execute".into(),
        );
    }
    if args.plan.is_some() && !args.execute {
        return usage("--plan applies a plan file and needs --execute".into());
    }
    let format = if args.export {
        OutputFormat::Csv
    } else {
        args.output
    };
    let mut modes: Vec<(&str, ResetMode)> = Vec::new();
    if args.to_earliest {
        modes.push(("--to-earliest", ResetMode::ToEarliest));
    }
    if args.to_latest {
        modes.push(("--to-latest", ResetMode::ToLatest));
    }
    if args.to_current {
        modes.push(("--to-current", ResetMode::ToCurrent));
    }
    if let Some(n) = args.to_offset {
        modes.push(("--to-offset", ResetMode::ToOffset(n)));
    }
    if let Some(n) = args.shift_by {
        modes.push(("--shift-by", ResetMode::ShiftBy(n)));
    }
    if let Some(s) = &args.to_datetime {
        let ts =
            parse_datetime_ms(s).map_err(|e| CliError::Usage(format!("--to-datetime: {e}")))?;
        modes.push(("--to-datetime", ResetMode::ToDatetime(ts)));
    }
    if let Some(s) = &args.by_duration {
        let d = parse_duration_ms(s).map_err(|e| CliError::Usage(format!("--by-duration: {e}")))?;
        if d < 0 {
            return usage(format!("--by-duration: '{s}' is negative"));
        }
        let _ = now;
        modes.push(("--by-duration", ResetMode::ByDuration(d)));
    }
    if let Some(g) = &args.to_group {
        modes.push(("--to-group", ResetMode::ToGroup(g.clone())));
    }
    let mut scopes = Vec::new();
    if !args.topic.is_empty() {
        let specs = args
            .topic
            .iter()
            .map(|t| parse_topic_spec(t))
            .collect::<Result<Vec<_>, _>>()?;
        scopes.push(("--topic", Scope::Topics(specs)));
    }
    if args.all_topics {
        scopes.push(("--all-topics", Scope::AllTopics));
    }
    if let Some(f) = &args.from_file {
        scopes.push(("--from-file", Scope::File(f.clone())));
    }
    if let Some(p) = &args.plan {
        scopes.push(("--plan", Scope::Plan(p.clone())));
    }
    let scope = match scopes.as_slice() {
        [] => return usage(
            "no partitions given; use --topic T[:P,...], --all-topics, --from-file F or --plan F"
                .into(),
        ),
        [(_, s)] => s.clone(),
        [(a, _), (b, _), ..] => return usage(format!("{a} and {b} are mutually exclusive")),
    };
    let mode = match (&scope, modes.as_slice()) {
        (Scope::File(_), []) => ResetMode::FromFile,
        (Scope::Plan(_), []) => ResetMode::FromFile,
        (Scope::File(_) | Scope::Plan(_), [(m, _), ..]) => {
            let which = if matches!(scope, Scope::File(_)) {
                "--from-file"
            } else {
                "--plan"
            };
            return usage(format!("{which} sets the offsets itself; drop {m}"));
        }
        (_, []) => return usage(format!("no reset mode given; use one of {MODE_FLAGS}")),
        (_, [(_, m)]) => m.clone(),
        (_, [(a, _), (b, _), ..]) => {
            return usage(format!(
                "two reset modes given ({a} and {b}); use exactly one"
            ));
        }
    };
    if args.group.is_empty() && !args.all_groups && !matches!(scope, Scope::Plan(_)) {
        return usage("--group (or --all-groups) is required".into());
    }
    let several = args.all_groups || args.group.len() > 1;
    if several && args.plan_out.is_some() {
        return usage("--plan-out writes one group's plan; give a single --group".into());
    }
    if let ResetMode::ToGroup(other) = &mode
        && args.group.contains(other)
    {
        return usage(format!("--to-group {other} is a group being reset"));
    }
    let mut groups = args.group.clone();
    groups.dedup();
    Ok(ResetRequest {
        group: groups.first().cloned().unwrap_or_default(),
        groups,
        all_groups: args.all_groups,
        scope,
        mode,
        execute: args.execute,
        format,
    })
}

/// What `--from-file` or `--plan` supplied, read before connecting.
enum Input {
    /// Partitions come from flags.
    None,
    /// `--from-file`: the group's offsets, in file order, with their locations.
    File(Vec<FileOffset>),
    /// `--plan`: the plan file and the plan to apply.
    Plan(PathBuf, ResetPlan),
}

/// A problem with a file the user supplied (missing, unreadable, malformed): a usage error,
/// like a bad flag, named by the flag and the file (and line, when there is one).
fn input_error(flag: &str, e: FileError) -> CliError {
    CliError::Usage(format!("{flag} {e}"))
}

/// Reads and parses the `--from-file` or `--plan` input. Everything wrong here is the user's
/// input, so it is reported before any broker is contacted.
fn read_input(req: &ResetRequest) -> Result<Input, CliError> {
    match &req.scope {
        Scope::File(path) => {
            let text = read_text(path).map_err(|e| input_error("--from-file", e))?;
            let offsets = parse_offsets_file_located(path, &text, &req.group)
                .map_err(|e| input_error("--from-file", e))?;
            if offsets.is_empty() {
                return Err(CliError::Usage(format!(
                    "--from-file {}: no offsets for group {}",
                    path.display(),
                    req.group
                )));
            }
            Ok(Input::File(offsets))
        }
        Scope::Plan(path) => {
            let text = read_text(path).map_err(|e| input_error("--plan", e))?;
            let plan = parse_plan(path, &text).map_err(|e| input_error("--plan", e))?;
            if !req.group.is_empty() && req.group != plan.group {
                return Err(CliError::Usage(format!(
                    "--group {} does not match the plan's group {}",
                    req.group, plan.group
                )));
            }
            Ok(Input::Plan(path.clone(), plan))
        }
        Scope::Topics(_) | Scope::AllTopics => Ok(Input::None),
    }
}

async fn reset(args: ResetArgs, out: Out<'_>, err: Out<'_>) -> Result<(), CliError> {
    let now = now_ms();
    let req = validate(&args, now)?;
    // The user's files are read, and their mistakes reported, before any broker is asked.
    let mut inputs = Vec::new();
    for group in &req.groups {
        let one = ResetRequest {
            group: group.clone(),
            ..req.clone()
        };
        inputs.push((read_input(&one)?, one));
    }
    if matches!(req.scope, Scope::Plan(_)) && req.groups.is_empty() {
        inputs.push((read_input(&req)?, req.clone()));
    }
    let mut client = args.conn.connect().await?;
    if req.all_groups {
        let skip = match &req.mode {
            ResetMode::ToGroup(other) => Some(other.as_str()),
            _ => None,
        };
        for listed in client.list_groups(&[]).await? {
            if skip == Some(listed.group_id.as_str()) {
                continue;
            }
            let one = ResetRequest {
                group: listed.group_id,
                ..req.clone()
            };
            inputs.push((read_input(&one)?, one));
        }
        if inputs.is_empty() {
            return Err(CliError::Failed(
                "--all-groups: the cluster has no consumer groups".into(),
            ));
        }
    }
    let mut plans = Vec::with_capacity(inputs.len());
    for (input, one) in inputs {
        let planned = match input {
            Input::Plan(path, plan) => {
                let current = committed_offsets(&mut client, &plan.group).await?;
                let drift = plan.drift(&current);
                if !drift.is_empty() {
                    let _ = write!(out, "{}", render_drift(&plan.group, &drift));
                    return Err(CliError::Failed(format!(
                        "plan {} refused: group {}'s committed offsets changed on {} partition(s) since it was written",
                        path.display(),
                        plan.group,
                        drift.len()
                    )));
                }
                check_plan(&mut client, &path, plan).await?
            }
            Input::File(offsets) => make_plan(&mut client, &one, &offsets, now).await?,
            Input::None => make_plan(&mut client, &one, &[], now).await?,
        };
        plans.push(planned);
    }
    let mut rendered = Vec::with_capacity(plans.len());
    for planned in &plans {
        let ranges = if req.format == OutputFormat::Csv {
            Vec::new()
        } else {
            time_ranges(&mut client, planned).await
        };
        // Diagnostics on stderr in every format, so that stdout stays a clean table, JSON
        // document or CSV file (JSON also keeps them in its `warnings` field).
        let _ = write!(err, "{}", render_plan_warnings(planned));
        rendered.push(render_plan(planned, &ranges, req.format));
    }
    let _ = write!(out, "{}", join_plans(&plans, rendered, req.format));
    if !req.execute {
        for planned in &plans {
            if let Some(active) = active_members(&mut client, &planned.group).await? {
                let _ = writeln!(
                    err,
                    "Warning: {active}; --execute will refuse to reset it until its consumers stop"
                );
            }
        }
        if let (Some(path), [planned]) = (&args.plan_out, plans.as_slice()) {
            write_durably(path, &crate::files::render_plan(planned))?;
            let _ = writeln!(
                err,
                "Plan written to {}; apply with: waterline offsets reset --execute --plan {} {}",
                path.display(),
                shell_quote(&path.display().to_string()),
                args.conn.flags()
            );
        }
        return Ok(());
    }
    if plans.len() > 1 {
        // Several groups: refuse them all before changing any, if one is active.
        let mut active = Vec::new();
        for planned in &plans {
            if let Some(a) = active_members(&mut client, &planned.group).await? {
                active.push(a);
            }
        }
        if !active.is_empty() {
            return Err(CliError::Failed(format!(
                "{}; offsets can only be reset while a group is inactive (stop its consumers first); no group was reset",
                active.join("; ")
            )));
        }
    }
    let mut done: Vec<&str> = Vec::new();
    for (i, planned) in plans.iter().enumerate() {
        if let Err(e) = execute(&mut client, planned, &args, &mut *err).await {
            if plans.len() == 1 {
                return Err(e);
            }
            let rest: Vec<&str> = plans[i + 1..].iter().map(|p| p.group.as_str()).collect();
            return Err(CliError::Failed(format!(
                "group {}: {e}; already reset (backups above): {}; not attempted: {}",
                planned.group,
                if done.is_empty() {
                    "none".to_string()
                } else {
                    done.join(", ")
                },
                if rest.is_empty() {
                    "none".to_string()
                } else {
                    rest.join(", ")
                },
            )));
        }
        done.push(&planned.group);
    }
    Ok(())
}

/// The plans of several groups as one output: tables one after another, one CSV in the
/// 4-column `group,topic,partition,offset` form, or one JSON document `{"plans": [...]}`.
fn join_plans(plans: &[ResetPlan], rendered: Vec<String>, format: OutputFormat) -> String {
    if plans.len() == 1 {
        return rendered.into_iter().next().unwrap_or_default();
    }
    match format {
        OutputFormat::Table => rendered.join("\n"),
        OutputFormat::Csv => {
            let rows: Vec<CsvRow> = plans
                .iter()
                .flat_map(|p| {
                    p.rows.iter().map(|r| CsvRow {
                        group: Some(p.group.clone()),
                        tp: r.tp(),
                        offset: r.new,
                    })
                })
                .collect();
            write_csv(&rows, true)
        }
        OutputFormat::Json => {
            let docs: Vec<serde_json::Value> = rendered
                .iter()
                .filter_map(|t| serde_json::from_str(t).ok())
                .collect();
            serde_json::to_string_pretty(&serde_json::json!({ "plans": docs })).unwrap_or_default()
                + "\n"
        }
    }
}

/// `Some("group G is STATE with N active member(s)")` when the group has members.
async fn active_members(client: &mut AdminClient, group: &str) -> Result<Option<String>, CliError> {
    let described = client.describe_groups(&[group.to_string()]).await?;
    Ok(described
        .first()
        .filter(|g| !g.members.is_empty())
        .map(|g| {
            format!(
                "group {group} is {} with {} active member(s)",
                g.state,
                g.members.len()
            )
        }))
}

/// Validates a plan file against the cluster like any other input: every topic and
/// partition must exist (else a usage error naming them all, and nothing is applied), and
/// every new offset is clamped to the partition's current [log start, log end] with the
/// warnings a fresh plan gives.
async fn check_plan(
    client: &mut AdminClient,
    path: &std::path::Path,
    mut plan: ResetPlan,
) -> Result<ResetPlan, CliError> {
    let topics: Vec<String> = plan
        .rows
        .iter()
        .map(|r| r.topic.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let meta = if topics.is_empty() {
        Default::default()
    } else {
        client.metadata(Some(&topics)).await?
    };
    let mut problems = Vec::new();
    for r in &plan.rows {
        let spec = super::TopicSpec {
            topic: r.topic.clone(),
            partitions: Some(vec![r.partition]),
        };
        if let Err(e) = resolve_topics(std::slice::from_ref(&spec), &meta) {
            problems.push(e.to_string());
        }
    }
    problems.dedup();
    if !problems.is_empty() {
        return Err(CliError::Usage(format!(
            "--plan {}: {}; nothing was applied",
            path.display(),
            problems.join("; ")
        )));
    }
    let partitions: Vec<TopicPartition> = plan.rows.iter().map(|r| r.tp()).collect();
    let earliest = list(client, &partitions, OffsetSpec::Earliest).await?;
    let latest = list(client, &partitions, OffsetSpec::Latest).await?;
    let bounds: BTreeMap<TopicPartition, (i64, i64)> = partitions
        .iter()
        .map(|tp| {
            (
                tp.clone(),
                (
                    earliest.get(tp).copied().flatten().unwrap_or(0),
                    latest.get(tp).copied().flatten().unwrap_or(0),
                ),
            )
        })
        .collect();
    plan.clamp_to(&bounds);
    Ok(plan)
}

async fn committed_offsets(
    client: &mut AdminClient,
    group: &str,
) -> Result<BTreeMap<TopicPartition, i64>, CliError> {
    Ok(client
        .offset_fetch(group, None)
        .await?
        .into_iter()
        .map(|(tp, c)| (tp, c.offset))
        .collect())
}

/// Plans a reset from flags, or from `file_offsets` (non-empty exactly for `--from-file`).
async fn make_plan(
    client: &mut AdminClient,
    req: &ResetRequest,
    file_offsets: &[FileOffset],
    now: i64,
) -> Result<ResetPlan, CliError> {
    let current = committed_offsets(client, &req.group).await?;
    let partitions: Vec<TopicPartition> = match &req.scope {
        Scope::Topics(specs) => {
            let topics: Vec<String> = specs.iter().map(|s| s.topic.clone()).collect();
            let meta = client.metadata(Some(&topics)).await?;
            resolve_topics(specs, &meta)?
        }
        Scope::AllTopics => {
            if current.is_empty() {
                return Err(CliError::Failed(format!(
                    "--all-topics: group {} has no committed offsets",
                    req.group
                )));
            }
            current.keys().cloned().collect()
        }
        Scope::File(path) => {
            let topics: Vec<String> = file_offsets
                .iter()
                .map(|o| o.tp.topic.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let meta = client.metadata(Some(&topics)).await?;
            let mut partitions = Vec::with_capacity(file_offsets.len());
            for o in file_offsets {
                let spec = super::TopicSpec {
                    topic: o.tp.topic.clone(),
                    partitions: Some(vec![o.tp.partition]),
                };
                // An unknown topic or partition is the file's mistake: name file and line.
                let found = resolve_topics(std::slice::from_ref(&spec), &meta).map_err(|e| {
                    CliError::Usage(format!(
                        "--from-file {}: {}: {e}",
                        path.display(),
                        o.location
                    ))
                })?;
                partitions.extend(found);
            }
            partitions.sort();
            partitions.dedup();
            partitions
        }
        Scope::Plan(_) => Vec::new(),
    };
    let file_offsets: BTreeMap<TopicPartition, i64> = file_offsets
        .iter()
        .map(|o| (o.tp.clone(), o.offset))
        .collect();
    let earliest = list(client, &partitions, OffsetSpec::Earliest).await?;
    let latest = list(client, &partitions, OffsetSpec::Latest).await?;
    let for_time = match req.mode.lookup_timestamp(now) {
        Some(ts) => list(client, &partitions, OffsetSpec::Timestamp(ts)).await?,
        None => BTreeMap::new(),
    };
    let other = match &req.mode {
        ResetMode::ToGroup(g) => committed_offsets(client, g).await?,
        _ => BTreeMap::new(),
    };
    let inputs: Vec<PartitionInput> = partitions
        .iter()
        .map(|tp| PartitionInput {
            tp: tp.clone(),
            current: current.get(tp).copied(),
            log_start: earliest.get(tp).copied().flatten().unwrap_or(0),
            log_end: latest.get(tp).copied().flatten().unwrap_or(0),
            offset_for_time: for_time.get(tp).copied().flatten(),
            source_offset: match &req.mode {
                ResetMode::ToGroup(_) => other.get(tp).copied(),
                _ => file_offsets.get(tp).copied(),
            },
        })
        .collect();
    plan(&req.group, &req.mode, &inputs, now).map_err(|e| CliError::Failed(e.to_string()))
}

async fn list(
    client: &mut AdminClient,
    partitions: &[TopicPartition],
    spec: OffsetSpec,
) -> Result<BTreeMap<TopicPartition, Option<i64>>, CliError> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let specs: Vec<(TopicPartition, OffsetSpec)> =
        partitions.iter().map(|tp| (tp.clone(), spec)).collect();
    Ok(client.list_offsets(&specs).await?)
}

/// TIME-RANGE text per plan row: timestamps of the first and last skipped/replayed record.
/// Unreadable timestamps degrade the text, never the command.
async fn time_ranges(client: &mut AdminClient, plan: &ResetPlan) -> Vec<String> {
    let mut wanted = Vec::new();
    for r in &plan.rows {
        if let Some((lo, hi)) = r.affected_range() {
            wanted.push((r.tp(), lo));
            wanted.push((r.tp(), hi));
        }
    }
    let mut ts: BTreeMap<(TopicPartition, i64), i64> = BTreeMap::new();
    // Two lookups per partition may target the same partition: ask one at a time per offset
    // set so the map keys stay distinct.
    for chunk in [0usize, 1] {
        let batch: Vec<(TopicPartition, i64)> =
            wanted.iter().skip(chunk).step_by(2).cloned().collect();
        if batch.is_empty() {
            continue;
        }
        if let Ok(found) = client.fetch_records(&batch, 64 << 10).await {
            for (tp, off) in &batch {
                if let Some(Some(rec)) = found.get(tp) {
                    ts.insert((tp.clone(), *off), rec.timestamp_ms);
                }
            }
        }
    }
    plan.rows
        .iter()
        .map(|r| {
            let (first, last) = match r.affected_range() {
                Some((lo, hi)) => (
                    ts.get(&(r.tp(), lo)).copied(),
                    ts.get(&(r.tp(), hi)).copied(),
                ),
                None => (None, None),
            };
            describe_time_range(r, first, last)
        })
        .collect()
}

async fn execute(
    client: &mut AdminClient,
    planned: &ResetPlan,
    args: &ResetArgs,
    err: Out<'_>,
) -> Result<(), CliError> {
    let group = &planned.group;
    let described = client.describe_groups(std::slice::from_ref(group)).await?;
    if let Some(g) = described.first()
        && !g.members.is_empty()
    {
        return Err(CliError::Failed(format!(
            "group {group} is {} with {} active member(s); offsets can only be reset while the group is inactive (stop its consumers first)",
            g.state,
            g.members.len()
        )));
    }
    // Save the previous offsets before changing anything.
    let previous = committed_offsets(client, group).await?;
    let fresh: Vec<TopicPartition> = planned
        .rows
        .iter()
        .map(|r| r.tp())
        .filter(|tp| !previous.contains_key(tp))
        .collect();
    let undo = if previous.is_empty() {
        // Nothing to back up: undoing means deleting the offsets this reset creates.
        let undo = delete_command(group, &fresh, &args.conn);
        let _ = writeln!(
            err,
            "Group {group} had no committed offsets before; nothing to back up (undo with: {undo})"
        );
        undo
    } else {
        let path = save_backup(
            group,
            &previous,
            args.backup_dir.as_deref(),
            args.backup_format,
        )?;
        let restore = restore_command(group, &path, &args.conn);
        let _ = writeln!(
            err,
            "Backup of group {group}'s previous offsets: {} (restore with: {restore})",
            path.display(),
        );
        if !fresh.is_empty() {
            let names: Vec<String> = fresh
                .iter()
                .map(|tp| format!("{}:{}", tp.topic, tp.partition))
                .collect();
            let _ = writeln!(
                err,
                "Note: {} had no committed offset before; a restore from the backup leaves them at their new offsets (remove with: {})",
                names.join(","),
                delete_command(group, &fresh, &args.conn)
            );
        }
        restore
    };
    let failures = client.offset_commit(group, &planned.offsets()).await?;
    if failures.is_empty() {
        let _ = writeln!(
            err,
            "Reset {} partition(s) of group {group}.",
            planned.rows.len()
        );
        return Ok(());
    }
    let (applied, refused) = partial_report(planned, &failures);
    let _ = writeln!(err, "{applied}");
    Err(CliError::Failed(format!(
        "{refused}; undo the applied part with: {undo}"
    )))
}

/// What a partly refused OffsetCommit did: the line listing the partitions that were
/// applied (with their new offsets), and the error naming those that were not, with why.
pub(crate) fn partial_report(
    planned: &ResetPlan,
    failures: &[crate::client::PartitionFailure],
) -> (String, String) {
    let refused: BTreeMap<TopicPartition, i16> =
        failures.iter().map(|f| (f.tp.clone(), f.code)).collect();
    let applied: Vec<String> = planned
        .rows
        .iter()
        .filter(|r| !refused.contains_key(&r.tp()))
        .map(|r| format!("{}:{} -> {}", r.topic, r.partition, r.new))
        .collect();
    let applied_line = if applied.is_empty() {
        format!("Applied: none of the {} partition(s).", planned.rows.len())
    } else {
        format!(
            "Applied to {} of {} partition(s): {}",
            applied.len(),
            planned.rows.len(),
            applied.join(", ")
        )
    };
    let detail: Vec<String> = refused
        .iter()
        .map(|(tp, code)| format!("{}:{} ({})", tp.topic, tp.partition, codes::describe(*code)))
        .collect();
    let refused_line = format!(
        "OffsetCommit refused {} of {} partition(s) of group {}, not applied: {}",
        refused.len(),
        planned.rows.len(),
        planned.group,
        detail.join(", ")
    );
    (applied_line, refused_line)
}

/// The command that restores `group` from the backup at `path` on the same cluster.
fn restore_command(group: &str, path: &std::path::Path, conn: &ConnectionArgs) -> String {
    format!(
        "waterline offsets reset --group {} --from-file {} --execute {}",
        shell_quote(group),
        shell_quote(&path.display().to_string()),
        conn.flags()
    )
}

/// The command that deletes `group`'s offsets of `partitions` on the same cluster.
fn delete_command(group: &str, partitions: &[TopicPartition], conn: &ConnectionArgs) -> String {
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for tp in partitions {
        by_topic
            .entry(&tp.topic)
            .or_default()
            .push(tp.partition.to_string());
    }
    let topics: Vec<String> = by_topic
        .iter()
        .map(|(t, ps)| format!("--topic {}", shell_quote(&format!("{t}:{}", ps.join(",")))))
        .collect();
    format!(
        "waterline offsets delete --group {} {} --execute {}",
        shell_quote(group),
        topics.join(" "),
        conn.flags()
    )
}

/// The per-user directory backups go to when `--backup-dir` is not given:
/// `$XDG_DATA_HOME/waterline/backups`, else `~/.local/share/waterline/backups`.
pub fn default_backup_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local").join("share"))
        })?;
    Some(base.join("waterline").join("backups"))
}

/// Writes a backup of `offsets` durably into `dir` (or the default backup directory,
/// created when missing) and returns its path.
fn save_backup(
    group: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
    dir: Option<&std::path::Path>,
    format: BackupFormat,
) -> Result<PathBuf, CliError> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let d = default_backup_dir().ok_or_else(|| {
                CliError::Usage(
                    "no backup directory: neither XDG_DATA_HOME nor HOME is set; give --backup-dir DIR"
                        .into(),
                )
            })?;
            std::fs::create_dir_all(&d).map_err(|cause| FileError::Io {
                path: d.clone(),
                cause,
            })?;
            d
        }
    };
    let taken = now_ms();
    let path = dir.join(backup_file_name(group, taken, format));
    write_durably(&path, &render_backup(group, taken, offsets, format))?;
    Ok(path)
}

/// Whether `spec` selects `tp`.
fn spec_selects(spec: &super::TopicSpec, tp: &TopicPartition) -> bool {
    spec.topic == tp.topic
        && spec
            .partitions
            .as_ref()
            .is_none_or(|ps| ps.contains(&tp.partition))
}

/// The committed offsets `specs` select (all of them without specs), and a description of
/// every topic, or listed partition, that has no committed offset: `topic 'x'` or
/// `x partition 3`. Offsets are taken as the group has them, so a topic that no longer exists
/// is selected like any other.
pub(crate) fn select_committed(
    specs: &[super::TopicSpec],
    committed: &BTreeMap<TopicPartition, i64>,
) -> (BTreeMap<TopicPartition, i64>, Vec<String>) {
    let selected: BTreeMap<TopicPartition, i64> = committed
        .iter()
        .filter(|(tp, _)| specs.is_empty() || specs.iter().any(|s| spec_selects(s, tp)))
        .map(|(tp, o)| (tp.clone(), *o))
        .collect();
    let mut without = Vec::new();
    for spec in specs {
        match &spec.partitions {
            None => {
                if !selected.keys().any(|tp| tp.topic == spec.topic) {
                    without.push(format!("topic '{}'", spec.topic));
                }
            }
            Some(ps) => {
                for p in ps {
                    let tp = TopicPartition::new(spec.topic.clone(), *p);
                    if !selected.contains_key(&tp) {
                        without.push(format!("{} partition {p}", spec.topic));
                    }
                }
            }
        }
    }
    without.dedup();
    (selected, without)
}

/// The error for a group with no committed offsets: it does not exist (no members either),
/// or it exists without offsets.
async fn no_offsets_error(client: &mut AdminClient, group: &str) -> Result<CliError, CliError> {
    let described = client.describe_groups(&[group.to_string()]).await?;
    let exists = described
        .first()
        .is_some_and(|g| group_exists(g.error_code, &g.state, !g.members.is_empty(), false));
    Ok(CliError::Failed(if exists {
        format!("group '{group}' has no committed offsets")
    } else {
        format!("group '{group}' does not exist")
    }))
}

async fn export(args: ExportArgs, out: Out<'_>) -> Result<(), CliError> {
    let specs = args
        .topic
        .iter()
        .map(|t| parse_topic_spec(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut client = args.conn.connect().await?;
    let mut rows = Vec::new();
    for group in &args.group {
        let committed = committed_offsets(&mut client, group).await?;
        if committed.is_empty() {
            // A typo must not make an empty "backup".
            return Err(no_offsets_error(&mut client, group).await?);
        }
        let (selected, without) = select_committed(&specs, &committed);
        if !without.is_empty() {
            return Err(CliError::Failed(format!(
                "group '{group}' has no committed offsets for {}",
                without.join(", ")
            )));
        }
        rows.extend(selected.into_iter().map(|(tp, offset)| CsvRow {
            group: Some(group.clone()),
            tp,
            offset,
        }));
    }
    let _ = write!(out, "{}", write_csv(&rows, args.group.len() > 1));
    Ok(())
}

async fn delete(args: DeleteArgs, out: Out<'_>, err: Out<'_>) -> Result<(), CliError> {
    if args.dry_run && args.execute {
        return Err(CliError::Usage(
            "--dry-run and --execute are mutually exclusive".into(),
        ));
    }
    let specs = args
        .topic
        .iter()
        .map(|t| parse_topic_spec(t))
        .collect::<Result<Vec<_>, _>>()?;
    let group = &args.group;
    let mut client = args.conn.connect().await?;
    // The group's own offsets decide, not the topic metadata: offsets of a topic that no
    // longer exists can be deleted, and a partition without an offset is not reported as
    // deleted.
    let committed = committed_offsets(&mut client, group).await?;
    if committed.is_empty() {
        return Err(no_offsets_error(&mut client, group).await?);
    }
    let (selected, without) = select_committed(&specs, &committed);
    if selected.is_empty() {
        return Err(CliError::Failed(format!(
            "group '{group}' has no committed offsets for {}",
            without.join(", ")
        )));
    }
    for w in &without {
        let _ = writeln!(
            err,
            "Note: group {group} has no committed offset for {w}; nothing to delete there"
        );
    }
    let rows: Vec<Vec<String>> = selected
        .iter()
        .map(|(tp, o)| {
            vec![
                group.clone(),
                tp.topic.clone(),
                tp.partition.to_string(),
                o.to_string(),
            ]
        })
        .collect();
    let _ = write!(
        out,
        "{}",
        super::render::render_table(&["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET"], &rows)
    );
    let active = active_members(&mut client, group).await?;
    if !args.execute {
        if let Some(active) = active {
            let _ = writeln!(
                err,
                "Warning: {active}; --execute will refuse the partitions of topics they consume"
            );
        }
        let _ = writeln!(
            err,
            "Dry run: nothing deleted. Add --execute to delete these {} offset(s) (a backup is saved first).",
            selected.len()
        );
        return Ok(());
    }
    let path = save_backup(
        group,
        &selected,
        args.backup_dir.as_deref(),
        args.backup_format,
    )?;
    let restore = restore_command(group, &path, &args.conn);
    let _ = writeln!(
        err,
        "Backup of the offsets being deleted: {} (restore with: {restore})",
        path.display()
    );
    let partitions: Vec<TopicPartition> = selected.keys().cloned().collect();
    let failures = client.offset_delete(group, &partitions).await?;
    let deleted = partitions.len() - failures.len();
    if failures.is_empty() {
        let _ = writeln!(
            err,
            "Deleted committed offsets of group {group} for {deleted} partition(s)."
        );
        return Ok(());
    }
    let detail: Vec<String> = failures
        .iter()
        .map(|f| {
            format!(
                "{}:{} ({})",
                f.tp.topic,
                f.tp.partition,
                codes::describe(f.code)
            )
        })
        .collect();
    Err(CliError::Failed(format!(
        "OffsetDelete deleted {deleted} of {} partition(s) of group {group}; refused: {}",
        partitions.len(),
        detail.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: ResetArgs,
    }

    fn parse(argv: &str) -> ResetArgs {
        T::try_parse_from(std::iter::once("reset").chain(argv.split_whitespace()))
            .unwrap()
            .args
    }

    fn err(argv: &str) -> String {
        let e = validate(&parse(argv), 0).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{argv}");
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        s
    }

    #[test]
    fn valid_requests() {
        let r = validate(&parse("--group g --topic t:0,1 --shift-by -5"), 0).unwrap();
        assert_eq!(r.mode, ResetMode::ShiftBy(-5));
        assert!(!r.execute);
        let r = validate(&parse("--group g --from-file b.csv --execute"), 0).unwrap();
        assert_eq!(r.mode, ResetMode::FromFile);
        let r = validate(
            &parse("--group g --all-topics --by-duration PT1H --export"),
            0,
        )
        .unwrap();
        assert_eq!(r.mode, ResetMode::ByDuration(3_600_000));
        assert_eq!(r.format, OutputFormat::Csv);
        let r = validate(&parse("--execute --plan p.json"), 0).unwrap();
        assert_eq!(r.scope, Scope::Plan("p.json".into()));
        let r = validate(&parse("--group a --group b --topic t --to-latest"), 0).unwrap();
        assert_eq!(r.groups, vec!["a", "b"]);
        let r = validate(&parse("--all-groups --topic t --to-latest"), 0).unwrap();
        assert!(r.all_groups && r.groups.is_empty());
    }

    #[test]
    fn delete_and_export_select_the_group_s_own_offsets() {
        let committed = BTreeMap::from([
            (TopicPartition::new("gone", 0), 7),
            (TopicPartition::new("t", 0), 5),
            (TopicPartition::new("t", 2), 9),
        ]);
        let specs: Vec<_> = ["gone", "t:0,1", "nosuch"]
            .iter()
            .map(|s| parse_topic_spec(s).unwrap())
            .collect();
        let (selected, without) = select_committed(&specs, &committed);
        // A topic that no longer exists is selected from the group's offsets alone.
        assert_eq!(
            selected.keys().map(|tp| tp.to_string()).collect::<Vec<_>>(),
            vec!["gone-0", "t-0"]
        );
        assert_eq!(without, vec!["t partition 1", "topic 'nosuch'"]);
        let (all, none) = select_committed(&[], &committed);
        assert_eq!((all.len(), none.len()), (3, 0));
    }

    #[test]
    fn a_partly_refused_commit_reports_both_parts() {
        use crate::reset::PlanRow;
        let plan = ResetPlan {
            group: "g".into(),
            mode: ResetMode::ToEarliest,
            created_ms: 0,
            rows: (0..3)
                .map(|p| PlanRow {
                    topic: "t".into(),
                    partition: p,
                    current: Some(5),
                    new: 0,
                })
                .collect(),
            warnings: vec![],
        };
        let failures = [crate::client::PartitionFailure {
            tp: TopicPartition::new("t", 1),
            code: codes::UNKNOWN_TOPIC_OR_PARTITION,
        }];
        let (applied, refused) = partial_report(&plan, &failures);
        assert_eq!(
            applied,
            "Applied to 2 of 3 partition(s): t:0 -> 0, t:2 -> 0"
        );
        assert_eq!(
            refused,
            "OffsetCommit refused 1 of 3 partition(s) of group g, not applied: t:1 (UNKNOWN_TOPIC_OR_PARTITION (code 3))"
        );
    }

    #[test]
    fn usage_errors_are_one_line() {
        assert!(err("--group g --topic t").starts_with("no reset mode given"));
        assert_eq!(
            err("--group g --topic t --to-earliest --to-latest"),
            "two reset modes given (--to-earliest and --to-latest); use exactly one"
        );
        assert!(
            err("--group g --topic t --to-datetime 2024-13-01T00:00:00")
                .starts_with("--to-datetime: malformed datetime")
        );
        assert!(
            err("--group g --topic t --by-duration 1h")
                .starts_with("--by-duration: malformed duration")
        );
        assert!(err("--group g --to-earliest").starts_with("no partitions given"));
        assert_eq!(
            err("--group g --topic t --all-topics --to-latest"),
            "--topic and --all-topics are mutually exclusive"
        );
        assert_eq!(
            err("--group g --from-file f --to-latest"),
            "--from-file sets the offsets itself; drop --to-latest"
        );
        // Without --plan, clap itself requires --group.
        assert!(T::try_parse_from(["reset", "--topic", "t", "--to-latest"]).is_err());
        assert_eq!(
            err("--group g --topic t --to-latest --dry-run --execute"),
            "--dry-run and --execute are mutually exclusive"
        );
        assert!(
            err("--group g --topic t --to-latest --plan p")
                .starts_with("--plan applies a plan file and needs --execute")
        );
        assert_eq!(
            err("--group g --topic t --to-group g"),
            "--to-group g is a group being reset"
        );
        assert_eq!(
            err("--group a --group b --topic t --to-latest --plan-out p"),
            "--plan-out writes one group's plan; give a single --group"
        );
        assert!(err("--group g --topic t:x --to-latest").contains("not a non-negative integer"));
    }
}
