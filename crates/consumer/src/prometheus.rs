//! The consumer's metrics for a prometheus-client [`Registry`], beside the application's own.
//!
//! [`PrometheusCollector`] reads the consumer's counters at each scrape (no second set of
//! counters to keep in step) and writes them under the facade's names (see
//! [`crate::metrics`]), every sample labelled `group`; lag and in-flight records per
//! partition also carry `topic` and `partition`.
//!
//! ```no_run
//! # fn demo(consumer: &waterline_consumer::Consumer) {
//! use prometheus_client::registry::Registry;
//! let mut registry = Registry::default();
//! registry.register_collector(Box::new(consumer.prometheus_collector()));
//! # }
//! ```
//!
//! [`Registry`]: prometheus_client::registry::Registry

use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::metrics::snapshot_of;
use crate::shared::Shared;

/// A prometheus-client collector of one consumer's metrics; made by
/// [`Consumer::prometheus_collector`](crate::Consumer::prometheus_collector).
///
/// It holds the consumer weakly: once the consumer is dropped it reports nothing, so a
/// registry outliving the consumer does not keep its buffers alive or serve frozen values.
#[derive(Debug, Clone)]
pub struct PrometheusCollector {
    shared: Weak<Shared>,
    group: String,
}

impl PrometheusCollector {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        PrometheusCollector {
            shared: Arc::downgrade(shared),
            group: shared.group.clone(),
        }
    }

    /// The group id every sample is labelled with.
    pub fn group(&self) -> &str {
        &self.group
    }
}

impl Collector for PrometheusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let m = snapshot_of(&shared);
        drop(shared);
        let group = [("group", self.group.as_str())];

        // Counter names go without `_total`: the encoder appends it.
        let counters = [
            (
                "waterline_consumer_messages",
                "Records handed out for the first time.",
                m.messages_consumed,
            ),
            (
                "waterline_consumer_bytes",
                "Key plus payload bytes of the records handed out.",
                m.bytes_consumed,
            ),
            (
                "waterline_consumer_failures",
                "Nacks, including deliveries dropped without an ack.",
                m.failures,
            ),
            (
                "waterline_consumer_retries",
                "Redeliveries after a nack.",
                m.retries,
            ),
            (
                "waterline_consumer_dead_lettered",
                "Records sent to the dead-letter topic.",
                m.dead_lettered,
            ),
            (
                "waterline_consumer_stale_acks",
                "Acks for revoked or re-assigned partitions, dropped.",
                m.stale_acks,
            ),
            (
                "waterline_consumer_rebalances",
                "Assignments and revocations handled.",
                m.rebalances,
            ),
            (
                "waterline_consumer_pauses",
                "Times a partition was paused by back-pressure or a hold.",
                m.pauses,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(value).encode(family.encode_family(&group)?)?;
        }
        let mut commits = encoder.encode_descriptor(
            "waterline_consumer_commits",
            "Offset commits, by result (ok or failed).",
            None,
            MetricType::Counter,
        )?;
        for (result, value) in [("ok", m.commits_ok), ("failed", m.commits_failed)] {
            let labels = [("group", self.group.as_str()), ("result", result)];
            ConstCounter::new(value).encode(commits.encode_family(&labels)?)?;
        }

        let gauges = [
            (
                "waterline_consumer_assigned_partitions",
                "Partitions currently assigned.",
                m.assigned_partitions as f64,
            ),
            (
                "waterline_consumer_in_flight",
                "Records handed out and not yet acknowledged.",
                m.in_flight as f64,
            ),
            (
                "waterline_consumer_oldest_in_flight_age_seconds",
                "Age of the oldest in-flight record (0 when none).",
                m.oldest_in_flight_age_ms.unwrap_or(0) as f64 / 1e3,
            ),
            (
                "waterline_consumer_last_commit_duration_seconds",
                "Duration of the latest commit.",
                m.last_commit_duration_us as f64 / 1e6,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(family.encode_family(&group)?)?;
        }

        // Per partition: only partitions whose log end was fetched by `Consumer::lag`; an
        // unknown log end would read as a made-up lag.
        let mut lag = encoder.encode_descriptor(
            "waterline_consumer_lag",
            "Records between the commit point and the log end, as of the last Consumer::lag.",
            None,
            MetricType::Gauge,
        )?;
        let partitions: Vec<String> = m
            .lag
            .partitions
            .iter()
            .map(|p| p.tp.partition.to_string())
            .collect();
        for (p, partition) in m.lag.partitions.iter().zip(&partitions) {
            let labels = [
                ("group", self.group.as_str()),
                ("topic", p.tp.topic.as_str()),
                ("partition", partition.as_str()),
            ];
            ConstGauge::new(p.lag as i64).encode(lag.encode_family(&labels)?)?;
        }
        let mut in_flight = encoder.encode_descriptor(
            "waterline_consumer_partition_in_flight",
            "Records of the partition handed out and not yet acknowledged.",
            None,
            MetricType::Gauge,
        )?;
        for (p, partition) in m.lag.partitions.iter().zip(&partitions) {
            let labels = [
                ("group", self.group.as_str()),
                ("topic", p.tp.topic.as_str()),
                ("partition", partition.as_str()),
            ];
            ConstGauge::new(p.in_flight as i64).encode(in_flight.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
