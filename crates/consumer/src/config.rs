//! Consumer configuration and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use waterline_core::{
    CommitPolicy, Interval, ResetPolicy, ResetStrategy, TopicPartition, TrackerConfig,
};
use waterline_store::OffsetStore;

use crate::error::ConsumerError;
use crate::events::ConsumerEvent;
use crate::txn::KafkaTransactions;

/// Where committed positions live.
#[derive(Clone)]
pub enum OffsetStorage {
    /// The Kafka group: the commit point as the committed offset, and the `wl1:` encoding of
    /// offsets done beyond it in the commit metadata.
    Kafka,
    /// An external Waterline store (file, embedded, PostgreSQL, ...), keyed by the group id.
    /// The consumer commits to it on its commit policy, on revoke and at shutdown, and seeks
    /// to its positions on assign.
    External(Arc<dyn OffsetStore>),
    /// An external store written only inside the application's own transactions (see
    /// [`Delivery::begin_transaction`](crate::Delivery::begin_transaction)): exactly-once into
    /// that database. The consumer never commits on a timer; it writes the store itself only on
    /// revoke and at shutdown, while holding every partition's transaction lock.
    Transactional(Arc<dyn OffsetStore>),
    /// The Kafka group, written only inside Kafka transactions that also carry the
    /// application's outputs ([`Delivery::produce`](crate::Delivery::produce)): exactly-once
    /// consume-transform-produce. The consumer reads `read_committed`, owns a transactional
    /// producer, and on its commit policy (and on revoke and at shutdown) commits, in one
    /// transaction, the outputs of the acked records and the commit point with the `wl1:`
    /// metadata. See [`KafkaTransactions`] and the crate docs.
    KafkaTransactional(KafkaTransactions),
}

impl fmt::Debug for OffsetStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffsetStorage::Kafka => "Kafka",
            OffsetStorage::External(_) => "External",
            OffsetStorage::Transactional(_) => "Transactional",
            OffsetStorage::KafkaTransactional(_) => "KafkaTransactional",
        })
    }
}

/// What happens once a record has failed [`FailurePolicy::max_attempts`] times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exhausted {
    /// Produce the record to this topic (with `waterline.*` headers naming its origin and the
    /// failure), then count it as done.
    DeadLetter(String),
    /// Hold the partition: hand out nothing newer from it and keep redelivering the record
    /// (every `max_backoff`) until it is acknowledged. Other partitions are unaffected.
    Hold,
}

/// Failure handling for [`Delivery::nack`](crate::Delivery::nack).
///
/// A nacked record is redelivered after `backoff * 2^(attempt-1)` (capped at `max_backoff`)
/// until it has been tried `max_attempts` times; then [`Exhausted`] decides. The committed
/// position never passes an unfinished record, whatever the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Deliveries in total, first one included (>= 1).
    pub max_attempts: u32,
    /// Delay before the first redelivery.
    pub backoff: Duration,
    /// Cap on the delay between redeliveries.
    pub max_backoff: Duration,
    /// What to do after the last attempt failed.
    pub exhausted: Exhausted,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            exhausted: Exhausted::Hold,
        }
    }
}

impl FailurePolicy {
    /// Delay before delivery number `attempt + 1`, given `attempt` failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(20);
        self.backoff
            .saturating_mul(1u32 << shift)
            .min(self.max_backoff)
    }
}

/// Which records may be processed at the same time.
///
/// Whatever the mode, the commit point never passes an unfinished record (in the
/// application's hands, retrying, or waiting for its turn), and a restart skips what finished
/// (`wl1:` metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ordering {
    /// Any records at once, acknowledged in any order (up to the per-partition and global
    /// limits). A record held after its last attempt ([`Exhausted::Hold`]) holds its
    /// partition.
    #[default]
    Unordered,
    /// At most one record of a partition in the application's hands: a partition's records
    /// are processed one after the other, in offset order, and partitions in parallel. A
    /// retrying or held record blocks its partition.
    Partition,
    /// At most one record per key (within its partition) in the application's hands: a key's
    /// records are processed one after the other, in offset order, while records of other
    /// keys flow past a busy key. Records without a key are not ordered. A retrying or held
    /// record blocks only its own key. Records waiting behind a busy key count as in flight
    /// for [`ConsumerConfigBuilder::max_in_flight_per_partition`] and for admission control.
    Key,
}

/// Observer of consumer events (assignments, revocations, commits); must be quick.
pub type EventListener = Arc<dyn Fn(&ConsumerEvent) + Send + Sync>;

/// Builds a [`ConsumerConfig`].
pub struct ConsumerConfigBuilder {
    cfg: ConsumerConfig,
}

/// A validated consumer configuration. Build one with [`ConsumerConfig::builder`].
pub struct ConsumerConfig {
    pub(crate) bootstrap_servers: String,
    pub(crate) group_id: String,
    pub(crate) topics: Vec<String>,
    pub(crate) assignment: Option<Vec<TopicPartition>>,
    pub(crate) policy: Box<dyn CommitPolicy>,
    pub(crate) reset: ResetPolicy,
    pub(crate) storage: OffsetStorage,
    pub(crate) tracker: TrackerConfig,
    pub(crate) max_in_flight_per_partition: u64,
    pub(crate) drain_timeout: Duration,
    pub(crate) failure: FailurePolicy,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) dead_letter_properties: Vec<(String, String)>,
    pub(crate) listener: Option<EventListener>,
    pub(crate) commit_tick: Duration,
    pub(crate) kafka_timeout: Duration,
    pub(crate) final_commit: bool,
    pub(crate) ordering: Ordering,
    pub(crate) max_concurrency: Option<u64>,
    pub(crate) brokers_down_timeout: Option<Duration>,
}

impl fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("group_id", &self.group_id)
            .field("topics", &self.topics)
            .field("assignment", &self.assignment)
            .field("policy", &self.policy)
            .field("reset", &self.reset)
            .field("storage", &self.storage)
            .field(
                "max_in_flight_per_partition",
                &self.max_in_flight_per_partition,
            )
            .field("drain_timeout", &self.drain_timeout)
            .field("failure", &self.failure)
            .field("ordering", &self.ordering)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// Properties set with [`ConsumerConfigBuilder::set`] that the dead-letter producer takes too:
/// how to reach and authenticate to the cluster (names starting with one of these).
pub const CONNECTION_PROPERTY_PREFIXES: &[&str] = &[
    "security.",
    "sasl.",
    "ssl.",
    "ssl_",
    "enable.ssl.",
    "client.",
    "socket.",
    "broker.",
    "reconnect.",
    "api.version",
    "connections.max.idle.ms",
    "resolve.canonical.bootstrap.servers.only",
    "debug",
];

impl ConsumerConfig {
    /// The connection properties among those given to the consumer (for its producers).
    pub(crate) fn connection_properties(&self) -> Vec<(&str, &str)> {
        self.properties
            .iter()
            .filter(|(k, _)| {
                CONNECTION_PROPERTY_PREFIXES
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// The dead-letter producer's properties: the connection properties among those given to
    /// the consumer, then the dead-letter ones.
    pub(crate) fn dead_letter_producer_properties(&self) -> Vec<(&str, &str)> {
        self.properties
            .iter()
            .filter(|(k, _)| {
                CONNECTION_PROPERTY_PREFIXES
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .chain(&self.dead_letter_properties)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Starts a configuration for `group_id` on the cluster at `bootstrap_servers`.
    ///
    /// Defaults: commit every second, reset to `earliest`, offsets in the Kafka group, 10 000
    /// records in flight per partition, 30 s drain timeout, [`FailurePolicy::default`].
    pub fn builder(
        bootstrap_servers: impl Into<String>,
        group_id: impl Into<String>,
    ) -> ConsumerConfigBuilder {
        ConsumerConfigBuilder {
            cfg: ConsumerConfig {
                bootstrap_servers: bootstrap_servers.into(),
                group_id: group_id.into(),
                topics: Vec::new(),
                assignment: None,
                policy: Box::new(Interval::new(1000).expect("1000 ms is a valid interval")),
                reset: ResetPolicy::single(ResetStrategy::Earliest)
                    .expect("a one-step chain is valid"),
                storage: OffsetStorage::Kafka,
                tracker: TrackerConfig::default(),
                max_in_flight_per_partition: 10_000,
                drain_timeout: Duration::from_secs(30),
                failure: FailurePolicy::default(),
                properties: Vec::new(),
                dead_letter_properties: Vec::new(),
                listener: None,
                commit_tick: Duration::from_millis(20),
                kafka_timeout: Duration::from_secs(10),
                final_commit: true,
                ordering: Ordering::Unordered,
                max_concurrency: None,
                brokers_down_timeout: Some(Duration::from_secs(300)),
            },
        }
    }

    /// The consumer group id (also the key in external stores).
    pub fn group_id(&self) -> &str {
        &self.group_id
    }
}

impl ConsumerConfigBuilder {
    /// Subscribes to `topic` (group-managed assignment; may be called several times).
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.cfg.topics.push(topic.into());
        self
    }

    /// Subscribes to these topics.
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.cfg.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// Consumes exactly these partitions without group membership (Kafka's `assign()`);
    /// commits still go to the group id. Exclusive with [`topic`](Self::topic).
    pub fn assign(mut self, partitions: Vec<TopicPartition>) -> Self {
        self.cfg.assignment = Some(partitions);
        self
    }

    /// When to commit (default: every second). Ignored with
    /// [`OffsetStorage::Transactional`]. With [`OffsetStorage::KafkaTransactional`] every
    /// commit is one transaction, and a snapshot policy (checkpoint barriers) commits the
    /// current position instead of the snapshot: outputs must go with their own offsets.
    pub fn commit_policy(mut self, policy: impl CommitPolicy + 'static) -> Self {
        self.cfg.policy = Box::new(policy);
        self
    }

    /// Same, boxed.
    pub fn commit_policy_boxed(mut self, policy: Box<dyn CommitPolicy>) -> Self {
        self.cfg.policy = policy;
        self
    }

    /// Where to start when nothing is committed (default `earliest`).
    pub fn reset_policy(mut self, reset: ResetPolicy) -> Self {
        self.cfg.reset = reset;
        self
    }

    /// Where committed positions live (default: the Kafka group).
    pub fn offset_storage(mut self, storage: OffsetStorage) -> Self {
        self.cfg.storage = storage;
        self
    }

    /// Tracker settings (metadata budget, hard window).
    pub fn tracker(mut self, tracker: TrackerConfig) -> Self {
        self.cfg.tracker = tracker;
        self
    }

    /// Most records handed out and not yet acknowledged per partition; the partition is paused
    /// beyond it (default 10 000). In [`Ordering::Key`] and [`Ordering::Partition`] this
    /// counts the records waiting for their turn too: it bounds what a partition holds.
    pub fn max_in_flight_per_partition(mut self, n: u64) -> Self {
        self.cfg.max_in_flight_per_partition = n;
        self
    }

    /// How long a revocation or shutdown waits for in-flight records (default 30 s).
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.cfg.drain_timeout = d;
        self
    }

    /// What a nack does (default: 3 attempts, then hold the partition).
    pub fn failure_policy(mut self, f: FailurePolicy) -> Self {
        self.cfg.failure = f;
        self
    }

    /// Sets a librdkafka property (e.g. `session.timeout.ms`). Waterline owns
    /// `enable.auto.commit`, `enable.auto.offset.store`, `group.id` and `bootstrap.servers`.
    /// Connection and security properties ([`CONNECTION_PROPERTY_PREFIXES`]) also apply to
    /// the dead-letter producer.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cfg.properties.push((key.into(), value.into()));
        self
    }

    /// Sets a librdkafka property of the dead-letter producer only (e.g. `compression.type`);
    /// applied after the connection properties it shares with the consumer.
    pub fn dead_letter_set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.cfg
            .dead_letter_properties
            .push((key.into(), value.into()));
        self
    }

    /// Observes assignments, revocations and commits.
    pub fn on_event(mut self, f: impl Fn(&ConsumerEvent) + Send + Sync + 'static) -> Self {
        self.cfg.listener = Some(Arc::new(f));
        self
    }

    /// How often the commit policy is evaluated (default 20 ms).
    pub fn commit_tick(mut self, d: Duration) -> Self {
        self.cfg.commit_tick = d;
        self
    }

    /// Timeout of blocking Kafka requests (committed offsets, watermarks, commits; default 10 s).
    pub fn kafka_timeout(mut self, d: Duration) -> Self {
        self.cfg.kafka_timeout = d;
        self
    }

    /// Whether revocation and shutdown commit the current positions (default `true`). Turn it
    /// off when an ack does not yet mean "durably done", e.g. with checkpoint-driven commits:
    /// then only the commit policy commits, and a new owner resumes from its last commit.
    pub fn final_commit(mut self, on: bool) -> Self {
        self.cfg.final_commit = on;
        self
    }

    /// Which records may be processed at the same time (default [`Ordering::Unordered`]).
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.cfg.ordering = ordering;
        self
    }

    /// Most records in the application's hands at once, over all partitions (handed out by
    /// [`Consumer::recv`](crate::Consumer::recv) and not yet acked or nacked; default: no
    /// limit beyond the per-partition one). Records waiting for a retry or behind a busy key
    /// do not count. [`Consumer::process`](crate::Consumer::process) has its own limit as well.
    pub fn max_concurrency(mut self, n: u64) -> Self {
        self.cfg.max_concurrency = Some(n);
        self
    }

    /// How long every broker may be unreachable before [`Consumer::recv`](crate::Consumer::recv)
    /// fails with [`ConsumerError::BrokersDown`] (default 5 minutes; `None`: retry forever).
    pub fn brokers_down_timeout(mut self, d: Option<Duration>) -> Self {
        self.cfg.brokers_down_timeout = d;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(self) -> Result<ConsumerConfig, ConsumerError> {
        let c = self.cfg;
        let bad = |m: &str| Err(ConsumerError::Config(m.to_string()));
        if c.bootstrap_servers.is_empty() {
            return bad("bootstrap servers are empty");
        }
        if c.group_id.is_empty() {
            return bad("group id is empty");
        }
        match (&c.assignment, c.topics.is_empty()) {
            (None, true) => return bad("no topics and no assignment"),
            (Some(_), false) => return bad("use either topics or an explicit assignment"),
            (Some(a), true) if a.is_empty() => return bad("explicit assignment is empty"),
            _ => {}
        }
        if c.max_in_flight_per_partition == 0 {
            return bad("max_in_flight_per_partition must be >= 1");
        }
        if c.max_concurrency == Some(0) {
            return bad("max_concurrency must be >= 1");
        }
        if c.brokers_down_timeout.is_some_and(|d| d.is_zero()) {
            return bad("brokers_down_timeout must be > 0");
        }
        if c.failure.max_attempts == 0 {
            return bad("failure policy max_attempts must be >= 1");
        }
        if let Exhausted::DeadLetter(t) = &c.failure.exhausted
            && t.is_empty()
        {
            return bad("dead-letter topic is empty");
        }
        if c.commit_tick.is_zero() {
            return bad("commit tick must be > 0");
        }
        c.tracker.validate()?;
        if let OffsetStorage::KafkaTransactional(t) = &c.storage {
            if let Err(m) = t.validate() {
                return Err(ConsumerError::Config(m));
            }
            if c.properties
                .iter()
                .any(|(k, v)| k == "isolation.level" && v != "read_committed")
            {
                return bad(
                    "OffsetStorage::KafkaTransactional reads with isolation.level=read_committed",
                );
            }
        }
        for (k, v) in &c.properties {
            if k == "partition.assignment.strategy"
                && v.contains("cooperative")
                && v.split(',').any(|s| !s.trim().contains("cooperative"))
            {
                return bad("partition.assignment.strategy mixes cooperative and eager assignors");
            }
            if matches!(
                k.as_str(),
                "enable.auto.commit"
                    | "enable.auto.offset.store"
                    | "group.id"
                    | "bootstrap.servers"
            ) {
                return Err(ConsumerError::Config(format!(
                    "property {k} is set by Waterline"
                )));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_validates() {
        let ok = ConsumerConfig::builder("127.0.0.1:9092", "g")
            .topic("t")
            .build();
        assert!(ok.is_ok());
        let err = |b: ConsumerConfigBuilder| b.build().unwrap_err().to_string();
        assert!(err(ConsumerConfig::builder("", "g").topic("t")).contains("bootstrap"));
        assert!(err(ConsumerConfig::builder("b", "").topic("t")).contains("group"));
        assert!(err(ConsumerConfig::builder("b", "g")).contains("no topics"));
        assert!(
            err(ConsumerConfig::builder("b", "g")
                .topic("t")
                .assign(vec![TopicPartition::new("t", 0)]))
            .contains("either")
        );
        assert!(
            err(ConsumerConfig::builder("b", "g")
                .topic("t")
                .set("enable.auto.commit", "true"))
            .contains("set by Waterline")
        );
        assert!(
            err(ConsumerConfig::builder("b", "g")
                .topic("t")
                .set("partition.assignment.strategy", "cooperative-sticky,range"))
            .contains("mixes")
        );
        assert!(
            ConsumerConfig::builder("b", "g")
                .topic("t")
                .set("partition.assignment.strategy", "cooperative-sticky")
                .build()
                .is_ok(),
            "incremental rebalancing is supported"
        );
        assert!(
            err(ConsumerConfig::builder("b", "g")
                .topic("t")
                .max_in_flight_per_partition(0))
            .contains("max_in_flight")
        );
        let c = ConsumerConfig::builder("b", "g")
            .topic("t")
            .set("security.protocol", "SASL_SSL")
            .set("sasl.username", "u")
            .set("session.timeout.ms", "6000")
            .set("client.id", "app")
            .dead_letter_set("compression.type", "zstd")
            .build()
            .unwrap();
        assert_eq!(
            c.dead_letter_producer_properties(),
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.username", "u"),
                ("client.id", "app"),
                ("compression.type", "zstd"),
            ],
            "connection properties and dead-letter ones, not consumer ones"
        );
        let dlq = FailurePolicy {
            exhausted: Exhausted::DeadLetter(String::new()),
            ..FailurePolicy::default()
        };
        assert!(
            err(ConsumerConfig::builder("b", "g")
                .topic("t")
                .failure_policy(dlq))
            .contains("dead")
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let f = FailurePolicy {
            max_attempts: 10,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            exhausted: Exhausted::Hold,
        };
        assert_eq!(f.delay(1), Duration::from_millis(100));
        assert_eq!(f.delay(2), Duration::from_millis(200));
        assert_eq!(f.delay(3), Duration::from_millis(350));
        assert_eq!(f.delay(u32::MAX), Duration::from_millis(350));
    }
}
