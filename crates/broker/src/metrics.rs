//! Prometheus metrics of the broker, served by [`crate::http`] at `/metrics`.
//!
//! Counters and histograms (requests, errors, latency, bytes, fsync, connections) are updated
//! on the request path with a few atomic operations: the codec hands each request and response
//! to [`BrokerMetrics`] once. Everything that is state rather than events (log offsets and
//! sizes, groups, committed offsets and lag) is read at scrape time, so it costs nothing
//! between scrapes. Group metrics use kafka_exporter's names and labels, as `waterline
//! exporter` does, so one dashboard reads both.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use waterline_core::{Position, TopicPartition};

use crate::state::BrokerState;

/// The Content-Type of the metrics text (prometheus-client writes OpenMetrics).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiErrorLabels {
    api: String,
    error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s, doubling: covers a cached Metadata and a long-polled Fetch alike.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// A histogram of fsync round durations, 50 µs .. ~1.6 s.
pub fn fsync_histogram() -> Histogram {
    latency_histogram()
}

/// The broker's event metrics.
#[derive(Debug)]
pub struct BrokerMetrics {
    requests: Family<ApiLabels, Counter>,
    errors: Family<ApiErrorLabels, Counter>,
    latency: Family<ApiLabels, Histogram, fn() -> Histogram>,
    bytes_in: Family<TopicLabels, Counter>,
    bytes_out: Family<TopicLabels, Counter>,
    connections: Gauge,
    connections_total: Counter,
    fsync: Histogram,
    /// When the broker started (for uptime).
    started: Instant,
}

/// Decrements the open-connections gauge when the connection ends.
#[derive(Debug)]
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl BrokerMetrics {
    /// Metrics whose fsync histogram is `fsync` (the sync thread observes into it).
    pub fn new(fsync: Histogram) -> Self {
        BrokerMetrics {
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            fsync,
            started: Instant::now(),
        }
    }

    /// Counts an accepted connection; the guard counts it closed when dropped.
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.connections.inc();
        self.connections_total.inc();
        ConnectionGuard(self.connections.clone())
    }

    /// Counts a request about to be applied, and the record bytes it carries in.
    pub fn request(&self, key: ApiKey, request: &RequestKind) {
        self.requests
            .get_or_create(&ApiLabels { api: api_name(key) })
            .inc();
        if let RequestKind::Produce(p) = request {
            for t in &p.topic_data {
                let bytes: usize = t
                    .partition_data
                    .iter()
                    .map(|d| d.records.as_ref().map_or(0, |r| r.len()))
                    .sum();
                self.bytes_in
                    .get_or_create(&TopicLabels {
                        topic: t.name.0.to_string(),
                    })
                    .inc_by(bytes as u64);
            }
        }
    }

    /// Records a response: latency since `started`, error codes, fetched bytes out.
    pub fn response(&self, key: ApiKey, started: Instant, response: Option<&ResponseKind>) {
        let api = api_name(key);
        self.latency
            .get_or_create(&ApiLabels { api: api.clone() })
            .observe(started.elapsed().as_secs_f64());
        let Some(response) = response else { return };
        let mut codes: BTreeMap<i16, u64> = BTreeMap::new();
        error_codes(response, &mut |c| {
            if c != 0 {
                *codes.entry(c).or_default() += 1;
            }
        });
        for (code, n) in codes {
            self.errors
                .get_or_create(&ApiErrorLabels {
                    api: api.clone(),
                    error_code: code.to_string(),
                })
                .inc_by(n);
        }
        if let ResponseKind::Fetch(f) = response {
            for t in &f.responses {
                let bytes: usize = t
                    .partitions
                    .iter()
                    .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
                    .sum();
                if bytes > 0 {
                    self.bytes_out
                        .get_or_create(&TopicLabels {
                            topic: t.topic.0.to_string(),
                        })
                        .inc_by(bytes as u64);
                }
            }
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "waterline_requests",
            "Requests received, per API",
            self.requests.clone(),
        );
        r.register(
            "waterline_request_errors",
            "Error codes answered, per API and Kafka error code (top-level and per partition)",
            self.errors.clone(),
        );
        r.register(
            "waterline_request_duration_seconds",
            "Time from a request being read to its response being ready, per API",
            self.latency.clone(),
        );
        r.register(
            "waterline_topic_bytes_in",
            "Record bytes produced, per topic",
            self.bytes_in.clone(),
        );
        r.register(
            "waterline_topic_bytes_out",
            "Record bytes fetched, per topic",
            self.bytes_out.clone(),
        );
        r.register(
            "waterline_connections",
            "Open client connections",
            self.connections.clone(),
        );
        r.register(
            "waterline_connections_accepted",
            "Client connections accepted",
            self.connections_total.clone(),
        );
        r.register(
            "waterline_fsync_duration_seconds",
            "Duration of one group-commit fsync round (all dirty partitions)",
            self.fsync.clone(),
        );
        let uptime = Gauge::<f64, AtomicU64>::default();
        uptime.set(self.started.elapsed().as_secs_f64());
        r.register(
            "waterline_uptime_seconds",
            "Seconds since the broker started",
            uptime,
        );
    }
}

/// `Produce`, `Fetch`, ... (the API's name as Kafka spells it).
fn api_name(key: ApiKey) -> String {
    format!("{key:?}")
}

/// Calls `f` with every error code in a response: the top-level code and the per-topic,
/// per-partition and per-group codes of the APIs clients use most. APIs not listed here are
/// counted as requests, without their error codes.
fn error_codes(resp: &ResponseKind, f: &mut dyn FnMut(i16)) {
    match resp {
        ResponseKind::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Fetch(r) => {
            f(r.error_code);
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        ResponseKind::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::Metadata(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        ResponseKind::OffsetFetch(r) => {
            f(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
            for g in &r.groups {
                f(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| f(p.error_code));
            }
        }
        ResponseKind::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        ResponseKind::JoinGroup(r) => f(r.error_code),
        ResponseKind::SyncGroup(r) => f(r.error_code),
        ResponseKind::Heartbeat(r) => f(r.error_code),
        ResponseKind::LeaveGroup(r) => {
            f(r.error_code);
            r.members.iter().for_each(|m| f(m.error_code));
        }
        ResponseKind::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        ResponseKind::ListGroups(r) => f(r.error_code),
        ResponseKind::DeleteGroups(r) => r.results.iter().for_each(|g| f(g.error_code)),
        ResponseKind::ApiVersions(r) => f(r.error_code),
        ResponseKind::InitProducerId(r) => f(r.error_code),
        ResponseKind::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        ResponseKind::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        ResponseKind::EndTxn(r) => f(r.error_code),
        _ => {}
    }
}

/// Renders `/metrics`: the event metrics through prometheus-client, then the state families
/// (logs, groups, offsets, lag) written straight into one pre-sized buffer.
///
/// Why not prometheus-client for the state too: with 10,000 partitions and 1,000 groups that
/// is tens of thousands of label sets, each built from fresh Strings, hashed into a family and
/// encoded again; writing the text directly from a snapshot costs one pass and no per-sample
/// allocation. The snapshot is taken under short locks (one partition at a time, then the
/// group coordinator once), so a scrape never holds a lock while it formats.
pub async fn render(state: &BrokerState) -> String {
    let mut r = Registry::default();
    state.metrics.register(&mut r);

    // Logs: one short lock per partition.
    let partitions = state.topics.all_partitions();
    let mut logs: Vec<PartitionRow> = Vec::with_capacity(partitions.len());
    for p in &partitions {
        if let Some((start, end, size)) = p.with_log(|log| {
            (
                log.log_start_offset(),
                log.high_watermark(),
                log.size_bytes(),
            )
        }) {
            logs.push(PartitionRow {
                topic: &p.topic,
                index: p.index,
                start,
                end,
                size,
            });
        }
    }
    // Topic -> its partitions' high watermarks by index, for lag.
    let mut ends: HashMap<&str, Vec<Option<i64>>> = HashMap::new();
    for row in &logs {
        let v = ends.entry(row.topic).or_default();
        let i = usize::try_from(row.index).unwrap_or(0);
        if v.len() <= i {
            v.resize(i + 1, None);
        }
        v[i] = Some(row.end);
    }

    // Groups: the coordinator once for states and members, the store once per group.
    let listed = state.groups.list(&[]);
    let ids: Vec<String> = listed.iter().map(|g| g.group_id.clone()).collect();
    let described = state.groups.describe(&ids);
    let mut offsets = Vec::with_capacity(ids.len());
    for id in &ids {
        // A store error leaves the group's offsets out of this scrape; the rest is served.
        if let Ok(o) = state.groups.committed(id).await {
            offsets.push((id.as_str(), o));
        }
    }

    let group_rows: usize = offsets.iter().map(|(_, o)| o.len()).sum();
    // About 110 bytes a log sample and 150 a group sample: one allocation for the lot.
    let mut out = String::with_capacity(16 * 1024 + logs.len() * 3 * 110 + group_rows * 2 * 150);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut out, &r);

    // Topic label values, escaped once per topic rather than once per sample.
    let mut topic_labels: HashMap<&str, String> = HashMap::new();
    for row in &logs {
        topic_labels
            .entry(row.topic)
            .or_insert_with(|| escaped(row.topic));
    }
    let topics = state.topics.list();
    header(
        &mut out,
        "kafka_topic_partitions",
        "Number of partitions for this Topic",
    );
    for t in &topics {
        out.push_str("kafka_topic_partitions{topic=\"");
        escape_into(&mut out, &t.name);
        out.push_str("\"} ");
        push_int(&mut out, t.partitions.len() as i64);
    }
    let log_families: [LogFamily; 3] = [
        (
            "kafka_topic_partition_current_offset",
            "Current Offset of a Broker at Topic/Partition",
            |r| r.end,
        ),
        (
            "kafka_topic_partition_oldest_offset",
            "Oldest Offset of a Broker at Topic/Partition",
            |r| r.start,
        ),
        (
            "waterline_log_size_bytes",
            "Bytes on disk of a partition's log segments",
            |r| r.size as i64,
        ),
    ];
    for (name, help, value) in log_families {
        header(&mut out, name, help);
        for row in &logs {
            out.push_str(name);
            out.push_str("{topic=\"");
            out.push_str(&topic_labels[row.topic]);
            out.push_str("\",partition=\"");
            push_int_bare(&mut out, i64::from(row.index));
            out.push_str("\"} ");
            push_int(&mut out, value(row));
        }
    }

    let mut by_state: BTreeMap<&str, i64> = [
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        "Dead",
    ]
    .into_iter()
    .map(|s| (s, 0))
    .collect();
    for g in &listed {
        *by_state.entry(g.state.name()).or_default() += 1;
    }
    header(&mut out, "waterline_groups", "Consumer groups, per state");
    for (s, n) in by_state {
        out.push_str("waterline_groups{state=\"");
        out.push_str(s);
        out.push_str("\"} ");
        push_int(&mut out, n);
    }
    header(
        &mut out,
        "kafka_consumergroup_members",
        "Amount of members in a consumer group",
    );
    for g in &described {
        out.push_str("kafka_consumergroup_members{consumergroup=\"");
        escape_into(&mut out, &g.group_id);
        out.push_str("\"} ");
        push_int(&mut out, g.members.len() as i64);
    }

    // Per group partition: the committed offset and, where the log is known, the lag.
    let mut group_labels = String::new();
    let mut topic_scratch = String::new();
    let label = |out: &mut String, group: &str, tp: &TopicPartition, scratch: &mut String| {
        out.push_str("{consumergroup=\"");
        out.push_str(group);
        out.push_str("\",topic=\"");
        match topic_labels.get(tp.topic.as_str()) {
            Some(t) => out.push_str(t),
            None => {
                scratch.clear();
                escape_into(scratch, &tp.topic);
                out.push_str(scratch);
            }
        }
        out.push_str("\",partition=\"");
        push_int_bare(out, i64::from(tp.partition));
        out.push_str("\"} ");
    };
    let end_of = |tp: &TopicPartition| {
        ends.get(tp.topic.as_str())
            .and_then(|v| usize::try_from(tp.partition).ok().and_then(|i| v.get(i)))
            .copied()
            .flatten()
    };
    header(
        &mut out,
        "kafka_consumergroup_current_offset",
        "Current Offset of a ConsumerGroup at Topic/Partition",
    );
    for (id, rows) in &offsets {
        group_labels.clear();
        escape_into(&mut group_labels, id);
        for (tp, om) in rows {
            let Position::Offset(offset) = om.position else {
                continue;
            };
            out.push_str("kafka_consumergroup_current_offset");
            label(&mut out, &group_labels, tp, &mut topic_scratch);
            push_int(&mut out, offset);
        }
    }
    header(
        &mut out,
        "kafka_consumergroup_lag",
        "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
    );
    // (group, topic) -> summed lag, in the order first seen.
    let mut sums: Vec<(&str, &str, i64)> = Vec::new();
    for (id, rows) in &offsets {
        group_labels.clear();
        escape_into(&mut group_labels, id);
        let mut per_topic: BTreeMap<&str, i64> = BTreeMap::new();
        for (tp, om) in rows {
            let Position::Offset(offset) = om.position else {
                continue;
            };
            let Some(end) = end_of(tp) else { continue };
            let records = (end - offset).max(0);
            out.push_str("kafka_consumergroup_lag");
            label(&mut out, &group_labels, tp, &mut topic_scratch);
            push_int(&mut out, records);
            *per_topic.entry(tp.topic.as_str()).or_default() += records;
        }
        sums.extend(per_topic.into_iter().map(|(t, l)| (*id, t, l)));
    }
    header(
        &mut out,
        "kafka_consumergroup_lag_sum",
        "Current Approximate Lag of a ConsumerGroup at Topic for all partitions",
    );
    for (id, topic, l) in sums {
        out.push_str("kafka_consumergroup_lag_sum{consumergroup=\"");
        escape_into(&mut out, id);
        out.push_str("\",topic=\"");
        escape_into(&mut out, topic);
        out.push_str("\"} ");
        push_int(&mut out, l);
    }
    out.push_str("# EOF\n");
    out
}

/// A per-partition family: name, help, and the value it takes from a row.
type LogFamily = (&'static str, &'static str, fn(&PartitionRow) -> i64);

/// One partition's log, as the scrape saw it.
struct PartitionRow<'a> {
    topic: &'a str,
    index: i32,
    start: i64,
    end: i64,
    size: u64,
}

/// `# HELP` and `# TYPE` of a gauge family.
fn header(out: &mut String, name: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(help);
    out.push_str(".\n# TYPE ");
    out.push_str(name);
    out.push_str(" gauge\n");
}

/// An integer, then the end of the line.
fn push_int(out: &mut String, v: i64) {
    push_int_bare(out, v);
    out.push('\n');
}

fn push_int_bare(out: &mut String, v: i64) {
    let mut buf = itoa::Buffer::new();
    out.push_str(buf.format(v));
}

/// `s` escaped as an OpenMetrics label value (backslash, double quote, newline).
fn escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
    if !s.contains(['\\', '"', '\n']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_numbers_plain() {
        assert_eq!(escaped("orders"), "orders");
        assert_eq!(escaped("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut out = String::new();
        push_int(&mut out, -42);
        push_int_bare(&mut out, 7);
        assert_eq!(out, "-42\n7");
        let mut h = String::new();
        header(&mut h, "x", "Help");
        assert_eq!(h, "# HELP x Help.\n# TYPE x gauge\n");
    }
}
