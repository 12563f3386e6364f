//! `waterline exporter`: polls any Kafka cluster and serves `/metrics` with kafka_exporter's
//! metric names and labels (so existing dashboards and KEDA/HPA rules work unchanged), plus
//! time lag in seconds and the lag status of [`crate::lag`] per group and partition.
//!
//! Each poll builds a fresh registry and encodes it once; a scrape serves the last encoded
//! text, so scrape time does not grow with the cluster and a scrape never waits on the
//! cluster. When a poll fails the last good values stay served, `waterline_exporter_up` drops
//! to 0 and `waterline_exporter_last_success_timestamp_seconds` shows their age.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use regex::Regex;
use waterline_core::TopicPartition;

use crate::cli::{CliError, ConnectionArgs};
use crate::cli::{LagTracker, PartitionState, next_record_times, now_ms};
use crate::client::{AdminClient, Committed, OffsetSpec};
use crate::codes;
use crate::lag::{DEFAULT_WINDOW_COMMITS, Status, TimeLag};
use crate::timefmt::parse_duration_ms;

/// The Content-Type of the metrics text (prometheus-client writes OpenMetrics).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The longest wait between polls while the cluster cannot be reached.
const MAX_BACKOFF_MS: i64 = 30_000;

/// `waterline exporter`.
#[derive(Debug, clap::Args)]
pub struct ExporterArgs {
    /// Connection options.
    #[command(flatten)]
    pub conn: ConnectionArgs,
    /// Address to serve /metrics, /healthz and /readyz on (port 0: any free port; the bound
    /// address is printed).
    #[arg(long, default_value = "127.0.0.1:9308", value_name = "HOST:PORT")]
    pub listen: String,
    /// Poll interval, as an ISO-8601 duration.
    #[arg(long, default_value = "PT15S", value_name = "DURATION")]
    pub interval: String,
    /// Status window in commits (see `waterline lag --window`).
    #[arg(long, default_value_t = DEFAULT_WINDOW_COMMITS, value_name = "COMMITS")]
    pub window: usize,
    /// Only groups whose whole id matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub group_allow: Option<String>,
    /// Leave out groups whose whole id matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub group_deny: Option<String>,
    /// Only topics whose whole name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub topic_allow: Option<String>,
    /// Leave out topics whose whole name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub topic_deny: Option<String>,
}

/// Allow and deny regexes over names; both match the whole name.
#[derive(Debug, Clone, Default)]
pub struct NameFilter {
    allow: Option<Regex>,
    deny: Option<Regex>,
}

impl NameFilter {
    /// Compiles the two expressions (`flag` names them in errors).
    pub fn new(
        allow: Option<&str>,
        deny: Option<&str>,
        flag: &str,
    ) -> Result<NameFilter, CliError> {
        let compile = |re: Option<&str>, which: &str| {
            re.map(|r| {
                // Anchored: `--group-deny test` means the group `test`, not every group
                // containing "test".
                Regex::new(&format!("^(?:{r})$")).map_err(|e| {
                    CliError::Usage(format!(
                        "--{flag}-{which} '{r}': {}",
                        e.to_string().replace('\n', " ")
                    ))
                })
            })
            .transpose()
        };
        Ok(NameFilter {
            allow: compile(allow, "allow")?,
            deny: compile(deny, "deny")?,
        })
    }

    /// Whether `name` passes.
    pub fn admits(&self, name: &str) -> bool {
        self.allow.as_ref().is_none_or(|r| r.is_match(name))
            && !self.deny.as_ref().is_some_and(|r| r.is_match(name))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    consumergroup: String,
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupTopicLabels {
    consumergroup: String,
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    consumergroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupStatusLabels {
    consumergroup: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionStatusLabels {
    consumergroup: String,
    topic: String,
    partition: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeLagLabels {
    consumergroup: String,
    topic: String,
    partition: String,
    /// `exact` (from the next record's timestamp), `estimate` (interpolated from polled log
    /// end offsets) or `at_least` (older than every polled point).
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicPartitionLabels {
    topic: String,
    partition: String,
}

/// One topic's partitions with their offsets, as polled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicOffsets {
    /// partition -> (oldest offset, newest offset) when the cluster gave them.
    pub partitions: BTreeMap<i32, (Option<i64>, Option<i64>)>,
}

/// One group's partitions as polled and judged.
#[derive(Debug, Clone)]
pub struct GroupSnapshot {
    /// Group id.
    pub group: String,
    /// Members.
    pub members: usize,
    /// State as DescribeGroups reports it (`Stable`, `Empty`, ...).
    pub state: String,
    /// The group's status (worst partition).
    pub status: Status,
    /// Why (the worst partition's reason).
    pub reason: String,
    /// One row per partition.
    pub rows: Vec<crate::cli::render::LagRow>,
}

/// What one poll saw.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Brokers in the cluster.
    pub brokers: usize,
    /// Topics that passed the filters.
    pub topics: BTreeMap<String, TopicOffsets>,
    /// Groups that passed the filters.
    pub groups: Vec<GroupSnapshot>,
}

/// The exporter's own health, rendered next to the cluster's metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PollStatus {
    /// Whether the last poll succeeded.
    pub up: bool,
    /// Polls that failed since start.
    pub errors: u64,
    /// How long the last poll took.
    pub duration: Duration,
    /// When the last successful poll finished (ms since epoch), if any.
    pub last_success_ms: Option<i64>,
}

/// Renders a snapshot and the exporter's health as OpenMetrics text.
pub fn render_metrics(snap: &Snapshot, status: PollStatus) -> String {
    let mut r = Registry::default();
    let gauge_family = |r: &mut Registry, name: &str, help: &str| {
        let f = Family::<GroupPartitionLabels, Gauge>::default();
        r.register(name, help, f.clone());
        f
    };
    let current = gauge_family(
        &mut r,
        "kafka_consumergroup_current_offset",
        "Current Offset of a ConsumerGroup at Topic/Partition",
    );
    let lag = gauge_family(
        &mut r,
        "kafka_consumergroup_lag",
        "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
    );
    let current_sum = Family::<GroupTopicLabels, Gauge>::default();
    r.register(
        "kafka_consumergroup_current_offset_sum",
        "Current Offset of a ConsumerGroup at Topic for all partitions",
        current_sum.clone(),
    );
    let lag_sum = Family::<GroupTopicLabels, Gauge>::default();
    r.register(
        "kafka_consumergroup_lag_sum",
        "Current Approximate Lag of a ConsumerGroup at Topic for all partitions",
        lag_sum.clone(),
    );
    let members = Family::<GroupLabels, Gauge>::default();
    r.register(
        "kafka_consumergroup_members",
        "Amount of members in a consumer group",
        members.clone(),
    );
    let lag_seconds = Family::<TimeLagLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    r.register(
        "kafka_consumergroup_lag_seconds",
        "Age of the next record the group will read (kind: exact from its timestamp, estimate interpolated from polled log end offsets, at_least when older than every polled point)",
        lag_seconds.clone(),
    );
    let part_status = Family::<PartitionStatusLabels, Gauge>::default();
    r.register(
        "kafka_consumergroup_partition_status",
        "1 for the lag status of a ConsumerGroup at Topic/Partition (OK, UNKNOWN, WARN, STALL, STOP, REWIND, LOST)",
        part_status.clone(),
    );
    let group_status = Family::<GroupStatusLabels, Gauge>::default();
    r.register(
        "kafka_consumergroup_status",
        "1 for the lag status of a ConsumerGroup (its worst partition's)",
        group_status.clone(),
    );
    let partitions = Family::<TopicLabels, Gauge>::default();
    r.register(
        "kafka_topic_partitions",
        "Number of partitions for this Topic",
        partitions.clone(),
    );
    let newest = Family::<TopicPartitionLabels, Gauge>::default();
    r.register(
        "kafka_topic_partition_current_offset",
        "Current Offset of a Broker at Topic/Partition",
        newest.clone(),
    );
    let oldest = Family::<TopicPartitionLabels, Gauge>::default();
    r.register(
        "kafka_topic_partition_oldest_offset",
        "Oldest Offset of a Broker at Topic/Partition",
        oldest.clone(),
    );
    let brokers = Gauge::<i64>::default();
    r.register(
        "kafka_brokers",
        "Number of Brokers in the Kafka Cluster",
        brokers.clone(),
    );
    brokers.set(snap.brokers as i64);

    for (topic, t) in &snap.topics {
        partitions
            .get_or_create(&TopicLabels {
                topic: topic.clone(),
            })
            .set(t.partitions.len() as i64);
        for (p, (start, end)) in &t.partitions {
            let l = TopicPartitionLabels {
                topic: topic.clone(),
                partition: p.to_string(),
            };
            if let Some(end) = end {
                newest.get_or_create(&l).set(*end);
            }
            if let Some(start) = start {
                oldest.get_or_create(&l).set(*start);
            }
        }
    }
    for g in &snap.groups {
        members
            .get_or_create(&GroupLabels {
                consumergroup: g.group.clone(),
            })
            .set(g.members as i64);
        group_status
            .get_or_create(&GroupStatusLabels {
                consumergroup: g.group.clone(),
                status: g.status.as_str().to_string(),
            })
            .set(1);
        let mut sums: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for row in &g.rows {
            let l = GroupPartitionLabels {
                consumergroup: g.group.clone(),
                topic: row.topic.clone(),
                partition: row.partition.to_string(),
            };
            part_status
                .get_or_create(&PartitionStatusLabels {
                    consumergroup: g.group.clone(),
                    topic: row.topic.clone(),
                    partition: row.partition.to_string(),
                    status: row.status.status.as_str().to_string(),
                })
                .set(1);
            // kafka_exporter only reports partitions the group committed.
            let Some(c) = row.current else { continue };
            current.get_or_create(&l).set(c);
            let sum = sums.entry(row.topic.as_str()).or_default();
            sum.0 += c;
            if let Some(records) = row.lag() {
                lag.get_or_create(&l).set(records);
                sum.1 += records;
            }
            let kind = match row.time_lag {
                TimeLag::Exact(_) => "exact",
                TimeLag::Estimate(_) => "estimate",
                TimeLag::AtLeast(_) => "at_least",
                TimeLag::Unknown => continue,
            };
            if let Some(ms) = row.time_lag.ms() {
                lag_seconds
                    .get_or_create(&TimeLagLabels {
                        consumergroup: g.group.clone(),
                        topic: row.topic.clone(),
                        partition: row.partition.to_string(),
                        kind: kind.to_string(),
                    })
                    .set(ms as f64 / 1000.0);
            }
        }
        for (topic, (c, l)) in sums {
            let labels = GroupTopicLabels {
                consumergroup: g.group.clone(),
                topic: topic.to_string(),
            };
            current_sum.get_or_create(&labels).set(c);
            lag_sum.get_or_create(&labels).set(l);
        }
    }

    let up = Gauge::<i64>::default();
    r.register(
        "waterline_exporter_up",
        "1 when the last poll of the cluster succeeded",
        up.clone(),
    );
    up.set(i64::from(status.up));
    let errors = Gauge::<i64>::default();
    r.register(
        "waterline_exporter_poll_errors",
        "Polls of the cluster that failed since the exporter started",
        errors.clone(),
    );
    errors.set(status.errors as i64);
    let duration = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    r.register(
        "waterline_exporter_poll_duration_seconds",
        "How long the last poll of the cluster took",
        duration.clone(),
    );
    duration.set(status.duration.as_secs_f64());
    if let Some(ms) = status.last_success_ms {
        let last = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register(
            "waterline_exporter_last_success_timestamp_seconds",
            "When the last successful poll finished (Unix time): the age of the values served",
            last.clone(),
        );
        last.set(ms as f64 / 1000.0);
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &r);
    text
}

/// Polls the cluster once: topics with their oldest and newest offsets, groups with their
/// members, committed offsets, time lag and status (judged by `tracker` across polls).
pub(crate) async fn poll(
    client: &mut AdminClient,
    groups_filter: &NameFilter,
    topics_filter: &NameFilter,
    tracker: &mut LagTracker,
) -> Result<Snapshot, CliError> {
    let meta = client.metadata(None).await?;
    let mut snap = Snapshot {
        brokers: meta.brokers.len(),
        ..Snapshot::default()
    };
    let mut all: Vec<TopicPartition> = Vec::new();
    for t in &meta.topics {
        if t.error_code != codes::NONE || !topics_filter.admits(&t.name) {
            continue;
        }
        for p in &t.partitions {
            all.push(TopicPartition::new(t.name.clone(), p.partition));
        }
        snap.topics.insert(t.name.clone(), TopicOffsets::default());
    }
    let spec = |s: OffsetSpec| all.iter().map(|tp| (tp.clone(), s)).collect::<Vec<_>>();
    let ends = client.list_offsets_each(&spec(OffsetSpec::Latest)).await?;
    let starts = client
        .list_offsets_each(&spec(OffsetSpec::Earliest))
        .await?;
    for tp in &all {
        let end = ends.get(tp).and_then(|a| a.ok().map(|o| o.unwrap_or(0)));
        let start = starts.get(tp).and_then(|a| a.ok().map(|o| o.unwrap_or(0)));
        if let Some(t) = snap.topics.get_mut(&tp.topic) {
            t.partitions.insert(tp.partition, (start, end));
        }
    }

    let group_ids: Vec<String> = client
        .list_groups(&[])
        .await?
        .into_iter()
        .map(|g| g.group_id)
        .filter(|g| groups_filter.admits(g))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let described = if group_ids.is_empty() {
        Vec::new()
    } else {
        client.describe_groups(&group_ids).await?
    };
    tracker.begin_round();
    for g in described {
        if g.error_code != codes::NONE && g.error_code != codes::GROUP_ID_NOT_FOUND {
            continue;
        }
        let committed: BTreeMap<TopicPartition, Committed> =
            client.offset_fetch(&g.group_id, None).await?;
        let mut parts: BTreeSet<TopicPartition> = committed
            .keys()
            .filter(|tp| topics_filter.admits(&tp.topic))
            .cloned()
            .collect();
        let mut owners: BTreeMap<TopicPartition, usize> = BTreeMap::new();
        for (i, m) in g.members.iter().enumerate() {
            for tp in &m.assignment {
                if topics_filter.admits(&tp.topic) {
                    owners.insert(tp.clone(), i);
                    parts.insert(tp.clone());
                }
            }
        }
        if parts.is_empty() && g.members.is_empty() {
            // Neither offsets nor members in the topics watched: nothing to report.
            continue;
        }
        let committed_at: BTreeMap<TopicPartition, i64> = parts
            .iter()
            .filter_map(|tp| committed.get(tp).map(|c| (tp.clone(), c.offset)))
            .collect();
        let log_ends: BTreeMap<TopicPartition, Option<i64>> = parts
            .iter()
            .map(|tp| {
                let end = ends.get(tp).and_then(|a| a.ok().map(|o| o.unwrap_or(0)));
                (tp.clone(), end)
            })
            .collect();
        let next_ts = next_record_times(client, &committed_at, &log_ends).await;
        let states: Vec<PartitionState> = parts
            .into_iter()
            .map(|tp| PartitionState {
                current: committed_at.get(&tp).copied(),
                log_end: match ends.get(&tp) {
                    Some(Ok(end)) => Ok(end.unwrap_or(0)),
                    Some(Err(code)) => Err(*code),
                    None => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
                },
                log_start: starts.get(&tp).and_then(|a| a.ok().flatten()),
                next_record_ms: next_ts.get(&tp).copied(),
                owner: owners.get(&tp).copied(),
                tp,
            })
            .collect();
        let view = tracker.observe(&g.group_id, !g.members.is_empty(), &states, now_ms(), false);
        snap.groups.push(GroupSnapshot {
            group: view.group,
            members: g.members.len(),
            state: g.state.clone(),
            status: view.status.status,
            reason: view.status.reason,
            rows: view.rows,
        });
    }
    tracker.end_round();
    Ok(snap)
}

/// A connected poller: what the exporter runs each interval (public for benchmarks and
/// embedding).
#[derive(Debug)]
pub struct Poller {
    client: AdminClient,
    groups: NameFilter,
    topics: NameFilter,
    tracker: LagTracker,
}

impl Poller {
    /// A poller over `client` judging statuses over `window` commits.
    pub fn new(client: AdminClient, groups: NameFilter, topics: NameFilter, window: usize) -> Self {
        Poller {
            client,
            groups,
            topics,
            tracker: LagTracker::new(window),
        }
    }

    /// One poll of the cluster.
    pub async fn poll(&mut self) -> Result<Snapshot, CliError> {
        poll(
            &mut self.client,
            &self.groups,
            &self.topics,
            &mut self.tracker,
        )
        .await
    }
}

/// What the HTTP handlers serve.
#[derive(Debug, Default)]
struct Served {
    /// The last rendered metrics text.
    text: String,
    /// Whether a poll has ever succeeded.
    ready: bool,
    /// The last good snapshot, for the dashboard.
    snapshot: Snapshot,
    /// Lag over time per group and partition, for the dashboard's charts.
    history: History,
    /// When the last good snapshot was taken (ms since epoch).
    polled_ms: Option<i64>,
}

/// Points kept per partition for the dashboard's charts (an hour at a 5 s interval).
const HISTORY_POINTS: usize = 720;

/// One point of a partition's chart: (time ms, lag in records, time lag in ms).
type Point = (i64, Option<i64>, Option<i64>);

/// Lag over time per (group, topic, partition).
#[derive(Debug, Default)]
struct History {
    points: BTreeMap<(String, String, i32), std::collections::VecDeque<Point>>,
}

impl History {
    /// Appends the snapshot's values at `now`; forgets partitions no longer in it.
    fn record(&mut self, snap: &Snapshot, now: i64) {
        let mut seen = BTreeSet::new();
        for g in &snap.groups {
            for r in &g.rows {
                let key = (g.group.clone(), r.topic.clone(), r.partition);
                let points = self.points.entry(key.clone()).or_default();
                points.push_back((now, r.lag(), r.time_lag.ms()));
                while points.len() > HISTORY_POINTS {
                    points.pop_front();
                }
                seen.insert(key);
            }
        }
        self.points.retain(|k, _| seen.contains(k));
    }
}

/// `/api/groups`: every group with its state, members, total lag, worst time lag, status.
fn groups_json(s: &Served) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = s
        .snapshot
        .groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "group": g.group,
                "state": g.state,
                "members": g.members,
                "partitions": g.rows.len(),
                "lag": g.rows.iter().filter_map(|r| r.lag()).sum::<i64>(),
                "time_lag_ms": g.rows.iter().filter_map(|r| r.time_lag.ms()).max(),
                "status": g.status,
                "reason": g.reason,
            })
        })
        .collect();
    serde_json::json!({ "time_ms": s.polled_ms, "groups": groups })
}

/// `/api/groups/{group}`: the group's partitions with their history.
fn group_json(s: &Served, group: &str) -> Option<serde_json::Value> {
    let g = s.snapshot.groups.iter().find(|g| g.group == group)?;
    let partitions: Vec<serde_json::Value> = g
        .rows
        .iter()
        .map(|r| {
            let key = (g.group.clone(), r.topic.clone(), r.partition);
            let history: Vec<serde_json::Value> = s
                .history
                .points
                .get(&key)
                .map(|ps| {
                    ps.iter()
                        .map(|(t, lag, tl)| serde_json::json!([t, lag, tl]))
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "topic": r.topic,
                "partition": r.partition,
                "current_offset": r.current,
                "log_end_offset": r.log_end,
                "lag": r.lag(),
                "time_lag_ms": r.time_lag.ms(),
                "time_lag": r.time_lag.display(),
                "status": r.status.status,
                "reason": r.status.reason,
                "history": history,
            })
        })
        .collect();
    Some(serde_json::json!({
        "time_ms": s.polled_ms,
        "group": g.group,
        "state": g.state,
        "members": g.members,
        "status": g.status,
        "reason": g.reason,
        "partitions": partitions,
    }))
}

type Shared = Arc<Mutex<Served>>;

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let text = s.lock().map(|s| s.text.clone()).unwrap_or_default();
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text)
}

/// The dashboard: one static page (HTML, CSS, JS, SVG charts) built into the binary.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

async fn dashboard() -> impl IntoResponse {
    axum::response::Html(DASHBOARD_HTML)
}

async fn api_groups(State(s): State<Shared>) -> impl IntoResponse {
    let v = s.lock().map(|s| groups_json(&s)).unwrap_or_default();
    axum::Json(v)
}

async fn api_group(
    State(s): State<Shared>,
    axum::extract::Path(group): axum::extract::Path<String>,
) -> axum::response::Response {
    let found = s.lock().ok().and_then(|s| group_json(&s, &group));
    match found {
        Some(v) => axum::Json(v).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no group '{group}'\n")).into_response(),
    }
}

async fn readyz(State(s): State<Shared>) -> impl IntoResponse {
    if s.lock().is_ok_and(|s| s.ready) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no successful poll yet\n")
    }
}

/// Runs the exporter until `shutdown` completes. `on_listen` gets the bound address.
pub async fn run_exporter(
    args: ExporterArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<(), CliError> {
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
    let groups = NameFilter::new(
        args.group_allow.as_deref(),
        args.group_deny.as_deref(),
        "group",
    )?;
    let topics = NameFilter::new(
        args.topic_allow.as_deref(),
        args.topic_deny.as_deref(),
        "topic",
    )?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("cannot listen on {}: {e}", args.listen)))?;
    on_listen(addr);
    let shared: Shared = Arc::default();
    let app = Router::new()
        .route("/", get(dashboard))
        .route("/api/groups", get(api_groups))
        .route("/api/groups/{group}", get(api_group))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(shared.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await
    });

    let mut client: Option<AdminClient> = None;
    let mut tracker = LagTracker::new(args.window);
    let mut status = PollStatus::default();
    let mut last = Snapshot::default();
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let result = match client.as_mut() {
            Some(c) => poll(c, &groups, &topics, &mut tracker).await,
            None => match args.conn.connect().await {
                Ok(mut c) => {
                    let r = poll(&mut c, &groups, &topics, &mut tracker).await;
                    client = Some(c);
                    r
                }
                Err(e) => Err(e),
            },
        };
        status.duration = started.elapsed();
        let wait_ms = match result {
            Ok(snap) => {
                failures = 0;
                status.up = true;
                status.last_success_ms = Some(now_ms());
                last = snap;
                interval_ms
            }
            Err(e) => {
                // Keep serving the last good values; reconnect with backoff.
                tracing::warn!("poll failed: {e}");
                client = None;
                failures += 1;
                status.up = false;
                status.errors += 1;
                interval_ms
                    .saturating_mul(1i64 << failures.min(4))
                    .min(interval_ms.max(MAX_BACKOFF_MS))
            }
        };
        let text = render_metrics(&last, status);
        if let Ok(mut s) = shared.lock() {
            s.text = text;
            s.ready |= status.up;
            if status.up {
                let now = now_ms();
                s.history.record(&last, now);
                s.snapshot = last.clone();
                s.polled_ms = Some(now);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
            _ = stop_rx.changed() => break,
        }
    }
    match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::Failed(format!("HTTP server: {e}"))),
        Err(e) => Err(CliError::Failed(format!("HTTP server task: {e}"))),
    }
}

/// Runs `waterline exporter` until SIGINT or SIGTERM; prints the bound address as
/// `waterline exporter: serving http://ADDR/metrics` on standard output.
pub async fn run(args: ExporterArgs) -> std::process::ExitCode {
    let shutdown = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    let result = run_exporter(args, shutdown, |addr| {
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "waterline exporter: serving http://{addr}/metrics");
        let _ = out.flush();
    })
    .await;
    let code = crate::cli::finish("exporter", result, &mut std::io::stderr());
    std::process::ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::LagRow;
    use crate::lag::Evaluation;

    #[test]
    fn filters_match_whole_names() {
        let f = NameFilter::new(Some("app-.*"), Some("app-test"), "group").unwrap();
        assert!(f.admits("app-billing"));
        assert!(!f.admits("app-test"));
        assert!(!f.admits("my-app-billing"));
        assert!(NameFilter::default().admits("anything"));
        let err = NameFilter::new(Some("("), None, "topic").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().starts_with("--topic-allow '(': "), "{err}");
    }

    #[test]
    fn metrics_carry_kafka_exporter_names_and_labels() {
        let mut topics = BTreeMap::new();
        topics.insert(
            "t".to_string(),
            TopicOffsets {
                partitions: [(0, (Some(2), Some(10))), (1, (Some(0), Some(7)))].into(),
            },
        );
        let row = |p: i32, current: Option<i64>, end: i64, tl: TimeLag, st: Status| LagRow {
            topic: "t".into(),
            partition: p,
            current,
            log_end: Some(end),
            time_lag: tl,
            status: Evaluation {
                status: st,
                reason: String::new(),
            },
        };
        let snap = Snapshot {
            brokers: 1,
            topics,
            groups: vec![GroupSnapshot {
                group: "g".into(),
                members: 2,
                state: "Stable".into(),
                status: Status::Warn,
                reason: String::new(),
                rows: vec![
                    row(0, Some(4), 10, TimeLag::Exact(1_500), Status::Warn),
                    row(1, Some(7), 7, TimeLag::Exact(0), Status::Ok),
                ],
            }],
        };
        let text = render_metrics(
            &snap,
            PollStatus {
                up: true,
                errors: 2,
                duration: Duration::from_millis(250),
                last_success_ms: Some(1_000),
            },
        );
        for line in [
            r#"kafka_consumergroup_current_offset{consumergroup="g",topic="t",partition="0"} 4"#,
            r#"kafka_consumergroup_lag{consumergroup="g",topic="t",partition="0"} 6"#,
            r#"kafka_consumergroup_lag{consumergroup="g",topic="t",partition="1"} 0"#,
            r#"kafka_consumergroup_lag_sum{consumergroup="g",topic="t"} 6"#,
            r#"kafka_consumergroup_current_offset_sum{consumergroup="g",topic="t"} 11"#,
            r#"kafka_consumergroup_members{consumergroup="g"} 2"#,
            r#"kafka_consumergroup_lag_seconds{consumergroup="g",topic="t",partition="0",kind="exact"} 1.5"#,
            r#"kafka_consumergroup_partition_status{consumergroup="g",topic="t",partition="0",status="WARN"} 1"#,
            r#"kafka_consumergroup_status{consumergroup="g",status="WARN"} 1"#,
            r#"kafka_topic_partitions{topic="t"} 2"#,
            r#"kafka_topic_partition_current_offset{topic="t",partition="0"} 10"#,
            r#"kafka_topic_partition_oldest_offset{topic="t",partition="0"} 2"#,
            "kafka_brokers 1",
            "waterline_exporter_up 1",
            "waterline_exporter_poll_errors 2",
            "waterline_exporter_poll_duration_seconds 0.25",
            "waterline_exporter_last_success_timestamp_seconds 1.0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
