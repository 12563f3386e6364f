//! The log cleaner: compacts the partitions of topics whose `cleanup.policy` includes
//! `compact`, in the background.
//!
//! Every `cleaner_backoff_ms` the loop asks each such partition for a cleaning plan (cheap,
//! under the partition lock: the log decides whether a pass is due from the dirty ratio and
//! the compaction lags). A due pass runs on a thread of its own, at most `cleaner_threads` at
//! once, without the partition lock, so appends and fetches go on meanwhile; its result is
//! installed under the lock (a cheap, crash-safe swap; see waterline-log's FORMAT section).
//! Each pass's reads and writes are paced to `cleaner_io_max_bytes_per_second` split across
//! the threads. Each pass runs on a thread of its own at nice `cleaner_thread_nice` (10 by
//! default), so cleaning yields the CPU to request handling. On shutdown the loop stops
//! planning and waits for passes in flight, so every log is closed with no pass alive.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use waterline_log::{CleanPlan, CleanerConfig, RateThrottle, Throttle, Unthrottled};

use crate::partition::Partition;
use crate::state::{BrokerState, SharedState};

/// Runs until the broker shuts down, then waits for the passes in flight.
pub(crate) async fn cleaner_loop(state: SharedState) {
    let threads = state.config.cleaner_threads;
    if threads == 0 {
        tracing::info!("log cleaner disabled (cleaner_threads = 0)");
        return;
    }
    let permits = Arc::new(Semaphore::new(threads));
    let mut passes = JoinSet::new();
    let backoff = Duration::from_millis(state.config.cleaner_backoff_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = state.shutdown.cancelled() => break,
        }
        while passes.try_join_next().is_some() {}
        let now = BrokerState::now_ms();
        'topics: for topic in state.topics.list() {
            if !topic.settings.compact {
                continue;
            }
            for p in &topic.partitions {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    break 'topics;
                };
                // `None` too while a pass of this log is still alive.
                let Some(plan) = p.with_log(|log| log.cleaning_plan(now)).flatten() else {
                    continue;
                };
                let p = Arc::clone(p);
                let s = Arc::clone(&state);
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let spawned = std::thread::Builder::new()
                    .name("waterline-clean".into())
                    .spawn(move || {
                        lower_priority(s.config.cleaner_thread_nice);
                        clean(&s, &p, plan);
                        drop(permit);
                        // Also completes (with an error) if the pass panics.
                        drop(done_tx);
                    });
                match spawned {
                    Ok(_) => {
                        passes.spawn(async move {
                            let _ = done_rx.await;
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a cleaner thread");
                        break 'topics;
                    }
                }
            }
        }
    }
    while passes.join_next().await.is_some() {}
}

/// Gives the calling thread the nice value `nice`, so that when the CPUs are busy a pass takes
/// only what the broker's request threads leave (nice 10 weighs ~1/10 of nice 0 in Linux's
/// scheduler). A pass gets its own thread for this: a thread cannot raise its priority back
/// without privilege, so a pooled thread must never be lowered. Failure only costs priority.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    let tid = rustix::thread::gettid();
    // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value alone.
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::warn!(nice, error = %e, "cannot lower the cleaner thread's priority");
    }
}

/// Runs one pass of `p` and installs it; failures are logged (a failed install poisons the
/// log, and reopening completes or rolls back the swap).
fn clean(state: &BrokerState, p: &Partition, plan: CleanPlan) {
    let config = CleanerConfig {
        dedupe_buffer_bytes: state.config.cleaner_dedupe_buffer_bytes,
        ..CleanerConfig::default()
    };
    let mut throttle: Box<dyn Throttle> = match state.config.cleaner_io_max_bytes_per_second {
        Some(rate) => Box::new(RateThrottle::new(
            rate as f64 / state.config.cleaner_threads.max(1) as f64,
        )),
        None => Box::new(Unthrottled),
    };
    let reason = plan.reason;
    let result = match plan.run(&config, throttle.as_mut()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "cleaning pass failed");
            return;
        }
    };
    let stats = result.stats.clone();
    match p.with_log(|log| log.install_cleaned(result)) {
        None => {
            tracing::debug!(topic = %p.topic, partition = p.index, "partition closed during cleaning")
        }
        Some(Ok(outcome)) => tracing::info!(
            topic = %p.topic,
            partition = p.index,
            ?reason,
            bytes_before = outcome.bytes_before,
            bytes_after = outcome.bytes_after,
            keys = stats.keys,
            records_kept = stats.records_kept,
            records_read = stats.records_read,
            tombstones_removed = stats.tombstones_removed,
            ms = stats.duration.as_millis() as u64,
            "compacted"
        ),
        Some(Err(e)) => {
            tracing::error!(topic = %p.topic, partition = p.index, error = %e, "installing a cleaned segment failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lower_priority;

    #[test]
    fn lower_priority_sets_the_calling_threads_nice_value_only() {
        let own = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        let inside = std::thread::spawn(|| {
            lower_priority(7);
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, own.max(7));
        let after = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert_eq!(after, own, "the spawning thread keeps its priority");
    }
}
