//! Log compaction for one partition (Kafka's log cleaner): the offset map, the cleaning pass
//! that rewrites sealed segments into `.cleaned` files, and the types the broker drives it with.
//!
//! Flow: [`PartitionLog::cleaning_plan`](crate::PartitionLog::cleaning_plan) (under the
//! partition lock, cheap) -> [`CleanPlan::run`] (no lock: reads sealed, immutable segments and
//! writes and fsyncs the cleaned files) -> [`PartitionLog::install_cleaned`](crate::PartitionLog::install_cleaned)
//! (under the lock: commits the swap, see the crate's FORMAT section).

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{
    INDEX_SUFFIX, LOG_SUFFIX, MaxTimestampAt, PartitionLog, Segment, TIME_SUFFIX, TXN_SUFFIX,
    note_batch, seal_time_index,
};
use crate::batch::{self, BatchHeader, DELETE_HORIZON_FLAG, LOG_OVERHEAD, MAX_DECOMPRESSED_BYTES};
use crate::error::{CleanError, LogError};
use crate::format;
use crate::storage::{Storage, StorageFile};
use crate::txn::{self, AbortedEntry};

/// Suffix of a segment file written by the cleaner and not yet swapped in.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Bytes per offset map slot: a 16-byte key digest and an 8-byte offset.
pub const OFFSET_MAP_SLOT_BYTES: usize = 24;

/// Settings of the cleaner (broker-wide, Kafka's `log.cleaner.*`).
#[derive(Clone, Debug, PartialEq)]
pub struct CleanerConfig {
    /// Memory for one pass's offset map (Kafka `log.cleaner.dedupe.buffer.size`, 128 MiB,
    /// there shared by the cleaner threads). A pass maps at most
    /// `dedupe_buffer_bytes / 24 * load_factor` keys.
    pub dedupe_buffer_bytes: usize,
    /// Largest fill of the offset map (Kafka `log.cleaner.io.buffer.load.factor`, 0.9).
    pub load_factor: f64,
    /// Read and write buffer size (Kafka `log.cleaner.io.buffer.size`, 512 KiB; 1 MiB here).
    pub io_buffer_bytes: usize,
    /// Most memory for the pass's superseded-offset bitmap (one bit per mapped offset, so
    /// 8 MiB covers 67 M offsets), on top of the offset map; past it the rewrite looks every
    /// key up in the map instead. 0 turns the bitmap off.
    pub superseded_bitmap_bytes: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: 128 << 20,
            load_factor: 0.9,
            io_buffer_bytes: 1 << 20,
            superseded_bitmap_bytes: 8 << 20,
        }
    }
}

/// XXH3 with a 128-bit output, seeded per map: a fast non-cryptographic digest (a few
/// nanoseconds for a short key, against ~20 for SipHash-1-3-128).
fn xxh3_digest(seed: u64, data: &[u8]) -> (u64, u64) {
    let h = xxhash_rust::xxh3::xxh3_128_with_seed(data, seed);
    ((h >> 64) as u64, h as u64)
}

/// The offset map's table. Large tables are an anonymous mapping advised for transparent huge
/// pages (where the system allows them): every record probes one random slot of a table of up
/// to `dedupe_buffer_bytes`, and with 4 KiB pages nearly every probe also misses the TLB, which
/// under virtualisation costs a two-level page walk (measured: ~160 ns per put into a 128 MiB
/// table). Small tables, or a failed mapping, use the heap. Both start zeroed and untouched.
enum Slots {
    Mapped(memmap2::MmapMut),
    Heap(Vec<[u64; 3]>),
}

impl Slots {
    fn new(n: usize) -> Slots {
        let bytes = n * OFFSET_MAP_SLOT_BYTES;
        if bytes >= 4 << 20
            && let Ok(m) = memmap2::MmapMut::map_anon(bytes)
        {
            // Advice only: without huge pages the table still works, only slower.
            #[cfg(target_os = "linux")]
            let _ = m.advise(memmap2::Advice::HugePage);
            return Slots::Mapped(m);
        }
        Slots::Heap(vec![[0u64; 3]; n])
    }

    fn get(&self) -> &[[u64; 3]] {
        match self {
            // A mapping is page-aligned and n * 24 bytes long, so the cast cannot fail.
            Slots::Mapped(m) => bytemuck::cast_slice(&m[..]),
            Slots::Heap(v) => v,
        }
    }

    fn get_mut(&mut self) -> &mut [[u64; 3]] {
        match self {
            Slots::Mapped(m) => bytemuck::cast_slice_mut(&mut m[..]),
            Slots::Heap(v) => v,
        }
    }
}

/// What [`OffsetMap::put_digest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    /// A new key.
    New,
    /// The key was there with this (older) offset.
    Replaced(i64),
    /// A new key and the map is full: nothing changed.
    Full,
}

/// Fixed-size open-addressing map from a key's 128-bit digest to the latest offset seen for it
/// (Kafka's `SkimpyOffsetMap`): 24 bytes per slot, allocated once (zeroed, so untouched pages
/// cost nothing), never grown. The digest is XXH3-128 seeded per map with random bits. A
/// collision (about n² / 2¹²⁹ for n random keys) would make the older key look superseded.
/// XXH3 is not a keyed PRF, so unlike SipHash it does not promise that colliding keys cannot be
/// crafted; Kafka's cleaner uses unkeyed MD5, where they can be crafted offline, so this is no
/// weaker than Kafka.
pub struct OffsetMap {
    /// (digest high, digest low, offset + 1); offset + 1 == 0 marks an empty slot.
    slots: Slots,
    len: usize,
    max_len: usize,
    /// Digest seed, drawn per map.
    seed: u64,
}

impl std::fmt::Debug for OffsetMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetMap")
            .field("slots", &self.slots.get().len())
            .field("len", &self.len)
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl OffsetMap {
    /// A map using at most `budget_bytes` (at least 2 slots) and holding at most
    /// `load_factor` of its slots (so a probe always finds an empty slot).
    pub fn new(budget_bytes: usize, load_factor: f64) -> Self {
        let n = (budget_bytes / OFFSET_MAP_SLOT_BYTES).max(2);
        let lf = if load_factor.is_finite() {
            load_factor.clamp(0.01, 0.99)
        } else {
            0.9
        };
        let max_len = ((n as f64 * lf) as usize).clamp(1, n - 1);
        // Random per-map key material, from the standard library's seeded hasher.
        let seed = RandomState::new();
        OffsetMap {
            slots: Slots::new(n),
            len: 0,
            max_len,
            seed: seed.hash_one(0u64),
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most keys the map accepts.
    pub fn capacity(&self) -> usize {
        self.max_len
    }

    /// Bytes allocated for the slots.
    pub fn allocated_bytes(&self) -> usize {
        self.slots.get().len() * OFFSET_MAP_SLOT_BYTES
    }

    fn digest(&self, key: &[u8]) -> (u64, u64) {
        xxh3_digest(self.seed, key)
    }

    /// Slot holding `d`, or the empty slot where it would go: linear probing from a start
    /// chosen by multiply-shift (no division), so a probe sequence walks adjacent slots.
    fn find(&self, d: (u64, u64)) -> usize {
        let slots = self.slots.get();
        let n = slots.len();
        let mut i = self.start(d);
        loop {
            let s = &slots[i];
            if s[2] == 0 || (s[0] == d.0 && s[1] == d.1) {
                return i;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Records `offset` as the latest for `key`. Returns false (and changes nothing) if the
    /// key is new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let d = self.digest(key);
        self.put_digest(d, offset) != Put::Full
    }

    /// Where a digest's probe starts.
    fn start(&self, d: (u64, u64)) -> usize {
        ((u128::from(d.0) * self.slots.get().len() as u128) >> 64) as usize
    }

    /// The first slot of a digest's probe (a load the processor can start early).
    fn peek(&self, d: (u64, u64)) -> u64 {
        self.slots.get()[self.start(d)][2]
    }

    /// Loads the first slot of each digest's probe, independently of each other, so the
    /// processor overlaps the cache misses before the dependent probes run (a software
    /// prefetch without `unsafe`).
    fn touch(&self, digests: &[(u64, u64)]) {
        let mut acc = 0u64;
        for &d in digests {
            acc ^= self.slots.get()[self.start(d)][2];
        }
        std::hint::black_box(acc);
    }

    fn put_digest(&mut self, d: (u64, u64), offset: i64) -> Put {
        let i = self.find(d);
        let s = &mut self.slots.get_mut()[i];
        let put = if s[2] == 0 {
            if self.len >= self.max_len {
                return Put::Full;
            }
            self.len += 1;
            s[0] = d.0;
            s[1] = d.1;
            Put::New
        } else {
            Put::Replaced((s[2] - 1) as i64)
        };
        s[2] = offset as u64 + 1;
        put
    }

    /// Latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.get_digest(self.digest(key))
    }

    fn get_digest(&self, d: (u64, u64)) -> Option<i64> {
        let s = self.slots.get()[self.find(d)];
        (s[2] != 0).then(|| (s[2] - 1) as i64)
    }
}

/// One bit per offset of the mapped range, set when a later record of the same key was mapped
/// (Kafka's cleaner has no such thing): the rewrite then decides the records of the mapped range
/// without digesting their keys or probing the map (one random cache miss per record). Bounded
/// to `max_bits`; offsets past that are decided by the map.
struct Superseded {
    base: i64,
    words: Vec<u64>,
    max_bits: u64,
}

impl Superseded {
    fn new(base: i64, max_bytes: usize) -> Self {
        Superseded {
            base,
            words: Vec::new(),
            max_bits: max_bytes as u64 * 8,
        }
    }

    /// Bytes allocated.
    fn bytes(&self) -> usize {
        self.words.capacity() * 8
    }

    fn set(&mut self, offset: i64) {
        // Below the base (a batch straddling the first dirty offset) `get` never answers.
        if offset < self.base {
            return;
        }
        let i = (offset - self.base) as u64;
        if i >= self.max_bits {
            // `get` sends offsets this far to the map.
            return;
        }
        let w = (i / 64) as usize;
        if w >= self.words.len() {
            if w >= self.words.capacity() {
                // Grow by doubling, never past the budget.
                let max_words = self.max_bits.div_ceil(64) as usize;
                let want = (self.words.capacity() * 2).max(w + 1).min(max_words);
                self.words.reserve_exact(want - self.words.len());
            }
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    /// Whether `offset` (in the mapped range) was superseded; `None` when the bitmap cannot
    /// tell (outside the mapped range or past the budget).
    fn get(&self, offset: i64, mapped_end: i64) -> Option<bool> {
        if offset < self.base || offset >= mapped_end {
            return None;
        }
        let i = (offset - self.base) as u64;
        if i >= self.max_bits {
            return None;
        }
        let w = (i / 64) as usize;
        Some(self.words.get(w).is_some_and(|&x| x & (1 << (i % 64)) != 0))
    }
}

/// Sets [`Shared::cleaning`](super::Shared) while a plan or result is alive, so at most one
/// pass per log runs at a time.
pub(crate) struct CleaningGuard(pub(crate) Arc<AtomicBool>);

impl Drop for CleaningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A sealed segment a plan reads.
pub(crate) struct PlanSegment {
    pub base: i64,
    /// Base of the following segment: everything in this one is below it.
    pub end: i64,
    pub size: u64,
    pub log: Arc<dyn StorageFile>,
    /// The segment's aborted transactions (fixed once it is sealed).
    pub aborted: Vec<AbortedEntry>,
}

/// Why a plan was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanReason {
    /// The dirty ratio reached `min.cleanable.dirty.ratio`.
    DirtyRatio,
    /// The oldest uncleaned batch is older than `max.compaction.lag.ms`.
    MaxCompactionLag,
    /// A tombstone's delete horizon passed.
    DeleteHorizon,
    /// The caller forced it.
    Forced,
}

/// One cleaning pass, planned under the partition lock by
/// [`PartitionLog::cleaning_plan`](crate::PartitionLog::cleaning_plan). Holds handles on the
/// sealed segments it reads (which stay readable even if retention deletes them meanwhile).
pub struct CleanPlan {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) dir: PathBuf,
    /// Cleanable segments from the log start, in order.
    pub(crate) segments: Vec<PlanSegment>,
    /// First offset not cleaned by an earlier pass.
    pub(crate) first_dirty: i64,
    /// Base offsets of batches that idempotent producer state refers to: kept (possibly
    /// emptied of records) so that replaying headers rebuilds the same state.
    pub(crate) retain: HashSet<i64>,
    /// Aborted transactions that may have data in the cleanable segments: (producer id,
    /// first offset) -> marker offset.
    pub(crate) aborted: BTreeMap<(i64, i64), i64>,
    pub(crate) now_ms: i64,
    pub(crate) delete_retention_ms: i64,
    pub(crate) segment_bytes: u64,
    pub(crate) index_interval: u64,
    pub(crate) guard: CleaningGuard,
    /// Why the pass is due.
    pub reason: CleanReason,
    /// Bytes of cleanable segments at or after the first dirty offset.
    pub dirty_bytes: u64,
    /// Bytes of all cleanable segments.
    pub cleanable_bytes: u64,
}

impl std::fmt::Debug for CleanPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanPlan")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("first_dirty", &self.first_dirty)
            .field("reason", &self.reason)
            .field("dirty_bytes", &self.dirty_bytes)
            .field("cleanable_bytes", &self.cleanable_bytes)
            .finish()
    }
}

/// Statistics of one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanStats {
    /// Bytes read from segments (both the mapping and the cleaning read).
    pub bytes_read: u64,
    /// Bytes written to cleaned segments.
    pub bytes_written: u64,
    /// Distinct keys put in the offset map.
    pub keys: u64,
    /// Records read while cleaning / kept.
    pub records_read: u64,
    /// Records kept.
    pub records_kept: u64,
    /// Tombstones removed because their delete horizon had passed.
    pub tombstones_removed: u64,
    /// Data batches of aborted transactions removed (or emptied, when producer state needs
    /// their header).
    pub aborted_batches_removed: u64,
    /// Passes run (1 per [`CleanPlan::run`]).
    pub passes: u32,
    /// Bytes of the offset map's slots.
    pub map_bytes: u64,
    /// Bytes of the superseded-offset bitmap.
    pub bitmap_bytes: u64,
    /// Most keys the map could hold.
    pub map_capacity: u64,
    /// Wall time of the pass.
    pub duration: Duration,
    /// Of which building the offset map.
    pub map_duration: Duration,
    /// Of which fsyncing the cleaned files and the directory.
    pub sync_duration: Duration,
}

/// A cleaned group of segments: `{base}.log/.index/.timeindex.cleaned`, replacing the sealed
/// segments whose bases lie in [base, end).
pub(crate) struct CleanedGroup {
    pub sources: Vec<(i64, u64)>,
    pub end: i64,
    pub seg: Segment,
}

/// Output of [`CleanPlan::run`]: cleaned files written and fsynced, waiting for
/// [`PartitionLog::install_cleaned`](crate::PartitionLog::install_cleaned). Dropping it
/// without installing leaves `.cleaned` files that the next pass overwrites and `open`
/// deletes.
pub struct CleanResult {
    pub(crate) groups: Vec<CleanedGroup>,
    pub(crate) dir: PathBuf,
    /// Offsets below this are now clean (next pass's first dirty offset).
    pub(crate) clean_end: i64,
    /// Smallest delete horizon still pending among kept tombstones.
    pub(crate) next_horizon: Option<i64>,
    pub(crate) _guard: CleaningGuard,
    /// What the pass did.
    pub stats: CleanStats,
}

impl std::fmt::Debug for CleanResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleanResult")
            .field("groups", &self.groups.len())
            .field("clean_end", &self.clean_end)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Paces the cleaner's I/O: `on_io(bytes)` is called after each read or write of a buffer.
pub trait Throttle {
    /// `bytes` were just read or written; may sleep.
    fn on_io(&mut self, bytes: u64);
}

/// No pacing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unthrottled;

impl Throttle for Unthrottled {
    fn on_io(&mut self, _bytes: u64) {}
}

/// Sleeps so that the bytes reported stay under `bytes_per_sec` on average (Kafka
/// `log.cleaner.io.max.bytes.per.second`). Uses the monotonic clock.
#[derive(Debug, Clone)]
pub struct RateThrottle {
    bytes_per_sec: f64,
    start: Instant,
    bytes: u64,
}

impl RateThrottle {
    /// A throttle allowing `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: f64) -> Self {
        RateThrottle {
            bytes_per_sec: bytes_per_sec.max(1.0),
            start: Instant::now(),
            bytes: 0,
        }
    }
}

impl Throttle for RateThrottle {
    fn on_io(&mut self, bytes: u64) {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec);
        let spent = self.start.elapsed();
        if due > spent {
            std::thread::sleep(due - spent);
        }
    }
}

/// Reads one segment batch by batch through a buffer.
struct SegReader<'a> {
    file: &'a dyn StorageFile,
    path: PathBuf,
    size: u64,
    buf: Vec<u8>,
    /// File position of buf[0].
    buf_pos: u64,
    lo: usize,
    hi: usize,
    chunk: usize,
    read: u64,
}

impl<'a> SegReader<'a> {
    fn new(
        file: &'a dyn StorageFile,
        path: PathBuf,
        size: u64,
        buf: Vec<u8>,
        chunk: usize,
    ) -> Self {
        SegReader {
            file,
            path,
            size,
            buf,
            buf_pos: 0,
            lo: 0,
            hi: 0,
            chunk: chunk.max(64 << 10),
            read: 0,
        }
    }

    fn corrupt(&self, reason: &str) -> CleanError {
        CleanError::Corrupt {
            path: self.path.clone(),
            offset: self.buf_pos + self.lo as u64,
            reason: reason.into(),
        }
    }

    /// Makes `need` bytes available at `lo`; false if the file ends first.
    fn fill(&mut self, need: usize, throttle: &mut dyn Throttle) -> Result<bool, CleanError> {
        if self.hi - self.lo >= need {
            return Ok(true);
        }
        self.buf.copy_within(self.lo..self.hi, 0);
        self.buf_pos += self.lo as u64;
        self.hi -= self.lo;
        self.lo = 0;
        let file_pos = self.buf_pos + self.hi as u64;
        let remaining = self.size.saturating_sub(file_pos);
        if (self.hi as u64).saturating_add(remaining) < need as u64 {
            return Ok(false);
        }
        let want = ((need - self.hi).max(self.chunk) as u64).min(remaining) as usize;
        if self.buf.len() < self.hi + want {
            self.buf.resize(self.hi + want, 0);
        }
        self.file
            .read_at(&mut self.buf[self.hi..self.hi + want], file_pos)
            .map_err(|e| CleanError::Io {
                path: self.path.clone(),
                cause: e,
            })?;
        self.hi += want;
        self.read += want as u64;
        throttle.on_io(want as u64);
        Ok(true)
    }

    /// The next batch: (file position, range in `buf`), None at the end.
    fn next(
        &mut self,
        throttle: &mut dyn Throttle,
    ) -> Result<Option<(u64, std::ops::Range<usize>)>, CleanError> {
        if !self.fill(LOG_OVERHEAD, throttle)? {
            if self.hi == self.lo && self.buf_pos + self.hi as u64 == self.size {
                return Ok(None);
            }
            return Err(self.corrupt("truncated batch"));
        }
        let b = &self.buf[self.lo..];
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let size = usize::try_from(len)
            .ok()
            .filter(|&l| l >= BatchHeader::SIZE - LOG_OVERHEAD)
            .map(|l| l + LOG_OVERHEAD)
            .ok_or_else(|| self.corrupt("bad batch length"))?;
        if !self.fill(size, throttle)? {
            return Err(self.corrupt("truncated batch"));
        }
        let pos = self.buf_pos + self.lo as u64;
        let r = self.lo..self.lo + size;
        self.lo += size;
        Ok(Some((pos, r)))
    }
}

/// One record of a batch's (decompressed) records section.
struct Rec<'a> {
    /// The whole record, length prefix included.
    whole: &'a [u8],
    attributes: u8,
    ts_delta: i64,
    offset_delta: i64,
    key: Option<&'a [u8]>,
    tombstone: bool,
    /// Everything after offsetDelta: key, value, headers.
    tail: &'a [u8],
}

fn read_zz(buf: &mut &[u8], max_bytes: usize) -> Option<i64> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

fn put_zz(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Parses one record from the front of `rest`.
fn next_record<'a>(rest: &mut &'a [u8]) -> Option<Rec<'a>> {
    let start = *rest;
    let len = usize::try_from(read_zz(rest, 5)?).ok()?;
    if len > rest.len() {
        return None;
    }
    let (mut body, after) = rest.split_at(len);
    let whole = &start[..start.len() - after.len()];
    *rest = after;
    let (&attributes, b) = body.split_first()?;
    body = b;
    let ts_delta = read_zz(&mut body, 10)?;
    let offset_delta = read_zz(&mut body, 5)?;
    let tail = body;
    let klen = read_zz(&mut body, 5)?;
    let key = if klen < 0 {
        None
    } else {
        let k = usize::try_from(klen).ok()?;
        if k > body.len() {
            return None;
        }
        let (k, b) = body.split_at(k);
        body = b;
        Some(k)
    };
    let vlen = read_zz(&mut body, 5)?;
    if vlen > body.len() as i64 {
        return None;
    }
    Some(Rec {
        whole,
        attributes,
        ts_delta,
        offset_delta,
        key,
        tombstone: vlen < 0,
        tail,
    })
}

/// Decompresses a batch's records section into `out` (bounded by the decompression limit);
/// returns the records bytes (borrowed from the batch when uncompressed).
fn records_of<'a>(
    h: &BatchHeader,
    batch: &'a [u8],
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8], String> {
    let payload = &batch[BatchHeader::SIZE..];
    out.clear();
    let limit = MAX_DECOMPRESSED_BYTES;
    let res = match h.compression() {
        0 => return Ok(payload),
        1 => flate2::read::GzDecoder::new(payload)
            .take(limit)
            .read_to_end(out)
            .map(|_| ()),
        2 => {
            *out = batch::snappy_decompress(payload).map_err(|e| e.to_string())?;
            Ok(())
        }
        3 => lz4::Decoder::new(payload).and_then(|d| d.take(limit).read_to_end(out).map(|_| ())),
        4 => zstd::stream::read::Decoder::new(payload)
            .and_then(|d| d.take(limit).read_to_end(out).map(|_| ())),
        c => return Err(format!("unknown compression codec {c}")),
    };
    res.map_err(|e| e.to_string())?;
    Ok(out)
}

/// Indexes (0-based, in batch order) of the records without a key in one whole v2 batch,
/// decompressing if needed: a compacted topic refuses such a batch with INVALID_RECORD and one
/// per-record error each (Kafka's `batch_index`). The batch should have passed
/// [`split_produced`](crate::split_produced) first.
pub fn keyless_records(batch: &[u8]) -> Result<Vec<i32>, crate::BatchError> {
    let h = BatchHeader::parse(batch)?;
    if batch.len() < BatchHeader::SIZE {
        return Err(crate::BatchError::Truncated {
            needed: BatchHeader::SIZE,
            available: batch.len(),
        });
    }
    let mut buf = Vec::new();
    let recs = records_of(&h, batch, &mut buf).map_err(crate::BatchError::Decompress)?;
    let mut rest = recs;
    let mut out = Vec::new();
    for i in 0..h.record_count.max(0) {
        let rec =
            next_record(&mut rest).ok_or(crate::BatchError::BadRecords("malformed record"))?;
        if rec.key.is_none() {
            out.push(i);
        }
    }
    Ok(out)
}

/// Compresses a records section with `codec` as Kafka clients read it.
fn compress(codec: u8, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match codec {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data)?;
            e.finish()
        }
        2 => {
            // Xerial framing, as the Java client writes it: magic, version 1, compatible 1,
            // then length-prefixed raw blocks of at most 32 KiB.
            let mut out = b"\x82SNAPPY\x00".to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(32 << 10) {
                let c = enc.compress_vec(chunk).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                out.extend_from_slice(&c);
            }
            Ok(out)
        }
        3 => {
            let mut e = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())?;
            e.write_all(data)?;
            let (out, res) = e.finish();
            res.map(|()| out)
        }
        4 => zstd::bulk::compress(data, 3),
        _ => Ok(data.to_vec()),
    }
}

/// Writes a v2 batch header + records into `out`, computing length and CRC.
#[allow(clippy::too_many_arguments)]
fn encode_batch(
    out: &mut Vec<u8>,
    h: &BatchHeader,
    attributes: i16,
    base_ts: i64,
    max_ts: i64,
    count: i32,
    records: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(
        &((BatchHeader::SIZE - LOG_OVERHEAD + records.len()) as i32).to_be_bytes(),
    );
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&base_ts.to_be_bytes());
    out.extend_from_slice(&max_ts.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = crc32c::crc32c(&out[start + 21..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
}

/// What filtering did to one batch.
enum Filtered {
    /// Keep the stored bytes unchanged.
    Same(MaxTimestampAt),
    /// Replace with the bytes now in the output buffer.
    Rewritten(MaxTimestampAt),
    /// Drop the batch.
    Dropped,
}

/// Per-pass scratch buffers and counters.
/// One record of the batch being filtered.
struct Parsed {
    range: (usize, usize),
    offset_delta: i64,
    ts_delta: i64,
    tombstone: bool,
    key: Key,
}

/// How a parsed record's key is decided.
#[derive(Clone, Copy)]
enum Key {
    /// No key.
    None,
    /// By the superseded bitmap: whether this is the key's latest record.
    Decided(bool),
    /// By looking this digest up in the map.
    Digest((u64, u64)),
}

struct Work {
    parsed: Vec<Parsed>,
    kept_ranges: Vec<(usize, usize)>,
    digests: Vec<(u64, u64)>,
    offsets: Vec<i64>,
    decompressed: Vec<u8>,
    kept: Vec<u8>,
    rebuilt: Vec<u8>,
    stats: CleanStats,
    next_horizon: Option<i64>,
    superseded: Superseded,
}

fn corrupt_at(path: &Path, pos: u64, reason: impl Into<String>) -> CleanError {
    CleanError::Corrupt {
        path: path.to_path_buf(),
        offset: pos,
        reason: reason.into(),
    }
}

impl CleanPlan {
    /// Whether a transactional data batch belongs to an aborted transaction: its producer's
    /// aborted transaction starting at or before it ends with a marker after it.
    fn is_aborted(&self, h: &BatchHeader) -> bool {
        self.aborted
            .range((h.producer_id, i64::MIN)..=(h.producer_id, h.base_offset))
            .next_back()
            .is_some_and(|(_, &marker)| h.base_offset < marker)
    }

    /// First offset not cleaned by an earlier pass.
    pub fn first_dirty_offset(&self) -> i64 {
        self.first_dirty
    }

    fn path(&self, base: i64, suffix: &str) -> PathBuf {
        self.dir.join(format::file_name(base, suffix))
    }

    /// Runs the pass without the partition lock: maps the latest offset of every key from the
    /// first dirty offset on (as many batches as the offset map holds), then rewrites every
    /// cleanable segment below the mapped end, in groups of consecutive segments that together
    /// fit `segment_bytes` (and 32-bit positions and relative offsets), into
    /// `{base}.log.cleaned`, `{base}.index.cleaned` and `{base}.timeindex.cleaned`. Every file
    /// is fsynced, then the directory. Nothing the log reads changes until
    /// [`PartitionLog::install_cleaned`](crate::PartitionLog::install_cleaned).
    pub fn run(
        self,
        config: &CleanerConfig,
        throttle: &mut dyn Throttle,
    ) -> Result<CleanResult, CleanError> {
        let started = Instant::now();
        let mut map = OffsetMap::new(config.dedupe_buffer_bytes, config.load_factor);
        let mut work = Work {
            parsed: Vec::new(),
            kept_ranges: Vec::new(),
            digests: Vec::new(),
            offsets: Vec::new(),
            decompressed: Vec::new(),
            kept: Vec::new(),
            rebuilt: Vec::new(),
            stats: CleanStats {
                passes: 1,
                map_bytes: map.allocated_bytes() as u64,
                map_capacity: map.capacity() as u64,
                ..CleanStats::default()
            },
            next_horizon: None,
            superseded: Superseded::new(self.first_dirty, config.superseded_bitmap_bytes),
        };
        let mut buf = Vec::new();
        let clean_end = self.build_map(&mut map, config, throttle, &mut work, &mut buf)?;
        work.stats.map_duration = started.elapsed();
        work.stats.keys = map.len() as u64;
        work.stats.bitmap_bytes = work.superseded.bytes() as u64;

        // Group the segments below the mapped end.
        let segs: Vec<&PlanSegment> = self
            .segments
            .iter()
            .filter(|s| s.base < clean_end)
            .collect();
        let mut groups: Vec<Vec<&PlanSegment>> = Vec::new();
        for s in segs {
            let fits = groups.last().is_some_and(|g| {
                let size: u64 = g.iter().map(|x| x.size).sum::<u64>() + s.size;
                size <= self.segment_bytes
                    && size <= u64::from(u32::MAX)
                    && s.end - g[0].base <= i64::from(u32::MAX)
            });
            match groups.last_mut() {
                Some(g) if fits => g.push(s),
                _ => groups.push(vec![s]),
            }
        }
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            out.push(self.clean_group(&g, &map, clean_end, config, throttle, &mut work, &mut buf)?);
        }
        let synced = Instant::now();
        self.storage
            .sync_dir(&self.dir)
            .map_err(|e| CleanError::Io {
                path: self.dir.clone(),
                cause: e,
            })?;
        work.stats.sync_duration += synced.elapsed();
        work.stats.duration = started.elapsed();
        Ok(CleanResult {
            groups: out,
            dir: self.dir,
            clean_end,
            next_horizon: work.next_horizon,
            _guard: self.guard,
            stats: work.stats,
        })
    }

    /// Puts the key of every record from the first dirty offset into the map, stopping before
    /// the first batch that might not fit. Returns the end of what was mapped.
    fn build_map(
        &self,
        map: &mut OffsetMap,
        config: &CleanerConfig,
        throttle: &mut dyn Throttle,
        work: &mut Work,
        buf: &mut Vec<u8>,
    ) -> Result<i64, CleanError> {
        let mut mapped_end = self.first_dirty;
        for s in self.segments.iter().filter(|s| s.end > self.first_dirty) {
            let path = self.path(s.base, LOG_SUFFIX);
            let mut r = SegReader::new(
                &*s.log,
                path.clone(),
                s.size,
                std::mem::take(buf),
                config.io_buffer_bytes,
            );
            let res = (|| {
                while let Some((pos, range)) = r.next(throttle)? {
                    let b = &r.buf[range];
                    let h =
                        BatchHeader::parse(b).map_err(|e| corrupt_at(&path, pos, e.to_string()))?;
                    if h.last_offset() < self.first_dirty {
                        continue;
                    }
                    // The CRC is checked when the batch is rewritten (a corrupt batch fails the
                    // pass there); mapping only needs well-formed records.
                    if h.magic != 2 {
                        return Err(corrupt_at(&path, pos, "bad magic"));
                    }
                    if !h.is_control() && !h.is_transactional() {
                        let count = usize::try_from(h.record_count).unwrap_or(0);
                        if map.len() + count > map.capacity() {
                            if mapped_end == self.first_dirty {
                                return Err(CleanError::MapTooSmall {
                                    records: count,
                                    capacity: map.capacity(),
                                });
                            }
                            return Ok(false);
                        }
                        let recs = records_of(&h, b, &mut work.decompressed)
                            .map_err(|e| corrupt_at(&path, pos, e))?;
                        let mut rest = recs;
                        work.digests.clear();
                        work.offsets.clear();
                        for _ in 0..count {
                            let rec = next_record(&mut rest)
                                .ok_or_else(|| corrupt_at(&path, pos, "malformed record"))?;
                            if let Some(k) = rec.key {
                                work.digests.push(map.digest(k));
                                work.offsets.push(h.base_offset + rec.offset_delta);
                            }
                        }
                        map.touch(&work.digests);
                        for (&d, &o) in work.digests.iter().zip(&work.offsets) {
                            if let Put::Replaced(old) = map.put_digest(d, o) {
                                work.superseded.set(old);
                            }
                        }
                    }
                    mapped_end = h.last_offset() + 1;
                }
                Ok(true)
            })();
            work.stats.bytes_read += r.read;
            *buf = r.buf;
            if !res? {
                return Ok(mapped_end);
            }
            mapped_end = s.end;
        }
        Ok(mapped_end.max(self.first_dirty))
    }

    #[allow(clippy::too_many_arguments)]
    fn clean_group(
        &self,
        group: &[&PlanSegment],
        map: &OffsetMap,
        clean_end: i64,
        config: &CleanerConfig,
        throttle: &mut dyn Throttle,
        work: &mut Work,
        buf: &mut Vec<u8>,
    ) -> Result<CleanedGroup, CleanError> {
        let base = group[0].base;
        let end = group[group.len() - 1].end;
        let mut files: Vec<Arc<dyn StorageFile>> = Vec::with_capacity(3);
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_SUFFIX] {
            let p = self.path(base, &format!("{suffix}{CLEANED_SUFFIX}"));
            let io = |e| CleanError::Io {
                path: p.clone(),
                cause: e,
            };
            let f = self.storage.open(&p, true).map_err(io)?;
            f.truncate(0).map_err(io)?;
            files.push(Arc::from(f));
        }
        let [log, index_file, time_file]: [Arc<dyn StorageFile>; 3] = files
            .try_into()
            .map_err(|_| CleanError::Log(LogError::Poisoned))?;
        let mut seg = PartitionLog::empty_segment(base, [log.clone(), index_file, time_file]);
        let out_path = self.path(base, &format!("{LOG_SUFFIX}{CLEANED_SUFFIX}"));
        let io_out = |e| CleanError::Io {
            path: out_path.clone(),
            cause: e,
        };
        let mut pending: Vec<u8> = Vec::with_capacity(config.io_buffer_bytes);
        for s in group {
            let path = self.path(s.base, LOG_SUFFIX);
            let mut r = SegReader::new(
                &*s.log,
                path.clone(),
                s.size,
                std::mem::take(buf),
                config.io_buffer_bytes,
            );
            let res = (|| {
                while let Some((pos, range)) = r.next(throttle)? {
                    let b = &r.buf[range];
                    let h =
                        BatchHeader::parse(b).map_err(|e| corrupt_at(&path, pos, e.to_string()))?;
                    batch::validate_stored(b, usize::MAX, true)
                        .map_err(|e| corrupt_at(&path, pos, e.to_string()))?;
                    let at = seg.size;
                    let (bytes, max_at): (&[u8], MaxTimestampAt) = match self
                        .filter(&h, b, map, clean_end, work)
                        .map_err(|e| corrupt_at(&path, pos, e))?
                    {
                        Filtered::Same(m) => (b, m),
                        Filtered::Rewritten(m) => (&work.rebuilt[..], m),
                        Filtered::Dropped => continue,
                    };
                    let nh = BatchHeader::parse(bytes)
                        .map_err(|e| corrupt_at(&path, pos, e.to_string()))?;
                    pending.extend_from_slice(bytes);
                    note_batch(
                        &mut seg,
                        &nh,
                        bytes,
                        max_at,
                        at,
                        bytes.len() as u64,
                        self.index_interval,
                        self.now_ms,
                    );
                    if pending.len() >= config.io_buffer_bytes {
                        log.append(&pending).map_err(io_out)?;
                        work.stats.bytes_written += pending.len() as u64;
                        throttle.on_io(pending.len() as u64);
                        pending.clear();
                    }
                }
                Ok::<(), CleanError>(())
            })();
            work.stats.bytes_read += r.read;
            *buf = r.buf;
            res?;
        }
        if !pending.is_empty() {
            log.append(&pending).map_err(io_out)?;
            work.stats.bytes_written += pending.len() as u64;
            throttle.on_io(pending.len() as u64);
        }
        seg.next_offset = end;
        seal_time_index(&mut seg, &self.dir).map_err(CleanError::Log)?;
        // The cleaner keeps every control batch, so the group's markers are its sources'
        // markers: its aborted-transaction index is the union of theirs, in marker order.
        seg.aborted = group
            .iter()
            .flat_map(|s| s.aborted.iter().copied())
            .collect();
        let mut txn_file = None;
        if !seg.aborted.is_empty() {
            let p = self.path(base, &format!("{TXN_SUFFIX}{CLEANED_SUFFIX}"));
            let io = |e| CleanError::Io {
                path: p.clone(),
                cause: e,
            };
            let f = self.storage.open(&p, true).map_err(io)?;
            f.truncate(0).map_err(io)?;
            f.append(&txn::encode_entries(&seg.aborted)).map_err(io)?;
            let f: Arc<dyn StorageFile> = Arc::from(f);
            seg.txn_file = Some(f.clone());
            txn_file = Some(f);
        }
        let synced = Instant::now();
        for (f, suffix) in [
            (Some(&seg.log), LOG_SUFFIX),
            (Some(&seg.index_file), INDEX_SUFFIX),
            (Some(&seg.time_file), TIME_SUFFIX),
            (txn_file.as_ref(), TXN_SUFFIX),
        ] {
            let Some(f) = f else { continue };
            f.sync().map_err(|e| CleanError::Io {
                path: self.path(base, &format!("{suffix}{CLEANED_SUFFIX}")),
                cause: e,
            })?;
        }
        work.stats.sync_duration += synced.elapsed();
        Ok(CleanedGroup {
            sources: group.iter().map(|s| (s.base, s.size)).collect(),
            end,
            seg,
        })
    }

    /// Decides what happens to one stored batch; a rewrite goes to `work.rebuilt`.
    fn filter(
        &self,
        h: &BatchHeader,
        b: &[u8],
        map: &OffsetMap,
        clean_end: i64,
        work: &mut Work,
    ) -> Result<Filtered, String> {
        // A data batch of an aborted transaction goes (Kafka's cleaner discards aborted
        // records): emptied instead when producer state refers to it, so that replaying
        // headers rebuilds the same state. Its transaction's index entry stays (its marker is
        // kept), and an empty or missing batch has nothing for it to hide.
        if h.is_transactional() && !h.is_control() && self.is_aborted(h) {
            if h.record_count == 0 {
                // Emptied by an earlier pass.
                return Ok(Filtered::Same(MaxTimestampAt::Base));
            }
            work.stats.aborted_batches_removed += 1;
            work.stats.records_read += u64::try_from(h.record_count).unwrap_or(0);
            if !self.retain.contains(&h.base_offset) {
                return Ok(Filtered::Dropped);
            }
            work.rebuilt.clear();
            encode_batch(
                &mut work.rebuilt,
                h,
                h.attributes & !0x7,
                h.base_timestamp,
                h.max_timestamp,
                0,
                &[],
            );
            return Ok(Filtered::Rewritten(MaxTimestampAt::Base));
        }
        // Other transactional batches (committed data and markers) are kept as they are and
        // never mapped: a committed record never supersedes others, and markers are what
        // ends transactions on replay (and what index entries point at). Keeping them loses
        // no latest value; it only compacts less.
        if h.is_transactional() || h.is_control() || h.base_offset >= clean_end {
            return Ok(Filtered::Same(MaxTimestampAt::Find));
        }
        let now = self.now_ms;
        let horizon = h.delete_horizon_ms();
        let drop_tombstones = horizon.is_some_and(|hz| hz <= now);
        let count = usize::try_from(h.record_count).unwrap_or(0);
        let recs = records_of(h, b, &mut work.decompressed)?;
        // Parse once and digest every key, then touch their slots, then decide: the map's
        // cache misses overlap.
        let mut rest = recs;
        let base_ptr = recs.as_ptr() as usize;
        work.parsed.clear();
        for _ in 0..count {
            let rec = next_record(&mut rest).ok_or("malformed record")?;
            let start = rec.whole.as_ptr() as usize - base_ptr;
            let offset = h.base_offset + rec.offset_delta;
            // In the mapped range the bitmap decides without the key's digest.
            let key = match rec.key {
                None => Key::None,
                Some(k) => match work.superseded.get(offset, clean_end) {
                    Some(superseded) => Key::Decided(!superseded),
                    None => Key::Digest(map.digest(k)),
                },
            };
            work.parsed.push(Parsed {
                range: (start, start + rec.whole.len()),
                offset_delta: rec.offset_delta,
                ts_delta: rec.ts_delta,
                tombstone: rec.tombstone,
                key,
            });
        }
        let mut acc = 0u64;
        for p in &work.parsed {
            if let Key::Digest(d) = p.key {
                acc ^= map.peek(d);
            }
        }
        std::hint::black_box(acc);
        let mut kept_recs = std::mem::take(&mut work.kept_ranges);
        kept_recs.clear();
        let mut has_tombstone = false;
        let mut max_ts = i64::MIN;
        let mut max_delta = None;
        let log_append = h.is_log_append_time();
        for p in &work.parsed {
            work.stats.records_read += 1;
            let offset = h.base_offset + p.offset_delta;
            let latest = match p.key {
                // Kafka discards keyless records from compacted logs.
                Key::None => None,
                Key::Decided(latest) => Some(latest),
                Key::Digest(d) => Some(map.get_digest(d).is_none_or(|l| offset >= l)),
            };
            let keep = match latest {
                None => false,
                Some(latest) => {
                    if latest && p.tombstone && drop_tombstones {
                        work.stats.tombstones_removed += 1;
                        false
                    } else {
                        latest
                    }
                }
            };
            if !keep {
                continue;
            }
            has_tombstone |= p.tombstone;
            let ts = if log_append {
                h.max_timestamp
            } else {
                h.base_timestamp.saturating_add(p.ts_delta)
            };
            if ts > max_ts {
                max_ts = ts;
                max_delta = i32::try_from(p.offset_delta).ok();
            }
            kept_recs.push(p.range);
        }
        let n_kept = kept_recs.len();
        work.stats.records_kept += n_kept as u64;
        work.kept_ranges = kept_recs;
        let set_horizon = horizon.is_none() && has_tombstone;
        if has_tombstone && let Some(hz) = horizon.filter(|&hz| hz > now) {
            work.next_horizon = Some(work.next_horizon.map_or(hz, |n| n.min(hz)));
        }
        let at = |d: Option<i32>| d.map_or(MaxTimestampAt::Base, MaxTimestampAt::Delta);
        if n_kept == count && !set_horizon {
            return Ok(Filtered::Same(at(max_delta)));
        }
        let producer_batch = h.producer_id >= 0 && self.retain.contains(&h.base_offset);
        if n_kept == 0 && !producer_batch {
            return Ok(Filtered::Dropped);
        }
        let new_base_ts = if set_horizon {
            let hz = now.saturating_add(self.delete_retention_ms);
            work.next_horizon = Some(work.next_horizon.map_or(hz, |n| n.min(hz)));
            hz
        } else {
            h.base_timestamp
        };
        work.kept.clear();
        for &(s, e) in &work.kept_ranges {
            let whole = &recs[s..e];
            if new_base_ts == h.base_timestamp || log_append {
                work.kept.extend_from_slice(whole);
                continue;
            }
            // Re-express the timestamp against the new base (the delete horizon).
            let mut r = whole;
            let rec = next_record(&mut r).ok_or("malformed record")?;
            let ts = h.base_timestamp.saturating_add(rec.ts_delta);
            let mut body = vec![rec.attributes];
            put_zz(&mut body, ts.saturating_sub(new_base_ts));
            put_zz(&mut body, rec.offset_delta);
            body.extend_from_slice(rec.tail);
            put_zz(&mut work.kept, body.len() as i64);
            work.kept.extend_from_slice(&body);
        }
        let mut attributes = h.attributes;
        if set_horizon {
            attributes |= DELETE_HORIZON_FLAG;
        }
        let max_ts = if n_kept == 0 || log_append {
            h.max_timestamp
        } else {
            max_ts
        };
        work.rebuilt.clear();
        let codec = h.compression();
        if n_kept == 0 {
            // An emptied batch kept for producer state, uncompressed as Kafka writes it.
            attributes &= !0x7;
            encode_batch(
                &mut work.rebuilt,
                h,
                attributes,
                new_base_ts,
                max_ts,
                0,
                &[],
            );
            return Ok(Filtered::Rewritten(MaxTimestampAt::Base));
        }
        let count = n_kept as i32;
        if codec == 0 {
            let kept = std::mem::take(&mut work.kept);
            encode_batch(
                &mut work.rebuilt,
                h,
                attributes,
                new_base_ts,
                max_ts,
                count,
                &kept,
            );
            work.kept = kept;
        } else {
            let c = compress(codec, &work.kept).map_err(|e| e.to_string())?;
            encode_batch(
                &mut work.rebuilt,
                h,
                attributes,
                new_base_ts,
                max_ts,
                count,
                &c,
            );
        }
        Ok(Filtered::Rewritten(at(max_delta)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_separates_keys_and_is_stable() {
        let mut seen = std::collections::HashSet::new();
        for len in 1..40 {
            for b in 0..8u8 {
                let key: Vec<u8> = (0..len).map(|i| b.wrapping_add(i as u8)).collect();
                let d = xxh3_digest(1, &key);
                assert_eq!(d, xxh3_digest(1, &key));
                assert_ne!(d, xxh3_digest(2, &key));
                assert!(seen.insert(d), "collision at len {len}");
            }
        }
    }

    #[test]
    fn offset_map_probes_stay_short() {
        let mut m = OffsetMap::new(4 << 20, 0.9);
        let n = 110_000;
        for k in 0..n {
            assert!(m.put(format!("key-{k:010}").as_bytes(), k));
        }
        let slots = m.slots.get().len();
        let mut total = 0;
        for k in 0..n {
            let d = m.digest(format!("key-{k:010}").as_bytes());
            let i = m.find(d);
            total += (i + slots - m.start(d)) % slots + 1;
            assert_eq!(m.get(format!("key-{k:010}").as_bytes()), Some(k));
        }
        let avg = total as f64 / n as f64;
        assert!(avg < 3.0, "average probe length {avg}");
    }
}
