//! Test helpers shared by the integration tests: building v2 record batches.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One v2 batch of `stamps.len()` records with `value_len`-byte values, encoded by
/// kafka-protocol (an independent encoder, so the log is checked against real client bytes).
pub fn batch(stamps: &[i64], value_len: usize, compression: Compression) -> Vec<u8> {
    let records: Vec<Record> = stamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch when offset - sequence changes.
            sequence: i as i32,
            timestamp: ts,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; value_len])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode batch");
    buf.to_vec()
}

/// The bytes of `b` as the log stores them at `base`.
pub fn stored(b: &[u8], base: i64) -> Vec<u8> {
    let mut v = b.to_vec();
    v[..8].copy_from_slice(&base.to_be_bytes());
    v
}
