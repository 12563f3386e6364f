//! Record headers reach the application by default and are left out when turned off.

mod common;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use waterline_consumer::waterline_core::TopicPartition;
use waterline_consumer::{Consumer, ConsumerConfig};

use common::{TestBroker, init_tracing, producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_read_unless_turned_off() {
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
    for (group, on) in [("g-hdr-on", true), ("g-hdr-off", false)] {
        let c = Consumer::new(
            ConsumerConfig::builder(&b.addr, group)
                .assign(vec![TopicPartition::new("hdr", 0)])
                .read_headers(on)
                .build()
                .unwrap(),
        )
        .unwrap();
        let d = c.recv().await.unwrap();
        assert_eq!(d.payload.as_deref(), Some(&b"v"[..]));
        if on {
            assert_eq!(
                d.headers,
                vec![
                    ("trace".to_string(), Some(b"abc".to_vec())),
                    ("empty".to_string(), None)
                ]
            );
        } else {
            assert!(d.headers.is_empty(), "{:?}", d.headers);
        }
        assert!(d.ack());
        c.shutdown(std::time::Duration::from_secs(5)).await;
    }
    b.stop().await;
}
