//! Records per second through the Waterline consumer (acknowledging every record, committing
//! every 10 ms) next to a bare rdkafka `StreamConsumer` with auto-commit every 10 ms too
//! (borrowing each record, and detaching it into an owned copy): same in-process broker, same
//! data, same client defaults for fetching, 100-byte and 1 KiB records.
//!
//! Each sample consumes the whole topic (`records(size)` records over 4 partitions) with a
//! fresh consumer and group; all use an explicit assignment. Connecting, finding the
//! coordinator and receiving the first record happen in the (untimed) input; the timed part is
//! the remaining records, so the figures are steady-state throughput. The record counts make a
//! timed run of the bare consumer last a few hundred milliseconds, so timer and scheduling
//! noise stay small against it.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use divan::Bencher;
use divan::counter::ItemsCount;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use waterline_broker::{Broker, BrokerConfig, RunningBroker};
use waterline_consumer::waterline_core::{Interval, TopicPartition};
use waterline_consumer::{Consumer, ConsumerConfig};

const PARTITIONS: i32 = 4;
/// Bare auto-commit interval and Waterline's commit policy: the same for both, so neither
/// is charged for more commits than the other.
const COMMIT_MS: i64 = 10;

/// Client settings given to every consumer alike. librdkafka postpones the next fetch by
/// `fetch.queue.backoff.ms` (1 s by default) whenever its prefetch queue is over its
/// thresholds; with runs longer than the queue holds, that backoff would dominate the timing
/// instead of the per-record cost this bench is about.
const FETCH: &[(&str, &str)] = &[("fetch.queue.backoff.ms", "10")];

/// Records per topic: runs of a few hundred milliseconds at a couple of million records/s.
fn records(size: usize) -> usize {
    if size <= 100 { 600_000 } else { 250_000 }
}

struct Env {
    rt: tokio::runtime::Runtime,
    addr: String,
}

static DIR: LazyLock<tempfile::TempDir> = LazyLock::new(|| tempfile::tempdir().unwrap());
static BROKER: LazyLock<std::sync::Mutex<Option<RunningBroker>>> =
    LazyLock::new(|| std::sync::Mutex::new(None));
static ENV: LazyLock<Env> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let mut config = BrokerConfig {
            data_dir: DIR.path().join("data"),
            listen: "127.0.0.1:0".into(),
            auto_create_topics: true,
            default_partitions: PARTITIONS,
            ..Default::default()
        };
        config.groups.initial_rebalance_delay_ms = 0;
        let broker = Broker::start(config).await.unwrap();
        let addr = broker.local_addr().to_string();
        *BROKER.lock().unwrap() = Some(broker);
        for size in [100usize, 1024] {
            produce(&addr, &topic(size), size).await;
        }
        addr
    });
    Env { rt, addr }
});

fn topic(size: usize) -> String {
    format!("bench-{size}")
}

async fn produce(addr: &str, topic: &str, size: usize) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        // Every record is queued before the first is awaited.
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .unwrap();
    let payload = vec![b'x'; size];
    let mut futs = Vec::with_capacity(records(size));
    for i in 0..records(size) {
        let part = (i % PARTITIONS as usize) as i32;
        futs.push(
            p.send_result(
                FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(part)
                    .payload(&payload),
            )
            .unwrap(),
        );
    }
    for f in futs {
        f.await.unwrap().unwrap();
    }
}

static GROUP: AtomicUsize = AtomicUsize::new(0);

fn group() -> String {
    format!("bench-g{}", GROUP.fetch_add(1, Ordering::Relaxed))
}

#[divan::bench(args = [100, 1024], sample_count = 10, sample_size = 1)]
fn waterline(bencher: Bencher, size: usize) {
    run_waterline(bencher, size, true);
}

/// The same without reading record headers (`read_headers(false)`): what parsing them costs.
#[divan::bench(args = [100, 1024], sample_count = 10, sample_size = 1)]
fn waterline_no_headers(bencher: Bencher, size: usize) {
    run_waterline(bencher, size, false);
}

fn run_waterline(bencher: Bencher, size: usize, headers: bool) {
    let env = &*ENV;
    bencher
        .counter(ItemsCount::new(records(size) - 1))
        .with_inputs(|| {
            env.rt.block_on(async {
                let tps = (0..PARTITIONS)
                    .map(|p| TopicPartition::new(topic(size), p))
                    .collect();
                let mut config = ConsumerConfig::builder(&env.addr, group())
                    .assign(tps)
                    .read_headers(headers);
                for (k, v) in FETCH {
                    config = config.set(*k, *v);
                }
                let c = Consumer::new(
                    config
                        // Stricter than the "every second", so that a timed run has
                        // commits inside it.
                        .commit_policy(Interval::new(COMMIT_MS).unwrap())
                        .build()
                        .unwrap(),
                )
                .unwrap();
                c.recv().await.unwrap().ack();
                c
            })
        })
        .bench_local_values(|c| {
            env.rt.block_on(async {
                for _ in 1..records(size) {
                    let d = c.recv().await.unwrap();
                    divan::black_box(d.payload.as_deref());
                    d.ack();
                }
            });
            c
        });
}

#[divan::bench(args = [100, 1024], sample_count = 10, sample_size = 1)]
fn bare_rdkafka(bencher: Bencher, size: usize) {
    let env = &*ENV;
    bencher
        .counter(ItemsCount::new(records(size) - 1))
        .with_inputs(|| {
            env.rt.block_on(async {
                let mut config = ClientConfig::new();
                config
                    .set("bootstrap.servers", &env.addr)
                    .set("group.id", group())
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", COMMIT_MS.to_string());
                for (k, v) in FETCH {
                    config.set(*k, *v);
                }
                let c: StreamConsumer = config.create().unwrap();
                let mut tpl = TopicPartitionList::new();
                for p in 0..PARTITIONS {
                    tpl.add_partition_offset(&topic(size), p, Offset::Offset(0))
                        .unwrap();
                }
                c.assign(&tpl).unwrap();
                c.recv().await.unwrap();
                c
            })
        })
        .bench_local_values(|c| {
            env.rt.block_on(async {
                for _ in 1..records(size) {
                    let m = c.recv().await.unwrap();
                    divan::black_box(rdkafka::Message::payload(&m));
                }
            });
            c
        });
}

/// The bare consumer plus the copy every concurrent consumer makes: each record detached
/// into an owned message.
#[divan::bench(args = [100, 1024], sample_count = 10, sample_size = 1)]
fn bare_rdkafka_owned(bencher: Bencher, size: usize) {
    let env = &*ENV;
    bencher
        .counter(ItemsCount::new(records(size) - 1))
        .with_inputs(|| {
            env.rt.block_on(async {
                let mut config = ClientConfig::new();
                config
                    .set("bootstrap.servers", &env.addr)
                    .set("group.id", group())
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", COMMIT_MS.to_string());
                for (k, v) in FETCH {
                    config.set(*k, *v);
                }
                let c: StreamConsumer = config.create().unwrap();
                let mut tpl = TopicPartitionList::new();
                for p in 0..PARTITIONS {
                    tpl.add_partition_offset(&topic(size), p, Offset::Offset(0))
                        .unwrap();
                }
                c.assign(&tpl).unwrap();
                c.recv().await.unwrap();
                c
            })
        })
        .bench_local_values(|c| {
            env.rt.block_on(async {
                for _ in 1..records(size) {
                    // Owned copies, as handing records to concurrent tasks needs.
                    let m = c.recv().await.unwrap().detach();
                    divan::black_box(rdkafka::Message::payload(&m));
                }
            });
            c
        });
}

fn main() {
    LazyLock::force(&ENV);
    divan::main();
    if let Some(b) = BROKER.lock().unwrap().take() {
        ENV.rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(10), b.shutdown()).await;
        });
    }
    // Statics are never dropped: remove the broker's data by hand.
    let _ = std::fs::remove_dir_all(DIR.path());
}
