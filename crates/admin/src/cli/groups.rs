//! `waterline groups list | describe | delete`.

use super::render::{
    DescribeView, GroupView, MemberRow, OffsetRow, render_describe, render_group_list,
};
use super::snapshot::read_groups;
use super::{CliError, ConnectionArgs, Out, OutputFormat, finish, now_ms};
use crate::client::AdminClient;
use crate::codes;
use crate::lag::time_lag;

/// `waterline groups ...`.
#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    /// The groups subcommand.
    #[command(subcommand)]
    pub command: GroupsCommand,
}

/// Groups subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GroupsCommand {
    /// List consumer groups.
    List(ListArgs),
    /// Describe groups: offsets and lag (default), members, or state.
    #[command(
        override_usage = "waterline groups describe <--group <GROUP>...|--all-groups> [OPTIONS]"
    )]
    Describe(DescribeArgs),
    /// Delete groups that have no active members.
    Delete(DeleteGroupsArgs),
}

/// `waterline groups list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Only groups in this state (Empty, Stable, PreparingRebalance, CompletingRebalance,
    /// Dead; case-insensitive); repeatable or comma-separated.
    #[arg(long, value_name = "STATE")]
    pub state: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// `waterline groups describe`.
#[derive(Debug, clap::Args)]
pub struct DescribeArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Group to describe; repeatable. Required unless --all-groups.
    #[arg(long, value_name = "GROUP", required_unless_present = "all_groups")]
    pub group: Vec<String>,
    /// Describe every group.
    #[arg(long, conflicts_with = "group")]
    pub all_groups: bool,
    /// Show members instead of offsets.
    #[arg(long, conflicts_with = "state")]
    pub members: bool,
    /// With --members: also show each member's assigned partitions.
    #[arg(long, requires = "members")]
    pub verbose: bool,
    /// Show group state instead of offsets.
    #[arg(long)]
    pub state: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// `waterline groups delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteGroupsArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Group to delete; repeatable.
    #[arg(long, value_name = "GROUP", required = true)]
    pub group: Vec<String>,
}

/// Runs `waterline groups ...` writing to `out`/`err`; returns the exit code.
pub async fn run_groups_with(args: GroupsArgs, out: Out<'_>, err: Out<'_>) -> u8 {
    let result = match args.command {
        GroupsCommand::List(a) => list(a, out).await,
        GroupsCommand::Describe(a) => describe(a, out, err).await,
        GroupsCommand::Delete(a) => delete(a, out).await,
    };
    finish("groups", result, err)
}

/// Group states `groups list --state` accepts, spelled as brokers report them.
pub const GROUP_STATES: [&str; 5] = [
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
];

/// Parses `--state` values (repeatable, each possibly comma-separated) into the brokers'
/// spelling. An unknown state is a usage error: filtering on it would silently list nothing.
pub fn parse_states(values: &[String]) -> Result<Vec<String>, CliError> {
    let mut states: Vec<String> = Vec::new();
    for value in values {
        for name in value.split(',').map(str::trim) {
            let Some(known) = GROUP_STATES.iter().find(|s| s.eq_ignore_ascii_case(name)) else {
                return Err(CliError::Usage(format!(
                    "--state '{name}': unknown group state; valid states (case-insensitive): {}",
                    GROUP_STATES.join(", ")
                )));
            };
            if !states.iter().any(|s| s == known) {
                states.push((*known).to_string());
            }
        }
    }
    Ok(states)
}

async fn list(args: ListArgs, out: Out<'_>) -> Result<(), CliError> {
    // Checked before connecting: a usage error must not depend on the broker being up.
    let states = parse_states(&args.state)?;
    let mut client = args.conn.connect().await?;
    let groups = client.list_groups(&states).await?;
    let _ = write!(out, "{}", render_group_list(&groups, args.output));
    Ok(())
}

async fn describe(args: DescribeArgs, out: Out<'_>, err: Out<'_>) -> Result<(), CliError> {
    // Exactly one of the two: neither, or both, is a usage error.
    if args.group.is_empty() != args.all_groups {
        return Err(CliError::Usage(
            "groups describe: give --group G (repeatable) or --all-groups".into(),
        ));
    }
    let view = if args.members && args.verbose {
        DescribeView::MembersVerbose
    } else if args.members {
        DescribeView::Members
    } else if args.state {
        DescribeView::State
    } else {
        DescribeView::Offsets
    };
    let mut client = args.conn.connect().await?;
    let groups = if args.all_groups {
        client
            .list_groups(&[])
            .await?
            .into_iter()
            .map(|g| g.group_id)
            .collect()
    } else {
        args.group.clone()
    };
    let views = collect_views(&mut client, &groups, view == DescribeView::Offsets).await?;
    if args.output == OutputFormat::Csv {
        for v in &views {
            if let Some(m) = v.message() {
                let _ = writeln!(err, "{m}");
            }
        }
    }
    let _ = write!(out, "{}", render_describe(&views, view, args.output));
    if let Some(missing) = views.iter().find(|v| !v.exists) {
        return Err(CliError::Failed(format!(
            "group '{}' does not exist",
            missing.group
        )));
    }
    Ok(())
}

/// Gathers what `groups describe` shows. With `with_offsets`, reads committed offsets, log end
/// offsets and the records at committed offsets (exact time lag) in a few batched requests
/// ([`super::snapshot`]); a partition whose log end cannot be read shows `-`.
pub(crate) async fn collect_views(
    client: &mut AdminClient,
    groups: &[String],
    with_offsets: bool,
) -> Result<Vec<GroupView>, CliError> {
    let states = read_groups(client, groups, with_offsets).await?;
    let now = now_ms();
    let mut views = Vec::with_capacity(states.len());
    for s in states {
        let g = &s.info;
        let coordinator = client.find_coordinator(&g.group_id).await.ok();
        let offsets = s
            .partitions
            .iter()
            .map(|p| {
                let log_end = p.log_end();
                let owner = p.owner.map(|i| &g.members[i]);
                OffsetRow {
                    topic: p.tp.topic.clone(),
                    partition: p.tp.partition,
                    current: p.current,
                    log_end,
                    time_lag: match log_end {
                        Some(end) => time_lag(now, p.current, end, p.next_record_ms, &[]),
                        None => crate::lag::TimeLag::Unknown,
                    },
                    consumer_id: owner.map(|m| m.member_id.clone()),
                    host: owner.map(|m| m.host.clone()),
                    client_id: owner.map(|m| m.client_id.clone()),
                }
            })
            .collect();
        views.push(GroupView {
            group: g.group_id.clone(),
            state: g.state.clone(),
            coordinator,
            protocol: g.protocol.clone(),
            offsets,
            members: g
                .members
                .iter()
                .map(|m| MemberRow {
                    consumer_id: m.member_id.clone(),
                    host: m.host.clone(),
                    client_id: m.client_id.clone(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            exists: s.exists,
        });
    }
    Ok(views)
}

async fn delete(args: DeleteGroupsArgs, out: Out<'_>) -> Result<(), CliError> {
    let mut client = args.conn.connect().await?;
    let results = client.delete_groups(&args.group).await?;
    let mut failed = Vec::new();
    let mut missing = Vec::new();
    for (group, code) in results {
        if code == codes::NONE {
            let _ = writeln!(out, "Deleted group '{group}'.");
        } else if code == codes::GROUP_ID_NOT_FOUND {
            missing.push(format!("group '{group}' does not exist"));
        } else {
            failed.push(format!("group {group}: {}", codes::describe(code)));
        }
    }
    if !failed.is_empty() {
        missing.push(format!("DeleteGroups failed for {}", failed.join("; ")));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(missing.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(values: &[&str]) -> Result<Vec<String>, CliError> {
        parse_states(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn states_are_matched_case_insensitively_and_deduplicated() {
        assert_eq!(states(&[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            states(&["stable", "EMPTY, preparingrebalance", "Stable"]).unwrap(),
            vec!["Stable", "Empty", "PreparingRebalance"]
        );
    }

    #[test]
    fn unknown_states_are_one_line_usage_errors_naming_the_valid_ones() {
        for bad in [&["Bogus"][..], &["Stable,Bogus"][..], &["Stable,"][..]] {
            let e = states(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(
                msg.ends_with(
                    "valid states (case-insensitive): Empty, PreparingRebalance, \
                     CompletingRebalance, Stable, Dead"
                ),
                "{msg}"
            );
        }
        assert!(
            states(&["Bogus"])
                .unwrap_err()
                .to_string()
                .starts_with("--state 'Bogus': unknown group state")
        );
    }
}
