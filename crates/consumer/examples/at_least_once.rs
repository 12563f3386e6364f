//! Concurrent at-least-once processing.
//!
//! Records are processed by up to `CONCURRENCY` tasks at once and acknowledged in whatever order
//! they finish; Waterline commits every second, never past an unfinished record. Ctrl-C drains
//! in-flight work and commits before leaving the group.
//!
//! ```text
//! waterline serve &                       # or any Kafka cluster
//! cargo run -p waterline-consumer --example at_least_once -- 127.0.0.1:9092 orders billing
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use waterline_consumer::waterline_core::Interval;
use waterline_consumer::{Consumer, ConsumerConfig, ConsumerError, Exhausted, FailurePolicy};

const CONCURRENCY: usize = 64;

/// Stand-in for real work: fails for payloads containing "fail".
async fn process(payload: Option<&[u8]>) -> Result<(), String> {
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
        .commit_policy(Interval::new(1000).map_err(|e| ConsumerError::Config(e.to_string()))?)
        .failure_policy(FailurePolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            exhausted: Exhausted::DeadLetter(format!("{topic}.dlq")),
        })
        .build()?;
    let consumer = Arc::new(Consumer::new(config)?);
    let permits = Arc::new(Semaphore::new(CONCURRENCY));

    let mut stats = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = stats.tick() => {
                let lag = consumer.lag().await?;
                let m = consumer.metrics();
                println!(
                    "consumed={} failures={} dlq={} in_flight={} lag={} commits={}",
                    m.messages_consumed, m.failures, m.dead_lettered, m.in_flight,
                    lag.total_lag, m.commits_ok
                );
            }
            d = consumer.recv() => {
                let d = d?;
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
                tokio::spawn(async move {
                    match process(d.payload()).await {
                        Ok(()) => { d.ack(); }
                        Err(e) => d.nack(e),
                    }
                    drop(permit);
                });
            }
        }
    }
    let report = consumer.shutdown(Duration::from_secs(30)).await;
    println!("shut down: {report:?}");
    Ok(())
}
