//! Prometheus metrics of the broker, served by [`crate::http`] at `/metrics`.
//!
//! Counters and histograms (requests, errors, latency, bytes, fsync, connections) are updated
//! on the request path with a few atomic operations: the codec hands each request and response
//! to [`BrokerMetrics`] once. Everything that is state rather than events (log offsets and
//! sizes, groups, committed offsets and lag) is read at scrape time, so it costs nothing
//! between scrapes. Group metrics use kafka_exporter's names and labels, as `waterline
//! exporter` does, so one dashboard reads both.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicPartitionLabels {
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    consumergroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupTopicLabels {
    consumergroup: String,
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    consumergroup: String,
    topic: String,
    partition: String,
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

/// Renders every metric: the event metrics, then the state read now (log offsets and sizes
/// per partition, groups by state, members, committed offsets and lag per group).
pub async fn render(state: &BrokerState) -> String {
    let mut r = Registry::default();
    state.metrics.register(&mut r);

    let log_start = Family::<TopicPartitionLabels, Gauge>::default();
    let log_end = Family::<TopicPartitionLabels, Gauge>::default();
    let log_size = Family::<TopicPartitionLabels, Gauge>::default();
    let partitions = Family::<TopicLabels, Gauge>::default();
    // partition -> high watermark, for lag.
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in state.topics.list() {
        partitions
            .get_or_create(&TopicLabels {
                topic: topic.name.to_string(),
            })
            .set(topic.partitions.len() as i64);
    }
    for p in state.topics.all_partitions() {
        let Some((start, end, size)) = p.with_log(|log| {
            (
                log.log_start_offset(),
                log.high_watermark(),
                log.size_bytes(),
            )
        }) else {
            continue;
        };
        let l = TopicPartitionLabels {
            topic: p.topic.to_string(),
            partition: p.index.to_string(),
        };
        log_start.get_or_create(&l).set(start);
        log_end.get_or_create(&l).set(end);
        log_size.get_or_create(&l).set(size as i64);
        ends.insert((p.topic.to_string(), p.index), end);
    }
    r.register(
        "kafka_topic_partitions",
        "Number of partitions for this Topic",
        partitions,
    );
    r.register(
        "kafka_topic_partition_current_offset",
        "Current Offset of a Broker at Topic/Partition",
        log_end,
    );
    r.register(
        "kafka_topic_partition_oldest_offset",
        "Oldest Offset of a Broker at Topic/Partition",
        log_start,
    );
    r.register(
        "waterline_log_size_bytes",
        "Bytes on disk of a partition's log segments",
        log_size,
    );

    let by_state = Family::<StateLabels, Gauge>::default();
    for s in [
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        "Dead",
    ] {
        by_state
            .get_or_create(&StateLabels { state: s.into() })
            .set(0);
    }
    let members = Family::<GroupLabels, Gauge>::default();
    let current = Family::<GroupPartitionLabels, Gauge>::default();
    let lag = Family::<GroupPartitionLabels, Gauge>::default();
    let lag_sum = Family::<GroupTopicLabels, Gauge>::default();
    let listed = state.groups.list(&[]);
    let ids: Vec<String> = listed.iter().map(|g| g.group_id.clone()).collect();
    let described = state.groups.describe(&ids);
    for g in &listed {
        by_state
            .get_or_create(&StateLabels {
                state: g.state.name().to_string(),
            })
            .inc();
    }
    for g in &described {
        members
            .get_or_create(&GroupLabels {
                consumergroup: g.group_id.clone(),
            })
            .set(g.members.len() as i64);
    }
    for id in &ids {
        // A store error leaves the group's offsets out of this scrape; the rest is served.
        let Ok(offsets) = state.groups.committed(id).await else {
            continue;
        };
        for (tp, om) in offsets {
            let l = GroupPartitionLabels {
                consumergroup: id.clone(),
                topic: tp.topic.clone(),
                partition: tp.partition.to_string(),
            };
            let waterline_core::Position::Offset(offset) = om.position else {
                continue;
            };
            current.get_or_create(&l).set(offset);
            if let Some(end) = ends.get(&(tp.topic.clone(), tp.partition)) {
                let records = (end - offset).max(0);
                lag.get_or_create(&l).set(records);
                lag_sum
                    .get_or_create(&GroupTopicLabels {
                        consumergroup: id.clone(),
                        topic: tp.topic.clone(),
                    })
                    .inc_by(records);
            }
        }
    }
    r.register("waterline_groups", "Consumer groups, per state", by_state);
    r.register(
        "kafka_consumergroup_members",
        "Amount of members in a consumer group",
        members,
    );
    r.register(
        "kafka_consumergroup_current_offset",
        "Current Offset of a ConsumerGroup at Topic/Partition",
        current,
    );
    r.register(
        "kafka_consumergroup_lag",
        "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
        lag,
    );
    r.register(
        "kafka_consumergroup_lag_sum",
        "Current Approximate Lag of a ConsumerGroup at Topic for all partitions",
        lag_sum,
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &r);
    text
}
