//! Group commit: many concurrent commits, one backend commit.
//!
//! [`Coalescing`] wraps any [`OffsetStore`]. Callers' commits go into a queue; a single task
//! takes everything queued, hands it to the backend's
//! [`commit_many`](OffsetStore::commit_many) (for [`RedbStore`](crate::RedbStore): one
//! transaction, one fsync) and answers each caller with that commit's result. While one shared
//! commit is in flight the next one accumulates, so the fsync rate stops bounding the commit
//! rate: with `n` concurrent callers each fsync carries up to `n` batches.
//!
//! Invariants:
//! - Each caller's batch stays one [`CommitBatch`], so it is as atomic as the backend makes a
//!   batch; batches are applied in the order they were queued.
//! - A caller is answered only after the shared commit holding its batch returned, i.e. once
//!   its batch is durable; if that commit fails, every caller in it gets the same error.
//! - A batch rejected by validation (metadata too long) fails alone, before it is queued, so it
//!   cannot fail other callers' batches.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use waterline_core::{OffsetAndMetadata, TopicPartition};

use crate::{CommitBatch, GroupOffsets, Limits, OffsetStore, StoreError};

/// Settings of a [`Coalescing`] wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescingConfig {
    /// Stop adding batches to a shared commit once it holds this many partitions (a single
    /// larger batch still goes through whole). Bounds the latency and memory of one commit.
    pub max_partitions_per_commit: usize,
    /// Checked per caller before queueing; set it to the backend's limits so the backend never
    /// rejects a shared commit for one caller's input.
    pub limits: Limits,
}

impl Default for CoalescingConfig {
    fn default() -> Self {
        CoalescingConfig {
            max_partitions_per_commit: 100_000,
            limits: Limits::default(),
        }
    }
}

/// Counters of a [`Coalescing`] wrapper, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoalescingStats {
    /// Batches accepted by [`OffsetStore::commit`] and queued.
    pub batches_queued: u64,
    /// Backend `commit_many` calls made (shared commits).
    pub backend_commits: u64,
    /// Batches handed to the backend so far.
    pub batches_committed: u64,
}

struct Request {
    batch: CommitBatch,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Default)]
struct Counters {
    batches_queued: AtomicU64,
    backend_commits: AtomicU64,
    batches_committed: AtomicU64,
}

/// A group-commit wrapper around any store; see the [module docs](self).
pub struct Coalescing<S> {
    inner: Arc<S>,
    config: CoalescingConfig,
    // `None` once closed; cloned per commit so the lock is held only briefly.
    queue: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl<S> std::fmt::Debug for Coalescing<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescing")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S: OffsetStore + 'static> Coalescing<S> {
    /// Wraps `inner` with the default [`CoalescingConfig`]. Must be called inside a tokio
    /// runtime ([`StoreError::NoRuntime`] otherwise): the shared commits run on a task of it.
    pub fn new(inner: S) -> Result<Self, StoreError> {
        Self::with_config(inner, CoalescingConfig::default())
    }

    /// Wraps `inner` with `config`.
    pub fn with_config(inner: S, config: CoalescingConfig) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StoreError::NoRuntime)?;
        let inner = Arc::new(inner);
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = runtime.spawn(run(
            Arc::clone(&inner),
            rx,
            config.max_partitions_per_commit.max(1),
            Arc::clone(&counters),
        ));
        Ok(Coalescing {
            inner,
            config,
            queue: Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
            counters,
        })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S> Coalescing<S> {
    /// Current counters.
    pub fn stats(&self) -> CoalescingStats {
        CoalescingStats {
            batches_queued: self.counters.batches_queued.load(Ordering::Relaxed),
            backend_commits: self.counters.backend_commits.load(Ordering::Relaxed),
            batches_committed: self.counters.batches_committed.load(Ordering::Relaxed),
        }
    }
}

/// The shared-commit loop: runs until every sender is gone and the queue is drained.
async fn run<S: OffsetStore>(
    inner: Arc<S>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    max_partitions: usize,
    counters: Arc<Counters>,
) {
    while let Some(first) = rx.recv().await {
        let mut partitions = first.batch.offsets.len();
        let mut batches = vec![first.batch];
        let mut replies = vec![first.reply];
        while partitions < max_partitions {
            let Ok(next) = rx.try_recv() else {
                break;
            };
            partitions += next.batch.offsets.len();
            batches.push(next.batch);
            replies.push(next.reply);
        }
        counters.backend_commits.fetch_add(1, Ordering::Relaxed);
        counters
            .batches_committed
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        let result = inner.commit_many(&batches).await;
        for reply in replies {
            // A caller that gave up waiting has dropped its receiver; nothing to tell it.
            let _ = reply.send(result.clone());
        }
    }
}

#[async_trait]
impl<S: OffsetStore + 'static> OffsetStore for Coalescing<S> {
    /// Queues the batch and waits for the shared commit that carries it; durable (as the
    /// backend defines it) when it returns `Ok`.
    async fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), StoreError> {
        self.config.limits.check(group, offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let sender = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        let request = Request {
            batch: CommitBatch {
                group: group.to_owned(),
                offsets: offsets.to_vec(),
            },
            reply,
        };
        sender
            .send(request)
            .map_err(|_| StoreError::TaskFailed("the coalescing task has stopped".into()))?;
        self.counters.batches_queued.fetch_add(1, Ordering::Relaxed);
        answer.await.map_err(|_| {
            StoreError::TaskFailed("the coalescing task stopped before answering".into())
        })?
    }

    /// Goes straight to the backend; the batches are already one shared commit.
    async fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        for b in batches {
            self.config.limits.check(&b.group, &b.offsets)?;
        }
        self.inner.commit_many(batches).await
    }

    async fn get(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>, StoreError> {
        self.inner.get(group, tp).await
    }

    async fn get_group(&self, group: &str) -> Result<GroupOffsets, StoreError> {
        self.inner.get_group(group).await
    }

    async fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError> {
        self.inner.delete(group, tps).await
    }

    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        self.inner.delete_group(group).await
    }

    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_groups().await
    }

    /// Stops accepting commits, lets the task finish everything already queued, waits for it
    /// (so it no longer holds the backend), then closes the backend.
    async fn close(&self) -> Result<(), StoreError> {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(task) = self.task.lock().await.take() {
            task.await
                .map_err(|e| StoreError::TaskFailed(e.to_string()))?;
        }
        self.inner.close().await
    }
}
