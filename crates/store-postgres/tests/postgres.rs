//! The store against a real, throwaway PostgreSQL cluster: the shared conformance suite, the
//! never-backwards rule and commits inside the caller's transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use waterline_core::{OffsetAndMetadata, Position, TopicPartition};
use waterline_store::conformance::{self, Backend};
use waterline_store::{OffsetStore, StoreError};
use waterline_store_postgres::testing::TempCluster;
use waterline_store_postgres::{Backwards, CommitOutcome, PgStoreConfig, PostgresStore};

static TABLES: AtomicUsize = AtomicUsize::new(0);

/// One fresh table per backend, so every check starts from an empty store.
struct Pg {
    conn: String,
    config: PgStoreConfig,
}

impl Pg {
    fn new(conn: &str, backwards: Backwards) -> Self {
        let n = TABLES.fetch_add(1, Ordering::Relaxed);
        Pg {
            conn: conn.to_string(),
            config: PgStoreConfig {
                table: format!("offsets_{n}"),
                backwards,
                ..PgStoreConfig::default()
            },
        }
    }
}

#[async_trait]
impl Backend for Pg {
    async fn open(&self) -> Result<Box<dyn OffsetStore>, StoreError> {
        Ok(Box::new(
            PostgresStore::connect(&self.conn, self.config.clone()).await?,
        ))
    }
    fn durable(&self) -> bool {
        true
    }
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn at(o: i64) -> OffsetAndMetadata {
    OffsetAndMetadata::new(o, 1000 + o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_in_both_modes() {
    let cluster = TempCluster::start().expect("start PostgreSQL");
    let conn = cluster.conn_str();
    // `Allow` behaves like every other backend: the full suite.
    conformance::run_all(|| Pg::new(&conn, Backwards::Allow)).await;
    // `Ignore` (the default) deliberately refuses the backwards step of `overwrite`; every other
    // check must pass unchanged.
    for (name, check) in conformance::checks() {
        if name == "overwrite" {
            continue;
        }
        let backend = Pg::new(&conn, Backwards::Ignore);
        let run = tokio::spawn(async move { check(&backend).await });
        if let Err(e) = run.await {
            panic!("conformance check `{name}` failed under Backwards::Ignore: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_backwards_and_caller_transactions() {
    let cluster = TempCluster::start().expect("start PostgreSQL");
    let conn = cluster.conn_str();
    let store = PostgresStore::connect(&conn, PgStoreConfig::default())
        .await
        .unwrap();

    // Never backwards: the greater numeric offset wins, within and across batches.
    store.commit("g", &[(tp(0), at(10))]).await.unwrap();
    let out = store
        .commit_checked("g", &[(tp(0), at(4)), (tp(1), at(2))])
        .await
        .unwrap();
    assert_eq!(
        out,
        CommitOutcome {
            applied: vec![tp(1)],
            kept: vec![tp(0)]
        }
    );
    assert_eq!(store.get("g", &tp(0)).await.unwrap(), Some(at(10)));
    // Equal offset replaces (fresh metadata), greater advances.
    let same = at(10).with_metadata("wl1:x");
    store.commit("g", &[(tp(0), same.clone())]).await.unwrap();
    assert_eq!(store.get("g", &tp(0)).await.unwrap(), Some(same));
    store.commit("g", &[(tp(0), at(11))]).await.unwrap();
    assert_eq!(store.get("g", &tp(0)).await.unwrap(), Some(at(11)));
    // Opaque positions cannot be ordered: they always replace, in both directions.
    let mut text = at(0);
    text.position = Position::Text("file:1".into());
    store.commit("g", &[(tp(0), text.clone())]).await.unwrap();
    assert_eq!(store.get("g", &tp(0)).await.unwrap(), Some(text));
    store.commit("g", &[(tp(0), at(3))]).await.unwrap();
    assert_eq!(store.get("g", &tp(0)).await.unwrap(), Some(at(3)));
    // Concurrent writers racing on one partition: the maximum survives.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let s = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..20i64 {
                let o = 100 + ((i * 7 + w * 13) % 50);
                s.commit("race", &[(tp(0), at(o))]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let max = (0..8i64)
        .flat_map(|w| (0..20i64).map(move |i| 100 + ((i * 7 + w * 13) % 50)))
        .max()
        .unwrap();
    assert_eq!(
        store.get("race", &tp(0)).await.unwrap().unwrap().offset(),
        Some(max)
    );

    // Caller transactions: rows and offsets commit or roll back together.
    let (mut client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn_task = tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE results (k BIGINT PRIMARY KEY)")
        .await
        .unwrap();

    let txn = client.transaction().await.unwrap();
    txn.execute("INSERT INTO results VALUES (1)", &[])
        .await
        .unwrap();
    let out = store
        .commit_in(&txn, "eo", &[(tp(0), at(2))])
        .await
        .unwrap();
    assert_eq!(out.applied, vec![tp(0)]);
    // Inside the transaction the new offset is visible; outside it is not yet.
    assert_eq!(store.get_in(&txn, "eo", &tp(0)).await.unwrap(), Some(at(2)));
    assert_eq!(store.get("eo", &tp(0)).await.unwrap(), None);
    txn.rollback().await.unwrap();
    assert_eq!(store.get("eo", &tp(0)).await.unwrap(), None);
    let n: i64 = client
        .query_one("SELECT count(*) FROM results", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "rolled-back rows must be gone with the offsets");

    let txn = client.transaction().await.unwrap();
    txn.execute("INSERT INTO results VALUES (1)", &[])
        .await
        .unwrap();
    store
        .commit_in(&txn, "eo", &[(tp(0), at(2))])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(store.get("eo", &tp(0)).await.unwrap(), Some(at(2)));

    // A zombie writer behind the stored offset learns it was overtaken and rolls back.
    let txn = client.transaction().await.unwrap();
    txn.execute("INSERT INTO results VALUES (0)", &[])
        .await
        .unwrap();
    let out = store
        .commit_in(&txn, "eo", &[(tp(0), at(1))])
        .await
        .unwrap();
    assert_eq!(out.kept, vec![tp(0)]);
    txn.rollback().await.unwrap();
    let keys: Vec<i64> = client
        .query("SELECT k FROM results ORDER BY k", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, vec![1]);

    // A commit over the metadata limit fails before touching the transaction's data.
    let txn = client.transaction().await.unwrap();
    let big = at(9).with_metadata("m".repeat(5000));
    assert!(store.commit_in(&txn, "eo", &[(tp(0), big)]).await.is_err());
    txn.rollback().await.unwrap();

    // Closed stores refuse work.
    store.close().await.unwrap();
    assert!(matches!(
        store.get("eo", &tp(0)).await,
        Err(StoreError::Closed)
    ));
    drop(client);
    let _ = conn_task.await;
}

#[test]
fn bad_table_name_is_refused_before_connecting() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(PostgresStore::connect(
            "host=127.0.0.1 port=1",
            PgStoreConfig {
                table: "x; DROP TABLE y".into(),
                ..PgStoreConfig::default()
            },
        ))
        .unwrap_err();
    assert!(err.to_string().contains("invalid table name"), "{err}");
}
