//! Checkpoint-driven commits against the in-process broker: only barrier snapshots are
//! committed, never acks that came after the barrier, also at shutdown.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use waterline_consumer::waterline_core::{Checkpoint, TopicPartition};
use waterline_consumer::{Consumer, ConsumerConfig, ConsumerEvent};

use common::{TestBroker, init_tracing, produce};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_follow_barriers_only() {
    init_tracing();
    let b = TestBroker::start(1).await;
    produce(&b.addr, "cp", 1, 30, 8).await;
    let commits: Arc<Mutex<Vec<i64>>> = Arc::default();
    let c2 = Arc::clone(&commits);
    let c = Consumer::new(
        ConsumerConfig::builder(&b.addr, "g-cp")
            .assign(vec![TopicPartition::new("cp", 0)])
            .commit_policy(Checkpoint::default())
            .final_commit(false)
            .on_event(move |e| {
                if let ConsumerEvent::Committed { offsets } = e {
                    c2.lock()
                        .unwrap()
                        .extend(offsets.iter().map(|(_, o)| o.offset().unwrap()));
                }
            })
            .build()
            .unwrap(),
    )
    .unwrap();
    let next = || async { c.recv().await.unwrap() };
    for _ in 0..10 {
        next().await.ack();
    }
    c.declare_barrier(1);
    for _ in 0..10 {
        next().await.ack();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        commits.lock().unwrap().is_empty(),
        "nothing before the barrier completes"
    );
    c.complete_barrier(1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        *commits.lock().unwrap(),
        vec![10],
        "the snapshot, not the later acks"
    );
    // Later acks without a barrier are not committed, not even by shutdown.
    let report = c.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.abandoned_in_flight, 0);
    assert_eq!(*commits.lock().unwrap(), vec![10]);
    drop(c);
    b.stop().await;
}
