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
use std::time::{Duration, Instant};

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
/// `WATERLINE_BENCH_COMMIT_MS` overrides it (the "every second" is 1000).
fn commit_ms() -> i64 {
    std::env::var("WATERLINE_BENCH_COMMIT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

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

/// A started Waterline consumer that has received (and acked) its first record.
fn waterline_ready(size: usize) -> Consumer {
    let env = &*ENV;
    env.rt.block_on(async {
        let tps = (0..PARTITIONS)
            .map(|p| TopicPartition::new(topic(size), p))
            .collect();
        let mut config = ConsumerConfig::builder(&env.addr, group())
            .assign(tps)
            // Stricter than the "every second", so that a timed run has commits
            // inside it.
            .commit_policy(Interval::new(commit_ms()).unwrap());
        for (k, v) in FETCH {
            config = config.set(*k, *v);
        }
        let c = Consumer::new(config.build().unwrap()).unwrap();
        c.recv().await.unwrap().ack();
        c
    })
}

/// The timed part: every remaining record received and acked.
fn waterline_drain(c: &Consumer, size: usize) {
    ENV.rt.block_on(async {
        for _ in 1..records(size) {
            let d = c.recv().await.unwrap();
            divan::black_box(d.payload());
            d.ack();
        }
    });
}

/// The same through [`Consumer::deliveries`] (the receiving turn held for the whole run).
fn waterline_stream_drain(c: &Consumer, size: usize) {
    ENV.rt.block_on(async {
        let mut deliveries = c.deliveries().await;
        for _ in 1..records(size) {
            let d = deliveries.next().await.unwrap();
            divan::black_box(d.payload());
            d.ack();
        }
    });
}

/// A bare consumer with auto-commit that has received its first record.
fn bare_ready(size: usize) -> StreamConsumer {
    let env = &*ENV;
    env.rt.block_on(async {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &env.addr)
            .set("group.id", group())
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", commit_ms().to_string());
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
}

/// The timed part through one long-lived `MessageStream` instead of `recv()` per record.
fn bare_stream_drain(c: &StreamConsumer, size: usize) {
    use futures::StreamExt;
    ENV.rt.block_on(async {
        let mut stream = c.stream();
        for _ in 1..records(size) {
            let m = stream.next().await.unwrap().unwrap();
            divan::black_box(rdkafka::Message::payload(&m));
        }
    });
}

/// The timed part: every remaining record received, borrowed or (`owned`) detached into an
/// owned copy as handing records to concurrent tasks needs.
fn bare_drain(c: &StreamConsumer, size: usize, owned: bool) {
    ENV.rt.block_on(async {
        for _ in 1..records(size) {
            let m = c.recv().await.unwrap();
            if owned {
                let m = m.detach();
                divan::black_box(rdkafka::Message::payload(&m));
            } else {
                divan::black_box(rdkafka::Message::payload(&m));
            }
        }
    });
}

#[divan::bench(args = [100, 1024], sample_count = 10, sample_size = 1)]
fn waterline(bencher: Bencher, size: usize) {
    bencher
        .counter(ItemsCount::new(records(size) - 1))
        .with_inputs(|| waterline_ready(size))
        .bench_local_values(|c| {
            waterline_drain(&c, size);
            c
        });
}

#[divan::bench(args = [100, 1024], sample_count = 10, sample_size = 1)]
fn bare_rdkafka(bencher: Bencher, size: usize) {
    bencher
        .counter(ItemsCount::new(records(size) - 1))
        .with_inputs(|| bare_ready(size))
        .bench_local_values(|c| {
            bare_drain(&c, size, false);
            c
        });
}

/// The bare consumer plus the copy every concurrent consumer makes: each record detached
/// into an owned message.
#[divan::bench(args = [100, 1024], sample_count = 10, sample_size = 1)]
fn bare_rdkafka_owned(bencher: Bencher, size: usize) {
    bencher
        .counter(ItemsCount::new(records(size) - 1))
        .with_inputs(|| bare_ready(size))
        .bench_local_values(|c| {
            bare_drain(&c, size, true);
            c
        });
}

const KINDS: [&str; 5] = [
    "bare_rdkafka",
    "bare_rdkafka_owned",
    "bare_rdkafka_stream",
    "waterline",
    "waterline_deliveries",
];

/// CPU time this thread has run, in ns (`/proc/thread-self/schedstat`, Linux), so the cost
/// per record can be told apart from time spent waiting for a core on a loaded machine.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One timed run of `kind` (setup untimed, teardown after the clock stops): wall seconds and
/// the consuming thread's CPU ns.
fn timed_run(kind: &str, size: usize) -> (f64, Option<u64>) {
    let measure = |drain: &dyn Fn()| {
        let cpu = thread_cpu_ns();
        let t = Instant::now();
        drain();
        let secs = t.elapsed().as_secs_f64();
        let cpu = thread_cpu_ns().zip(cpu).map(|(b, a)| b.saturating_sub(a));
        (secs, cpu)
    };
    match kind {
        "bare_rdkafka" | "bare_rdkafka_owned" => {
            let c = bare_ready(size);
            measure(&|| bare_drain(&c, size, kind == "bare_rdkafka_owned"))
        }
        "bare_rdkafka_stream" => {
            let c = bare_ready(size);
            measure(&|| bare_stream_drain(&c, size))
        }
        _ => {
            let c = waterline_ready(size);
            let out = if kind == "waterline_deliveries" {
                measure(&|| waterline_stream_drain(&c, size))
            } else {
                measure(&|| waterline_drain(&c, size))
            };
            ENV.rt.block_on(c.shutdown(Duration::from_secs(5)));
            out
        }
    }
}

/// `WATERLINE_BENCH_ROUNDS=n`: instead of divan's one-function-after-another order, run `n`
/// rounds that each time every consumer once, in a rotating order, so load from elsewhere on
/// the machine hits all of them alike. Prints median records/s, the ratio to the bare
/// consumer's median, and the median CPU time per record of the thread that consumes (the
/// `block_on` thread; librdkafka's and the broker's threads are not in it).
fn interleaved(rounds: usize) {
    // `WATERLINE_BENCH_ONLY=kind[,kind]` times only those kinds (e.g. under a profiler).
    let only = std::env::var("WATERLINE_BENCH_ONLY").ok();
    let wanted = |k: &str| only.as_deref().is_none_or(|o| o.split(',').any(|w| w == k));
    for size in [100usize, 1024] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
        for round in 0..rounds {
            for i in 0..KINDS.len() {
                let k = (i + round) % KINDS.len();
                if !wanted(KINDS[k]) {
                    continue;
                }
                let (secs, cpu) = timed_run(KINDS[k], size);
                times[k].push(secs);
                if let Some(ns) = cpu {
                    cpus[k].push(ns as f64);
                }
            }
        }
        let n = (records(size) - 1) as f64;
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let medians: Vec<f64> = times.iter_mut().map(median).collect();
        let cpu: Vec<f64> = cpus.iter_mut().map(median).collect();
        println!(
            "size {size} B, {rounds} interleaved rounds, {} records per run",
            n + 1.0
        );
        for (k, (m, c)) in KINDS.iter().zip(medians.iter().zip(&cpu)) {
            println!(
                "  {k:<22} median {:>7.1} ms  {:>6.3} M records/s  {:>4.0}% of bare  \
                 consumer thread {:>5.0} ns CPU/record",
                m * 1e3,
                n / m / 1e6,
                100.0 * medians[0] / m,
                c / n
            );
        }
    }
}

fn main() {
    LazyLock::force(&ENV);
    match std::env::var("WATERLINE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
    {
        Some(rounds) if rounds > 0 => interleaved(rounds),
        _ => divan::main(),
    }
    if let Some(b) = BROKER.lock().unwrap().take() {
        ENV.rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(10), b.shutdown()).await;
        });
    }
    // Statics are never dropped: remove the broker's data by hand.
    let _ = std::fs::remove_dir_all(DIR.path());
}
