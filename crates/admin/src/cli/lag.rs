//! `waterline lag`: lag in records, time lag and a Burrow-style status per partition and
//! group. One look judges only what one look can know; `--watch` builds the window of commits
//! the status rules need (see [`crate::lag`]), keeps going through broker hiccups and streams
//! JSON/CSV with timestamps; `--check` turns the statuses into an exit code.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use waterline_core::TopicPartition;

use super::render::{LagGroupView, LagRow, render_lag, render_lag_stream};
use super::snapshot::{PartitionState, read_groups};
use super::{CliError, ConnectionArgs, Out, OutputFormat, finish, now_ms};
use crate::client::AdminClient;
use crate::codes;
use crate::lag::{
    DEFAULT_WINDOW_COMMITS, Evaluation, Facts, Sample, Status, TimeLag, Window, evaluate_once,
    group_status, time_lag,
};
use crate::timefmt::{format_ms, parse_duration_ms};

/// (log end, time) points kept per partition for time-lag interpolation.
const MAX_END_POINTS: usize = 1_000;
/// The longest wait between reconnection attempts under `--watch`.
const MAX_BACKOFF_MS: i64 = 30_000;
/// The exit code of a failed `--check`.
pub const CHECK_FAILED_EXIT: u8 = 3;

/// `waterline lag`.
#[derive(Debug, clap::Args)]
pub struct LagArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Group to report; repeatable. Default: every group.
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
    /// Refresh until interrupted, judging each partition over its last --window commits;
    /// broker errors are shown and retried with backoff.
    #[arg(long)]
    pub watch: bool,
    /// Refresh interval with --watch, as an ISO-8601 duration.
    #[arg(long, default_value = "PT5S", value_name = "DURATION")]
    pub interval: String,
    /// Status window: the number of commits a partition is judged over (--watch); until it
    /// has seen that many, a lagging partition reads UNKNOWN (still learning).
    #[arg(long, default_value_t = DEFAULT_WINDOW_COMMITS, value_name = "COMMITS")]
    pub window: usize,
    /// Exit with code 3 when any partition is at or past --status (after the last refresh
    /// with --watch), for cron and CI.
    #[arg(long)]
    pub check: bool,
    /// The status --check fails at (severity: ok < unknown < warn < stall < stop < rewind <
    /// lost).
    #[arg(long, value_enum, default_value = "warn", requires = "check")]
    pub status: Status,
    /// Stop after this many refreshes (for scripts and tests); 0 means no limit.
    #[arg(long, default_value_t = 0, hide = true)]
    pub iterations: u64,
    /// Output format. With --watch, JSON is one object per line and CSV has a TIME column
    /// and its header once.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

/// Runs `waterline lag` writing to `out`/`err`; returns the exit code. With `in_place`,
/// `--watch` clears the screen before each table (for terminals).
pub async fn run_lag_with(args: LagArgs, in_place: bool, out: Out<'_>, err: Out<'_>) -> u8 {
    let result = lag(args, in_place, out, &mut *err).await;
    finish("lag", result, err)
}

/// What is remembered between refreshes for one partition of one group.
#[derive(Debug)]
struct History {
    window: Window,
    /// (log end offset, time) points for time-lag interpolation.
    ends: VecDeque<(i64, i64)>,
    /// The round it was last seen in (partitions not seen are forgotten).
    seen: u64,
}

/// Per-partition histories of many groups, fed one look at a time: shared by `lag --watch`
/// and the exporter so both judge by the same rules.
#[derive(Debug)]
pub(crate) struct LagTracker {
    window: usize,
    round: u64,
    history: BTreeMap<(String, TopicPartition), History>,
}

impl LagTracker {
    /// A tracker judging over `window` commits.
    pub fn new(window: usize) -> Self {
        LagTracker {
            window,
            round: 0,
            history: BTreeMap::new(),
        }
    }

    /// Starts a round: partitions not observed in it are forgotten by [`Self::end_round`].
    pub fn begin_round(&mut self) {
        self.round += 1;
    }

    /// Forgets partitions (and groups) that were not observed in this round.
    pub fn end_round(&mut self) {
        let round = self.round;
        self.history.retain(|_, h| h.seen == round);
    }

    /// Observes one group's partitions at `now` and returns its rows and status. With
    /// `one_shot`, each partition is judged by this look alone.
    pub fn observe(
        &mut self,
        group: &str,
        members_active: bool,
        partitions: &[PartitionState],
        now: i64,
        one_shot: bool,
    ) -> LagGroupView {
        let mut rows = Vec::with_capacity(partitions.len());
        for p in partitions {
            let log_end = match p.log_end {
                Ok(end) => end,
                Err(code) => {
                    // Nothing to sample: the partition is shown with `-` and why.
                    rows.push(LagRow {
                        topic: p.tp.topic.clone(),
                        partition: p.tp.partition,
                        current: p.current,
                        log_end: None,
                        time_lag: TimeLag::Unknown,
                        status: unknown_log_end(code),
                    });
                    continue;
                }
            };
            let sample = Sample {
                time_ms: now,
                committed: p.current,
                log_end,
            };
            let facts = Facts {
                members_active: Some(members_active),
                log_start: p.log_start,
            };
            let window = self.window;
            let round = self.round;
            let h = self
                .history
                .entry((group.to_string(), p.tp.clone()))
                .or_insert_with(|| History {
                    window: Window::new(window),
                    ends: VecDeque::new(),
                    seen: round,
                });
            h.seen = round;
            h.window.observe(sample);
            if h.ends.back().is_none_or(|(e, _)| *e != log_end) {
                h.ends.push_back((log_end, now));
                while h.ends.len() > MAX_END_POINTS {
                    h.ends.pop_front();
                }
            }
            let ends: Vec<(i64, i64)> = h.ends.iter().copied().collect();
            let status = if one_shot {
                evaluate_once(sample, facts)
            } else {
                h.window.evaluate(now, facts)
            };
            rows.push(LagRow {
                topic: p.tp.topic.clone(),
                partition: p.tp.partition,
                current: p.current,
                log_end: Some(log_end),
                time_lag: time_lag(now, p.current, log_end, p.next_record_ms, &ends),
                status,
            });
        }
        let status = group_status(
            rows.iter()
                .map(|r| (r.topic.as_str(), r.partition, &r.status)),
        );
        LagGroupView {
            group: group.to_string(),
            status,
            rows,
        }
    }
}

async fn lag(args: LagArgs, in_place: bool, out: Out<'_>, err: Out<'_>) -> Result<(), CliError> {
    let interval_ms = parse_duration_ms(&args.interval)
        .map_err(|e| CliError::Usage(format!("--interval: {e}")))?;
    if interval_ms <= 0 {
        return Err(CliError::Usage("--interval must be positive".into()));
    }
    if args.window < 2 {
        return Err(CliError::Usage(
            "--window must be at least 2 commits (a trend needs two)".into(),
        ));
    }
    let mut tracker = LagTracker::new(args.window);
    if !args.watch {
        let mut client = args.conn.connect().await?;
        let (views, missing) = refresh(&mut client, &args.group, &mut tracker, true).await?;
        let _ = out.write_all(render_lag(&views, args.output).as_bytes());
        let _ = out.flush();
        if !missing.is_empty() {
            return Err(missing_groups(&missing));
        }
        return check(&args, &views);
    }

    let in_place = in_place && args.output == OutputFormat::Table;
    let mut client: Option<AdminClient> = None;
    let mut round = 0u64;
    let mut failures = 0u32;
    let mut last_views: Vec<LagGroupView> = Vec::new();
    let mut csv_header = true;
    loop {
        round += 1;
        let now = now_ms();
        let result = match client.as_mut() {
            Some(c) => refresh(c, &args.group, &mut tracker, false).await,
            None => match args.conn.connect().await {
                Ok(mut c) => {
                    let r = refresh(&mut c, &args.group, &mut tracker, false).await;
                    client = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        let header = format!(
            "Every {}, window {} commits; refreshed {}",
            crate::timefmt::format_span_ms(interval_ms),
            args.window,
            format_ms(now)
        );
        let wait_ms = match result {
            Ok((views, missing)) => {
                failures = 0;
                let text = match args.output {
                    OutputFormat::Table => format!("{header}\n{}", render_lag(&views, args.output)),
                    f => render_lag_stream(&views, f, now, csv_header),
                };
                csv_header = false;
                if in_place {
                    // Cursor home and clear screen: the table is redrawn in place.
                    let _ = write!(out, "\x1b[H\x1b[2J");
                }
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
                // As `groups describe`: a named group that does not exist fails the command
                // (it is not going to appear by waiting).
                if !missing.is_empty() {
                    return Err(missing_groups(&missing));
                }
                last_views = views;
                interval_ms
            }
            Err(e) => {
                // A hiccup (broker restarting, connection reset): show it where the table
                // goes, drop the connection and try again with backoff.
                client = None;
                failures += 1;
                let backoff = interval_ms
                    .saturating_mul(1i64 << failures.min(16))
                    .clamp(interval_ms, MAX_BACKOFF_MS.max(interval_ms));
                let msg = e.to_string().replace('\n', " ");
                let line = format!(
                    "error at {}: {msg}; retrying in {}",
                    format_ms(now),
                    crate::timefmt::format_span_ms(backoff)
                );
                match args.output {
                    OutputFormat::Table => {
                        if in_place {
                            let _ = write!(out, "\x1b[H\x1b[2J");
                        }
                        let mut text = format!("{header}\n{line}\n");
                        if in_place && !last_views.is_empty() {
                            text.push_str("Last good refresh:\n");
                            text.push_str(&render_lag(&last_views, args.output));
                        }
                        let _ = out.write_all(text.as_bytes());
                    }
                    OutputFormat::Json => {
                        let v = serde_json::json!({
                            "time": format_ms(now),
                            "time_ms": now,
                            "error": msg,
                            "retry_in_ms": backoff,
                        });
                        let _ = writeln!(out, "{v}");
                    }
                    // CSV rows cannot carry an error: it goes to stderr.
                    OutputFormat::Csv => {
                        let _ = writeln!(err, "waterline lag: {line}");
                    }
                }
                let _ = out.flush();
                backoff
            }
        };
        if args.iterations > 0 && round >= args.iterations {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    check(&args, &last_views)
}

/// `--check`: fails when any partition is at or past `--status`.
fn check(args: &LagArgs, views: &[LagGroupView]) -> Result<(), CliError> {
    if !args.check {
        return Ok(());
    }
    let failing: Vec<(&str, &LagRow)> = views
        .iter()
        .flat_map(|v| v.rows.iter().map(move |r| (v.group.as_str(), r)))
        .filter(|(_, r)| r.status.status >= args.status)
        .collect();
    let Some((group, worst)) = failing.iter().max_by_key(|(_, r)| r.status.status) else {
        return Ok(());
    };
    Err(CliError::Check(format!(
        "{} partition(s) at or past {}; worst: group '{group}' {} partition {}: {} ({})",
        failing.len(),
        args.status.as_str(),
        worst.topic,
        worst.partition,
        worst.status.status.as_str(),
        worst.status.reason
    )))
}

/// The error for named groups that do not exist.
fn missing_groups(missing: &[String]) -> CliError {
    let names: Vec<String> = missing.iter().map(|g| format!("'{g}'")).collect();
    CliError::Failed(match names.as_slice() {
        [one] => format!("group {one} does not exist"),
        _ => format!("groups {} do not exist", names.join(", ")),
    })
}

/// The status of a partition whose log end offset the cluster would not give: UNKNOWN,
/// naming the error (a deleted topic's partitions read UNKNOWN_TOPIC_OR_PARTITION).
fn unknown_log_end(code: i16) -> Evaluation {
    let why = if code == codes::UNKNOWN_TOPIC_OR_PARTITION {
        "the topic or partition does not exist".to_string()
    } else {
        codes::describe(code)
    };
    Evaluation {
        status: Status::Unknown,
        reason: format!("log end offset unknown: {why}"),
    }
}

/// One round: the views of the groups that exist, and the named groups that do not. Without
/// named groups, every listed group is reported, and one deleted since the listing is skipped.
async fn refresh(
    client: &mut AdminClient,
    wanted: &[String],
    tracker: &mut LagTracker,
    one_shot: bool,
) -> Result<(Vec<LagGroupView>, Vec<String>), CliError> {
    let groups: Vec<String> = if wanted.is_empty() {
        client
            .list_groups(&[])
            .await?
            .into_iter()
            .map(|g| g.group_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        wanted.to_vec()
    };
    let states = read_groups(client, &groups, true).await?;
    let mut views = Vec::new();
    let mut missing = Vec::new();
    tracker.begin_round();
    for s in states {
        let g = &s.info;
        if !s.exists {
            if !wanted.is_empty() {
                missing.push(g.group_id.clone());
            }
            continue;
        }
        views.push(tracker.observe(
            &g.group_id,
            !g.members.is_empty(),
            &s.partitions,
            now_ms(),
            one_shot,
        ));
    }
    tracker.end_round();
    Ok((views, missing))
}
