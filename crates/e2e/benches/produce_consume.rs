//! Produce and consume throughput through a real client (librdkafka via `rdkafka`) against an
//! in-process broker, next to the raw sequential write + fsync rate of the same disk, measured
//! in the same run.
//!
//! Run: `cargo bench -p waterline-e2e --bench produce_consume`
//! Env: `WATERLINE_BENCH_MB` (data per case, default 256). The broker's data dir and the
//! raw-fsync file both live in the system temp dir, so both measure the same disk.
//!
//! Produce: 1 KiB records, acks=all, 1 and 8 partitions, librdkafka batching (linger 5 ms);
//! latency is from `send` to the delivery report, per record. Consume: the same records read
//! back from the page cache with assign(). Raw: the same number of bytes written sequentially
//! in 4 MiB chunks, each followed by fdatasync (the disk's sustained durable write rate; sampled
//! around every case because the virtual disk swings), and once with a single fdatasync.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use waterline_e2e::TestBroker;

const RECORD: usize = 1024;
/// Chunk size of the raw write + fdatasync baseline.
const RAW_CHUNK: usize = 4 << 20;

fn total_bytes() -> usize {
    std::env::var("WATERLINE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256usize)
        * 1024
        * 1024
}

/// MB/s of writing `bytes` in `chunk`-sized writes, each followed by fdatasync.
fn raw_write_fsync(bytes: usize, chunk: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut f = std::fs::File::create(dir.path().join("raw")).expect("create");
    let buf = vec![0x5au8; chunk];
    let start = Instant::now();
    let mut written = 0;
    while written < bytes {
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        written += chunk;
    }
    written as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

struct ProduceResult {
    mb_s: f64,
    p50: Duration,
    p99: Duration,
}

async fn produce(bootstrap: &str, topic: &str, partitions: i32, bytes: usize) -> ProduceResult {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("broker.address.family", "v4")
        .create()
        .expect("producer");
    let payload = vec![0xabu8; RECORD];
    let n = bytes / RECORD;
    let start = Instant::now();
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut latencies = Vec::with_capacity(n);
    use futures::StreamExt;
    for i in 0..n {
        let producer = &producer;
        let payload = &payload;
        let key = (i as u64).to_be_bytes();
        let partition = (i as i32) % partitions;
        in_flight.push(async move {
            let sent = Instant::now();
            producer
                .send(
                    FutureRecord::to(topic)
                        .partition(partition)
                        .key(&key)
                        .payload(payload),
                    Duration::from_secs(60),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("delivery");
            sent.elapsed()
        });
        // Keep a bounded window of outstanding sends so memory stays flat.
        if in_flight.len() >= 50_000
            && let Some(lat) = in_flight.next().await
        {
            latencies.push(lat);
        }
    }
    while let Some(lat) = in_flight.next().await {
        latencies.push(lat);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    ProduceResult {
        mb_s: (n * RECORD) as f64 / elapsed.as_secs_f64() / 1e6,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

/// (MB/s from assign() to the last record, MB/s from the first record to the last, time to the
/// first record).
fn consume(bootstrap: &str, topic: &str, partitions: i32, bytes: usize) -> (f64, f64, Duration) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "1048576")
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let want = bytes / RECORD;
    let mut got = 0usize;
    let mut got_bytes = 0usize;
    let start = Instant::now();
    let mut first: Option<(Instant, usize)> = None;
    while got < want {
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            let msg = msg.expect("message");
            let len = msg.payload().map_or(0, <[u8]>::len);
            if first.is_none() {
                first = Some((Instant::now(), len));
            }
            got_bytes += len;
            got += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "consume stalled"
        );
    }
    let total = start.elapsed();
    let (first_at, first_len) = first.expect("at least one record");
    let steady = (got_bytes - first_len) as f64 / first_at.elapsed().as_secs_f64() / 1e6;
    (
        got_bytes as f64 / total.as_secs_f64() / 1e6,
        steady,
        first_at - start,
    )
}

fn main() {
    // `cargo test --benches` runs bench binaries with no arguments to check they start; only do
    // the real (slow) measurement when invoked by `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("produce_consume: pass --bench (cargo bench) to run");
        return;
    }
    let bytes = total_bytes();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "data per case: {} MiB of {RECORD}-byte records",
        bytes / 1024 / 1024
    );
    // The virtual disk's fsync rate swings widely from second to second, so the raw baseline is
    // sampled before and after every produce case and the median is used for the ratio.
    let mut raw_samples = vec![raw_write_fsync(bytes, RAW_CHUNK)];
    let raw_once = raw_write_fsync(bytes, bytes);
    println!("raw sequential write + one fdatasync at the end: {raw_once:.1} MB/s");
    runtime.block_on(async {
        // The broker's data dir is a temp dir on the same file system as the raw-fsync file.
        let broker = TestBroker::start().await.expect("broker");
        let bootstrap = broker.bootstrap();
        for partitions in [1, 8] {
            let topic = format!("bench-{partitions}");
            create_topic(&bootstrap, &topic, partitions).await;
            let p = produce(&bootstrap, &topic, partitions, bytes).await;
            raw_samples.push(raw_write_fsync(bytes, RAW_CHUNK));
            let raw_chunked = median(&mut raw_samples);
            println!(
                "raw sequential write + fdatasync every 4 MiB, samples so far {:?} MB/s, median {raw_chunked:.1}",
                raw_samples.iter().map(|v| v.round()).collect::<Vec<_>>()
            );
            println!(
                "produce acks=all, {partitions} partition(s): {:.1} MB/s ({:.0}% of the raw median), p50 {:.1} ms, p99 {:.1} ms",
                p.mb_s,
                100.0 * p.mb_s / raw_chunked,
                p.p50.as_secs_f64() * 1e3,
                p.p99.as_secs_f64() * 1e3
            );
            let b = bootstrap.clone();
            let t = topic.clone();
            let c = tokio::task::spawn_blocking(move || consume(&b, &t, partitions, bytes))
                .await
                .expect("consumer");
            println!(
                "consume from page cache, {partitions} partition(s): {:.1} MB/s from assign(), {:.1} MB/s from the first record (first record after {:.0} ms)",
                c.0,
                c.1,
                c.2.as_secs_f64() * 1e3
            );
            let raw = raw_fetch(broker.addr(), &topic, partitions, bytes).await;
            println!(
                "broker fetch serving rate (raw Fetch v12 requests, no client decoding), {partitions} partition(s): {raw:.1} MB/s"
            );
        }
        broker.shutdown().await.expect("shutdown");
    });
}

async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .create()
        .expect("admin");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    for r in results {
        r.map_err(|(t, e)| format!("{t}: {e}")).expect("topic");
    }
}

/// Reads the whole topic with raw Fetch requests (v12, 50 MiB per response, 10 MiB per
/// partition) and returns the broker's serving rate in MB/s. Only the record-batch headers are
/// looked at (to find the next offset), so this isolates the broker from client-side decoding.
async fn raw_fetch(addr: std::net::SocketAddr, topic: &str, partitions: i32, bytes: usize) -> f64 {
    use bytes::{Buf, BufMut, BytesMut};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const VERSION: i16 = 12;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut next: Vec<i64> = vec![0; partitions as usize];
    let want = (bytes / RECORD) as i64;
    let per_partition = want / partitions as i64;
    let mut served = 0usize;
    let start = Instant::now();
    let mut correlation = 0;
    while next.iter().any(|&o| o < per_partition) {
        correlation += 1;
        let request = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(
                        (0..partitions)
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(p)
                                    .with_fetch_offset(next[p as usize])
                                    .with_partition_max_bytes(10 << 20)
                            })
                            .collect(),
                    ),
            ]);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(VERSION)
            .with_correlation_id(correlation);
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, ApiKey::Fetch.request_header_version(VERSION))
            .expect("encode header");
        request.encode(&mut buf, VERSION).expect("encode");
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        stream.write_all(&buf).await.expect("send");
        let len = stream.read_i32().await.expect("length") as usize;
        let mut frame = vec![0u8; len];
        stream.read_exact(&mut frame).await.expect("frame");
        served += len;
        let mut body = bytes::Bytes::from(frame);
        let _correlation = body.get_i32();
        // Response header v1 (flexible): tagged fields.
        let _tags = body.get_u8();
        let response = FetchResponse::decode(&mut body, VERSION).expect("decode");
        for t in &response.responses {
            for p in &t.partitions {
                let Some(records) = &p.records else { continue };
                // Walk batch headers: base offset (8) + length (4) ... last offset delta at 23.
                let mut at = 0usize;
                while at + 61 <= records.len() {
                    let base = i64::from_be_bytes(records[at..at + 8].try_into().unwrap());
                    let blen =
                        i32::from_be_bytes(records[at + 8..at + 12].try_into().unwrap()) as usize;
                    if at + 12 + blen > records.len() {
                        break;
                    }
                    let delta = i32::from_be_bytes(records[at + 23..at + 27].try_into().unwrap());
                    next[p.partition_index as usize] = base + delta as i64 + 1;
                    at += 12 + blen;
                }
            }
        }
    }
    served as f64 / start.elapsed().as_secs_f64() / 1e6
}
