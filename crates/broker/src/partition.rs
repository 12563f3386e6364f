//! One hosted partition: its log behind a mutex plus a watch channel publishing the high
//! watermark, which produce waiters (group commit) and long-polling fetches subscribe to.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;
use waterline_log::{LogError, PartitionLog};

/// What waiters need to know about a partition, published after every sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionSignal {
    /// Every offset below this is durable and visible to consumers.
    pub high_watermark: i64,
    /// A sync failed: the log is poisoned and waiters must give up.
    pub failed: bool,
    /// The partition was closed or deleted: waiters must give up.
    pub closed: bool,
}

/// A partition hosted by this broker.
pub struct Partition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index.
    pub index: i32,
    /// `None` once the log has been closed or deleted; callers then answer
    /// UNKNOWN_TOPIC_OR_PARTITION.
    log: Mutex<Option<PartitionLog>>,
    signal: watch::Sender<PartitionSignal>,
    /// Set while the partition is queued for the sync task (avoids queueing it twice).
    pub(crate) dirty: AtomicBool,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Partition({}-{})", self.topic, self.index)
    }
}

impl Partition {
    /// Wraps an opened log.
    pub fn new(topic: Arc<str>, index: i32, log: PartitionLog) -> Arc<Self> {
        let (signal, _) = watch::channel(PartitionSignal {
            high_watermark: log.high_watermark(),
            failed: false,
            closed: false,
        });
        Arc::new(Partition {
            topic,
            index,
            log: Mutex::new(Some(log)),
            signal,
            dirty: AtomicBool::new(false),
        })
    }

    /// Runs `f` on the log under its lock; `None` if the partition is closed.
    /// `f` must not block on anything but the log's own file I/O.
    pub fn with_log<R>(&self, f: impl FnOnce(&mut PartitionLog) -> R) -> Option<R> {
        let mut guard = self.log.lock();
        guard.as_mut().map(f)
    }

    /// Subscribes to high-watermark / failure updates.
    pub fn subscribe(&self) -> watch::Receiver<PartitionSignal> {
        self.signal.subscribe()
    }

    /// The last published signal.
    pub fn signal(&self) -> PartitionSignal {
        *self.signal.borrow()
    }

    /// Publishes a new high watermark (only ever moves forward).
    pub(crate) fn publish_high_watermark(&self, hw: i64) {
        self.signal.send_if_modified(|s| {
            if hw > s.high_watermark {
                s.high_watermark = hw;
                true
            } else {
                false
            }
        });
    }

    /// Marks the partition failed (poisoned log) and wakes every waiter.
    pub(crate) fn publish_failure(&self) {
        self.signal.send_modify(|s| s.failed = true);
    }

    /// Takes the log out (for close/delete) and wakes every waiter.
    pub(crate) fn take_log(&self) -> Option<PartitionLog> {
        let log = self.log.lock().take();
        self.signal.send_modify(|s| s.closed = true);
        log
    }

    /// Whether the log is still open.
    pub fn is_open(&self) -> bool {
        self.log.lock().is_some()
    }

    /// Closes the log cleanly (flush, fsync, clean-shutdown marker). Idempotent.
    pub fn close(&self) -> Result<(), LogError> {
        match self.take_log() {
            Some(log) => log.close(),
            None => Ok(()),
        }
    }

    /// Marks the partition as queued for sync; returns true if it was not queued yet.
    pub(crate) fn mark_dirty(&self) -> bool {
        !self.dirty.swap(true, Ordering::AcqRel)
    }
}
