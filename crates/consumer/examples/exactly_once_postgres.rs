//! Exactly-once into PostgreSQL: each record's row and the consumer's offsets are written in
//! one transaction, so after any crash the table holds every record exactly once.
//!
//! ```text
//! waterline serve &
//! cargo run -p waterline-consumer --example exactly_once_postgres -- \
//!     127.0.0.1:9092 payments "host=127.0.0.1 user=postgres dbname=app"
//! ```

use std::sync::Arc;
use std::time::Duration;

use waterline_consumer::{Consumer, ConsumerConfig, OffsetStorage};
use waterline_store_postgres::tokio_postgres::{self, NoTls};
use waterline_store_postgres::{PgStoreConfig, PostgresStore};

/// Connections for concurrent transactions; each step takes one, then its partition's lock.
const POOL: usize = 8;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn connect(conn: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, connection) = tokio_postgres::connect(conn, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let bootstrap = args.next().unwrap_or_else(|| "127.0.0.1:9092".into());
    let topic = args.next().unwrap_or_else(|| "payments".into());
    let conn = args
        .next()
        .unwrap_or_else(|| "host=127.0.0.1 user=postgres dbname=postgres".into());

    // The offsets table is created by the store; the application owns its own table.
    let store = Arc::new(PostgresStore::connect(&conn, PgStoreConfig::default()).await?);
    let setup = connect(&conn).await?;
    setup
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS payments (
                 topic TEXT, part INTEGER, off BIGINT, body BYTEA,
                 PRIMARY KEY (topic, part, off))",
        )
        .await?;
    let mut pool = Vec::with_capacity(POOL);
    for _ in 0..POOL {
        pool.push(Arc::new(tokio::sync::Mutex::new(connect(&conn).await?)));
    }

    let consumer = Arc::new(Consumer::new(
        ConsumerConfig::builder(bootstrap, "payments-to-postgres")
            .topic(topic)
            .offset_storage(OffsetStorage::Transactional(store.clone()))
            .build()?,
    )?);

    let mut n = 0usize;
    loop {
        let d = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            d = consumer.recv() => d?,
        };
        n += 1;
        let client = Arc::clone(&pool[n % POOL]);
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut client = client.lock().await;
            // Fails if the partition was revoked meanwhile: its new owner takes over.
            let Ok(step) = d.begin_transaction().await else {
                return;
            };
            let result: Result<bool, BoxError> = async {
                let txn = client.transaction().await?;
                let r = step.record();
                txn.execute(
                    "INSERT INTO payments (topic, part, off, body) VALUES ($1, $2, $3, $4)",
                    &[&r.topic(), &r.partition(), &r.offset(), &r.payload()],
                )
                .await?;
                let outcome = store.commit_in(&txn, step.group(), step.offsets()).await?;
                if !outcome.kept.is_empty() {
                    // Another consumer already moved past us: we are a zombie.
                    txn.rollback().await?;
                    return Ok(false);
                }
                txn.commit().await?;
                Ok(true)
            }
            .await;
            match result {
                Ok(true) => step.committed(),
                Ok(false) => step.aborted("overtaken by a newer owner"),
                Err(e) => step.aborted(e.to_string()),
            }
        });
    }
    consumer.shutdown(Duration::from_secs(30)).await;
    Ok(())
}
