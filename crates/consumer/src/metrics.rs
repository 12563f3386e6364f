//! Consumer metrics: atomic counters, a [`MetricsSnapshot`], and the `metrics` facade.
//!
//! Facade names (all prefixed `waterline_consumer_`, all labelled `group` with the group id,
//! so two consumers in one process stay apart): counters `messages_total`, `bytes_total`,
//! `failures_total`, `retries_total`, `dead_lettered_total`, `stale_acks_total`,
//! `commits_total{result=ok|failed}`, `rebalances_total`, `pauses_total`, histogram
//! `commit_duration_seconds`; gauges `assigned_partitions`, `in_flight`,
//! `oldest_in_flight_age_seconds`, and `lag{topic,partition}` (set by
//! [`Consumer::lag`](crate::Consumer::lag)). The same names are served to a prometheus-client
//! registry by [`PrometheusCollector`](crate::PrometheusCollector).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use metrics::Label;
use waterline_core::LagReport;

use crate::shared::{Shared, now_ms};

/// Live counters, shared by the consumer's parts.
#[derive(Debug)]
pub(crate) struct Counters {
    started: Instant,
    /// `group=<id>`, put on every facade metric.
    labels: Vec<Label>,
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub failures: AtomicU64,
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub stale_acks: AtomicU64,
    pub skipped_done: AtomicU64,
    pub commits_ok: AtomicU64,
    pub commits_failed: AtomicU64,
    pub last_commit_us: AtomicU64,
    pub rebalances: AtomicU64,
    pub pauses: AtomicU64,
    /// Messages and bytes already reported to the facade (see [`Counters::publish`]).
    published: (AtomicU64, AtomicU64),
}

impl Counters {
    pub fn new(group: &str) -> Self {
        Self {
            started: Instant::now(),
            labels: vec![Label::new("group", group.to_string())],
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            stale_acks: AtomicU64::new(0),
            skipped_done: AtomicU64::new(0),
            commits_ok: AtomicU64::new(0),
            commits_failed: AtomicU64::new(0),
            last_commit_us: AtomicU64::new(0),
            rebalances: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
            published: (AtomicU64::new(0), AtomicU64::new(0)),
        }
    }

    /// Per record: plain loads and stores, no read-modify-write; the facade hears of it at
    /// the next [`publish`](Self::publish). Sound only while a single thread at a time calls
    /// it (the consumer's `recv`, which runs one call at a time); readers see a value at most
    /// one record behind.
    pub fn consumed_single_writer(&self, bytes: usize) {
        let m = self.messages.load(Ordering::Relaxed);
        self.messages.store(m + 1, Ordering::Relaxed);
        let b = self.bytes.load(Ordering::Relaxed);
        self.bytes.store(b + bytes as u64, Ordering::Relaxed);
    }

    /// Reports messages and bytes consumed since the last call to the facade (the commit
    /// thread calls it every tick; only that thread calls it).
    pub fn publish(&self) {
        let m = self.messages.load(Ordering::Relaxed);
        let b = self.bytes.load(Ordering::Relaxed);
        let pm = self.published.0.swap(m, Ordering::Relaxed);
        let pb = self.published.1.swap(b, Ordering::Relaxed);
        if m > pm {
            metrics::counter!("waterline_consumer_messages_total", self.labels.iter())
                .increment(m - pm);
        }
        if b > pb {
            metrics::counter!("waterline_consumer_bytes_total", self.labels.iter())
                .increment(b - pb);
        }
    }

    pub fn bump(&self, c: &AtomicU64, name: &'static str) {
        c.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(name, self.labels.iter()).increment(1);
    }

    pub fn commit(&self, ok: bool, micros: u64) {
        if ok {
            self.commits_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.commits_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.last_commit_us.store(micros, Ordering::Relaxed);
        let mut labels = self.labels.clone();
        labels.push(Label::from_static_parts(
            "result",
            if ok { "ok" } else { "failed" },
        ));
        metrics::counter!("waterline_consumer_commits_total", labels).increment(1);
        metrics::histogram!(
            "waterline_consumer_commit_duration_seconds",
            self.labels.iter()
        )
        .record(micros as f64 / 1e6);
    }

    pub fn snapshot(
        &self,
        assigned: usize,
        in_flight: u64,
        oldest_ms: Option<u64>,
        lag: LagReport,
    ) -> MetricsSnapshot {
        let secs = self.started.elapsed().as_secs_f64();
        let messages = self.messages.load(Ordering::Relaxed);
        metrics::gauge!("waterline_consumer_assigned_partitions", self.labels.iter())
            .set(assigned as f64);
        metrics::gauge!("waterline_consumer_in_flight", self.labels.iter()).set(in_flight as f64);
        metrics::gauge!(
            "waterline_consumer_oldest_in_flight_age_seconds",
            self.labels.iter()
        )
        .set(oldest_ms.unwrap_or(0) as f64 / 1e3);
        MetricsSnapshot {
            messages_consumed: messages,
            bytes_consumed: self.bytes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            stale_acks: self.stale_acks.load(Ordering::Relaxed),
            skipped_already_done: self.skipped_done.load(Ordering::Relaxed),
            commits_ok: self.commits_ok.load(Ordering::Relaxed),
            commits_failed: self.commits_failed.load(Ordering::Relaxed),
            last_commit_duration_us: self.last_commit_us.load(Ordering::Relaxed),
            rebalances: self.rebalances.load(Ordering::Relaxed),
            pauses: self.pauses.load(Ordering::Relaxed),
            assigned_partitions: assigned,
            in_flight,
            oldest_in_flight_age_ms: oldest_ms,
            throughput_per_sec: if secs > 0.0 {
                messages as f64 / secs
            } else {
                0.0
            },
            uptime_secs: secs,
            lag,
        }
    }
}

/// The [`MetricsSnapshot`] of a consumer's shared state (lag from the last
/// [`Consumer::lag`](crate::Consumer::lag) call).
pub(crate) fn snapshot_of(shared: &Shared) -> MetricsSnapshot {
    let hws = shared.high_watermarks.lock().clone();
    let now = now_ms();
    // In-flight figures for every partition, lag only where a watermark is known.
    let all = shared.lag(|tp| Some(hws.get(tp).copied().unwrap_or(0)), now);
    let lag = LagReport::from_partitions(
        all.partitions
            .iter()
            .filter(|p| hws.contains_key(&p.tp))
            .cloned()
            .collect(),
    );
    shared.counters.snapshot(
        shared.assigned().len(),
        all.total_in_flight,
        all.oldest_unacked_age_ms,
        lag,
    )
}

/// A point-in-time copy of the consumer's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Records handed out for the first time.
    pub messages_consumed: u64,
    /// Key plus payload bytes of those records.
    pub bytes_consumed: u64,
    /// Nacks (including dropped, unacknowledged deliveries).
    pub failures: u64,
    /// Redeliveries after a nack.
    pub retries: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Acks that arrived for a revoked or re-assigned partition and were dropped.
    pub stale_acks: u64,
    /// Records skipped because a previous run had already finished them.
    pub skipped_already_done: u64,
    /// Successful commits.
    pub commits_ok: u64,
    /// Failed commits.
    pub commits_failed: u64,
    /// Duration of the latest commit, microseconds.
    pub last_commit_duration_us: u64,
    /// Assignments and revocations handled.
    pub rebalances: u64,
    /// Times a partition was paused by back-pressure or a hold.
    pub pauses: u64,
    /// Partitions currently assigned.
    pub assigned_partitions: usize,
    /// Records handed out and not yet acknowledged.
    pub in_flight: u64,
    /// Age of the oldest in-flight record.
    pub oldest_in_flight_age_ms: Option<u64>,
    /// Records consumed per second since the consumer started.
    pub throughput_per_sec: f64,
    /// Seconds since the consumer started.
    pub uptime_secs: f64,
    /// Per-partition lag; high watermarks as last fetched by
    /// [`Consumer::lag`](crate::Consumer::lag) (partitions never fetched are left out).
    pub lag: LagReport,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_writer_counts_add_up_and_publish_only_the_difference() {
        let c = Counters::new("g");
        for n in [100usize, 0, 24] {
            c.consumed_single_writer(n);
        }
        c.publish();
        c.consumed_single_writer(1);
        let s = c.snapshot(0, 0, None, LagReport::from_partitions(Vec::new()));
        assert_eq!((s.messages_consumed, s.bytes_consumed), (4, 125));
        c.publish();
        assert_eq!(c.published.0.load(Ordering::Relaxed), 4);
        assert_eq!(c.published.1.load(Ordering::Relaxed), 125);
    }
}
