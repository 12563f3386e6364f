//! One partition's log: a directory of segments.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::LogConfig;
use crate::error::LogError;
use crate::storage::{Storage, StorageFile};

/// Result of [`PartitionLog::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first record (of the original batch for a duplicate).
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The batch was a retry of an already appended one and was not appended again.
    pub duplicate: bool,
    /// Log start offset at the time of the append.
    pub log_start_offset: i64,
}

/// What must be fsynced to make everything appended before [`PartitionLog::sync_point`] durable.
pub struct SyncPoint {
    /// Every offset below this is durable once the point is fsynced and completed.
    pub end_offset: i64,
    files: Vec<Arc<dyn StorageFile>>,
}

impl SyncPoint {
    /// Fsyncs the files (outside the partition lock).
    pub fn fsync(&self) -> Result<(), LogError> {
        for f in &self.files {
            f.sync().map_err(|e| LogError::io("", e))?;
        }
        Ok(())
    }
}

/// One partition's log. Not internally synchronised: wrap it in a mutex.
pub struct PartitionLog {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: LogConfig,
    start: i64,
    end: i64,
    hw: i64,
}

impl PartitionLog {
    /// Opens or creates the log in `dir`.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        config: LogConfig,
        _now_ms: i64,
    ) -> Result<Self, LogError> {
        Ok(PartitionLog {
            storage,
            dir,
            config,
            start: 0,
            end: 0,
            hw: 0,
        })
    }
    /// Appends one validated v2 batch.
    pub fn append(&mut self, _batch: &[u8], _now_ms: i64) -> Result<AppendOutcome, LogError> {
        let _ = (&self.storage, &self.dir, &self.config);
        Err(LogError::Poisoned)
    }
    /// Whole batches from the one containing `offset`.
    pub fn read(
        &self,
        offset: i64,
        _max_bytes: usize,
        _upper_bound: i64,
    ) -> Result<Bytes, LogError> {
        Err(LogError::OffsetOutOfRange {
            offset,
            start: self.start,
            end: self.end,
        })
    }
    /// First offset of the log.
    pub fn log_start_offset(&self) -> i64 {
        self.start
    }
    /// Next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.end
    }
    /// Every offset below this is durable.
    pub fn high_watermark(&self) -> i64 {
        self.hw
    }
    /// First offset whose record timestamp >= ts, with that timestamp.
    pub fn offset_for_timestamp(&self, _ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        Ok(None)
    }
    /// (max timestamp, offset of the record carrying it).
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        None
    }
    /// What must be fsynced to make everything appended so far durable.
    pub fn sync_point(&self) -> SyncPoint {
        SyncPoint {
            end_offset: self.end,
            files: Vec::new(),
        }
    }
    /// Advances the high watermark after `point` was fsynced.
    pub fn complete_sync(&mut self, point: &SyncPoint) {
        self.hw = self.hw.max(point.end_offset)
    }
    /// sync_point + fsync + complete_sync.
    pub fn sync(&mut self) -> Result<(), LogError> {
        let p = self.sync_point();
        p.fsync()?;
        self.complete_sync(&p);
        Ok(())
    }
    /// Deletes whole segments past retention.
    pub fn enforce_retention(&mut self, _now_ms: i64) -> Result<usize, LogError> {
        Ok(0)
    }
    /// Flushes, fsyncs and writes the clean-shutdown marker.
    pub fn close(self) -> Result<(), LogError> {
        Ok(())
    }
    /// Deletes the partition's directory.
    pub fn delete(self) -> Result<(), LogError> {
        Ok(())
    }
}
