//! Shared test helpers: an in-process broker, a producer, and collection utilities.
#![allow(dead_code)]

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use waterline_broker::{Broker, BrokerConfig, RunningBroker};

/// An in-process `waterline serve` on a free loopback port, with fast group timers. It runs on
/// a runtime of its own, as a separate server would: the consumer's rebalance callbacks block
/// the test runtime's workers while partitions drain, which must not stall the broker.
pub struct TestBroker {
    broker: Option<RunningBroker>,
    runtime: Option<tokio::runtime::Runtime>,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start(partitions: i32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".into(),
            auto_create_topics: true,
            default_partitions: partitions,
            ..Default::default()
        };
        config.groups.initial_rebalance_delay_ms = 0;
        config.groups.min_session_timeout_ms = 500;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-broker")
            .enable_all()
            .build()
            .unwrap();
        let broker = runtime
            .spawn(async move { Broker::start(config).await })
            .await
            .unwrap()
            .unwrap();
        let addr = broker.local_addr().to_string();
        TestBroker {
            broker: Some(broker),
            runtime: Some(runtime),
            addr,
            dir,
        }
    }

    pub async fn stop(mut self) {
        if let (Some(b), Some(rt)) = (self.broker.take(), self.runtime.as_ref()) {
            rt.spawn(async move { b.shutdown().await })
                .await
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Dropping a runtime may block, which async contexts forbid: let it wind down alone.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

pub fn producer(addr: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap()
}

/// Produces `n` records `key = i`, payload `"{i}"` (padded to `size` bytes), round-robin over
/// `partitions`.
pub async fn produce(addr: &str, topic: &str, partitions: i32, n: usize, size: usize) {
    produce_from(addr, topic, partitions, 0, n, size).await
}

/// Same, for indices `start..start + n`.
pub async fn produce_from(
    addr: &str,
    topic: &str,
    partitions: i32,
    start: usize,
    n: usize,
    size: usize,
) {
    let p = producer(addr);
    let mut futs = Vec::with_capacity(n);
    for i in start..start + n {
        let key = i.to_string();
        let mut payload = key.clone().into_bytes();
        payload.resize(size.max(payload.len()), b' ');
        let part = (i % partitions as usize) as i32;
        let p = p.clone();
        let topic = topic.to_string();
        futs.push(async move {
            p.send(
                FutureRecord::to(&topic)
                    .partition(part)
                    .key(key.as_bytes())
                    .payload(&payload),
                Duration::from_secs(20),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
        });
    }
    for r in futures::future::join_all(futs).await {
        r.unwrap();
    }
}

/// Parses the record index out of a test payload.
pub fn index_of(payload: &[u8]) -> usize {
    std::str::from_utf8(payload)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}
