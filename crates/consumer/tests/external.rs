//! Offsets in an external Waterline store (redb): out-of-order acks are committed as the
//! commit point plus the `wl1:` acked set, and a restarted consumer seeks to the commit point
//! and skips what was already done. Also lag and metrics.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;
use waterline_consumer::waterline_core::{Interval, TopicPartition};
use waterline_consumer::waterline_store::{OffsetStore, RedbStore};
use waterline_consumer::{Consumer, ConsumerConfig, OffsetStorage};

use common::{TestBroker, init_tracing, produce};

fn config(addr: &str, store: Arc<dyn OffsetStore>) -> ConsumerConfig {
    ConsumerConfig::builder(addr, "g-ext")
        .assign(vec![TopicPartition::new("ext", 0)])
        .offset_storage(OffsetStorage::External(store))
        .commit_policy(Interval::new(20).unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_skips_offsets_done_beyond_the_commit_point() {
    init_tracing();
    let b = TestBroker::start(1).await;
    produce(&b.addr, "ext", 1, 50, 8).await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn OffsetStore> = Arc::new(
        RedbStore::open(dir.path().join("offsets.redb"))
            .await
            .unwrap(),
    );

    // First run: take 30 records, ack all but offsets 5 and 17 (out of order).
    let c = Consumer::new(config(&b.addr, store.clone())).unwrap();
    let mut held = Vec::new();
    timeout(Duration::from_secs(20), async {
        for _ in 0..30 {
            let d = c.recv().await.unwrap();
            if d.offset() == 5 || d.offset() == 17 {
                held.push(d);
            } else {
                d.ack();
            }
        }
    })
    .await
    .unwrap();
    let lag = c.lag().await.unwrap();
    assert_eq!(lag.total_lag, 45, "commit point 5 of 50");
    assert_eq!(lag.total_in_flight, 2);
    let m = c.metrics();
    assert_eq!((m.messages_consumed, m.in_flight), (30, 2));
    assert_eq!(m.lag.total_lag, 45);
    // Shutdown with two records still in flight: they are abandoned, not committed.
    let report = c.shutdown(Duration::from_millis(100)).await;
    assert_eq!(report.abandoned_in_flight, 2);
    assert!(report.final_commit_ok);
    drop(held);
    drop(c);
    let stored = store
        .get("g-ext", &TopicPartition::new("ext", 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.offset(), Some(5));
    assert!(stored.metadata.starts_with("wl1:"), "{stored:?}");

    // Second run: exactly the undone offsets, then the rest of the log.
    let c = Consumer::new(config(&b.addr, store.clone())).unwrap();
    let mut got = BTreeSet::new();
    timeout(Duration::from_secs(20), async {
        while got.len() < 22 {
            let d = c.recv().await.unwrap();
            assert!(
                got.insert(d.offset()),
                "offset {} handed out twice",
                d.offset()
            );
            d.ack();
        }
    })
    .await
    .unwrap();
    let want: BTreeSet<i64> = [5, 17].into_iter().chain(30..50).collect();
    assert_eq!(got, want);
    assert_eq!(c.metrics().skipped_already_done, 23, "6..=16 and 18..=29");
    assert!(c.shutdown(Duration::from_secs(5)).await.final_commit_ok);
    drop(c);
    let stored = store
        .get("g-ext", &TopicPartition::new("ext", 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.offset(), stored.metadata.as_str()), (Some(50), ""));
    store.close().await.unwrap();
    b.stop().await;
}

/// A store whose first `failures` commits fail (then it behaves).
struct FailingFirst {
    inner: waterline_consumer::waterline_store::MemoryStore,
    failures: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl OffsetStore for FailingFirst {
    async fn commit(
        &self,
        group: &str,
        offsets: &[(
            TopicPartition,
            waterline_consumer::waterline_core::OffsetAndMetadata,
        )],
    ) -> Result<(), waterline_consumer::waterline_store::StoreError> {
        use std::sync::atomic::Ordering;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(waterline_consumer::waterline_store::StoreError::TaskFailed(
                "injected commit failure".into(),
            ));
        }
        self.inner.commit(group, offsets).await
    }
    async fn get(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<
        Option<waterline_consumer::waterline_core::OffsetAndMetadata>,
        waterline_consumer::waterline_store::StoreError,
    > {
        self.inner.get(group, tp).await
    }
    async fn get_group(
        &self,
        group: &str,
    ) -> Result<
        waterline_consumer::waterline_store::GroupOffsets,
        waterline_consumer::waterline_store::StoreError,
    > {
        self.inner.get_group(group).await
    }
    async fn delete(
        &self,
        group: &str,
        tps: &[TopicPartition],
    ) -> Result<(), waterline_consumer::waterline_store::StoreError> {
        self.inner.delete(group, tps).await
    }
    async fn delete_group(
        &self,
        group: &str,
    ) -> Result<(), waterline_consumer::waterline_store::StoreError> {
        self.inner.delete_group(group).await
    }
    async fn list_groups(
        &self,
    ) -> Result<Vec<String>, waterline_consumer::waterline_store::StoreError> {
        self.inner.list_groups().await
    }
}

/// Failed commits are retried at the next ticks until one lands (a regression test: the retry
/// once deadlocked the commit thread on its own lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_are_retried_until_they_land() {
    use waterline_consumer::ConsumerEvent;
    init_tracing();
    let b = TestBroker::start(1).await;
    produce(&b.addr, "ext", 1, 10, 8).await;
    let store = Arc::new(FailingFirst {
        inner: Default::default(),
        failures: 3.into(),
    });
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let c = Consumer::new(
        ConsumerConfig::builder(&b.addr, "g-retry")
            .assign(vec![TopicPartition::new("ext", 0)])
            .offset_storage(OffsetStorage::External(store.clone()))
            // Longer than the commit tick, so retries happen between policy commits.
            .commit_policy(Interval::new(200).unwrap())
            .on_event(move |e| seen.lock().unwrap().push(e.clone()))
            .build()
            .unwrap(),
    )
    .unwrap();
    for _ in 0..10 {
        c.recv().await.unwrap().ack();
    }
    let landed = timeout(Duration::from_secs(20), async {
        loop {
            let stored = store
                .inner
                .get("g-retry", &TopicPartition::new("ext", 0))
                .await;
            if matches!(stored, Ok(Some(ref o)) if o.offset() == Some(10)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok();
    if !landed {
        // The commit thread may be stuck: don't hang the test run joining it.
        std::mem::forget(c);
        panic!("no commit landed after the injected failures");
    }
    let failed = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ConsumerEvent::CommitFailed { .. }))
        .count();
    assert_eq!(failed, 3, "each injected failure reported once");
    assert_eq!(c.metrics().commits_failed, 3);
    c.shutdown(Duration::from_secs(5)).await;
    b.stop().await;
}
