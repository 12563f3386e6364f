//! A sliding bitmap of acknowledged offsets, addressed by absolute offset.
//!
//! Words form a ring whose length is a power of two: offset `o` lives in word
//! `(o >> 6) & mask`, bit `o & 63`. The owner guarantees that the live range (commit point to
//! highest acked offset) spans fewer words than the ring, and that every bit outside the live
//! range is zero. Scans therefore stop at the commit point (a zero bit) without bounds checks
//! against wrap-around.

/// Smallest non-empty ring, in words.
const MIN_WORDS: usize = 4;

#[derive(Debug, Default, Clone)]
pub(crate) struct AckBits {
    words: Vec<u64>,
}

#[inline]
fn word_of(o: i64) -> u64 {
    (o as u64) >> 6
}

impl AckBits {
    #[inline]
    fn idx(&self, o: i64) -> usize {
        (word_of(o) as usize) & (self.words.len() - 1)
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }

    /// Capacity in words (a power of two, or 0).
    #[cfg(test)]
    pub(crate) fn words(&self) -> usize {
        self.words.len()
    }

    #[inline]
    pub(crate) fn get(&self, o: i64) -> bool {
        if self.words.is_empty() {
            return false;
        }
        (self.words[self.idx(o)] >> (o & 63)) & 1 == 1
    }

    #[inline]
    pub(crate) fn set(&mut self, o: i64) {
        let i = self.idx(o);
        self.words[i] |= 1 << (o & 63);
    }

    /// Whether `[lo, hi]` plus one spare word fits in the ring without two offsets sharing a
    /// word slot. The spare word keeps the bit after the highest live offset zero, which
    /// `next_zero` relies on.
    #[inline]
    pub(crate) fn fits(&self, lo: i64, hi: i64) -> bool {
        word_of(hi) - word_of(lo) + 2 <= self.words.len() as u64
    }

    /// Re-lays the live range `[lo, hi]` into a ring of `new_words` words.
    fn relayout(&mut self, lo: i64, hi: i64, new_words: usize) {
        let mut next = vec![0u64; new_words];
        if !self.words.is_empty() && hi >= lo {
            let old_mask = self.words.len() - 1;
            for w in word_of(lo)..=word_of(hi) {
                next[(w as usize) & (new_words - 1)] = self.words[(w as usize) & old_mask];
            }
        }
        self.words = next;
    }

    /// Grows the ring so `[lo, hi]` fits; `live_hi` is the highest offset with a set bit.
    pub(crate) fn ensure(&mut self, lo: i64, live_hi: i64, hi: i64) {
        if !self.words.is_empty() && self.fits(lo, hi) {
            return;
        }
        let need = (word_of(hi) - word_of(lo) + 2) as usize;
        let new_words = need.next_power_of_two().max(MIN_WORDS);
        self.relayout(lo, live_hi, new_words);
    }

    /// Shrinks the ring once the live range `[lo, hi]` uses a quarter of it or less, to twice
    /// the live range (hysteresis: a ring is re-laid out only after its use halves twice).
    pub(crate) fn maybe_shrink(&mut self, lo: i64, hi: i64) {
        let len = self.words.len();
        if len <= MIN_WORDS {
            return;
        }
        let need = if hi >= lo {
            (word_of(hi) - word_of(lo) + 1) as usize
        } else {
            0
        };
        if need * 4 <= len {
            let new_words = (need.next_power_of_two() * 2).max(MIN_WORDS);
            self.relayout(lo, hi, new_words);
        }
    }

    /// Frees the ring (nothing is live).
    pub(crate) fn release(&mut self) {
        self.words = Vec::new();
    }

    /// Sets every bit in `[lo, hi)`.
    pub(crate) fn set_range(&mut self, lo: i64, hi: i64) {
        let mut o = lo;
        while o < hi {
            let bit = o & 63;
            let n = (64 - bit).min(hi - o);
            let m = if n == 64 {
                !0
            } else {
                ((1u64 << n) - 1) << bit
            };
            let i = self.idx(o);
            self.words[i] |= m;
            o += n;
        }
    }

    /// Clears every bit in `[lo, hi)`.
    pub(crate) fn clear_range(&mut self, lo: i64, hi: i64) {
        let mut o = lo;
        while o < hi {
            let bit = o & 63;
            let n = (64 - bit).min(hi - o);
            let m = if n == 64 {
                !0
            } else {
                ((1u64 << n) - 1) << bit
            };
            let i = self.idx(o);
            self.words[i] &= !m;
            o += n;
        }
    }

    /// First offset `>= o` whose bit is clear. Terminates because bits beyond the live range
    /// are zero.
    #[inline]
    pub(crate) fn next_zero(&self, o: i64) -> i64 {
        let mut base = o & !63;
        let mut w = !self.words[self.idx(o)] & (!0u64 << (o & 63));
        loop {
            if w != 0 {
                return base + i64::from(w.trailing_zeros());
            }
            base += 64;
            w = !self.words[self.idx(base)];
        }
    }

    /// Last offset `<= o` whose bit is clear. Terminates because the commit point's bit is zero.
    #[inline]
    pub(crate) fn prev_zero(&self, o: i64) -> i64 {
        let mut base = o & !63;
        let sh = 63 - (o & 63);
        let mut w = (!self.words[self.idx(o)]) << sh;
        // After the shift, bit 63 is offset `o`.
        let mut top = o;
        loop {
            if w != 0 {
                return top - i64::from(w.leading_zeros());
            }
            base -= 64;
            top = base + 63;
            w = !self.words[self.idx(base)];
        }
    }

    /// First offset in `[o, limit]` whose bit is set; the caller knows one exists.
    #[inline]
    pub(crate) fn next_one(&self, o: i64, limit: i64) -> i64 {
        let mut base = o & !63;
        let mut w = self.words[self.idx(o)] & (!0u64 << (o & 63));
        loop {
            if w != 0 {
                return base + i64::from(w.trailing_zeros());
            }
            base += 64;
            debug_assert!(base <= limit, "next_one ran past its limit");
            w = self.words[self.idx(base)];
        }
    }

    /// Last offset in `[limit, o]` whose bit is set; the caller knows one exists.
    #[inline]
    pub(crate) fn prev_one(&self, o: i64, limit: i64) -> i64 {
        let mut base = o & !63;
        let sh = 63 - (o & 63);
        let mut w = self.words[self.idx(o)] << sh;
        // After the shift, bit 63 is offset `o`.
        let mut top = o;
        loop {
            if w != 0 {
                return top - i64::from(w.leading_zeros());
            }
            base -= 64;
            top = base + 63;
            debug_assert!(top >= limit, "prev_one ran past its limit");
            w = self.words[self.idx(base)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_cross_words_and_wrap() {
        let mut b = AckBits::default();
        let c = 1000; // commit point, bit stays zero
        b.ensure(c, c, c + 300);
        b.set_range(c + 1, c + 200);
        b.set(c + 250);
        assert_eq!(b.next_zero(c + 1), c + 200);
        assert_eq!(b.prev_zero(c + 199), c);
        assert_eq!(b.next_one(c + 200, c + 250), c + 250);
        assert_eq!(b.prev_one(c + 249, c + 1), c + 199);
        b.clear_range(c + 1, c + 200);
        assert!(!b.get(c + 5));
        assert!(b.get(c + 250));
        // Growing keeps the live bits in place.
        b.ensure(c, c + 250, c + 5000);
        assert!(b.get(c + 250));
        assert!(!b.get(c + 249));
        b.maybe_shrink(c + 240, c + 250);
        assert!(b.get(c + 250));
        assert_eq!(b.words(), 4);
    }
}
