//! Property tests of the `wl1` acked-set encoding: round trips, exact size prediction, the
//! choice between run-length and bitmap, worst cases, and hostile input.

use proptest::prelude::*;
use waterline_core::encoding::{MetadataForm, string_len};
use waterline_core::{AckedSet, DecodeError, EncodeError, EncodingKind};

/// A set built from a base and gap/run lengths (keeps sets valid by construction).
fn acked_set() -> impl Strategy<Value = AckedSet> {
    (
        prop_oneof![Just(0i64), 0i64..1_000_000, Just(i64::MAX / 2)],
        proptest::collection::vec((0u64..300, 1u64..300), 0..60),
    )
        .prop_map(|(base, runs)| {
            let mut ranges = Vec::new();
            let mut pos = base + 1;
            for (i, (gap, len)) in runs.into_iter().enumerate() {
                let gap = if i == 0 { gap } else { gap.max(1) };
                let s = pos + gap as i64;
                let e = s + len as i64;
                ranges.push((s, e));
                pos = e;
            }
            AckedSet::from_ranges(base, ranges).unwrap()
        })
}

proptest! {
    #[test]
    fn round_trip_and_exact_sizes(set in acked_set()) {
        for kind in [EncodingKind::RunLength, EncodingKind::Bitmap] {
            let bytes = set.encode_with(kind);
            let predicted = match kind {
                EncodingKind::RunLength => set.run_length_len(),
                EncodingKind::Bitmap => set.bitmap_len(),
            };
            prop_assert_eq!(bytes.len(), predicted);
            prop_assert_eq!(&AckedSet::decode_bytes(set.base(), &bytes).unwrap(), &set);
        }
        let best = set.encode_bytes();
        prop_assert_eq!(best.len(), set.encoded_len());
        prop_assert_eq!(set.encoded_len(), set.run_length_len().min(set.bitmap_len()));
        let s = set.encode_string();
        prop_assert_eq!(s.len(), set.string_len());
        prop_assert_eq!(s.len(), string_len(best.len()));
        prop_assert_eq!(&AckedSet::decode_string(set.base(), &s).unwrap(), &set);
        prop_assert_eq!(set.encode_within(MetadataForm::Bytes, best.len()).unwrap(), best.clone());
        if !best.is_empty() {
            prop_assert!(
                matches!(
                    set.encode_string_within(s.len() - 1),
                    Err(EncodeError::OverBudget { .. })
                ),
                "one byte under budget must fail"
            );
        }
    }

    /// Every strict non-empty prefix of a valid encoding is rejected, as is a wrong base.
    #[test]
    fn truncation_and_base_mismatch_rejected(set in acked_set()) {
        let bytes = set.encode_bytes();
        for cut in 1..bytes.len() {
            prop_assert!(AckedSet::decode_bytes(set.base(), &bytes[..cut]).is_err(), "cut {}", cut);
        }
        if !bytes.is_empty() {
            let wrong = AckedSet::decode_bytes(set.base() + 1, &bytes);
            let is_mismatch = matches!(wrong, Err(DecodeError::BaseMismatch { .. }));
            prop_assert!(is_mismatch);
        }
    }

    /// Arbitrary bytes and strings never panic; accepted input re-encodes canonically.
    #[test]
    fn hostile_input_never_panics(
        base in 0i64..1000,
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        text in ".{0,40}",
    ) {
        let mut b = bytes.clone();
        if b.len() >= 2 {
            b[0] = 1;
            b[1] = 1 + (b[1] & 1);
        }
        for input in [&bytes, &b] {
            if let Ok(set) = AckedSet::decode_bytes(base, input) {
                let again = AckedSet::decode_bytes(base, &set.encode_bytes()).unwrap();
                prop_assert_eq!(again, set);
            }
        }
        let _ = AckedSet::decode_string(base, &text);
        let _ = AckedSet::decode_string(base, &format!("wl1:{text}"));
    }
}

#[test]
fn alternating_worst_case_prefers_bitmap() {
    // Every other offset acked: run-length pays a byte per offset, bitmap an eighth.
    let set = AckedSet::from_offsets(0, (2..10_000).step_by(2)).unwrap();
    assert_eq!(set.preferred_kind(), EncodingKind::Bitmap);
    assert_eq!(set.encoded_len(), set.bitmap_len());
    assert!(set.run_length_len() > 6 * set.bitmap_len());
    let back = AckedSet::decode_bytes(0, &set.encode_bytes()).unwrap();
    assert_eq!(back, set);
}

#[test]
fn sparse_failures_prefer_run_length() {
    // 1 % of offsets held back: long acked runs.
    let set = AckedSet::from_offsets(0, (1..100_000).filter(|o| o % 100 != 0)).unwrap();
    assert_eq!(set.preferred_kind(), EncodingKind::RunLength);
    assert!(set.string_len() < 4096);
}

#[test]
fn oversized_counts_do_not_allocate() {
    // Claims 2^62 runs in a 14-byte input: must fail on the bound, not try to allocate.
    let mut b = vec![1u8, 1, 0];
    b.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    b.extend_from_slice(&[0, 1]);
    assert_eq!(
        AckedSet::decode_bytes(0, &b),
        Err(DecodeError::Truncated { field: "runs" })
    );
    // A bitmap claiming 2^60 bits.
    let mut b = vec![1u8, 2, 0];
    b.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    b.push(1);
    assert_eq!(
        AckedSet::decode_bytes(0, &b),
        Err(DecodeError::Truncated { field: "bitmap" })
    );
}
