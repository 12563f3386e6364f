//! PostgreSQL offset store for Waterline.
//!
//! [`PostgresStore`] implements [`OffsetStore`] on one table that the store creates itself
//! (idempotently, see [`schema_sql`]). Two things set it apart from the other backends:
//!
//! - **Commits never move backwards** (by default, [`Backwards::Ignore`]): an upsert keeps the
//!   greater numeric offset, so a late or zombie writer cannot rewind a partition. See
//!   [`Backwards`] for the exact rule, including opaque positions.
//! - **Commits inside the caller's transaction**: [`PostgresStore::commit_in`] writes the offsets
//!   through the caller's own [`Transaction`], so the caller's rows and the offsets commit or roll
//!   back together. That is exactly-once into PostgreSQL: after a crash, the table holds the
//!   results of precisely the records at or below the stored positions.
//!
//! # Schema
//!
//! One row per (group, topic, partition). Names are stored as `BYTEA` holding their UTF-8 bytes:
//! PostgreSQL `TEXT` cannot hold NUL characters, and byte order is exactly the order of Rust
//! strings, which [`OffsetStore::get_group`] and [`OffsetStore::list_groups`] promise.
//!
//! | column         | type     | meaning                                                     |
//! |----------------|----------|-------------------------------------------------------------|
//! | `group_id`     | BYTEA    | consumer group name (UTF-8)                                 |
//! | `topic`        | BYTEA    | topic name (UTF-8)                                          |
//! | `partition_id` | INTEGER  | partition index                                             |
//! | `kind`         | SMALLINT | 0 numeric offset, 1 text token, 2 binary token              |
//! | `next_offset`  | BIGINT   | the next offset to read (kind 0 only, else NULL)            |
//! | `token`        | BYTEA    | the opaque token, UTF-8 for kind 1 (kinds 1 and 2, else NULL) |
//! | `metadata`     | BYTEA    | commit metadata (UTF-8), e.g. Waterline's `wl1:` acked set  |
//! | `commit_ts_ms` | BIGINT   | commit time, ms since the Unix epoch, as given by the caller |
//! | `leader_epoch` | INTEGER  | leader epoch, NULL when unknown                             |
//!
//! Durability: a write returns `Ok` once PostgreSQL committed it, i.e. once its WAL record is
//! flushed under the server's default `synchronous_commit = on`.
#![deny(unsafe_code, missing_docs)]

mod error;
#[cfg(feature = "test-cluster")]
pub mod testing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
pub use tokio_postgres;
use tokio_postgres::{Client, GenericClient, NoTls, Row, Transaction};
use waterline_core::{OffsetAndMetadata, Position, TopicPartition};
use waterline_store::{CommitBatch, GroupOffsets, Limits, OffsetStore, StoreError};

pub use error::PgStoreError;

/// Default table name.
pub const DEFAULT_TABLE: &str = "waterline_offsets";

/// What a commit does when it would move a partition's numeric offset backwards.
///
/// The rule compares only when **both** the stored and the new position are numeric
/// ([`Position::Offset`]): then the greater offset wins, and an equal offset replaces the row
/// (refreshing metadata and timestamp). Opaque positions ([`Position::Text`],
/// [`Position::Bytes`]) cannot be ordered by the store, so a commit involving one on either side
/// always replaces the row; ordering opaque tokens is the job of the source that issues them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backwards {
    /// Keep the stored, greater offset; the entry is reported in [`CommitOutcome::kept`].
    #[default]
    Ignore,
    /// Overwrite unconditionally, like the other backends (for operator resets).
    Allow,
}

/// Store settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgStoreConfig {
    /// Table holding the offsets; created if missing. A plain identifier (see
    /// [`PgStoreError::InvalidTableName`]).
    pub table: String,
    /// The rule for commits that would move an offset backwards.
    pub backwards: Backwards,
    /// Input limits (metadata length); Kafka's defaults unless changed.
    pub limits: Limits,
}

impl Default for PgStoreConfig {
    fn default() -> Self {
        Self {
            table: DEFAULT_TABLE.to_string(),
            backwards: Backwards::Ignore,
            limits: Limits::default(),
        }
    }
}

/// What a commit did, per partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Partitions whose row was inserted or replaced.
    pub applied: Vec<TopicPartition>,
    /// Partitions left unchanged because the stored offset is greater ([`Backwards::Ignore`]).
    /// A writer that finds its own partition here has been overtaken (e.g. it is a zombie after
    /// a rebalance) and should roll its transaction back.
    pub kept: Vec<TopicPartition>,
}

/// The DDL the store runs (idempotently) before first use, for table `table`.
pub fn schema_sql(table: &str) -> Result<String, PgStoreError> {
    check_table(table)?;
    Ok(format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    group_id     BYTEA    NOT NULL,
    topic        BYTEA    NOT NULL,
    partition_id INTEGER  NOT NULL,
    kind         SMALLINT NOT NULL CHECK (kind IN (0, 1, 2)),
    next_offset  BIGINT,
    token        BYTEA,
    metadata     BYTEA    NOT NULL,
    commit_ts_ms BIGINT   NOT NULL,
    leader_epoch INTEGER,
    PRIMARY KEY (group_id, topic, partition_id),
    CHECK ((kind = 0) = (next_offset IS NOT NULL)),
    CHECK ((kind = 0) = (token IS NULL))
)"
    ))
}

fn check_table(table: &str) -> Result<(), PgStoreError> {
    let ok = !table.is_empty()
        && table.len() <= 63
        && !table.as_bytes()[0].is_ascii_digit()
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PgStoreError::InvalidTableName(table.to_string()))
    }
}

/// Creates the offsets table if it does not exist. Concurrent callers are serialized by a
/// transaction-scoped advisory lock, because concurrent `CREATE TABLE IF NOT EXISTS` can still
/// fail on PostgreSQL's catalog unique indexes.
pub async fn ensure_schema(client: &mut Client, table: &str) -> Result<(), PgStoreError> {
    let ddl = schema_sql(table)?;
    let txn = client
        .transaction()
        .await
        .map_err(PgStoreError::query("begin schema transaction"))?;
    txn.execute("SELECT pg_advisory_xact_lock(7261534201)", &[])
        .await
        .map_err(PgStoreError::query("lock schema"))?;
    txn.batch_execute(&ddl)
        .await
        .map_err(PgStoreError::query("create table"))?;
    txn.commit()
        .await
        .map_err(PgStoreError::query("commit schema"))
}

/// Statements for one table, built once.
#[derive(Debug)]
struct Sql {
    upsert: String,
    get: String,
    get_group: String,
    delete: String,
    delete_group: String,
    list_groups: String,
}

const COLUMNS: &str = "kind, next_offset, token, metadata, commit_ts_ms, leader_epoch";

impl Sql {
    fn new(table: &str, backwards: Backwards) -> Self {
        let guard = match backwards {
            Backwards::Ignore => {
                "WHERE NOT (cur.kind = 0 AND EXCLUDED.kind = 0 \
                 AND EXCLUDED.next_offset < cur.next_offset)"
            }
            Backwards::Allow => "",
        };
        Sql {
            upsert: format!(
                "INSERT INTO {table} AS cur (group_id, topic, partition_id, {COLUMNS}) \
                 SELECT $1::bytea, u.* FROM UNNEST($2::bytea[], $3::int4[], $4::int2[], \
                 $5::int8[], $6::bytea[], $7::bytea[], $8::int8[], $9::int4[]) AS u \
                 ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET \
                 kind = EXCLUDED.kind, next_offset = EXCLUDED.next_offset, \
                 token = EXCLUDED.token, metadata = EXCLUDED.metadata, \
                 commit_ts_ms = EXCLUDED.commit_ts_ms, leader_epoch = EXCLUDED.leader_epoch \
                 {guard} RETURNING topic, partition_id"
            ),
            get: format!(
                "SELECT topic, partition_id, {COLUMNS} FROM {table} \
                 WHERE group_id = $1 AND topic = $2 AND partition_id = $3"
            ),
            get_group: format!(
                "SELECT topic, partition_id, {COLUMNS} FROM {table} \
                 WHERE group_id = $1 ORDER BY topic, partition_id"
            ),
            delete: format!(
                "DELETE FROM {table} WHERE group_id = $1 AND (topic, partition_id) IN \
                 (SELECT * FROM UNNEST($2::bytea[], $3::int4[]))"
            ),
            delete_group: format!("DELETE FROM {table} WHERE group_id = $1"),
            list_groups: format!("SELECT DISTINCT group_id FROM {table} ORDER BY group_id"),
        }
    }
}

/// A batch as column arrays, de-duplicated (the later entry for a partition wins, as the trait
/// requires; one `INSERT ... ON CONFLICT` may not touch a row twice).
#[derive(Default)]
struct Columns {
    topic: Vec<Vec<u8>>,
    partition: Vec<i32>,
    kind: Vec<i16>,
    offset: Vec<Option<i64>>,
    token: Vec<Option<Vec<u8>>>,
    metadata: Vec<Vec<u8>>,
    ts: Vec<i64>,
    epoch: Vec<Option<i32>>,
}

impl Columns {
    fn of(offsets: &[(TopicPartition, OffsetAndMetadata)]) -> Self {
        let mut last: HashMap<&TopicPartition, usize> = HashMap::with_capacity(offsets.len());
        for (i, (tp, _)) in offsets.iter().enumerate() {
            last.insert(tp, i);
        }
        let mut c = Columns::default();
        for (i, (tp, o)) in offsets.iter().enumerate() {
            if last.get(tp) != Some(&i) {
                continue;
            }
            let (kind, offset, token) = match &o.position {
                Position::Offset(n) => (0, Some(*n), None),
                Position::Text(s) => (1, None, Some(s.as_bytes().to_vec())),
                Position::Bytes(b) => (2, None, Some(b.clone())),
            };
            c.topic.push(tp.topic.as_bytes().to_vec());
            c.partition.push(tp.partition);
            c.kind.push(kind);
            c.offset.push(offset);
            c.token.push(token);
            c.metadata.push(o.metadata.as_bytes().to_vec());
            c.ts.push(o.commit_timestamp_ms);
            c.epoch.push(o.leader_epoch);
        }
        c
    }
}

/// The PostgreSQL offset store. Operations share one connection, one at a time.
#[derive(Debug)]
pub struct PostgresStore {
    client: Mutex<Client>,
    connection: JoinHandle<()>,
    closed: AtomicBool,
    config: PgStoreConfig,
    sql: Sql,
}

impl PostgresStore {
    /// Connects (without TLS) using a libpq-style connection string such as
    /// `host=127.0.0.1 port=5432 user=app dbname=app`, and creates the table if it is missing.
    /// Needs a tokio runtime (the connection runs as a task).
    pub async fn connect(conn: &str, config: PgStoreConfig) -> Result<Self, PgStoreError> {
        check_table(&config.table)?;
        let (mut client, connection) = tokio_postgres::connect(conn, NoTls)
            .await
            .map_err(PgStoreError::Connect)?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL offset store connection ended");
            }
        });
        if let Err(e) = ensure_schema(&mut client, &config.table).await {
            connection.abort();
            return Err(e);
        }
        let sql = Sql::new(&config.table, config.backwards);
        Ok(Self {
            client: Mutex::new(client),
            connection,
            closed: AtomicBool::new(false),
            config,
            sql,
        })
    }

    /// The store's settings.
    pub fn config(&self) -> &PgStoreConfig {
        &self.config
    }

    /// Commits `offsets` for `group` through the caller's transaction `txn`: nothing is visible
    /// until the caller commits `txn`, and a rollback discards the offsets with the caller's
    /// rows. The transaction must be on a database where the table exists (any
    /// [`PostgresStore`] connected to it created it). Follows [`Backwards`]; see
    /// [`CommitOutcome::kept`] for fencing.
    pub async fn commit_in(
        &self,
        txn: &Transaction<'_>,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<CommitOutcome, PgStoreError> {
        self.upsert(txn, group, offsets).await
    }

    /// Reads one partition's committed position through the caller's transaction (sees the
    /// transaction's own uncommitted writes).
    pub async fn get_in(
        &self,
        txn: &Transaction<'_>,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>, PgStoreError> {
        self.get_with(txn, group, tp).await
    }

    async fn upsert<C: GenericClient + Sync>(
        &self,
        client: &C,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<CommitOutcome, PgStoreError> {
        self.config.limits.check(group, offsets)?;
        if offsets.is_empty() {
            return Ok(CommitOutcome::default());
        }
        let c = Columns::of(offsets);
        let rows = client
            .query(
                &self.sql.upsert,
                &[
                    &group.as_bytes(),
                    &c.topic,
                    &c.partition,
                    &c.kind,
                    &c.offset,
                    &c.token,
                    &c.metadata,
                    &c.ts,
                    &c.epoch,
                ],
            )
            .await
            .map_err(PgStoreError::query("commit offsets"))?;
        let mut applied = Vec::with_capacity(rows.len());
        for row in &rows {
            let topic: Vec<u8> = row.get(0);
            applied.push(TopicPartition::new(
                self.utf8(topic, "topic")?,
                row.get::<_, i32>(1),
            ));
        }
        applied.sort();
        let mut kept: Vec<TopicPartition> = c
            .topic
            .iter()
            .zip(&c.partition)
            .map(|(t, p)| TopicPartition::new(String::from_utf8_lossy(t), *p))
            .filter(|tp| applied.binary_search(tp).is_err())
            .collect();
        kept.sort();
        Ok(CommitOutcome { applied, kept })
    }

    async fn get_with<C: GenericClient + Sync>(
        &self,
        client: &C,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>, PgStoreError> {
        let row = client
            .query_opt(
                &self.sql.get,
                &[&group.as_bytes(), &tp.topic.as_bytes(), &tp.partition],
            )
            .await
            .map_err(PgStoreError::query("read offset"))?;
        row.map(|r| self.decode(&r).map(|(_, o)| o)).transpose()
    }

    fn corrupt(&self, reason: impl Into<String>) -> PgStoreError {
        PgStoreError::CorruptRow {
            table: self.config.table.clone(),
            reason: reason.into(),
        }
    }

    fn utf8(&self, bytes: Vec<u8>, what: &str) -> Result<String, PgStoreError> {
        String::from_utf8(bytes).map_err(|_| self.corrupt(format!("{what} is not UTF-8")))
    }

    /// Decodes a row of `topic, partition_id, COLUMNS`.
    fn decode(&self, row: &Row) -> Result<(TopicPartition, OffsetAndMetadata), PgStoreError> {
        let topic = self.utf8(row.get(0), "topic")?;
        let partition: i32 = row.get(1);
        let kind: i16 = row.get(2);
        let offset: Option<i64> = row.get(3);
        let token: Option<Vec<u8>> = row.get(4);
        let position = match (kind, offset, token) {
            (0, Some(o), None) => Position::Offset(o),
            (1, None, Some(t)) => Position::Text(self.utf8(t, "text token")?),
            (2, None, Some(t)) => Position::Bytes(t),
            (k, _, _) => return Err(self.corrupt(format!("kind {k} with mismatched columns"))),
        };
        Ok((
            TopicPartition::new(topic, partition),
            OffsetAndMetadata {
                position,
                metadata: self.utf8(row.get(5), "metadata")?,
                commit_timestamp_ms: row.get(6),
                leader_epoch: row.get(7),
            },
        ))
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// Like [`OffsetStore::commit`], but reports which partitions were kept at a greater
    /// stored offset.
    pub async fn commit_checked(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<CommitOutcome, StoreError> {
        self.check_open()?;
        let client = self.client.lock().await;
        Ok(self.upsert(&*client, group, offsets).await?)
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

#[async_trait]
impl OffsetStore for PostgresStore {
    async fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), StoreError> {
        self.commit_checked(group, offsets).await.map(|_| ())
    }

    async fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        self.check_open()?;
        for b in batches {
            self.config.limits.check(&b.group, &b.offsets)?;
        }
        let mut client = self.client.lock().await;
        let txn = client
            .transaction()
            .await
            .map_err(PgStoreError::query("begin transaction"))?;
        for b in batches {
            self.upsert(&txn, &b.group, &b.offsets).await?;
        }
        txn.commit()
            .await
            .map_err(PgStoreError::query("commit transaction"))?;
        Ok(())
    }

    async fn get(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>, StoreError> {
        self.check_open()?;
        let client = self.client.lock().await;
        Ok(self.get_with(&*client, group, tp).await?)
    }

    async fn get_group(&self, group: &str) -> Result<GroupOffsets, StoreError> {
        self.check_open()?;
        let client = self.client.lock().await;
        let rows = client
            .query(&self.sql.get_group, &[&group.as_bytes()])
            .await
            .map_err(PgStoreError::query("read group"))?;
        let mut out = rows
            .iter()
            .map(|r| self.decode(r))
            .collect::<Result<GroupOffsets, _>>()?;
        // Byte order equals string order; sort anyway so the promise does not rest on it.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError> {
        self.check_open()?;
        if tps.is_empty() {
            return Ok(());
        }
        let topics: Vec<&[u8]> = tps.iter().map(|t| t.topic.as_bytes()).collect();
        let parts: Vec<i32> = tps.iter().map(|t| t.partition).collect();
        let client = self.client.lock().await;
        client
            .execute(&self.sql.delete, &[&group.as_bytes(), &topics, &parts])
            .await
            .map_err(PgStoreError::query("delete offsets"))?;
        Ok(())
    }

    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        self.check_open()?;
        let client = self.client.lock().await;
        client
            .execute(&self.sql.delete_group, &[&group.as_bytes()])
            .await
            .map_err(PgStoreError::query("delete group"))?;
        Ok(())
    }

    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        self.check_open()?;
        let client = self.client.lock().await;
        let rows = client
            .query(&self.sql.list_groups, &[])
            .await
            .map_err(PgStoreError::query("list groups"))?;
        let mut groups = rows
            .into_iter()
            .map(|r| self.utf8(r.get(0), "group name"))
            .collect::<Result<Vec<_>, _>>()?;
        groups.sort();
        Ok(groups)
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.closed.store(true, Ordering::Release);
        self.connection.abort();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        for ok in ["waterline_offsets", "t", "T_1", &"a".repeat(63)] {
            assert!(check_table(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1t",
            "a-b",
            "a;drop",
            "a b",
            "ü",
            "\"x\"",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(check_table(bad), Err(PgStoreError::InvalidTableName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn columns_keep_the_last_entry_per_partition() {
        let tp = |p| TopicPartition::new("t", p);
        let c = Columns::of(&[
            (tp(0), OffsetAndMetadata::new(5, 0)),
            (tp(1), OffsetAndMetadata::new(1, 0)),
            (tp(0), OffsetAndMetadata::new(3, 0)),
        ]);
        assert_eq!(c.partition, vec![1, 0]);
        assert_eq!(c.offset, vec![Some(1), Some(3)]);
    }

    #[test]
    fn ignore_rule_guards_only_numeric_pairs() {
        let s = Sql::new("t", Backwards::Ignore);
        assert!(s.upsert.contains("cur.kind = 0 AND EXCLUDED.kind = 0"));
        assert!(!Sql::new("t", Backwards::Allow).upsert.contains("WHERE NOT"));
    }
}
