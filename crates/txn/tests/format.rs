//! The durable record format: round trips, a golden encoding that must keep decoding (the
//! backward-compatibility test of format version 1), and corruption of every kind refused with
//! a typed error.

use proptest::prelude::*;
use waterline_txn::*;

fn sample() -> TxnRecord {
    TxnRecord {
        transactional_id: "tx-1".to_owned(),
        state: TxnState::PrepareCommit,
        producer_id: 1000,
        previous_producer_id: 999,
        producer_epoch: 3,
        last_producer_epoch: 2,
        transaction_timeout_ms: 60_000,
        partitions: vec![TopicPartition::new("a", 0), TopicPartition::new("b", 7)],
        groups: vec!["g".to_owned()],
        transaction_start_ms: 1_700_000_000_000,
        last_update_ms: 1_700_000_000_500,
    }
}

/// `sample()` encoded by format version 1. Never change this constant: a new version adds a
/// new golden record, and this one must still decode.
const GOLDEN_V1: &str = concat!(
    "00000049fab0f905010200000000000003e800000000000003e7000300020000ea60",
    "0000018bcfe568000000018bcfe569f4000474782d3100000002000161000000000001",
    "620000000700000001000167"
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn golden_v1_record_decodes() {
    let bytes = sample().encode();
    assert_eq!(hex(&bytes), GOLDEN_V1, "the v1 encoding changed");
    let (record, used) = TxnRecord::decode(&unhex(GOLDEN_V1)).expect("decodes");
    assert_eq!(record, sample());
    assert_eq!(used, GOLDEN_V1.len() / 2);
}

#[test]
fn header_fields_are_where_the_format_says() {
    let bytes = sample().encode();
    let len = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(len + HEADER_LEN, bytes.len());
    let crc = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
    assert_eq!(crc, crc32c::crc32c(&bytes[8..]));
    assert_eq!(bytes[8], FORMAT_VERSION);
    assert_eq!(bytes[9], TxnState::PrepareCommit.id());
}

#[test]
fn every_flipped_bit_is_refused() {
    let bytes = sample().encode();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let r = TxnRecord::decode(&b);
            assert!(r.is_err(), "flip of bit {bit} in byte {i} decoded: {r:?}");
        }
    }
}

#[test]
fn every_truncation_is_refused_as_truncated() {
    let bytes = sample().encode();
    for n in 0..bytes.len() {
        match TxnRecord::decode(&bytes[..n]) {
            Err(DecodeError::Truncated { available, .. }) => assert_eq!(available, n),
            other => panic!("{n} bytes: {other:?}"),
        }
    }
}

/// Re-frames a body (version byte included) with a correct length and CRC.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn unknown_version_and_malformed_bodies_are_typed_errors() {
    let bytes = sample().encode();
    let mut payload = bytes[HEADER_LEN..].to_vec();
    payload[0] = 2;
    assert_eq!(
        TxnRecord::decode(&frame(&payload)),
        Err(DecodeError::UnknownVersion(2))
    );

    let mut payload = bytes[HEADER_LEN..].to_vec();
    payload[1] = 9;
    assert_eq!(
        TxnRecord::decode(&frame(&payload)),
        Err(DecodeError::Malformed("unknown state"))
    );

    let mut payload = bytes[HEADER_LEN..].to_vec();
    payload.push(0);
    assert_eq!(
        TxnRecord::decode(&frame(&payload)),
        Err(DecodeError::Malformed("trailing bytes"))
    );

    let payload = &bytes[HEADER_LEN..bytes.len() - 1];
    assert_eq!(
        TxnRecord::decode(&frame(payload)),
        Err(DecodeError::Malformed("body ends early"))
    );

    // A huge element count is refused before anything is allocated for it.
    let mut payload = bytes[HEADER_LEN..].to_vec();
    let count_at = 1 + 1 + 8 + 8 + 2 + 2 + 4 + 8 + 8 + 2 + "tx-1".len();
    payload[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        TxnRecord::decode(&frame(&payload)),
        Err(DecodeError::Malformed("element count exceeds the record"))
    );

    let mut garbage = vec![0xff; 16];
    garbage[0] = 0x7f;
    assert!(matches!(
        TxnRecord::decode(&garbage),
        Err(DecodeError::TooLong(_))
    ));
}

#[test]
fn decode_all_stops_at_a_torn_tail() {
    let a = sample();
    let b = TxnRecord {
        transactional_id: "tx-2".to_owned(),
        state: TxnState::Dead,
        partitions: Vec::new(),
        groups: Vec::new(),
        ..sample()
    };
    let mut file = a.encode();
    b.encode_into(&mut file);
    let whole = decode_all(&file);
    assert_eq!(whole.records, vec![a.clone(), b.clone()]);
    assert_eq!(whole.valid_len, file.len());
    assert_eq!(whole.error, None);

    let first_len = a.encode().len();
    for cut in first_len..file.len() {
        let torn = decode_all(&file[..cut]);
        assert_eq!(torn.records, vec![a.clone()], "cut at {cut}");
        assert_eq!(torn.valid_len, first_len);
        assert_eq!(torn.error.is_some(), cut > first_len);
    }

    let mut corrupt = file.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    let r = decode_all(&corrupt);
    assert_eq!(r.records, vec![a]);
    assert!(matches!(r.error, Some(DecodeError::CrcMismatch { .. })));
}

fn arb_state() -> impl Strategy<Value = TxnState> {
    prop::sample::select(TxnState::ALL.to_vec())
}

fn arb_record() -> impl Strategy<Value = TxnRecord> {
    (
        "[a-z0-9._-]{1,40}",
        arb_state(),
        any::<i64>(),
        any::<i64>(),
        any::<i16>(),
        any::<i16>(),
        any::<i32>(),
        prop::collection::vec(("[a-z]{1,20}", any::<i32>()), 0..8),
        prop::collection::vec("\\PC{0,30}", 0..4),
        any::<i64>(),
        any::<u64>(),
    )
        .prop_map(
            |(id, state, pid, prev, e, le, t, ps, groups, start, upd)| TxnRecord {
                transactional_id: id,
                state,
                producer_id: pid,
                previous_producer_id: prev,
                producer_epoch: e,
                last_producer_epoch: le,
                transaction_timeout_ms: t,
                partitions: ps
                    .into_iter()
                    .map(|(t, p)| TopicPartition::new(t, p))
                    .collect(),
                groups,
                transaction_start_ms: start,
                last_update_ms: upd,
            },
        )
}

proptest! {
    #[test]
    fn round_trip(record in arb_record()) {
        let bytes = record.encode();
        let (decoded, used) = TxnRecord::decode(&bytes).expect("decodes");
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(decoded, record);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = TxnRecord::decode(&bytes);
        let r = decode_all(&bytes);
        prop_assert!(r.valid_len <= bytes.len());
    }
}
