//! `waterline lag`: lag in records, time lag and a Burrow-style status per partition and
//! group; `--watch` refreshes in place and builds the history the status and the time-lag
//! estimates need.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use waterline_core::TopicPartition;

use super::render::{LagGroupView, LagRow, render_lag};
use super::snapshot::read_groups;
use super::{CliError, ConnectionArgs, Out, OutputFormat, finish, now_ms};
use crate::client::AdminClient;
use crate::codes;
use crate::lag::{Evaluation, Sample, Status, WindowContext, evaluate, group_status, time_lag};
use crate::timefmt::parse_duration_ms;

/// History kept per partition, beyond which the oldest samples are dropped.
const MAX_SAMPLES: usize = 10_000;

/// `waterline lag`.
#[derive(Debug, clap::Args)]
pub struct LagArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Group to report; repeatable. Default: every group.
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
    /// Refresh in place until interrupted.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval with --watch, as an ISO-8601 duration.
    #[arg(long, default_value = "PT5S", value_name = "DURATION")]
    pub interval: String,
    /// Status window, as an ISO-8601 duration.
    #[arg(long, default_value = "PT5M", value_name = "DURATION")]
    pub window: String,
    /// Stop after this many refreshes (for scripts and tests); 0 means no limit.
    #[arg(long, default_value_t = 0, hide = true)]
    pub iterations: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// Runs `waterline lag` writing to `out`/`err`; returns the exit code. With `in_place`,
/// `--watch` clears the screen before each table (for terminals).
pub async fn run_lag_with(args: LagArgs, in_place: bool, out: Out<'_>, err: Out<'_>) -> u8 {
    let result = lag(args, in_place, out).await;
    finish("lag", result, err)
}

/// What is remembered between refreshes for one partition.
#[derive(Debug, Default)]
struct History {
    samples: VecDeque<Sample>,
    /// (log end offset, time) points for time-lag interpolation.
    ends: VecDeque<(i64, i64)>,
}

async fn lag(args: LagArgs, in_place: bool, out: Out<'_>) -> Result<(), CliError> {
    let window_ms =
        parse_duration_ms(&args.window).map_err(|e| CliError::Usage(format!("--window: {e}")))?;
    let interval_ms = parse_duration_ms(&args.interval)
        .map_err(|e| CliError::Usage(format!("--interval: {e}")))?;
    if window_ms <= 0 || interval_ms <= 0 {
        return Err(CliError::Usage(
            "--window and --interval must be positive".into(),
        ));
    }
    let mut client = args.conn.connect().await?;
    let mut history: BTreeMap<(String, TopicPartition), History> = BTreeMap::new();
    let in_place = in_place && args.watch && args.output == OutputFormat::Table;
    let mut round = 0u64;
    loop {
        round += 1;
        let (views, missing) = refresh(&mut client, &args.group, &mut history, window_ms).await?;
        let text = render_lag(&views, args.output);
        if in_place {
            // Cursor home and clear screen: the table is redrawn in place.
            let _ = write!(out, "\x1b[H\x1b[2J");
        }
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        // As `groups describe`: the groups that exist are shown, and a named group that does
        // not exist fails the command (also under --watch, where it is not going to appear).
        if !missing.is_empty() {
            return Err(missing_groups(&missing));
        }
        if !args.watch || (args.iterations > 0 && round >= args.iterations) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(interval_ms as u64)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// The error for named groups that do not exist.
fn missing_groups(missing: &[String]) -> CliError {
    let names: Vec<String> = missing.iter().map(|g| format!("'{g}'")).collect();
    CliError::Failed(match names.as_slice() {
        [one] => format!("group {one} does not exist"),
        _ => format!("groups {} do not exist", names.join(", ")),
    })
}

/// The status of a partition whose log end offset the cluster would not give: WARN, naming
/// the error (a deleted topic's partitions read UNKNOWN_TOPIC_OR_PARTITION).
fn unknown_log_end(code: i16) -> Evaluation {
    let why = if code == codes::UNKNOWN_TOPIC_OR_PARTITION {
        "the topic or partition does not exist".to_string()
    } else {
        codes::describe(code)
    };
    Evaluation {
        status: Status::Warn,
        reason: format!("log end offset unknown: {why}"),
    }
}

/// One round: the views of the groups that exist, and the named groups that do not. Without
/// named groups, every listed group is reported, and one deleted since the listing is skipped.
async fn refresh(
    client: &mut AdminClient,
    wanted: &[String],
    history: &mut BTreeMap<(String, TopicPartition), History>,
    window_ms: i64,
) -> Result<(Vec<LagGroupView>, Vec<String>), CliError> {
    let groups: Vec<String> = if wanted.is_empty() {
        client
            .list_groups(&[])
            .await?
            .into_iter()
            .map(|g| g.group_id)
            .collect()
    } else {
        wanted.to_vec()
    };
    let states = read_groups(client, &groups, true).await?;
    let mut views = Vec::new();
    let mut missing = Vec::new();
    for s in states {
        let g = &s.info;
        if !s.exists {
            if !wanted.is_empty() {
                missing.push(g.group_id.clone());
            }
            continue;
        }
        let now = now_ms();
        let ctx = WindowContext {
            window_ms,
            now_ms: now,
            last_commit_ms: None,
            consumer_active: Some(!g.members.is_empty()),
        };
        let mut rows = Vec::new();
        for p in &s.partitions {
            let tp = &p.tp;
            let current = p.current;
            let log_end = match p.log_end {
                Ok(end) => end,
                Err(code) => {
                    // Nothing to sample: the partition is shown with `-` and why.
                    rows.push(LagRow {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        current,
                        log_end: None,
                        time_lag: crate::lag::TimeLag::Unknown,
                        status: unknown_log_end(code),
                    });
                    continue;
                }
            };
            let h = history.entry((g.group_id.clone(), tp.clone())).or_default();
            h.samples.push_back(Sample {
                time_ms: now,
                committed: current,
                log_end,
            });
            if h.ends.back().is_none_or(|(e, _)| *e != log_end) {
                h.ends.push_back((log_end, now));
            }
            // Keep what the window and estimates need, bounded.
            while h.samples.len() > MAX_SAMPLES
                || h.samples
                    .front()
                    .is_some_and(|s| now - s.time_ms > 2 * window_ms)
                    && h.samples.len() > 2
            {
                h.samples.pop_front();
            }
            while h.ends.len() > MAX_SAMPLES {
                h.ends.pop_front();
            }
            let ends_vec: Vec<(i64, i64)> = h.ends.iter().copied().collect();
            let samples: Vec<Sample> = h.samples.iter().copied().collect();
            rows.push(LagRow {
                topic: tp.topic.clone(),
                partition: tp.partition,
                current,
                log_end: Some(log_end),
                time_lag: time_lag(now, current, log_end, p.next_record_ms, &ends_vec),
                status: evaluate(&samples, ctx),
            });
        }
        let status = group_status(
            rows.iter()
                .map(|r| (r.topic.as_str(), r.partition, &r.status)),
        );
        views.push(LagGroupView {
            group: g.group_id.clone(),
            status,
            rows,
        });
    }
    Ok((views, missing))
}
