//! Concurrent at-least-once processing, in key order.
//!
//! Up to `CONCURRENCY` records are processed at once by `Consumer::process`, which acks each
//! record when the function returns `Ok` and applies the failure policy on `Err`. With
//! `Ordering::Key` the records of one key are processed one after the other, in offset order,
//! while other keys flow past. Waterline commits every second, never past an unfinished
//! record. Ctrl-C drains in-flight work and commits before leaving the group.
//!
//! ```text
//! waterline serve &                       # or any Kafka cluster
//! cargo run -p waterline-consumer --example at_least_once -- 127.0.0.1:9092 orders billing
//! ```

use std::sync::Arc;
use std::time::Duration;

use waterline_consumer::{
    Consumer, ConsumerConfig, ConsumerError, Exhausted, FailurePolicy, Interval, Ordering,
};

const CONCURRENCY: usize = 64;

/// Stand-in for real work: fails for payloads containing "fail".
async fn work(payload: Option<&[u8]>) -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    match payload {
        Some(p) if p.windows(4).any(|w| w == b"fail") => Err("payload asked to fail".into()),
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> Result<(), ConsumerError> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "billing".into());

    let config = ConsumerConfig::builder(bootstrap, group)
        .topic(topic.clone())
        .ordering(Ordering::Key)
        .commit_policy(Interval::new(1000)?)
        .failure_policy(FailurePolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            exhausted: Exhausted::DeadLetter(format!("{topic}.dlq")),
        })
        .build()?;
    let consumer = Arc::new(Consumer::new(config)?);

    // `process` runs until the consumer is shut down: in a task of its own, beside Ctrl-C.
    let mut worker = {
        let consumer = Arc::clone(&consumer);
        tokio::spawn(async move {
            consumer
                .process(
                    CONCURRENCY,
                    |record| async move { work(record.payload()).await },
                )
                .await
        })
    };

    let mut stats = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            // Only a fatal error ends it before a shutdown.
            r = &mut worker => return r.map_err(|_| ConsumerError::ShutDown)?,
            _ = stats.tick() => {
                let lag = consumer.lag().await?;
                let m = consumer.metrics();
                println!(
                    "consumed={} failures={} dlq={} in_flight={} lag={} commits={}",
                    m.messages_consumed, m.failures, m.dead_lettered, m.in_flight,
                    lag.total_lag, m.commits_ok
                );
            }
        }
    }
    let report = consumer.shutdown(Duration::from_secs(30)).await;
    println!("shut down: {report:?}");
    worker.await.map_err(|_| ConsumerError::ShutDown)?
}
