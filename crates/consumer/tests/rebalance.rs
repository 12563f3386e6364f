//! Two consumers in one group against the in-process broker: one joins mid-stream, the other
//! leaves. No record is lost, and no consumer commits a partition it no longer owns. Run with
//! the eager protocol (the default) and with incremental (`cooperative-sticky`) rebalancing.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use waterline_consumer::waterline_core::{Interval, TopicPartition};
use waterline_consumer::{Consumer, ConsumerConfig, ConsumerEvent};

use common::{TestBroker, index_of, init_tracing, produce, produce_from};

const TOPIC: &str = "rb";
const PARTITIONS: i32 = 4;
const RECORDS: usize = 3000;

/// Events of one consumer, in the order it emitted them.
type Log = Arc<Mutex<Vec<ConsumerEvent>>>;

fn consumer(addr: &str, group: &str, strategy: Option<&str>, log: Log) -> Arc<Consumer> {
    let mut cfg = ConsumerConfig::builder(addr, group);
    if let Some(s) = strategy {
        cfg = cfg.set("partition.assignment.strategy", s);
    }
    let cfg = cfg
        .topic(TOPIC)
        .commit_policy(Interval::new(30).unwrap())
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "100")
        .on_event(move |e| log.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    Arc::new(Consumer::new(cfg).unwrap())
}

/// Processes deliveries concurrently with random delays until `stop`.
fn run(c: Arc<Consumer>, done: Arc<Mutex<Vec<usize>>>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Acquire) {
            let d = tokio::select! {
                d = c.recv() => match d { Ok(d) => d, Err(_) => break },
                _ = tokio::time::sleep(Duration::from_millis(20)) => continue,
            };
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let ms = rand::rng().random_range(0..3);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let i = index_of(d.payload().unwrap());
                if d.ack() {
                    done.lock().unwrap().push(i);
                }
            });
        }
    })
}

/// Replays one consumer's events: every commit names only partitions owned at that moment.
fn check_commits_owned(name: &str, log: &[ConsumerEvent]) -> usize {
    let mut owned: HashSet<TopicPartition> = HashSet::new();
    let mut commits = 0;
    for e in log {
        match e {
            ConsumerEvent::Assigned { positions, .. } => {
                owned.extend(positions.iter().map(|(tp, _)| tp.clone()))
            }
            ConsumerEvent::Revoked { partitions, .. } => {
                for tp in partitions {
                    owned.remove(tp);
                }
            }
            ConsumerEvent::Committed { offsets } => {
                commits += 1;
                for (tp, _) in offsets {
                    assert!(
                        owned.contains(tp),
                        "{name} committed {tp} without owning it"
                    );
                }
            }
            _ => {}
        }
    }
    commits
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_mid_stream_then_leave() {
    join_then_leave("g-rebalance", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_mid_stream_then_leave_cooperative() {
    join_then_leave("g-rebalance-coop", Some("cooperative-sticky")).await;
}

async fn join_then_leave(group: &str, strategy: Option<&str>) {
    init_tracing();
    let b = TestBroker::start(PARTITIONS).await;
    // Create the topic first so both consumers see all partitions.
    produce(&b.addr, TOPIC, PARTITIONS, 400, 16).await;
    let addr = b.addr.clone();
    let producer = tokio::spawn(async move {
        // The rest arrives while the group changes.
        for chunk in 0..13 {
            produce_from(&addr, TOPIC, PARTITIONS, 400 + chunk * 200, 200, 16).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let done = Arc::new(Mutex::new(Vec::new()));
    let (log_a, log_b) = (Log::default(), Log::default());
    let a = consumer(&b.addr, group, strategy, log_a.clone());
    let stop_a = Arc::new(AtomicBool::new(false));
    let run_a = run(Arc::clone(&a), Arc::clone(&done), Arc::clone(&stop_a));
    wait_for("consumer A to make progress", || {
        done.lock().unwrap().len() >= 300
    })
    .await;

    let c_b = consumer(&b.addr, group, strategy, log_b.clone());
    let stop_b = Arc::new(AtomicBool::new(false));
    let run_b = run(Arc::clone(&c_b), Arc::clone(&done), Arc::clone(&stop_b));
    // B is in once it owns partitions.
    wait_for("consumer B to be assigned", || {
        log_b.lock().unwrap().iter().any(
            |e| matches!(e, ConsumerEvent::Assigned { positions, .. } if !positions.is_empty()),
        )
    })
    .await;
    let seen = done.lock().unwrap().len();
    wait_for("both consumers to progress", || {
        done.lock().unwrap().len() >= seen + 300
    })
    .await;

    // A leaves: graceful shutdown, then drop (leaves the group).
    stop_a.store(true, Ordering::Release);
    run_a.await.unwrap();
    let report = a.shutdown(Duration::from_secs(10)).await;
    assert!(report.final_commit_ok, "A's final commit");
    drop(a);
    producer.await.unwrap();

    wait_for("B to own every partition", || {
        c_b.assignment().len() == PARTITIONS as usize
    })
    .await;
    wait_for("every record to be processed", || {
        let v = done.lock().unwrap();
        v.iter().collect::<HashSet<_>>().len() >= RECORDS
    })
    .await;
    // Let B commit everything, then stop it.
    wait_for("B's commits to reach the log end", || {
        let total: i64 = log_b
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter_map(|e| match e {
                ConsumerEvent::Committed { offsets } => Some(offsets.clone()),
                _ => None,
            })
            .flatten()
            .fold(std::collections::HashMap::new(), |mut m, (tp, o)| {
                m.entry(tp).or_insert(o.offset().unwrap());
                m
            })
            .values()
            .sum();
        total == RECORDS as i64
    })
    .await;
    stop_b.store(true, Ordering::Release);
    run_b.await.unwrap();
    assert!(c_b.shutdown(Duration::from_secs(10)).await.final_commit_ok);
    drop(c_b);

    // No record lost: every index was processed (acked) at least once.
    let done = done.lock().unwrap().clone();
    let distinct: BTreeSet<usize> = done.iter().copied().collect();
    assert_eq!(distinct, (0..RECORDS).collect::<BTreeSet<_>>());

    let commits_a = check_commits_owned("A", &log_a.lock().unwrap());
    let commits_b = check_commits_owned("B", &log_b.lock().unwrap());
    assert!(commits_a > 0 && commits_b > 0);
    assert!(
        log_a.lock().unwrap().iter().any(
            |e| matches!(e, ConsumerEvent::Revoked { partitions, .. } if !partitions.is_empty())
        ),
        "A saw a revocation when B joined"
    );
    if strategy.is_some() {
        // Incremental: when B joined, A gave up only the partitions that moved to B.
        let first_revoked = log_a.lock().unwrap().iter().find_map(|e| match e {
            ConsumerEvent::Revoked { partitions, .. } if !partitions.is_empty() => {
                Some(partitions.len())
            }
            _ => None,
        });
        assert!(
            first_revoked.is_some_and(|n| n < PARTITIONS as usize),
            "A kept some partitions through B's join: {first_revoked:?}"
        );
    }

    // The group's committed offsets are the log ends: nothing left behind.
    let (addr, group) = (b.addr.clone(), group.to_string());
    let committed = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(TOPIC, p);
        }
        c.committed_offsets(tpl, Duration::from_secs(10)).unwrap()
    })
    .await
    .unwrap();
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            other => panic!("partition {} not committed: {other:?}", e.partition()),
        })
        .sum();
    assert_eq!(total, RECORDS as i64);
    b.stop().await;
}
