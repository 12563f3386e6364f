//! One module per Kafka API. Adding an API: write `handlers/<api>.rs` with
//! `pub async fn handle(state: &SharedState, header: &RequestHeader, req: XRequest) -> XResponse`,
//! then add one line to [`SUPPORTED`] and one arm to [`apply`]. A handler that must wait for
//! something slow after applying its effect (an fsync, another client) is instead a plain `fn`
//! that applies the effect and returns a `'static` future of the response; see [`apply`] for
//! the ordering invariant it keeps.

use kafka_protocol::messages::{
    AlterConfigsRequest, DeleteRecordsRequest, DescribeLogDirsRequest,
    IncrementalAlterConfigsRequest,
};
// Transactions.
use kafka_protocol::messages::OffsetForLeaderEpochRequest;
// Authentication.
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, DescribeProducersRequest,
    DescribeTransactionsRequest, EndTxnRequest, ListTransactionsRequest, TxnOffsetCommitRequest,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, FetchRequest, InitProducerIdRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, RequestHeader, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::{Message, VersionRange};
// Consumer-group APIs (kept apart from the list above).
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};

use crate::state::SharedState;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl_authenticate;
pub mod sasl_handshake;
pub mod sync_group;
pub mod txn_offset_commit;

/// Caps a message's decodable versions at `max` (e.g. to leave out topic-id versions).
const fn capped(v: VersionRange, max: i16) -> VersionRange {
    VersionRange {
        min: v.min,
        max: if v.max < max { v.max } else { max },
    }
}

/// Every API the broker serves and the versions it decodes (each message type's `VERSIONS`,
/// capped where the broker does not implement a version's features).
pub const SUPPORTED: &[(ApiKey, VersionRange)] = &[
    // Produce 13 addresses topics by id, which this broker does not implement.
    (ApiKey::Produce, capped(ProduceRequest::VERSIONS, 12)),
    // Fetch 13+ addresses topics by id, which this broker does not implement.
    (ApiKey::Fetch, capped(FetchRequest::VERSIONS, 12)),
    (ApiKey::ListOffsets, ListOffsetsRequest::VERSIONS),
    (ApiKey::Metadata, MetadataRequest::VERSIONS),
    (ApiKey::ApiVersions, ApiVersionsRequest::VERSIONS),
    (ApiKey::CreateTopics, CreateTopicsRequest::VERSIONS),
    (ApiKey::DeleteTopics, DeleteTopicsRequest::VERSIONS),
    (ApiKey::InitProducerId, InitProducerIdRequest::VERSIONS),
    (ApiKey::DescribeConfigs, DescribeConfigsRequest::VERSIONS),
    (ApiKey::CreatePartitions, CreatePartitionsRequest::VERSIONS),
    // Consumer groups. OffsetCommit/OffsetFetch stop at 9 (10 addresses topics by id).
    (
        ApiKey::OffsetCommit,
        capped(OffsetCommitRequest::VERSIONS, 9),
    ),
    (ApiKey::OffsetFetch, capped(OffsetFetchRequest::VERSIONS, 9)),
    // Committed leader epochs are returned, so consumers validate positions (KIP-320).
    (
        ApiKey::OffsetForLeaderEpoch,
        OffsetForLeaderEpochRequest::VERSIONS,
    ),
    // FindCoordinator 5-6 add share-group and transaction-abortable semantics not served here.
    (
        ApiKey::FindCoordinator,
        capped(FindCoordinatorRequest::VERSIONS, 4),
    ),
    (ApiKey::JoinGroup, JoinGroupRequest::VERSIONS),
    (ApiKey::SyncGroup, SyncGroupRequest::VERSIONS),
    (ApiKey::Heartbeat, HeartbeatRequest::VERSIONS),
    (ApiKey::LeaveGroup, LeaveGroupRequest::VERSIONS),
    (ApiKey::DescribeGroups, DescribeGroupsRequest::VERSIONS),
    (ApiKey::ListGroups, ListGroupsRequest::VERSIONS),
    (ApiKey::DeleteGroups, DeleteGroupsRequest::VERSIONS),
    (ApiKey::OffsetDelete, OffsetDeleteRequest::VERSIONS),
    (ApiKey::DeleteRecords, DeleteRecordsRequest::VERSIONS),
    // Topic configuration.
    (ApiKey::AlterConfigs, AlterConfigsRequest::VERSIONS),
    (
        ApiKey::IncrementalAlterConfigs,
        IncrementalAlterConfigsRequest::VERSIONS,
    ),
    // Transactions. AddPartitionsToTxn 4+ is KIP-890's broker-to-coordinator batch form and
    // EndTxn 5 transaction version 2 (an epoch bump per transaction): neither is served.
    (
        ApiKey::AddPartitionsToTxn,
        capped(AddPartitionsToTxnRequest::VERSIONS, 3),
    ),
    (ApiKey::AddOffsetsToTxn, AddOffsetsToTxnRequest::VERSIONS),
    (ApiKey::EndTxn, capped(EndTxnRequest::VERSIONS, 4)),
    (ApiKey::TxnOffsetCommit, TxnOffsetCommitRequest::VERSIONS),
    (
        ApiKey::DescribeProducers,
        DescribeProducersRequest::VERSIONS,
    ),
    (
        ApiKey::DescribeTransactions,
        DescribeTransactionsRequest::VERSIONS,
    ),
    // ListTransactions 2 adds a transactional-id regex filter, not served.
    (
        ApiKey::ListTransactions,
        capped(ListTransactionsRequest::VERSIONS, 1),
    ),
    // Partition sizes on disk (`waterline topics describe`).
    (ApiKey::DescribeLogDirs, DescribeLogDirsRequest::VERSIONS),
    // Authentication. SaslHandshake v0 (raw SASL tokens without SaslAuthenticate) is not
    // served; clients use v1 when it is advertised.
    (
        ApiKey::SaslHandshake,
        VersionRange {
            min: 1,
            max: SaslHandshakeRequest::VERSIONS.max,
        },
    ),
    (ApiKey::SaslAuthenticate, SaslAuthenticateRequest::VERSIONS),
    (
        ApiKey::DescribeUserScramCredentials,
        DescribeUserScramCredentialsRequest::VERSIONS,
    ),
    (
        ApiKey::AlterUserScramCredentials,
        AlterUserScramCredentialsRequest::VERSIONS,
    ),
];

/// The versions of `key` the broker decodes, if it serves that API.
pub fn supported_versions(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The versions advertised in ApiVersions: what is decoded, except that Produce is advertised
/// from version 0 like Apache Kafka 4 does (older librdkafka matched single versions); versions
/// 0-2 are answered with UNSUPPORTED_VERSION by [`produce::legacy_unsupported`]. SaslHandshake
/// is advertised from 0 for the same reason (librdkafka before 2.11.1 requires v0 in the range
/// to offer SASL at all, then sends v1); a v0 handshake closes the connection with a log line.
pub fn advertised_versions() -> Vec<(ApiKey, VersionRange)> {
    SUPPORTED
        .iter()
        .map(|&(k, v)| match k {
            ApiKey::Produce | ApiKey::SaslHandshake => (k, VersionRange { min: 0, max: v.max }),
            _ => (k, v),
        })
        .collect()
}

/// A request's remaining work once its effect is applied: what may overlap the connection's
/// later requests. `None` means no response is sent (acks=0 produce).
pub type ResponseFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<ResponseKind>> + Send>>;

/// What applying a request in order left to do.
// Returned once per request and consumed at once: boxing the ready answer would add an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Applied {
    /// Fully handled; this is the answer (`None`: send nothing).
    Ready(Option<ResponseKind>),
    /// The effect is applied; the future waits for what may overlap later requests (an fsync,
    /// a long poll, a rebalance round) and yields the answer.
    Waiting(ResponseFuture),
}

/// Per-connection state for applying its requests in the order they were sent.
pub struct Connection {
    /// The peer as Kafka reports a member's client host (`/127.0.0.1`).
    client_host: String,
    /// Its listener, SASL exchange and principal.
    session: crate::auth::Session,
    /// The durability wait of this connection's latest OffsetCommit while it may be pending.
    /// Requests applied inline wait for it first, so they see that commit (and, the store
    /// applying commits in queue order, every earlier one).
    pending_commit: Option<futures::future::Shared<futures::future::BoxFuture<'static, ()>>>,
}

impl Connection {
    /// A connection from `peer`.
    pub fn new(peer: std::net::SocketAddr) -> Connection {
        Connection::with_session(peer, crate::auth::Session::open(peer))
    }

    /// A connection from `peer` with its authentication state.
    pub fn with_session(peer: std::net::SocketAddr, session: crate::auth::Session) -> Connection {
        Connection {
            client_host: format!("/{}", peer.ip()),
            session,
            pending_commit: None,
        }
    }

    /// Its authentication state.
    pub fn session(&self) -> &crate::auth::Session {
        &self.session
    }

    /// The host and port to advertise to this connection: its listener's, else the broker's
    /// default.
    fn advertised(&self, state: &SharedState) -> (String, i32) {
        match self.session.listener() {
            Some(l) => (l.advertised_host.clone(), l.advertised_port),
            None => (state.advertised_host.clone(), state.advertised_port),
        }
    }

    /// Waits until this connection's earlier offset commits are durable (or failed).
    async fn commits_settled(&mut self) {
        if let Some(pending) = self.pending_commit.take() {
            pending.await;
        }
    }
}

/// Applies a decoded request of `conn`. The caller applies a connection's requests one at a
/// time, in the order they were sent, and may run the [`Applied::Waiting`] futures
/// concurrently (answering in order). This is the broker's ordering invariant:
///
/// - Produce appends, OffsetCommit queues its offsets on the store (which applies them in queue
///   order), and JoinGroup/SyncGroup/Heartbeat/LeaveGroup are applied to the coordinator, all
///   before this returns; only the wait for the fsync, or for the rebalance round, overlaps.
/// - Fetch is read-only; it is started here and its long poll overlaps later requests.
/// - Every other request is handled to completion here, after the connection's earlier
///   commits are durable, so e.g. an OffsetFetch sent after an OffsetCommit sees it.
pub async fn apply(
    state: &SharedState,
    conn: &mut Connection,
    header: RequestHeader,
    request: RequestKind,
) -> Applied {
    use futures::FutureExt;
    let waiting = |f: ResponseFuture| Applied::Waiting(f);
    match request {
        RequestKind::Produce(r) => {
            let pending = produce::append(state, &header, r).await;
            return waiting(Box::pin(async move {
                pending.finish().await.map(ResponseKind::from)
            }));
        }
        RequestKind::Fetch(r) => {
            let s = state.clone();
            return waiting(Box::pin(async move {
                Some(fetch::handle(&s, &header, r).await.into())
            }));
        }
        RequestKind::OffsetCommit(r) => {
            let answer = offset_commit::handle(state, &header, r).shared();
            conn.pending_commit = Some(answer.clone().map(drop).boxed().shared());
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        RequestKind::JoinGroup(r) => {
            let answer = join_group::handle(state, &header, &conn.client_host, r);
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        RequestKind::SyncGroup(r) => {
            let answer = sync_group::handle(state, &header, r);
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        RequestKind::Heartbeat(r) => {
            let answer = heartbeat::handle(state, &header, r);
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        RequestKind::LeaveGroup(r) => {
            let answer = leave_group::handle(state, &header, r);
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        // Transaction coordinator requests are applied in order too; only the wait for the
        // state file's fsync (or a previous transaction's markers) overlaps.
        RequestKind::InitProducerId(r) if init_producer_id::is_transactional(&r) => {
            let answer = init_producer_id::transactional(state, &header, r);
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let answer = add_partitions_to_txn::handle(state, &header, r);
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let answer = add_offsets_to_txn::handle(state, &header, r);
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        RequestKind::EndTxn(r) => {
            let answer = end_txn::handle(state, &header, r);
            return waiting(Box::pin(async move { Some(answer.await.into()) }));
        }
        // The SASL exchange changes the connection's state, so it is applied here, in order.
        RequestKind::SaslHandshake(r) => {
            let resp = sasl_handshake::handle(state, &mut conn.session, &header, r);
            return Applied::Ready(Some(resp.into()));
        }
        RequestKind::SaslAuthenticate(r) => {
            return match sasl_authenticate::handle(state, &mut conn.session, &header, r) {
                Ok(resp) => Applied::Ready(Some(resp.into())),
                Err((resp, delay)) => waiting(Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    Some(resp.into())
                })),
            };
        }
        RequestKind::Metadata(r) => {
            conn.commits_settled().await;
            let mut resp = metadata::handle(state, &header, r).await;
            let (host, port) = conn.advertised(state);
            for b in &mut resp.brokers {
                b.host = sb(host.as_str());
                b.port = port;
            }
            return Applied::Ready(Some(resp.into()));
        }
        RequestKind::FindCoordinator(r) => {
            conn.commits_settled().await;
            let mut resp = find_coordinator::handle(state, &header, r).await;
            let (host, port) = conn.advertised(state);
            // Only found coordinators carry an address (errors have node -1); v4+ answers in
            // `coordinators` and must leave the top-level fields at their defaults.
            if header.request_api_version < 4 && resp.node_id.0 >= 0 {
                resp.host = sb(host.as_str());
                resp.port = port;
            }
            for c in resp.coordinators.iter_mut().filter(|c| c.node_id.0 >= 0) {
                c.host = sb(host.as_str());
                c.port = port;
            }
            return Applied::Ready(Some(resp.into()));
        }
        _ => {}
    }
    conn.commits_settled().await;
    let header = &header;
    Applied::Ready(Some(match request {
        RequestKind::ApiVersions(r) => api_versions::handle(state, header, r).await.into(),
        RequestKind::ListOffsets(r) => list_offsets::handle(state, header, r).await.into(),
        RequestKind::CreateTopics(r) => create_topics::handle(state, header, r).await.into(),
        RequestKind::DeleteTopics(r) => delete_topics::handle(state, header, r).await.into(),
        RequestKind::CreatePartitions(r) => {
            create_partitions::handle(state, header, r).await.into()
        }
        RequestKind::InitProducerId(r) => init_producer_id::handle(state, header, r).await.into(),
        RequestKind::DescribeConfigs(r) => describe_configs::handle(state, header, r).await.into(),
        RequestKind::OffsetFetch(r) => offset_fetch::handle(state, header, r).await.into(),
        RequestKind::DescribeGroups(r) => describe_groups::handle(state, header, r).await.into(),
        RequestKind::ListGroups(r) => list_groups::handle(state, header, r).await.into(),
        RequestKind::DeleteGroups(r) => delete_groups::handle(state, header, r).await.into(),
        RequestKind::OffsetDelete(r) => offset_delete::handle(state, header, r).await.into(),
        RequestKind::AlterConfigs(r) => alter_configs::handle(state, header, r).await.into(),
        RequestKind::DeleteRecords(r) => delete_records::handle(state, header, r).await.into(),
        RequestKind::DescribeLogDirs(r) => describe_log_dirs::handle(state, header, r).await.into(),
        RequestKind::IncrementalAlterConfigs(r) => {
            incremental_alter_configs::handle(state, header, r)
                .await
                .into()
        }
        RequestKind::OffsetForLeaderEpoch(r) => offset_for_leader_epoch::handle(state, header, r)
            .await
            .into(),
        RequestKind::TxnOffsetCommit(r) => txn_offset_commit::handle(state, header, r).await.into(),
        RequestKind::DescribeTransactions(r) => {
            describe_transactions::handle(state, header, r).await.into()
        }
        RequestKind::ListTransactions(r) => {
            list_transactions::handle(state, header, r).await.into()
        }
        RequestKind::DescribeProducers(r) => {
            describe_producers::handle(state, header, r).await.into()
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            describe_user_scram_credentials::handle(state, header, r)
                .await
                .into()
        }
        RequestKind::AlterUserScramCredentials(r) => {
            alter_user_scram_credentials::handle(state, header, r)
                .await
                .into()
        }
        other => {
            // decode_request only decodes APIs listed in SUPPORTED, so this is a wiring bug.
            tracing::error!(api = ?header.request_api_key, "no handler for decoded request {other:?}");
            return Applied::Ready(None);
        }
    }))
}

/// The answer to a request of a served API at a version above the one served (decoded with
/// [`crate::codec::decode_beyond_served`]): UNSUPPORTED_VERSION in that API's own schema, or
/// `None` if there is no such answer (the connection is then closed).
pub fn unsupported_version_response(request: RequestKind) -> Option<ResponseKind> {
    use kafka_protocol::ResponseError;
    let code = ResponseError::UnsupportedVersion.code();
    match request {
        RequestKind::Fetch(_) => {
            let mut r = kafka_protocol::messages::FetchResponse::default();
            r.error_code = code;
            Some(r.into())
        }
        RequestKind::Produce(req) => {
            use kafka_protocol::messages::produce_response::{
                PartitionProduceResponse, TopicProduceResponse,
            };
            if req.acks == 0 {
                return None;
            }
            let mut r = kafka_protocol::messages::ProduceResponse::default();
            for t in req.topic_data {
                let mut tr = TopicProduceResponse::default();
                tr.name = t.name;
                tr.topic_id = t.topic_id;
                for p in t.partition_data {
                    let mut pr = PartitionProduceResponse::default();
                    pr.index = p.index;
                    pr.error_code = code;
                    pr.base_offset = -1;
                    pr.log_append_time_ms = -1;
                    pr.log_start_offset = -1;
                    tr.partition_responses.push(pr);
                }
                r.responses.push(tr);
            }
            Some(r.into())
        }
        _ => None,
    }
}

/// Shorthand for building `StrBytes` from owned or borrowed text.
pub(crate) fn sb(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}

/// Looks a topic up, auto-creating it (default partition count) when `create` is set and the
/// broker allows it. Errors carry the Kafka error code to answer with.
pub(crate) async fn topic_for_use(
    state: &SharedState,
    name: &str,
    create: bool,
) -> Result<std::sync::Arc<crate::topics::Topic>, crate::topics::TopicError> {
    if let Some(t) = state.topics.get(name) {
        return Ok(t);
    }
    crate::topics::validate_topic_name(name)?;
    if !(create && state.config.auto_create_topics) {
        return Err(crate::topics::TopicError::Unknown(name.to_string()));
    }
    let s = state.clone();
    let n = name.to_string();
    let partitions = state.config.default_partitions;
    tokio::task::spawn_blocking(move || {
        s.topics
            .get_or_create(&n, partitions, crate::state::BrokerState::now_ms())
    })
    .await
    .map_err(|e| {
        crate::topics::TopicError::Storage(crate::error::BrokerError::Task(e.to_string()))
    })?
}

#[cfg(test)]
pub(crate) mod test_util {
    //! A broker state without sockets, for handler tests.
    use std::sync::Arc;

    use kafka_protocol::messages::{ApiKey, RequestHeader};

    use crate::config::BrokerConfig;
    use crate::state::SharedState;

    /// A state over a fresh temp dir (kept alive by the returned guard).
    pub fn state() -> (SharedState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        (
            {
                let state =
                    Arc::new(crate::server::build_state(config, "127.0.0.1".into(), 9092).unwrap());
                crate::transactions::Transactions::start(&state).unwrap();
                state
            },
            dir,
        )
    }

    /// A state whose partition logs live on an in-memory disk (for fsync-failure tests).
    pub fn mem_state() -> (
        SharedState,
        Arc<waterline_log::MemStorage>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let mem = Arc::new(waterline_log::MemStorage::new());
        let state =
            crate::server::build_state_with_storage(config, mem.clone(), "127.0.0.1".into(), 9092)
                .unwrap();
        (Arc::new(state), mem, dir)
    }

    /// One uncompressed v2 batch of `n` records with timestamps `ts0..`, optionally idempotent
    /// (producer id, epoch, base sequence).
    pub fn batch(n: usize, ts0: i64, idempotent: Option<(i64, i16, i32)>) -> bytes::Bytes {
        use kafka_protocol::records::{
            Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let (pid, epoch, seq) = idempotent.unwrap_or((-1, -1, -1));
        let recs: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // offset - sequence must be constant for the encoder to keep one batch.
                sequence: seq + i as i32,
                timestamp: ts0 + i as i64,
                key: None,
                value: Some(bytes::Bytes::from(format!("value {i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    /// A produce request for one partition.
    pub fn produce_req(
        topic: &str,
        partition: i32,
        records: bytes::Bytes,
        acks: i16,
    ) -> kafka_protocol::messages::ProduceRequest {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let mut p = PartitionProduceData::default();
        p.index = partition;
        p.records = Some(records);
        let mut t = TopicProduceData::default();
        t.name = kafka_protocol::messages::TopicName(crate::handlers::sb(topic));
        t.partition_data = vec![p];
        let mut r = kafka_protocol::messages::ProduceRequest::default();
        r.acks = acks;
        r.timeout_ms = 5_000;
        r.topic_data = vec![t];
        r
    }

    /// A request header for `key` at `version`.
    pub fn header(key: ApiKey, version: i16) -> RequestHeader {
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = 1;
        h
    }
}
