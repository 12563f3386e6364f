//! Group commit: one background thread makes appended data durable and advances high watermarks.
//!
//! Appenders call [`SyncManager::mark_dirty`] after appending. The thread takes every dirty
//! partition, asks each log for a [`waterline_log::SyncPoint`] under the partition lock, fsyncs
//! them all with no lock held (appends continue meanwhile), then completes each point under the
//! lock and publishes the new high watermark, which wakes produce waiters and long-polling
//! fetches. Everything appended while one round fsyncs is covered by the next round, so any
//! number of producers share each fsync.
//!
//! With [`FsyncPolicy::Interval`] the thread runs a round every interval instead of on demand.
//! Invariant: a partition's dirty flag is cleared before its sync point is taken, so an append
//! racing with a round is either covered by that round or re-queues the partition.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::config::FsyncPolicy;
use crate::partition::Partition;

struct Queue {
    dirty: Vec<Arc<Partition>>,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Duration of each round's fsyncs.
    fsync_seconds: prometheus_client::metrics::histogram::Histogram,
    wake: Condvar,
    policy: FsyncPolicy,
}

/// Handle to the group-commit thread.
pub struct SyncManager {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl SyncManager {
    /// Starts the sync thread.
    pub fn start(policy: FsyncPolicy) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                dirty: Vec::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            policy,
            fsync_seconds: crate::metrics::fsync_histogram(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("waterline-sync".into())
            .spawn(move || run(&s))?;
        Ok(SyncManager {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The histogram of fsync round durations (for the metrics registry).
    pub fn fsync_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.shared.fsync_seconds.clone()
    }

    /// Queues a partition that has unsynced appends.
    pub fn mark_dirty(&self, p: &Arc<Partition>) {
        if p.mark_dirty() {
            let mut q = self.shared.queue.lock();
            q.dirty.push(p.clone());
            if self.shared.policy == FsyncPolicy::Always {
                self.shared.wake.notify_one();
            }
        }
    }

    /// Runs a last round for everything queued, then stops the thread. Idempotent.
    pub fn stop(&self) {
        self.shared.queue.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().take()
            && t.join().is_err()
        {
            tracing::error!("sync thread panicked");
        }
    }
}

impl Drop for SyncManager {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared) {
    loop {
        let (batch, stop) = {
            let mut q = shared.queue.lock();
            match shared.policy {
                FsyncPolicy::Always => {
                    while q.dirty.is_empty() && !q.stop {
                        shared.wake.wait(&mut q);
                    }
                }
                FsyncPolicy::Interval { ms } => {
                    if !q.stop {
                        shared.wake.wait_for(&mut q, Duration::from_millis(ms));
                    }
                }
            }
            (std::mem::take(&mut q.dirty), q.stop)
        };
        if !batch.is_empty() {
            let started = std::time::Instant::now();
            let retry = sync_round(&batch);
            if !retry.is_empty() && !stop {
                // Out of file descriptors: nothing was fsynced and the logs are not poisoned.
                // Queue them again after a pause (descriptors are freed by closing sockets
                // or cached handles, not by spinning); waiters keep waiting meanwhile.
                std::thread::sleep(RETRY_PAUSE);
                let mut q = shared.queue.lock();
                for p in retry {
                    if p.mark_dirty() {
                        q.dirty.push(p);
                    }
                }
            }
            shared
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        if stop {
            // Appends queued after the final take are synced by PartitionLog::close.
            return;
        }
    }
}

/// Pause before a sync that failed for lack of file descriptors is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Makes every partition in `batch` durable up to what was appended when the round started.
/// Returns the partitions whose sync failed with a retriable error (out of descriptors).
fn sync_round(batch: &[Arc<Partition>]) -> Vec<Arc<Partition>> {
    let mut retry = Vec::new();
    let mut points = Vec::with_capacity(batch.len());
    for p in batch {
        p.dirty.store(false, std::sync::atomic::Ordering::Release);
        if let Some(point) = p.with_log(|log| log.sync_point()) {
            points.push((p, point));
        }
    }
    // fsync outside every partition lock; appends proceed meanwhile. Partitions are independent
    // files, so their fsyncs run in parallel (the disk and the journal batch them).
    let results = fsync_all(&points);
    for ((p, point), result) in points.into_iter().zip(results) {
        match result {
            Ok(()) => {
                if let Some(hw) = p.with_log(|log| {
                    log.complete_sync(&point);
                    log.high_watermark()
                }) {
                    p.publish_high_watermark(hw);
                }
            }
            Err(e) if e.is_retriable() => {
                tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "sync deferred");
                retry.push(p.clone());
            }
            Err(e) => {
                // The log poisons itself; waiters must not hang until their timeout.
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "fsync failed");
                p.publish_failure();
            }
        }
    }
    retry
}

/// Most fsyncs issued at once by one round.
const MAX_PARALLEL_FSYNCS: usize = 8;

/// Fsyncs every point, in parallel when there are several; results in input order.
fn fsync_all(
    points: &[(&Arc<Partition>, waterline_log::SyncPoint)],
) -> Vec<Result<(), waterline_log::LogError>> {
    if points.len() <= 1 {
        return points.iter().map(|(_, point)| point.fsync()).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<(), waterline_log::LogError>>>> =
        points.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..points.len().min(MAX_PARALLEL_FSYNCS) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((_, point)) = points.get(i) else {
                        return;
                    };
                    *results[i].lock() = Some(point.fsync());
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner().unwrap_or_else(|| {
                Err(waterline_log::LogError::Io {
                    path: Default::default(),
                    cause: std::io::Error::other("fsync worker did not run"),
                })
            })
        })
        .collect()
}
