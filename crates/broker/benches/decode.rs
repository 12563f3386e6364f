//! Request decoding cost: the pre-decode guard walk plus kafka-protocol's decode, for a typical
//! Produce frame (one topic, 8 partitions, 16 KiB of records each) and a Fetch frame.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

fn main() {
    divan::main();
}

fn frame<R: Encodable>(key: ApiKey, version: i16, req: &R) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.client_id = Some(StrBytes::from_static_str("bench"));
    h.encode(&mut buf, key.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn produce_frame() -> Vec<u8> {
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_static_str("bench"));
    t.partition_data = (0..8)
        .map(|i| {
            let mut p = PartitionProduceData::default();
            p.index = i;
            p.records = Some(Bytes::from(vec![7u8; 16 * 1024]));
            p
        })
        .collect();
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.topic_data = vec![t];
    frame(ApiKey::Produce, 9, &r)
}

fn fetch_frame() -> Vec<u8> {
    let mut t = FetchTopic::default();
    t.topic = TopicName(StrBytes::from_static_str("bench"));
    t.partitions = (0..64)
        .map(|i| {
            let mut p = FetchPartition::default();
            p.partition = i;
            p.partition_max_bytes = 1 << 20;
            p
        })
        .collect();
    let mut r = FetchRequest::default();
    r.topics = vec![t];
    frame(ApiKey::Fetch, 11, &r)
}

#[divan::bench]
fn decode_produce_8x16k(bencher: divan::Bencher) {
    let f = Bytes::from(produce_frame());
    bencher.bench(|| {
        waterline_broker::codec::decode_request_bytes(divan::black_box(f.clone())).unwrap()
    });
}

#[divan::bench]
fn decode_fetch_64_partitions(bencher: divan::Bencher) {
    let f = Bytes::from(fetch_frame());
    bencher.bench(|| {
        waterline_broker::codec::decode_request_bytes(divan::black_box(f.clone())).unwrap()
    });
}

#[divan::bench]
fn guard_only_fetch_64_partitions(bencher: divan::Bencher) {
    let f = fetch_frame();
    // Header v1: api key, version, correlation id (8 bytes) + client id "bench" (2 + 5).
    let body = &f[15..];
    assert!(waterline_broker::guard::check(1, 11, body).is_ok());
    bencher.bench(|| waterline_broker::guard::check(1, 11, divan::black_box(body)));
}
