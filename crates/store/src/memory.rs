//! An in-memory store for tests and ephemeral use: nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use waterline_core::{OffsetAndMetadata, TopicPartition};

use crate::{CommitBatch, GroupOffsets, Limits, OffsetStore, StoreError};

type Groups = BTreeMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>;

/// Offsets in a map behind a lock. "Durable" here means visible to every later read of this
/// value; nothing is written to disk.
#[derive(Debug, Default)]
pub struct MemoryStore {
    groups: RwLock<Groups>,
    limits: Limits,
}

impl MemoryStore {
    /// An empty store with the default [`Limits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store enforcing `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        MemoryStore {
            groups: RwLock::default(),
            limits,
        }
    }

    // A panic while holding the lock cannot leave a half-applied batch: batches are validated
    // first and applied with infallible map inserts, so a poisoned lock is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, Groups> {
        self.groups.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Groups> {
        self.groups.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl OffsetStore for MemoryStore {
    async fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), StoreError> {
        self.limits.check(group, offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let mut groups = self.write();
        let entry = groups.entry(group.to_owned()).or_default();
        for (tp, o) in offsets {
            entry.insert(tp.clone(), o.clone());
        }
        Ok(())
    }

    /// All batches under one lock acquisition: readers see all of them or none.
    async fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        for b in batches {
            self.limits.check(&b.group, &b.offsets)?;
        }
        let mut groups = self.write();
        for b in batches.iter().filter(|b| !b.offsets.is_empty()) {
            let entry = groups.entry(b.group.clone()).or_default();
            for (tp, o) in &b.offsets {
                entry.insert(tp.clone(), o.clone());
            }
        }
        Ok(())
    }

    async fn get(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>, StoreError> {
        Ok(self.read().get(group).and_then(|g| g.get(tp)).cloned())
    }

    async fn get_group(&self, group: &str) -> Result<GroupOffsets, StoreError> {
        Ok(self
            .read()
            .get(group)
            .map(|g| g.iter().map(|(tp, o)| (tp.clone(), o.clone())).collect())
            .unwrap_or_default())
    }

    async fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError> {
        let mut groups = self.write();
        if let Some(g) = groups.get_mut(group) {
            for tp in tps {
                g.remove(tp);
            }
            if g.is_empty() {
                groups.remove(group);
            }
        }
        Ok(())
    }

    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        self.write().remove(group);
        Ok(())
    }

    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.read().keys().cloned().collect())
    }
}
