//! Kafka transactions through a real client (librdkafka via `rdkafka`) against an in-process
//! broker, each compared with its non-transactional counterpart in the same run.
//!
//! Run: `cargo bench -p waterline-e2e --bench transactions`
//! Env: `WATERLINE_BENCH_SECS` (seconds per transaction-rate case, default 10),
//! `WATERLINE_BENCH_MB` (data per throughput case, default 64), `WATERLINE_BENCH_ROUNDS`
//! (interleaved rounds of the throughput comparisons, default 3), `WATERLINE_BENCH_PRODUCERS`
//! (comma-separated producer counts of the rate case, default `1,10,100`),
//! `WATERLINE_BENCH_ONLY_RATE=1` (skip the throughput comparisons).
//!
//! 1. **Transaction rate**: 1, 10 and 100 transactional producers (one thread and one
//!    librdkafka instance each, `BaseProducer`: the commit's flush serves delivery reports itself), each looping begin, 10 records of 100 bytes over 2 partitions,
//!    `send_offsets_to_transaction` for a consumer group, commit. Reported: committed
//!    transactions per second over all producers, and the median commit latency.
//! 2. **Produce throughput**: 1 KiB records to 2 partitions, acks=all, by an idempotent
//!    producer vs a transactional one committing every 1,000 records; interleaved rounds.
//! 3. **Consume rate**: the transactional topic of case 2 read from the start with
//!    `read_committed` vs `read_uncommitted`; interleaved rounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use waterline_e2e::TestBroker;

const RECORD: usize = 1024;
const TXN_RECORDS: usize = 10;
const TXN_RECORD_BYTES: usize = 100;
const COMMIT_EVERY: usize = 1000;
const T: Duration = Duration::from_secs(60);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn producer(bootstrap: &str, txn_id: Option<&str>) -> BaseProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("broker.address.family", "v4");
    if let Some(id) = txn_id {
        c.set("transactional.id", id);
    }
    let p: BaseProducer = c.create().expect("producer");
    if txn_id.is_some() {
        p.init_transactions(T).expect("init_transactions");
    }
    p
}

/// Serves delivery reports until nothing is in flight. rdkafka's `commit_transaction` flushes
/// first, and its flush polls in steps of up to 100 ms; draining here with short polls keeps
/// that client-side step out of the measured commit latency (the non-transactional case drains
/// the same way).
fn drain(p: &BaseProducer) {
    while p.in_flight_count() > 0 {
        // Returns as soon as a delivery report is served.
        p.poll(Duration::from_millis(50));
    }
}

fn admin_create(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(admin.create_topics(
        &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))
    .expect("create topics");
}

fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer")
}

/// (committed transactions per second, median commit latency) of `producers` concurrent
/// transactional producers over `secs` seconds.
fn txn_rate(bootstrap: &str, producers: usize, secs: u64, case: &str) -> (f64, Duration) {
    let topic = format!("txn-rate-{case}");
    admin_create(bootstrap, &topic, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(std::sync::Barrier::new(producers + 1));
    let mut threads = Vec::new();
    for i in 0..producers {
        let (bootstrap, topic) = (bootstrap.to_string(), topic.clone());
        let (stop, committed, ready) = (stop.clone(), committed.clone(), ready.clone());
        let case = case.to_string();
        threads.push(std::thread::spawn(move || {
            let p = producer(&bootstrap, Some(&format!("bench-{case}-{i}")));
            let consumer = group_consumer(&bootstrap, &format!("bench-group-{case}-{i}"));
            let metadata = consumer.group_metadata().expect("group metadata");
            let payload = vec![0x5au8; TXN_RECORD_BYTES];
            let mut latencies = Vec::new();
            let mut n: i64 = 0;
            ready.wait();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                p.begin_transaction().expect("begin");
                for r in 0..TXN_RECORDS {
                    let key = (n as u64).to_be_bytes();
                    p.send(
                        BaseRecord::to(&topic)
                            .partition((r % 2) as i32)
                            .key(&key)
                            .payload(&payload),
                    )
                    .map_err(|(e, _)| e)
                    .expect("send");
                }
                n += 1;
                let mut offsets = TopicPartitionList::new();
                offsets
                    .add_partition_offset("bench-input", 0, Offset::Offset(n))
                    .expect("tpl");
                p.send_offsets_to_transaction(&offsets, &metadata, T)
                    .expect("send_offsets_to_transaction");
                drain(&p);
                p.commit_transaction(T).expect("commit");
                latencies.push(start.elapsed());
                committed.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        }));
    }
    ready.wait();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let at_stop = committed.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("producer thread"))
        .collect();
    latencies.sort();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    (at_stop as f64 / elapsed.as_secs_f64(), p50)
}

/// MB/s producing `bytes` of 1 KiB records to 2 partitions, transactional (commit every
/// [`COMMIT_EVERY`] records) or idempotent.
fn produce_rate(bootstrap: &str, topic: &str, bytes: usize, txn_id: Option<&str>) -> f64 {
    let p = producer(bootstrap, txn_id);
    let payload = vec![0xabu8; RECORD];
    let n = bytes / RECORD;
    let start = Instant::now();
    if txn_id.is_some() {
        p.begin_transaction().expect("begin");
    }
    for i in 0..n {
        let key = (i as u64).to_be_bytes();
        loop {
            match p.send(
                BaseRecord::to(topic)
                    .partition((i % 2) as i32)
                    .key(&key)
                    .payload(&payload),
            ) {
                Ok(()) => break,
                Err((e, _)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "send: {e}"
                    );
                    p.poll(Duration::from_millis(1));
                }
            }
        }
        if i % 1000 == 0 {
            p.poll(Duration::ZERO);
        }
        if txn_id.is_some() && (i + 1) % COMMIT_EVERY == 0 {
            drain(&p);
            p.commit_transaction(T).expect("commit");
            p.begin_transaction().expect("begin");
        }
    }
    drain(&p);
    if txn_id.is_some() {
        p.commit_transaction(T).expect("commit");
    } else {
        p.flush(T).expect("flush");
    }
    (n * RECORD) as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// MB/s reading `records` records of `topic` (2 partitions) from the start.
fn consume_rate(bootstrap: &str, topic: &str, records: usize, isolation: &str) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "1048576")
        .set("broker.address.family", "v4")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let (mut got, mut got_bytes) = (0usize, 0usize);
    let start = Instant::now();
    while got < records {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            got_bytes += m.expect("message").payload().map_or(0, <[u8]>::len);
            got += 1;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "consume stalled"
        );
    }
    got_bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("transactions: pass --bench (cargo bench) to run");
        return;
    }
    let secs = env("WATERLINE_BENCH_SECS", 10);
    let bytes = env("WATERLINE_BENCH_MB", 64) as usize * 1024 * 1024;
    let rounds = env("WATERLINE_BENCH_ROUNDS", 3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let broker = runtime
        .block_on(TestBroker::start())
        .expect("broker starts");
    let bootstrap = broker.bootstrap();
    admin_create(&bootstrap, "bench-input", 1);

    println!(
        "## transaction rate ({secs} s per case, {TXN_RECORDS} x {TXN_RECORD_BYTES} B over 2 partitions + offsets)"
    );
    println!("| producers | txn/s | median commit latency |");
    println!("|---|---|---|");
    let counts: Vec<usize> = std::env::var("WATERLINE_BENCH_PRODUCERS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("WATERLINE_BENCH_PRODUCERS: numbers")
        })
        .collect();
    for producers in counts {
        let (rate, p50) = txn_rate(&bootstrap, producers, secs, &format!("p{producers}"));
        println!(
            "| {producers} | {rate:.0} | {:.1} ms |",
            p50.as_secs_f64() * 1e3
        );
    }

    if env("WATERLINE_BENCH_ONLY_RATE", 0) == 1 {
        runtime.block_on(broker.shutdown()).expect("clean shutdown");
        return;
    }
    println!();
    println!(
        "## produce throughput, {} MiB of {RECORD} B records, {rounds} interleaved rounds",
        bytes / 1024 / 1024
    );
    println!("| round | idempotent MB/s | transactional MB/s | ratio |");
    println!("|---|---|---|---|");
    let (mut ratios, mut txn_topics) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let (it, tt) = (format!("idem-{r}"), format!("txn-{r}"));
        admin_create(&bootstrap, &it, 2);
        admin_create(&bootstrap, &tt, 2);
        let idem = produce_rate(&bootstrap, &it, bytes, None);
        let txn = produce_rate(&bootstrap, &tt, bytes, Some(&format!("bench-tput-{r}")));
        ratios.push(txn / idem);
        txn_topics.push(tt);
        println!("| {r} | {idem:.1} | {txn:.1} | {:.2} |", txn / idem);
    }
    println!(
        "median ratio transactional / idempotent: {:.2}",
        median(&mut ratios)
    );

    println!();
    println!("## consume rate of a transactional topic, read_committed vs read_uncommitted");
    println!("| round | read_uncommitted MB/s | read_committed MB/s | ratio |");
    println!("|---|---|---|---|");
    let records = bytes / RECORD;
    let mut ratios = Vec::new();
    for (r, topic) in txn_topics.iter().enumerate() {
        let unc = consume_rate(&bootstrap, topic, records, "read_uncommitted");
        let com = consume_rate(&bootstrap, topic, records, "read_committed");
        ratios.push(com / unc);
        println!("| {r} | {unc:.1} | {com:.1} | {:.2} |", com / unc);
    }
    println!(
        "median ratio read_committed / read_uncommitted: {:.2}",
        median(&mut ratios)
    );
    runtime.block_on(broker.shutdown()).expect("clean shutdown");
}
