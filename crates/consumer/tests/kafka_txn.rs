//! The Kafka-transactional mode against the in-process broker: outputs and offsets commit in
//! one Kafka transaction. Each test reads the output topic with a `read_committed` consumer
//! and the group's offsets with OffsetFetch.
//!
//! - commit: every input's output visible exactly once; the group's offsets are the log ends.
//! - abort: a nacked record's outputs never become visible; a transaction that cannot commit
//!   (an output the producer refuses) is aborted, nothing of it is visible, the offsets do not
//!   move, and the application gets `TransactionAborted`.
//! - rebalance: a second consumer joins mid-stream: no output twice across the handover.
//! - fencing: a newer producer with the same transactional id makes `recv` fail with `Fenced`.
//! - crash loop: the `exactly_once_kafka` example, SIGKILLed 20 times while it works through a
//!   fixed input, then run to the end: each output exactly once, offsets at the log ends.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use waterline_consumer::waterline_core::{Interval, Manual};
use waterline_consumer::{
    Consumer, ConsumerConfig, ConsumerError, ConsumerEvent, Delivery, Exhausted, FailurePolicy,
    KafkaTransactions, OffsetStorage, OutputRecord,
};

use common::{TestBroker, index_of, init_tracing, produce, produce_from};

/// The input index an output stands for (outputs are `enriched:<input payload>`).
fn output_index(payload: &[u8]) -> usize {
    index_of(
        payload
            .strip_prefix(b"enriched:")
            .unwrap_or_else(|| panic!("not an output: {:?}", String::from_utf8_lossy(payload))),
    )
}

/// The example's transform.
fn output_of(d: &Delivery, topic: &str) -> OutputRecord {
    let mut payload = b"enriched:".to_vec();
    payload.extend_from_slice(d.payload().unwrap());
    OutputRecord::new(topic)
        .with_key(d.key().unwrap().to_vec())
        .with_payload(payload)
}

/// How many times each input index appears in `topic` for a `read_committed` reader. Reads
/// until `expect` outputs arrived and nothing more came for a second (or 60 s passed).
fn read_outputs(addr: &str, topic: &str, partitions: i32, expect: usize) -> BTreeMap<usize, usize> {
    read_outputs_as(addr, topic, partitions, expect, "read_committed")
}

fn read_outputs_as(
    addr: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
    isolation: &str,
) -> BTreeMap<usize, usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "output-reader")
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut counts = BTreeMap::new();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                *counts
                    .entry(output_index(m.payload().unwrap()))
                    .or_insert(0) += 1;
                n += 1;
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {
                if n >= expect && quiet_since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    counts
}

/// `group`'s committed offset per partition of `topic` (-1 where none), once stable: a
/// `read_committed` client asks OffsetFetch for stable offsets (`require_stable`) and waits
/// while a transaction's offsets are pending (until its markers are written).
fn committed(addr: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_as(addr, group, topic, partitions, "read_committed")
}

/// Same, as `isolation` asks: `read_uncommitted` does not wait for pending offsets (e.g. those
/// of a killed process's open transaction), it shows the last ones applied.
fn committed_as(
    addr: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).unwrap().offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect()
}

fn assert_exactly_once(counts: &BTreeMap<usize, usize>, total: usize) {
    let dup: Vec<(usize, usize)> = counts
        .iter()
        .filter(|(_, n)| **n != 1)
        .map(|(i, n)| (*i, *n))
        .collect();
    assert!(dup.is_empty(), "outputs seen more than once: {dup:?}");
    let missing: Vec<usize> = (0..total).filter(|i| !counts.contains_key(i)).collect();
    assert!(missing.is_empty(), "outputs missing: {missing:?}");
    assert_eq!(counts.len(), total);
}

type Events = Arc<Mutex<Vec<ConsumerEvent>>>;

fn txn_consumer(
    addr: &str,
    group: &str,
    topic: &str,
    instance: &str,
    events: Events,
    tune: impl FnOnce(
        waterline_consumer::ConsumerConfigBuilder,
    ) -> waterline_consumer::ConsumerConfigBuilder,
) -> Arc<Consumer> {
    let cfg = ConsumerConfig::builder(addr, group)
        .topic(topic)
        .offset_storage(OffsetStorage::KafkaTransactional(
            KafkaTransactions::new(group, instance).transaction_timeout(Duration::from_secs(10)),
        ))
        .commit_policy(Interval::new(100).unwrap())
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "100")
        .on_event(move |e| events.lock().unwrap().push(e.clone()));
    Arc::new(Consumer::new(tune(cfg).build().unwrap()).unwrap())
}

/// Processes deliveries concurrently (random delays up to `work_ms`), producing each one's
/// output to `out`, until `stop`; returns the error that ended `recv`, if any.
fn run(
    c: Arc<Consumer>,
    out: &'static str,
    work_ms: u64,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Option<ConsumerError>> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Acquire) {
            let mut d = tokio::select! {
                d = c.recv() => match d { Ok(d) => d, Err(e) => return Some(e) },
                _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
            };
            tokio::spawn(async move {
                let ms = rand::rng().random_range(0..=work_ms);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let o = output_of(&d, out);
                d.produce(o).unwrap();
                d.ack();
            });
        }
        None
    })
}

/// The sum of the offsets committed in `events` (last commit per partition).
fn committed_in(events: &Events) -> i64 {
    let mut last = BTreeMap::new();
    for e in events.lock().unwrap().iter() {
        if let ConsumerEvent::Committed { offsets } = e {
            for (tp, o) in offsets {
                last.insert(tp.clone(), o.offset().unwrap_or(0));
            }
        }
    }
    last.values().sum()
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_makes_outputs_visible_exactly_once() {
    init_tracing();
    let b = TestBroker::start(3).await;
    let total = 900;
    produce(&b.addr, "c-in", 3, total, 8).await;
    let events = Events::default();
    let c = txn_consumer(&b.addr, "c-app", "c-in", "a", Arc::clone(&events), |c| {
        c.max_in_flight_per_partition(4)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let task = run(Arc::clone(&c), "c-out", 20, Arc::clone(&stop));
    wait_for("every input committed", 60, || {
        committed_in(&events) == total as i64
    })
    .await;
    stop.store(true, Ordering::Release);
    assert!(task.await.unwrap().is_none());
    let report = c.shutdown(Duration::from_secs(10)).await;
    assert!(report.final_commit_ok, "{report:?}");
    let commits = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ConsumerEvent::Committed { .. }))
        .count();
    assert!(commits >= 2, "one transaction per commit tick: {commits}");
    // Stable offsets: EndTxn is answered once the commit is decided; the offsets apply when
    // the markers are written, which a `read_committed` OffsetFetch waits for.
    assert_eq!(committed(&b.addr, "c-app", "c-in", 3), vec![300, 300, 300]);
    assert_exactly_once(&read_outputs(&b.addr, "c-out", 3, total), total);
    // Producing outputs needs the transactional mode.
    let plain = Consumer::new(
        ConsumerConfig::builder(&b.addr, "c-plain")
            .topic("c-in")
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut d = plain.recv().await.unwrap();
    assert!(matches!(
        d.produce(OutputRecord::new("x")),
        Err(ConsumerError::NotKafkaTransactional)
    ));
    d.ack();
    plain.shutdown(Duration::from_secs(5)).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_abort_and_leave_nothing_visible() {
    init_tracing();
    let b = TestBroker::start(1).await;
    produce(&b.addr, "a-in", 1, 30, 8).await;
    let events = Events::default();
    let c = txn_consumer(&b.addr, "a-app", "a-in", "a", Arc::clone(&events), |c| {
        c.commit_policy(Manual::default())
            .failure_policy(FailurePolicy {
                max_attempts: 3,
                backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(10),
                exhausted: Exhausted::Hold,
                retry_delay: None,
            })
            .offset_storage(OffsetStorage::KafkaTransactional(
                KafkaTransactions::new("a-app", "a").max_aborts(2),
            ))
    });
    // 1. A processing failure: record 7 produces an output, then fails; its retry succeeds.
    let mut acked = 0;
    while acked < 30 {
        let mut d = c.recv().await.unwrap();
        let i = index_of(d.payload().unwrap());
        if i == 7 && d.attempt() == 1 {
            d.produce(
                OutputRecord::new("a-out")
                    .with_key(b"7".to_vec())
                    .with_payload(b"enriched:bad".to_vec()),
            )
            .unwrap();
            d.nack("processing failed");
            continue;
        }
        let o = output_of(&d, "a-out");
        d.produce(o).unwrap();
        assert!(d.ack());
        acked += 1;
    }
    c.request_commit();
    wait_for("the first 30 committed", 30, || committed_in(&events) == 30).await;
    assert_eq!(committed(&b.addr, "a-app", "a-in", 1), vec![30]);
    let counts = read_outputs(&b.addr, "a-out", 1, 30);
    assert_exactly_once(&counts, 30);

    // 2. A transaction that cannot commit: record 32's output is larger than the producer's
    // message.max.bytes. All five are acked before one commit is asked for, so they share it.
    produce_from(&b.addr, "a-in", 1, 30, 5, 8).await;
    let mut ds = Vec::new();
    while ds.len() < 5 {
        ds.push(c.recv().await.unwrap());
    }
    for mut d in ds {
        let mut o = output_of(&d, "a-out");
        if index_of(d.payload().unwrap()) == 32 {
            o = o.with_payload(vec![b'x'; 2_000_000]);
        }
        d.produce(o).unwrap();
        assert!(d.ack());
    }
    c.request_commit();
    let err = tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("recv reports the failure")
        .unwrap_err();
    match &err {
        ConsumerError::TransactionAborted { attempts, reason } => {
            assert_eq!(*attempts, 2, "{err}");
            assert!(reason.contains("a-out"), "{reason}");
        }
        other => panic!("expected TransactionAborted, got {other:?}"),
    }
    let failed = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ConsumerEvent::CommitFailed { .. }))
        .count();
    assert_eq!(failed, 2, "each aborted attempt is reported");
    drop(c);
    // Nothing of the aborted transactions is visible, and the offsets did not move.
    assert_eq!(committed(&b.addr, "a-app", "a-in", 1), vec![30]);
    let counts = read_outputs(&b.addr, "a-out", 1, 30);
    assert_exactly_once(&counts, 30);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_consumer_takes_over_without_duplicates() {
    joining_consumer("roundrobin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_consumer_takes_over_without_duplicates_cooperatively() {
    joining_consumer("cooperative-sticky").await;
}

async fn joining_consumer(strategy: &'static str) {
    init_tracing();
    let b = TestBroker::start(4).await;
    let total = 2000;
    produce(&b.addr, "r-in", 4, total, 8).await;
    let (ea, eb) = (Events::default(), Events::default());
    let slow = move |c: waterline_consumer::ConsumerConfigBuilder| {
        c.max_in_flight_per_partition(2)
            .set("partition.assignment.strategy", strategy)
    };
    let a = txn_consumer(&b.addr, "r-app", "r-in", "a", Arc::clone(&ea), slow);
    let stop = Arc::new(AtomicBool::new(false));
    let ta = run(Arc::clone(&a), "r-out", 30, Arc::clone(&stop));
    wait_for("a first commit", 30, || committed_in(&ea) > 0).await;
    let bc = txn_consumer(&b.addr, "r-app", "r-in", "b", Arc::clone(&eb), slow);
    let tb = run(Arc::clone(&bc), "r-out", 30, Arc::clone(&stop));
    let addr = b.addr.clone();
    wait_for("every input committed", 120, || {
        committed_as(&addr, "r-app", "r-in", 4, "read_uncommitted")
            .iter()
            .sum::<i64>()
            == total as i64
    })
    .await;
    stop.store(true, Ordering::Release);
    assert!(ta.await.unwrap().is_none());
    assert!(tb.await.unwrap().is_none());
    a.shutdown(Duration::from_secs(10)).await;
    bc.shutdown(Duration::from_secs(10)).await;
    let revoked_committed = ea.lock().unwrap().iter().any(|e| {
        matches!(
            e,
            ConsumerEvent::Revoked {
                committed: true,
                ..
            }
        )
    });
    assert!(revoked_committed, "a committed its transaction on revoke");
    assert!(committed_in(&eb) > 0, "b took over some partitions");
    assert_eq!(committed(&b.addr, "r-app", "r-in", 4), vec![500; 4]);
    assert_exactly_once(&read_outputs(&b.addr, "r-out", 4, total), total);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_producer_with_the_same_id_fences_the_consumer() {
    init_tracing();
    let b = TestBroker::start(1).await;
    produce(&b.addr, "f-in", 1, 50, 8).await;
    let events = Events::default();
    let c = txn_consumer(&b.addr, "f-app", "f-in", "x", Arc::clone(&events), |c| c);
    let stop = Arc::new(AtomicBool::new(false));
    let task = run(Arc::clone(&c), "f-out", 0, Arc::clone(&stop));
    wait_for("the first 50 committed", 30, || committed_in(&events) == 50).await;
    // Another process starts with the same transactional id.
    let zombie_killer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("transactional.id", "f-app-x")
        .create()
        .unwrap();
    tokio::task::block_in_place(|| zombie_killer.init_transactions(Duration::from_secs(10)))
        .unwrap();
    produce_from(&b.addr, "f-in", 1, 50, 10, 8).await;
    let err = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("recv reports the fencing")
        .unwrap();
    match err {
        Some(ConsumerError::Fenced {
            transactional_id, ..
        }) => assert_eq!(transactional_id, "f-app-x"),
        other => panic!("expected Fenced, got {other:?}"),
    }
    drop(c);
    // The fenced consumer's last transaction never became visible.
    assert_eq!(committed(&b.addr, "f-app", "f-in", 1), vec![50]);
    assert_exactly_once(&read_outputs(&b.addr, "f-out", 1, 50), 50);
    b.stop().await;
}

// ---- crash loop of the example ---------------------------------------------------------------

const KILLS: usize = 20;
const PARTITIONS: i32 = 3;

fn example(args: &[&str]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let bin: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("exactly_once_kafka"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p waterline-consumer --examples)",
        bin.display()
    );
    Command::new(&bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Kills the child on drop (a failed assertion must not leave it running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_of_the_example_keeps_exactly_once() {
    init_tracing();
    let b = TestBroker::start(PARTITIONS).await;
    let total = 12_000usize;
    produce(&b.addr, "k-in", PARTITIONS, total, 8).await;
    // Up to 1 s of work per record, 64 in flight per partition: ~400 records/s, so the killed
    // runs leave work for the last one.
    let args = [
        b.addr.as_str(),
        "k-in",
        "k-out",
        "k-app",
        "only",
        "1000",
        "1000",
    ];
    let progress_of = |addr: &str| -> i64 {
        committed_as(addr, "k-app", "k-in", PARTITIONS, "read_uncommitted")
            .iter()
            .map(|o| (*o).max(0))
            .sum()
    };
    let started = Instant::now();
    let mut progress = Vec::new();
    for _ in 0..KILLS {
        let mut child = Running(example(&args));
        let ms = rand::rng().random_range(1000..3000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        progress.push(progress_of(&b.addr));
    }
    let crash_secs = started.elapsed().as_secs_f64();
    eprintln!("crash loop: committed inputs after each kill {progress:?}");
    // The last run works to the end and leaves on Ctrl-C.
    let child = Running(example(&args));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let addr = b.addr.clone();
    wait_for("every input committed", 120, || {
        progress_of(&addr) == total as i64
    })
    .await;
    let sent = Command::new("kill")
        .args(["-INT", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the final run did not exit on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "final run: {status}");
    // What the killed runs left behind in aborted (or never committed) transactions.
    let uncommitted: usize =
        read_outputs_as(&b.addr, "k-out", PARTITIONS, total, "read_uncommitted")
            .values()
            .sum();
    eprintln!(
        "exactly-once-kafka crash loop: {KILLS} kills in {crash_secs:.1} s; committed inputs \
         after each kill {progress:?}; read_uncommitted sees {uncommitted} outputs for {total} \
         inputs"
    );
    assert!(
        progress.windows(2).filter(|w| w[1] > w[0]).count() >= 5,
        "killed runs should make progress: {progress:?}"
    );
    let per = (total / PARTITIONS as usize) as i64;
    assert_eq!(
        committed(&b.addr, "k-app", "k-in", PARTITIONS),
        vec![per; PARTITIONS as usize]
    );
    assert_exactly_once(&read_outputs(&b.addr, "k-out", PARTITIONS, total), total);
    b.stop().await;
}
