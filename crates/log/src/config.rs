//! Per-partition log configuration.

/// Kafka's `cleanup.policy`: what happens to closed segments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CleanupPolicy {
    /// `delete` (Kafka's default): time and size retention delete whole segments.
    #[default]
    Delete,
    /// `compact`: the cleaner keeps the latest record per key; retention deletes nothing.
    Compact,
    /// `compact,delete`: both apply.
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether the cleaner compacts this log.
    pub fn compacts(self) -> bool {
        matches!(self, CleanupPolicy::Compact | CleanupPolicy::CompactDelete)
    }

    /// Whether time and size retention delete segments.
    pub fn deletes(self) -> bool {
        matches!(self, CleanupPolicy::Delete | CleanupPolicy::CompactDelete)
    }
}

/// Segment, index, retention and compaction settings of one partition log.
///
/// `PartialEq`/`Eq` compare `min_cleanable_dirty_ratio` as a float; callers keep it in
/// [0, 1] (never NaN), which makes the comparison an equivalence.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Roll when the active segment would exceed this many bytes (default 1 GiB). A batch larger
    /// than this still goes into an empty segment; positions are 32-bit, so segments never
    /// exceed 4 GiB regardless.
    pub segment_bytes: u64,
    /// Roll when the active segment's first batch is older than this (default 7 days).
    pub segment_ms: Option<i64>,
    /// Delete whole segments whose largest timestamp is older than this (default 7 days).
    pub retention_ms: Option<i64>,
    /// Delete the oldest whole segments while the log is larger than this (default none).
    pub retention_bytes: Option<u64>,
    /// Add a sparse offset index entry every this many bytes of batches (default 4096).
    pub index_interval_bytes: u64,
    /// Largest accepted batch in bytes (default 1 MiB plus 12 bytes of log overhead).
    pub max_batch_bytes: usize,
    /// `cleanup.policy` (default `delete`).
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long a tombstone survives after the cleaner first rewrote the
    /// batch holding it (default 1 day).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment whose largest timestamp is younger than this is not
    /// cleaned (default 0).
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log whose oldest uncleaned batch is older than this is
    /// cleaned whatever its dirty ratio, and a compacted log's active segment rolls at this
    /// age if that is sooner than `segment_ms` (default `i64::MAX`, never).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: clean when uncleaned bytes / cleanable bytes reach this
    /// (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
}

impl Eq for LogConfig {}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * DAY_MS),
            retention_ms: Some(7 * DAY_MS),
            retention_bytes: None,
            index_interval_bytes: 4096,
            max_batch_bytes: (1 << 20) + 12,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: DAY_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}
