//! Cost of the pre-decode walk on typical bodies: a 64-partition Fetch request (broker side)
//! and a 100-topic x 10-partition Metadata response (admin side).

use bytes::BytesMut;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

fn main() {
    divan::main();
}

fn fetch_body() -> BytesMut {
    let topics = (0..8)
        .map(|t| {
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from(format!("topic-{t}"))))
                .with_partitions(
                    (0..8)
                        .map(|p| FetchPartition::default().with_partition(p))
                        .collect(),
                )
        })
        .collect();
    let mut buf = BytesMut::new();
    FetchRequest::default()
        .with_topics(topics)
        .encode(&mut buf, 11)
        .unwrap();
    buf
}

fn metadata_body() -> BytesMut {
    let topics = (0..100)
        .map(|t| {
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from(format!("topic-{t}")))))
                .with_partitions(
                    (0..10)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_replica_nodes(vec![BrokerId(1)])
                                .with_isr_nodes(vec![BrokerId(1)])
                        })
                        .collect(),
                )
        })
        .collect();
    let mut buf = BytesMut::new();
    MetadataResponse::default()
        .with_topics(topics)
        .encode(&mut buf, 12)
        .unwrap();
    buf
}

#[divan::bench]
fn request_fetch_64_partitions(bencher: divan::Bencher) {
    let body = fetch_body();
    assert!(waterline_wire::check_request(ApiKey::Fetch as i16, 11, &body).is_ok());
    bencher.bench(|| waterline_wire::check_request(1, 11, divan::black_box(&body)));
}

#[divan::bench]
fn response_metadata_1000_partitions(bencher: divan::Bencher) {
    let body = metadata_body();
    assert!(waterline_wire::check_response(ApiKey::Metadata as i16, 12, &body).is_ok());
    bencher.bench(|| waterline_wire::check_response(3, 12, divan::black_box(&body)));
}
