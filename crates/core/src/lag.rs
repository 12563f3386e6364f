//! Consumer lag: how far the commit point trails the log end.

use crate::offset::TopicPartition;

/// Lag figures for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub tp: TopicPartition,
    /// The log's high watermark (next offset to be written), as reported by the caller.
    pub high_watermark: i64,
    /// The tracker's commit point.
    pub commit_point: i64,
    /// `high_watermark - commit_point`, never negative (a stale high watermark reads as 0).
    pub lag: u64,
    /// Records handed out and not yet acknowledged.
    pub in_flight: u64,
    /// Age of the oldest unacknowledged record, when one is in flight.
    pub oldest_unacked_age_ms: Option<u64>,
}

impl PartitionLag {
    /// Computes the lag, clamped at zero.
    pub fn new(
        tp: TopicPartition,
        high_watermark: i64,
        commit_point: i64,
        in_flight: u64,
        oldest_unacked_age_ms: Option<u64>,
    ) -> Self {
        Self {
            tp,
            high_watermark,
            commit_point,
            lag: lag_of(high_watermark, commit_point),
            in_flight,
            oldest_unacked_age_ms,
        }
    }
}

/// `high_watermark - position`, never negative.
pub fn lag_of(high_watermark: i64, position: i64) -> u64 {
    high_watermark.saturating_sub(position).max(0) as u64
}

/// Lag over all partitions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LagReport {
    /// Per-partition figures, sorted by partition.
    pub partitions: Vec<PartitionLag>,
    /// Sum of the partition lags.
    pub total_lag: u64,
    /// Sum of in-flight records.
    pub total_in_flight: u64,
    /// The oldest unacknowledged record's age across partitions.
    pub oldest_unacked_age_ms: Option<u64>,
}

impl LagReport {
    /// Builds the totals from per-partition figures.
    pub fn from_partitions(mut partitions: Vec<PartitionLag>) -> Self {
        partitions.sort_by(|a, b| a.tp.cmp(&b.tp));
        let total_lag = partitions
            .iter()
            .map(|p| p.lag)
            .fold(0u64, u64::saturating_add);
        let total_in_flight = partitions.iter().map(|p| p.in_flight).sum();
        let oldest_unacked_age_ms = partitions
            .iter()
            .filter_map(|p| p.oldest_unacked_age_ms)
            .max();
        Self {
            partitions,
            total_lag,
            total_in_flight,
            oldest_unacked_age_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_never_negative() {
        assert_eq!(lag_of(10, 4), 6);
        assert_eq!(lag_of(4, 10), 0);
        assert_eq!(lag_of(i64::MIN, i64::MAX), 0);
        assert_eq!(lag_of(i64::MAX, -1), i64::MAX as u64);
    }

    #[test]
    fn totals() {
        let r = LagReport::from_partitions(vec![
            PartitionLag::new(TopicPartition::new("t", 1), 5, 9, 0, None),
            PartitionLag::new(TopicPartition::new("t", 0), 10, 4, 3, Some(70)),
        ]);
        assert_eq!(r.partitions[0].tp.partition, 0);
        assert_eq!((r.total_lag, r.total_in_flight), (6, 3));
        assert_eq!(r.oldest_unacked_age_ms, Some(70));
    }
}
