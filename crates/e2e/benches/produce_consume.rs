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
//! in 256 KiB chunks, each followed by fdatasync, then (separately) written once and fsynced.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use waterline_e2e::TestBroker;

const RECORD: usize = 1024;

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

fn consume(bootstrap: &str, topic: &str, partitions: i32, bytes: usize) -> f64 {
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
    while got < want {
        if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
            let msg = msg.expect("message");
            got_bytes += msg.payload().map_or(0, <[u8]>::len);
            got += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "consume stalled");
    }
    got_bytes as f64 / start.elapsed().as_secs_f64() / 1e6
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
    let raw_chunked = raw_write_fsync(bytes, 256 * 1024);
    let raw_once = raw_write_fsync(bytes, bytes);
    println!("raw sequential write + fdatasync every 256 KiB: {raw_chunked:.1} MB/s");
    println!("raw sequential write + one fdatasync at the end: {raw_once:.1} MB/s");
    runtime.block_on(async {
        // The broker's data dir is a temp dir on the same file system as the raw-fsync file.
        let broker = TestBroker::start().await.expect("broker");
        let bootstrap = broker.bootstrap();
        for partitions in [1, 8] {
            let topic = format!("bench-{partitions}");
            create_topic(&bootstrap, &topic, partitions).await;
            let p = produce(&bootstrap, &topic, partitions, bytes).await;
            println!(
                "produce acks=all, {partitions} partition(s): {:.1} MB/s ({:.0}% of raw write+fdatasync/256KiB), p50 {:.1} ms, p99 {:.1} ms",
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
            println!("consume from page cache, {partitions} partition(s): {c:.1} MB/s");
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
