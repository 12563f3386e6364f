//! The consumer's metrics on a Prometheus endpoint, next to the application's own.
//!
//! One prometheus-client registry holds the application's counter (`app_orders_handled`) and
//! the consumer's collector (`waterline_consumer_*`, labelled with the group id); `GET
//! /metrics` encodes both. Lag needs the log end from the brokers, so a task refreshes it with
//! `Consumer::lag` every second rather than at scrape time (a scrape never waits on Kafka).
//! Ctrl-C drains in-flight work and commits before leaving the group.
//!
//! ```text
//! waterline serve &                       # or any Kafka cluster
//! cargo run -p waterline-consumer --example prometheus_metrics -- 127.0.0.1:9092 orders billing 127.0.0.1:9464
//! curl -s 127.0.0.1:9464/metrics
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use waterline_consumer::{Consumer, ConsumerConfig, Interval};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "orders".into());
    let group = args.next().unwrap_or_else(|| "billing".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9464".into());

    let config = ConsumerConfig::builder(bootstrap, group)
        .topic(topic)
        .commit_policy(Interval::new(500)?)
        .build()?;
    let consumer = Arc::new(Consumer::new(config)?);

    // The application's own metric and the consumer's, in one registry.
    let handled = Counter::<u64>::default();
    let mut registry = Registry::default();
    registry.register(
        "app_orders_handled",
        "Orders this application handled.",
        handled.clone(),
    );
    registry.register_collector(Box::new(consumer.prometheus_collector()));
    let registry = Arc::new(registry);

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    ),
                    // Writing into a String cannot fail; answer something readable anyway.
                    Err(e) => (
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        format!("# encoding failed: {e}\n"),
                    ),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving http://{addr}/metrics");

    let mut worker = {
        let consumer = Arc::clone(&consumer);
        tokio::spawn(async move {
            consumer
                .process(16, move |_record| {
                    let handled = handled.clone();
                    async move {
                        handled.inc();
                        Ok::<(), String>(())
                    }
                })
                .await
        })
    };

    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            r = &mut worker => return Ok(r??),
            _ = refresh.tick() => {
                // A failed lag refresh keeps the last values; the next tick tries again.
                if let Err(e) = consumer.lag().await {
                    eprintln!("lag refresh failed: {e}");
                }
            }
        }
    }
    let report = consumer.shutdown(Duration::from_secs(30)).await;
    println!("shut down: {report:?}");
    Ok(worker.await??)
}
