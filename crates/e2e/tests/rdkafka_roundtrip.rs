//! The Rust `rdkafka` crate (librdkafka) produces keyed records with headers under every
//! compression codec and reads them back with assign(): bytes, keys, headers, timestamps and
//! offsets must match exactly, and ListOffsets by time must find the first record at or after
//! the time asked.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use waterline_e2e::TestBroker;

const BASE_TS: i64 = 1_700_000_000_000;
const TIMEOUT: Duration = Duration::from_secs(20);

struct Rec {
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
}

fn records(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let len = [0usize, 1, 17, 100, 1000, 4000][i % 6];
            Rec {
                key: format!("key-{}", i % 10).into_bytes(),
                value: (0..len).map(|j| ((i * 31 + j * 7) % 251) as u8).collect(),
                headers: vec![
                    ("idx".to_string(), i.to_string().into_bytes()),
                    ("bin".to_string(), vec![(i % 256) as u8, 0, 255]),
                ],
                timestamp: BASE_TS + (i as i64) * 10,
            }
        })
        .collect()
}

fn first_offset_at_or_after(recs: &[Rec], ts: i64) -> Option<i64> {
    recs.iter()
        .position(|r| r.timestamp >= ts)
        .map(|i| i as i64)
}

async fn produce(bootstrap: &str, topic: &str, codec: &str, recs: &[Rec]) -> Vec<i64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("compression.type", codec)
        .set("linger.ms", "20")
        .set("broker.address.family", "v4")
        .create()
        .expect("producer");
    let sends = recs.iter().map(|r| {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        producer.send(
            FutureRecord::to(topic)
                .key(&r.key)
                .payload(&r.value)
                .headers(headers)
                .timestamp(r.timestamp),
            TIMEOUT,
        )
    });
    join_all(sends)
        .await
        .into_iter()
        .map(|res| {
            let delivery = res.map_err(|(e, _)| e).expect("delivery");
            assert_eq!(delivery.partition, 0);
            delivery.offset
        })
        .collect()
}

fn consumer(bootstrap: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("assign-{topic}"))
        .set("enable.auto.commit", "false")
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    c
}

fn check_roundtrip(c: &BaseConsumer, recs: &[Rec]) {
    let mut got = 0usize;
    let deadline = std::time::Instant::now() + TIMEOUT;
    while got < recs.len() && std::time::Instant::now() < deadline {
        let Some(msg) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.expect("message");
        let r = &recs[got];
        assert_eq!(msg.offset(), got as i64);
        assert_eq!(msg.key(), Some(r.key.as_slice()));
        assert_eq!(msg.payload().unwrap_or_default(), r.value.as_slice());
        assert_eq!(msg.timestamp(), Timestamp::CreateTime(r.timestamp));
        let headers: Vec<(String, Vec<u8>)> = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(headers, r.headers);
        got += 1;
    }
    assert_eq!(got, recs.len(), "not every record came back");
}

fn check_offsets_for_times(c: &BaseConsumer, topic: &str, recs: &[Rec]) {
    let first = recs[0].timestamp;
    let last = recs[recs.len() - 1].timestamp;
    for ts in [
        first - 1000,
        first,
        first + 5,
        recs[recs.len() / 2].timestamp,
        last,
        last + 1,
    ] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(ts))
            .expect("tpl");
        let found = c
            .offsets_for_times(tpl, TIMEOUT)
            .expect("offsets_for_times");
        let got = found.elements()[0].offset();
        let want = match first_offset_at_or_after(recs, ts) {
            Some(o) => Offset::Offset(o),
            None => Offset::End,
        };
        assert_eq!(got, want, "offset for time {ts}");
    }
    let (low, high) = c.fetch_watermarks(topic, 0, TIMEOUT).expect("watermarks");
    assert_eq!((low, high), (0, recs.len() as i64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips_exactly() {
    let broker = TestBroker::start().await.expect("broker");
    let bootstrap = broker.bootstrap();
    let recs = records(60);
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("rdkafka-{codec}");
        let offsets = produce(&bootstrap, &topic, codec, &recs).await;
        assert_eq!(
            offsets,
            (0..recs.len() as i64).collect::<Vec<_>>(),
            "{codec}"
        );
        let topic2 = topic.clone();
        let bootstrap2 = bootstrap.clone();
        let recs2 = records(60);
        tokio::task::spawn_blocking(move || {
            let c = consumer(&bootstrap2, &topic2);
            check_roundtrip(&c, &recs2);
            check_offsets_for_times(&c, &topic2, &recs2);
        })
        .await
        .expect("consumer thread");
    }
    broker.shutdown().await.expect("shutdown");
}
