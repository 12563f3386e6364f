//! Failure policies against the in-process broker: retry then succeed, dead-letter topic, and
//! hold (which blocks only the failing partition).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::time::timeout;
use waterline_consumer::{
    Consumer, ConsumerConfig, ConsumerEvent, Exhausted, FailurePolicy, waterline_core::Interval,
};

use common::{TestBroker, index_of, init_tracing, produce};

type Commits = Arc<Mutex<BTreeMap<(String, i32), i64>>>;

fn config(
    addr: &str,
    group: &str,
    topic: &str,
    failure: FailurePolicy,
    commits: Commits,
) -> ConsumerConfig {
    ConsumerConfig::builder(addr, group)
        .topic(topic)
        .failure_policy(failure)
        .commit_policy(Interval::new(50).unwrap())
        .set("session.timeout.ms", "6000")
        // A connection property the dead-letter producer takes too, and one of its own.
        .set("client.id", "waterline-nack-test")
        .dead_letter_set("compression.type", "zstd")
        .on_event(move |e| {
            if let ConsumerEvent::Committed { offsets } = e {
                let mut c = commits.lock().unwrap();
                for (tp, o) in offsets {
                    c.insert((tp.topic.clone(), tp.partition), o.offset().unwrap());
                }
            }
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_then_succeed() {
    init_tracing();
    let b = TestBroker::start(3).await;
    produce(&b.addr, "retry", 3, 30, 8).await;
    let commits = Commits::default();
    let failure = FailurePolicy {
        max_attempts: 3,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        exhausted: Exhausted::Hold,
        retry_delay: None,
    };
    let c = Consumer::new(config(
        &b.addr,
        "g-retry",
        "retry",
        failure,
        commits.clone(),
    ))
    .unwrap();
    let mut attempts: HashMap<usize, u32> = HashMap::new();
    let mut done = BTreeSet::new();
    timeout(Duration::from_secs(30), async {
        while done.len() < 30 {
            let d = c.recv().await.unwrap();
            let i = index_of(d.payload().unwrap());
            *attempts.entry(i).or_default() += 1;
            assert_eq!(
                d.attempt(),
                attempts[&i],
                "attempt numbers count deliveries"
            );
            if i == 7 && d.attempt() < 3 {
                d.nack("transient");
            } else {
                assert!(d.ack());
                done.insert(i);
            }
        }
    })
    .await
    .expect("all records processed");
    assert_eq!(attempts[&7], 3);
    assert!(attempts.iter().all(|(i, n)| *i == 7 || *n == 1));
    let m = c.metrics();
    assert_eq!((m.failures, m.retries, m.messages_consumed), (2, 2, 30));
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert!(report.final_commit_ok);
    assert_eq!(report.abandoned_in_flight, 0);
    let commits = commits.lock().unwrap().clone();
    for p in 0..3 {
        assert_eq!(
            commits.get(&("retry".into(), p)),
            Some(&10),
            "partition {p}"
        );
    }
    drop(c);
    b.stop().await;
}

/// The application's retry-delay function is asked once per failed attempt, with the record,
/// the attempt and the reason, and its delay is the one used (the exponential backoff here is an
/// hour, so a redelivery within the timeout proves it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_delay_function_decides_redelivery() {
    init_tracing();
    let b = TestBroker::start(3).await;
    produce(&b.addr, "retry-fn", 2, 20, 8).await;
    let commits = Commits::default();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&calls);
    let failure = FailurePolicy {
        max_attempts: 3,
        backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        ..FailurePolicy::default()
    }
    .with_retry_delay(move |ctx| {
        let i = index_of(ctx.record.payload().unwrap());
        log.lock()
            .unwrap()
            .push((i, ctx.attempt, ctx.reason.to_string()));
        Duration::from_millis(20 * u64::from(ctx.attempt))
    });
    let c = Consumer::new(config(
        &b.addr,
        "g-retry-fn",
        "retry-fn",
        failure,
        commits.clone(),
    ))
    .unwrap();
    let mut done = BTreeSet::new();
    timeout(Duration::from_secs(30), async {
        while done.len() < 20 {
            let d = c.recv().await.unwrap();
            let i = index_of(d.payload().unwrap());
            if i == 3 && d.attempt() < 3 {
                let reason = format!("busy {}", d.attempt());
                d.nack(reason);
            } else {
                assert!(d.ack());
                done.insert(i);
            }
        }
    })
    .await
    .expect("the function's delays, not the hour-long backoff, were used");
    assert_eq!(
        *calls.lock().unwrap(),
        vec![(3, 1, "busy 1".to_string()), (3, 2, "busy 2".to_string())]
    );
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert!(report.final_commit_ok);
    drop(c);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letter_topic_receives_the_record() {
    init_tracing();
    let b = TestBroker::start(2).await;
    produce(&b.addr, "orders", 2, 20, 8).await;
    let commits = Commits::default();
    let failure = FailurePolicy {
        max_attempts: 2,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        exhausted: Exhausted::DeadLetter("orders-dlq".into()),
        retry_delay: None,
    };
    let c = Consumer::new(config(&b.addr, "g-dlq", "orders", failure, commits.clone())).unwrap();
    let mut acked = BTreeSet::new();
    timeout(Duration::from_secs(30), async {
        // 19 acks; record 5 fails twice, then is dead-lettered (and counts as done).
        while acked.len() < 19 || c.metrics().dead_lettered < 1 {
            let d = tokio::select! {
                d = c.recv() => d.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
            };
            let i = index_of(d.payload().unwrap());
            if i == 5 {
                d.nack("poison");
            } else {
                d.ack();
                acked.insert(i);
            }
        }
    })
    .await
    .expect("records processed and dead-lettered");
    assert!(!acked.contains(&5));
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert!(report.final_commit_ok);
    // Record 5 counts as done: every partition is committed to its end.
    let commits = commits.lock().unwrap().clone();
    assert_eq!(commits.get(&("orders".into(), 0)), Some(&10));
    assert_eq!(commits.get(&("orders".into(), 1)), Some(&10));
    drop(c);

    // The dead-letter topic holds exactly that record, with its origin in headers.
    let addr = b.addr.clone();
    let dlq = tokio::task::spawn_blocking(move || {
        let dlq: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .set("group.id", "dlq-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("orders-dlq", 0, Offset::Beginning)
            .unwrap();
        dlq.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while got.is_empty() && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = dlq.poll(Duration::from_millis(200)) {
                let headers: HashMap<String, Vec<u8>> = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                got.push((
                    m.key().unwrap().to_vec(),
                    m.payload().unwrap().to_vec(),
                    headers,
                ));
            }
        }
        got
    })
    .await
    .unwrap();
    assert_eq!(dlq.len(), 1);
    let (key, payload, headers) = &dlq[0];
    assert_eq!(key, b"5");
    assert_eq!(index_of(payload), 5);
    assert_eq!(headers["waterline.source.topic"], b"orders");
    assert_eq!(headers["waterline.source.partition"], b"1");
    assert_eq!(headers["waterline.source.offset"], b"2");
    assert_eq!(headers["waterline.error"], b"poison");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_blocks_only_its_partition() {
    init_tracing();
    let b = TestBroker::start(2).await;
    // Partition 0 gets even indices (offset = i / 2), partition 1 odd ones.
    produce(&b.addr, "held", 2, 40, 8).await;
    let commits = Commits::default();
    let failure = FailurePolicy {
        max_attempts: 1,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(30),
        exhausted: Exhausted::Hold,
        retry_delay: None,
    };
    let c = Consumer::new(config(&b.addr, "g-hold", "held", failure, commits.clone())).unwrap();
    let mut seen: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    let mut redeliveries = 0;
    // Phase 1: offset 2 of partition 0 (index 4) keeps failing.
    timeout(Duration::from_secs(30), async {
        while seen.get(&1).map_or(0, BTreeSet::len) < 20 || redeliveries < 5 {
            let d = c.recv().await.unwrap();
            let (p, o) = (d.partition(), d.offset());
            seen.entry(p).or_default().insert(o);
            if (p, o) == (0, 2) {
                if d.attempt() > 1 {
                    redeliveries += 1;
                }
                d.nack("downstream unavailable");
            } else {
                d.ack();
            }
        }
    })
    .await
    .expect("partition 1 flows while partition 0 is held");
    assert_eq!(
        seen[&0],
        BTreeSet::from([0, 1, 2]),
        "nothing after the held record was handed out"
    );
    assert_eq!(seen[&1].len(), 20);
    let m = c.metrics();
    assert!(m.pauses >= 1);
    // The commit point of partition 0 is stuck at the held record.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(commits.lock().unwrap().get(&("held".into(), 0)), Some(&2));
    assert_eq!(commits.lock().unwrap().get(&("held".into(), 1)), Some(&20));

    // Phase 2: the downstream recovers; the partition resumes.
    timeout(Duration::from_secs(30), async {
        while seen[&0].len() < 20 {
            let d = c.recv().await.unwrap();
            seen.entry(d.partition()).or_default().insert(d.offset());
            d.ack();
        }
    })
    .await
    .expect("partition 0 resumes after the held record succeeds");
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert!(report.final_commit_ok);
    assert_eq!(commits.lock().unwrap().get(&("held".into(), 0)), Some(&20));
    drop(c);
    b.stop().await;
}
