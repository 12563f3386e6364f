//! Exactly-once consume-transform-produce: reads `input`, writes one transformed record per
//! input record to `output`, and commits the outputs together with the input offsets in one
//! Kafka transaction. After any crash, a `read_committed` reader of `output` sees every input
//! record's output exactly once.
//!
//! ```text
//! waterline serve &
//! cargo run -p waterline-consumer --example exactly_once_kafka -- \
//!     127.0.0.1:9092 orders orders-enriched enricher host-1
//! ```
//!
//! Arguments: `bootstrap input output group instance [work_ms] [session_timeout_ms]`.
//! `instance` names this process: the transactional id is `enricher-{instance}`; keep it
//! stable across restarts and distinct between processes running at once. `work_ms` (default
//! 0) simulates up to that much work per record; records are processed concurrently and
//! acknowledged in any order.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use waterline_consumer::waterline_core::Interval;
use waterline_consumer::{
    Consumer, ConsumerConfig, ConsumerError, KafkaTransactions, OffsetStorage, OutputRecord,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: &str| args.next().unwrap_or_else(|| default.to_string());
    let bootstrap = arg("127.0.0.1:9092");
    let input = arg("orders");
    let output = arg("orders-enriched");
    let group = arg("enricher");
    let instance = arg("host-1");
    let work_ms: u64 = arg("0").parse()?;
    let session_timeout_ms: u64 = arg("10000").parse()?;
    // Listening for Ctrl-C from the start: an early one must not kill the process outright.
    let stop = Arc::new(tokio::sync::Notify::new());
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.notify_one();
            }
        });
        tokio::task::yield_now().await;
    }

    let consumer = Arc::new(Consumer::new(
        ConsumerConfig::builder(bootstrap, group.clone())
            .topic(input)
            .offset_storage(OffsetStorage::KafkaTransactional(KafkaTransactions::new(
                group, instance,
            )))
            // One transaction (outputs + offsets) every 200 ms, on revoke and at shutdown.
            .commit_policy(Interval::new(200)?)
            .max_in_flight_per_partition(64)
            .set("session.timeout.ms", session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (session_timeout_ms / 5).max(100).to_string(),
            )
            .build()?,
    )?);

    let output = Arc::new(output);
    let mut processed = 0u64;
    let failed = loop {
        let mut d = tokio::select! {
            _ = stop.notified() => break None,
            d = consumer.recv() => match d {
                Ok(d) => d,
                // E.g. ConsumerError::Fenced: another process took our transactional id.
                Err(e) => break Some(e),
            },
        };
        processed += 1;
        let output = Arc::clone(&output);
        tokio::spawn(async move {
            if work_ms > 0 {
                let ms = rand::rng().random_range(0..=work_ms);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let source = format!("{}/{}/{}", d.topic(), d.partition(), d.offset());
            let mut out =
                OutputRecord::new(output.as_str()).with_header("source", Some(source.into_bytes()));
            if let Some(k) = d.key() {
                out = out.with_key(k.to_vec());
            }
            let mut payload = b"enriched:".to_vec();
            payload.extend_from_slice(d.payload().unwrap_or_default());
            out = out.with_payload(payload);
            match d.produce(out) {
                // The output is produced in the transaction that commits this record.
                Ok(()) => {
                    d.ack();
                }
                Err(e) => d.nack(e.to_string()),
            }
        });
    };
    let report = consumer.shutdown(Duration::from_secs(30)).await;
    println!("shut down: {processed} records handed out; {report:?}");
    match failed {
        None | Some(ConsumerError::ShutDown) => Ok(()),
        Some(e) => {
            eprintln!("consumer failed: {e}");
            Err(e.into())
        }
    }
}
