//! Records are read in place: payload, timestamp and headers, owned copies of them, records
//! outliving their consumer, and the `deliveries()` stream.

mod common;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use waterline_consumer::waterline_core::TopicPartition;
use waterline_consumer::{Consumer, ConsumerConfig};

use common::{TestBroker, init_tracing, producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_read_in_place_and_copied() {
    init_tracing();
    let b = TestBroker::start(1).await;
    let p = producer(&b.addr);
    p.send(
        FutureRecord::<[u8], [u8]>::to("hdr")
            .partition(0)
            .payload(b"v")
            .headers(
                OwnedHeaders::new()
                    .insert(Header {
                        key: "trace",
                        value: Some(b"abc".as_slice()),
                    })
                    .insert(Header::<&[u8]> {
                        key: "empty",
                        value: None,
                    }),
            ),
        std::time::Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
    let c = Consumer::new(
        ConsumerConfig::builder(&b.addr, "g-hdr")
            .assign(vec![TopicPartition::new("hdr", 0)])
            .build()
            .unwrap(),
    )
    .unwrap();
    let d = c.recv().await.unwrap();
    assert_eq!(d.payload(), Some(&b"v"[..]));
    assert_eq!(d.key(), None);
    assert!(d.timestamp_ms().is_some());
    let want = vec![("trace", Some(&b"abc"[..])), ("empty", None)];
    assert_eq!(d.headers().collect::<Vec<_>>(), want);
    assert_eq!(d.header("trace"), Some(&b"abc"[..]));
    // A clone is an owned copy, equal to the record read in place.
    let copy = d.record().clone();
    assert_eq!(&copy, d.record());
    assert!(d.ack());
    c.shutdown(std::time::Duration::from_secs(5)).await;
    drop(c);
    // The copy outlives the consumer and its client.
    assert_eq!(copy.headers().collect::<Vec<_>>(), want);
    assert_eq!(copy.payload(), Some(&b"v"[..]));
    b.stop().await;
}

/// Records read in place stay valid after the consumer is dropped (they keep the client
/// alive), and their acks then count as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_outlive_a_dropped_consumer() {
    init_tracing();
    let b = TestBroker::start(1).await;
    common::produce(&b.addr, "outlive", 1, 3, 64).await;
    let c = Consumer::new(
        ConsumerConfig::builder(&b.addr, "g-outlive")
            .assign(vec![TopicPartition::new("outlive", 0)])
            .build()
            .unwrap(),
    )
    .unwrap();
    let first = c.recv().await.unwrap();
    let second = c.recv().await.unwrap();
    let payload = second.payload().unwrap().to_vec();
    drop(c);
    assert!(!first.ack(), "the partition went with the consumer");
    assert_eq!(second.payload(), Some(payload.as_slice()), "still readable");
    assert_eq!(second.offset(), 1);
    // Dropping the last record destroys the client, off the async workers' way.
    tokio::task::spawn_blocking(move || drop(second))
        .await
        .unwrap();
    b.stop().await;
}

/// `deliveries()` holds the receiving turn and yields records as a stream; other `recv` calls
/// wait until it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_stream_holds_the_receiving_turn() {
    use futures::StreamExt;
    init_tracing();
    let b = TestBroker::start(1).await;
    common::produce(&b.addr, "stream", 1, 6, 8).await;
    let c = Consumer::new(
        ConsumerConfig::builder(&b.addr, "g-stream")
            .assign(vec![TopicPartition::new("stream", 0)])
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut offsets = Vec::new();
    {
        let stream = c.deliveries().await.into_stream();
        futures::pin_mut!(stream);
        let other = c.recv();
        futures::pin_mut!(other);
        for _ in 0..4 {
            let d = stream.next().await.unwrap().unwrap();
            offsets.push(d.offset());
            assert!(d.ack());
            // The turn is held: a plain recv does not get in.
            assert!(
                futures::poll!(other.as_mut()).is_pending(),
                "recv ran while the stream held the turn"
            );
        }
    }
    // Released with the stream: recv continues where it stopped.
    for _ in 0..2 {
        let d = c.recv().await.unwrap();
        offsets.push(d.offset());
        d.ack();
    }
    assert_eq!(offsets, (0..6).collect::<Vec<i64>>());
    c.shutdown(std::time::Duration::from_secs(5)).await;
    b.stop().await;
}
