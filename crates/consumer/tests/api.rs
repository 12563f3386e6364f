//! The API around the ordering modes: the global concurrency limit, batches of one key,
//! pause/resume, position and seek, typed fatal errors (runtime, brokers down), and `Record`
//! as an rdkafka `Message`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::producer::FutureRecord;
use waterline_consumer::{
    Consumer, ConsumerConfig, ConsumerError, Ordering, Record, TopicPartition,
};

use common::{TestBroker, init_tracing, produce, producer};

fn config(addr: &str, group: &str, topic: &str) -> waterline_consumer::ConsumerConfigBuilder {
    ConsumerConfig::builder(addr, group).assign(vec![TopicPartition::new(topic, 0)])
}

#[tokio::test]
async fn a_current_thread_runtime_is_refused() {
    let cfg = config("127.0.0.1:1", "g", "t").build().unwrap();
    let err = Consumer::new(cfg).unwrap_err();
    assert!(
        matches!(err, ConsumerError::UnsupportedRuntime { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("multi-threaded"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_global_concurrency_limit_holds_back_recv() {
    init_tracing();
    let b = TestBroker::start(1).await;
    produce(&b.addr, "conc", 1, 10, 8).await;
    let c = Consumer::new(
        config(&b.addr, "g-conc", "conc")
            .max_concurrency(3)
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(c.recv().await.unwrap());
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(400), c.recv())
            .await
            .is_err(),
        "a fourth record while three are in hand"
    );
    held.pop().unwrap().ack();
    let d = tokio::time::timeout(Duration::from_secs(5), c.recv())
        .await
        .expect("room after an ack")
        .unwrap();
    assert_eq!(d.offset(), 3);
    // A nack gives room back too (the retry waits for room like any record).
    held.pop().unwrap().nack("again");
    let e = tokio::time::timeout(Duration::from_secs(5), c.recv())
        .await
        .expect("room after a nack")
        .unwrap();
    assert!(e.offset() == 1 || e.offset() == 4, "{}", e.offset());
    d.ack();
    e.ack();
    held.clear();
    c.shutdown(Duration::from_secs(5)).await;
    b.stop().await;
}

/// A batch seen by the processing function: its key and offsets.
type Batch = (String, Vec<i64>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_batches_hold_one_key_in_offset_order() {
    init_tracing();
    let b = TestBroker::start(1).await;
    let p = producer(&b.addr);
    // Keys a, b, a, a, b, a, ...: 60 records.
    for i in 0..60 {
        let key = if i % 3 == 1 { "b" } else { "a" };
        p.send(
            FutureRecord::to("kb")
                .partition(0)
                .key(key)
                .payload(&i.to_string()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    }
    let c = Arc::new(
        Consumer::new(
            config(&b.addr, "g-kb", "kb")
                .ordering(Ordering::Key)
                .build()
                .unwrap(),
        )
        .unwrap(),
    );
    let seen: Arc<Mutex<Vec<Batch>>> = Arc::default();
    let (c2, s2) = (Arc::clone(&c), Arc::clone(&seen));
    let worker = tokio::spawn(async move {
        c2.process_batch(4, 5, move |batch: Arc<Vec<Record>>| {
            let seen = Arc::clone(&s2);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let key = String::from_utf8(batch[0].key().unwrap().to_vec()).unwrap();
                assert!(batch.iter().all(|r| r.key() == Some(key.as_bytes())));
                let offsets = batch.iter().map(|r| r.offset()).collect();
                seen.lock().unwrap().push((key, offsets));
                Ok::<(), String>(())
            }
        })
        .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, o)| o.len())
        .sum::<usize>()
        < 60
    {
        assert!(tokio::time::Instant::now() < deadline, "not all processed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.shutdown(Duration::from_secs(5)).await;
    worker.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    let mut per_key: std::collections::HashMap<String, Vec<i64>> = Default::default();
    for (k, offsets) in &seen {
        assert!(offsets.len() <= 5, "batch of {}", offsets.len());
        per_key.entry(k.clone()).or_default().extend(offsets);
    }
    for (k, offsets) in &per_key {
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{k}: {offsets:?}");
    }
    assert_eq!(per_key["a"].len() + per_key["b"].len(), 60);
    assert!(
        seen.iter().any(|(_, o)| o.len() > 1),
        "records waiting behind a busy key form batches: {seen:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_position_and_seek() {
    init_tracing();
    let b = TestBroker::start(1).await;
    produce(&b.addr, "ps", 1, 20, 8).await;
    let tp = TopicPartition::new("ps", 0);
    let c = Consumer::new(config(&b.addr, "g-ps", "ps").build().unwrap()).unwrap();
    let d = c.recv().await.unwrap();
    assert_eq!(d.offset(), 0);
    d.ack();
    c.pause(std::slice::from_ref(&tp));
    assert!(
        tokio::time::timeout(Duration::from_millis(400), c.recv())
            .await
            .is_err(),
        "paused"
    );
    c.resume(std::slice::from_ref(&tp));
    let d = c.recv().await.unwrap();
    assert_eq!(d.offset(), 1);
    d.ack();
    assert!(c.position(&tp).unwrap() >= 2);
    assert_eq!(c.committable(&tp), Some(2));
    // Back to offset 10, then replay from 0: each seek restarts the partition there.
    c.seek(&tp, 10).await.unwrap();
    let d = c.recv().await.unwrap();
    assert_eq!(d.offset(), 10);
    assert_eq!(c.committable(&tp), Some(10));
    d.ack();
    c.seek(&tp, 0).await.unwrap();
    let d = c.recv().await.unwrap();
    assert_eq!(d.offset(), 0, "replayed");
    d.ack();
    let err = c.seek(&TopicPartition::new("ps", 7), 0).await.unwrap_err();
    assert!(matches!(err, ConsumerError::NotAssigned(_)), "{err}");
    c.shutdown(Duration::from_secs(5)).await;
    b.stop().await;
}

/// Code written against rdkafka's `Message` takes a `Record`.
fn describe(m: &impl Message) -> String {
    format!(
        "{}/{}@{} {:?}",
        m.topic(),
        m.partition(),
        m.offset(),
        m.payload_view::<str>()
    )
}

#[test]
fn a_record_is_an_rdkafka_message() {
    use rdkafka::message::Headers;
    let r = Record::new(TopicPartition::new("t", 2), 9)
        .with_key(b"k".to_vec())
        .with_payload(b"hi".to_vec())
        .with_timestamp_ms(5)
        .with_header("h", Some(b"v".to_vec()));
    assert_eq!(describe(&r), "t/2@9 Some(Ok(\"hi\"))");
    assert_eq!(Message::key(&r), Some(&b"k"[..]));
    assert_eq!(Message::timestamp(&r).to_millis(), Some(5));
    let h = Message::headers(&r).unwrap();
    assert_eq!(h.count(), 1);
    assert_eq!(h.get(0).key, "h");
    assert_eq!(h.get(0).value, Some(&b"v"[..]));
    assert!(Message::headers(&Record::new(TopicPartition::new("t", 0), 0)).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_down_past_the_timeout_is_a_typed_error() {
    init_tracing();
    let b = TestBroker::start(1).await;
    produce(&b.addr, "down", 1, 1, 8).await;
    let c = Consumer::new(
        config(&b.addr, "g-down", "down")
            .brokers_down_timeout(Some(Duration::from_secs(1)))
            .build()
            .unwrap(),
    )
    .unwrap();
    c.recv().await.unwrap().ack();
    b.stop().await;
    let stopped = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match c.recv().await {
                Ok(d) => drop(d),
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("recv fails once the brokers stay down");
    assert!(
        stopped.elapsed() < Duration::from_secs(15),
        "{:?}",
        stopped.elapsed()
    );
    assert!(matches!(err, ConsumerError::BrokersDown { .. }), "{err}");
    assert!(matches!(c.recv().await, Err(ConsumerError::ShutDown)));
    // Closing the client blocks while the brokers are down (librdkafka's own timeouts):
    // not this test's subject, so off its thread.
    std::thread::spawn(move || drop(c));
}

/// Key order with a failing record: held, it blocks only its key (other keys go on, the
/// commit point stays before it); dead-lettered, it frees its key.
async fn failing_key(exhausted: waterline_consumer::Exhausted, topic: &str) {
    use std::sync::atomic::{AtomicBool, Ordering as Atomic};
    init_tracing();
    let b = TestBroker::start(1).await;
    let p = producer(&b.addr);
    for (key, payload) in [
        ("a", "fail"),
        ("b", "1"),
        ("a", "2"),
        ("b", "3"),
        ("b", "4"),
    ] {
        p.send(
            FutureRecord::to(topic)
                .partition(0)
                .key(key)
                .payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    }
    let held = matches!(exhausted, waterline_consumer::Exhausted::Hold);
    let c = Arc::new(
        Consumer::new(
            config(&b.addr, &format!("g-{topic}"), topic)
                .ordering(Ordering::Key)
                .failure_policy(waterline_consumer::FailurePolicy {
                    max_attempts: 2,
                    backoff: Duration::from_millis(10),
                    max_backoff: Duration::from_millis(50),
                    exhausted,
                })
                .build()
                .unwrap(),
        )
        .unwrap(),
    );
    let done: Arc<Mutex<Vec<i64>>> = Arc::default();
    let heal = Arc::new(AtomicBool::new(false));
    let (c2, d2, h2) = (Arc::clone(&c), Arc::clone(&done), Arc::clone(&heal));
    let worker = tokio::spawn(async move {
        c2.process(10, move |r| {
            let (done, heal) = (Arc::clone(&d2), Arc::clone(&h2));
            async move {
                if r.payload() == Some(b"fail") && !heal.load(Atomic::Acquire) {
                    return Err("refused");
                }
                done.lock().unwrap().push(r.offset());
                Ok(())
            }
        })
        .await
    });
    let tp = TopicPartition::new(topic, 0);
    let wait_for = |want: Vec<i64>| {
        let done = Arc::clone(&done);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            loop {
                let mut got = done.lock().unwrap().clone();
                got.sort();
                if want.iter().all(|o| got.contains(o)) {
                    return got;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "waiting for {want:?}: {got:?}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    if held {
        assert_eq!(wait_for(vec![1, 3, 4]).await, vec![1, 3, 4], "key b flows");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            done.lock().unwrap().len(),
            3,
            "offset 2 (key a) waits behind the held offset 0"
        );
        assert_eq!(
            c.committable(&tp),
            Some(0),
            "the commit point stays before it"
        );
        heal.store(true, Atomic::Release);
        wait_for(vec![0, 1, 2, 3, 4]).await;
    } else {
        wait_for(vec![1, 2, 3, 4]).await;
    }
    let order: Vec<i64> = done
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|o| *o == 0 || *o == 2)
        .collect();
    let want = if held { vec![0, 2] } else { vec![2] };
    assert_eq!(order, want, "key a in offset order");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.committable(&tp) != Some(5) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            c.committable(&tp)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.shutdown(Duration::from_secs(5)).await;
    worker.await.unwrap().unwrap();
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_record_blocks_only_its_key() {
    failing_key(waterline_consumer::Exhausted::Hold, "kh").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_record_frees_its_key() {
    failing_key(
        waterline_consumer::Exhausted::DeadLetter("kh-dlq".into()),
        "kd",
    )
    .await;
}
