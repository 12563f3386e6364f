//! The embedded store: one redb database file. The default durable store.
//!
//! # FORMAT (version 1)
//!
//! Three tables.
//!
//! `meta` (`&str` → `u64`): one row, `"format_version"` → `1`. Written when the database is
//! created; a different number makes [`RedbStore::open`] fail with
//! [`StoreError::UnsupportedVersion`].
//!
//! `offsets` (`&[u8]` → `&[u8]`): one row per (group, topic, partition). All integers are
//! big-endian.
//!
//! Key, laid out so that one group's rows are contiguous (a range scan over the group's prefix)
//! and, within a topic, partitions sort numerically (topics sort by length first, so
//! `get_group` sorts its result):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | group name length `g` (u32) |
//! | g | group name, UTF-8 |
//! | 4 | topic name length `t` (u32) |
//! | t | topic name, UTF-8 |
//! | 4 | partition (i32) with its sign bit flipped, so byte order is numeric order |
//!
//! Value:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | position kind: 0 = offset, 1 = text, 2 = bytes |
//! | 8 | kind 0: the offset (i64) |
//! | 4 + n | kinds 1 and 2: length `n` (u32), then the token (UTF-8 for text) |
//! | 8 | commit timestamp, ms since the Unix epoch (i64) |
//! | 1 | leader epoch present: 0 = no, 1 = yes |
//! | 4 | the leader epoch (i32), only when present |
//! | 4 + m | metadata length `m` (u32), then the metadata, UTF-8 |
//!
//! A value must be consumed exactly; anything else is [`StoreError::Corrupt`].
//!
//! `group_metadata` (`&str` → `&[u8]`): one row per consumer group whose membership the broker
//! keeps across restarts. Key: the group id. Value: an opaque record owned by the caller (the
//! broker stores `waterline_coordinator::GroupSnapshot::encode`, whose module documents it byte
//! by byte, starting with its own version byte). The table was added without a format-version
//! bump: it is created on the first write, a database without it simply has no group metadata,
//! and a build that predates it ignores it. Rows are written and deleted only through
//! [`RedbStore::write_group_metadata_blocking`]; [`OffsetStore::delete_group`] removes offsets
//! only (the broker deletes a group's metadata itself, in order with its other metadata writes).
//!
//! `txn_offsets` (`&[u8]` → `&[u8]`): offsets committed inside a Kafka transaction
//! (TxnOffsetCommit) that its COMMIT or ABORT has not yet settled. Key: the producer id (i64,
//! big-endian, sign bit flipped) followed by exactly the `offsets` key above (group, topic,
//! partition); value: exactly the `offsets` value. A COMMIT moves a producer's rows for the
//! named groups into `offsets` and an ABORT drops them, in one write transaction
//! ([`RedbStore::complete_txn_offsets_blocking`]), so a crash leaves them pending or settled,
//! never half applied. Added like `group_metadata`, without a format-version bump.
//!
//! # Durability
//!
//! Every write is one write transaction committed with [`Durability::Immediate`]: redb fsyncs
//! before the commit returns, and a crash leaves the previous or the new transaction. A batch of
//! any size (10,000 partitions included) and every batch of a
//! [`commit_many`](OffsetStore::commit_many) is one transaction and one fsync. After a failed
//! fsync redb refuses further writes (its `PreviousIo` error) until the store is reopened.
//!
//! Opening checks the checksum of every page by default ([`RedbOptions::check_integrity_on_open`])
//! so a damaged file is reported as [`StoreError::Corrupt`] naming it. A missing or empty file is
//! replaced by a new, empty database, built as `<path>.creating` and renamed into place (then the
//! directory fsynced), so a crash during creation never leaves a half-written database behind.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::redb::{
    Builder, CommitError, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, StorageError, TableDefinition, TableError, TransactionError,
};
use async_trait::async_trait;
use waterline_core::{OffsetAndMetadata, Position, TopicPartition};

use crate::error::blocking;
use crate::{CommitBatch, GroupOffsets, Limits, OffsetStore, StoreError};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const OFFSETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("offsets");
const GROUP_METADATA: TableDefinition<&str, &[u8]> = TableDefinition::new("group_metadata");
const TXN_OFFSETS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("txn_offsets");
const VERSION_KEY: &str = "format_version";

/// Options for [`RedbStore::open_with`].
#[derive(Debug, Clone)]
pub struct RedbOptions {
    /// Limits enforced on commits.
    pub limits: Limits,
    /// Verify every page's checksum when opening (reads the whole file). Without it a file
    /// damaged outside redb may be trusted. Default `true`: offset databases are small.
    pub check_integrity_on_open: bool,
    /// redb's page cache size in bytes; `None` keeps redb's default.
    pub cache_size: Option<usize>,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            limits: Limits::default(),
            check_integrity_on_open: true,
            cache_size: None,
        }
    }
}

/// The redb-backed store. Cheap to clone; clones share the database.
#[derive(Debug, Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    path: PathBuf,
    limits: Limits,
}

impl RedbStore {
    /// Opens (or creates) the database file at `path` with default [`RedbOptions`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, RedbOptions::default()).await
    }

    /// Opens (or creates) the database file at `path`.
    ///
    /// Fails with [`StoreError::Locked`] if the file is open elsewhere,
    /// [`StoreError::Corrupt`] if it is not a valid database, and
    /// [`StoreError::UnsupportedVersion`] if it holds another format version.
    pub async fn open_with(
        path: impl AsRef<Path>,
        options: RedbOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let inner = blocking(move || Inner::open(path, options)).await?;
        Ok(RedbStore {
            inner: Arc::new(inner),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Applies group-metadata writes in one write transaction, fsynced before it returns: each
    /// `(group, Some(record))` stores (replaces) the group's record, `(group, None)` deletes it.
    /// A crash leaves all of them or none.
    ///
    /// Blocking: unlike the rest of the store it runs on the caller's thread, because the broker
    /// must order these writes with the coordinator's state changes (it writes while holding
    /// the coordinator lock). Call it from a blocking context (`spawn_blocking`,
    /// `block_in_place`) or accept stalling the current thread for one fsync.
    pub fn write_group_metadata_blocking(
        &self,
        writes: &[(&str, Option<&[u8]>)],
    ) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.inner.write_group_metadata(writes)
    }

    /// Stores offsets committed inside producer `producer_id`'s open transaction as pending for
    /// `group` (replacing pending rows of the same partitions), fsynced before it returns. They
    /// stay invisible to [`OffsetStore::get_group`] until
    /// [`RedbStore::complete_txn_offsets_blocking`] commits them. Blocking.
    pub fn stage_txn_offsets_blocking(
        &self,
        producer_id: i64,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), StoreError> {
        let op = TxnOffsetOp::Stage {
            producer_id,
            group: group.to_owned(),
            offsets: offsets.to_vec(),
        };
        single(self.apply_txn_offset_ops_blocking(std::slice::from_ref(&op))).map(drop)
    }

    /// Settles producer `producer_id`'s pending transactional offsets of `groups`: with
    /// `commit` they replace the groups' committed offsets, otherwise they are dropped; fsynced
    /// before it returns. Idempotent (a repeat finds nothing). Returns the settled (group,
    /// partition) pairs. Blocking.
    pub fn complete_txn_offsets_blocking(
        &self,
        producer_id: i64,
        groups: &[String],
        commit: bool,
    ) -> Result<Vec<(String, TopicPartition)>, StoreError> {
        let op = TxnOffsetOp::Complete {
            producer_id,
            groups: groups.to_vec(),
            commit,
        };
        single(self.apply_txn_offset_ops_blocking(std::slice::from_ref(&op)))
    }

    /// Applies transactional-offset operations in order, in ONE write transaction and one
    /// fsync (group commit for many producers). An operation refused on its own (metadata too
    /// large, an unencodable name) fails alone; a storage error fails them all. Each success
    /// lists the (group, partition) pairs it staged or settled. Blocking.
    pub fn apply_txn_offset_ops_blocking(
        &self,
        ops: &[TxnOffsetOp],
    ) -> Result<Vec<TxnOpResult>, StoreError> {
        self.inner.apply_txn_offset_ops(ops)
    }

    /// Every pending transactional offset: (producer id, group, partition, offset), in key
    /// order. Blocking.
    pub fn txn_offsets_blocking(&self) -> Result<Vec<PendingTxnOffset>, StoreError> {
        self.inner.txn_offsets()
    }

    /// Every stored group-metadata record, sorted by group id.
    pub async fn group_metadata(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.run(|inner| inner.group_metadata()).await
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&inner)).await
    }
}

#[async_trait]
impl OffsetStore for RedbStore {
    /// One write transaction, fsynced before it returns.
    async fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), StoreError> {
        self.inner.limits.check(group, offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let batch = CommitBatch {
            group: group.to_owned(),
            offsets: offsets.to_vec(),
        };
        self.run(move |inner| inner.commit_many(std::slice::from_ref(&batch)))
            .await
    }

    /// All batches in one write transaction and one fsync: atomic together.
    async fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        for b in batches {
            self.inner.limits.check(&b.group, &b.offsets)?;
        }
        if batches.iter().all(|b| b.offsets.is_empty()) {
            return Ok(());
        }
        let batches = batches.to_vec();
        self.run(move |inner| inner.commit_many(&batches)).await
    }

    async fn get(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>, StoreError> {
        let key = encode_key(group, tp)?;
        self.run(move |inner| inner.get(&key)).await
    }

    async fn get_group(&self, group: &str) -> Result<GroupOffsets, StoreError> {
        let prefix = group_prefix(group)?;
        self.run(move |inner| inner.get_group(&prefix)).await
    }

    /// One write transaction, fsynced before it returns.
    async fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError> {
        let keys = tps
            .iter()
            .map(|tp| encode_key(group, tp))
            .collect::<Result<Vec<_>, _>>()?;
        self.run(move |inner| inner.delete(&keys)).await
    }

    /// One write transaction, fsynced before it returns.
    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        let prefix = group_prefix(group)?;
        self.run(move |inner| inner.delete_group(&prefix)).await
    }

    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        self.run(|inner| inner.list_groups()).await
    }
}

impl Inner {
    fn open(path: PathBuf, options: RedbOptions) -> Result<Inner, StoreError> {
        let mut builder = Builder::new();
        builder.set_check_integrity_on_open(options.check_integrity_on_open);
        if let Some(size) = options.cache_size {
            builder.set_cache_size(size);
        }
        let needs_creating = match std::fs::metadata(&path) {
            Ok(m) => m.len() == 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(StoreError::io("inspect", &path, e)),
        };
        if needs_creating {
            create_atomically(&builder, &path)?;
        }
        let db = open_db(&path, || builder.open(&path))?;
        let inner = Inner {
            db,
            path,
            limits: options.limits,
        };
        inner.check_format()?;
        Ok(inner)
    }

    fn redb(&self, e: impl Into<::redb::Error>) -> StoreError {
        let e: ::redb::Error = e.into();
        if let ::redb::Error::Corrupted(reason) = &e {
            return StoreError::corrupt(&self.path, reason.clone());
        }
        StoreError::Redb {
            path: self.path.clone(),
            cause: Arc::new(e),
        }
    }

    /// Creates the tables of a new database, or checks the format version of an existing one.
    fn check_format(&self) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.redb(e))?;
            let found = meta
                .get(VERSION_KEY)
                .map_err(|e| self.redb(e))?
                .map(|v| v.value());
            let offsets = txn.open_table(OFFSETS).map_err(|e| self.redb(e))?;
            match found {
                Some(FORMAT_VERSION) => return Ok(()),
                Some(found) => {
                    return Err(StoreError::UnsupportedVersion {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                None if !offsets.is_empty().map_err(|e| self.redb(e))? => {
                    return Err(StoreError::corrupt(
                        &self.path,
                        "offsets present but no format version",
                    ));
                }
                None => {
                    meta.insert(VERSION_KEY, FORMAT_VERSION)
                        .map_err(|e| self.redb(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.commit_error(e))
    }

    fn begin_write(&self) -> Result<::redb::WriteTransaction, StoreError> {
        let mut txn = self.db.begin_write().map_err(|e| self.txn_error(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.redb(e))?;
        Ok(txn)
    }

    fn txn_error(&self, e: TransactionError) -> StoreError {
        match e {
            TransactionError::Storage(s) => self.redb(s),
            other => self.redb(other),
        }
    }

    fn commit_error(&self, e: CommitError) -> StoreError {
        match e {
            CommitError::Storage(s) => self.redb(s),
            other => self.redb(other),
        }
    }

    fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        // Encode everything before the transaction starts, so bad input never opens one.
        let mut rows = Vec::with_capacity(batches.iter().map(|b| b.offsets.len()).sum());
        for b in batches {
            for (tp, o) in &b.offsets {
                rows.push((encode_key(&b.group, tp)?, encode_value(o)?));
            }
        }
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(OFFSETS).map_err(|e| self.redb(e))?;
            for (k, v) in &rows {
                table
                    .insert(k.as_slice(), v.as_slice())
                    .map_err(|e| self.redb(e))?;
            }
        }
        txn.commit().map_err(|e| self.commit_error(e))
    }

    fn get(&self, key: &[u8]) -> Result<Option<OffsetAndMetadata>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.txn_error(e))?;
        let table = txn.open_table(OFFSETS).map_err(|e| self.table_error(e))?;
        match table.get(key).map_err(|e| self.redb(e))? {
            None => Ok(None),
            Some(v) => decode_value(v.value())
                .map(Some)
                .map_err(|reason| StoreError::corrupt(&self.path, reason)),
        }
    }

    fn get_group(&self, prefix: &[u8]) -> Result<GroupOffsets, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.txn_error(e))?;
        let table = txn.open_table(OFFSETS).map_err(|e| self.table_error(e))?;
        let mut out = Vec::new();
        for row in table.range::<&[u8]>(prefix..).map_err(|e| self.redb(e))? {
            let (k, v) = row.map_err(|e| self.redb(e))?;
            let Some(rest) = k.value().strip_prefix(prefix) else {
                break;
            };
            let corrupt = |reason: String| StoreError::corrupt(&self.path, reason);
            let tp = decode_topic_partition(rest).map_err(corrupt)?;
            let o = decode_value(v.value()).map_err(corrupt)?;
            out.push((tp, o));
        }
        // Length-prefixed topics sort by length first; the trait promises name order.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn write_group_metadata(&self, writes: &[(&str, Option<&[u8]>)]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(GROUP_METADATA).map_err(|e| self.redb(e))?;
            for (group, record) in writes {
                match record {
                    Some(r) => table.insert(*group, *r).map(drop),
                    None => table.remove(*group).map(drop),
                }
                .map_err(|e| self.redb(e))?;
            }
        }
        txn.commit().map_err(|e| self.commit_error(e))
    }

    fn apply_txn_offset_ops(&self, ops: &[TxnOffsetOp]) -> Result<Vec<TxnOpResult>, StoreError> {
        // Encode stages before the transaction starts, so bad input never opens one.
        // Per op: (key, value, group, partition) rows to stage.
        type Rows = Vec<(Vec<u8>, Vec<u8>, String, TopicPartition)>;
        let mut staged_rows: Vec<Result<Rows, StoreError>> = Vec::with_capacity(ops.len());
        for op in ops {
            staged_rows.push(match op {
                TxnOffsetOp::Stage {
                    producer_id,
                    group,
                    offsets,
                } => self.limits.check(group, offsets).and_then(|()| {
                    offsets
                        .iter()
                        .map(|(tp, o)| {
                            Ok((
                                txn_key(*producer_id, group, tp)?,
                                encode_value(o)?,
                                group.clone(),
                                tp.clone(),
                            ))
                        })
                        .collect()
                }),
                TxnOffsetOp::Complete { .. } => Ok(Vec::new()),
            });
        }
        let txn = self.begin_write()?;
        let mut results = Vec::with_capacity(ops.len());
        {
            let mut pending = txn.open_table(TXN_OFFSETS).map_err(|e| self.redb(e))?;
            let mut offsets = txn.open_table(OFFSETS).map_err(|e| self.redb(e))?;
            for (op, rows) in ops.iter().zip(staged_rows) {
                let rows = match rows {
                    Ok(rows) => rows,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                match op {
                    TxnOffsetOp::Stage { .. } => {
                        let mut done = Vec::with_capacity(rows.len());
                        for (k, v, group, tp) in rows {
                            pending
                                .insert(k.as_slice(), v.as_slice())
                                .map_err(|e| self.redb(e))?;
                            done.push((group, tp));
                        }
                        results.push(Ok(done));
                    }
                    TxnOffsetOp::Complete {
                        producer_id,
                        groups,
                        commit,
                    } => {
                        let mut settled = Vec::new();
                        for group in groups {
                            let mut prefix = producer_prefix(*producer_id);
                            prefix.extend_from_slice(&group_prefix(group)?);
                            let mut found = Vec::new();
                            for row in pending
                                .range::<&[u8]>(prefix.as_slice()..)
                                .map_err(|e| self.redb(e))?
                            {
                                let (k, v) = row.map_err(|e| self.redb(e))?;
                                if !k.value().starts_with(&prefix) {
                                    break;
                                }
                                found.push((k.value().to_vec(), v.value().to_vec()));
                            }
                            for (k, v) in found {
                                let tp = decode_topic_partition(&k[prefix.len()..])
                                    .map_err(|reason| StoreError::corrupt(&self.path, reason))?;
                                if *commit {
                                    offsets
                                        .insert(&k[8..], v.as_slice())
                                        .map_err(|e| self.redb(e))?;
                                }
                                pending.remove(k.as_slice()).map_err(|e| self.redb(e))?;
                                settled.push((group.clone(), tp));
                            }
                        }
                        results.push(Ok(settled));
                    }
                }
            }
        }
        txn.commit().map_err(|e| self.commit_error(e))?;
        Ok(results)
    }

    fn txn_offsets(&self) -> Result<Vec<PendingTxnOffset>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.txn_error(e))?;
        let table = match txn.open_table(TXN_OFFSETS) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.table_error(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.redb(e))? {
            let (k, v) = row.map_err(|e| self.redb(e))?;
            let corrupt = |reason: String| StoreError::corrupt(&self.path, reason);
            let key = k.value();
            let pid: [u8; 8] = key
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| corrupt("transactional offset key shorter than 8 bytes".into()))?;
            let producer_id = (u64::from_be_bytes(pid) ^ (1 << 63)).cast_signed();
            let (group, used) = decode_group(&key[8..]).map_err(corrupt)?;
            let partition = decode_topic_partition(&key[8 + used..]).map_err(corrupt)?;
            let offset = decode_value(v.value()).map_err(corrupt)?;
            out.push(PendingTxnOffset {
                producer_id,
                group,
                partition,
                offset,
            });
        }
        Ok(out)
    }

    fn group_metadata(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.txn_error(e))?;
        let table = match txn.open_table(GROUP_METADATA) {
            Ok(t) => t,
            // Databases written before the table existed have no group metadata.
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.table_error(e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.redb(e))? {
            let (k, v) = row.map_err(|e| self.redb(e))?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn delete(&self, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(OFFSETS).map_err(|e| self.redb(e))?;
            for k in keys {
                table.remove(k.as_slice()).map_err(|e| self.redb(e))?;
            }
        }
        txn.commit().map_err(|e| self.commit_error(e))
    }

    fn delete_group(&self, prefix: &[u8]) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut table = txn.open_table(OFFSETS).map_err(|e| self.redb(e))?;
            let removed = match successor(prefix) {
                Some(end) => table.retain_in::<&[u8], _>(prefix..end.as_slice(), |_, _| false),
                None => table.retain_in::<&[u8], _>(prefix.., |_, _| false),
            };
            removed.map_err(|e| self.redb(e))?;
        }
        txn.commit().map_err(|e| self.commit_error(e))
    }

    /// Skips from group to group: one range seek per group, not one step per partition.
    fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.txn_error(e))?;
        let table = txn.open_table(OFFSETS).map_err(|e| self.table_error(e))?;
        let mut groups = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let mut range = table
                .range::<&[u8]>(from.as_slice()..)
                .map_err(|e| self.redb(e))?;
            let Some(row) = range.next() else {
                break;
            };
            let (k, _) = row.map_err(|e| self.redb(e))?;
            let key = k.value();
            let (group, prefix_len) =
                decode_group(key).map_err(|r| StoreError::corrupt(&self.path, r))?;
            groups.push(group);
            match successor(&key[..prefix_len]) {
                Some(next) => from = next,
                None => break,
            }
        }
        // Keys order groups by length first; the trait promises lexicographic order.
        groups.sort();
        Ok(groups)
    }

    fn table_error(&self, e: TableError) -> StoreError {
        match e {
            TableError::Storage(s) => self.redb(s),
            other => self.redb(other),
        }
    }
}

/// Runs a redb open, turning its errors and panics into typed errors naming `path`.
fn open_db(
    path: &Path,
    open: impl FnOnce() -> Result<Database, DatabaseError>,
) -> Result<Database, StoreError> {
    // redb trusts structures it wrote itself and may panic (debug assertions) on a file
    // altered behind its back; bad input must be an error, not a crash.
    match catch_unwind(AssertUnwindSafe(open)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(open_error(path, e)),
        Err(_) => Err(StoreError::corrupt(
            path,
            "the database engine failed while reading the file",
        )),
    }
}

/// Creates a new database so that a crash at any moment leaves either no file at `path` (or
/// the empty file that was there) or a complete, empty, versioned database: redb writes a new
/// file's header in several steps, and a file killed half-way would fail to open as corrupt.
/// The database is built under a temporary name, then renamed into place.
fn create_atomically(builder: &Builder, path: &Path) -> Result<(), StoreError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".creating");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("remove", &tmp, e)),
    }
    let staging = Inner {
        db: open_db(&tmp, || builder.create(&tmp))?,
        path: tmp.clone(),
        limits: Limits::unlimited(),
    };
    // Creates both tables and commits the format version with an fsync.
    staging.check_format()?;
    drop(staging);
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io("rename", &tmp, e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_path_buf(),
        },
        DatabaseError::UpgradeRequired(v) => StoreError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: u64::from(v),
            supported: FORMAT_VERSION,
        },
        DatabaseError::Storage(StorageError::Corrupted(reason)) => {
            StoreError::corrupt(path, reason)
        }
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::corrupt(path, io.to_string())
        }
        DatabaseError::Storage(StorageError::Io(io)) => StoreError::io("open", path, io),
        other => StoreError::Redb {
            path: path.to_path_buf(),
            cause: Arc::new(other.into()),
        },
    }
}

/// The smallest byte string greater than every string starting with `prefix`, if any.
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

fn push_str(out: &mut Vec<u8>, s: &str) -> Result<(), StoreError> {
    let len = u32::try_from(s.len()).map_err(|_| StoreError::GroupNameTooLong {
        len: s.len(),
        max: u32::MAX as usize,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn group_prefix(group: &str) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(4 + group.len());
    push_str(&mut out, group)?;
    Ok(out)
}

/// The outcome of one [`TxnOffsetOp`]: the (group, partition) pairs it staged or settled.
pub type TxnOpResult = Result<Vec<(String, TopicPartition)>, StoreError>;

/// One write to the pending transactional offsets, for
/// [`RedbStore::apply_txn_offset_ops_blocking`].
#[derive(Debug, Clone, PartialEq)]
pub enum TxnOffsetOp {
    /// Store offsets of a TxnOffsetCommit as pending for (group, producer id).
    Stage {
        /// The transaction's producer id.
        producer_id: i64,
        /// Consumer group.
        group: String,
        /// The offsets.
        offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
    },
    /// Settle a producer's pending offsets of these groups: commit or drop them.
    Complete {
        /// The transaction's producer id.
        producer_id: i64,
        /// Groups named by the transaction's marker.
        groups: Vec<String>,
        /// COMMIT (apply them) or ABORT (drop them).
        commit: bool,
    },
}

fn single<T>(r: Result<Vec<Result<T, StoreError>>, StoreError>) -> Result<T, StoreError> {
    r?.pop()
        .unwrap_or_else(|| Err(StoreError::TaskFailed("no result for the operation".into())))
}

/// A transactional offset waiting for its transaction's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingTxnOffset {
    /// The producer whose transaction it belongs to.
    pub producer_id: i64,
    /// Consumer group.
    pub group: String,
    /// Partition.
    pub partition: TopicPartition,
    /// The offset to commit.
    pub offset: OffsetAndMetadata,
}

fn producer_prefix(producer_id: i64) -> Vec<u8> {
    (producer_id.cast_unsigned() ^ (1 << 63))
        .to_be_bytes()
        .to_vec()
}

fn txn_key(producer_id: i64, group: &str, tp: &TopicPartition) -> Result<Vec<u8>, StoreError> {
    let mut out = producer_prefix(producer_id);
    out.extend_from_slice(&encode_key(group, tp)?);
    Ok(out)
}

fn encode_key(group: &str, tp: &TopicPartition) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(12 + group.len() + tp.topic.len());
    push_str(&mut out, group)?;
    push_str(&mut out, &tp.topic)?;
    out.extend_from_slice(&(tp.partition.cast_unsigned() ^ 0x8000_0000).to_be_bytes());
    Ok(out)
}

fn encode_value(o: &OffsetAndMetadata) -> Result<Vec<u8>, StoreError> {
    let too_long = |len: usize| StoreError::TaskFailed(format!("value field of {len} bytes"));
    let mut out = Vec::with_capacity(32 + o.metadata.len());
    let push_bytes = |out: &mut Vec<u8>, b: &[u8]| -> Result<(), StoreError> {
        let len = u32::try_from(b.len()).map_err(|_| too_long(b.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(b);
        Ok(())
    };
    match &o.position {
        Position::Offset(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Position::Text(s) => {
            out.push(1);
            push_bytes(&mut out, s.as_bytes())?;
        }
        Position::Bytes(b) => {
            out.push(2);
            push_bytes(&mut out, b)?;
        }
    }
    out.extend_from_slice(&o.commit_timestamp_ms.to_be_bytes());
    match o.leader_epoch {
        None => out.push(0),
        Some(e) => {
            out.push(1);
            out.extend_from_slice(&e.to_be_bytes());
        }
    }
    push_bytes(&mut out, o.metadata.as_bytes())?;
    Ok(out)
}

/// A bounds-checked reader: every length is checked against the bytes present before use.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!("truncated {what}"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.array::<1>(what)?[0])
    }

    fn len_prefixed(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(self.array(what)?);
        let len = usize::try_from(len).map_err(|_| format!("{what} too long"))?;
        self.take(len, what)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let b = self.len_prefixed(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes after {what}", self.bytes.len()))
        }
    }
}

/// The group name and the length of the key prefix that encodes it.
fn decode_group(key: &[u8]) -> Result<(String, usize), String> {
    let mut r = Reader { bytes: key };
    let group = r.string("group name in key")?;
    let prefix_len = 4 + group.len();
    Ok((group, prefix_len))
}

fn decode_topic_partition(rest: &[u8]) -> Result<TopicPartition, String> {
    let mut r = Reader { bytes: rest };
    let topic = r.string("topic in key")?;
    let partition = (u32::from_be_bytes(r.array("partition in key")?) ^ 0x8000_0000).cast_signed();
    r.finish("key")?;
    Ok(TopicPartition::new(topic, partition))
}

fn decode_value(bytes: &[u8]) -> Result<OffsetAndMetadata, String> {
    let mut r = Reader { bytes };
    let position = match r.u8("position kind")? {
        0 => Position::Offset(i64::from_be_bytes(r.array("offset")?)),
        1 => Position::Text(r.string("text position")?),
        2 => Position::Bytes(r.len_prefixed("bytes position")?.to_vec()),
        k => return Err(format!("unknown position kind {k}")),
    };
    let commit_timestamp_ms = i64::from_be_bytes(r.array("commit timestamp")?);
    let leader_epoch = match r.u8("leader epoch flag")? {
        0 => None,
        1 => Some(i32::from_be_bytes(r.array("leader epoch")?)),
        f => return Err(format!("bad leader epoch flag {f}")),
    };
    let metadata = r.string("metadata")?;
    r.finish("value")?;
    Ok(OffsetAndMetadata {
        position,
        metadata,
        commit_timestamp_ms,
        leader_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn position() -> impl Strategy<Value = Position> {
        prop_oneof![
            any::<i64>().prop_map(Position::Offset),
            ".{0,20}".prop_map(Position::Text),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Position::Bytes),
        ]
    }

    proptest! {
        #[test]
        fn values_round_trip(
            position in position(),
            metadata in ".{0,30}",
            ts in any::<i64>(),
            epoch in proptest::option::of(any::<i32>()),
        ) {
            let o = OffsetAndMetadata { position, metadata, commit_timestamp_ms: ts, leader_epoch: epoch };
            let bytes = encode_value(&o).unwrap();
            prop_assert_eq!(decode_value(&bytes), Ok(o));
        }

        #[test]
        fn truncated_or_garbage_values_are_errors_not_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // Either a clean decode or an error; never a panic or a huge allocation.
            let _ = decode_value(&bytes);
        }

        #[test]
        fn key_order_is_group_topic_partition_order(
            a in (".{0,6}", ".{0,6}", any::<i32>()),
            b in (".{0,6}", ".{0,6}", any::<i32>()),
        ) {
            let ka = encode_key(&a.0, &TopicPartition::new(a.1.clone(), a.2)).unwrap();
            let kb = encode_key(&b.0, &TopicPartition::new(b.1.clone(), b.2)).unwrap();
            // Within one group, byte order is (topic length, topic, partition) order; the
            // partition part is always numeric.
            if a.0 == b.0 && a.1 == b.1 {
                prop_assert_eq!(ka.cmp(&kb), a.2.cmp(&b.2));
            }
            let prefix = group_prefix(&a.0).unwrap();
            prop_assert_eq!(kb.starts_with(&prefix), a.0 == b.0);
            let rest = &ka[prefix.len()..];
            prop_assert_eq!(decode_topic_partition(rest), Ok(TopicPartition::new(a.1, a.2)));
        }
    }

    #[test]
    fn truncated_value_reports_what_is_missing() {
        let o = OffsetAndMetadata::new(7, 1).with_metadata("m");
        let bytes = encode_value(&o).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_value(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode_value(&long).unwrap_err().contains("trailing"));
    }

    #[tokio::test]
    async fn group_metadata_is_stored_replaced_deleted_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("offsets.redb");
        let store = RedbStore::open(&path).await.unwrap();
        // A database without any metadata write has no records (and no table yet).
        assert!(store.group_metadata().await.unwrap().is_empty());
        store
            .write_group_metadata_blocking(&[("b", Some(b"1")), ("a", Some(b"2"))])
            .unwrap();
        store
            .write_group_metadata_blocking(&[("b", Some(b"3")), ("a", None), ("never", None)])
            .unwrap();
        let tp = TopicPartition::new("t", 0);
        store
            .commit("b", &[(tp, OffsetAndMetadata::new(1, 0))])
            .await
            .unwrap();
        // Deleting a group's offsets leaves its metadata to the caller.
        store.delete_group("b").await.unwrap();
        drop(store);
        let store = RedbStore::open(&path).await.unwrap();
        assert_eq!(
            store.group_metadata().await.unwrap(),
            vec![("b".to_owned(), b"3".to_vec())]
        );
        assert!(store.list_groups().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn transactional_offsets_stay_pending_until_committed_or_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.redb");
        let store = RedbStore::open(&path).await.unwrap();
        let tp = |p| TopicPartition::new("t", p);
        let at = |n| OffsetAndMetadata::new(n, 5).with_metadata("m");
        store.commit("g", &[(tp(0), at(1))]).await.unwrap();
        store
            .stage_txn_offsets_blocking(7, "g", &[(tp(0), at(10)), (tp(1), at(11))])
            .unwrap();
        store
            .stage_txn_offsets_blocking(8, "g", &[(tp(2), at(12))])
            .unwrap();
        store
            .stage_txn_offsets_blocking(7, "h", &[(tp(0), at(13))])
            .unwrap();
        // Pending offsets are invisible to readers of committed offsets.
        assert_eq!(store.get_group("g").await.unwrap(), vec![(tp(0), at(1))]);
        assert_eq!(store.txn_offsets_blocking().unwrap().len(), 4);
        // Commit producer 7's offsets of group g only.
        let settled = store
            .complete_txn_offsets_blocking(7, &["g".to_string()], true)
            .unwrap();
        assert_eq!(
            settled,
            vec![("g".to_string(), tp(0)), ("g".to_string(), tp(1))]
        );
        assert_eq!(
            store.get_group("g").await.unwrap(),
            vec![(tp(0), at(10)), (tp(1), at(11))]
        );
        // A repeat (recovery writing the markers again) settles nothing.
        assert!(
            store
                .complete_txn_offsets_blocking(7, &["g".to_string()], true)
                .unwrap()
                .is_empty()
        );
        // Abort drops producer 8's.
        store
            .complete_txn_offsets_blocking(8, &["g".to_string()], false)
            .unwrap();
        assert_eq!(store.get_group("g").await.unwrap().len(), 2);
        drop(store);
        // Producer 7's offsets of group h survive a reopen, still pending.
        let store = RedbStore::open(&path).await.unwrap();
        let pending = store.txn_offsets_blocking().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            (
                pending[0].producer_id,
                pending[0].group.as_str(),
                &pending[0].partition
            ),
            (7, "h", &tp(0))
        );
        assert!(store.get_group("h").await.unwrap().is_empty());
    }

    #[test]
    fn successor_skips_whole_prefix() {
        assert_eq!(successor(&[0, 1]), Some(vec![0, 2]));
        assert_eq!(successor(&[0, 0xff]), Some(vec![1]));
        assert_eq!(successor(&[0xff, 0xff]), None);
    }
}
