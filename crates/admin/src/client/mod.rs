//! A small async Kafka client for operator tools: bootstrap, version negotiation, metadata,
//! log offsets, single-record fetch, the consumer-group admin APIs and the topic admin APIs
//! (in [`topics`]: create, delete, grow, describe and alter configs).
//!
//! All calls take `&mut self` and run one request at a time per broker: admin commands issue
//! a handful of batched requests, so concurrency would add complexity without speed.
//! Connections are kept per broker address and dropped after any error (the stream position
//! is then unknown); the next call reconnects.

mod conn;
pub mod records;
pub mod security;
pub mod topics;
pub mod users;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest,
    FetchRequest, FindCoordinatorRequest, GroupId, ListGroupsRequest, ListOffsetsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    metadata_request::MetadataRequestTopic,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
};
use kafka_protocol::protocol::{Decodable, Message, Request, StrBytes};
use waterline_core::TopicPartition;

pub use conn::{ConnSettings, Connection, negotiate};
pub use records::RecordInfo;
pub use security::{SaslLogin, Security};
pub use topics::{
    AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource, DescribedConfigs, NewTopic,
    ResourceOutcome,
};
pub use users::{ScramChange, ScramUser};

use crate::codes;
use crate::error::ClientError;

/// Highest versions this client speaks, per API. Chosen to avoid topic-id-only versions
/// (Fetch 13+, OffsetCommit/OffsetFetch 10) and the batched multi-group forms
/// (OffsetFetch 8+), which need other request shapes.
mod caps {
    pub const METADATA: i16 = 12;
    pub const LIST_OFFSETS: i16 = 7;
    pub const FETCH: i16 = 12;
    pub const FIND_COORDINATOR: i16 = 4;
    pub const OFFSET_FETCH: i16 = 7;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const OFFSET_DELETE: i16 = 0;
    pub const DESCRIBE_GROUPS: i16 = 5;
    pub const LIST_GROUPS: i16 = 4;
    pub const DELETE_GROUPS: i16 = 2;
    pub const CREATE_TOPICS: i16 = 7;
    pub const DELETE_TOPICS: i16 = 6;
    pub const CREATE_PARTITIONS: i16 = 3;
    pub const DESCRIBE_CONFIGS: i16 = 4;
    pub const INCREMENTAL_ALTER_CONFIGS: i16 = 1;
    pub const DESCRIBE_LOG_DIRS: i16 = 4;
}

/// How many times a group request is retried after a coordinator error.
const COORDINATOR_ATTEMPTS: u32 = 5;
/// Pause between coordinator retries.
const COORDINATOR_BACKOFF: Duration = Duration::from_millis(100);
/// Bytes asked for when fetching one record; a batch larger than this is still returned whole
/// by Kafka (the first batch is always returned), so this only bounds the common case.
const FETCH_PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Upper bound on a whole Fetch response asked for.
const FETCH_MAX_BYTES: i32 = 50 << 20;

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bootstrap addresses (`host:port`), tried in order.
    pub bootstrap: Vec<String>,
    /// Client id sent to the brokers.
    pub client_id: String,
    /// Timeout for connecting and for each request.
    pub request_timeout: Duration,
    /// Largest response frame accepted.
    pub max_frame_bytes: usize,
    /// TLS and SASL of every connection.
    pub security: std::sync::Arc<Security>,
}

impl ClientConfig {
    /// Defaults: client id `waterline-admin`, 10 s timeout, 100 MiB frames.
    pub fn new(bootstrap: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            bootstrap: bootstrap.into_iter().map(Into::into).collect(),
            client_id: "waterline-admin".to_string(),
            request_timeout: Duration::from_secs(10),
            max_frame_bytes: 100 << 20,
            security: Default::default(),
        }
    }
}

/// Where to look up an offset with ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose record timestamp is >= this (ms since epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ts) => ts,
        }
    }
}

/// A broker from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: i32,
}

impl BrokerInfo {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A partition from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Leader node id (-1 when none).
    pub leader: i32,
    /// Partition-level error code (0 = none).
    pub error_code: i16,
    /// Node ids of the replicas.
    pub replicas: Vec<i32>,
    /// Node ids of the in-sync replicas.
    pub isr: Vec<i32>,
}

/// A topic from metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Topic-level error code (0 = none; 3 = unknown topic).
    pub error_code: i16,
    /// Whether the broker marks it internal (e.g. `__consumer_offsets`).
    pub internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// The result of a Metadata request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterMetadata {
    /// Brokers.
    pub brokers: Vec<BrokerInfo>,
    /// The controller's node id, when the broker reports one (Metadata v1+).
    pub controller_id: Option<i32>,
    /// Topics, in the broker's order.
    pub topics: Vec<TopicInfo>,
}

impl ClusterMetadata {
    /// The topic named `name`, if listed without error.
    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics
            .iter()
            .find(|t| t.name == name && t.error_code == codes::NONE)
    }
}

/// A committed offset read with OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The committed offset (next offset to read).
    pub offset: i64,
    /// Metadata committed with it.
    pub metadata: String,
}

/// A group member from DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Member id issued by the coordinator.
    pub member_id: String,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub host: String,
    /// Partitions assigned to this member (decoded for protocol type `consumer`, else empty).
    pub assignment: Vec<TopicPartition>,
}

/// A group from DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group id.
    pub group_id: String,
    /// Error code for this group (0 = none).
    pub error_code: i16,
    /// State: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead.
    pub state: String,
    /// Protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// Chosen assignment protocol, e.g. `range`.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberInfo>,
}

/// A group from ListGroups.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedGroupInfo {
    /// Group id.
    pub group_id: String,
    /// Protocol type (empty for groups that only commit offsets).
    pub protocol_type: String,
    /// State, when the broker reports it (ListGroups v4+), else empty.
    pub state: String,
}

/// A partition an operation failed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFailure {
    /// The partition.
    pub tp: TopicPartition,
    /// The Kafka error code.
    pub code: i16,
}

/// The admin client.
#[derive(Debug)]
pub struct AdminClient {
    settings: ConnSettings,
    bootstrap_addr: String,
    conns: HashMap<String, Connection>,
    /// node id -> address, from the last Metadata response.
    brokers: HashMap<i32, String>,
    /// partition -> leader node id, from Metadata responses.
    leaders: HashMap<TopicPartition, i32>,
    /// group -> coordinator address.
    coordinators: HashMap<String, String>,
}

impl AdminClient {
    /// Connects to the first reachable bootstrap server and negotiates API versions.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let settings = ConnSettings {
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            max_frame_bytes: config.max_frame_bytes,
            security: config.security.clone(),
        };
        let mut last = "no bootstrap address given".to_string();
        for addr in &config.bootstrap {
            match Connection::connect(addr, settings.clone()).await {
                Ok(conn) => {
                    let mut conns = HashMap::new();
                    conns.insert(addr.clone(), conn);
                    return Ok(Self {
                        settings,
                        bootstrap_addr: addr.clone(),
                        conns,
                        brokers: HashMap::new(),
                        leaders: HashMap::new(),
                        coordinators: HashMap::new(),
                    });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(ClientError::Bootstrap {
            addrs: config.bootstrap.join(","),
            reason: last,
        })
    }

    /// The version range the bootstrap broker advertised for `api`.
    pub fn broker_versions(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.conns
            .get(&self.bootstrap_addr)
            .and_then(|c| c.broker_range(api))
    }

    /// The version this client would use for `R` against the bootstrap broker.
    pub fn negotiated_version<R: Request>(&self) -> Result<i16, ClientError> {
        let cap = cap_for(R::KEY);
        match self.conns.get(&self.bootstrap_addr) {
            Some(c) => c.version_for::<R>(cap),
            None => Err(ClientError::Metadata("bootstrap connection closed".into())),
        }
    }

    async fn conn(&mut self, addr: &str) -> Result<&mut Connection, ClientError> {
        if !self.conns.contains_key(addr) {
            let conn = Connection::connect(addr, self.settings.clone()).await?;
            self.conns.insert(addr.to_string(), conn);
        }
        self.conns
            .get_mut(addr)
            .ok_or_else(|| ClientError::Metadata(format!("no connection to {addr}")))
    }

    /// Sends `request` to `addr` at the best common version; drops the connection on error.
    async fn send<R: Request>(
        &mut self,
        addr: &str,
        build: impl FnOnce(i16) -> R,
    ) -> Result<(i16, R::Response), ClientError> {
        let cap = cap_for(R::KEY);
        let conn = self.conn(addr).await?;
        let version = conn.version_for::<R>(cap)?;
        let request = build(version);
        match conn.request(version, &request).await {
            Ok(resp) => Ok((version, resp)),
            Err(e) => {
                self.conns.remove(addr);
                Err(e)
            }
        }
    }

    fn any_addr(&self) -> String {
        self.bootstrap_addr.clone()
    }

    fn node_addr(&self, node: i32) -> Result<String, ClientError> {
        self.brokers
            .get(&node)
            .cloned()
            .ok_or_else(|| ClientError::Metadata(format!("broker {node} is not in the metadata")))
    }

    /// Metadata for `topics` (all topics when `None`). Never auto-creates topics.
    pub async fn metadata(
        &mut self,
        topics: Option<&[String]>,
    ) -> Result<ClusterMetadata, ClientError> {
        let addr = self.any_addr();
        let (_, resp) = self
            .send(&addr, |v| {
                MetadataRequest::default()
                    // The flag exists from v4; older versions follow the broker's setting.
                    .with_allow_auto_topic_creation(v < 4)
                    .with_topics(topics.map(|ts| {
                        ts.iter()
                            .map(|t| {
                                MetadataRequestTopic::default()
                                    .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                            })
                            .collect()
                    }))
            })
            .await?;
        let brokers: Vec<BrokerInfo> = resp
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
            })
            .collect();
        for b in &brokers {
            self.brokers.insert(b.node_id, b.addr());
        }
        let mut out_topics = Vec::new();
        for t in resp.topics {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    error_code: p.error_code,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            for p in &partitions {
                self.leaders
                    .insert(TopicPartition::new(name.clone(), p.partition), p.leader);
            }
            out_topics.push(TopicInfo {
                name,
                error_code: t.error_code,
                internal: t.is_internal,
                partitions,
            });
        }
        Ok(ClusterMetadata {
            brokers,
            controller_id: (resp.controller_id.0 >= 0).then_some(resp.controller_id.0),
            topics: out_topics,
        })
    }

    /// Groups partitions by leader address, refreshing metadata for unknown leaders.
    async fn by_leader<T: Clone>(
        &mut self,
        items: &[(TopicPartition, T)],
    ) -> Result<BTreeMap<String, Vec<(TopicPartition, T)>>, ClientError> {
        let missing: Vec<String> = items
            .iter()
            .filter(|(tp, _)| !self.leaders.contains_key(tp))
            .map(|(tp, _)| tp.topic.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            self.metadata(Some(&missing)).await?;
        }
        let mut out: BTreeMap<String, Vec<(TopicPartition, T)>> = BTreeMap::new();
        for (tp, v) in items {
            let leader = *self.leaders.get(tp).ok_or_else(|| ClientError::Kafka {
                api: "Metadata",
                context: format!("topic {} partition {}", tp.topic, tp.partition),
                code: codes::UNKNOWN_TOPIC_OR_PARTITION,
            })?;
            if leader < 0 {
                return Err(ClientError::Metadata(format!(
                    "topic {} partition {} has no leader",
                    tp.topic, tp.partition
                )));
            }
            let addr = self.node_addr(leader)?;
            out.entry(addr).or_default().push((tp.clone(), v.clone()));
        }
        Ok(out)
    }

    /// Looks up offsets with ListOffsets. `None` means no record matches (a timestamp after the
    /// last record). Any partition error fails the call, naming the partition.
    pub async fn list_offsets(
        &mut self,
        specs: &[(TopicPartition, OffsetSpec)],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>, ClientError> {
        let mut out = BTreeMap::new();
        for (tp, answer) in self.list_offsets_each(specs).await? {
            match answer {
                Ok(offset) => {
                    out.insert(tp, offset);
                }
                Err(code) => {
                    return Err(ClientError::Kafka {
                        api: "ListOffsets",
                        context: format!("topic {} partition {}", tp.topic, tp.partition),
                        code,
                    });
                }
            }
        }
        Ok(out)
    }

    /// [`Self::list_offsets`] that answers per partition: a partition that does not exist
    /// (or has no leader, or that the broker refuses) gets `Err(code)` instead of failing the
    /// whole call, so one deleted topic does not hide the others. Connection and protocol
    /// failures still fail the call.
    pub async fn list_offsets_each(
        &mut self,
        specs: &[(TopicPartition, OffsetSpec)],
    ) -> Result<BTreeMap<TopicPartition, Result<Option<i64>, i16>>, ClientError> {
        let mut out = BTreeMap::new();
        let missing: Vec<String> = specs
            .iter()
            .filter(|(tp, _)| self.leaders.get(tp).is_none_or(|l| *l < 0))
            .map(|(tp, _)| tp.topic.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            self.metadata(Some(&missing)).await?;
        }
        let mut known = Vec::with_capacity(specs.len());
        for (tp, spec) in specs {
            match self.leaders.get(tp) {
                Some(l) if *l >= 0 => known.push((tp.clone(), *spec)),
                Some(_) => {
                    out.insert(tp.clone(), Err(codes::LEADER_NOT_AVAILABLE));
                }
                None => {
                    out.insert(tp.clone(), Err(codes::UNKNOWN_TOPIC_OR_PARTITION));
                }
            }
        }
        if known.is_empty() {
            return Ok(out);
        }
        let timeout_ms = self_timeout_ms(&self.settings);
        for (addr, items) in self.by_leader(&known).await? {
            let mut topics: BTreeMap<String, Vec<ListOffsetsPartition>> = BTreeMap::new();
            for (tp, spec) in &items {
                topics.entry(tp.topic.clone()).or_default().push(
                    ListOffsetsPartition::default()
                        .with_partition_index(tp.partition)
                        .with_timestamp(spec.wire()),
                );
            }
            let (_, resp) = self
                .send(&addr, |_| {
                    ListOffsetsRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_isolation_level(0)
                        .with_timeout_ms(timeout_ms)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(name, ps)| {
                                    ListOffsetsTopic::default()
                                        .with_name(TopicName(StrBytes::from_string(name)))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        )
                })
                .await?;
            for t in resp.topics {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                    let answer = if p.error_code != codes::NONE {
                        Err(p.error_code)
                    } else {
                        Ok((p.offset >= 0).then_some(p.offset))
                    };
                    out.insert(tp, answer);
                }
            }
            for (tp, _) in &items {
                if !out.contains_key(tp) {
                    return Err(ClientError::Decode {
                        api: "ListOffsets",
                        version: 0,
                        addr: addr.clone(),
                        message: format!(
                            "no answer for topic {} partition {}",
                            tp.topic, tp.partition
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Reads the first record at or after `offset` (its offset and timestamp), or `None` when
    /// the partition has no record there yet.
    pub async fn fetch_record(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<Option<RecordInfo>, ClientError> {
        let found = self
            .fetch_records(&[(tp.clone(), offset)], FETCH_PARTITION_MAX_BYTES)
            .await?;
        Ok(found.get(tp).copied().flatten())
    }

    /// For each `(partition, offset)`, the first record at or after the offset, with one Fetch
    /// per leader. A partition whose first batch is larger than `partition_max_bytes` may come
    /// back cut (then `None`): callers treat `None` as "not readable", not "no record".
    pub async fn fetch_records(
        &mut self,
        wanted: &[(TopicPartition, i64)],
        partition_max_bytes: i32,
    ) -> Result<BTreeMap<TopicPartition, Option<RecordInfo>>, ClientError> {
        let mut out = BTreeMap::new();
        for (addr, items) in self.by_leader(wanted).await? {
            let offsets: BTreeMap<TopicPartition, i64> = items.iter().cloned().collect();
            let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
            for (tp, offset) in &items {
                topics.entry(tp.topic.clone()).or_default().push(
                    FetchPartition::default()
                        .with_partition(tp.partition)
                        .with_fetch_offset(*offset)
                        .with_partition_max_bytes(partition_max_bytes),
                );
            }
            let max_bytes = partition_max_bytes
                .saturating_mul(i32::try_from(items.len()).unwrap_or(i32::MAX))
                .min(FETCH_MAX_BYTES);
            let (version, resp) = self
                .send(&addr, |_| {
                    FetchRequest::default()
                        .with_replica_id(BrokerId(-1))
                        .with_max_wait_ms(0)
                        .with_min_bytes(0)
                        .with_max_bytes(max_bytes)
                        .with_isolation_level(0)
                        .with_session_id(0)
                        .with_session_epoch(-1)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    FetchTopic::default()
                                        .with_topic(TopicName(StrBytes::from_string(t)))
                                        .with_partitions(ps)
                                })
                                .collect(),
                        )
                })
                .await?;
            if resp.error_code != codes::NONE {
                return Err(ClientError::Kafka {
                    api: "Fetch",
                    context: format!("broker {addr}"),
                    code: resp.error_code,
                });
            }
            for t in resp.responses {
                for p in t.partitions {
                    let tp = TopicPartition::new(t.topic.0.to_string(), p.partition_index);
                    let Some(offset) = offsets.get(&tp).copied() else {
                        continue;
                    };
                    let context = format!(
                        "topic {} partition {} offset {offset}",
                        tp.topic, tp.partition
                    );
                    if p.error_code != codes::NONE {
                        return Err(ClientError::Kafka {
                            api: "Fetch",
                            context,
                            code: p.error_code,
                        });
                    }
                    let found = match p.records {
                        Some(bytes) => records::first_record_at_or_after(&bytes, offset).map_err(
                            |message| ClientError::Decode {
                                api: "Fetch",
                                version,
                                addr: addr.clone(),
                                message: format!("{context}: {message}"),
                            },
                        )?,
                        None => None,
                    };
                    out.insert(tp, found);
                }
            }
            for (tp, _) in items {
                out.entry(tp).or_insert(None);
            }
        }
        Ok(out)
    }

    /// Finds the coordinator address of `group`.
    pub async fn find_coordinator(&mut self, group: &str) -> Result<String, ClientError> {
        let addr = self.any_addr();
        let (version, resp) = self
            .send(&addr, |v| {
                let req = FindCoordinatorRequest::default().with_key_type(0);
                if v >= 4 {
                    req.with_coordinator_keys(vec![StrBytes::from_string(group.to_string())])
                } else {
                    req.with_key(StrBytes::from_string(group.to_string()))
                }
            })
            .await?;
        let (code, host, port) = if version >= 4 {
            let c = resp
                .coordinators
                .into_iter()
                .find(|c| c.key.as_str() == group)
                .ok_or_else(|| ClientError::Decode {
                    api: "FindCoordinator",
                    version,
                    addr: addr.clone(),
                    message: format!("no coordinator entry for group {group}"),
                })?;
            (c.error_code, c.host, c.port)
        } else {
            (resp.error_code, resp.host, resp.port)
        };
        if code != codes::NONE {
            return Err(ClientError::Kafka {
                api: "FindCoordinator",
                context: format!("group {group}"),
                code,
            });
        }
        let coord = format!("{host}:{port}");
        self.coordinators.insert(group.to_string(), coord.clone());
        Ok(coord)
    }

    async fn coordinator(&mut self, group: &str) -> Result<String, ClientError> {
        match self.coordinators.get(group) {
            Some(addr) => Ok(addr.clone()),
            None => self.find_coordinator(group).await,
        }
    }

    /// Runs `op` against the group's coordinator, re-resolving it and retrying a few times
    /// when the broker answers with a coordinator error.
    async fn with_coordinator<T>(
        &mut self,
        group: &str,
        mut op: impl AsyncFnMut(&mut Self, String) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.coordinator(group).await {
                Ok(addr) => op(self, addr).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e)
                    if attempt < COORDINATOR_ATTEMPTS
                        && e.kafka_code().is_some_and(codes::is_coordinator_retriable) =>
                {
                    tracing::debug!(group, attempt, error = %e, "coordinator error; retrying");
                    self.coordinators.remove(group);
                    tokio::time::sleep(COORDINATOR_BACKOFF).await;
                }
                other => return other,
            }
        }
    }

    /// Committed offsets of `group` (all partitions when `partitions` is `None`). Partitions
    /// without a commit are left out.
    pub async fn offset_fetch(
        &mut self,
        group: &str,
        partitions: Option<&[TopicPartition]>,
    ) -> Result<BTreeMap<TopicPartition, Committed>, ClientError> {
        let topics: Option<Vec<OffsetFetchRequestTopic>> = partitions.map(|ps| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for tp in ps {
                by_topic.entry(&tp.topic).or_default().push(tp.partition);
            }
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partition_indexes(ps)
                })
                .collect()
        });
        self.with_coordinator(group, async |this, addr| {
            let topics = topics.clone();
            {
                let (_, resp) = this
                    .send(&addr, |_| {
                        OffsetFetchRequest::default()
                            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                            .with_topics(topics)
                    })
                    .await?;
                if resp.error_code != codes::NONE {
                    return Err(ClientError::Kafka {
                        api: "OffsetFetch",
                        context: format!("group {group}"),
                        code: resp.error_code,
                    });
                }
                let mut out = BTreeMap::new();
                for t in resp.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        if p.error_code != codes::NONE {
                            return Err(ClientError::Kafka {
                                api: "OffsetFetch",
                                context: format!(
                                    "group {group} topic {} partition {}",
                                    tp.topic, tp.partition
                                ),
                                code: p.error_code,
                            });
                        }
                        if p.committed_offset >= 0 {
                            out.insert(
                                tp,
                                Committed {
                                    offset: p.committed_offset,
                                    metadata: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                                },
                            );
                        }
                    }
                }
                Ok(out)
            }
        })
        .await
    }

    /// Commits `offsets` for `group` the admin way (generation -1, empty member id), which
    /// Kafka accepts only while the group has no members. Returns the partitions that failed.
    pub async fn offset_commit(
        &mut self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Vec<PartitionFailure>, ClientError> {
        let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, off) in offsets {
            by_topic.entry(tp.topic.clone()).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(*off)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(Some(StrBytes::new())),
            );
        }
        self.with_coordinator(group, async |this, addr| {
            let by_topic = by_topic.clone();
            {
                let (_, resp) = this
                    .send(&addr, |_| {
                        OffsetCommitRequest::default()
                            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                            .with_generation_id_or_member_epoch(-1)
                            .with_member_id(StrBytes::new())
                            .with_retention_time_ms(-1)
                            .with_topics(
                                by_topic
                                    .into_iter()
                                    .map(|(t, ps)| {
                                        OffsetCommitRequestTopic::default()
                                            .with_name(TopicName(StrBytes::from_string(t)))
                                            .with_partitions(ps)
                                    })
                                    .collect(),
                            )
                    })
                    .await?;
                let failures = collect_failures(resp.topics.into_iter().flat_map(|t| {
                    let name = t.name.0.to_string();
                    t.partitions
                        .into_iter()
                        .map(move |p| (name.clone(), p.partition_index, p.error_code))
                }));
                group_level_error("OffsetCommit", group, &failures)?;
                Ok(failures)
            }
        })
        .await
    }

    /// Deletes the committed offsets of `partitions` from `group`. Returns the partitions that
    /// failed (e.g. GROUP_SUBSCRIBED_TO_TOPIC while a member consumes the topic).
    pub async fn offset_delete(
        &mut self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Vec<PartitionFailure>, ClientError> {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic
                .entry(tp.topic.clone())
                .or_default()
                .push(tp.partition);
        }
        self.with_coordinator(group, async |this, addr| {
            let by_topic = by_topic.clone();
            {
                let (_, resp) = this
                    .send(&addr, |_| {
                        OffsetDeleteRequest::default()
                            .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                            .with_topics(
                                by_topic
                                    .into_iter()
                                    .map(|(t, ps)| {
                                        OffsetDeleteRequestTopic::default()
                                            .with_name(TopicName(StrBytes::from_string(t)))
                                            .with_partitions(
                                                ps.into_iter()
                                                    .map(|p| {
                                                        OffsetDeleteRequestPartition::default()
                                                            .with_partition_index(p)
                                                    })
                                                    .collect(),
                                            )
                                    })
                                    .collect(),
                            )
                    })
                    .await?;
                if resp.error_code != codes::NONE {
                    return Err(ClientError::Kafka {
                        api: "OffsetDelete",
                        context: format!("group {group}"),
                        code: resp.error_code,
                    });
                }
                Ok(collect_failures(resp.topics.into_iter().flat_map(|t| {
                    let name = t.name.0.to_string();
                    t.partitions
                        .into_iter()
                        .map(move |p| (name.clone(), p.partition_index, p.error_code))
                })))
            }
        })
        .await
    }

    /// Describes `groups`. Each group is asked of its own coordinator; a group-level error is
    /// returned in [`GroupInfo::error_code`], not as `Err`.
    pub async fn describe_groups(
        &mut self,
        groups: &[String],
    ) -> Result<Vec<GroupInfo>, ClientError> {
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let info = self
                .with_coordinator(group, async |this, addr| {
                    let (_, resp) = this
                        .send(&addr, |_| {
                            DescribeGroupsRequest::default()
                                .with_groups(vec![GroupId(StrBytes::from_string(group.clone()))])
                        })
                        .await?;
                    let g = resp
                        .groups
                        .into_iter()
                        .find(|g| g.group_id.0.as_str() == group)
                        .ok_or_else(|| ClientError::Decode {
                            api: "DescribeGroups",
                            version: 0,
                            addr: addr.clone(),
                            message: format!("no entry for group {group}"),
                        })?;
                    if codes::is_coordinator_retriable(g.error_code) {
                        return Err(ClientError::Kafka {
                            api: "DescribeGroups",
                            context: format!("group {group}"),
                            code: g.error_code,
                        });
                    }
                    let consumer = g.protocol_type.as_str() == "consumer";
                    Ok(GroupInfo {
                        group_id: group.clone(),
                        error_code: g.error_code,
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        protocol: g.protocol_data.to_string(),
                        members: g
                            .members
                            .into_iter()
                            .map(|m| MemberInfo {
                                member_id: m.member_id.to_string(),
                                client_id: m.client_id.to_string(),
                                host: m.client_host.to_string(),
                                assignment: if consumer {
                                    decode_assignment(m.member_assignment)
                                } else {
                                    Vec::new()
                                },
                            })
                            .collect(),
                    })
                })
                .await?;
            out.push(info);
        }
        Ok(out)
    }

    /// Lists the groups of every broker in the cluster, optionally filtered by state
    /// (case-insensitive; done by the broker on ListGroups v4+, else here).
    pub async fn list_groups(
        &mut self,
        states: &[String],
    ) -> Result<Vec<ListedGroupInfo>, ClientError> {
        let meta = self.metadata(Some(&[])).await?;
        let mut addrs: Vec<String> = meta.brokers.iter().map(BrokerInfo::addr).collect();
        if addrs.is_empty() {
            addrs.push(self.any_addr());
        }
        let mut out = Vec::new();
        for addr in addrs {
            let (version, resp) = self
                .send(&addr, |v| {
                    let req = ListGroupsRequest::default();
                    if v >= 4 {
                        req.with_states_filter(
                            states
                                .iter()
                                .map(|s| StrBytes::from_string(s.clone()))
                                .collect(),
                        )
                    } else {
                        req
                    }
                })
                .await?;
            if resp.error_code != codes::NONE {
                return Err(ClientError::Kafka {
                    api: "ListGroups",
                    context: format!("broker {addr}"),
                    code: resp.error_code,
                });
            }
            for g in resp.groups {
                let state = g.group_state.to_string();
                if version < 4
                    && !states.is_empty()
                    && !states.iter().any(|s| s.eq_ignore_ascii_case(&state))
                {
                    continue;
                }
                out.push(ListedGroupInfo {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state,
                });
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Deletes `groups`; returns `(group, error code)` for each (0 = deleted).
    pub async fn delete_groups(
        &mut self,
        groups: &[String],
    ) -> Result<Vec<(String, i16)>, ClientError> {
        let mut out = Vec::new();
        for group in groups {
            let code = self
                .with_coordinator(group, async |this, addr| {
                    let (_, resp) = this
                        .send(&addr, |_| {
                            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(
                                StrBytes::from_string(group.clone()),
                            )])
                        })
                        .await?;
                    let code = resp
                        .results
                        .iter()
                        .find(|r| r.group_id.0.as_str() == group)
                        .map(|r| r.error_code)
                        .unwrap_or(codes::NONE);
                    if codes::is_coordinator_retriable(code) {
                        return Err(ClientError::Kafka {
                            api: "DeleteGroups",
                            context: format!("group {group}"),
                            code,
                        });
                    }
                    Ok(code)
                })
                .await?;
            out.push((group.clone(), code));
        }
        Ok(out)
    }
}

fn self_timeout_ms(settings: &ConnSettings) -> i32 {
    i32::try_from(settings.request_timeout.as_millis()).unwrap_or(i32::MAX)
}

fn cap_for(key: i16) -> i16 {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Metadata) => caps::METADATA,
        Ok(ApiKey::ListOffsets) => caps::LIST_OFFSETS,
        Ok(ApiKey::Fetch) => caps::FETCH,
        Ok(ApiKey::FindCoordinator) => caps::FIND_COORDINATOR,
        Ok(ApiKey::OffsetFetch) => caps::OFFSET_FETCH,
        Ok(ApiKey::OffsetCommit) => caps::OFFSET_COMMIT,
        Ok(ApiKey::OffsetDelete) => caps::OFFSET_DELETE,
        Ok(ApiKey::DescribeGroups) => caps::DESCRIBE_GROUPS,
        Ok(ApiKey::ListGroups) => caps::LIST_GROUPS,
        Ok(ApiKey::DeleteGroups) => caps::DELETE_GROUPS,
        Ok(ApiKey::CreateTopics) => caps::CREATE_TOPICS,
        Ok(ApiKey::DeleteTopics) => caps::DELETE_TOPICS,
        Ok(ApiKey::CreatePartitions) => caps::CREATE_PARTITIONS,
        Ok(ApiKey::DescribeConfigs) => caps::DESCRIBE_CONFIGS,
        Ok(ApiKey::IncrementalAlterConfigs) => caps::INCREMENTAL_ALTER_CONFIGS,
        Ok(ApiKey::DescribeLogDirs) => caps::DESCRIBE_LOG_DIRS,
        _ => 0,
    }
}

fn collect_failures(items: impl Iterator<Item = (String, i32, i16)>) -> Vec<PartitionFailure> {
    items
        .filter(|(_, _, code)| *code != codes::NONE)
        .map(|(topic, partition, code)| PartitionFailure {
            tp: TopicPartition::new(topic, partition),
            code,
        })
        .collect()
}

/// A coordinator error repeated on every partition is a group-level condition: surface it as
/// an error so the coordinator retry loop can act on it.
fn group_level_error(
    api: &'static str,
    group: &str,
    failures: &[PartitionFailure],
) -> Result<(), ClientError> {
    if let Some(first) = failures.first()
        && codes::is_coordinator_retriable(first.code)
    {
        return Err(ClientError::Kafka {
            api,
            context: format!("group {group}"),
            code: first.code,
        });
    }
    Ok(())
}

/// Decodes a consumer-protocol assignment (version prefix, then the body). Malformed or
/// foreign assignments give an empty list: describe output must not fail on them.
fn decode_assignment(bytes: bytes::Bytes) -> Vec<TopicPartition> {
    let mut buf = bytes;
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    // Newer versions only add fields; decode with the highest version known.
    let version = version.clamp(0, ConsumerProtocolAssignment::VERSIONS.max);
    // Written by another client: check its counts before kafka-protocol allocates from them.
    if waterline_wire::check_response(waterline_wire::CONSUMER_ASSIGNMENT, version, &buf).is_err() {
        return Vec::new();
    }
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(a) => a
            .assigned_partitions
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partitions
                    .into_iter()
                    .map(move |p| TopicPartition::new(topic.clone(), p))
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}
