//! The consumer's metrics in a prometheus-client registry beside an application's own: a
//! consumer reads from the in-process broker, and the encoded text is checked value by value,
//! by name and labels (group, and topic/partition where they apply).

#![cfg(feature = "prometheus")]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use waterline_consumer::{Consumer, ConsumerConfig, Interval};

use common::{TestBroker, init_tracing, produce};

/// The value of the sample `name` whose labels are exactly `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeSet<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (n, got) = match series.split_once('{') {
                Some((n, rest)) => {
                    let got: BTreeSet<(String, String)> = rest
                        .trim_end_matches('}')
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                        .collect();
                    (n, got)
                }
                None => (series, BTreeSet::new()),
            };
            (n == name && got == want).then(|| value.parse().ok())?
        })
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_metrics_carry_the_group_beside_the_applications_own() {
    init_tracing();
    let b = TestBroker::start(2).await;
    produce(&b.addr, "prom", 2, 10, 8).await;
    let group = "g-prom";
    let c = Consumer::new(
        ConsumerConfig::builder(&b.addr, group)
            .topic("prom")
            .commit_policy(Interval::new(100).unwrap())
            .build()
            .unwrap(),
    )
    .unwrap();
    let handled = Counter::<u64>::default();
    let mut registry = Registry::default();
    registry.register("app_handled", "The application's own.", handled.clone());
    registry.register_collector(Box::new(c.prometheus_collector()));

    // Everything but the last record is acked; the last one stays in flight, so its
    // partition's commit point sits at its offset.
    let mut held = None;
    for _ in 0..10 {
        let d = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .expect("a record")
            .unwrap();
        handled.inc();
        if let Some(prev) = held.replace(d) {
            prev.ack();
        }
    }
    let held = held.unwrap();
    let (held_p, held_offset) = (held.partition(), held.offset());
    assert_eq!(held_offset, 4, "5 records per partition, in order");
    let other_p = 1 - held_p;
    c.lag().await.unwrap();

    let text = encode(&registry);
    let g = [("group", group)];
    let part = |p: i32| p.to_string();
    let (hp, op) = (part(held_p), part(other_p));
    assert_eq!(
        sample(&text, "app_handled_total", &[]),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "waterline_consumer_messages_total", &g),
        Some(10.0),
        "{text}"
    );
    assert_eq!(sample(&text, "waterline_consumer_in_flight", &g), Some(1.0));
    assert_eq!(
        sample(&text, "waterline_consumer_assigned_partitions", &g),
        Some(2.0)
    );
    assert!(sample(&text, "waterline_consumer_rebalances_total", &g).unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "waterline_consumer_failures_total", &g),
        Some(0.0)
    );
    let tp_held = [
        ("group", group),
        ("topic", "prom"),
        ("partition", hp.as_str()),
    ];
    let tp_other = [
        ("group", group),
        ("topic", "prom"),
        ("partition", op.as_str()),
    ];
    assert_eq!(
        sample(&text, "waterline_consumer_lag", &tp_held),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "waterline_consumer_lag", &tp_other),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "waterline_consumer_partition_in_flight", &tp_held),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "waterline_consumer_partition_in_flight", &tp_other),
        Some(0.0)
    );

    // The ack lets the commit point reach the log end; commits are counted by result.
    held.ack();
    let ok = [("group", group), ("result", "ok")];
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        c.lag().await.unwrap();
        let text = encode(&registry);
        if sample(&text, "waterline_consumer_lag", &tp_held) == Some(0.0)
            && sample(&text, "waterline_consumer_commits_total", &ok).unwrap_or(0.0) >= 1.0
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no commit to the log end: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&text, "waterline_consumer_in_flight", &g), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "waterline_consumer_commits_total",
            &[("group", group), ("result", "failed")]
        ),
        Some(0.0)
    );

    // Once the consumer is gone the registry serves only the application's metrics.
    c.shutdown(Duration::from_secs(5)).await;
    drop(c);
    let text = encode(&registry);
    assert!(!text.contains("waterline_consumer_"), "{text}");
    assert_eq!(sample(&text, "app_handled_total", &[]), Some(10.0));
    b.stop().await;
}
