//! Records per second through the Waterline consumer (acknowledging every record, committing
//! every 10 ms) next to a bare rdkafka `StreamConsumer` with auto-commit (borrowing each
//! record, and detaching it into an owned copy): same in-process broker, same data, same run,
//! 100-byte and 1 KiB records.
//!
//! Each sample consumes the whole topic (`RECORDS` records over 4 partitions) with a fresh
//! consumer and group; both use an explicit assignment. Connecting, finding the coordinator and
//! receiving the first record happen in the (untimed) input; the timed part is the remaining
//! `RECORDS - 1` records, so the figures are steady-state throughput.

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

const RECORDS: usize = 50_000;
const PARTITIONS: i32 = 4;

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
        .create()
        .unwrap();
    let payload = vec![b'x'; size];
    let mut futs = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
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
    let env = &*ENV;
    bencher
        .counter(ItemsCount::new(RECORDS - 1))
        .with_inputs(|| {
            env.rt.block_on(async {
                let tps = (0..PARTITIONS)
                    .map(|p| TopicPartition::new(topic(size), p))
                    .collect();
                let c = Consumer::new(
                    ConsumerConfig::builder(&env.addr, group())
                        .assign(tps)
                        // Stricter than the "every second": a timed run lasts tens of
                        // milliseconds, so commit every 10 ms to have commits inside it.
                        .commit_policy(Interval::new(10).unwrap())
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
                for _ in 1..RECORDS {
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
        .counter(ItemsCount::new(RECORDS - 1))
        .with_inputs(|| {
            env.rt.block_on(async {
                let c: StreamConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &env.addr)
                    .set("group.id", group())
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", "1000")
                    .create()
                    .unwrap();
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
                for _ in 1..RECORDS {
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
        .counter(ItemsCount::new(RECORDS - 1))
        .with_inputs(|| {
            env.rt.block_on(async {
                let c: StreamConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &env.addr)
                    .set("group.id", group())
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", "1000")
                    .create()
                    .unwrap();
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
                for _ in 1..RECORDS {
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
