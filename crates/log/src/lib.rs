//! Waterline's durable segmented partition log: record batches, offset and time indexes,
//! recovery.
//!
//! A [`PartitionLog`] is one directory holding Kafka-style segments. Batches are stored exactly
//! as produced (record batch v2, compressed stays compressed) except that the first 8 bytes are
//! rewritten with the assigned base offset; the CRC-32C does not cover them, so stored batches
//! stay valid. All file access goes through [`Storage`], implemented by [`FsStorage`] (real
//! disk) and [`MemStorage`] (in-memory disk that can simulate a power loss). Times are
//! milliseconds since the Unix epoch passed in by the caller: the log never reads the clock.
//!
//! # Durability
//!
//! Nothing fsyncs implicitly on append. The broker drives group commit:
//! [`PartitionLog::sync_point`] lists what must be fsynced (under the partition lock),
//! [`SyncPoint::fsync`] does it (outside the lock, while appends continue), and
//! [`PartitionLog::complete_sync`] advances the high watermark (under the lock). The high
//! watermark is the durable end: every offset below it has been fsynced.
//!
//! | write path | writes | fsyncs |
//! |---|---|---|
//! | `append` | the batch into the active `.log` (index entries due every `index_interval_bytes` stay in memory) | nothing |
//! | `append_marker` | the control batch into the active `.log`; for an ABORT that ended a transaction, one entry appended to the active segment's `.txnindex` (created with its first entry) | nothing; the `.txnindex` (and the directory if it was created) is queued for the next sync point |
//! | roll (inside `append`) | the sealed segment's `.index`/`.timeindex` entries (with a final maximum-timestamp entry), `{next}.snapshot`, three new empty files | nothing; the sealed segment's files, the snapshot and the directory are queued for the next sync point |
//! | `SyncPoint::fsync` | `recovery-point` (after a roll) | queued files (sealed segments' files, snapshots, any `.txnindex` written to), the active `.log`, the directory if files were created, then `recovery-point` via tmp + fsync + rename + directory fsync |
//! | `enforce_retention`, `delete_records_before` | `{first kept base}.snapshot` (if segments go), `log-start-offset`, deletions | the snapshot, then `log-start-offset`, each via tmp + fsync + rename + directory fsync *before* deleting, then the directory |
//! | `open` | recovery truncation and index rebuilds, `recovery-point`, marker removal if it changed anything | everything it changed and the directory; nothing when it changed nothing (every segment trusted) |
//! | `open` of a new directory | the directory, the first segment's empty files | nothing: the directory (and its entry in the parent) is queued for the first sync point, so nothing written to the log is durable before its name is |
//! | first write after a clean `open` (`append`, `append_marker`, retention, DeleteRecords, `install_cleaned`) | with `CleanMarker::PerLog`: removes `clean-shutdown`; with `CleanMarker::Vouched`: nothing (the caller's record was removed durably before `open`) | PerLog: the directory, before the write; Vouched: nothing |
//! | `close` | the active segment's index entries, `{end}.snapshot`, `clean-shutdown` | everything, each small file via tmp + fsync + rename + directory fsync; nothing at all when nothing was written since a clean `open` (the marker on disk is still true) |
//! | `prepare_close`, then the caller's `Storage::sync_all`, `finish_close`, `sync_all` (closing many logs: the broker's shutdown) | the active segment's index entries and `{end}.snapshot`; after the first flush, `clean-shutdown` via tmp + rename | nothing per log: the first whole-storage flush (`syncfs`) covers every write of every log before any marker exists, the second makes the markers durable; a log whose file had a failed fsync when its cached handle was closed gets no marker |
//! | `CleanPlan::run` (no lock) | `{base}.log.cleaned`, `.index.cleaned`, `.timeindex.cleaned`, and `.txnindex.cleaned` if the group has aborted transactions, per group | each cleaned file, then the directory |
//! | `install_cleaned` (lock) | `clean-swap`, removals, renames, `cleaner-offset`, `delete-horizon` | `clean-swap` via tmp + fsync + rename + directory fsync (the commit point), then removals and renames, the directory, `cleaner-offset` then `delete-horizon` via tmp + fsync + rename, removal of `clean-swap`, the directory |
//!
//! [`FsStorage`] opens files on demand through a bounded cache of handles (see its docs): a
//! handle with unsynced writes is fsynced before it is closed, and a failure there sticks to
//! the file, so the table above holds whatever the cache closes meanwhile. A `sync` of a file
//! that existed when the log opened it fsyncs it even without new writes (recovery trusts
//! bytes an earlier, killed process may have left unsynced in the page cache).
//!
//! A failed write or fsync poisons the log: every later write returns [`LogError::Poisoned`]
//! (a retried fsync can report success for data the kernel already dropped). Reopening runs
//! recovery. Running out of file descriptors does not poison: [`LogError::OutOfDescriptors`]
//! is returned when a handle could not be opened, before anything was written or fsynced,
//! and the appends, rolls, marker removals and sync points it can interrupt are repeatable.
//!
//! # Recovery
//!
//! `close` leaves a `clean-shutdown` marker. Opened with [`CleanMarker::Vouched`], a log trusts
//! its marker only if the caller's own clean-shutdown record was valid at start (the broker
//! writes one after closing every log and removes it before opening any), and its first write
//! leaves the now stale marker in place. With [`CleanMarker::PerLog`] ([`PartitionLog::open`]):
//! `open` leaves it in place while nothing is
//! written ([`PartitionLog::is_clean`]), and the first write removes it (and fsyncs the
//! directory) before writing anything, so a log that is opened and closed without writes costs
//! no fsync at either end and stays clean across a crash. With a valid marker, `open` trusts the segments: it loads the
//! indexes, bounds-checks them, and walks only the batch headers after the last offset index
//! entry of each segment to confirm the segment ends where expected; a failing check rebuilds
//! that segment by a full scan. Without it (unclean stop), segments whose base is below the
//! `recovery-point` (all of their files were fsynced before that checkpoint was written) are
//! trusted the same way, and every later segment is validated batch by batch: length bounds,
//! magic 2, CRC-32C, record framing, and dense offsets (each batch's base offset equals the
//! previous batch's last offset + 1). The log is truncated at the first invalid batch, later
//! segments are deleted, and the indexes of scanned segments are rebuilt from scratch.
//!
//! A trusted segment's `.txnindex` is loaded and each entry checked (CRC, version, offsets
//! inside the segment, marker offsets increasing). A bad entry in a trusted file is damage,
//! not a torn write: the file is truncated before it, the damage is listed by
//! [`PartitionLog::recovery_repairs`], and the index is rebuilt from that segment on. The
//! `.txnindex` of every scanned segment (and of every segment after a damaged one) is rebuilt
//! by replaying the log from a producer-state snapshot (below), rewritten whole (removed when
//! it has no entries) and fsynced with the rest of recovery's changes.
//!
//! Compaction: before anything else, `open` finishes or rolls back an interrupted cleaner swap
//! (see `clean-swap` below). Segments wholly below the recovery point (or the cleaner offset)
//! may have been cleaned, so for them the checks are relaxed exactly as far as compaction
//! needs: a batch's recordCount may be anything from 0 to lastOffsetDelta + 1 (records
//! removed, lastOffsetDelta kept), batches may skip offsets (offsets still strictly increase),
//! the first batch may start after the segment base and the last may end before the next
//! segment's base. CRC, magic, length and record framing are still checked; everywhere else
//! (the active segment and anything not yet durable) offsets must stay dense.
//!
//! Producer state (producer id -> epoch, the last 5 batches' sequences and offsets, the last
//! marker's coordinator epoch, the last timestamp, and the first offset of the open
//! transaction) is snapshotted at every roll and on clean close. `open` deletes snapshots
//! above the recovered log end and snapshots that do not decode (written at a roll and lost),
//! loads the newest snapshot at or below the first segment whose `.txnindex` is rebuilt (the
//! log end after a clean stop) and replays the batches after it (headers, plus the control
//! record of each marker); without a snapshot it replays from the first segment's base (a
//! transaction may have started before the log start, in the segment holding it).
//! *Invariant:* replay never needs a deleted segment: before deleting segments, retention and
//! DeleteRecords write (and fsync) a snapshot at the base of the first segment that stays, and
//! a snapshot is pruned only below a newer durable one at or below the recovery point.
//!
//! # Transactions
//!
//! A transactional data batch (attributes bit 4) from a producer with no open transaction in
//! this partition opens one at its base offset; [`PartitionLog::append_marker`] writes a
//! COMMIT or ABORT control batch and ends it (Kafka's `ProducerStateManager`). An aborted
//! transaction is recorded as (producer id, first offset, marker offset, last stable offset
//! after the marker) in the `.txnindex` of the segment holding its marker, and in memory, for
//! [`PartitionLog::aborted_transactions`] (Kafka's `TransactionIndex`).
//! *Invariant (LSO):* [`PartitionLog::last_stable_offset`] is the first offset of the oldest
//! transaction that is open or whose marker is not yet below the high watermark, else the high
//! watermark, and never below the log start: so LSO <= high watermark, and no offset below
//! the LSO belongs to a transaction whose outcome is not durable. After recovery it is
//! computed from the recovered log alone (the high watermark is the recovered end).
//! *Invariant (index):* every ABORT marker that ended a transaction has exactly one entry, in
//! its segment's `.txnindex`, in marker order; the file follows its segment through sync
//! points, retention, DeleteRecords, cleaning and deletion.
//! `append` refuses control batches: only `append_marker` writes them. The cleaner never
//! cleans at or past the last stable offset.
//!
//! # FORMAT
//!
//! All integers are big-endian. `{n}` is a 20-digit zero-padded decimal offset (Kafka naming).
//! Files in a partition directory:
//!
//! ## `{base}.log` — segment
//! Concatenated record batches v2, the first with base offset `base`, offsets dense (cleaned
//! segments: increasing, see Compaction). Per batch
//! (61-byte header, then records):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | baseOffset i64 (assigned by the log) |
//! | 8..12 | batchLength i32 (bytes after this field; total size = 12 + batchLength, >= 61) |
//! | 12..16 | partitionLeaderEpoch i32 (as produced) |
//! | 16 | magic i8 = 2 |
//! | 17..21 | crc u32: CRC-32C (Castagnoli) of bytes 21..end |
//! | 21..23 | attributes i16: bits 0-2 compression (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), bit 3 timestamp type, bit 4 transactional, bit 5 control, bit 6 delete horizon (baseTimestamp is the delete horizon; set only by the cleaner) |
//! | 23..27 | lastOffsetDelta i32 = recordCount - 1 (kept when the cleaner removes records) |
//! | 27..35 | baseTimestamp i64 |
//! | 35..43 | maxTimestamp i64 |
//! | 43..51 | producerId i64 (-1 if none) |
//! | 51..53 | producerEpoch i16 |
//! | 53..57 | baseSequence i32 |
//! | 57..61 | recordCount i32 (>= 1; in cleaned segments 0..=lastOffsetDelta + 1) |
//! | 61.. | records, compressed as a whole if the codec is not 0; each record: length varint, attributes i8, timestampDelta varlong, offsetDelta varint, key (varint length, -1 = null), value (same), headers (varint count, then key/value pairs) |
//!
//! A segment never exceeds `segment_bytes` unless it holds a single batch, and never 4 GiB;
//! offsets within it stay within `base + u32::MAX`.
//!
//! ## `{base}.index` — sparse offset index
//! 8-byte entries: relative offset u32 (`offset - base`, > 0) | position u32 (byte position of
//! that batch's start in `{base}.log`). There is an entry for the first batch that starts
//! after at least `index_interval_bytes` since the previous entry; the segment start (0, 0) is
//! implicit. Both fields strictly increase. Lookup: last entry with relative offset <= target,
//! then scan batch headers forward. The active segment's entries are kept in memory and
//! written when it is sealed or the log is closed (recovery rebuilds them after a crash).
//!
//! ## `{base}.timeindex` — sparse time index
//! 12-byte entries: timestamp i64 | relative offset u32. The timestamp is the segment's largest
//! record timestamp so far and the offset is the first record carrying it; there is one
//! alongside each offset index entry at which the maximum grew, and one more when the segment
//! is sealed or the log closed, so the last entry of a sealed segment is its maximum. Timestamps strictly
//! increase. Lookup for target t: last entry with timestamp <= t; every record before its
//! offset is older than t, so the scan starts at that offset's batch.
//!
//! ## `{base}.txnindex` — aborted transactions whose marker is in `{base}.log`
//! Created with the segment's first entry (absent = none). 38-byte entries, in marker order:
//!
//! | bytes | field |
//! |---|---|
//! | 0..2 | version u16 = 0 |
//! | 2..10 | producerId i64 (>= 0) |
//! | 10..18 | firstOffset i64: the transaction's first batch in this partition |
//! | 18..26 | lastOffset i64: the ABORT marker's offset (> firstOffset; strictly increasing, inside the segment) |
//! | 26..34 | lastStableOffset i64: the LSO right after the marker, ignoring the high watermark (first offset of the oldest other open transaction, else lastOffset + 1) |
//! | 34..38 | CRC-32C u32 of bytes 0..34 |
//!
//! A lookup for [from, to) reads the segments from the one holding `from` on, takes the
//! entries with lastOffset >= from and firstOffset < to, and stops after an entry whose
//! lastStableOffset >= to (no later abort can start below `to`). An entry whose CRC, version
//! or offsets fail, or a torn tail, ends the valid entries (see Recovery).
//!
//! ## `{n}.snapshot` — producer state as of offset n (all batches below n applied)
//! `"WLPS"` | version u32 = 2 | n i64 | producer count u32 | per producer: producerId i64 |
//! epoch i16 | coordinatorEpoch i32 (of its last marker, -1 if none) | lastTimestamp i64 (max
//! timestamp of its last batch, -1 if unknown) | txnFirstOffset i64 (first offset of its open
//! transaction, < n; -1 if none) | batch count u8 (<= 5) | per batch (oldest first):
//! firstSequence i32 | lastSequence i32 | firstOffset i64 | lastOffset i64 | then CRC-32C u32
//! of everything before. Version 1 (still read) lacks the three transaction fields: its
//! producers have no open transaction (the broker refused transactional batches then).
//!
//! ## `log-start-offset`, `recovery-point`, `clean-shutdown` — 20-byte checkpoints
//! magic (4 bytes: `"WLLS"`, `"WLRP"`, `"WLCS"` respectively) | version u32 = 1 | value i64 |
//! CRC-32C u32 of the first 16 bytes. Values: the log start offset; the base of the first
//! segment that is not known to be fully durable; the log end offset at clean close. A file
//! that fails its checks is ignored (treated as absent).
//!
//! ## Compaction
//!
//! With `cleanup.policy` containing `compact`, [`PartitionLog::cleaning_plan`] /
//! [`CleanPlan::run`] / [`PartitionLog::install_cleaned`] rewrite sealed segments keeping the
//! latest record per key (Kafka's log cleaner). Rewritten batches keep baseOffset,
//! lastOffsetDelta, partitionLeaderEpoch, producerId/Epoch, baseSequence, the codec and the
//! transactional/control bits; recordCount, batchLength and the CRC are recomputed, records
//! keep their offsetDelta (so offsets have gaps). Attributes bit 6 (0x40, Kafka's delete
//! horizon) set means baseTimestamp is the delete horizon: the first pass that keeps a
//! tombstone in a batch sets it to `now + delete.retention.ms` and rewrites the records'
//! timestampDelta against it; a later pass after that time drops the tombstones.
//! Only segments wholly below the last stable offset are cleaned, so every transaction with
//! data there has ended. Data batches of aborted transactions (a transactional batch whose
//! producer has an index entry with firstOffset <= its base offset < lastOffset) are dropped,
//! as Kafka does, or emptied like other batches producer state refers to. Committed
//! transactional batches and markers are kept unchanged and never supersede other records;
//! unlike Kafka, markers are never removed (not even past `delete.retention.ms`): they carry
//! epoch bumps that replaying producer state needs, and each index entry keeps its marker. A
//! cleaned segment's `.txnindex` is the union of its sources' entries, in marker order. A batch that idempotent producer state refers to (each producer's
//! last 5) is kept even when all its records go: recordCount 0, no records, codec bits 0.
//! Keyless records are dropped. Groups of consecutive cleaned segments whose original sizes
//! sum to at most `segment_bytes` (and 4 GiB, and whose offsets span at most u32::MAX) become
//! one segment named after the group's first base.
//!
//! ## `{base}.log.cleaned`, `{base}.index.cleaned`, `{base}.timeindex.cleaned`, `{base}.txnindex.cleaned`
//! A cleaned group's segment and indexes (the last only if the group has aborted
//! transactions), same formats as above, written and fsynced (then the directory) by
//! `CleanPlan::run`. Without a `clean-swap` manifest they are uncommitted and
//! `open` deletes them.
//!
//! ## `clean-swap` — the swap's commit record
//! `"WLSW"` | version u32 = 1 | group count u32 | per group: base i64 | end i64 (the base of
//! the first segment after the group) | CRC-32C u32 of everything before. Written via tmp +
//! fsync + rename + directory fsync only after every `.cleaned` file is durable; once it
//! exists the pass is committed. Then, per group, segments with a base in (base, end) are
//! deleted (all four files) and `{base}.index.cleaned`, `{base}.timeindex.cleaned`,
//! `{base}.txnindex.cleaned` (if written), `{base}.log.cleaned` are renamed over
//! `{base}.index`, `{base}.timeindex`, `{base}.txnindex`, `{base}.log`; the directory is fsynced,
//! `cleaner-offset` and `delete-horizon` written, `clean-swap` removed and the directory fsynced
//! again. `open`
//! with a valid manifest redoes the deletions and whichever renames are missing (each step
//! idempotent), so a crash at any point leaves either all old or all new segments of every
//! group; a torn or missing manifest means nothing was swapped, and `.cleaned` files are
//! deleted.
//!
//! ## `cleaner-offset` — 20-byte checkpoint, magic `"WLCO"`
//! Offsets below the value were cleaned by a completed pass (the next pass's first dirty
//! offset). Only scheduling (the dirty ratio) depends on it; if lost, the next pass re-cleans.
//!
//! ## `delete-horizon` — 20-byte checkpoint, magic `"WLDH"`
//! The earliest delete horizon (ms since the epoch) among the tombstones the last pass kept,
//! or i64::MAX for none: when it passes, a pass is due to remove them even if nothing is dirty
//! (the horizons themselves are stamped in the batches, attribute bit 6). Written by every
//! install after `cleaner-offset`. Only scheduling depends on it: `open` treats a missing or
//! torn file with a cleaned range, or a swap it had to complete (the file may predate the
//! swap), as "due now", which costs one extra pass and never keeps a tombstone past its horizon
//! for want of a pass.
//!
//! ## `*.tmp`
//! Partially written replacements of the files above; deleted by `open`.
#![deny(missing_docs)]

mod batch;
mod config;
mod error;
mod format;
mod partition;
mod producer;
pub mod storage;
mod txn;

pub use batch::{BatchHeader, ProducedBatch, split_batches, split_produced};
pub use config::{CleanupPolicy, LogConfig};
pub use error::{BatchError, CleanError, LogError};
pub use partition::{
    AppendOutcome, CleanMarker, CleanPlan, CleanReason, CleanResult, CleanStats, CleanerConfig,
    InstallOutcome, OFFSET_MAP_SLOT_BYTES, OffsetMap, PartitionLog, RateThrottle, Repair,
    SyncPoint, Throttle, Unthrottled, keyless_records,
};
pub use storage::{CrashMode, FsStorage, MemStorage, Storage, StorageFile};
pub use txn::{AbortedTxn, ControlType, ProducerInfo};
