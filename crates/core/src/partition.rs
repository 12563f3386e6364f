//! Single-threaded, per-partition offset tracking.
//!
//! [`PartitionTracker`] follows one partition: offsets are handed out in increasing order (gaps,
//! e.g. from compaction or transaction markers, count as done), acknowledged in any order, and
//! the commit point is the lowest offset not yet acknowledged — Kafka's "next offset to read".
//!
//! Numeric offsets only: sources with opaque positions ([`crate::Position::Text`] /
//! [`crate::Position::Bytes`]) commit their positions straight to a store without a tracker.
//!
//! # Memory and cost
//!
//! Acked offsets beyond the commit point live in a ring bitmap relative to the commit point
//! (1 bit per offset of the live span; the ring is at most 2x the span right after growing, and
//! is shrunk back to 2x once the span falls to a quarter of it, so at most 4x in between). An ack is a bit set plus word-level scans
//! (64 offsets per step) to the neighbouring run boundaries, so its cost is O(1) plus
//! O(length of the adjacent runs / 64) — constant for acks shuffled within a bounded window.
//! The commit point advances over acked runs word by word, each bit cleared once (amortised
//! O(1) per ack).
//!
//! # Exact encoded size, incrementally
//!
//! The tracker keeps the number of acked runs ("blocks"), the varint bytes of every run except
//! the leading unacked one, and the first/last acked offsets. From these the sizes of both
//! encodings in [`crate::encoding`] follow in O(1) ([`PartitionTracker::encoded_len`]) and equal
//! the length of what [`PartitionTracker::acked_set`] encodes to.
//!
//! # Admission control
//!
//! Offsets handed out but not yet acked may still be acked in any order, so the encoding can
//! grow after the fact. [`PartitionTracker::admit`] bounds the largest encoding reachable from
//! the current state by acking any subset of what is (or would be) handed out, and says no
//! before that bound exceeds the budget. The bound is `min(bitmap, run-length)` where:
//!
//! * bitmap: the span can reach the highest handed-out offset;
//! * run-length: an unacked run of `k` offsets between two acked runs can be split into at
//!   most `floor((k-1)/2)` new acked runs, one at either end (leading, trailing) into at most
//!   `floor(k/2)`; with `R` the largest possible number of runs, varint bytes are at most
//!   `R + span/128`, since a run of length `n` takes at most `1 + n/128` bytes.
//!
//! The commit point itself may always be handed out, and so may any offset while nothing is in
//! flight (everything below it then becomes done), so a full budget never deadlocks.
//!
//! # Commit metadata
//!
//! [`PartitionTracker::commit_candidate`] puts the `wl1:` string form into
//! [`OffsetAndMetadata::metadata`]; stores that keep bytes take
//! `acked_set().encode_bytes()` instead. The budget applies to the configured
//! [`MetadataForm`].

use std::collections::VecDeque;

use crate::encoding::{AckedSet, DEFAULT_METADATA_BUDGET, MetadataForm, varint_len};
use crate::error::{DecodeError, TrackerError};
use crate::offset::{OffsetAndMetadata, Position};
use crate::window::AckBits;

/// Most hand-out time checkpoints kept per partition (bounds memory under long stalls).
const MAX_HANDOUT_MARKS: usize = 1024;

/// Tracker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Largest metadata, in `metadata_form`, that a commit may carry (Kafka default 4096).
    pub metadata_budget: usize,
    /// Whether metadata is committed as a base64 string or as raw bytes.
    pub metadata_form: MetadataForm,
    /// Hard cap on how far past the commit point an offset may be handed out (bounds memory:
    /// `max_window / 8` bytes of bitmap at most, times 2 for ring slack).
    pub max_window: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            metadata_budget: DEFAULT_METADATA_BUDGET,
            metadata_form: MetadataForm::String,
            max_window: 1 << 22,
        }
    }
}

impl TrackerConfig {
    /// Checks that the settings are usable.
    pub fn validate(&self) -> Result<(), TrackerError> {
        if self.max_window == 0 {
            return Err(TrackerError::InvalidConfig("max_window must be >= 1"));
        }
        if self.max_window > 1 << 40 {
            return Err(TrackerError::InvalidConfig("max_window must be <= 2^40"));
        }
        Ok(())
    }
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The commit point moved from `from` to `to`.
    Advanced {
        /// Previous commit point.
        from: i64,
        /// New commit point.
        to: i64,
    },
    /// Recorded beyond the commit point; the commit point did not move.
    Pending,
    /// Already acknowledged (or below the commit point); nothing changed.
    Duplicate,
    /// Issued under an older or revoked assignment generation; ignored.
    Stale,
}

/// Offset tracking for one partition, without locking.
#[derive(Debug, Clone)]
pub struct PartitionTracker {
    config: TrackerConfig,
    /// Lowest offset not yet acknowledged (what a commit records).
    commit_point: i64,
    /// Every offset below this was handed out or skipped; `next >= commit_point`.
    next: i64,
    /// Set bits = acked offsets above the commit point; all other bits zero.
    bits: AckBits,
    /// Number of maximal acked runs above the commit point.
    blocks: u64,
    /// Lowest acked offset above the commit point (valid when `blocks > 0`).
    first_acked: i64,
    /// Highest acked offset (valid when `blocks > 0`).
    max_acked: i64,
    /// Start of the run ending at `max_acked` (valid when `blocks > 0`).
    last_block_start: i64,
    /// Varint bytes of all acked runs and of the unacked runs between them.
    inner_varint: u64,
    /// Sum of `floor((k-1)/2)` over unacked runs of length `k` between acked runs.
    inner_slack: u64,
    /// Number of acked offsets above the commit point.
    acked_beyond: u64,
    /// Handed out and not yet acknowledged.
    in_flight: u64,
    /// (first offset handed out at `time`, `time`), ascending; for the oldest unacked age.
    handouts: VecDeque<(i64, i64)>,
    /// Last offset known committed.
    committed: Option<i64>,
    /// Acks arrived since the last commit was taken.
    dirty: bool,
}

impl PartitionTracker {
    /// A tracker starting at `start` (the next offset to read) with nothing committed.
    pub fn new(start: i64, config: TrackerConfig) -> Result<Self, TrackerError> {
        config.validate()?;
        if start < 0 {
            return Err(TrackerError::NegativeOffset(start));
        }
        Ok(Self {
            config,
            commit_point: start,
            next: start,
            bits: AckBits::default(),
            blocks: 0,
            first_acked: 0,
            max_acked: 0,
            last_block_start: 0,
            inner_varint: 0,
            inner_slack: 0,
            acked_beyond: 0,
            in_flight: 0,
            handouts: VecDeque::new(),
            committed: None,
            dirty: false,
        })
    }

    /// Restores from a committed offset and its metadata.
    ///
    /// Metadata that is not Waterline's (no `wl1:` prefix) or that is relative to a different
    /// offset (e.g. an operator reset the offset) is ignored: those offsets are processed again,
    /// which is safe. Corrupt Waterline metadata is an error. Acked offsets beyond
    /// `max_window` are dropped (processed again).
    pub fn restore(
        committed: &OffsetAndMetadata,
        config: TrackerConfig,
    ) -> Result<Self, TrackerError> {
        let start = match committed.position {
            Position::Offset(o) => o,
            _ => return Err(TrackerError::OpaquePosition),
        };
        let mut t = Self::new(start, config)?;
        t.committed = Some(start);
        let set = match AckedSet::decode_string(start, &committed.metadata) {
            Ok(s) => s,
            Err(DecodeError::ForeignMetadata | DecodeError::BaseMismatch { .. }) => {
                AckedSet::empty(start)
            }
            Err(e) => return Err(e.into()),
        };
        let limit = start.saturating_add(config.max_window as i64);
        for &(s, e) in set.ranges() {
            if s >= limit {
                break;
            }
            t.append_range(s, e.min(limit));
        }
        Ok(t)
    }

    /// The configuration.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Lowest offset not yet acknowledged: what a commit now would record.
    pub fn commit_point(&self) -> i64 {
        self.commit_point
    }

    /// Last offset recorded as committed ([`commit_succeeded`](Self::commit_succeeded)).
    pub fn committed(&self) -> Option<i64> {
        self.committed
    }

    /// The lowest offset that may be handed out next.
    pub fn next_hand_out(&self) -> i64 {
        self.next
    }

    /// Offsets handed out and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Offsets acknowledged beyond the commit point.
    pub fn acked_beyond(&self) -> u64 {
        self.acked_beyond
    }

    /// Bytes of heap held by the acked-offset bitmap and hand-out time marks.
    pub fn heap_bytes(&self) -> usize {
        self.bits.heap_bytes() + self.handouts.capacity() * std::mem::size_of::<(i64, i64)>()
    }

    /// Bytes of heap held by the acked-offset bitmap alone.
    pub fn bitmap_heap_bytes(&self) -> usize {
        self.bits.heap_bytes()
    }

    /// Whether `offset` still needs processing (false for offsets already done).
    pub fn should_process(&self, offset: i64) -> bool {
        offset >= self.commit_point && !self.is_acked(offset)
    }

    #[inline]
    fn is_acked(&self, o: i64) -> bool {
        self.blocks > 0 && o >= self.first_acked && o <= self.max_acked && self.bits.get(o)
    }

    /// Whether handing out `offset` keeps every reachable encoding within the budget and the
    /// window. Handing out the commit point itself is always admitted.
    pub fn admit(&self, offset: i64) -> bool {
        if offset < self.next || offset == i64::MAX || self.is_acked(offset) {
            return false;
        }
        // Nothing in flight: everything below `offset` becomes done, so `offset` becomes the
        // commit point and the encoding can only shrink. This also keeps a partition whose
        // commit point is a gap in the log from deadlocking.
        if self.in_flight == 0 || offset == self.commit_point {
            return true;
        }
        if (offset - self.commit_point) as u64 >= self.config.max_window {
            return false;
        }
        self.config
            .metadata_form
            .len_of(self.worst_case_len(offset + 1))
            <= self.config.metadata_budget
    }

    /// [`admit`](Self::admit) for the next offset in sequence.
    pub fn can_hand_out(&self) -> bool {
        self.admit(self.next)
    }

    /// The end of the run of offsets that may be handed out in order from
    /// [`next_hand_out`](Self::next_hand_out) without asking [`admit`](Self::admit) for each:
    /// every offset `o` with `next_hand_out() <= o < admit_run_end()` is admitted once the ones
    /// before it are handed out, and stays so whatever is acknowledged meanwhile (acks only
    /// shrink the reachable encodings and move the window up). Equal to `next_hand_out()` when
    /// offsets ahead were already acknowledged before a restart (those must be skipped, one
    /// by one).
    ///
    /// It lets a caller hand out a run of offsets without holding the tracker (see
    /// [`hand_out_run`](Self::hand_out_run)): O(log window) to compute, so compute it once per
    /// run, not per offset.
    pub fn admit_run_end(&self) -> i64 {
        let next = self.next;
        if self.blocks > 0 && self.max_acked >= next {
            return next;
        }
        let window_end = self
            .commit_point
            .saturating_add(self.config.max_window as i64);
        let fits = |o: i64| {
            self.config.metadata_form.len_of(self.worst_case_len(o + 1))
                <= self.config.metadata_budget
        };
        // `fits` is monotone in `o` (the bound grows with the span): find the first misfit.
        let (mut lo, mut hi) = (next, window_end.min(i64::MAX - 1));
        if lo >= hi || !fits(lo) {
            return next;
        }
        // Invariant: fits(lo), and every offset from `hi` on is out.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    /// Hands out every offset from [`next_hand_out`](Self::next_hand_out) up to `end`
    /// (exclusive) at `now_ms`: the same as [`hand_out`](Self::hand_out) of each in order
    /// (offsets already done, from a restored commit, are skipped), in O(1) after the first
    /// when none is. Callers keep `end` within [`admit_run_end`](Self::admit_run_end)
    /// as computed before the run (this only enforces the hard window).
    pub fn hand_out_run(&mut self, end: i64, now_ms: i64) -> Result<(), TrackerError> {
        let first = self.next;
        if end <= first {
            return Ok(());
        }
        if self.blocks > 0 && self.max_acked >= first {
            // Some offsets ahead are already done (restored): those are skipped.
            for o in first..end {
                if !self.is_acked(o) {
                    self.hand_out(o, now_ms)?;
                }
            }
            return Ok(());
        }
        let last = end - 1;
        let distance = (last - self.commit_point) as u64;
        if last > first && distance >= self.config.max_window {
            return Err(TrackerError::WindowExceeded {
                offset: last,
                distance,
                max_window: self.config.max_window,
            });
        }
        self.hand_out(first, now_ms)?;
        // The rest continue the run: no gap to skip, nothing acked among them.
        self.in_flight += (end - first - 1) as u64;
        self.next = end;
        Ok(())
    }

    /// Records that `offset` was handed out for processing at `now_ms`.
    ///
    /// Offsets skipped since the last hand-out (compaction, transaction markers) count as done.
    /// Callers should check [`admit`](Self::admit) first; this only enforces the hard window.
    pub fn hand_out(&mut self, offset: i64, now_ms: i64) -> Result<(), TrackerError> {
        if offset == i64::MAX {
            return Err(TrackerError::OffsetOutOfRange(offset));
        }
        if offset < self.next {
            return Err(TrackerError::OutOfOrderHandOut {
                offset,
                next: self.next,
            });
        }
        if self.is_acked(offset) {
            return Err(TrackerError::AlreadyDone(offset));
        }
        if self.blocks == 0 && self.in_flight == 0 {
            // Nothing outstanding: the commit point jumps over any gap.
            if offset > self.commit_point {
                self.dirty = true;
            }
            self.commit_point = offset;
            self.handouts.clear();
        } else {
            let distance = (offset - self.commit_point) as u64;
            // With nothing in flight the commit point moves up to `offset`: no window needed.
            if self.in_flight > 0 && distance >= self.config.max_window {
                return Err(TrackerError::WindowExceeded {
                    offset,
                    distance,
                    max_window: self.config.max_window,
                });
            }
            self.skip_gap(self.next, offset);
        }
        self.next = offset + 1;
        self.in_flight += 1;
        self.mark_handout(offset, now_ms);
        Ok(())
    }

    fn mark_handout(&mut self, offset: i64, now_ms: i64) {
        match self.handouts.back() {
            Some(&(_, t)) if t == now_ms => {}
            _ => {
                if self.handouts.len() >= MAX_HANDOUT_MARKS {
                    // Drop every other mark after the first: later offsets then inherit an
                    // earlier time, so ages are over-estimated, never under-estimated.
                    let mut i = 0u32;
                    self.handouts.retain(|_| {
                        i += 1;
                        i % 2 == 1
                    });
                }
                self.handouts.push_back((offset, now_ms));
            }
        }
        self.trim_handouts();
    }

    /// Drops hand-out marks wholly below the commit point; the front mark then covers it.
    fn trim_handouts(&mut self) {
        while self.handouts.len() >= 2 && self.handouts[1].0 <= self.commit_point {
            self.handouts.pop_front();
        }
    }

    /// Marks the never-handed-out offsets in `[lo, hi)` as done.
    fn skip_gap(&mut self, lo: i64, hi: i64) {
        let mut x = lo;
        while x < hi {
            if x < self.commit_point {
                x = self.commit_point;
                continue;
            }
            if x == self.commit_point {
                if self.blocks == 0 {
                    // Nothing acked beyond: jump (a gap may be huge).
                    self.commit_point = hi;
                    self.dirty = true;
                    return;
                }
                self.advance();
                self.dirty = true;
                x += 1;
                continue;
            }
            if self.blocks == 0 || x > self.max_acked {
                self.append_range(x, hi);
                self.dirty = true;
                return;
            }
            if !self.bits.get(x) {
                self.mark(x);
                self.dirty = true;
            }
            x += 1;
        }
    }

    /// Acknowledges `offset`.
    pub fn ack(&mut self, offset: i64) -> Result<AckOutcome, TrackerError> {
        if offset < self.commit_point {
            return Ok(AckOutcome::Duplicate);
        }
        if offset >= self.next {
            return Err(TrackerError::NotHandedOut {
                offset,
                next: self.next,
            });
        }
        if offset > self.commit_point && self.is_acked(offset) {
            return Ok(AckOutcome::Duplicate);
        }
        self.in_flight -= 1;
        self.dirty = true;
        if offset == self.commit_point {
            let from = self.commit_point;
            self.advance();
            Ok(AckOutcome::Advanced {
                from,
                to: self.commit_point,
            })
        } else {
            self.mark(offset);
            Ok(AckOutcome::Pending)
        }
    }

    /// The commit point was acked: move it to the next unacked offset.
    fn advance(&mut self) {
        if self.blocks == 0 || self.first_acked > self.commit_point + 1 {
            self.commit_point += 1;
        } else {
            let first = self.first_acked;
            let end = self.bits.next_zero(first);
            self.bits.clear_range(first, end);
            let len = (end - first) as u64;
            self.acked_beyond -= len;
            self.commit_point = end;
            if end > self.max_acked {
                self.blocks = 0;
                self.inner_varint = 0;
                self.inner_slack = 0;
                self.bits.release();
            } else {
                let nf = self.bits.next_one(end + 1, self.max_acked);
                let k = (nf - end) as u64;
                self.blocks -= 1;
                self.inner_varint -= (varint_len(len) + varint_len(k)) as u64;
                self.inner_slack -= k.saturating_sub(1) / 2;
                self.first_acked = nf;
                self.bits.maybe_shrink(self.commit_point, self.max_acked);
            }
        }
        if self.next < self.commit_point {
            self.next = self.commit_point;
        }
        self.trim_handouts();
    }

    /// Records `[lo, hi)` as acked, all above `max_acked` (or nothing acked) and above the
    /// commit point.
    fn append_range(&mut self, lo: i64, hi: i64) {
        debug_assert!(lo > self.commit_point && lo < hi);
        debug_assert!(self.blocks == 0 || lo > self.max_acked);
        self.bits.ensure(
            self.commit_point,
            if self.blocks == 0 {
                self.commit_point
            } else {
                self.max_acked
            },
            hi - 1,
        );
        self.bits.set_range(lo, hi);
        let n = (hi - lo) as u64;
        if self.blocks == 0 {
            self.blocks = 1;
            self.first_acked = lo;
            self.last_block_start = lo;
            self.inner_varint = varint_len(n) as u64;
            self.inner_slack = 0;
        } else if lo == self.max_acked + 1 {
            let old = (self.max_acked + 1 - self.last_block_start) as u64;
            self.inner_varint += (varint_len(old + n) - varint_len(old)) as u64;
        } else {
            let k = (lo - self.max_acked - 1) as u64;
            self.inner_varint += (varint_len(k) + varint_len(n)) as u64;
            self.inner_slack += (k - 1) / 2;
            self.blocks += 1;
            self.last_block_start = lo;
        }
        self.max_acked = hi - 1;
        self.acked_beyond += n;
    }

    /// Records a single unacked `o > commit_point` as acked, keeping run statistics exact.
    fn mark(&mut self, o: i64) {
        if self.blocks == 0 || o > self.max_acked {
            self.append_range(o, o + 1);
            return;
        }
        self.acked_beyond += 1;
        if o < self.first_acked {
            // In the leading unacked run: joins or precedes the first acked run.
            let first = self.first_acked;
            if o == first - 1 {
                let b = (self.bits.next_zero(first) - first) as u64;
                self.inner_varint += (varint_len(b + 1) - varint_len(b)) as u64;
                if self.last_block_start == first {
                    self.last_block_start = o;
                }
            } else {
                let k = (first - o - 1) as u64;
                self.inner_varint += (varint_len(k) + 1) as u64;
                self.inner_slack += (k - 1) / 2;
                self.blocks += 1;
            }
            self.first_acked = o;
            self.bits.set(o);
            return;
        }
        // Strictly inside: an unacked run between two acked runs is split or closed.
        let ls = self.bits.prev_one(o - 1, self.first_acked);
        let rs = self.bits.next_one(o + 1, self.max_acked);
        let big_l = (rs - ls - 1) as u64;
        let l = (o - ls - 1) as u64;
        let r = (rs - o - 1) as u64;
        self.inner_varint -= varint_len(big_l) as u64;
        self.inner_slack -= (big_l - 1) / 2;
        match (l > 0, r > 0) {
            (true, true) => {
                self.inner_varint += (varint_len(l) + 1 + varint_len(r)) as u64;
                self.inner_slack += (l - 1) / 2 + (r - 1) / 2;
                self.blocks += 1;
            }
            (false, true) => {
                let a = (ls - self.bits.prev_zero(ls)) as u64;
                self.inner_varint += (varint_len(a + 1) - varint_len(a) + varint_len(r)) as u64;
                self.inner_slack += (r - 1) / 2;
            }
            (true, false) => {
                let b = (self.bits.next_zero(rs) - rs) as u64;
                self.inner_varint += (varint_len(b + 1) - varint_len(b) + varint_len(l)) as u64;
                self.inner_slack += (l - 1) / 2;
                if rs == self.last_block_start {
                    self.last_block_start = o;
                }
            }
            (false, false) => {
                let z = self.bits.prev_zero(ls);
                let a = (ls - z) as u64;
                let b = (self.bits.next_zero(rs) - rs) as u64;
                self.inner_varint += varint_len(a + b + 1) as u64;
                self.inner_varint -= (varint_len(a) + varint_len(b)) as u64;
                self.blocks -= 1;
                if rs == self.last_block_start {
                    self.last_block_start = z + 1;
                }
            }
        }
        self.bits.set(o);
    }

    /// Exact byte length of the run-length encoding of the current acked set.
    pub fn run_length_len(&self) -> usize {
        if self.blocks == 0 {
            return 0;
        }
        let k0 = (self.first_acked - self.commit_point - 1) as u64;
        2 + varint_len(self.commit_point as u64)
            + varint_len(2 * self.blocks)
            + varint_len(k0)
            + self.inner_varint as usize
    }

    /// Exact byte length of the bitmap encoding of the current acked set.
    pub fn bitmap_len(&self) -> usize {
        if self.blocks == 0 {
            return 0;
        }
        let span = (self.max_acked - self.commit_point) as u64;
        2 + varint_len(self.commit_point as u64) + varint_len(span) + span.div_ceil(8) as usize
    }

    /// Exact length of `acked_set().encode_bytes()`, maintained incrementally.
    pub fn encoded_len(&self) -> usize {
        self.run_length_len().min(self.bitmap_len())
    }

    /// Exact metadata length in the configured form.
    pub fn metadata_len(&self) -> usize {
        self.config.metadata_form.len_of(self.encoded_len())
    }

    /// Upper bound on the encoded length (raw bytes) reachable by acking any subset of the
    /// offsets handed out so far.
    pub fn worst_case_encoded_len(&self) -> usize {
        self.worst_case_len(self.next)
    }

    /// Bound as if everything below `next` were handed out (see the module docs).
    fn worst_case_len(&self, next: i64) -> usize {
        let top = if self.blocks > 0 {
            (next - 1).max(self.max_acked)
        } else {
            next - 1
        };
        if top <= self.commit_point {
            return 0;
        }
        let span = (top - self.commit_point) as u64;
        let max_blocks = if self.blocks == 0 {
            span.div_ceil(2)
        } else {
            let k0 = (self.first_acked - self.commit_point - 1) as u64;
            let kt = (top - self.max_acked) as u64;
            self.blocks + self.inner_slack + k0 / 2 + kt / 2
        };
        // The base can only grow, to at most top + 1.
        let base_len = varint_len((top + 1) as u64);
        let runs = 2 * max_blocks;
        let rle = 2 + base_len + varint_len(runs) + runs as usize + (span / 128) as usize;
        let bitmap = 2 + base_len + varint_len(span) + span.div_ceil(8) as usize;
        rle.min(bitmap)
    }

    /// The acked offsets beyond the commit point.
    pub fn acked_set(&self) -> AckedSet {
        let mut ranges = Vec::with_capacity(self.blocks as usize);
        if self.blocks > 0 {
            let mut s = self.first_acked;
            loop {
                let e = self.bits.next_zero(s);
                ranges.push((s, e));
                if e > self.max_acked {
                    break;
                }
                s = self.bits.next_one(e, self.max_acked);
            }
        }
        AckedSet::from_ranges_unchecked(self.commit_point, ranges)
    }

    /// Whether a commit would record something new.
    pub fn needs_commit(&self) -> bool {
        self.dirty || self.committed != Some(self.commit_point)
    }

    /// What to commit now: the commit point with the acked set as `wl1:` string metadata.
    ///
    /// Fails with [`TrackerError::Encode`] when the encoding exceeds the budget, which only
    /// happens if admission control was bypassed; committing the bare commit point (empty
    /// metadata) is then still safe (the acked offsets are processed again).
    pub fn commit_candidate(&self, now_ms: i64) -> Result<OffsetAndMetadata, TrackerError> {
        let set = self.acked_set();
        let needed = self.metadata_len();
        if needed > self.config.metadata_budget {
            return Err(crate::error::EncodeError::OverBudget {
                needed,
                budget: self.config.metadata_budget,
            }
            .into());
        }
        Ok(OffsetAndMetadata::new(self.commit_point, now_ms).with_metadata(set.encode_string()))
    }

    /// Takes a commit if one is needed, marking the state clean until new acks arrive.
    pub fn take_commit(&mut self, now_ms: i64) -> Result<Option<OffsetAndMetadata>, TrackerError> {
        if !self.needs_commit() {
            return Ok(None);
        }
        let c = self.commit_candidate(now_ms)?;
        self.mark_taken();
        Ok(Some(c))
    }

    /// Marks the current state as handed to a commit (clean until new acks arrive).
    pub(crate) fn mark_taken(&mut self) {
        self.dirty = false;
    }

    /// Records that a commit of `offset` is durable.
    pub fn commit_succeeded(&mut self, offset: i64) {
        self.committed = Some(offset);
    }

    /// Records that a taken commit failed, so the next [`take_commit`](Self::take_commit)
    /// retries it.
    pub fn commit_failed(&mut self) {
        self.dirty = true;
    }

    /// Age of the oldest handed-out, unacknowledged record (the one at the commit point).
    /// May over-estimate after very long stalls (hand-out times are kept at bounded precision).
    pub fn oldest_unacked_age_ms(&self, now_ms: i64) -> Option<u64> {
        if self.in_flight == 0 || self.commit_point >= self.next {
            return None;
        }
        self.handouts
            .front()
            .map(|&(_, t)| now_ms.saturating_sub(t).max(0) as u64)
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let set = self.acked_set();
        assert_eq!(self.run_length_len(), set.run_length_len(), "rle size");
        assert_eq!(self.bitmap_len(), set.bitmap_len(), "bitmap size");
        assert_eq!(self.acked_beyond, set.len(), "acked count");
        assert_eq!(self.blocks as usize, set.ranges().len(), "blocks");
        if let Some(&(s, _)) = set.ranges().first() {
            assert_eq!(s, self.first_acked);
        }
        if let Some(&(s, e)) = set.ranges().last() {
            assert_eq!(e - 1, self.max_acked);
            assert_eq!(s, self.last_block_start);
        }
        let mut slack = 0;
        for w in set.ranges().windows(2) {
            slack += ((w[1].0 - w[0].1) as u64 - 1) / 2;
        }
        assert_eq!(slack, self.inner_slack, "slack");
        assert!(self.next >= self.commit_point);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(start: i64) -> PartitionTracker {
        PartitionTracker::new(start, TrackerConfig::default()).unwrap()
    }

    fn hand(t: &mut PartitionTracker, range: std::ops::Range<i64>) {
        for o in range {
            t.hand_out(o, 0).unwrap();
        }
    }

    #[test]
    fn commit_point_is_lowest_unacked() {
        let mut t = tracker(100);
        hand(&mut t, 100..110);
        assert_eq!(t.ack(103).unwrap(), AckOutcome::Pending);
        assert_eq!(t.ack(101).unwrap(), AckOutcome::Pending);
        assert_eq!(t.commit_point(), 100);
        assert_eq!(
            t.ack(100).unwrap(),
            AckOutcome::Advanced { from: 100, to: 102 }
        );
        assert_eq!(
            t.ack(102).unwrap(),
            AckOutcome::Advanced { from: 102, to: 104 }
        );
        assert_eq!(t.ack(103).unwrap(), AckOutcome::Duplicate);
        assert_eq!(t.in_flight(), 6);
        t.check_invariants();
    }

    #[test]
    fn ack_of_unhanded_offset_is_an_error() {
        let mut t = tracker(0);
        hand(&mut t, 0..3);
        assert!(matches!(
            t.ack(3),
            Err(TrackerError::NotHandedOut { offset: 3, next: 3 })
        ));
        assert!(matches!(
            t.hand_out(1, 0),
            Err(TrackerError::OutOfOrderHandOut { .. })
        ));
        assert!(!t.admit(i64::MAX));
        assert_eq!(
            t.hand_out(i64::MAX, 0),
            Err(TrackerError::OffsetOutOfRange(i64::MAX))
        );
        assert_eq!(
            PartitionTracker::new(-1, TrackerConfig::default()).unwrap_err(),
            TrackerError::NegativeOffset(-1)
        );
        let bad = TrackerConfig {
            max_window: 0,
            ..TrackerConfig::default()
        };
        assert!(matches!(
            PartitionTracker::new(0, bad),
            Err(TrackerError::InvalidConfig(_))
        ));
    }

    #[test]
    fn gaps_count_as_done() {
        let mut t = tracker(0);
        t.hand_out(0, 0).unwrap();
        t.hand_out(5, 0).unwrap(); // 1..5 compacted away
        t.ack(5).unwrap();
        t.check_invariants();
        assert_eq!(t.ack(0).unwrap(), AckOutcome::Advanced { from: 0, to: 6 });
        // Nothing outstanding: a gap just moves the commit point.
        t.hand_out(1000, 0).unwrap();
        assert_eq!(t.commit_point(), 1000);
    }

    #[test]
    fn sizes_track_every_shape() {
        let mut t = tracker(0);
        hand(&mut t, 0..2000);
        // Long runs (>= 128) exercise multi-byte varints on every path.
        let order: Vec<i64> = (1000..1300)
            .chain([500, 499, 501, 200, 1999, 1500, 1501, 1499])
            .chain((300..499).rev())
            .chain(502..1000)
            .chain(1..200)
            .chain(201..300)
            .collect();
        for o in order {
            t.ack(o).unwrap();
            t.check_invariants();
        }
        t.ack(0).unwrap();
        t.check_invariants();
        assert_eq!(t.commit_point(), 1300);
    }

    #[test]
    fn restore_skips_done_offsets() {
        let mut t = tracker(0);
        hand(&mut t, 0..10);
        for o in [2, 3, 7] {
            t.ack(o).unwrap();
        }
        let c = t.take_commit(1).unwrap().unwrap();
        assert_eq!(c.offset(), Some(0));
        let r = PartitionTracker::restore(&c, TrackerConfig::default()).unwrap();
        r.check_invariants();
        let todo: Vec<i64> = (0..10).filter(|&o| r.should_process(o)).collect();
        assert_eq!(todo, vec![0, 1, 4, 5, 6, 8, 9]);
        assert!(!r.should_process(-1));
        // Done offsets ahead: no run may be handed out blindly until past them.
        assert_eq!(r.admit_run_end(), r.next_hand_out());
        let mut r = r;
        r.hand_out_run(10, 5).unwrap();
        assert_eq!(
            (r.next_hand_out(), r.in_flight()),
            (10, 7),
            "done ones skipped"
        );
        assert!(r.admit_run_end() > 10, "past the done offsets");
    }

    #[test]
    fn restored_tracker_rereads_and_advances() {
        let c = OffsetAndMetadata::new(10, 0).with_metadata(
            AckedSet::from_offsets(10, [11, 12, 14])
                .unwrap()
                .encode_string(),
        );
        let mut r = PartitionTracker::restore(&c, TrackerConfig::default()).unwrap();
        assert!(r.can_hand_out());
        r.hand_out(10, 0).unwrap();
        assert!(matches!(
            r.hand_out(11, 0),
            Err(TrackerError::AlreadyDone(11))
        ));
        assert_eq!(
            r.ack(10).unwrap(),
            AckOutcome::Advanced { from: 10, to: 13 }
        );
        assert_eq!(r.next_hand_out(), 13);
        r.hand_out(15, 0).unwrap(); // 13 skipped: done; then 14 was done already
        r.check_invariants();
        assert_eq!(r.commit_point(), 15);
    }

    #[test]
    fn gap_at_restored_commit_point_does_not_deadlock() {
        // Restored near a tiny budget; the commit point 10 was compacted away.
        let cfg = TrackerConfig {
            metadata_budget: 12,
            ..TrackerConfig::default()
        };
        let set = AckedSet::from_offsets(10, [12, 14]).unwrap();
        let c = OffsetAndMetadata::new(10, 0).with_metadata(set.encode_string());
        let mut r = PartitionTracker::restore(&c, cfg).unwrap();
        assert!(r.admit(11));
        r.hand_out(11, 0).unwrap();
        assert_eq!(r.commit_point(), 11);
        assert_eq!(
            r.ack(11).unwrap(),
            AckOutcome::Advanced { from: 11, to: 13 }
        );
        // A huge gap with nothing in flight is a jump, not a walk.
        let far = 1_000_000_000_000;
        assert!(r.admit(far));
        r.hand_out(far, 0).unwrap();
        assert_eq!(r.commit_point(), far);
        r.check_invariants();
    }

    #[test]
    fn restore_ignores_foreign_rejects_corrupt() {
        let foreign = OffsetAndMetadata::new(5, 0).with_metadata("my app data");
        let r = PartitionTracker::restore(&foreign, TrackerConfig::default()).unwrap();
        assert!(r.should_process(6));
        let corrupt = OffsetAndMetadata::new(5, 0).with_metadata("wl1:AQE=");
        assert!(matches!(
            PartitionTracker::restore(&corrupt, TrackerConfig::default()),
            Err(TrackerError::Metadata(_))
        ));
        let opaque = OffsetAndMetadata {
            position: Position::Text("file:9".into()),
            metadata: String::new(),
            commit_timestamp_ms: 0,
            leader_epoch: None,
        };
        assert!(matches!(
            PartitionTracker::restore(&opaque, TrackerConfig::default()),
            Err(TrackerError::OpaquePosition)
        ));
    }

    #[test]
    fn admission_stops_before_budget_overflow() {
        let cfg = TrackerConfig {
            metadata_budget: 64,
            ..TrackerConfig::default()
        };
        let mut t = PartitionTracker::new(0, cfg).unwrap();
        let mut o = 0;
        while t.can_hand_out() {
            t.hand_out(o, 0).unwrap();
            o += 1;
        }
        assert!(o > 1);
        // Ack the worst pattern: every other offset.
        for x in (1..o).step_by(2) {
            t.ack(x).unwrap();
        }
        assert!(t.metadata_len() <= 64);
        assert!(t.commit_candidate(0).is_ok());
        // The commit point is always admitted once it is the next offset.
        assert!(t.admit(0) || t.next_hand_out() > 0);
        t.ack(0).unwrap();
        assert!(t.worst_case_encoded_len() <= 64);
    }

    #[test]
    fn window_is_a_hard_limit() {
        let cfg = TrackerConfig {
            max_window: 100,
            ..TrackerConfig::default()
        };
        let mut t = PartitionTracker::new(0, cfg).unwrap();
        t.hand_out(0, 0).unwrap();
        assert!(!t.admit(100));
        assert!(matches!(
            t.hand_out(100, 0),
            Err(TrackerError::WindowExceeded { .. })
        ));
        assert!(t.admit(99));
    }

    #[test]
    fn oldest_age_follows_commit_point() {
        let mut t = tracker(0);
        t.hand_out(0, 1_000).unwrap();
        t.hand_out(1, 2_000).unwrap();
        t.hand_out(2, 3_000).unwrap();
        assert_eq!(t.oldest_unacked_age_ms(5_000), Some(4_000));
        t.ack(0).unwrap();
        assert_eq!(t.oldest_unacked_age_ms(5_000), Some(3_000));
        t.ack(2).unwrap();
        t.ack(1).unwrap();
        assert_eq!(t.oldest_unacked_age_ms(5_000), None);
    }

    #[test]
    fn commit_bookkeeping() {
        let mut t = tracker(0);
        assert!(t.needs_commit());
        hand(&mut t, 0..3);
        t.ack(0).unwrap();
        let c = t.take_commit(7).unwrap().unwrap();
        assert_eq!((c.offset(), c.commit_timestamp_ms), (Some(1), 7));
        assert!(t.needs_commit()); // not yet confirmed
        t.commit_succeeded(1);
        assert!(!t.needs_commit());
        assert_eq!(t.take_commit(8).unwrap(), None);
        t.ack(2).unwrap();
        assert!(
            t.take_commit(9)
                .unwrap()
                .unwrap()
                .metadata
                .starts_with("wl1:")
        );
        t.commit_failed();
        assert!(t.needs_commit());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Applies hand-outs of `0..n` (minus `gaps`) and acks in `order`, checking the incremental
    /// statistics against a full re-encode after every step.
    fn run(n: i64, gaps: &[bool], order: &[usize]) -> PartitionTracker {
        let mut t = PartitionTracker::new(0, TrackerConfig::default()).unwrap();
        let mut handed = Vec::new();
        for o in 0..n {
            if gaps.get(o as usize).copied().unwrap_or(false) {
                continue;
            }
            t.hand_out(o, o).unwrap();
            handed.push(o);
            t.check_invariants();
        }
        let mut pending = handed;
        for &i in order {
            if pending.is_empty() {
                break;
            }
            let o = pending.swap_remove(i % pending.len());
            t.ack(o).unwrap();
            t.check_invariants();
            assert!(t.worst_case_encoded_len() >= t.encoded_len());
        }
        t
    }

    proptest! {
        /// A run handed out at once leaves the tracker exactly as handing out its offsets one
        /// by one does, and every offset below `admit_run_end` is admitted in turn.
        #[test]
        fn hand_out_run_matches_one_by_one(
            start in 0i64..1000,
            first in 0i64..40,
            len in 1i64..400,
            acks in proptest::collection::vec(any::<usize>(), 0..40),
            budget in prop_oneof![Just(64usize), Just(200), Just(4096)],
        ) {
            let config = TrackerConfig { metadata_budget: budget, ..TrackerConfig::default() };
            let mut t = PartitionTracker::new(start, config).unwrap();
            for o in start..start + first {
                t.hand_out(o, 1).unwrap();
            }
            for &i in &acks {
                if first > 0 {
                    let _ = t.ack(start + (i as i64 % first));
                }
            }
            let end = t.admit_run_end().min(t.next_hand_out() + len);
            let mut one = t.clone();
            for o in t.next_hand_out()..end {
                prop_assert!(one.admit(o) || one.in_flight() == 0, "offset {} refused", o);
                one.hand_out(o, 2).unwrap();
            }
            let mut run = t.clone();
            run.hand_out_run(end, 2).unwrap();
            run.check_invariants();
            prop_assert_eq!(run.next_hand_out(), one.next_hand_out());
            prop_assert_eq!(run.in_flight(), one.in_flight());
            prop_assert_eq!(run.commit_point(), one.commit_point());
            prop_assert_eq!(run.acked_set(), one.acked_set());
            prop_assert_eq!(run.oldest_unacked_age_ms(10), one.oldest_unacked_age_ms(10));
            // Acks of the run behave alike too.
            for o in (start..end).rev() {
                prop_assert_eq!(run.ack(o), one.ack(o));
            }
            prop_assert_eq!(run.commit_point(), one.commit_point());
        }

        #[test]
        fn incremental_sizes_are_exact(
            n in 1i64..600,
            gaps in proptest::collection::vec(proptest::bool::weighted(0.05), 600),
            order in proptest::collection::vec(any::<usize>(), 0..600),
        ) {
            let t = run(n, &gaps, &order);
            let set = t.acked_set();
            prop_assert_eq!(set.encode_bytes().len(), t.encoded_len());
            prop_assert_eq!(set.encode_string().len(), t.metadata_len());
            // Commit point = lowest unacked handed-out offset.
            prop_assert!(t.should_process(t.commit_point()) || t.in_flight() == 0);
        }

        /// The admission bound covers every subset of in-flight offsets being acked later,
        /// including the commit point (which shifts the base).
        #[test]
        fn worst_case_bound_covers_every_future(
            start in prop_oneof![Just(0i64), Just(120), Just(16_380), Just(2_097_140)],
            n in 2usize..13,
            pre in proptest::collection::vec(any::<bool>(), 13),
        ) {
            let mut t = PartitionTracker::new(start, TrackerConfig::default()).unwrap();
            for o in start..start + n as i64 {
                t.hand_out(o, 0).unwrap();
            }
            for (i, &acked) in pre.iter().enumerate().take(n).skip(1) {
                if acked {
                    t.ack(start + i as i64).unwrap();
                }
            }
            let bound = t.worst_case_encoded_len();
            let inflight: Vec<i64> =
                (start..start + n as i64).filter(|&o| t.should_process(o)).collect();
            for mask in 0u32..(1 << inflight.len()) {
                let mut u = t.clone();
                for (j, &o) in inflight.iter().enumerate() {
                    if mask & (1 << j) != 0 {
                        u.ack(o).unwrap();
                    }
                }
                prop_assert!(u.encoded_len() <= bound, "{} > {}", u.encoded_len(), bound);
            }
        }

        /// Long runs: the bound is also checked against random futures on larger windows.
        #[test]
        fn worst_case_bound_random_futures(
            n in 100i64..3000,
            density in 0.0f64..1.0,
            seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng, rngs::StdRng};
            let mut rng = StdRng::seed_from_u64(seed);
            let mut t = PartitionTracker::new(0, TrackerConfig::default()).unwrap();
            for o in 0..n {
                t.hand_out(o, 0).unwrap();
            }
            for o in 1..n {
                if rng.random_bool(density) {
                    t.ack(o).unwrap();
                }
            }
            let bound = t.worst_case_encoded_len();
            for _ in 0..4 {
                let mut u = t.clone();
                let p = rng.random_range(0.0..1.0);
                for o in 0..n {
                    if u.should_process(o) && o >= u.commit_point() && rng.random_bool(p) {
                        u.ack(o).unwrap();
                    }
                }
                prop_assert!(u.encoded_len() <= bound);
            }
            // Alternating is the worst pattern for run-length.
            let mut u = t.clone();
            for o in (1..n).step_by(2) {
                if u.should_process(o) {
                    u.ack(o).unwrap();
                }
            }
            prop_assert!(u.encoded_len() <= bound);
        }
    }
}
