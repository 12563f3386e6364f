//! Key-ordered processing with simulated I/O: `Consumer::process` with 10 ms of sleep per
//! record, 4 partitions, 10 000 keys (each key on partition `key % 4`), concurrency 1 000.
//!
//! Runs, each with a fresh group over the same data, against an in-process broker:
//! - `key`: `Ordering::Key`, uniformly random keys; compared with the ideal
//!   (concurrency / processing time = 100 000 records/s);
//! - `unordered`: `Ordering::Unordered`, same data and concurrency (the consumer's ceiling on
//!   this machine, no ordering);
//! - `sequential`: `Ordering::Partition`, one record per partition at a time (a sequential
//!   per-partition consumer; 4 partitions / 10 ms = 400 records/s ideal);
//! - `key_zipf`: `Ordering::Key` with keys drawn from a Zipf distribution (s = 1.2), over a
//!   fixed window: throughput and the age of the oldest unfinished record (which includes
//!   records waiting behind a busy key).
//!
//! Throughput is measured after a warm-up (the first 2 000 records) up to the last 2 000
//! (or the window's end), so start-up and the tail are not in it.
//!
//! `cargo bench -p waterline-consumer --bench key_order` (`WATERLINE_BENCH_RECORDS` sets the
//! uniform topic's size, default 300 000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as Atomic};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use waterline_broker::{Broker, BrokerConfig};
use waterline_consumer::{Consumer, ConsumerConfig, Interval, Ordering, TopicPartition};

const PARTITIONS: i32 = 4;
const KEYS: usize = 10_000;
const CONCURRENCY: usize = 1_000;
const WORK: Duration = Duration::from_millis(10);

fn uniform_records() -> usize {
    std::env::var("WATERLINE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000)
}

/// Keys 0..KEYS with P(k) proportional to 1 / (k + 1)^s, by inverse transform.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += (k as f64).powf(-s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

async fn produce(addr: &str, topic: &str, keys: &[usize]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .unwrap();
    let payload = vec![b'x'; 100];
    let mut futs = Vec::with_capacity(keys.len());
    for &k in keys {
        let key = format!("key-{k}");
        futs.push(
            p.send_result(
                FutureRecord::to(topic)
                    .partition((k % PARTITIONS as usize) as i32)
                    .key(key.as_bytes())
                    .payload(&payload),
            )
            .unwrap(),
        );
    }
    for f in futs {
        f.await.unwrap().unwrap();
    }
}

struct Outcome {
    rate: f64,
    oldest_ms: u64,
}

/// Consumes `topic` with `ordering` and `concurrency`, 10 ms per record, until `total`
/// records are done or `window` passed (after the warm-up).
async fn run(
    addr: &str,
    topic: &str,
    group: &str,
    ordering: Ordering,
    concurrency: usize,
    total: u64,
    window: Duration,
) -> Outcome {
    let consumer = Arc::new(
        Consumer::new(
            ConsumerConfig::builder(addr, group)
                .assign(
                    (0..PARTITIONS)
                        .map(|p| TopicPartition::new(topic, p))
                        .collect(),
                )
                .ordering(ordering)
                .commit_policy(Interval::new(1000).unwrap())
                .set("fetch.queue.backoff.ms", "10")
                .build()
                .unwrap(),
        )
        .unwrap(),
    );
    let done = Arc::new(AtomicU64::new(0));
    let (c, d) = (Arc::clone(&consumer), Arc::clone(&done));
    let worker = tokio::spawn(async move {
        c.process(concurrency, move |_record| {
            let d = Arc::clone(&d);
            async move {
                tokio::time::sleep(WORK).await;
                d.fetch_add(1, Atomic::Relaxed);
                Ok::<(), String>(())
            }
        })
        .await
    });
    let warm = 2_000.min(total / 10);
    while done.load(Atomic::Relaxed) < warm {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (t0, n0) = (Instant::now(), done.load(Atomic::Relaxed));
    let stop = total.saturating_sub(warm);
    let mut oldest_ms = 0;
    let mut sampled = Instant::now();
    while done.load(Atomic::Relaxed) < stop && t0.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if sampled.elapsed() >= Duration::from_millis(100) {
            sampled = Instant::now();
            let m = consumer.metrics();
            oldest_ms = oldest_ms.max(m.oldest_in_flight_age_ms.unwrap_or(0));
        }
    }
    let (t1, n1) = (Instant::now(), done.load(Atomic::Relaxed));
    consumer.shutdown(Duration::from_secs(10)).await;
    worker.await.unwrap().unwrap();
    Outcome {
        rate: (n1 - n0) as f64 / (t1 - t0).as_secs_f64(),
        oldest_ms,
    }
}

fn main() {
    let broker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let broker = broker_rt
        .block_on(async {
            let mut config = BrokerConfig {
                data_dir,
                listen: "127.0.0.1:0".into(),
                auto_create_topics: true,
                default_partitions: PARTITIONS,
                ..Default::default()
            };
            config.groups.initial_rebalance_delay_ms = 0;
            Broker::start(config).await
        })
        .unwrap();
    let addr = broker.local_addr().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let n = uniform_records();
        let mut rng = rand::rng();
        let uniform: Vec<usize> = (0..n).map(|_| rng.random_range(0..KEYS)).collect();
        let zipf = Zipf::new(KEYS, 1.2);
        let skewed: Vec<usize> = (0..200_000).map(|_| zipf.sample(&mut rng)).collect();
        let hot = skewed.iter().filter(|k| **k == 0).count() as f64 / skewed.len() as f64;
        produce(&addr, "ko-uniform", &uniform).await;
        produce(&addr, "ko-zipf", &skewed).await;
        let ideal = CONCURRENCY as f64 / WORK.as_secs_f64();
        println!(
            "records: {n} uniform, {} zipf (hottest key {:.1}% of them); ideal {ideal:.0}/s",
            skewed.len(),
            hot * 100.0
        );
        let long = Duration::from_secs(120);
        let key = run(
            &addr,
            "ko-uniform",
            "g-key",
            Ordering::Key,
            CONCURRENCY,
            n as u64,
            long,
        )
        .await;
        println!(
            "key        {:>9.0} records/s  {:5.1}% of ideal",
            key.rate,
            key.rate / ideal * 100.0
        );
        let unordered = run(
            &addr,
            "ko-uniform",
            "g-unordered",
            Ordering::Unordered,
            CONCURRENCY,
            n as u64,
            long,
        )
        .await;
        println!(
            "unordered  {:>9.0} records/s  {:5.1}% of ideal",
            unordered.rate,
            unordered.rate / ideal * 100.0
        );
        let seq = run(
            &addr,
            "ko-uniform",
            "g-seq",
            Ordering::Partition,
            PARTITIONS as usize,
            n as u64,
            Duration::from_secs(10),
        )
        .await;
        println!(
            "sequential {:>9.0} records/s  (key mode: {:.0}x)",
            seq.rate,
            key.rate / seq.rate
        );
        let z = run(
            &addr,
            "ko-zipf",
            "g-zipf",
            Ordering::Key,
            CONCURRENCY,
            skewed.len() as u64,
            Duration::from_secs(20),
        )
        .await;
        println!(
            "key_zipf   {:>9.0} records/s  {:5.1}% of ideal, oldest unfinished record {} ms",
            z.rate,
            z.rate / ideal * 100.0,
            z.oldest_ms
        );
    });
    broker_rt.block_on(async { broker.shutdown().await.unwrap() });
}
