//! Per-partition log configuration.

/// Segment, index and retention settings of one partition log.
#[derive(Clone, Debug, PartialEq, Eq)]
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
}

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
        }
    }
}
