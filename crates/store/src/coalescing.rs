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

/// What the queue carries: a commit, or a barrier answered once every commit queued before it
/// has been handed to the backend and answered.
enum Queued {
    Commit(Request),
    Barrier(oneshot::Sender<()>),
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
    queue: Mutex<Option<mpsc::UnboundedSender<Queued>>>,
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

    /// Queues a commit now, synchronously, and returns a future that resolves once the shared
    /// commit carrying it is durable. Batches are applied in the order `enqueue` was called, so
    /// a caller that must apply requests in order (the broker, per connection) calls this in
    /// that order and may then await the futures concurrently. Validation failures are
    /// returned at once; nothing is queued then.
    pub fn enqueue(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<CommitWait, StoreError> {
        self.config.limits.check(group, offsets)?;
        if offsets.is_empty() {
            return Ok(CommitWait { answer: None });
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
            .send(Queued::Commit(request))
            .map_err(|_| StoreError::TaskFailed("the coalescing task has stopped".into()))?;
        self.counters.batches_queued.fetch_add(1, Ordering::Relaxed);
        Ok(CommitWait {
            answer: Some(answer),
        })
    }
}

impl<S> Coalescing<S> {
    /// Queues a barrier now, synchronously; the returned wait resolves once every commit
    /// queued before this call has been committed (or failed) and answered. A caller about to
    /// change the backend directly (deleting offsets) waits for it first, so a commit queued
    /// earlier cannot land after the change and undo it.
    pub fn barrier(&self) -> Result<BarrierWait, StoreError> {
        let sender = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Closed)?;
        let (done, wait) = oneshot::channel();
        sender
            .send(Queued::Barrier(done))
            .map_err(|_| StoreError::TaskFailed("the coalescing task has stopped".into()))?;
        Ok(BarrierWait { wait })
    }
}

/// The wait for a queued barrier (see [`Coalescing::barrier`]).
#[derive(Debug)]
pub struct BarrierWait {
    wait: oneshot::Receiver<()>,
}

impl BarrierWait {
    /// Waits until every commit queued before the barrier has been answered.
    pub async fn wait(self) -> Result<(), StoreError> {
        self.wait.await.map_err(|_| {
            StoreError::TaskFailed("the coalescing task stopped before answering".into())
        })
    }
}

/// The wait for one queued commit (see [`Coalescing::enqueue`]); `Ok` once it is durable.
#[derive(Debug)]
pub struct CommitWait {
    /// `None` for an empty batch, which is trivially done.
    answer: Option<oneshot::Receiver<Result<(), StoreError>>>,
}

impl CommitWait {
    /// Waits for the shared commit that carries this batch.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.answer {
            None => Ok(()),
            Some(answer) => answer.await.map_err(|_| {
                StoreError::TaskFailed("the coalescing task stopped before answering".into())
            })?,
        }
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
    mut rx: mpsc::UnboundedReceiver<Queued>,
    max_partitions: usize,
    counters: Arc<Counters>,
) {
    // A barrier met while gathering a shared commit waits until that commit is answered.
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        let first = match first {
            // Everything queued before it has been answered already.
            Queued::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
            Queued::Commit(r) => r,
        };
        let mut partitions = first.batch.offsets.len();
        let mut batches = vec![first.batch];
        let mut replies = vec![first.reply];
        let mut barriers = Vec::new();
        while partitions < max_partitions {
            match rx.try_recv() {
                Ok(Queued::Commit(next)) if barriers.is_empty() => {
                    partitions += next.batch.offsets.len();
                    batches.push(next.batch);
                    replies.push(next.reply);
                }
                // Commits after a barrier go into the next shared commit.
                Ok(next @ Queued::Commit(_)) => {
                    carried = Some(next);
                    break;
                }
                Ok(Queued::Barrier(done)) => barriers.push(done),
                Err(_) => break,
            }
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
        for done in barriers {
            let _ = done.send(());
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
        self.enqueue(group, offsets)?.wait().await
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use tokio::sync::{Notify, Semaphore};

    use super::*;
    use crate::MemoryStore;

    /// A memory store whose `commit_many` waits for the test's permission and can fail.
    struct Gated {
        store: MemoryStore,
        entered: Notify,
        release: Semaphore,
        fail: AtomicBool,
        calls: Mutex<Vec<usize>>,
    }

    impl Default for Gated {
        fn default() -> Self {
            Gated {
                store: MemoryStore::new(),
                entered: Notify::new(),
                release: Semaphore::new(0),
                fail: AtomicBool::new(false),
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait]
    impl OffsetStore for Gated {
        async fn commit(
            &self,
            group: &str,
            offsets: &[(TopicPartition, OffsetAndMetadata)],
        ) -> Result<(), StoreError> {
            self.store.commit(group, offsets).await
        }
        async fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
            self.calls.lock().unwrap().push(batches.len());
            self.entered.notify_one();
            self.release.acquire().await.unwrap().forget();
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::io(
                    "fsync",
                    "/gated",
                    std::io::Error::other("injected"),
                ));
            }
            self.store.commit_many(batches).await
        }
        async fn get(
            &self,
            group: &str,
            tp: &TopicPartition,
        ) -> Result<Option<OffsetAndMetadata>, StoreError> {
            self.store.get(group, tp).await
        }
        async fn get_group(&self, group: &str) -> Result<GroupOffsets, StoreError> {
            self.store.get_group(group).await
        }
        async fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError> {
            self.store.delete(group, tps).await
        }
        async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
            self.store.delete_group(group).await
        }
        async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
            self.store.list_groups().await
        }
    }

    fn batch(i: i64) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        (0..10)
            .map(|p| {
                (
                    TopicPartition::new(format!("t{i}"), p),
                    OffsetAndMetadata::new(i, 0),
                )
            })
            .collect()
    }

    async fn wait_queued(c: &Coalescing<Gated>, n: u64) {
        while c.stats().batches_queued < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Starts one commit and returns once the backend is blocked inside it.
    async fn hold_backend(c: &Arc<Coalescing<Gated>>) -> JoinHandle<Result<(), StoreError>> {
        let first = {
            let c = Arc::clone(c);
            tokio::spawn(async move { c.commit("g", &batch(0)).await })
        };
        c.inner().entered.notified().await;
        first
    }

    fn spawn_commits(
        c: &Arc<Coalescing<Gated>>,
        range: std::ops::Range<i64>,
    ) -> Vec<JoinHandle<Result<(), StoreError>>> {
        range
            .map(|i| {
                let c = Arc::clone(c);
                tokio::spawn(async move { c.commit(&format!("g{}", i % 3), &batch(i)).await })
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_commits_share_one_backend_commit() {
        let c = Arc::new(Coalescing::new(Gated::default()).unwrap());
        let first = hold_backend(&c).await;
        let rest = spawn_commits(&c, 1..100);
        wait_queued(&c, 100).await;
        c.inner().release.add_permits(2);
        first.await.unwrap().unwrap();
        for r in rest {
            r.await.unwrap().unwrap();
        }
        assert_eq!(*c.inner().calls.lock().unwrap(), vec![1, 99]);
        let stats = c.stats();
        assert_eq!((stats.backend_commits, stats.batches_committed), (2, 100));
        let total: usize = stored_partitions(&c).await;
        assert_eq!(total, 100 * 10);
    }

    async fn stored_partitions(c: &Coalescing<Gated>) -> usize {
        let mut n = 0;
        for g in c.list_groups().await.unwrap() {
            n += c.get_group(&g).await.unwrap().len();
        }
        n
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_shared_commit_fails_every_caller_in_it() {
        let c = Arc::new(Coalescing::new(Gated::default()).unwrap());
        let first = hold_backend(&c).await;
        let rest = spawn_commits(&c, 1..20);
        wait_queued(&c, 20).await;
        // The first shared commit succeeds, the second (the 19 queued) fails.
        c.inner().release.add_permits(1);
        first.await.unwrap().unwrap();
        c.inner().entered.notified().await;
        c.inner().fail.store(true, Ordering::SeqCst);
        c.inner().release.add_permits(1);
        for r in rest {
            let err = r.await.unwrap().unwrap_err();
            assert!(matches!(err, StoreError::Io { op: "fsync", .. }), "{err:?}");
        }
        assert_eq!(stored_partitions(&c).await, 10);
        // The wrapper keeps working once the backend does.
        c.inner().fail.store(false, Ordering::SeqCst);
        c.inner().release.add_permits(1);
        c.commit("g", &batch(7)).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invalid_batch_fails_alone_before_queueing() {
        let c = Arc::new(Coalescing::new(Gated::default()).unwrap());
        let first = hold_backend(&c).await;
        let rest = spawn_commits(&c, 1..5);
        wait_queued(&c, 5).await;
        let big = vec![(
            TopicPartition::new("t", 0),
            OffsetAndMetadata::new(1, 0).with_metadata("m".repeat(5000)),
        )];
        assert!(matches!(
            c.commit("g", &big).await.unwrap_err(),
            StoreError::MetadataTooLarge { .. }
        ));
        c.inner().release.add_permits(2);
        first.await.unwrap().unwrap();
        for r in rest {
            r.await.unwrap().unwrap();
        }
        assert_eq!(c.stats().batches_queued, 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_answers_queued_commits_then_refuses_new_ones() {
        let c = Arc::new(Coalescing::new(Gated::default()).unwrap());
        let first = hold_backend(&c).await;
        let rest = spawn_commits(&c, 1..10);
        wait_queued(&c, 10).await;
        let closing = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.close().await })
        };
        // Wait until close has taken the queue, so the next commit is refused.
        while c.queue.lock().unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(matches!(
            c.commit("g", &batch(50)).await.unwrap_err(),
            StoreError::Closed
        ));
        c.inner().release.add_permits(2);
        first.await.unwrap().unwrap();
        for r in rest {
            r.await.unwrap().unwrap();
        }
        closing.await.unwrap().unwrap();
        assert_eq!(stored_partitions(&c).await, 100);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enqueued_commits_apply_in_enqueue_order_whoever_waits_first() {
        let c = Arc::new(Coalescing::new(Gated::default()).unwrap());
        let first = hold_backend(&c).await;
        let tp = TopicPartition::new("t", 0);
        let waits: Vec<CommitWait> = (1..=50)
            .map(|i| {
                c.enqueue("g", &[(tp.clone(), OffsetAndMetadata::new(i, 0))])
                    .unwrap()
            })
            .collect();
        c.inner().release.add_permits(2);
        // Waited for in reverse: the order of application is the order of enqueueing.
        for w in waits.into_iter().rev() {
            w.wait().await.unwrap();
        }
        first.await.unwrap().unwrap();
        let stored = c.get("g", &tp).await.unwrap().unwrap();
        assert_eq!(stored.offset(), Some(50));
        assert!(c.enqueue("g", &[]).unwrap().wait().await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_barrier_waits_for_every_commit_queued_before_it() {
        let c = Arc::new(Coalescing::new(Gated::default()).unwrap());
        let first = hold_backend(&c).await;
        let tp = TopicPartition::new("t", 0);
        let queued = c
            .enqueue("g", &[(tp.clone(), OffsetAndMetadata::new(9, 0))])
            .unwrap();
        // Queued now, between the two commits.
        let barrier = tokio::spawn(c.barrier().unwrap().wait());
        let after = c
            .enqueue("g", &[(tp.clone(), OffsetAndMetadata::new(10, 0))])
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !barrier.is_finished(),
            "the backend still holds the first commit"
        );
        c.inner().release.add_permits(1);
        first.await.unwrap().unwrap();
        // The second shared commit carries the commit queued before the barrier.
        c.inner().entered.notified().await;
        assert!(!barrier.is_finished());
        c.inner().release.add_permits(1);
        queued.wait().await.unwrap();
        barrier.await.unwrap().unwrap();
        // The commit queued after the barrier is in a later shared commit.
        c.inner().release.add_permits(1);
        after.wait().await.unwrap();
        assert_eq!(*c.inner().calls.lock().unwrap(), vec![1, 1, 1]);
    }

    #[test]
    fn needs_a_runtime() {
        assert!(matches!(
            Coalescing::new(MemoryStore::new()).unwrap_err(),
            StoreError::NoRuntime
        ));
    }
}
