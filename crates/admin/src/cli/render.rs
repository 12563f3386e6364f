//! Rendering of command output (tables, JSON, CSV) over plain data.

use serde_json::{Value, json};
use waterline_core::TopicPartition;

use super::OutputFormat;
use crate::client::{ConfigEntry, ListedGroupInfo, TopicInfo};
use crate::csvio::quote;
use crate::lag::{Evaluation, TimeLag};
use crate::reset::{PlanDrift, ResetPlan};
use crate::timefmt::format_ms;

/// Placeholder for values that do not exist (no commit, no owner).
pub const NONE: &str = "-";

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| NONE.to_string())
}

/// Aligned columns separated by two spaces; the last column is not padded.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut l = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            l.push_str(c);
            if i + 1 < n {
                let pad = widths[i].saturating_sub(c.chars().count()) + 2;
                l.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// CSV with a header line; `-` placeholders become empty fields.
pub fn render_csv(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = headers.join(",");
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .map(|c| if c == NONE { String::new() } else { quote(c) })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn json_text(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// `waterline groups list`.
pub fn render_group_list(groups: &[ListedGroupInfo], format: OutputFormat) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.group_id.clone(),
                if g.state.is_empty() {
                    NONE.into()
                } else {
                    g.state.clone()
                },
                if g.protocol_type.is_empty() {
                    NONE.into()
                } else {
                    g.protocol_type.clone()
                },
            ]
        })
        .collect();
    let headers = ["GROUP", "STATE", "PROTOCOL-TYPE"];
    match format {
        OutputFormat::Table => render_table(&headers, &rows),
        OutputFormat::Csv => render_csv(&headers, &rows),
        OutputFormat::Json => json_text(&json!({
            "groups": groups.iter().map(|g| json!({
                "group": g.group_id,
                "state": (!g.state.is_empty()).then_some(&g.state),
                "protocol_type": g.protocol_type,
            })).collect::<Vec<_>>()
        })),
    }
}

/// One partition line of `groups describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset.
    pub current: Option<i64>,
    /// Log end offset.
    pub log_end: Option<i64>,
    /// Time lag.
    pub time_lag: TimeLag,
    /// Owning member, if assigned.
    pub consumer_id: Option<String>,
    /// Owner's host.
    pub host: Option<String>,
    /// Owner's client id.
    pub client_id: Option<String>,
}

impl OffsetRow {
    /// LAG: log end minus committed, when both exist.
    pub fn lag(&self) -> Option<i64> {
        Some(self.log_end?.saturating_sub(self.current?).max(0))
    }
}

/// One member line of `groups describe --members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Member id.
    pub consumer_id: String,
    /// Host.
    pub host: String,
    /// Client id.
    pub client_id: String,
    /// Assigned partitions.
    pub assignment: Vec<TopicPartition>,
}

/// Everything `groups describe` shows about one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Group id.
    pub group: String,
    /// State as reported (Empty, Stable, PreparingRebalance, ..., Dead).
    pub state: String,
    /// Coordinator `host:port`.
    pub coordinator: Option<String>,
    /// Assignment strategy.
    pub protocol: String,
    /// Partition lines, sorted.
    pub offsets: Vec<OffsetRow>,
    /// Members.
    pub members: Vec<MemberRow>,
    /// Whether the group exists (has members or committed offsets).
    pub exists: bool,
}

impl GroupView {
    /// The state message printed before a group's table, as kafka-consumer-groups does.
    pub fn message(&self) -> Option<String> {
        let g = &self.group;
        if !self.exists {
            return Some(format!("Consumer group '{g}' does not exist."));
        }
        match self.state.as_str() {
            "Empty" => Some(format!("Consumer group '{g}' has no active members.")),
            "PreparingRebalance" | "CompletingRebalance" | "Reconciling" | "Assigning" => {
                Some(format!("Warning: Consumer group '{g}' is rebalancing."))
            }
            "Dead" => Some(format!("Consumer group '{g}' does not exist.")),
            _ => None,
        }
    }
}

/// Which `groups describe` view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescribeView {
    /// Partitions with offsets and lag (default).
    Offsets,
    /// Members.
    Members,
    /// Members with their assigned partitions (`--members --verbose`).
    MembersVerbose,
    /// Group state.
    State,
}

const OFFSET_HEADERS: [&str; 10] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "TIME-LAG",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
];
const MEMBER_HEADERS: [&str; 5] = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"];
const MEMBER_VERBOSE_HEADERS: [&str; 6] = [
    "GROUP",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
    "#PARTITIONS",
    "ASSIGNMENT",
];

/// An assignment as kafka-consumer-groups prints it: `t(0,1),u(2)`, sorted; `-` when empty.
pub fn assignment_text(assignment: &[TopicPartition]) -> String {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for tp in assignment {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    if by_topic.is_empty() {
        return NONE.into();
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            ps.dedup();
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}({})", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}
const STATE_HEADERS: [&str; 5] = [
    "GROUP",
    "COORDINATOR",
    "ASSIGNMENT-STRATEGY",
    "STATE",
    "#MEMBERS",
];

fn offset_cells(g: &str, r: &OffsetRow) -> Vec<String> {
    vec![
        g.to_string(),
        r.topic.clone(),
        r.partition.to_string(),
        opt(&r.current),
        opt(&r.log_end),
        opt(&r.lag()),
        r.time_lag.display(),
        opt(&r.consumer_id),
        opt(&r.host),
        opt(&r.client_id),
    ]
}

fn member_cells(g: &str, m: &MemberRow) -> Vec<String> {
    vec![
        g.to_string(),
        m.consumer_id.clone(),
        m.host.clone(),
        m.client_id.clone(),
        m.assignment.len().to_string(),
    ]
}

fn state_cells(v: &GroupView) -> Vec<String> {
    vec![
        v.group.clone(),
        opt(&v.coordinator),
        if v.protocol.is_empty() {
            NONE.into()
        } else {
            v.protocol.clone()
        },
        v.state.clone(),
        v.members.len().to_string(),
    ]
}

fn time_lag_json(t: TimeLag) -> (Value, Value) {
    let kind = match t {
        TimeLag::Exact(_) => "exact",
        TimeLag::Estimate(_) => "estimate",
        TimeLag::AtLeast(_) => "at_least",
        TimeLag::Unknown => "unknown",
    };
    (json!(t.ms()), json!(kind))
}

fn group_json(v: &GroupView) -> Value {
    json!({
        "group": v.group,
        "state": v.state,
        "exists": v.exists,
        "message": v.message(),
        "coordinator": v.coordinator,
        "assignment_strategy": v.protocol,
        "partitions": v.offsets.iter().map(|r| {
            let (ms, kind) = time_lag_json(r.time_lag);
            json!({
                "topic": r.topic,
                "partition": r.partition,
                "current_offset": r.current,
                "log_end_offset": r.log_end,
                "lag": r.lag(),
                "time_lag_ms": ms,
                "time_lag_kind": kind,
                "consumer_id": r.consumer_id,
                "host": r.host,
                "client_id": r.client_id,
            })
        }).collect::<Vec<_>>(),
        "members": v.members.iter().map(|m| json!({
            "consumer_id": m.consumer_id,
            "host": m.host,
            "client_id": m.client_id,
            "assignment": m.assignment.iter().map(|tp| json!({"topic": tp.topic, "partition": tp.partition})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// `waterline groups describe`. For tables, each group's state message precedes its table;
/// for CSV, messages are left to the caller (stderr); JSON carries them in `message`.
pub fn render_describe(views: &[GroupView], view: DescribeView, format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return json_text(&json!({ "groups": views.iter().map(group_json).collect::<Vec<_>>() }));
    }
    let (headers, per_group): (&[&str], Vec<Vec<Vec<String>>>) = match view {
        DescribeView::Offsets => (
            &OFFSET_HEADERS,
            views
                .iter()
                .map(|v| {
                    v.offsets
                        .iter()
                        .map(|r| offset_cells(&v.group, r))
                        .collect()
                })
                .collect(),
        ),
        DescribeView::Members => (
            &MEMBER_HEADERS,
            views
                .iter()
                .map(|v| {
                    v.members
                        .iter()
                        .map(|m| member_cells(&v.group, m))
                        .collect()
                })
                .collect(),
        ),
        DescribeView::MembersVerbose => (
            &MEMBER_VERBOSE_HEADERS,
            views
                .iter()
                .map(|v| {
                    v.members
                        .iter()
                        .map(|m| {
                            let mut cells = member_cells(&v.group, m);
                            cells.push(assignment_text(&m.assignment));
                            cells
                        })
                        .collect()
                })
                .collect(),
        ),
        DescribeView::State => (
            &STATE_HEADERS,
            views.iter().map(|v| vec![state_cells(v)]).collect(),
        ),
    };
    match format {
        OutputFormat::Csv => render_csv(headers, &per_group.concat()),
        _ => {
            let mut out = String::new();
            for (v, rows) in views.iter().zip(per_group) {
                if !out.is_empty() {
                    out.push('\n');
                }
                if let Some(m) = v.message() {
                    out.push_str(&m);
                    out.push('\n');
                    if !v.exists || (rows.is_empty() && view != DescribeView::State) {
                        continue;
                    }
                    out.push('\n');
                }
                out.push_str(&render_table(headers, &rows));
            }
            out
        }
    }
}

const PLAN_HEADERS: [&str; 7] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "NEW-OFFSET",
    "MESSAGES-SKIPPED-OR-REPLAYED",
    "TIME-RANGE",
];

/// A reset plan. `time_ranges[i]` describes row `i` (see [`crate::reset::describe_time_range`]).
/// CSV output is the kafka-consumer-groups `--export` format (`topic,partition,offset`).
/// Warnings are diagnostics, not output: only JSON carries them (in `warnings`); for every
/// format the caller writes them to standard error with [`render_plan_warnings`].
pub fn render_plan(plan: &ResetPlan, time_ranges: &[String], format: OutputFormat) -> String {
    match format {
        OutputFormat::Csv => {
            let rows: Vec<crate::csvio::CsvRow> = plan
                .rows
                .iter()
                .map(|r| crate::csvio::CsvRow {
                    group: None,
                    tp: r.tp(),
                    offset: r.new,
                })
                .collect();
            crate::csvio::write_csv(&rows, false)
        }
        OutputFormat::Json => json_text(&json!({
            "group": plan.group,
            "mode": plan.mode.flag(),
            "created": format_ms(plan.created_ms),
            "warnings": plan.warnings,
            "partitions": plan.rows.iter().enumerate().map(|(i, r)| json!({
                "topic": r.topic,
                "partition": r.partition,
                "current_offset": r.current,
                "new_offset": r.new,
                "messages_skipped_or_replayed": r.delta(),
                "time_range": time_ranges.get(i),
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = plan
                .rows
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    vec![
                        plan.group.clone(),
                        r.topic.clone(),
                        r.partition.to_string(),
                        opt(&r.current),
                        r.new.to_string(),
                        opt(&r.delta()),
                        time_ranges.get(i).cloned().unwrap_or_else(|| NONE.into()),
                    ]
                })
                .collect();
            render_table(&PLAN_HEADERS, &rows)
        }
    }
}

/// The plan's warnings (clamps, substitutions) for standard error: one `Warning: ` line each.
pub fn render_plan_warnings(plan: &ResetPlan) -> String {
    plan.warnings
        .iter()
        // One line per warning, whatever the text: stderr is read line by line.
        .map(|w| format!("Warning: {}\n", w.replace(['\n', '\r'], " ")))
        .collect()
}

/// Why a plan file was refused: the partitions whose committed offsets moved.
pub fn render_drift(group: &str, drift: &[PlanDrift]) -> String {
    let rows: Vec<Vec<String>> = drift
        .iter()
        .map(|d| {
            vec![
                group.to_string(),
                d.tp.topic.clone(),
                d.tp.partition.to_string(),
                opt(&d.planned),
                opt(&d.actual),
            ]
        })
        .collect();
    render_table(
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "PLANNED-CURRENT-OFFSET",
            "ACTUAL-CURRENT-OFFSET",
        ],
        &rows,
    )
}

/// One partition line of `waterline lag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset.
    pub current: Option<i64>,
    /// Log end offset (`None`: the cluster would not give it, e.g. the topic was deleted).
    pub log_end: Option<i64>,
    /// Time lag.
    pub time_lag: TimeLag,
    /// Status with reason.
    pub status: Evaluation,
}

impl LagRow {
    /// Lag in records (`None` without a commit or a log end).
    pub fn lag(&self) -> Option<i64> {
        Some(self.log_end?.saturating_sub(self.current?).max(0))
    }
}

/// One group of `waterline lag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LagGroupView {
    /// Group id.
    pub group: String,
    /// Group status: the worst partition's.
    pub status: Evaluation,
    /// Partitions.
    pub rows: Vec<LagRow>,
}

const LAG_HEADERS: [&str; 9] = [
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "TIME-LAG",
    "STATUS",
    "REASON",
];

/// One `waterline lag` partition as a JSON value.
fn lag_row_json(r: &LagRow) -> Value {
    let (ms, kind) = time_lag_json(r.time_lag);
    json!({
        "topic": r.topic,
        "partition": r.partition,
        "current_offset": r.current,
        "log_end_offset": r.log_end,
        "lag": r.lag(),
        "time_lag_ms": ms,
        "time_lag_kind": kind,
        "status": r.status.status,
        "reason": r.status.reason,
    })
}

/// One `waterline lag` group as a JSON value.
fn lag_group_json(v: &LagGroupView) -> Value {
    json!({
        "group": v.group,
        "status": v.status.status,
        "reason": v.status.reason,
        "partitions": v.rows.iter().map(lag_row_json).collect::<Vec<_>>(),
    })
}

/// One refresh of `waterline lag --watch` as a stream: JSON is one object on one line with
/// the refresh time; CSV rows start with a TIME column and the header comes only when
/// `header` (the first refresh). Table output is not a stream: use [`render_lag`].
pub fn render_lag_stream(
    views: &[LagGroupView],
    format: OutputFormat,
    time_ms: i64,
    header: bool,
) -> String {
    let time = crate::timefmt::format_ms(time_ms);
    match format {
        OutputFormat::Csv => {
            let mut rows: Vec<Vec<String>> = Vec::new();
            for v in views {
                for r in &v.rows {
                    let mut row = vec![time.clone(), v.group.clone()];
                    row.extend(lag_cells(r));
                    rows.push(row);
                }
            }
            let mut headers = vec!["TIME"];
            headers.extend(LAG_HEADERS);
            let text = render_csv(&headers, &rows);
            if header {
                text
            } else {
                // render_csv always leads with the header line: drop it.
                text.split_once('\n')
                    .map(|(_, rest)| rest.to_string())
                    .unwrap_or_default()
            }
        }
        _ => {
            let v = json!({
                "time": time,
                "time_ms": time_ms,
                "groups": views.iter().map(lag_group_json).collect::<Vec<_>>(),
            });
            format!("{v}\n")
        }
    }
}

/// The cells of a lag row after the GROUP column.
fn lag_cells(r: &LagRow) -> Vec<String> {
    vec![
        r.topic.clone(),
        r.partition.to_string(),
        opt(&r.current),
        opt(&r.log_end),
        opt(&r.lag()),
        r.time_lag.display(),
        r.status.status.as_str().to_string(),
        r.status.reason.clone(),
    ]
}

/// `waterline lag`: per group a status line, then its partitions.
pub fn render_lag(views: &[LagGroupView], format: OutputFormat) -> String {
    let cells = |g: &str, r: &LagRow| {
        let mut row = vec![g.to_string()];
        row.extend(lag_cells(r));
        row
    };
    match format {
        OutputFormat::Json => json_text(&json!({
            "groups": views.iter().map(lag_group_json).collect::<Vec<_>>()
        })),
        OutputFormat::Csv => {
            let rows: Vec<Vec<String>> = views
                .iter()
                .flat_map(|v| v.rows.iter().map(|r| cells(&v.group, r)))
                .collect();
            render_csv(&LAG_HEADERS, &rows)
        }
        OutputFormat::Table => {
            let mut out = String::new();
            for v in views {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!(
                    "Group '{}': {} ({})\n",
                    v.group,
                    v.status.status.as_str(),
                    v.status.reason
                ));
                let rows: Vec<Vec<String>> = v.rows.iter().map(|r| cells(&v.group, r)).collect();
                out.push_str(&render_table(&LAG_HEADERS, &rows));
            }
            out
        }
    }
}

/// `waterline topics list`: name and partition count per topic, in the order given.
pub fn render_topic_list(topics: &[TopicInfo], format: OutputFormat) -> String {
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| vec![t.name.clone(), t.partitions.len().to_string()])
        .collect();
    let headers = ["TOPIC", "PARTITIONS"];
    match format {
        OutputFormat::Table => render_table(&headers, &rows),
        OutputFormat::Csv => render_csv(&headers, &rows),
        OutputFormat::Json => json_text(&json!({
            "topics": topics.iter().map(|t| json!({
                "topic": t.name,
                "partitions": t.partitions.len(),
                "internal": t.internal,
            })).collect::<Vec<_>>()
        })),
    }
}

/// One partition line of `topics describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitionRow {
    /// Partition index.
    pub partition: i32,
    /// Leader node id (-1: none).
    pub leader: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Log start offset (ListOffsets earliest).
    pub log_start: Option<i64>,
    /// Log end offset (ListOffsets latest).
    pub log_end: Option<i64>,
    /// Bytes on disk of the leader's replica (DescribeLogDirs); `None` when not reported.
    pub size: Option<i64>,
}

/// Everything `topics describe` shows about one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    /// Topic name.
    pub topic: String,
    /// Whether the broker marks it internal.
    pub internal: bool,
    /// Partitions, sorted.
    pub partitions: Vec<TopicPartitionRow>,
    /// The configs to show (overrides only, or all with `--all-configs`), sorted by name.
    pub configs: Vec<ConfigEntry>,
    /// Whether `configs` holds every setting rather than only the topic's overrides.
    pub all_configs: bool,
}

impl TopicView {
    /// The replication factor: the largest replica count of any partition.
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .iter()
            .map(|p| p.replicas.len())
            .max()
            .unwrap_or(0)
    }
}

const TOPIC_CONFIG_HEADERS: [&str; 3] = ["CONFIG", "VALUE", "SOURCE"];
const TOPIC_PARTITION_HEADERS: [&str; 8] = [
    "TOPIC",
    "PARTITION",
    "LEADER",
    "REPLICAS",
    "ISR",
    "LOG-START-OFFSET",
    "LOG-END-OFFSET",
    "SIZE",
];

fn nodes(ids: &[i32]) -> String {
    if ids.is_empty() {
        return NONE.into();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// A config value for a table: `-` when absent, `(sensitive)` when withheld as secret.
fn config_value(c: &ConfigEntry) -> String {
    match (&c.value, c.sensitive) {
        (Some(v), _) => v.replace(['\n', '\r'], " "),
        (None, true) => "(sensitive)".into(),
        (None, false) => NONE.into(),
    }
}

/// `waterline topics describe`: per topic a summary line, its configs (the topic's overrides,
/// or every setting with its source) and its partitions with log start and end offsets and
/// size on disk in bytes (`-` when the broker does not report it). Topics are separated by a
/// blank line.
pub fn render_topic_describe(views: &[TopicView], format: OutputFormat) -> String {
    if format == OutputFormat::Json {
        return json_text(&json!({
            "topics": views.iter().map(|v| json!({
                "topic": v.topic,
                "internal": v.internal,
                "partition_count": v.partitions.len(),
                "replication_factor": v.replication_factor(),
                "configs": v.configs.iter().map(|c| json!({
                    "name": c.name,
                    "value": c.value,
                    "source": c.source.name(),
                    "read_only": c.read_only,
                    "sensitive": c.sensitive,
                })).collect::<Vec<_>>(),
                "partitions": v.partitions.iter().map(|p| json!({
                    "partition": p.partition,
                    "leader": p.leader,
                    "replicas": p.replicas,
                    "isr": p.isr,
                    "log_start_offset": p.log_start,
                    "log_end_offset": p.log_end,
                    "size_bytes": p.size,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>()
        }));
    }
    let mut out = String::new();
    for v in views {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "Topic: {}  Partitions: {}  Replication-Factor: {}{}\n\n",
            v.topic,
            v.partitions.len(),
            v.replication_factor(),
            if v.internal { "  Internal: true" } else { "" }
        ));
        if v.configs.is_empty() {
            out.push_str(if v.all_configs {
                "No configs reported.\n\n"
            } else {
                "No config overrides.\n\n"
            });
        } else {
            let rows: Vec<Vec<String>> = v
                .configs
                .iter()
                .map(|c| vec![c.name.clone(), config_value(c), c.source.name()])
                .collect();
            out.push_str(&render_table(&TOPIC_CONFIG_HEADERS, &rows));
            out.push('\n');
        }
        let rows: Vec<Vec<String>> = v
            .partitions
            .iter()
            .map(|p| {
                vec![
                    v.topic.clone(),
                    p.partition.to_string(),
                    if p.leader < 0 {
                        NONE.into()
                    } else {
                        p.leader.to_string()
                    },
                    nodes(&p.replicas),
                    nodes(&p.isr),
                    opt(&p.log_start),
                    opt(&p.log_end),
                    opt(&p.size),
                ]
            })
            .collect();
        out.push_str(&render_table(&TOPIC_PARTITION_HEADERS, &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ConfigSource;
    use crate::lag::Status;
    use crate::reset::{PartitionInput, ResetMode, plan};

    fn view(state: &str, exists: bool) -> GroupView {
        GroupView {
            group: "g".into(),
            state: state.into(),
            coordinator: Some("127.0.0.1:9092".into()),
            protocol: "range".into(),
            offsets: vec![
                OffsetRow {
                    topic: "t".into(),
                    partition: 0,
                    current: Some(5),
                    log_end: Some(9),
                    time_lag: TimeLag::Exact(1_500),
                    consumer_id: Some("c-1".into()),
                    host: Some("/10.0.0.1".into()),
                    client_id: Some("app".into()),
                },
                OffsetRow {
                    topic: "t".into(),
                    partition: 1,
                    current: None,
                    log_end: Some(3),
                    time_lag: TimeLag::Unknown,
                    consumer_id: None,
                    host: None,
                    client_id: None,
                },
            ],
            members: vec![MemberRow {
                consumer_id: "c-1".into(),
                host: "/10.0.0.1".into(),
                client_id: "app".into(),
                assignment: vec![TopicPartition::new("t", 0)],
            }],
            exists,
        }
    }

    #[test]
    fn offsets_table() {
        let out = render_describe(
            &[view("Stable", true)],
            DescribeView::Offsets,
            OutputFormat::Table,
        );
        let expect = "\
GROUP  TOPIC  PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  TIME-LAG  CONSUMER-ID  HOST       CLIENT-ID
g      t      0          5               9               4    1.5s      c-1          /10.0.0.1  app
g      t      1          -               3               -    -         -            -          -
";
        assert_eq!(out, expect);
    }

    #[test]
    fn state_messages() {
        let out = render_describe(
            &[view("Empty", true)],
            DescribeView::Offsets,
            OutputFormat::Table,
        );
        assert!(
            out.starts_with("Consumer group 'g' has no active members.\n\nGROUP"),
            "{out}"
        );
        let out = render_describe(
            &[view("PreparingRebalance", true)],
            DescribeView::Offsets,
            OutputFormat::Table,
        );
        assert!(
            out.starts_with("Warning: Consumer group 'g' is rebalancing.\n"),
            "{out}"
        );
        let out = render_describe(
            &[view("Dead", false)],
            DescribeView::Offsets,
            OutputFormat::Table,
        );
        assert_eq!(out, "Consumer group 'g' does not exist.\n");
    }

    #[test]
    fn members_state_and_csv_views() {
        let v = [view("Stable", true)];
        let out = render_describe(&v, DescribeView::Members, OutputFormat::Table);
        assert!(
            out.contains("c-1          /10.0.0.1  app        1"),
            "{out}"
        );
        let out = render_describe(&v, DescribeView::State, OutputFormat::Table);
        assert!(
            out.contains("g      127.0.0.1:9092  range                Stable  1"),
            "{out}"
        );
        let out = render_describe(&v, DescribeView::Offsets, OutputFormat::Csv);
        assert_eq!(out.lines().nth(2), Some("g,t,1,,3,,,,,"));
    }

    #[test]
    fn describe_json_has_the_same_numbers() {
        let out = render_describe(
            &[view("Stable", true)],
            DescribeView::Offsets,
            OutputFormat::Json,
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        let p0 = &v["groups"][0]["partitions"][0];
        assert_eq!(p0["current_offset"], 5);
        assert_eq!(p0["log_end_offset"], 9);
        assert_eq!(p0["lag"], 4);
        assert_eq!(p0["time_lag_ms"], 1_500);
        assert_eq!(p0["time_lag_kind"], "exact");
        let p1 = &v["groups"][0]["partitions"][1];
        assert!(
            p1["current_offset"].is_null() && p1["lag"].is_null() && p1["consumer_id"].is_null()
        );
    }

    #[test]
    fn plan_outputs() {
        let input = PartitionInput {
            tp: TopicPartition::new("t", 0),
            current: Some(50),
            log_start: 10,
            log_end: 100,
            offset_for_time: None,
            source_offset: None,
        };
        let p = plan("g", &ResetMode::ShiftBy(-100), &[input], 0).unwrap();
        let out = render_plan(&p, &["replays 40 records".into()], OutputFormat::Table);
        // The clamp warning is not part of any output format's text except JSON's field.
        assert!(out.starts_with("GROUP"), "{out}");
        assert!(!out.contains("Warning"), "{out}");
        assert_eq!(
            render_plan_warnings(&p),
            "Warning: t partition 0: offset -50 is before the log start offset 10; using 10\n"
        );
        assert!(out.contains("g      t      0          50              10          -40                           replays 40 records"), "{out}");
        assert_eq!(render_plan(&p, &[], OutputFormat::Csv), "t,0,10\n");
        let v: Value = serde_json::from_str(&render_plan(&p, &[], OutputFormat::Json)).unwrap();
        assert_eq!(v["partitions"][0]["messages_skipped_or_replayed"], -40);
        assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["mode"], "--shift-by");
    }

    #[test]
    fn drift_and_lag_outputs() {
        let d = [PlanDrift {
            tp: TopicPartition::new("t", 0),
            planned: Some(5),
            actual: Some(7),
        }];
        assert!(
            render_drift("g", &d).contains("g      t      0          5                       7")
        );
        let views = [LagGroupView {
            group: "g".into(),
            status: Evaluation {
                status: Status::Stall,
                reason: "t partition 0: stuck".into(),
            },
            rows: vec![LagRow {
                topic: "t".into(),
                partition: 0,
                current: Some(5),
                log_end: Some(9),
                time_lag: TimeLag::Estimate(61_000),
                status: Evaluation {
                    status: Status::Stall,
                    reason: "stuck".into(),
                },
            }],
        }];
        let out = render_lag(&views, OutputFormat::Table);
        assert!(
            out.starts_with("Group 'g': STALL (t partition 0: stuck)\n"),
            "{out}"
        );
        assert!(out.contains("~1m1s"), "{out}");
        let v: Value = serde_json::from_str(&render_lag(&views, OutputFormat::Json)).unwrap();
        assert_eq!(v["groups"][0]["partitions"][0]["status"], "STALL");
        assert_eq!(v["groups"][0]["partitions"][0]["time_lag_kind"], "estimate");
        assert_eq!(v["groups"][0]["status"], "STALL");
    }

    #[test]
    fn group_list_outputs() {
        let gs = [ListedGroupInfo {
            group_id: "a".into(),
            protocol_type: "consumer".into(),
            state: "Stable".into(),
        }];
        assert_eq!(
            render_group_list(&gs, OutputFormat::Table),
            "GROUP  STATE   PROTOCOL-TYPE\na      Stable  consumer\n"
        );
        let v: Value = serde_json::from_str(&render_group_list(&gs, OutputFormat::Json)).unwrap();
        assert_eq!(v["groups"][0]["state"], "Stable");
    }

    fn topic_view(configs: Vec<ConfigEntry>, all_configs: bool) -> TopicView {
        TopicView {
            topic: "orders".into(),
            internal: false,
            partitions: vec![
                TopicPartitionRow {
                    partition: 0,
                    leader: 1,
                    replicas: vec![1, 2],
                    isr: vec![1],
                    log_start: Some(4),
                    log_end: Some(10),
                    size: Some(1234),
                },
                TopicPartitionRow {
                    partition: 1,
                    leader: -1,
                    replicas: vec![],
                    isr: vec![],
                    log_start: None,
                    log_end: None,
                    size: None,
                },
            ],
            configs,
            all_configs,
        }
    }

    fn config(name: &str, value: Option<&str>, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: name.into(),
            value: value.map(Into::into),
            source,
            read_only: false,
            sensitive: false,
            synonyms: vec![],
        }
    }

    #[test]
    fn topic_list_outputs() {
        let ts = [
            TopicInfo {
                name: "a".into(),
                error_code: 0,
                internal: false,
                partitions: vec![],
            },
            TopicInfo {
                name: "orders".into(),
                error_code: 0,
                internal: true,
                partitions: topic_view(vec![], false)
                    .partitions
                    .iter()
                    .map(|p| crate::client::PartitionInfo {
                        partition: p.partition,
                        leader: p.leader,
                        error_code: 0,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                    })
                    .collect(),
            },
        ];
        assert_eq!(
            render_topic_list(&ts, OutputFormat::Table),
            "TOPIC   PARTITIONS\na       0\norders  2\n"
        );
        let v: Value = serde_json::from_str(&render_topic_list(&ts, OutputFormat::Json)).unwrap();
        assert_eq!(v["topics"][1]["topic"], "orders");
        assert_eq!(v["topics"][1]["partitions"], 2);
        assert_eq!(v["topics"][1]["internal"], true);
    }

    #[test]
    fn topic_describe_table() {
        let out = render_topic_describe(
            &[topic_view(
                vec![
                    config(
                        "cleanup.policy",
                        Some("compact,delete"),
                        ConfigSource::Topic,
                    ),
                    config("retention.ms", Some("1000"), ConfigSource::Topic),
                ],
                false,
            )],
            OutputFormat::Table,
        );
        let expect = "\
Topic: orders  Partitions: 2  Replication-Factor: 2

CONFIG          VALUE           SOURCE
cleanup.policy  compact,delete  topic
retention.ms    1000            topic

TOPIC   PARTITION  LEADER  REPLICAS  ISR  LOG-START-OFFSET  LOG-END-OFFSET  SIZE
orders  0          1       1,2       1    4                 10              1234
orders  1          -       -         -    -                 -               -
";
        assert_eq!(out, expect);
    }

    #[test]
    fn topic_describe_without_overrides_and_with_all_configs() {
        let views = [
            topic_view(vec![], false),
            topic_view(
                vec![
                    config("password", None, ConfigSource::StaticBroker),
                    config("segment.ms", Some("100"), ConfigSource::Default),
                ],
                true,
            ),
        ];
        let mut sensitive = views.clone();
        sensitive[1].configs[0].sensitive = true;
        let out = render_topic_describe(&sensitive, OutputFormat::Table);
        // Topics are separated by one blank line; no overrides is said, not an empty table.
        assert!(
            out.contains("Replication-Factor: 2\n\nNo config overrides.\n\nTOPIC"),
            "{out}"
        );
        assert!(
            out.contains("1    4                 10              1234\norders  1"),
            "{out}"
        );
        assert!(
            out.contains("-                 -               -\n\nTopic: orders"),
            "{out}"
        );
        assert!(
            out.contains(
                "password    (sensitive)  static-broker\nsegment.ms  100          default\n"
            ),
            "{out}"
        );
        let out = render_topic_describe(&views, OutputFormat::Table);
        assert!(out.contains("password    -      static-broker"), "{out}");
    }

    #[test]
    fn topic_describe_json_has_offsets_and_config_sources() {
        let out = render_topic_describe(
            &[topic_view(
                vec![config(
                    "cleanup.policy",
                    Some("compact"),
                    ConfigSource::Topic,
                )],
                false,
            )],
            OutputFormat::Json,
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        let t = &v["topics"][0];
        assert_eq!(t["topic"], "orders");
        assert_eq!(t["partition_count"], 2);
        assert_eq!(t["replication_factor"], 2);
        assert_eq!(t["configs"][0]["name"], "cleanup.policy");
        assert_eq!(t["configs"][0]["value"], "compact");
        assert_eq!(t["configs"][0]["source"], "topic");
        assert_eq!(t["partitions"][0]["log_start_offset"], 4);
        assert_eq!(t["partitions"][0]["log_end_offset"], 10);
        assert_eq!(t["partitions"][0]["replicas"], json!([1, 2]));
        assert!(t["partitions"][1]["log_end_offset"].is_null());
        assert_eq!(t["partitions"][0]["size_bytes"], 1234);
        assert!(t["partitions"][1]["size_bytes"].is_null());
    }
}
