//! Property tests of the ordered modes, driving the real partition state, gate, deliveries and
//! failure policy (no Kafka client): random keys, processing order, failures and rebalances.
//!
//! Checked after every step:
//! - [`Ordering::Key`]: no two records of one key in the application's hands at once (a record
//!   waiting for its retry counts as in its hands); [`Ordering::Partition`]: at most one
//!   record of the partition.
//! - Each key's records complete (first ack of each offset) in offset order, across
//!   rebalances.
//! - The commit point and the `wl1:` acked set only ever cover acked records.
//! - The tracker's in-flight count (in hand, retrying and waiting behind a key) stays within
//!   the per-partition limit.
//!
//! And at the end, with no more failures, every record completes (no key stays blocked).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::mpsc;
use waterline_core::{
    AckedSet, Interval, PartitionTracker, ResetPolicy, ResetStrategy, TopicPartition, TrackerConfig,
};

use crate::config::{Exhausted, FailurePolicy, OffsetStorage, Ordering as Order};
use crate::delivery::{Delivery, Record};
use crate::shared::{PartState, Redelivery, Shared, SharedParts};

const MAX_IN_FLIGHT: u64 = 12;

#[derive(Debug, Clone)]
enum Op {
    /// Take the next record of the log (if admitted).
    Fetch,
    /// Hand out a record whose key's turn came.
    Ready,
    /// Finish the `i`-th record in hand (modulo their number): ack, or nack when `fail`.
    Finish { i: usize, fail: bool },
    /// Commit the current position, then lose the partition and get it back from the commit.
    Rebalance,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Fetch),
        2 => Just(Op::Ready),
        4 => (any::<usize>(), proptest::bool::weighted(0.2)).prop_map(|(i, fail)| Op::Finish { i, fail }),
        1 => Just(Op::Rebalance),
    ]
}

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

struct Sim {
    s: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Redelivery>,
    rt: tokio::runtime::Runtime,
    part: Arc<PartState>,
    generation: i32,
    /// The log: key of each offset (`None`: no key).
    keys: Vec<Option<u8>>,
    /// Next offset to fetch.
    next: i64,
    in_hand: Vec<Delivery>,
    acked_ever: BTreeSet<i64>,
    /// Offsets of each key in the order of their first completion.
    completions: HashMap<Option<u8>, Vec<i64>>,
    /// Last commit: offset and metadata.
    committed: (i64, String),
    order: Order,
}

impl Sim {
    fn new(order: Order, keys: Vec<Option<u8>>) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let s = rt.block_on(async {
            Shared::new(SharedParts {
                group: "g".into(),
                tracker_config: TrackerConfig::default(),
                storage: OffsetStorage::Kafka,
                reset: ResetPolicy::single(ResetStrategy::Earliest).unwrap(),
                max_in_flight: MAX_IN_FLIGHT,
                drain_timeout: Duration::from_millis(10),
                kafka_timeout: Duration::from_secs(1),
                failure: FailurePolicy {
                    max_attempts: 2,
                    backoff: Duration::ZERO,
                    max_backoff: Duration::ZERO,
                    exhausted: Exhausted::Hold,
                },
                listener: None,
                ordering: order,
                max_concurrency: None,
                brokers_down_timeout: None,
                final_commit: true,
                policy: Box::new(Interval::new(1000).unwrap()),
                redeliver: tx,
                handle: tokio::runtime::Handle::current(),
                dlq: None,
                txn_producer: None,
            })
        });
        let part = s.install_local(
            tp(),
            1,
            PartitionTracker::new(0, TrackerConfig::default()).unwrap(),
        );
        Sim {
            s,
            rx,
            rt,
            part,
            generation: 1,
            keys,
            next: 0,
            in_hand: Vec::new(),
            acked_ever: BTreeSet::new(),
            completions: HashMap::new(),
            committed: (0, String::new()),
            order,
        }
    }

    fn record(&self, offset: i64) -> Record {
        let r = Record::of_part(&self.part, offset);
        match self.keys[offset as usize] {
            Some(k) => r.with_key(vec![k]),
            None => r,
        }
    }

    /// What `recv` does with a fetched record: tracker admission, then the gate.
    fn fetch(&mut self) {
        while (self.next as usize) < self.keys.len() {
            let offset = self.next;
            let admitted = {
                let mut t = self.part.lock();
                if !t.should_process(offset) {
                    self.next += 1;
                    continue;
                }
                if t.in_flight() >= MAX_IN_FLIGHT || !t.admit(offset) {
                    false
                } else {
                    t.hand_out(offset, 0).unwrap();
                    true
                }
            };
            if !admitted {
                return;
            }
            self.next += 1;
            let record = self.record(offset);
            match self.part.slot_of(&record) {
                None => self.in_hand.push(Delivery::new(record, 1, None)),
                Some(slot) => {
                    if let Some(r) = self.part.enter_gate(slot, record) {
                        self.in_hand.push(Delivery::new(r, 1, Some(slot)));
                    }
                }
            }
            return;
        }
    }

    fn ready(&mut self) {
        let next = self.part.gate.lock().take_ready();
        if let Some((slot, record)) = next {
            self.in_hand.push(Delivery::new(record, 1, Some(slot)));
        }
    }

    fn finish(&mut self, i: usize, fail: bool) {
        if self.in_hand.is_empty() {
            return;
        }
        let d = self.in_hand.swap_remove(i % self.in_hand.len());
        if fail {
            d.nack("boom");
            // Zero backoff: the redelivery arrives as soon as the runtime runs.
            let r = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), self.rx.recv()).await
            });
            let r = r.expect("redelivery in time").expect("channel open");
            self.in_hand
                .push(Delivery::new(r.record, r.attempt, r.slot));
            return;
        }
        let (offset, key) = (d.offset(), d.key().map(|k| k[0]));
        assert!(d.ack(), "ack of a current record counts");
        if self.acked_ever.insert(offset) {
            self.completions.entry(key).or_default().push(offset);
        }
    }

    fn rebalance(&mut self) {
        let c = self.part.lock().commit_candidate(0).unwrap();
        self.committed = (c.offset().unwrap(), c.metadata.clone());
        self.check_commit(&c.metadata, c.offset().unwrap());
        self.s.release_all();
        // Records in hand are dropped with the generation: their nacks are stale.
        self.in_hand.clear();
        self.generation += 1;
        let restored = PartitionTracker::restore(&c, TrackerConfig::default()).unwrap();
        self.part = self.s.install_local(tp(), self.generation, restored);
        self.next = self.committed.0;
    }

    fn check_commit(&self, metadata: &str, offset: i64) {
        for o in 0..offset {
            assert!(
                self.acked_ever.contains(&o),
                "commit point {offset} passes unfinished {o}"
            );
        }
        if !metadata.is_empty() {
            let set = AckedSet::decode_string(offset, metadata).unwrap();
            for o in offset..self.keys.len() as i64 {
                if set.contains(o) {
                    assert!(
                        self.acked_ever.contains(&o),
                        "wl1 marks unfinished {o} done"
                    );
                }
            }
        }
    }

    fn check(&self) {
        match self.order {
            Order::Key => {
                let mut seen = BTreeSet::new();
                for d in &self.in_hand {
                    if let Some(k) = d.key() {
                        assert!(seen.insert(k.to_vec()), "two records of key {k:?} in hand");
                    }
                }
            }
            Order::Partition => assert!(self.in_hand.len() <= 1, "{} in hand", self.in_hand.len()),
            Order::Unordered => {}
        }
        for (key, offsets) in &self.completions {
            if key.is_some() || self.order == Order::Partition {
                assert!(
                    offsets.windows(2).all(|w| w[0] < w[1]),
                    "key {key:?} completed out of order: {offsets:?}"
                );
            }
        }
        let (point, metadata, in_flight) = {
            let t = self.part.lock();
            let c = t.commit_candidate(0).unwrap();
            (c.offset().unwrap(), c.metadata.clone(), t.in_flight())
        };
        self.check_commit(&metadata, point);
        assert!(in_flight <= MAX_IN_FLIGHT, "{in_flight} in flight");
    }

    /// No more failures: everything completes.
    fn drain(&mut self) {
        for _ in 0..100_000 {
            if self.acked_ever.len() == self.keys.len() {
                break;
            }
            self.fetch();
            self.ready();
            self.finish(0, false);
            self.check();
        }
        assert_eq!(
            self.acked_ever.len(),
            self.keys.len(),
            "every record completes"
        );
        assert_eq!(self.part.lock().commit_point(), self.keys.len() as i64);
        let by_key: BTreeMap<_, _> = self.completions.iter().collect();
        for (key, offsets) in by_key {
            let want: Vec<i64> = (0..self.keys.len() as i64)
                .filter(|o| self.keys[*o as usize] == *key)
                .collect();
            if key.is_some() || self.order == Order::Partition {
                assert_eq!(offsets, &want, "key {key:?}");
            }
        }
    }
}

fn run(order: Order, keys: Vec<Option<u8>>, ops: Vec<Op>) {
    let mut sim = Sim::new(order, keys);
    for op in ops {
        match op {
            Op::Fetch => sim.fetch(),
            Op::Ready => sim.ready(),
            Op::Finish { i, fail } => sim.finish(i, fail),
            Op::Rebalance => sim.rebalance(),
        }
        sim.check();
    }
    sim.drain();
}

fn keys() -> impl Strategy<Value = Vec<Option<u8>>> {
    proptest::collection::vec(proptest::option::weighted(0.9, 0u8..6), 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn key_order_holds(keys in keys(), ops in proptest::collection::vec(op(), 0..300)) {
        run(Order::Key, keys, ops);
    }

    #[test]
    fn partition_order_holds(keys in keys(), ops in proptest::collection::vec(op(), 0..300)) {
        run(Order::Partition, keys, ops);
    }
}
