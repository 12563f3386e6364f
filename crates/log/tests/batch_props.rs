//! Properties of produce-side batch validation: arbitrary bytes never panic, and any single
//! corrupted byte covered by the CRC or the framing is rejected.

mod common;

use kafka_protocol::records::Compression;
use proptest::prelude::*;
use waterline_log::split_batches;

fn codec() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = split_batches(&bytes, 1 << 20);
    }

    #[test]
    fn valid_batches_pass_and_split_exactly(
        sizes in prop::collection::vec((1usize..8, 0usize..64), 1..4),
        c in codec(),
    ) {
        let mut all = Vec::new();
        let mut ends = Vec::new();
        for (n, len) in sizes {
            all.extend(common::batch(&vec![1_700_000_000_000; n], len, c));
            ends.push(all.len());
        }
        let ranges = split_batches(&all, 1 << 20).unwrap();
        prop_assert_eq!(ranges.iter().map(|r| r.end).collect::<Vec<_>>(), ends);
    }

    #[test]
    fn any_flipped_byte_after_the_epoch_is_rejected(
        n in 1usize..6,
        len in 0usize..40,
        c in codec(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut b = common::batch(&vec![5; n], len, c);
        // Bytes 0..8 (base offset) and 12..16 (leader epoch) are not covered by the CRC.
        let i = 16 + at.index(b.len() - 16);
        b[i] ^= 1 << bit;
        prop_assert!(split_batches(&b, 1 << 20).is_err(), "flip at {} accepted", i);
        // The length field: any change breaks framing or the CRC.
        let mut l = common::batch(&vec![5; n], len, c);
        l[8 + at.index(4)] ^= 1 << bit;
        prop_assert!(split_batches(&l, 1 << 20).is_err());
    }
}
