//! One partition's log: a directory of segments (see the crate docs for format and durability).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::batch::{self, BatchHeader, Depth, LOG_OVERHEAD};
use crate::config::LogConfig;
use crate::error::{BatchError, LogError};
use crate::format::{self, INDEX_ENTRY, TIME_ENTRY};
use crate::producer::{Check, ProducerState};
use crate::storage::{Storage, StorageFile};
use crate::txn::{self, AbortedEntry, AbortedTxn, CompletedTxn, ControlType, Marker, ProducerInfo};

const LOG_SUFFIX: &str = ".log";
const INDEX_SUFFIX: &str = ".index";
const TIME_SUFFIX: &str = ".timeindex";
const TXN_SUFFIX: &str = ".txnindex";
const SNAPSHOT_SUFFIX: &str = ".snapshot";
const TMP_SUFFIX: &str = ".tmp";
const LOG_START_FILE: &str = "log-start-offset";
const RECOVERY_FILE: &str = "recovery-point";
const CLEAN_FILE: &str = "clean-shutdown";
const CLEANER_OFFSET_FILE: &str = "cleaner-offset";
const SWAP_FILE: &str = "clean-swap";
const HORIZON_FILE: &str = "delete-horizon";
/// `delete-horizon` value meaning no kept tombstone is waiting for its horizon.
const NO_HORIZON: i64 = i64::MAX;

#[path = "cleaner.rs"]
mod cleaner;
use cleaner::{CLEANED_SUFFIX, CleaningGuard, PlanSegment};
pub use cleaner::{
    CleanPlan, CleanReason, CleanResult, CleanStats, CleanerConfig, OFFSET_MAP_SLOT_BYTES,
    OffsetMap, RateThrottle, Throttle, Unthrottled, keyless_records,
};

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

/// Damage that [`PartitionLog::open`] found in a file it trusted, and repaired. The log stays
/// correct (the repaired data is rebuilt from the segments), but a trusted file should not
/// be damaged: the broker should report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The damaged file.
    pub path: PathBuf,
    /// Byte position of the first damaged byte; the file was truncated there.
    pub position: u64,
    /// What was wrong.
    pub reason: String,
}

/// State shared between a log and its in-flight [`SyncPoint`]s, which run outside the lock.
struct Shared {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// Set by any failed write or fsync; the log then refuses writes (a retried fsync can
    /// report success for data the kernel already dropped).
    poisoned: AtomicBool,
    /// The recovery point durably written so far (serialises checkpoint writers).
    recovery_written: Mutex<i64>,
    /// Set while a cleaning pass (plan or result) is alive.
    cleaning: Arc<AtomicBool>,
    /// The log's directory was created by `open` and its entry in the parent directory is
    /// not yet known durable: the first sync point fsyncs the parent too. Until then the log
    /// holds nothing (an empty log recreated after a crash is the same log).
    parent_unsynced: AtomicBool,
}

impl Shared {
    fn poison<T>(&self, e: LogError) -> Result<T, LogError> {
        self.poisoned.store(true, Ordering::SeqCst);
        Err(e)
    }

    /// Poisons the log unless `e` is retriable ([`LogError::is_retriable`]: a handle could not
    /// be opened, so the failed step wrote and fsynced nothing). Only for steps that are safe
    /// to repeat from the start: a retried sync point re-syncs everything it lists.
    fn poison_unless_retriable<T>(&self, e: LogError) -> Result<T, LogError> {
        if e.is_retriable() {
            return Err(e);
        }
        self.poison(e)
    }
}

/// What must be fsynced to make everything appended before [`PartitionLog::sync_point`]
/// durable: the files written since the last completed sync, the directory if files were
/// created, and the recovery point checkpoint if segments were sealed.
pub struct SyncPoint {
    /// Every offset below this is durable once the point is fsynced and completed.
    pub end_offset: i64,
    files: Vec<Arc<dyn StorageFile>>,
    sync_dir: bool,
    /// New recovery point to record once the files are durable.
    recovery_point: Option<i64>,
    generation: u64,
    shared: Arc<Shared>,
    done: AtomicBool,
}

impl std::fmt::Debug for SyncPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncPoint")
            .field("end_offset", &self.end_offset)
            .field("files", &self.files.len())
            .field("sync_dir", &self.sync_dir)
            .field("recovery_point", &self.recovery_point)
            .finish()
    }
}

impl SyncPoint {
    /// Fsyncs the files, then the directory, then records the recovery point. Safe to call
    /// outside the partition lock, concurrently with appends. A failure poisons the log,
    /// except a retriable one (out of file descriptors: no fsync was attempted); the point is
    /// then not done, and a later point lists the same files again.
    pub fn fsync(&self) -> Result<(), LogError> {
        let sh = &self.shared;
        if sh.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        for f in &self.files {
            if let Err(e) = f.sync() {
                return sh.poison_unless_retriable(LogError::io(&sh.dir, e));
            }
        }
        if self.sync_dir {
            // A new log's directory entry first, then its contents.
            if sh.parent_unsynced.load(Ordering::SeqCst)
                && let Some(parent) = sh.dir.parent().filter(|p| !p.as_os_str().is_empty())
            {
                if let Err(e) = sh.storage.sync_dir(parent) {
                    return sh.poison_unless_retriable(LogError::io(parent, e));
                }
                sh.parent_unsynced.store(false, Ordering::SeqCst);
            }
            if let Err(e) = sh.storage.sync_dir(&sh.dir) {
                return sh.poison_unless_retriable(LogError::io(&sh.dir, e));
            }
        }
        if let Some(rp) = self.recovery_point {
            let mut written = sh.recovery_written.lock();
            if rp > *written {
                let bytes = format::encode_checkpoint(format::MAGIC_RECOVERY, rp);
                // write_atomic is repeatable (tmp file, fsync, rename, directory fsync).
                if let Err(e) = write_atomic(&*sh.storage, &sh.dir, RECOVERY_FILE, &bytes) {
                    return sh.poison_unless_retriable(e);
                }
                *written = rp;
            }
        }
        self.done.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// One segment: `{base}.log` plus its sparse indexes, mirrored in memory.
pub(crate) struct Segment {
    base: i64,
    log: Arc<dyn StorageFile>,
    index_file: Arc<dyn StorageFile>,
    time_file: Arc<dyn StorageFile>,
    /// Bytes of whole batches in the log file.
    size: u64,
    /// One past the last offset stored in this segment.
    next_offset: i64,
    /// (offset - base, position) of indexed batch starts; strictly increasing in both.
    index: Vec<(u32, u32)>,
    /// (segment max timestamp so far, offset - base of the record carrying it); strictly
    /// increasing timestamps.
    time: Vec<(i64, u32)>,
    /// Largest record timestamp in the segment, -1 if none.
    max_ts: i64,
    max_ts_offset: i64,
    bytes_since_index: u64,
    /// How many of `index` / `time` are already in the index files.
    index_on_disk: usize,
    time_on_disk: usize,
    /// Reference time for age-based rolling (first batch's timestamp).
    roll_ref_ms: Option<i64>,
    /// Aborted transactions whose marker lies in this segment, in marker order (all of them
    /// are in `{base}.txnindex` too, written as each marker is appended).
    aborted: Vec<AbortedEntry>,
    /// `{base}.txnindex`, created with the segment's first aborted transaction.
    txn_file: Option<Arc<dyn StorageFile>>,
}

impl Segment {
    fn rel(&self, offset: i64) -> u32 {
        // Invariant: offsets in a segment are within u32 of its base (enforced by rolling).
        u32::try_from(offset - self.base).unwrap_or(u32::MAX)
    }

    /// Position of the last indexed batch starting at or before `offset`.
    fn index_lookup(&self, offset: i64) -> u64 {
        let rel = offset - self.base;
        let i = self.index.partition_point(|&(r, _)| i64::from(r) <= rel);
        if i == 0 {
            0
        } else {
            u64::from(self.index[i - 1].1)
        }
    }
}

/// One partition's log. Not internally synchronised: the broker wraps it in a mutex.
///
/// Durability: `append` writes the batch (and any index entries due) with plain writes, never
/// fsyncs. Rolling a segment writes a producer-state snapshot and creates the new segment's
/// files, also without fsync; the sealed segment's files, the snapshot and the directory are
/// queued for the next [`SyncPoint`]. `append_marker` appends an aborted transaction's entry
/// to the active segment's `.txnindex`, also queued. `sync_point`/`SyncPoint::fsync` fsync the
/// queued files, the active `.log`, the directory if files were created, and then atomically
/// rewrite the `recovery-point` checkpoint if a segment was sealed. `enforce_retention` fsyncs
/// a snapshot at the first remaining segment and the `log-start-offset` checkpoint (write tmp,
/// fsync, rename, fsync dir) before deleting segments, then fsyncs the directory. `open`
/// fsyncs whatever recovery changed, and `close` fsyncs everything before writing the
/// clean-shutdown marker.
pub struct PartitionLog {
    shared: Arc<Shared>,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start: i64,
    log_end: i64,
    high_watermark: i64,
    producers: ProducerState,
    /// Offsets of snapshot files present.
    snapshots: BTreeSet<i64>,
    /// Files written and not yet covered by a completed sync, with the generation queued.
    pending: Vec<(u64, Arc<dyn StorageFile>)>,
    /// Generation at which a directory change was last queued (None once synced).
    dir_dirty: Option<u64>,
    /// Recovery point to record with the next sync (base of the active segment after a roll).
    pending_recovery: Option<i64>,
    generation: u64,
    scratch: Vec<u8>,
    /// Offsets below this were cleaned by a completed pass (the next pass's first dirty
    /// offset); persisted in `cleaner-offset`.
    clean_offset: i64,
    /// Earliest delete horizon of tombstones kept by the last pass (not persisted).
    next_horizon: Option<i64>,
    /// Transactions ended by a marker that is not yet below the high watermark, as (first
    /// offset, marker offset): they stay unstable until the marker is durable.
    unstable: BTreeSet<(i64, i64)>,
    /// What `open` repaired.
    repairs: Vec<Repair>,
    /// The `clean-shutdown` marker is still on disk: `open` found the log clean and changed
    /// nothing, so it leaves the marker until the first write ([`Self::begin_write`]) and a
    /// `close` before any write has nothing to do.
    clean_marker: bool,
    /// Who vouches for the marker: whether the first write must remove it.
    marker_mode: CleanMarker,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |e| LogError::io(path, e)
}

/// Writes `name` atomically and durably: tmp file, fsync, rename, fsync directory.
fn write_atomic(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let path = dir.join(name);
    let f = storage.open(&tmp, true).map_err(io_err(&tmp))?;
    f.truncate(0).map_err(io_err(&tmp))?;
    f.append(bytes).map_err(io_err(&tmp))?;
    f.sync().map_err(io_err(&tmp))?;
    storage.rename(&tmp, &path).map_err(io_err(&path))?;
    storage.sync_dir(dir).map_err(io_err(dir))
}

fn read_all(file: &dyn StorageFile, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, LogError> {
    let len = file.len().map_err(io_err(path))?;
    if len > limit {
        return Ok(None);
    }
    let mut buf = vec![0u8; len as usize];
    file.read_at(&mut buf, 0).map_err(io_err(path))?;
    Ok(Some(buf))
}

/// Reads a small whole file if present and not larger than `limit`.
fn read_small(storage: &dyn Storage, path: &Path, limit: u64) -> Result<Option<Vec<u8>>, LogError> {
    if !storage.exists(path).map_err(io_err(path))? {
        return Ok(None);
    }
    let f = storage.open(path, false).map_err(io_err(path))?;
    read_all(&*f, path, limit)
}

/// Outcome of scanning a segment's batches.
struct Scan {
    /// Whether the scan stopped at an invalid batch (the segment was truncated there).
    truncated: bool,
}

/// Who vouches for a log's `clean-shutdown` marker (see the crate's Recovery section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanMarker {
    /// The marker stands on its own ([`PartitionLog::open`]): a valid marker means a clean
    /// stop, and the first write after `open` removes it and fsyncs the directory before
    /// writing anything.
    PerLog,
    /// A caller-wide clean-shutdown record vouches for every marker (the broker's, written
    /// only after all its logs were closed and flushed, and removed durably at start before
    /// any log is opened). `record_valid`: the record was present, so a valid marker means a
    /// clean stop; without it every marker is ignored (and not even read). The first write
    /// leaves the marker in place, stale but no longer vouched for: no directory fsync in
    /// the append path. The caller must not write a new record unless every log it opened
    /// this way was closed successfully (a stale marker must never be vouched for again).
    Vouched {
        /// Whether the caller's clean-shutdown record was present and valid at start.
        record_valid: bool,
    },
}

impl PartitionLog {
    /// Opens or creates the log in `dir` with a marker of its own ([`CleanMarker::PerLog`];
    /// see [`PartitionLog::open_with`]).
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Self, LogError> {
        Self::open_with(storage, dir, config, now_ms, CleanMarker::PerLog)
    }

    /// Opens or creates the log in `dir`. First finishes or rolls back an interrupted cleaner
    /// swap (`clean-swap`, see the crate's FORMAT section). After a clean stop (marker present
    /// and valid) it trusts segment files and indexes (indexes are still bounds-checked and
    /// rebuilt if inconsistent). Otherwise every segment from the recovery point on is
    /// validated batch by batch (length, magic, CRC-32C, dense offsets; increasing offsets and
    /// records removed from batches in segments the cleaner may have rewritten), truncated at
    /// the first invalid batch (later segments are deleted) and its indexes rebuilt. Producer state is loaded from the newest
    /// snapshot at or below the first rescanned offset and rolled forward from batch headers.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        config: LogConfig,
        now_ms: i64,
        marker: CleanMarker,
    ) -> Result<Self, LogError> {
        let existed = storage.exists(&dir).map_err(io_err(&dir))?;
        storage.create_dir_all(&dir).map_err(io_err(&dir))?;
        // One listing serves the whole open unless an interrupted cleaner swap changes the
        // directory first (start-up opens every partition: each syscall saved counts).
        let mut names = storage.list_dir(&dir).map_err(io_err(&dir))?;
        let swap_pending = names
            .iter()
            .any(|n| n == SWAP_FILE || n.ends_with(CLEANED_SUFFIX));
        let swap_completed = swap_pending && finish_swap(&*storage, &dir)?;
        if swap_pending {
            names = storage.list_dir(&dir).map_err(io_err(&dir))?;
        }
        names.sort();
        // A checkpoint absent from the listing is not read (saves a lookup per file).
        let checkpoint = |name: &str, magic: &[u8; 4]| -> Result<Option<i64>, LogError> {
            if names.binary_search_by(|n| n.as_str().cmp(name)).is_err() {
                return Ok(None);
            }
            Ok(read_small(&*storage, &dir.join(name), 64)?
                .and_then(|b| format::decode_checkpoint(magic, &b)))
        };
        let mut dir_changed = false;
        for n in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
            let p = dir.join(n);
            storage.remove_file(&p).map_err(io_err(&p))?;
            dir_changed = true;
        }
        let clean_end = match marker {
            CleanMarker::Vouched {
                record_valid: false,
            } => None,
            _ => checkpoint(CLEAN_FILE, format::MAGIC_CLEAN)?,
        };
        let start_ckpt = checkpoint(LOG_START_FILE, format::MAGIC_LOG_START)?;
        let recovery_ckpt = checkpoint(RECOVERY_FILE, format::MAGIC_RECOVERY)?;
        let cleaner_ckpt = checkpoint(CLEANER_OFFSET_FILE, format::MAGIC_CLEANER)?;
        let horizon_ckpt = checkpoint(HORIZON_FILE, format::MAGIC_HORIZON)?;

        let bases: Vec<i64> = names
            .iter()
            .filter_map(|n| format::parse_name(n, LOG_SUFFIX))
            .collect();
        let snapshots: BTreeSet<i64> = names
            .iter()
            .filter_map(|n| format::parse_name(n, SNAPSHOT_SUFFIX))
            .collect();
        // Index files without a log file are leftovers of deleted segments.
        for n in &names {
            let orphan = [INDEX_SUFFIX, TIME_SUFFIX, TXN_SUFFIX]
                .iter()
                .filter_map(|s| format::parse_name(n, s))
                .any(|b| !bases.contains(&b));
            if orphan {
                let p = dir.join(n);
                storage.remove_file(&p).map_err(io_err(&p))?;
                dir_changed = true;
            }
        }

        let shared = Arc::new(Shared {
            storage,
            dir,
            poisoned: AtomicBool::new(false),
            recovery_written: Mutex::new(recovery_ckpt.unwrap_or(i64::MIN)),
            cleaning: Arc::new(AtomicBool::new(false)),
            parent_unsynced: AtomicBool::new(!existed),
        });
        let mut log = PartitionLog {
            shared,
            config,
            segments: BTreeMap::new(),
            log_start: 0,
            log_end: 0,
            high_watermark: 0,
            producers: ProducerState::default(),
            snapshots,
            pending: Vec::new(),
            dir_dirty: None,
            pending_recovery: None,
            generation: 0,
            scratch: Vec::new(),
            clean_offset: 0,
            next_horizon: None,
            unstable: BTreeSet::new(),
            repairs: Vec::new(),
            clean_marker: false,
            marker_mode: marker,
        };

        // Segments entirely below the checkpointed log start were being deleted by retention.
        let mut bases = bases;
        if let Some(ls) = start_ckpt {
            while bases.len() > 1 && bases[1] <= ls {
                log.remove_segment_files(bases.remove(0))?;
                dir_changed = true;
            }
        }
        if bases.is_empty() {
            let base = start_ckpt.unwrap_or(0).max(0);
            let seg = log.create_segment(base)?;
            log.segments.insert(base, seg);
            log.log_start = base;
            log.log_end = base;
            log.high_watermark = base;
            if clean_end.is_some() {
                log.remove_marker()?;
            }
            if existed {
                log.sync_dir()?;
            } else {
                // A new log holds nothing yet: its directory (and its entry in the parent) is
                // fsynced by the first sync point, before anything written to it is durable.
                // Creating many partitions then costs no fsync each.
                log.generation += 1;
                log.dir_dirty = Some(log.generation);
            }
            return Ok(log);
        }

        let last_base = *bases.last().unwrap_or(&0);
        // Offsets below `scan_from` are in trusted (sealed or cleanly closed) segments.
        let scan_from = match clean_end {
            Some(end) if end >= last_base => i64::MAX,
            _ => recovery_ckpt.unwrap_or(i64::MIN),
        };
        let mut truncated = false;
        // Segments from here on get their aborted-transaction index rebuilt by replaying the
        // log: the first one that was scanned or whose `.txnindex` is damaged.
        let mut txn_rebuild_from = i64::MAX;
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            if truncated {
                log.remove_segment_files(base)?;
                dir_changed = true;
                continue;
            }
            // Only segments wholly below the recovery point (all their files durable) are
            // ever cleaned, and the recovery point only grows; the cleaner offset bounds them
            // too. Such segments may have offset gaps, partial batches, and end before the
            // next segment's base. Everywhere else offsets stay dense.
            let cleanable_bound = recovery_ckpt.max(cleaner_ckpt).unwrap_or(i64::MIN);
            if let Some(prev) = log.segments.values_mut().next_back() {
                let gap_ok = base <= cleanable_bound && prev.next_offset < base;
                if prev.next_offset != base && !gap_ok {
                    // A gap or overlap between segments: keep the dense prefix only.
                    log.remove_segment_files(base)?;
                    dir_changed = true;
                    truncated = true;
                    continue;
                }
                prev.next_offset = base;
            }
            let mut seg = log.open_segment(base)?;
            let cleaned = next_base.is_some_and(|n| n <= cleanable_bound);
            let trusted = base < scan_from;
            let loaded = trusted && {
                let next = match (next_base, clean_end) {
                    (Some(n), _) => n,
                    (None, Some(end)) => end,
                    (None, None) => i64::MIN,
                };
                next >= base && log.load_indexes(&mut seg, next, cleaned)?
            };
            if !loaded {
                let scan = log.scan_segment(&mut seg, now_ms, cleaned)?;
                truncated = scan.truncated;
                log.queue_segment(&seg);
                txn_rebuild_from = txn_rebuild_from.min(base);
            } else if !log.load_txn_index(&mut seg)? {
                txn_rebuild_from = txn_rebuild_from.min(base);
            }
            log.segments.insert(base, seg);
        }
        let Some(first) = log.segments.values().next() else {
            return Err(LogError::Corrupt {
                path: log.shared.dir.clone(),
                offset: 0,
                reason: "no segment survived recovery".into(),
            });
        };
        log.log_start = start_ckpt.unwrap_or(first.base).max(first.base);
        let last = log
            .segments
            .values()
            .next_back()
            .map_or(0, |s| s.next_offset);
        log.log_end = last;
        if log.log_start > log.log_end {
            log.log_start = log.log_end;
        }
        log.clean_offset = cleaner_ckpt
            .unwrap_or(log.log_start)
            .clamp(log.log_start, log.log_end);
        // Kept tombstones' delete horizon: from `delete-horizon`. If that file may be older
        // than the cleaned segments (a swap completed here, before the install wrote it; or a
        // log from before the file existed), a pass is due at once so none outlives its horizon.
        log.next_horizon = match horizon_ckpt {
            _ if swap_completed => Some(i64::MIN),
            Some(NO_HORIZON) => None,
            Some(h) => Some(h),
            None if log.clean_offset > log.log_start => Some(i64::MIN),
            None => None,
        };
        if cleaner_ckpt.is_some_and(|c| c > log.log_end) {
            // Recovery truncated into cleaned data (corruption): forget the cleaned range
            // beyond the end, so later segments there get the strict checks.
            let ckpt = format::encode_checkpoint(format::MAGIC_CLEANER, log.clean_offset);
            write_atomic(log.storage(), log.dir(), CLEANER_OFFSET_FILE, &ckpt)?;
        }
        if let Some(active) = log.segments.values_mut().next_back()
            && active.size > 0
        {
            let mut hdr = [0u8; BatchHeader::SIZE];
            let path = log
                .shared
                .dir
                .join(format::file_name(active.base, LOG_SUFFIX));
            active.log.read_at(&mut hdr, 0).map_err(io_err(&path))?;
            let h = BatchHeader::parse(&hdr)?;
            active.roll_ref_ms = Some(if h.max_timestamp >= 0 {
                h.max_timestamp
            } else {
                now_ms
            });
        }

        // Snapshots beyond the (possibly truncated) end describe batches that no longer exist.
        let stale: Vec<i64> = log.snapshots.range(log.log_end + 1..).copied().collect();
        for s in stale {
            log.remove_snapshot(s)?;
            dir_changed = true;
        }
        // Snapshots that do not decode (written at a roll, lost in a crash) can never be used:
        // forget them, so that pruning never keeps one of them in place of a valid one.
        let snapshots: Vec<i64> = log.snapshots.iter().copied().collect();
        for s in snapshots {
            if log.read_snapshot(s)?.is_none() {
                log.remove_snapshot(s)?;
                dir_changed = true;
            }
        }
        log.rebuild_producer_state(txn_rebuild_from)?;

        // Make recovery's changes durable before anything new is accepted; everything below
        // the active segment is now validated and durable, so it becomes the recovery point.
        // A log that recovery did not touch (every segment trusted: cleanly closed, or sealed
        // below the recovery point, so fsynced before that was written) has nothing to sync.
        let changed = dir_changed || truncated || !log.pending.is_empty();
        if changed {
            let point = log.sync_point_inner(true);
            point.fsync()?;
            log.complete_sync(&point);
        }
        log.high_watermark = log.log_end;
        let active_base = log.active().base;
        if recovery_ckpt != Some(active_base) {
            let bytes = format::encode_checkpoint(format::MAGIC_RECOVERY, active_base);
            write_atomic(log.storage(), log.dir(), RECOVERY_FILE, &bytes)?;
        }
        *log.shared.recovery_written.lock() = active_base;
        if clean_end.is_some() {
            if !changed {
                log.clean_marker = true;
            } else if marker == CleanMarker::PerLog {
                log.remove_marker()?;
            }
            // Vouched and changed: the record that vouched for the marker is gone already.
        }
        Ok(log)
    }

    fn dir(&self) -> &Path {
        &self.shared.dir
    }

    fn storage(&self) -> &dyn Storage {
        &*self.shared.storage
    }

    fn active(&self) -> &Segment {
        // Invariant: a log always has at least one segment.
        self.segments
            .values()
            .next_back()
            .expect("log has an active segment")
    }

    fn path(&self, base: i64, suffix: &str) -> PathBuf {
        self.dir().join(format::file_name(base, suffix))
    }

    /// Removes the marker and fsyncs the directory. Repeatable: a marker already removed by
    /// an earlier attempt whose directory fsync failed for lack of descriptors is fine.
    fn remove_marker(&self) -> Result<(), LogError> {
        let p = self.dir().join(CLEAN_FILE);
        match self.storage().remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(&p, e)),
        }
        self.sync_dir()
    }

    /// Called before anything is written to the log after `open`: removes the
    /// `clean-shutdown` marker left in place by `open` (and fsyncs the directory), so that a
    /// crash after this write leads to a full recovery. A failure poisons the log unless it
    /// is retriable (the write is then refused and the removal repeated by the next one).
    fn begin_write(&mut self) -> Result<(), LogError> {
        if !self.clean_marker {
            return Ok(());
        }
        if self.marker_mode != CleanMarker::PerLog {
            // The caller's record, removed durably before this log was opened, was all that
            // made the marker true: it is stale from here on and nothing needs removing.
            self.clean_marker = false;
            return Ok(());
        }
        if let Err(e) = self.remove_marker() {
            return self.shared.poison_unless_retriable(e);
        }
        self.clean_marker = false;
        Ok(())
    }

    /// Whether the log is unchanged since a clean `open` (its `clean-shutdown` marker is
    /// still valid; closing it has nothing to do).
    pub fn is_clean(&self) -> bool {
        self.clean_marker
    }

    fn sync_dir(&self) -> Result<(), LogError> {
        self.storage()
            .sync_dir(self.dir())
            .map_err(io_err(self.dir()))
    }

    fn open_files(&self, base: i64, create: bool) -> Result<[Arc<dyn StorageFile>; 3], LogError> {
        let mut out: Vec<Arc<dyn StorageFile>> = Vec::with_capacity(3);
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_SUFFIX] {
            let p = self.path(base, suffix);
            let f = self
                .storage()
                .open(&p, create || suffix != LOG_SUFFIX)
                .map_err(io_err(&p))?;
            if create {
                f.truncate(0).map_err(io_err(&p))?;
            }
            out.push(Arc::from(f));
        }
        let [a, b, c]: [Arc<dyn StorageFile>; 3] =
            out.try_into().map_err(|_| LogError::Poisoned)?;
        Ok([a, b, c])
    }

    fn empty_segment(base: i64, files: [Arc<dyn StorageFile>; 3]) -> Segment {
        let [log, index_file, time_file] = files;
        Segment {
            base,
            log,
            index_file,
            time_file,
            size: 0,
            next_offset: base,
            index: Vec::new(),
            time: Vec::new(),
            max_ts: -1,
            max_ts_offset: -1,
            bytes_since_index: 0,
            index_on_disk: 0,
            time_on_disk: 0,
            roll_ref_ms: None,
            aborted: Vec::new(),
            txn_file: None,
        }
    }

    /// Opens an existing file of segment `base`.
    fn reopen(&self, base: i64, suffix: &str) -> Result<Arc<dyn StorageFile>, LogError> {
        let p = self.path(base, suffix);
        Ok(Arc::from(
            self.storage().open(&p, false).map_err(io_err(&p))?,
        ))
    }

    fn create_segment(&self, base: i64) -> Result<Segment, LogError> {
        Ok(Self::empty_segment(base, self.open_files(base, true)?))
    }

    fn open_segment(&self, base: i64) -> Result<Segment, LogError> {
        let files = self.open_files(base, false)?;
        let size = files[0]
            .len()
            .map_err(io_err(&self.path(base, LOG_SUFFIX)))?;
        let mut seg = Self::empty_segment(base, files);
        seg.size = size;
        Ok(seg)
    }

    /// Loads and checks a trusted segment's indexes. Returns false (caller rescans) if they are
    /// torn, out of bounds or disagree with the log file.
    fn load_indexes(
        &self,
        seg: &mut Segment,
        next_offset: i64,
        cleaned: bool,
    ) -> Result<bool, LogError> {
        let span = next_offset - seg.base;
        if seg.size > u64::from(u32::MAX) || span > i64::from(u32::MAX) {
            return Ok(false);
        }
        // A valid index has at most one entry per minimal batch.
        let max_entries = seg.size / BatchHeader::SIZE as u64 + 1;
        let ip = self.path(seg.base, INDEX_SUFFIX);
        let tp = self.path(seg.base, TIME_SUFFIX);
        let Some(index) = read_all(&*seg.index_file, &ip, max_entries * INDEX_ENTRY as u64)?
            .and_then(|b| format::decode_index(&b))
        else {
            return Ok(false);
        };
        let Some(time) = read_all(&*seg.time_file, &tp, max_entries * TIME_ENTRY as u64)?
            .and_then(|b| format::decode_time_index(&b))
        else {
            return Ok(false);
        };
        let index_ok = index.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
            && index
                .iter()
                .all(|&(r, p)| i64::from(r) < span && u64::from(p) < seg.size && r > 0);
        let time_ok = time.windows(2).all(|w| w[0].0 < w[1].0)
            && time.iter().all(|&(_, r)| i64::from(r) < span);
        // A cleaned segment may be emptied entirely but still span offsets.
        let size_ok = if cleaned {
            seg.size == 0 || span > 0
        } else {
            (seg.size == 0) == (span == 0)
        };
        if !index_ok || !time_ok || !size_ok {
            return Ok(false);
        }
        // Walk from the last indexed batch to the end: it must start where the entry says, and
        // the batches after it must end exactly at the file end with the expected next offset.
        let (mut expect, mut pos) = index.last().map_or((seg.base, 0), |&(r, p)| {
            (seg.base + i64::from(r), u64::from(p))
        });
        // In a cleaned segment, the first batch may start after the segment base (when there
        // is no index entry), batches may skip offsets, and the last may end before the next
        // segment; offsets still increase.
        let gaps_ok = cleaned && index.is_empty();
        let mut first = true;
        loop {
            let skip_ok = if first { gaps_ok } else { cleaned };
            match self.header_at(seg, pos) {
                Ok(Some(h)) if h.base_offset == expect || (skip_ok && h.base_offset > expect) => {
                    first = false;
                    expect = h.last_offset() + 1;
                    pos += h.total_size().unwrap_or(0) as u64;
                }
                Ok(None) if expect == next_offset || cleaned && expect < next_offset => break,
                _ => return Ok(false),
            }
        }
        seg.next_offset = next_offset;
        seg.index = index;
        // The last time entry is the segment maximum (written at seal/close): the batch holding
        // its offset must carry that maximum. A non-empty segment without one is rescanned.
        let Some(&(ts, rel)) = time.last() else {
            return Ok(seg.size == 0);
        };
        let target = seg.base + i64::from(rel);
        let mut pos = seg.index_lookup(target);
        loop {
            match self.header_at(seg, pos) {
                Ok(Some(h)) if h.last_offset() < target => {
                    pos += h.total_size().unwrap_or(0) as u64;
                }
                Ok(Some(h)) if h.max_timestamp == ts => break,
                _ => return Ok(false),
            }
        }
        seg.max_ts = ts;
        seg.max_ts_offset = target;
        seg.index_on_disk = seg.index.len();
        seg.time_on_disk = time.len();
        seg.time = time;
        // Approximate: batches after the last index entry count toward the next one.
        seg.bytes_since_index = seg.size - seg.index.last().map_or(0, |e| u64::from(e.1));
        Ok(true)
    }

    /// Reads the header of the batch at `pos`, None at the end of the segment; errors if the
    /// header is cut off or its length is impossible.
    fn header_at(&self, seg: &Segment, pos: u64) -> Result<Option<BatchHeader>, LogError> {
        if pos >= seg.size {
            return Ok(None);
        }
        let path = self.path(seg.base, LOG_SUFFIX);
        let corrupt = |reason: &str| LogError::Corrupt {
            path: path.clone(),
            offset: pos,
            reason: reason.into(),
        };
        if seg.size - pos < BatchHeader::SIZE as u64 {
            return Err(corrupt("truncated batch header"));
        }
        let mut hdr = [0u8; BatchHeader::SIZE];
        seg.log.read_at(&mut hdr, pos).map_err(io_err(&path))?;
        let h = BatchHeader::parse(&hdr)?;
        match h.total_size() {
            Some(s) if s as u64 <= seg.size - pos => Ok(Some(h)),
            _ => Err(corrupt("batch length out of bounds")),
        }
    }

    /// Validates every batch of `seg` from the start, truncates at the first invalid one and
    /// rebuilds both indexes from scratch.
    fn scan_segment(
        &mut self,
        seg: &mut Segment,
        now_ms: i64,
        cleaned: bool,
    ) -> Result<Scan, LogError> {
        let path = self.path(seg.base, LOG_SUFFIX);
        let file_len = seg.size;
        let (base, interval) = (seg.base, self.config.index_interval_bytes);
        let mut fresh = Self::empty_segment(
            base,
            [
                seg.log.clone(),
                seg.index_file.clone(),
                seg.time_file.clone(),
            ],
        );
        let mut pos = 0u64;
        let mut buf = std::mem::take(&mut self.scratch);
        loop {
            let rest = file_len - pos;
            if rest < LOG_OVERHEAD as u64 {
                break;
            }
            let mut head = [0u8; LOG_OVERHEAD];
            seg.log.read_at(&mut head, pos).map_err(io_err(&path))?;
            let len = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
            let Some(size) = usize::try_from(len)
                .ok()
                .filter(|&l| l >= BatchHeader::SIZE - LOG_OVERHEAD)
                .map(|l| l + LOG_OVERHEAD)
                .filter(|&s| s as u64 <= rest)
            else {
                break;
            };
            // Positions are u32 and relative offsets too; anything beyond is not ours.
            if pos + size as u64 > u64::from(u32::MAX) {
                break;
            }
            buf.resize(size, 0);
            seg.log.read_at(&mut buf, pos).map_err(io_err(&path))?;
            let valid = if cleaned {
                batch::validate_stored(&buf, size, true).is_ok()
            } else {
                batch::validate_batch(&buf, size, Depth::Shallow).is_ok()
            };
            if !valid {
                break;
            }
            let h = BatchHeader::parse(&buf)?;
            let in_order =
                h.base_offset == fresh.next_offset || cleaned && h.base_offset > fresh.next_offset;
            if !in_order || h.last_offset() - base > i64::from(u32::MAX) {
                break;
            }
            // Entries are collected in memory and written in one go below.
            let at = MaxTimestampAt::Find;
            note_batch(&mut fresh, &h, &buf, at, pos, size as u64, interval, now_ms);
            pos += size as u64;
        }
        self.scratch = buf;
        let truncated = pos < file_len;
        if truncated {
            seg.log.truncate(pos).map_err(io_err(&path))?;
        }
        fresh.size = pos;
        // Like a sealed segment, end the time index with the segment maximum, so the index can
        // be trusted later (the last entry is how a loaded segment learns its maximum).
        if fresh.max_ts >= 0 && fresh.time.last().is_none_or(|t| t.0 < fresh.max_ts) {
            let t = (fresh.max_ts, fresh.rel(fresh.max_ts_offset));
            fresh.time.push(t);
        }
        // Rewrite both indexes from the in-memory rebuild.
        let ip = self.path(base, INDEX_SUFFIX);
        let tp = self.path(base, TIME_SUFFIX);
        seg.index_file.truncate(0).map_err(io_err(&ip))?;
        seg.index_file
            .append(&format::encode_index(&fresh.index))
            .map_err(io_err(&ip))?;
        seg.time_file.truncate(0).map_err(io_err(&tp))?;
        seg.time_file
            .append(&format::encode_time_index(&fresh.time))
            .map_err(io_err(&tp))?;
        fresh.index_on_disk = fresh.index.len();
        fresh.time_on_disk = fresh.time.len();
        *seg = fresh;
        Ok(Scan { truncated })
    }

    /// Queues a segment's files for the next sync (after recovery or a roll).
    fn queue_segment(&mut self, seg: &Segment) {
        // A new generation, so no sync point taken earlier can claim to cover these files.
        self.generation += 1;
        for f in [&seg.log, &seg.index_file, &seg.time_file] {
            self.pending.push((self.generation, f.clone()));
        }
    }

    fn remove_segment_files(&mut self, base: i64) -> Result<(), LogError> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_SUFFIX, TXN_SUFFIX] {
            let p = self.path(base, suffix);
            if self.storage().exists(&p).map_err(io_err(&p))? {
                self.storage().remove_file(&p).map_err(io_err(&p))?;
            }
        }
        Ok(())
    }

    fn remove_snapshot(&mut self, offset: i64) -> Result<(), LogError> {
        let p = self.path(offset, SNAPSHOT_SUFFIX);
        if self.storage().exists(&p).map_err(io_err(&p))? {
            self.storage().remove_file(&p).map_err(io_err(&p))?;
        }
        self.snapshots.remove(&offset);
        Ok(())
    }

    /// Loads a trusted segment's `{base}.txnindex` (absent = no aborted transactions). A
    /// damaged entry (torn, CRC, version, inconsistent, or outside the segment) is reported in
    /// `repairs`, the file truncated before it, and false returned: the caller rebuilds the
    /// index from this segment on.
    fn load_txn_index(&mut self, seg: &mut Segment) -> Result<bool, LogError> {
        let p = self.path(seg.base, TXN_SUFFIX);
        if !self.storage().exists(&p).map_err(io_err(&p))? {
            return Ok(true);
        }
        let f: Arc<dyn StorageFile> =
            Arc::from(self.storage().open(&p, false).map_err(io_err(&p))?);
        // Bound: at most one entry per minimal batch of the segment.
        let limit = (seg.size / BatchHeader::SIZE as u64 + 1) * txn::TXN_ENTRY as u64;
        let len = f.len().map_err(io_err(&p))?;
        let mut buf = vec![0u8; len.min(limit) as usize];
        f.read_at(&mut buf, 0).map_err(io_err(&p))?;
        let (mut entries, mut bad) = txn::decode_entries(&buf);
        if bad.is_none() && len > limit {
            bad = Some((limit, "more entries than the segment has batches"));
        }
        if let Some(i) = entries
            .iter()
            .position(|e| e.last_offset < seg.base || e.last_offset >= seg.next_offset)
        {
            bad = Some(((i * txn::TXN_ENTRY) as u64, "entry outside its segment"));
            entries.truncate(i);
        }
        seg.aborted = entries;
        seg.txn_file = Some(f.clone());
        let Some((pos, reason)) = bad else {
            return Ok(true);
        };
        self.repairs.push(Repair {
            path: p.clone(),
            position: pos,
            reason: reason.into(),
        });
        f.truncate(pos).map_err(io_err(&p))?;
        Ok(false)
    }

    /// Loads the newest valid snapshot at or below `txn_rebuild_from` and the log end, and
    /// replays the batches from its offset to the log end (reading markers). The aborted
    /// transactions of segments from `txn_rebuild_from` on are replaced by those the replay
    /// finds, and their `.txnindex` files rewritten (or removed when empty), queued for the
    /// recovery sync.
    fn rebuild_producer_state(&mut self, txn_rebuild_from: i64) -> Result<(), LogError> {
        let upto = txn_rebuild_from.min(self.log_end);
        let (from, mut st) = self.snapshot_at_or_below(upto)?;
        let entries = self.replay(from, &mut st, txn_rebuild_from, i64::MAX)?;
        self.producers = st;
        if txn_rebuild_from == i64::MAX {
            return Ok(());
        }
        let mut by_seg: BTreeMap<i64, Vec<AbortedEntry>> = BTreeMap::new();
        for (base, e) in entries {
            by_seg.entry(base).or_default().push(e);
        }
        let bases: Vec<i64> = self
            .segments
            .range(txn_rebuild_from..)
            .map(|(&b, _)| b)
            .collect();
        for base in bases {
            let entries = by_seg.remove(&base).unwrap_or_default();
            self.write_txn_index(base, entries)?;
        }
        Ok(())
    }

    /// Replaces a segment's aborted transactions and rewrites its `.txnindex` (removed when
    /// there are none); the file and the directory are queued for the next sync.
    fn write_txn_index(&mut self, base: i64, entries: Vec<AbortedEntry>) -> Result<(), LogError> {
        let p = self.path(base, TXN_SUFFIX);
        let exists = self.storage().exists(&p).map_err(io_err(&p))?;
        let file = if entries.is_empty() {
            if exists {
                self.storage().remove_file(&p).map_err(io_err(&p))?;
                self.generation += 1;
                self.dir_dirty = Some(self.generation);
            }
            None
        } else {
            let f: Arc<dyn StorageFile> =
                Arc::from(self.storage().open(&p, true).map_err(io_err(&p))?);
            f.truncate(0).map_err(io_err(&p))?;
            f.append(&txn::encode_entries(&entries))
                .map_err(io_err(&p))?;
            self.queue_file(f.clone(), !exists);
            Some(f)
        };
        if let Some(seg) = self.segments.get_mut(&base) {
            seg.aborted = entries;
            seg.txn_file = file;
        }
        Ok(())
    }

    /// Queues a written file for the next sync (once), and the directory if it was created.
    fn queue_file(&mut self, f: Arc<dyn StorageFile>, created: bool) {
        // A new generation, so no sync point taken before this write can claim to cover it.
        self.generation += 1;
        let g = self.generation;
        match self.pending.iter_mut().find(|(_, p)| Arc::ptr_eq(p, &f)) {
            Some(entry) => entry.0 = g,
            None => self.pending.push((g, f)),
        }
        if created {
            self.dir_dirty = Some(g);
        }
    }

    /// Reads and decodes snapshot `s`; None if it is invalid or names another offset.
    fn read_snapshot(&self, s: i64) -> Result<Option<ProducerState>, LogError> {
        let p = self.path(s, SNAPSHOT_SUFFIX);
        // Bound: a snapshot holds at most a few dozen bytes per producer; 256 MiB is far beyond
        // any real one.
        Ok(read_small(self.storage(), &p, 256 << 20)?
            .and_then(|b| format::decode_snapshot(&b))
            .filter(|(off, _)| *off == s)
            .map(|(_, st)| st))
    }

    /// The newest valid snapshot at or below `upto` as (offset, state), else the start of the
    /// first segment with no state. Snapshots are kept so that every segment from the one
    /// returned on is present (see `advance_start`).
    fn snapshot_at_or_below(&self, upto: i64) -> Result<(i64, ProducerState), LogError> {
        for &s in self.snapshots.range(..=upto).rev() {
            if let Some(st) = self.read_snapshot(s)? {
                return Ok((s, st));
            }
        }
        // A transaction may have started before the log start, in the segment holding it.
        let first = self
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.log_start);
        Ok((first, ProducerState::default()))
    }

    /// Producer state with every batch below `offset` applied (from the newest snapshot at or
    /// below it, replaying the batches after it).
    fn state_at(&self, offset: i64) -> Result<ProducerState, LogError> {
        let (from, mut st) = self.snapshot_at_or_below(offset)?;
        self.replay(from, &mut st, i64::MAX, offset)?;
        Ok(st)
    }

    /// Replays the batches whose last offset is >= `from` and whose base offset is below
    /// `until` into `st` (reading the marker of each control batch). Returns the aborted
    /// transactions whose marker lies in a segment with base >= `index_from`, as (segment
    /// base, index entry).
    fn replay(
        &self,
        from: i64,
        st: &mut ProducerState,
        index_from: i64,
        until: i64,
    ) -> Result<Vec<(i64, AbortedEntry)>, LogError> {
        let mut out = Vec::new();
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        let mut buf = Vec::new();
        for seg in self.segments.range(first..).map(|(_, s)| s) {
            let mut pos = if seg.base <= from {
                seg.index_lookup(from)
            } else {
                0
            };
            while let Some(h) = self.header_at(seg, pos)? {
                let size = h.total_size().unwrap_or(0);
                if h.base_offset >= until {
                    return Ok(out);
                }
                if h.last_offset() >= from {
                    let marker = if h.is_control() && h.producer_id >= 0 {
                        buf.resize(size, 0);
                        let path = self.path(seg.base, LOG_SUFFIX);
                        seg.log.read_at(&mut buf, pos).map_err(io_err(&path))?;
                        txn::parse_marker(&buf)
                    } else {
                        None
                    };
                    if let Some(done) = st.apply(&h, marker)
                        && done.aborted
                        && seg.base >= index_from
                    {
                        out.push((seg.base, aborted_entry(st, &done)));
                    }
                }
                pos += size as u64;
            }
        }
        Ok(out)
    }

    /// Appends ONE already-validated v2 batch (bytes exactly as produced; the log rewrites the
    /// first 8 bytes with the assigned base offset). Not durable until a sync covers it.
    /// The batch is re-validated (CRC included) so invalid bytes never reach the disk.
    /// Idempotent producers (producer_id >= 0, base_sequence >= 0): a batch equal to one of the
    /// last 5 appended for that producer/epoch (same base_sequence and record count) is not
    /// appended again and yields `duplicate: true` with the original offsets. A sequence gap ->
    /// [`LogError::OutOfOrderSequence`]; an older epoch -> [`LogError::ProducerFenced`]; a
    /// producer id without state sending a sequence other than 0 ->
    /// [`LogError::UnknownProducerId`]. A write error poisons the log.
    pub fn append(&mut self, batch: &[u8], now_ms: i64) -> Result<AppendOutcome, LogError> {
        self.append_with(batch, MaxTimestampAt::Find, now_ms, None)
    }

    /// [`append`](Self::append) for a batch [`split_produced`](crate::split_produced) found:
    /// its `max_timestamp_delta` saves decoding (and decompressing) the records again to index
    /// the batch's maximum timestamp.
    pub fn append_produced(
        &mut self,
        batch: &[u8],
        max_timestamp_delta: Option<i32>,
        now_ms: i64,
    ) -> Result<AppendOutcome, LogError> {
        let at = match max_timestamp_delta {
            Some(d) => MaxTimestampAt::Delta(d),
            None => MaxTimestampAt::Base,
        };
        self.append_with(batch, at, now_ms, None)
    }

    /// Appends a transaction marker for `producer_id` (see the crate's Transactions section):
    /// one control batch (attributes transactional | control, base sequence -1, timestamps
    /// `now_ms`) holding one control record, key = version i16 0 | type i16 (ABORT 0, COMMIT
    /// 1), value = version i16 0 | `coordinator_epoch` i32. It ends the producer's open
    /// transaction in this partition, if any: after a COMMIT its records are stable once the
    /// marker is below the high watermark; an ABORT also records (producer id, first offset,
    /// marker offset, last stable offset) in the aborted-transaction index. A marker for a
    /// producer without an open transaction is appended all the same (recovery of the
    /// transaction coordinator re-sends markers, as in Kafka). A marker whose epoch is older
    /// than the producer's current epoch is not appended: `Ok(None)` (a newer epoch already
    /// ended the transaction). A newer epoch becomes the producer's epoch (fencing the old
    /// producer; its sequences restart). Not durable until a sync covers it; a write error
    /// poisons the log.
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<Option<AppendOutcome>, LogError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        if producer_id < 0 {
            return Err(BatchError::BadRecords("a marker needs a producer id").into());
        }
        if self
            .producers
            .producers
            .get(&producer_id)
            .is_some_and(|e| producer_epoch < e.epoch)
        {
            return Ok(None);
        }
        let marker = Marker {
            control,
            coordinator_epoch,
        };
        let bytes = txn::encode_marker(producer_id, producer_epoch, marker, now_ms);
        self.append_with(&bytes, MaxTimestampAt::Base, now_ms, Some(marker))
            .map(Some)
    }

    /// First offset of the oldest transaction that is open (or ended by a marker not yet
    /// below the high watermark), else the high watermark; never below the log start offset.
    /// read_committed consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        let mut lso = self.high_watermark;
        if let Some(f) = self.producers.first_open_txn() {
            lso = lso.min(f);
        }
        if let Some(&(f, _)) = self.unstable.first() {
            lso = lso.min(f);
        }
        lso.max(self.log_start)
    }

    /// Aborted transactions that overlap [from, to): marker offset >= `from` and first offset
    /// < `to`, ordered by first offset (Fetch's aborted_transactions for read_committed).
    /// Looks at the segments from the one holding `from` on and stops at the first entry whose
    /// last stable offset reaches `to` (no later abort can overlap then, as in Kafka).
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Result<Vec<AbortedTxn>, LogError> {
        let mut out = Vec::new();
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        'segs: for seg in self.segments.range(first..).map(|(_, s)| s) {
            for e in &seg.aborted {
                if e.last_offset >= from && e.first_offset < to {
                    out.push(AbortedTxn {
                        producer_id: e.producer_id,
                        first_offset: e.first_offset,
                    });
                }
                if e.last_stable_offset >= to {
                    break 'segs;
                }
            }
        }
        out.sort_by_key(|a| (a.first_offset, a.producer_id));
        Ok(out)
    }

    /// What `open` found damaged in files it trusted and repaired (today: entries of
    /// `.txnindex` files, which were truncated and rebuilt from the segments). Empty after a
    /// normal recovery, torn tails of unsynced data included.
    pub fn recovery_repairs(&self) -> &[Repair] {
        &self.repairs
    }

    /// Every producer with state in this partition, by producer id.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        self.producers
            .producers
            .iter()
            .map(|(&pid, e)| ProducerInfo {
                producer_id: pid,
                producer_epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |m| m.last_seq),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.txn_first.unwrap_or(-1),
            })
            .collect()
    }

    /// Records a transaction ended by a marker in the active segment: an abort goes into its
    /// `.txnindex` (created on the first one; file and directory queued for the next sync). A
    /// write error poisons the log.
    fn complete_txn(&mut self, done: CompletedTxn) -> Result<(), LogError> {
        self.unstable.insert((done.first_offset, done.last_offset));
        if !done.aborted {
            return Ok(());
        }
        let entry = self.aborted_entry(&done);
        let base = self.active().base;
        let p = self.path(base, TXN_SUFFIX);
        let res = (|| {
            let (file, created) = match &self.active().txn_file {
                Some(f) => (f.clone(), false),
                None => {
                    let f = self.storage().open(&p, true).map_err(io_err(&p))?;
                    f.truncate(0).map_err(io_err(&p))?;
                    (Arc::from(f), true)
                }
            };
            let mut bytes = Vec::with_capacity(txn::TXN_ENTRY);
            txn::encode_entry(&entry, &mut bytes);
            file.append(&bytes).map_err(io_err(&p))?;
            self.queue_file(file.clone(), created);
            let seg = self.segments.get_mut(&base).expect("active segment exists");
            seg.txn_file = Some(file);
            seg.aborted.push(entry);
            Ok(())
        })();
        match res {
            Ok(()) => Ok(()),
            Err(e) => self.shared.poison(e),
        }
    }

    /// The index entry of an aborted transaction, from producer state just after its marker.
    fn aborted_entry(&self, done: &CompletedTxn) -> AbortedEntry {
        aborted_entry(&self.producers, done)
    }

    fn append_with(
        &mut self,
        batch: &[u8],
        max_ts_at: MaxTimestampAt,
        now_ms: i64,
        marker: Option<Marker>,
    ) -> Result<AppendOutcome, LogError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        let size = batch::validate_batch(batch, self.config.max_batch_bytes, Depth::Shallow)?;
        if size != batch.len() {
            return Err(BatchError::TrailingBytes(batch.len() - size).into());
        }
        let mut h = BatchHeader::parse(batch)?;
        if h.is_control() && marker.is_none() {
            return Err(BatchError::ControlBatch.into());
        }
        if let Check::Duplicate(m) = self.producers.check(&h)? {
            return Ok(AppendOutcome {
                base_offset: m.first_offset,
                last_offset: m.last_offset,
                duplicate: true,
                log_start_offset: self.log_start,
            });
        }
        let base = self.log_end;
        let last = base
            .checked_add(i64::from(h.last_offset_delta))
            .filter(|l| *l < i64::MAX)
            .ok_or(LogError::OffsetOverflow(base))?;
        h.base_offset = base;
        self.begin_write()?;
        self.maybe_roll(size as u64, last, now_ms)?;

        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.extend_from_slice(batch);
        buf[..8].copy_from_slice(&base.to_be_bytes());
        let interval = self.config.index_interval_bytes;
        let active_base = self.active().base;
        let dir = &self.shared.dir;
        let seg = self
            .segments
            .get_mut(&active_base)
            .expect("active segment exists");
        let pos = seg.size;
        let log_path = || dir.join(format::file_name(active_base, LOG_SUFFIX));
        // Index entries stay in memory until the segment is sealed or the log closed: recovery
        // rebuilds an unsealed segment's indexes anyway, so appends cost one write.
        let res = match seg.log.append(&buf) {
            Ok(p) if p == pos => {
                note_batch(seg, &h, &buf, max_ts_at, pos, size as u64, interval, now_ms);
                Ok(())
            }
            Ok(p) => Err(LogError::Corrupt {
                path: log_path(),
                offset: p,
                reason: format!("append landed at {p}, expected {pos}"),
            }),
            Err(e) => Err(LogError::io(log_path(), e)),
        };
        self.scratch = buf;
        if let Err(e) = res {
            // Out of descriptors: the segment's handle could not be opened, nothing was
            // written and no state changed, so the append is refused alone.
            return self.shared.poison_unless_retriable(e);
        }
        let done = self.producers.apply(&h, marker);
        self.log_end = last + 1;
        if let Some(done) = done {
            self.complete_txn(done)?;
        }
        Ok(AppendOutcome {
            base_offset: base,
            last_offset: last,
            duplicate: false,
            log_start_offset: self.log_start,
        })
    }

    /// Rolls to a new segment if the batch would not fit (size, 32-bit positions or relative
    /// offsets) or the active segment is older than `segment_ms` (or, for a compacted log,
    /// `max_compaction_lag_ms` if smaller). Never rolls an empty segment.
    fn maybe_roll(&mut self, size: u64, last: i64, now_ms: i64) -> Result<(), LogError> {
        let seg = self.active();
        if seg.size == 0 {
            return Ok(());
        }
        let full = seg.size + size > self.config.segment_bytes
            || seg.size + size > u64::from(u32::MAX)
            || last - seg.base > i64::from(u32::MAX);
        // A compacted log also rolls at max.compaction.lag.ms, so that the active segment
        // (never cleaned) cannot hold records past that lag (Kafka's maxSegmentMs).
        let max_ms = match self.config.segment_ms {
            Some(ms) if self.config.cleanup_policy.compacts() => {
                Some(ms.min(self.config.max_compaction_lag_ms.max(1)))
            }
            None if self.config.cleanup_policy.compacts()
                && self.config.max_compaction_lag_ms < i64::MAX =>
            {
                Some(self.config.max_compaction_lag_ms.max(1))
            }
            other => other,
        };
        let aged = matches!((max_ms, seg.roll_ref_ms),
            (Some(ms), Some(r)) if now_ms.saturating_sub(r) >= ms);
        if full || aged { self.roll() } else { Ok(()) }
    }

    /// Seals the active segment and starts a new one at the log end. Writes, never fsyncs:
    /// the sealed files, the new snapshot and the directory are queued for the next sync.
    ///
    /// A failure poisons the log unless it is retriable (a handle could not be opened): a
    /// roll retried at the same log end completes an interrupted one, because each step is
    /// repeatable there (index entries already written are not written again, the snapshot
    /// and the new segment's files are truncated and rewritten, files queued twice are
    /// fsynced twice).
    fn roll(&mut self) -> Result<(), LogError> {
        let new_base = self.log_end;
        match self.roll_inner(new_base) {
            Err(e) => self.shared.poison_unless_retriable(e),
            ok => ok,
        }
    }

    fn roll_inner(&mut self, new_base: i64) -> Result<(), LogError> {
        let old_base = self.active().base;
        let dir = self.shared.dir.clone();
        {
            let seg = self
                .segments
                .get_mut(&old_base)
                .expect("active segment exists");
            seal_time_index(seg, &dir)?;
        }
        self.generation += 1;
        let old = self.segments.get(&old_base).expect("active segment exists");
        let files = [
            old.log.clone(),
            old.index_file.clone(),
            old.time_file.clone(),
        ];
        for f in files {
            self.pending.push((self.generation, f));
        }
        // Snapshot of producer state as of new_base, so recovery need not replay sealed data.
        let sp = self.path(new_base, SNAPSHOT_SUFFIX);
        let snap = self.storage().open(&sp, true).map_err(io_err(&sp))?;
        snap.truncate(0).map_err(io_err(&sp))?;
        snap.append(&format::encode_snapshot(new_base, &self.producers))
            .map_err(io_err(&sp))?;
        self.pending.push((self.generation, Arc::from(snap)));
        self.snapshots.insert(new_base);
        let seg = self.create_segment(new_base)?;
        self.segments.insert(new_base, seg);
        self.dir_dirty = Some(self.generation);
        self.pending_recovery = Some(new_base);
        self.prune_snapshots()
    }

    /// Keeps the newest snapshot at or below the durable recovery point and everything above;
    /// older ones can never be chosen by recovery.
    fn prune_snapshots(&mut self) -> Result<(), LogError> {
        let rp = *self.shared.recovery_written.lock();
        let keep_from = self
            .snapshots
            .range(..=rp)
            .next_back()
            .copied()
            .unwrap_or(rp);
        let old: Vec<i64> = self.snapshots.range(..keep_from).copied().collect();
        for s in old {
            self.remove_snapshot(s)?;
        }
        Ok(())
    }

    /// Whole stored batches starting with the one containing `offset`, up to `max_bytes` (but
    /// at least one whole batch if any exists at/after `offset`), continuing into following
    /// segments. Only batches whose last offset is below `upper_bound` are returned (pass
    /// high_watermark() for consumers). `offset` outside [log_start_offset, log_end_offset] ->
    /// [`LogError::OffsetOutOfRange`]. Reading never changes the log.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Bytes, LogError> {
        if offset < self.log_start || offset > self.log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start,
                end: self.log_end,
            });
        }
        let upper = upper_bound.min(self.log_end);
        if offset >= upper {
            return Ok(Bytes::new());
        }
        let first = self
            .segments
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        let mut out: Vec<u8> = Vec::new();
        for seg in self.segments.range(first..).map(|(_, s)| s) {
            let mut pos = 0;
            if seg.base <= offset {
                pos = seg.index_lookup(offset);
                loop {
                    match self.header_at(seg, pos)? {
                        Some(h) if h.last_offset() < offset => {
                            pos += h.total_size().unwrap_or(0) as u64
                        }
                        Some(_) => break,
                        None => break,
                    }
                }
            }
            let avail = seg.size.saturating_sub(pos);
            if avail == 0 {
                continue;
            }
            let mut want = (max_bytes.saturating_sub(out.len()) as u64).min(avail);
            if out.is_empty()
                && let Some(h) = self.header_at(seg, pos)?
            {
                want = want.max(h.total_size().unwrap_or(0) as u64);
            }
            if want == 0 {
                break;
            }
            let path = self.path(seg.base, LOG_SUFFIX);
            let mut buf = vec![0u8; want as usize];
            seg.log.read_at(&mut buf, pos).map_err(io_err(&path))?;
            let mut p = 0;
            let mut stop = false;
            while buf.len() - p >= BatchHeader::SIZE {
                let h = BatchHeader::parse(&buf[p..])?;
                let Some(size) = h.total_size() else {
                    return Err(LogError::Corrupt {
                        path,
                        offset: pos + p as u64,
                        reason: "bad batch length".into(),
                    });
                };
                if p + size > buf.len() {
                    break;
                }
                if h.last_offset() >= upper {
                    stop = true;
                    break;
                }
                p += size;
            }
            stop |= p < buf.len() || (p as u64) < avail;
            if out.is_empty() {
                buf.truncate(p);
                out = buf;
            } else {
                out.extend_from_slice(&buf[..p]);
            }
            if stop {
                break;
            }
        }
        Ok(Bytes::from(out))
    }

    /// First offset of the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start
    }

    /// The log's configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (a topic's settings changed live). Takes effect from the next
    /// append (roll), retention check and index entry; nothing already written changes.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Bytes of the log's segment files (`.log` only, as Kafka's `Log.size`; indexes and
    /// checkpoints are not counted), unsynced appends included.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }

    /// Next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end
    }

    /// Every offset below this is durable (fsynced).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// First offset whose record timestamp >= ts (Kafka: first batch whose max_timestamp >= ts,
    /// then the first record inside it with timestamp >= ts; compressed batches are decompressed
    /// for that), with that record's timestamp. None if no such record. If a batch's records
    /// cannot be decoded, its base offset and max timestamp are returned.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        for seg in self.segments.values().filter(|s| s.max_ts >= ts) {
            let i = seg.time.partition_point(|&(t, _)| t <= ts);
            let mut pos = if i == 0 {
                0
            } else {
                seg.index_lookup(seg.base + i64::from(seg.time[i - 1].1))
            };
            while let Some(h) = self.header_at(seg, pos)? {
                let size = h.total_size().unwrap_or(0);
                if h.max_timestamp >= ts {
                    let path = self.path(seg.base, LOG_SUFFIX);
                    let mut buf = vec![0u8; size];
                    seg.log.read_at(&mut buf, pos).map_err(io_err(&path))?;
                    match batch::find_record(&buf, |r| r.timestamp >= ts) {
                        Ok(Some(r)) => return Ok(Some((r.offset, r.timestamp))),
                        Ok(None) => {}
                        Err(_) => return Ok(Some((h.base_offset, h.max_timestamp))),
                    }
                }
                pos += size as u64;
            }
        }
        Ok(None)
    }

    /// (max timestamp, offset of the first record carrying it) over the whole log, for
    /// ListOffsets -3. None if no batch has a timestamp.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments.values().filter(|s| s.max_ts >= 0).fold(
            None,
            |best: Option<(i64, i64)>, s| match best {
                Some((t, _)) if t >= s.max_ts => best,
                _ => Some((s.max_ts, s.max_ts_offset)),
            },
        )
    }

    /// Group commit support: returns what must be fsynced to make everything appended so far
    /// durable, WITHOUT doing it, so the caller can fsync outside the partition lock while
    /// appends continue. Then call `complete_sync(point)` under the lock.
    pub fn sync_point(&self) -> SyncPoint {
        self.sync_point_inner(false)
    }

    fn sync_point_inner(&self, force_dir: bool) -> SyncPoint {
        let mut files: Vec<Arc<dyn StorageFile>> =
            self.pending.iter().map(|(_, f)| f.clone()).collect();
        if self.log_end > self.high_watermark || !files.is_empty() {
            files.push(self.active().log.clone());
        }
        SyncPoint {
            end_offset: self.log_end,
            files,
            sync_dir: force_dir
                || self.dir_dirty.is_some()
                || self.shared.parent_unsynced.load(Ordering::SeqCst),
            recovery_point: self.pending_recovery,
            generation: self.generation,
            shared: self.shared.clone(),
            done: AtomicBool::new(false),
        }
    }

    /// Advances the high watermark to `point.end_offset` if the point was successfully fsynced
    /// (a point from another log or not fsynced is ignored), and forgets what it covered.
    pub fn complete_sync(&mut self, point: &SyncPoint) {
        if !point.done.load(Ordering::SeqCst) || !Arc::ptr_eq(&point.shared, &self.shared) {
            return;
        }
        self.high_watermark = self.high_watermark.max(point.end_offset.min(self.log_end));
        let hw = self.high_watermark;
        self.unstable.retain(|&(_, marker)| marker >= hw);
        self.pending.retain(|(g, _)| *g > point.generation);
        if self.dir_dirty.is_some_and(|g| g <= point.generation) {
            self.dir_dirty = None;
        }
        if self
            .pending_recovery
            .is_some_and(|r| Some(r) <= point.recovery_point)
        {
            self.pending_recovery = None;
        }
    }

    /// Convenience: `sync_point` + `fsync` + `complete_sync`.
    pub fn sync(&mut self) -> Result<(), LogError> {
        let point = self.sync_point();
        point.fsync()?;
        self.complete_sync(&point);
        Ok(())
    }

    /// Deletes whole segments past retention (never the active one): the oldest segments whose
    /// largest timestamp is older than `retention_ms` (segments without timestamps are kept),
    /// and the oldest segments while the log exceeds `retention_bytes`. Writes a producer-state
    /// snapshot at the first remaining segment and persists the new log start offset (both
    /// fsynced) before deleting, then fsyncs the directory. Returns the number of segments
    /// deleted. Aborted-transaction index files go with their segments.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        if !self.config.cleanup_policy.deletes() {
            return Ok(0);
        }
        let segs: Vec<(i64, u64, i64)> = self
            .segments
            .values()
            .map(|s| (s.base, s.size, s.max_ts))
            .collect();
        // Never the active segment, and only segments wholly below the high watermark, so that
        // data is never deleted before it is durable (and log_start <= high_watermark).
        let below_hw = self
            .segments
            .values()
            .take_while(|s| s.next_offset <= self.high_watermark)
            .count();
        let deletable = segs.len().saturating_sub(1).min(below_hw);
        let mut by_time = 0;
        if let Some(ms) = self.config.retention_ms {
            while by_time < deletable
                && segs[by_time].2 >= 0
                && now_ms.saturating_sub(segs[by_time].2) > ms
            {
                by_time += 1;
            }
        }
        let mut by_size = 0;
        if let Some(limit) = self.config.retention_bytes {
            let total: u64 = segs.iter().map(|s| s.1).sum();
            let mut excess = total.saturating_sub(limit);
            while by_size < deletable && segs[by_size].1 <= excess {
                excess -= segs[by_size].1;
                by_size += 1;
            }
        }
        let count = by_time.max(by_size);
        if count == 0 {
            return Ok(0);
        }
        let new_start = segs[count].0;
        let drop: Vec<i64> = segs[..count].iter().map(|s| s.0).collect();
        self.advance_start(new_start, &drop).map(|()| count)
    }

    /// Moves the log start offset forward to `offset` (Kafka's DeleteRecords): records below it
    /// are no longer readable, and segments wholly below it are deleted. `offset` may lie
    /// inside a segment. Returns the new log start offset (unchanged when `offset` is not
    /// above it). `offset` must not pass the high watermark: only durable records may go.
    ///
    /// Durability: a producer-state snapshot at the first remaining segment (if segments go),
    /// then the `log-start-offset` checkpoint, are written (tmp + fsync + rename + directory
    /// fsync) before anything is deleted, so after a crash the log starts at the new offset
    /// or, if the checkpoint did not land, nothing was deleted. The last stable offset never
    /// falls below the new log start.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        if offset > self.high_watermark || offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: self.log_start,
                end: self.high_watermark,
            });
        }
        if offset <= self.log_start {
            return Ok(self.log_start);
        }
        // Every sealed segment that ends at or below the new start; never the active one.
        let active = self.active().base;
        let drop: Vec<i64> = self
            .segments
            .values()
            .filter(|s| s.base != active && s.next_offset <= offset)
            .map(|s| s.base)
            .collect();
        self.advance_start(offset, &drop)?;
        Ok(self.log_start)
    }

    /// Makes `new_start` the durable log start, then deletes the segments `drop` (all below
    /// it) and the producer snapshots no longer needed. Poisons the log on failure.
    fn advance_start(&mut self, new_start: i64, drop: &[i64]) -> Result<(), LogError> {
        self.begin_write()?;
        // Recovery replays producer state from a snapshot, so one must be durable at the base
        // of the first segment that stays before the segments below it go (they would take
        // the open transactions and sequences they hold with them).
        if let Some(first_kept) = self.segments.keys().find(|b| !drop.contains(b)).copied()
            && !drop.is_empty()
        {
            let res = self.state_at(first_kept).and_then(|st| {
                let name = format::file_name(first_kept, SNAPSHOT_SUFFIX);
                let bytes = format::encode_snapshot(first_kept, &st);
                write_atomic(self.storage(), self.dir(), &name, &bytes)
            });
            if let Err(e) = res {
                return self.shared.poison(e);
            }
            self.snapshots.insert(first_kept);
        }
        let ckpt = format::encode_checkpoint(format::MAGIC_LOG_START, new_start);
        if let Err(e) = write_atomic(self.storage(), self.dir(), LOG_START_FILE, &ckpt) {
            return self.shared.poison(e);
        }
        self.log_start = new_start;
        let res = (|| {
            for &base in drop {
                self.segments.remove(&base);
                self.remove_segment_files(base)?;
            }
            // Snapshots of deleted segments only: the segment holding `new_start` (it may lie
            // inside one) still needs the snapshot at its base for recovery.
            let first_kept = self.segments.keys().next().copied().unwrap_or(new_start);
            let below: Vec<i64> = self
                .snapshots
                .range(..first_kept.min(new_start))
                .copied()
                .collect();
            let rp = *self.shared.recovery_written.lock();
            for s in below.into_iter().filter(|&s| s < rp) {
                self.remove_snapshot(s)?;
            }
            self.prune_snapshots()?;
            self.sync_dir()
        })();
        match res {
            Ok(()) => Ok(()),
            Err(e) => self.shared.poison(e),
        }
    }

    /// Writes the active segment's final time index entry, fsyncs everything, writes a
    /// producer-state snapshot at the log end and then the clean-shutdown marker (each fsynced,
    /// directory included). A poisoned log is not marked clean.
    pub fn close(mut self) -> Result<(), LogError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        let res = self.close_inner();
        if res.is_err() {
            self.shared.poisoned.store(true, Ordering::SeqCst);
        }
        res
    }

    fn close_inner(&mut self) -> Result<(), LogError> {
        if self.clean_marker {
            // Nothing was written since a clean open: the marker, the snapshot at the end and
            // the sealed indexes on disk are still those of the last clean close.
            return Ok(());
        }
        let base = self.active().base;
        let dir = self.shared.dir.clone();
        let seg = self.segments.get_mut(&base).expect("active segment exists");
        seal_time_index(seg, &dir)?;
        self.generation += 1;
        for f in [&seg.index_file, &seg.time_file] {
            self.pending.push((self.generation, f.clone()));
        }
        self.sync()?;
        let end = self.log_end;
        let snap = format::encode_snapshot(end, &self.producers);
        write_atomic(
            self.storage(),
            self.dir(),
            &format::file_name(end, SNAPSHOT_SUFFIX),
            &snap,
        )?;
        let marker = format::encode_checkpoint(format::MAGIC_CLEAN, end);
        write_atomic(self.storage(), self.dir(), CLEAN_FILE, &marker)
    }

    /// First half of closing many logs with one flush (see [`Storage::sync_all`]): writes
    /// what [`close`](Self::close) writes before its marker (the active segment's index
    /// entries, the producer-state snapshot at the end), with no fsync. Returns false when
    /// there is nothing to close (nothing written since a clean open: the marker on disk is
    /// still true). Then the caller makes everything durable with `sync_all`, calls
    /// [`finish_close`](Self::finish_close) on every log that returned true, and calls
    /// `sync_all` again. *Invariant:* a marker is written only after a flush that covered
    /// every write of its log, so a crash at any point leaves either no valid marker (the log
    /// is recovered) or a true one. A failure poisons the log (no marker is ever written).
    pub fn prepare_close(&mut self) -> Result<bool, LogError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        if self.clean_marker {
            return Ok(false);
        }
        let res = (|| {
            // The caller's flush cannot report an fsync the storage already made and saw
            // fail (closing a cached handle): such a file must not get a marker.
            let active = self.active();
            let files = [&active.log, &active.index_file, &active.time_file];
            for f in self.pending.iter().map(|(_, f)| f).chain(files) {
                if let Some(e) = f.sync_error() {
                    return Err(LogError::io(self.dir(), e));
                }
            }
            let base = self.active().base;
            let dir = self.shared.dir.clone();
            let seg = self.segments.get_mut(&base).expect("active segment exists");
            seal_time_index(seg, &dir)?;
            let end = self.log_end;
            let name = format::file_name(end, SNAPSHOT_SUFFIX);
            let p = dir.join(&name);
            // A torn snapshot does not decode and is ignored by `open`, and the marker that
            // would make `open` look for it comes only after the flush: no tmp file needed.
            let f = self.storage().open(&p, true).map_err(io_err(&p))?;
            f.truncate(0).map_err(io_err(&p))?;
            f.append(&format::encode_snapshot(end, &self.producers))
                .map_err(io_err(&p))?;
            self.snapshots.insert(end);
            Ok(())
        })();
        match res {
            Ok(()) => Ok(true),
            Err(e) => self.shared.poison(e),
        }
    }

    /// Second half of a batched close, after a `sync_all` that followed
    /// [`prepare_close`](Self::prepare_close): writes the `clean-shutdown` marker (tmp +
    /// rename, no fsync; the caller's next `sync_all` makes it durable).
    pub fn finish_close(self) -> Result<(), LogError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        let tmp = self.dir().join(format!("{CLEAN_FILE}{TMP_SUFFIX}"));
        let path = self.dir().join(CLEAN_FILE);
        let res = (|| {
            let f = self.storage().open(&tmp, true).map_err(io_err(&tmp))?;
            f.truncate(0).map_err(io_err(&tmp))?;
            f.append(&format::encode_checkpoint(
                format::MAGIC_CLEAN,
                self.log_end,
            ))
            .map_err(io_err(&tmp))?;
            self.storage().rename(&tmp, &path).map_err(io_err(&path))
        })();
        if res.is_err() {
            self.shared.poisoned.store(true, Ordering::SeqCst);
        }
        res
    }

    /// Deletes the partition's directory (DeleteTopics) and fsyncs its parent.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir().to_path_buf();
        self.storage().remove_dir_all(&dir).map_err(io_err(&dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.storage().sync_dir(parent).map_err(io_err(parent))?;
        }
        Ok(())
    }
}

/// Completes or rolls back an interrupted cleaner swap (see the FORMAT section): with a valid
/// `clean-swap` manifest, the pass was committed, so for each group (base, end) every segment
/// with a base in (base, end) is deleted and each `{base}{suffix}.cleaned` still present is
/// renamed over `{base}{suffix}`; then the manifest is removed. Without one, every `.cleaned`
/// file is deleted (the old segments are intact). Each step is idempotent, so a crash during
/// recovery is recovered the same way. Returns whether a committed swap was completed.
fn finish_swap(storage: &dyn Storage, dir: &Path) -> Result<bool, LogError> {
    if !storage.exists(dir).map_err(io_err(dir))? {
        return Ok(false);
    }
    let swap_path = dir.join(SWAP_FILE);
    let manifest = read_small(storage, &swap_path, 1 << 24)?.and_then(|b| format::decode_swap(&b));
    let names = storage.list_dir(dir).map_err(io_err(dir))?;
    let mut changed = false;
    if let Some(groups) = &manifest {
        for &(base, end) in groups {
            for n in &names {
                let inside = [LOG_SUFFIX, INDEX_SUFFIX, TIME_SUFFIX, TXN_SUFFIX]
                    .iter()
                    .filter_map(|s| format::parse_name(n, s))
                    .any(|b| b > base && b < end);
                if inside {
                    let p = dir.join(n);
                    storage.remove_file(&p).map_err(io_err(&p))?;
                    changed = true;
                }
            }
            for suffix in [INDEX_SUFFIX, TIME_SUFFIX, TXN_SUFFIX, LOG_SUFFIX] {
                let to = dir.join(format::file_name(base, suffix));
                let from = dir.join(format::file_name(
                    base,
                    &format!("{suffix}{CLEANED_SUFFIX}"),
                ));
                if storage.exists(&from).map_err(io_err(&from))? {
                    storage.rename(&from, &to).map_err(io_err(&to))?;
                    changed = true;
                }
            }
        }
        storage.sync_dir(dir).map_err(io_err(dir))?;
    }
    for n in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
        let p = dir.join(n);
        if storage.exists(&p).map_err(io_err(&p))? {
            storage.remove_file(&p).map_err(io_err(&p))?;
            changed = true;
        }
    }
    if storage.exists(&swap_path).map_err(io_err(&swap_path))? {
        storage
            .remove_file(&swap_path)
            .map_err(io_err(&swap_path))?;
        changed = true;
    }
    if changed {
        storage.sync_dir(dir).map_err(io_err(dir))?;
    }
    Ok(manifest.is_some())
}

/// What [`PartitionLog::install_cleaned`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallOutcome {
    /// Groups swapped in.
    pub installed: usize,
    /// Groups dropped because retention deleted some of their segments meanwhile.
    pub skipped: usize,
    /// Bytes of the replaced segments and of their replacements.
    pub bytes_before: u64,
    /// Bytes of the cleaned segments swapped in.
    pub bytes_after: u64,
}

impl PartitionLog {
    /// Plans a cleaning pass if the log is compacted and one is due (cheap; call under the
    /// partition lock): the cleanable segments are the sealed ones from the log start that are
    /// wholly below the durable recovery point, the high watermark and the last stable offset
    /// (an open transaction may still abort), and whose largest
    /// timestamp is at least `min_compaction_lag_ms` old (stopping at the first that is not).
    /// Due when uncleaned bytes / cleanable bytes >= `min_cleanable_dirty_ratio`, when the
    /// oldest uncleaned batch is older than `max_compaction_lag_ms`, or when a tombstone's
    /// delete horizon kept by the previous pass has passed (that horizon is remembered in
    /// memory only: after a restart, expired tombstones go with the next pass due for another
    /// reason). None while another pass of this log is running (its plan or result is
    /// alive), or if nothing is cleanable.
    ///
    /// Locking contract: call this and [`install_cleaned`](Self::install_cleaned) under the
    /// partition lock, and [`CleanPlan::run`] without it (on a blocking thread). Appends,
    /// reads, syncs and retention may run between them. Finish or drop a pass before closing,
    /// deleting or reopening the log: the `.cleaned` file names are per log directory, and a
    /// second instance's pass would write the same files.
    pub fn cleaning_plan(&self, now_ms: i64) -> Option<CleanPlan> {
        self.plan(now_ms, false)
    }

    /// [`cleaning_plan`](Self::cleaning_plan) ignoring the dirty ratio and lags' "due" tests
    /// (cleanability rules still apply): for tests and operator commands.
    pub fn forced_cleaning_plan(&self, now_ms: i64) -> Option<CleanPlan> {
        self.plan(now_ms, true)
    }

    /// Uncleaned bytes / cleanable bytes, as the plan would compute it (0 if nothing is
    /// cleanable).
    pub fn dirty_ratio(&self, now_ms: i64) -> f64 {
        let (segs, first_dirty) = self.cleanable(now_ms);
        let total: u64 = segs.iter().map(|s| s.size).sum();
        let dirty: u64 = segs
            .iter()
            .filter(|s| s.next_offset > first_dirty)
            .map(|s| s.size)
            .sum();
        if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        }
    }

    fn cleanable(&self, now_ms: i64) -> (Vec<&Segment>, i64) {
        let rp = *self.shared.recovery_written.lock();
        let lag = self.config.min_compaction_lag_ms;
        // Never at or past the last stable offset (Kafka): an open transaction's records may
        // still be aborted.
        let lso = self.last_stable_offset();
        let n = self.segments.len().saturating_sub(1);
        let segs: Vec<&Segment> = self
            .segments
            .values()
            .take(n)
            .take_while(|s| {
                s.next_offset <= rp
                    && s.next_offset <= self.high_watermark
                    && s.next_offset <= lso
                    && (s.max_ts < 0 || now_ms.saturating_sub(s.max_ts) >= lag)
            })
            .collect();
        let end = segs.last().map_or(self.log_start, |s| s.next_offset);
        (segs, self.clean_offset.clamp(self.log_start, end))
    }

    fn plan(&self, now_ms: i64, force: bool) -> Option<CleanPlan> {
        if !self.config.cleanup_policy.compacts() || self.shared.poisoned.load(Ordering::SeqCst) {
            return None;
        }
        let (segs, first_dirty) = self.cleanable(now_ms);
        if segs.is_empty() {
            return None;
        }
        let total: u64 = segs.iter().map(|s| s.size).sum();
        let dirty_segs: Vec<&&Segment> = segs
            .iter()
            .filter(|s| s.next_offset > first_dirty)
            .collect();
        let dirty: u64 = dirty_segs.iter().map(|s| s.size).sum();
        let ratio = if total == 0 {
            0.0
        } else {
            dirty as f64 / total as f64
        };
        let lagging = dirty_segs.first().is_some_and(|s| {
            let ts = self
                .header_at(s, 0)
                .ok()
                .flatten()
                .map_or(-1, |h| h.max_timestamp);
            ts >= 0 && now_ms.saturating_sub(ts) > self.config.max_compaction_lag_ms
        });
        let reason = if force {
            CleanReason::Forced
        } else if dirty > 0 && ratio >= self.config.min_cleanable_dirty_ratio {
            CleanReason::DirtyRatio
        } else if dirty > 0 && lagging {
            CleanReason::MaxCompactionLag
        } else if self.next_horizon.is_some_and(|h| h <= now_ms) {
            CleanReason::DeleteHorizon
        } else {
            return None;
        };
        if self
            .shared
            .cleaning
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return None;
        }
        let guard = CleaningGuard(self.shared.cleaning.clone());
        let retain = self
            .producers
            .producers
            .values()
            .flat_map(|e| e.batches.iter().map(|m| m.first_offset))
            .collect();
        // Every aborted transaction that may have data in the cleanable segments (its marker
        // may lie in any later segment); all of them ended below the last stable offset.
        let clean_end = segs.last().map_or(self.log_start, |s| s.next_offset);
        let aborted = self
            .segments
            .values()
            .flat_map(|s| s.aborted.iter())
            .filter(|e| e.first_offset < clean_end)
            .map(|e| ((e.producer_id, e.first_offset), e.last_offset))
            .collect();
        Some(CleanPlan {
            storage: self.shared.storage.clone(),
            dir: self.shared.dir.clone(),
            segments: segs
                .iter()
                .map(|s| PlanSegment {
                    base: s.base,
                    end: s.next_offset,
                    size: s.size,
                    log: s.log.clone(),
                    aborted: s.aborted.clone(),
                })
                .collect(),
            first_dirty,
            retain,
            aborted,
            now_ms,
            delete_retention_ms: self.config.delete_retention_ms,
            segment_bytes: self.config.segment_bytes,
            index_interval: self.config.index_interval_bytes,
            guard,
            reason,
            dirty_bytes: dirty,
            cleanable_bytes: total,
        })
    }

    /// Swaps a pass's cleaned segments in (call under the partition lock; cheap: renames and a
    /// few small fsynced writes). A group whose segments are no longer all present (retention
    /// deleted some) is dropped and its files deleted. The swap: write the `clean-swap`
    /// manifest (tmp, fsync, rename, directory fsync: the commit point), delete the replaced
    /// segments, rename the `.cleaned` files over the group's base segment, fsync the
    /// directory, write `cleaner-offset` (tmp, fsync, rename), remove the manifest and fsync
    /// the directory. A failure poisons the log; reopening completes the swap.
    pub fn install_cleaned(&mut self, result: CleanResult) -> Result<InstallOutcome, LogError> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(LogError::Poisoned);
        }
        if result.dir != self.shared.dir {
            return Err(LogError::Corrupt {
                path: result.dir.clone(),
                offset: 0,
                reason: "cleaning result belongs to another log".into(),
            });
        }
        let res = self.install_inner(result);
        if res.is_err() {
            self.shared.poisoned.store(true, Ordering::SeqCst);
        }
        res
    }

    fn install_inner(&mut self, result: CleanResult) -> Result<InstallOutcome, LogError> {
        self.begin_write()?;
        let CleanResult {
            groups,
            clean_end,
            next_horizon,
            _guard,
            ..
        } = result;
        let mut outcome = InstallOutcome::default();
        let mut valid = Vec::new();
        for g in groups {
            let present: Vec<(i64, u64)> = self
                .segments
                .range(g.seg.base..g.end)
                .map(|(&b, s)| (b, s.size))
                .collect();
            let last_ok = self
                .segments
                .range(g.end..)
                .next()
                .is_some_and(|(&b, _)| b == g.end);
            if present == g.sources && last_ok {
                valid.push(g);
            } else {
                outcome.skipped += 1;
                for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_SUFFIX, TXN_SUFFIX] {
                    let p = self.path(g.seg.base, &format!("{suffix}{CLEANED_SUFFIX}"));
                    if self.storage().exists(&p).map_err(io_err(&p))? {
                        self.storage().remove_file(&p).map_err(io_err(&p))?;
                    }
                }
            }
        }
        if valid.is_empty() {
            self.sync_dir()?;
            return Ok(outcome);
        }
        let manifest: Vec<(i64, i64)> = valid.iter().map(|g| (g.seg.base, g.end)).collect();
        write_atomic(
            self.storage(),
            self.dir(),
            SWAP_FILE,
            &format::encode_swap(&manifest),
        )?;
        for g in &valid {
            for &(b, size) in &g.sources {
                outcome.bytes_before += size;
                if b != g.seg.base {
                    self.remove_segment_files(b)?;
                }
            }
            for suffix in [INDEX_SUFFIX, TIME_SUFFIX, TXN_SUFFIX, LOG_SUFFIX] {
                if suffix == TXN_SUFFIX && g.seg.txn_file.is_none() {
                    continue;
                }
                let from = self.path(g.seg.base, &format!("{suffix}{CLEANED_SUFFIX}"));
                let to = self.path(g.seg.base, suffix);
                self.storage().rename(&from, &to).map_err(io_err(&to))?;
            }
        }
        self.sync_dir()?;
        for mut g in valid {
            // The cleaned segment's aborted transactions (the union of its sources', in marker
            // order) were written to `.txnindex.cleaned` by the pass, from the plan.
            for &(b, _) in &g.sources {
                self.segments.remove(&b);
            }
            // The pass's handles name the `.cleaned` files, which are gone now: reopen the
            // files under their final names (a storage may reopen a file by name).
            g.seg.log = self.reopen(g.seg.base, LOG_SUFFIX)?;
            g.seg.index_file = self.reopen(g.seg.base, INDEX_SUFFIX)?;
            g.seg.time_file = self.reopen(g.seg.base, TIME_SUFFIX)?;
            if g.seg.txn_file.is_some() {
                g.seg.txn_file = Some(self.reopen(g.seg.base, TXN_SUFFIX)?);
            }
            outcome.bytes_after += g.seg.size;
            outcome.installed += 1;
            self.segments.insert(g.seg.base, g.seg);
        }
        // Offsets below the mapped end are clean unless a group was skipped before them.
        self.clean_offset = self.clean_offset.max(clean_end);
        self.next_horizon = next_horizon;
        let ckpt = format::encode_checkpoint(format::MAGIC_CLEANER, self.clean_offset);
        write_atomic(self.storage(), self.dir(), CLEANER_OFFSET_FILE, &ckpt)?;
        let ckpt = format::encode_checkpoint(
            format::MAGIC_HORIZON,
            self.next_horizon.unwrap_or(NO_HORIZON),
        );
        write_atomic(self.storage(), self.dir(), HORIZON_FILE, &ckpt)?;
        let p = self.dir().join(SWAP_FILE);
        self.storage().remove_file(&p).map_err(io_err(&p))?;
        self.sync_dir()?;
        Ok(outcome)
    }
}

/// The index entry of a transaction that `state` (just after its marker) saw abort: the last
/// stable offset is the first offset of the oldest other open transaction, else the offset
/// after the marker (Kafka's `ProducerStateManager.lastStableOffset(completedTxn)`).
fn aborted_entry(state: &ProducerState, done: &CompletedTxn) -> AbortedEntry {
    AbortedEntry {
        producer_id: done.producer_id,
        first_offset: done.first_offset,
        last_offset: done.last_offset,
        last_stable_offset: state.first_open_txn().unwrap_or(done.last_offset + 1),
    }
}

/// Where a batch's maximum timestamp is, for the time index.
#[derive(Debug, Clone, Copy)]
enum MaxTimestampAt {
    /// Decode the records to find the first one carrying it.
    Find,
    /// At this offset delta (found while validating the records).
    Delta(i32),
    /// No record carries it: index the batch's base offset.
    Base,
}

/// Updates a segment's in-memory state (size, offsets, maximum timestamp, index entries due)
/// for a batch written at `pos`.
#[allow(clippy::too_many_arguments)]
fn note_batch(
    seg: &mut Segment,
    h: &BatchHeader,
    bytes: &[u8],
    max_ts_at: MaxTimestampAt,
    pos: u64,
    size: u64,
    interval: u64,
    now_ms: i64,
) {
    if seg.size == 0 && seg.roll_ref_ms.is_none() {
        seg.roll_ref_ms = Some(if h.max_timestamp >= 0 {
            h.max_timestamp
        } else {
            now_ms
        });
    }
    if h.max_timestamp > seg.max_ts {
        // Offset of the first record carrying the new maximum; the batch base if its records
        // cannot be decoded.
        let exact = match max_ts_at {
            MaxTimestampAt::Delta(d) => h.base_offset.saturating_add(i64::from(d)),
            MaxTimestampAt::Base => h.base_offset,
            MaxTimestampAt::Find => batch::find_record(bytes, |r| r.timestamp >= h.max_timestamp)
                .ok()
                .flatten()
                .map_or(h.base_offset, |r| r.offset),
        };
        seg.max_ts = h.max_timestamp;
        seg.max_ts_offset = exact;
    }
    if pos > 0 && seg.bytes_since_index >= interval {
        let e = (seg.rel(h.base_offset), pos as u32);
        seg.index.push(e);
        seg.bytes_since_index = 0;
        if seg.time.last().is_none_or(|t| t.0 < seg.max_ts) {
            let t = (seg.max_ts, seg.rel(seg.max_ts_offset));
            seg.time.push(t);
        }
    }
    seg.bytes_since_index += size;
    seg.size = pos + size;
    seg.next_offset = h.last_offset() + 1;
}

/// Writes the index entries not yet in the index files.
fn flush_indexes(seg: &mut Segment, dir: &Path) -> Result<(), LogError> {
    if seg.index_on_disk < seg.index.len() {
        let p = dir.join(format::file_name(seg.base, INDEX_SUFFIX));
        seg.index_file
            .append(&format::encode_index(&seg.index[seg.index_on_disk..]))
            .map_err(io_err(&p))?;
        seg.index_on_disk = seg.index.len();
    }
    if seg.time_on_disk < seg.time.len() {
        let p = dir.join(format::file_name(seg.base, TIME_SUFFIX));
        seg.time_file
            .append(&format::encode_time_index(&seg.time[seg.time_on_disk..]))
            .map_err(io_err(&p))?;
        seg.time_on_disk = seg.time.len();
    }
    Ok(())
}

/// Appends the segment's maximum timestamp to its time index if the last entry lacks it (so
/// that the last entry of a sealed or cleanly closed segment is its maximum) and writes all
/// index entries still in memory.
fn seal_time_index(seg: &mut Segment, dir: &Path) -> Result<(), LogError> {
    if seg.max_ts >= 0 && seg.time.last().is_none_or(|t| t.0 < seg.max_ts) {
        let t = (seg.max_ts, seg.rel(seg.max_ts_offset));
        seg.time.push(t);
    }
    flush_indexes(seg, dir)
}

#[cfg(test)]
#[path = "partition_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "txn_tests.rs"]
mod txn_tests;
