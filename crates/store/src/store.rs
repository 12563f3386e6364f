//! The offset-store trait.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use waterline_core::{OffsetAndMetadata, TopicPartition};

use crate::{RedbStore, StoreError};

/// The committed offsets of one group, sorted by topic then partition.
pub type GroupOffsets = Vec<(TopicPartition, OffsetAndMetadata)>;

/// One group's batch of offsets, as passed to [`OffsetStore::commit_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitBatch {
    /// The consumer group.
    pub group: String,
    /// The offsets to commit; a later entry for the same partition wins.
    pub offsets: Vec<(TopicPartition, OffsetAndMetadata)>,
}

/// A durable (or, for [`MemoryStore`](crate::MemoryStore), ephemeral) map from
/// (group, topic, partition) to a committed [`OffsetAndMetadata`].
///
/// Common contract of every method:
/// - When a write method returns `Ok`, its effect is durable in the backend's sense (documented
///   per backend: fsynced for the file and redb stores, in memory only for the memory store).
/// - When a write method returns `Err`, the store's contents are either unchanged or, for
///   [`commit_many`](Self::commit_many) on backends without cross-group transactions, changed by
///   some of the batches, each applied whole. Callers treat an error as "outcome unknown".
/// - A reader never observes part of a batch.
/// - Group names are arbitrary strings (including empty and non-ASCII ones); backends may
///   reject names they cannot store with [`StoreError::GroupNameTooLong`].
#[async_trait]
pub trait OffsetStore: Send + Sync {
    /// Commits `offsets` for `group` atomically: after a crash, either all of them or none of them
    /// are visible. A later entry for the same partition overrides an earlier one. An empty batch
    /// is a no-op. Durable (fsynced, for durable backends) when it returns `Ok`.
    ///
    /// Fails with [`StoreError::MetadataTooLarge`] (and writes nothing) when the store has a
    /// metadata limit and an entry exceeds it.
    async fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), StoreError>;

    /// Commits several batches, in order. Each batch is atomic as with [`commit`](Self::commit);
    /// backends with transactions apply all of them in one transaction and one fsync (the redb
    /// and memory stores do). Durable when it returns `Ok`. Used by
    /// [`Coalescing`](crate::Coalescing).
    ///
    /// The default implementation commits the batches one after the other.
    async fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        for batch in batches {
            self.commit(&batch.group, &batch.offsets).await?;
        }
        Ok(())
    }

    /// The committed offset of one partition, or `None` if nothing is committed for it. Reads
    /// only what earlier successful writes made durable.
    async fn get(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>, StoreError>;

    /// All committed offsets of a group, sorted by topic then partition; empty for an unknown
    /// group.
    async fn get_group(&self, group: &str) -> Result<GroupOffsets, StoreError>;

    /// Removes the given partitions' offsets from `group`, atomically; partitions without a
    /// committed offset are ignored. A group left with no offsets no longer exists. Durable
    /// (fsynced) when it returns `Ok`.
    async fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError>;

    /// Removes every offset of `group`, atomically; a no-op for an unknown group. Durable
    /// (fsynced) when it returns `Ok`.
    async fn delete_group(&self, group: &str) -> Result<(), StoreError>;

    /// The groups that have at least one committed offset, sorted.
    async fn list_groups(&self) -> Result<Vec<String>, StoreError>;

    /// Finishes outstanding work and releases background tasks. Every write that returned `Ok`
    /// is already durable, so closing is not needed for durability; it lets the store's files
    /// be reopened as soon as the store is dropped. Operations after `close` may fail with
    /// [`StoreError::Closed`]. The default does nothing.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Opens (creating if needed) the default durable store, a [`RedbStore`] in
/// `dir/offsets.redb`, with default options. Creates `dir` if it is missing.
pub async fn open_default(dir: impl AsRef<Path>) -> Result<RedbStore, StoreError> {
    let dir = dir.as_ref().to_path_buf();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| StoreError::io("create directory", &dir, e))?;
    RedbStore::open(dir.join("offsets.redb")).await
}

macro_rules! forward_store {
    ($ptr:ident) => {
        /// Delegates to the pointee, so e.g. `Coalescing<Arc<dyn OffsetStore>>` works with a
        /// backend chosen at run time.
        #[async_trait]
        impl<S: OffsetStore + ?Sized> OffsetStore for $ptr<S> {
            async fn commit(
                &self,
                group: &str,
                offsets: &[(TopicPartition, OffsetAndMetadata)],
            ) -> Result<(), StoreError> {
                (**self).commit(group, offsets).await
            }
            async fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
                (**self).commit_many(batches).await
            }
            async fn get(
                &self,
                group: &str,
                tp: &TopicPartition,
            ) -> Result<Option<OffsetAndMetadata>, StoreError> {
                (**self).get(group, tp).await
            }
            async fn get_group(&self, group: &str) -> Result<GroupOffsets, StoreError> {
                (**self).get_group(group).await
            }
            async fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError> {
                (**self).delete(group, tps).await
            }
            async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
                (**self).delete_group(group).await
            }
            async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
                (**self).list_groups().await
            }
            async fn close(&self) -> Result<(), StoreError> {
                (**self).close().await
            }
        }
    };
}

forward_store!(Arc);
forward_store!(Box);
