//! Compact encoding of offsets acknowledged beyond the commit point.
//!
//! With out-of-order acknowledgement the commit point `C` (the lowest offset not yet acked, which
//! is what Kafka commits) can lag behind many offsets that are already done. Those are recorded
//! in the commit's metadata so a restarted consumer skips them instead of processing them again.
//!
//! # Format (version 1)
//!
//! The empty set (nothing acked beyond `C`) encodes as **zero bytes** (and the empty string), so
//! a plain commit carries no metadata. Otherwise, byte by byte:
//!
//! | bytes    | field   | meaning                                                              |
//! |----------|---------|----------------------------------------------------------------------|
//! | 1        | version | `0x01`                                                               |
//! | 1        | kind    | `0x01` run-length, `0x02` bitmap                                     |
//! | varint   | base    | `C`, the committed offset the set is relative to (checked on decode) |
//! | varint   | count   | run-length: number of runs; bitmap: number of bits (`span`)          |
//! | ...      | payload | see below                                                            |
//!
//! Varints are unsigned LEB128: 7 bits per byte, least significant group first, high bit set on
//! every byte but the last; at most 10 bytes, value < 2^64.
//!
//! Offset `C` itself is never acked (else the commit point would have moved), so both payloads
//! describe offsets `C+1 ..= C+span`, where `C+span` is the highest acked offset.
//!
//! * **Run-length** (`kind = 1`): `count` varints, alternating run lengths, starting with an
//!   *unacked* run that begins at `C+1` (may be 0), then an acked run (>= 1), an unacked run
//!   (>= 1), ..., ending with an acked run. `count` is therefore even and >= 2.
//! * **Bitmap** (`kind = 2`): `ceil(span / 8)` bytes; bit `i` (byte `i / 8`, bit `i % 8`, least
//!   significant first) is set when offset `C+1+i` is acked. The last bit (`span - 1`) is set and
//!   padding bits are zero, so every set has exactly one bitmap encoding.
//!
//! The encoder computes both sizes and emits the smaller (run-length on a tie).
//!
//! # String form
//!
//! Kafka commit metadata is a string, so [`AckedSet::encode_string`] writes `"wl1:"` followed by
//! the bytes in standard base64 with padding. Stores that take bytes use
//! [`AckedSet::encode_bytes`] directly. A string without the prefix is someone else's metadata
//! ([`DecodeError::ForeignMetadata`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{DecodeError, EncodeError};

/// Current format version.
pub const FORMAT_VERSION: u8 = 1;
/// Kind byte of the run-length encoding.
pub const KIND_RUN_LENGTH: u8 = 1;
/// Kind byte of the bitmap encoding.
pub const KIND_BITMAP: u8 = 2;
/// Prefix of the string form.
pub const STRING_PREFIX: &str = "wl1:";
/// Kafka's default `offset.metadata.max.bytes`.
pub const DEFAULT_METADATA_BUDGET: usize = 4096;

/// Which payload an encoding uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingKind {
    /// Alternating run lengths as varints.
    RunLength,
    /// One bit per offset.
    Bitmap,
}

/// Whether metadata travels as bytes or as a (base64) string; the budget applies to that form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataForm {
    /// `"wl1:"` + base64, for Kafka commit metadata.
    #[default]
    String,
    /// Raw bytes, for stores that keep binary metadata.
    Bytes,
}

impl MetadataForm {
    /// Size in this form of an encoding of `n` raw bytes.
    pub fn len_of(self, n: usize) -> usize {
        match self {
            MetadataForm::Bytes => n,
            MetadataForm::String => string_len(n),
        }
    }
}

/// Length of the string form of `n` encoded bytes (0 stays 0).
pub fn string_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        STRING_PREFIX.len() + n.div_ceil(3) * 4
    }
}

/// Number of bytes of `v` as an unsigned LEB128 varint.
#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 significant bits; 0 takes one byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(DecodeError::Truncated { field })?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10u32 {
            let b = self.byte(field)?;
            let group = u64::from(b & 0x7f);
            // The 10th byte may only carry the single remaining bit.
            if i == 9 && group > 1 {
                return Err(DecodeError::MalformedVarint { field });
            }
            v |= group << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::MalformedVarint { field })
    }

    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

/// Offsets acknowledged beyond a commit point, as sorted half-open ranges.
///
/// Invariants: every range is non-empty; ranges are sorted, disjoint and non-adjacent; the first
/// range starts above `base` (the commit point itself is never acked); `base >= 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedSet {
    base: i64,
    ranges: Vec<(i64, i64)>,
}

impl AckedSet {
    /// The empty set relative to commit point `base`.
    pub fn empty(base: i64) -> Self {
        Self {
            base,
            ranges: Vec::new(),
        }
    }

    /// Builds a set from half-open `[start, end)` ranges, checking the invariants.
    pub fn from_ranges(base: i64, ranges: Vec<(i64, i64)>) -> Result<Self, EncodeError> {
        if base < 0 {
            return Err(EncodeError::InvalidRanges("negative base"));
        }
        let mut prev_end = base + 1;
        for (i, &(s, e)) in ranges.iter().enumerate() {
            if s >= e {
                return Err(EncodeError::InvalidRanges("empty or reversed range"));
            }
            if i == 0 && s <= base {
                return Err(EncodeError::InvalidRanges("range at or below the base"));
            }
            if i > 0 && s <= prev_end {
                return Err(EncodeError::InvalidRanges(
                    "ranges unsorted, overlapping or adjacent",
                ));
            }
            prev_end = e;
        }
        Ok(Self { base, ranges })
    }

    /// Builds a set from individual offsets (any order, duplicates allowed), all `> base`.
    pub fn from_offsets(
        base: i64,
        offsets: impl IntoIterator<Item = i64>,
    ) -> Result<Self, EncodeError> {
        let mut v: Vec<i64> = offsets.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for o in v {
            if o <= base {
                return Err(EncodeError::InvalidRanges("offset at or below the base"));
            }
            match ranges.last_mut() {
                Some(last) if last.1 == o => last.1 = o + 1,
                _ => ranges.push((o, o + 1)),
            }
        }
        Self::from_ranges(base, ranges)
    }

    /// Internal constructor for callers that already uphold the invariants.
    pub(crate) fn from_ranges_unchecked(base: i64, ranges: Vec<(i64, i64)>) -> Self {
        debug_assert!(Self::from_ranges(base, ranges.clone()).is_ok());
        Self { base, ranges }
    }

    /// The commit point this set is relative to.
    pub fn base(&self) -> i64 {
        self.base
    }

    /// The acked ranges, half-open, ascending.
    pub fn ranges(&self) -> &[(i64, i64)] {
        &self.ranges
    }

    /// Whether no offset beyond the base is acked.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of acked offsets.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|&(s, e)| (e - s) as u64).sum()
    }

    /// Whether `offset` is in the set.
    pub fn contains(&self, offset: i64) -> bool {
        let i = self.ranges.partition_point(|&(s, _)| s <= offset);
        i > 0 && offset < self.ranges[i - 1].1
    }

    fn span(&self) -> u64 {
        self.ranges
            .last()
            .map_or(0, |&(_, e)| (e - 1 - self.base) as u64)
    }

    /// Exact size of the run-length encoding (0 for the empty set).
    pub fn run_length_len(&self) -> usize {
        if self.ranges.is_empty() {
            return 0;
        }
        let mut n = 2 + varint_len(self.base as u64) + varint_len(2 * self.ranges.len() as u64);
        let mut prev = self.base + 1;
        for &(s, e) in &self.ranges {
            n += varint_len((s - prev) as u64) + varint_len((e - s) as u64);
            prev = e;
        }
        n
    }

    /// Exact size of the bitmap encoding (0 for the empty set).
    pub fn bitmap_len(&self) -> usize {
        if self.ranges.is_empty() {
            return 0;
        }
        let span = self.span();
        2 + varint_len(self.base as u64) + varint_len(span) + span.div_ceil(8) as usize
    }

    /// The kind the encoder picks: the smaller, run-length on a tie.
    pub fn preferred_kind(&self) -> EncodingKind {
        if self.run_length_len() <= self.bitmap_len() {
            EncodingKind::RunLength
        } else {
            EncodingKind::Bitmap
        }
    }

    /// Exact length of [`encode_bytes`](Self::encode_bytes).
    pub fn encoded_len(&self) -> usize {
        self.run_length_len().min(self.bitmap_len())
    }

    /// Exact length of [`encode_string`](Self::encode_string).
    pub fn string_len(&self) -> usize {
        string_len(self.encoded_len())
    }

    /// Encodes with the smaller payload.
    pub fn encode_bytes(&self) -> Vec<u8> {
        self.encode_with(self.preferred_kind())
    }

    /// Encodes with the given payload kind (for tests and comparisons).
    pub fn encode_with(&self, kind: EncodingKind) -> Vec<u8> {
        if self.ranges.is_empty() {
            return Vec::new();
        }
        match kind {
            EncodingKind::RunLength => {
                let mut out = Vec::with_capacity(self.run_length_len());
                out.push(FORMAT_VERSION);
                out.push(KIND_RUN_LENGTH);
                put_varint(&mut out, self.base as u64);
                put_varint(&mut out, 2 * self.ranges.len() as u64);
                let mut prev = self.base + 1;
                for &(s, e) in &self.ranges {
                    put_varint(&mut out, (s - prev) as u64);
                    put_varint(&mut out, (e - s) as u64);
                    prev = e;
                }
                out
            }
            EncodingKind::Bitmap => {
                let span = self.span();
                let mut out = Vec::with_capacity(self.bitmap_len());
                out.push(FORMAT_VERSION);
                out.push(KIND_BITMAP);
                put_varint(&mut out, self.base as u64);
                put_varint(&mut out, span);
                let start = out.len();
                out.resize(start + span.div_ceil(8) as usize, 0);
                let bits = &mut out[start..];
                for &(s, e) in &self.ranges {
                    for o in s..e {
                        let i = (o - self.base - 1) as usize;
                        bits[i / 8] |= 1 << (i % 8);
                    }
                }
                out
            }
        }
    }

    /// `"wl1:"` + base64 of [`encode_bytes`](Self::encode_bytes); empty for the empty set.
    pub fn encode_string(&self) -> String {
        let bytes = self.encode_bytes();
        if bytes.is_empty() {
            return String::new();
        }
        let mut s = String::with_capacity(string_len(bytes.len()));
        s.push_str(STRING_PREFIX);
        STANDARD.encode_string(&bytes, &mut s);
        s
    }

    /// Encodes in `form`, failing if the result would exceed `budget` bytes in that form.
    pub fn encode_within(&self, form: MetadataForm, budget: usize) -> Result<Vec<u8>, EncodeError> {
        let needed = form.len_of(self.encoded_len());
        if needed > budget {
            return Err(EncodeError::OverBudget { needed, budget });
        }
        Ok(match form {
            MetadataForm::Bytes => self.encode_bytes(),
            MetadataForm::String => self.encode_string().into_bytes(),
        })
    }

    /// String form within a budget (the Kafka metadata case).
    pub fn encode_string_within(&self, budget: usize) -> Result<String, EncodeError> {
        let needed = self.string_len();
        if needed > budget {
            return Err(EncodeError::OverBudget { needed, budget });
        }
        Ok(self.encode_string())
    }

    /// Decodes bytes produced for commit point `base`.
    pub fn decode_bytes(base: i64, bytes: &[u8]) -> Result<Self, DecodeError> {
        if base < 0 {
            return Err(DecodeError::Invalid("negative base"));
        }
        if bytes.is_empty() {
            return Ok(Self::empty(base));
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.byte("version")?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.byte("kind")?;
        if kind != KIND_RUN_LENGTH && kind != KIND_BITMAP {
            return Err(DecodeError::UnknownKind(kind));
        }
        let found = r.varint("base")?;
        if found != base as u64 {
            return Err(DecodeError::BaseMismatch {
                expected: base,
                found,
            });
        }
        let count = r.varint("count")?;
        let ranges = if kind == KIND_RUN_LENGTH {
            decode_runs(base, count, &mut r)?
        } else {
            decode_bitmap(base, count, &mut r)?
        };
        Ok(Self { base, ranges })
    }

    /// Decodes the string form produced for commit point `base`; `""` is the empty set.
    pub fn decode_string(base: i64, s: &str) -> Result<Self, DecodeError> {
        if s.is_empty() {
            return Self::decode_bytes(base, &[]);
        }
        let body = s
            .strip_prefix(STRING_PREFIX)
            .ok_or(DecodeError::ForeignMetadata)?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| DecodeError::InvalidBase64)?;
        if bytes.is_empty() {
            return Err(DecodeError::Invalid("prefix without content"));
        }
        Self::decode_bytes(base, &bytes)
    }
}

fn decode_runs(base: i64, count: u64, r: &mut Reader<'_>) -> Result<Vec<(i64, i64)>, DecodeError> {
    if count < 2 || !count.is_multiple_of(2) {
        return Err(DecodeError::Invalid("run count must be even and >= 2"));
    }
    // Each run takes at least one byte: bound the count before allocating.
    if count > r.remaining() as u64 {
        return Err(DecodeError::Truncated { field: "runs" });
    }
    let mut ranges = Vec::with_capacity((count / 2) as usize);
    let mut pos: i64 = base.checked_add(1).ok_or(DecodeError::Overflow)?;
    for i in 0..count / 2 {
        let gap = r.varint("unacked run")?;
        if i > 0 && gap == 0 {
            return Err(DecodeError::Invalid("empty unacked run between acked runs"));
        }
        let acked = r.varint("acked run")?;
        if acked == 0 {
            return Err(DecodeError::Invalid("empty acked run"));
        }
        let start = add_offset(pos, gap)?;
        let end = add_offset(start, acked)?;
        ranges.push((start, end));
        pos = end;
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(ranges)
}

fn add_offset(pos: i64, n: u64) -> Result<i64, DecodeError> {
    i64::try_from(n)
        .ok()
        .and_then(|n| pos.checked_add(n))
        .ok_or(DecodeError::Overflow)
}

fn decode_bitmap(base: i64, span: u64, r: &mut Reader<'_>) -> Result<Vec<(i64, i64)>, DecodeError> {
    if span == 0 {
        return Err(DecodeError::Invalid("empty bitmap"));
    }
    add_offset(base, span)?;
    let need = span.div_ceil(8);
    let rest = r.rest();
    if (rest.len() as u64) < need {
        return Err(DecodeError::Truncated { field: "bitmap" });
    }
    if rest.len() as u64 > need {
        return Err(DecodeError::TrailingBytes(rest.len() - need as usize));
    }
    let last = (span - 1) as usize;
    if rest[last / 8] & (1 << (last % 8)) == 0 {
        return Err(DecodeError::Invalid("bitmap's last bit must be set"));
    }
    let used_in_last = span % 8;
    if used_in_last != 0 && rest[rest.len() - 1] >> used_in_last != 0 {
        return Err(DecodeError::Invalid("bitmap padding bits must be zero"));
    }
    // At most one range per two bits, and the input is already bounded in memory.
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    let mut open: Option<i64> = None;
    for i in 0..span as usize {
        let set = rest[i / 8] & (1 << (i % 8)) != 0;
        let o = base + 1 + i as i64;
        match (set, open) {
            (true, None) => open = Some(o),
            (false, Some(s)) => {
                ranges.push((s, o));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        ranges.push((s, base + 1 + span as i64));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(base: i64, offs: &[i64]) -> AckedSet {
        AckedSet::from_offsets(base, offs.iter().copied()).unwrap()
    }

    #[test]
    fn varint_len_matches_encoder() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX >> 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader { buf: &out, pos: 0 };
            assert_eq!(r.varint("x").unwrap(), v);
        }
    }

    #[test]
    fn empty_set_is_empty_metadata() {
        let s = AckedSet::empty(5);
        assert_eq!(s.encode_bytes(), Vec::<u8>::new());
        assert_eq!(s.encode_string(), "");
        assert_eq!(AckedSet::decode_string(5, "").unwrap(), s);
    }

    #[test]
    fn known_bytes_run_length() {
        // base 10, acked 12,13 and 20: runs 1 (11), 2 (12..14), 6 (14..20), 1 (20).
        let s = set(10, &[12, 13, 20]);
        assert_eq!(
            s.encode_with(EncodingKind::RunLength),
            vec![1, 1, 10, 4, 1, 2, 6, 1]
        );
        // span = 10 bits: offsets 11..=20; bits 1,2 and 9 set.
        assert_eq!(
            s.encode_with(EncodingKind::Bitmap),
            vec![1, 2, 10, 10, 0b0000_0110, 0b0000_0010]
        );
        assert_eq!(s.preferred_kind(), EncodingKind::Bitmap);
        assert_eq!(s.encoded_len(), 6);
    }

    #[test]
    fn string_form_has_prefix_and_round_trips() {
        let s = set(0, &[2, 3, 4, 9]);
        let text = s.encode_string();
        assert!(text.starts_with("wl1:"));
        assert_eq!(text.len(), s.string_len());
        assert_eq!(AckedSet::decode_string(0, &text).unwrap(), s);
    }

    #[test]
    fn decode_rejects_bad_input() {
        use DecodeError::*;
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (vec![2, 1, 0, 2, 0, 1], UnsupportedVersion(2)),
            (vec![1, 9, 0, 2, 0, 1], UnknownKind(9)),
            (vec![1], Truncated { field: "kind" }),
            (vec![1, 1], Truncated { field: "base" }),
            (
                vec![1, 1, 7, 2, 0, 1],
                BaseMismatch {
                    expected: 0,
                    found: 7,
                },
            ),
            (
                vec![1, 1, 0, 3, 0, 1, 1],
                Invalid("run count must be even and >= 2"),
            ),
            (vec![1, 1, 0, 200, 1, 0, 1], Truncated { field: "runs" }),
            (vec![1, 1, 0, 2, 0, 0], Invalid("empty acked run")),
            (
                vec![1, 1, 0, 4, 0, 1, 0, 1],
                Invalid("empty unacked run between acked runs"),
            ),
            (vec![1, 1, 0, 2, 0, 1, 5], TrailingBytes(1)),
            (
                vec![1, 1, 0, 2, 0x80, 0x80],
                Truncated {
                    field: "unacked run",
                },
            ),
            (
                vec![
                    1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                ],
                MalformedVarint { field: "base" },
            ),
            (vec![1, 2, 0, 0], Invalid("empty bitmap")),
            (vec![1, 2, 0, 9, 0xff], Truncated { field: "bitmap" }),
            (
                vec![1, 2, 0, 3, 0b011],
                Invalid("bitmap's last bit must be set"),
            ),
            (
                vec![1, 2, 0, 3, 0b1100],
                Invalid("bitmap padding bits must be zero"),
            ),
            (vec![1, 2, 0, 3, 0b100, 0], TrailingBytes(1)),
        ];
        for (bytes, want) in cases {
            assert_eq!(AckedSet::decode_bytes(0, &bytes), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn decode_rejects_overflowing_runs() {
        let mut b = vec![1, 1];
        put_varint(&mut b, i64::MAX as u64 - 1);
        put_varint(&mut b, 2);
        put_varint(&mut b, 5);
        put_varint(&mut b, 1);
        assert_eq!(
            AckedSet::decode_bytes(i64::MAX - 1, &b),
            Err(DecodeError::Overflow)
        );
    }

    #[test]
    fn decode_string_rejects_foreign_and_bad_base64() {
        assert_eq!(
            AckedSet::decode_string(0, "hello"),
            Err(DecodeError::ForeignMetadata)
        );
        assert_eq!(
            AckedSet::decode_string(0, "wl1:***"),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(
            AckedSet::decode_string(0, "wl1:"),
            Err(DecodeError::Invalid("prefix without content"))
        );
    }

    #[test]
    fn over_budget_is_typed() {
        let s = AckedSet::from_offsets(0, (1..40_000).step_by(2)).unwrap();
        let err = s.encode_string_within(DEFAULT_METADATA_BUDGET).unwrap_err();
        assert!(matches!(err, EncodeError::OverBudget { budget: 4096, .. }));
        assert!(s.encode_within(MetadataForm::Bytes, 1 << 20).is_ok());
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        assert!(AckedSet::from_ranges(5, vec![(5, 6)]).is_err());
        assert!(AckedSet::from_ranges(5, vec![(7, 7)]).is_err());
        assert!(AckedSet::from_ranges(5, vec![(7, 9), (9, 10)]).is_err());
        assert!(AckedSet::from_ranges(-1, vec![]).is_err());
        assert!(AckedSet::from_offsets(5, [4]).is_err());
    }
}
