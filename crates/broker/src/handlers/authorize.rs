//! Authorization of every API against the ACLs, the way Kafka's `KafkaApis` does it, applied
//! around the handlers so they stay unaware of principals.
//!
//! Architecture invariant: with authorization off (no SASL listener and no mutual TLS, unless
//! `authorization = true`), [`check`] passes every request through untouched, and the ACL APIs
//! answer SECURITY_DISABLED as Kafka does without an authorizer.
//!
//! With it on, [`check`] looks at a request before its handler runs and either
//! - answers it at once ([`Outcome::Deny`]) when the whole request is refused (a group API
//!   without READ on the group answers GROUP_AUTHORIZATION_FAILED, and so on), or
//! - removes the items the principal may not touch (a produce's denied topics, a Metadata
//!   request's undescribable topics) and hands back a [`Patch`] that adds their error entries
//!   to the handler's answer (TOPIC_AUTHORIZATION_FAILED per partition) or filters the answer
//!   (Metadata, ListGroups and ListTransactions list only what may be described).
//!
//! The rules, per API (operation on resource; the error code when refused):
//! - Produce: WRITE on the transactional id if any (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for
//!   every partition); WRITE on each topic (TOPIC_AUTHORIZATION_FAILED).
//! - Fetch: READ on each topic. ListOffsets, OffsetForLeaderEpoch: DESCRIBE on each topic.
//! - Metadata: DESCRIBE on each topic (unlisted when all topics are asked for); creating a
//!   missing topic needs CREATE on the cluster or the topic.
//! - JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit: READ on the group; OffsetFetch
//!   and FindCoordinator: DESCRIBE on the group (or transactional id); OffsetCommit needs READ
//!   and OffsetFetch DESCRIBE on each topic. DescribeGroups: DESCRIBE; ListGroups: DESCRIBE on
//!   the cluster, else lists the describable groups; DeleteGroups: DELETE; OffsetDelete: DELETE
//!   on the group and READ on each topic.
//! - CreateTopics: CREATE on the cluster or the topic; DeleteTopics and DeleteRecords: DELETE;
//!   CreatePartitions: ALTER; DescribeConfigs: DESCRIBE_CONFIGS, AlterConfigs and
//!   IncrementalAlterConfigs: ALTER_CONFIGS (on the topic, or the cluster for a broker).
//! - InitProducerId: WRITE on the transactional id, or without one IDEMPOTENT_WRITE on the
//!   cluster or WRITE on some topic (CLUSTER_AUTHORIZATION_FAILED). AddPartitionsToTxn: WRITE
//!   on the transactional id and each topic; AddOffsetsToTxn: WRITE on it and READ on the
//!   group; TxnOffsetCommit: those and READ on each topic; EndTxn: WRITE on it.
//!   DescribeTransactions and ListTransactions: DESCRIBE on the id; DescribeProducers: READ on
//!   the topic.
//! - DescribeLogDirs, DescribeAcls, DescribeUserScramCredentials: DESCRIBE on the cluster;
//!   CreateAcls, DeleteAcls, AlterUserScramCredentials: ALTER on the cluster.
//! - ApiVersions, SaslHandshake, SaslAuthenticate: always.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

use crate::auth::Session;
use crate::auth::acl::{AclBinding, Authorizer, CLUSTER_NAME, Operation, ResourceType};
use crate::handlers::sb;
use crate::state::SharedState;

/// Who is asking, with the ACLs at the moment the request arrived.
#[derive(Clone)]
pub struct Access {
    acls: Arc<Vec<AclBinding>>,
    super_users: Vec<String>,
    principal: String,
    host: String,
}

impl Access {
    /// The access of `session` under the broker's current ACLs.
    pub fn of(state: &SharedState, session: &Session) -> Access {
        Access {
            acls: state.acls.snapshot(),
            super_users: state.super_users.clone(),
            principal: session.principal().to_string(),
            host: session.peer().ip().to_string(),
        }
    }

    /// Whether `op` on the resource is allowed.
    pub fn allowed(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        Authorizer {
            acls: &self.acls,
            super_users: &self.super_users,
        }
        .allowed(&self.principal, &self.host, op, rt, name)
    }

    fn topic(&self, op: Operation, name: &str) -> bool {
        self.allowed(op, ResourceType::Topic, name)
    }

    fn group(&self, op: Operation, name: &str) -> bool {
        self.allowed(op, ResourceType::Group, name)
    }

    fn txn(&self, op: Operation, name: &str) -> bool {
        self.allowed(op, ResourceType::TransactionalId, name)
    }

    fn cluster(&self, op: Operation) -> bool {
        self.allowed(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// CREATE on the cluster, or on the topic.
    fn may_create(&self, topic: &str) -> bool {
        self.cluster(Operation::Create) || self.topic(Operation::Create, topic)
    }

    fn denied(&self, api: &str, op: Operation, rt: ResourceType, name: &str) {
        tracing::info!(
            principal = %self.principal, host = %self.host, api, operation = op.name(),
            resource = %format!("{}:{name}", rt.name()), "authorization denied"
        );
    }
}

/// What to do with a request.
// Built and consumed once per request; boxing would add an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Run the (possibly narrowed) request, then apply the patch to its answer.
    Proceed(RequestKind, Patch),
    /// Answer this instead (`None`: nothing, for an acks=0 produce).
    Deny(Option<ResponseKind>),
}

/// Changes to a handler's answer: error entries for the items removed from the request, or a
/// filter of what may be listed.
pub enum Patch {
    /// Nothing to change.
    None,
    /// Denied topics of a Produce.
    Produce(Vec<kafka_protocol::messages::produce_response::TopicProduceResponse>),
    /// Denied topics of a Fetch.
    Fetch(Vec<kafka_protocol::messages::fetch_response::FetchableTopicResponse>),
    /// Denied topics of a ListOffsets.
    ListOffsets(Vec<kafka_protocol::messages::list_offsets_response::ListOffsetsTopicResponse>),
    /// Denied topics of an OffsetForLeaderEpoch.
    OffsetForLeaderEpoch(
        Vec<kafka_protocol::messages::offset_for_leader_epoch_response::OffsetForLeaderTopicResult>,
    ),
    /// Denied topics of a Metadata request; listed topics are filtered by DESCRIBE.
    Metadata(
        Vec<kafka_protocol::messages::metadata_response::MetadataResponseTopic>,
        Access,
    ),
    /// Denied topics of an OffsetCommit.
    OffsetCommit(Vec<kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic>),
    /// OffsetFetch: denied topics (v0-7), denied groups and their topics (v8+); fetched
    /// offsets of every topic are filtered by DESCRIBE.
    OffsetFetch {
        /// Denied topics of the v0-7 single group.
        topics: Vec<kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseTopic>,
        /// Denied groups (v8+).
        groups: Vec<kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup>,
        /// Denied topics per allowed group (v8+).
        group_topics: Vec<(
            String,
            Vec<kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseTopics>,
        )>,
        /// To filter "all topics" answers.
        access: Access,
    },
    /// Denied topics of a TxnOffsetCommit.
    TxnOffsetCommit(
        Vec<kafka_protocol::messages::txn_offset_commit_response::TxnOffsetCommitResponseTopic>,
    ),
    /// Denied topics of an OffsetDelete.
    OffsetDelete(Vec<kafka_protocol::messages::offset_delete_response::OffsetDeleteResponseTopic>),
    /// Denied topics of a CreateTopics.
    CreateTopics(Vec<kafka_protocol::messages::create_topics_response::CreatableTopicResult>),
    /// Denied topics of a DeleteTopics.
    DeleteTopics(Vec<kafka_protocol::messages::delete_topics_response::DeletableTopicResult>),
    /// Denied topics of a CreatePartitions.
    CreatePartitions(
        Vec<kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult>,
    ),
    /// Denied topics of a DeleteRecords.
    DeleteRecords(Vec<kafka_protocol::messages::delete_records_response::DeleteRecordsTopicResult>),
    /// Denied resources of a DescribeConfigs.
    DescribeConfigs(Vec<kafka_protocol::messages::describe_configs_response::DescribeConfigsResult>),
    /// Denied resources of an AlterConfigs.
    AlterConfigs(
        Vec<kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse>,
    ),
    /// Denied resources of an IncrementalAlterConfigs.
    IncrementalAlterConfigs(
        Vec<
            kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse,
        >,
    ),
    /// Denied groups of a DescribeGroups.
    DescribeGroups(Vec<kafka_protocol::messages::describe_groups_response::DescribedGroup>),
    /// Denied groups of a DeleteGroups.
    DeleteGroups(Vec<kafka_protocol::messages::delete_groups_response::DeletableGroupResult>),
    /// ListGroups without DESCRIBE on the cluster: list only describable groups.
    ListGroups(Access),
    /// Denied keys of a batched FindCoordinator (v4+).
    FindCoordinator(Vec<kafka_protocol::messages::find_coordinator_response::Coordinator>),
    /// Denied topics of a DescribeProducers.
    DescribeProducers(Vec<kafka_protocol::messages::describe_producers_response::TopicResponse>),
    /// Denied ids of a DescribeTransactions.
    DescribeTransactions(
        Vec<kafka_protocol::messages::describe_transactions_response::TransactionState>,
    ),
    /// ListTransactions: list only describable ids.
    ListTransactions(Access),
}

const TOPIC_DENIED: ResponseError = ResponseError::TopicAuthorizationFailed;
const GROUP_DENIED: ResponseError = ResponseError::GroupAuthorizationFailed;
const TXN_DENIED: ResponseError = ResponseError::TransactionalIdAuthorizationFailed;
const CLUSTER_DENIED: ResponseError = ResponseError::ClusterAuthorizationFailed;

/// Splits `items` into the allowed and the denied.
fn split<T>(items: Vec<T>, ok: impl Fn(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|t| ok(t))
}

/// Decides what happens to `request` from `session`.
pub fn check(
    state: &SharedState,
    session: &Session,
    header: &RequestHeader,
    request: RequestKind,
) -> Outcome {
    use Operation::*;
    use kafka_protocol::messages as m;
    if !state.authorization {
        return match request {
            RequestKind::CreateAcls(r) => Outcome::Deny(Some(create_acls_denied(
                &r,
                ResponseError::SecurityDisabled,
            ))),
            RequestKind::DeleteAcls(r) => Outcome::Deny(Some(delete_acls_denied(
                &r,
                ResponseError::SecurityDisabled,
            ))),
            RequestKind::DescribeAcls(_) => {
                let mut resp = m::DescribeAclsResponse::default();
                resp.error_code = ResponseError::SecurityDisabled.code();
                resp.error_message = Some(sb("no authorizer is configured on the broker"));
                Outcome::Deny(Some(resp.into()))
            }
            other => Outcome::Proceed(other, Patch::None),
        };
    }
    let a = Access::of(state, session);
    let version = header.request_api_version;
    let deny = |r: ResponseKind| Outcome::Deny(Some(r));
    let proceed = |r: RequestKind, p: Patch| Outcome::Proceed(r, p);
    match request {
        RequestKind::ApiVersions(_)
        | RequestKind::SaslHandshake(_)
        | RequestKind::SaslAuthenticate(_) => proceed(request, Patch::None),
        RequestKind::Produce(mut r) => {
            if let Some(id) = r.transactional_id.as_ref().filter(|t| !t.is_empty())
                && !a.txn(Write, id.as_str())
            {
                a.denied("Produce", Write, ResourceType::TransactionalId, id.as_str());
                if r.acks == 0 {
                    return Outcome::Deny(None);
                }
                let mut resp = m::ProduceResponse::default();
                resp.responses = r
                    .topic_data
                    .into_iter()
                    .map(|t| produce_denied(t, TXN_DENIED))
                    .collect();
                return deny(resp.into());
            }
            let (ok, denied) = split(r.topic_data, |t| a.topic(Write, t.name.as_str()));
            r.topic_data = ok;
            for t in &denied {
                a.denied("Produce", Write, ResourceType::Topic, t.name.as_str());
            }
            let denied = denied
                .into_iter()
                .map(|t| produce_denied(t, TOPIC_DENIED))
                .collect();
            proceed(r.into(), Patch::Produce(denied))
        }
        RequestKind::Fetch(mut r) => {
            let (ok, denied) = split(r.topics, |t| a.topic(Read, t.topic.as_str()));
            r.topics = ok;
            if r.topics.is_empty() && !denied.is_empty() && r.session_id == 0 {
                // Nothing left to wait for (no fetch session holds other partitions): answer
                // the refusals now, as Kafka does.
                r.max_wait_ms = 0;
            }
            let denied = denied
                .into_iter()
                .map(|t| {
                    a.denied("Fetch", Read, ResourceType::Topic, t.topic.as_str());
                    let mut tr = m::fetch_response::FetchableTopicResponse::default();
                    tr.topic = t.topic;
                    tr.topic_id = t.topic_id;
                    for p in t.partitions {
                        let mut pd = m::fetch_response::PartitionData::default();
                        pd.partition_index = p.partition;
                        pd.error_code = TOPIC_DENIED.code();
                        pd.high_watermark = -1;
                        pd.last_stable_offset = -1;
                        pd.log_start_offset = -1;
                        tr.partitions.push(pd);
                    }
                    tr
                })
                .collect();
            proceed(r.into(), Patch::Fetch(denied))
        }
        RequestKind::ListOffsets(mut r) => {
            let (ok, denied) = split(r.topics, |t| a.topic(Describe, t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    let mut tr = m::list_offsets_response::ListOffsetsTopicResponse::default();
                    tr.name = t.name;
                    for p in t.partitions {
                        let mut pr =
                            m::list_offsets_response::ListOffsetsPartitionResponse::default();
                        pr.partition_index = p.partition_index;
                        pr.error_code = TOPIC_DENIED.code();
                        pr.timestamp = -1;
                        pr.offset = -1;
                        pr.leader_epoch = -1;
                        tr.partitions.push(pr);
                    }
                    tr
                })
                .collect();
            proceed(r.into(), Patch::ListOffsets(denied))
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let (ok, denied) = split(r.topics, |t| a.topic(Describe, t.topic.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    let mut tr =
                        m::offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default();
                    tr.topic = t.topic;
                    for p in t.partitions {
                        let mut e = m::offset_for_leader_epoch_response::EpochEndOffset::default();
                        e.partition = p.partition;
                        e.error_code = TOPIC_DENIED.code();
                        e.leader_epoch = -1;
                        e.end_offset = -1;
                        tr.partitions.push(e);
                    }
                    tr
                })
                .collect();
            proceed(r.into(), Patch::OffsetForLeaderEpoch(denied))
        }
        RequestKind::Metadata(mut r) => {
            let may_create =
                (version < 4 || r.allow_auto_topic_creation) && state.config.auto_create_topics;
            let mut denied = Vec::new();
            if let Some(topics) = r.topics.take() {
                let (ok, no) = split(topics, |t| {
                    let Some(name) = t.name.as_ref() else {
                        // Topic ids are not served; the handler answers them.
                        return true;
                    };
                    let name = name.as_str();
                    a.topic(Describe, name)
                        && (state.topics.get(name).is_some() || !may_create || a.may_create(name))
                });
                for t in no {
                    let mut e = m::metadata_response::MetadataResponseTopic::default();
                    e.error_code = TOPIC_DENIED.code();
                    e.name = t.name;
                    e.topic_id = t.topic_id;
                    denied.push(e);
                }
                r.topics = Some(ok);
            }
            proceed(r.into(), Patch::Metadata(denied, a))
        }
        RequestKind::JoinGroup(r) => {
            if a.group(Read, r.group_id.as_str()) {
                return proceed(r.into(), Patch::None);
            }
            a.denied("JoinGroup", Read, ResourceType::Group, r.group_id.as_str());
            let mut resp = m::JoinGroupResponse::default();
            resp.error_code = GROUP_DENIED.code();
            resp.generation_id = -1;
            resp.protocol_name = if version >= 7 { None } else { Some(sb("")) };
            deny(resp.into())
        }
        RequestKind::SyncGroup(r) => {
            if a.group(Read, r.group_id.as_str()) {
                return proceed(r.into(), Patch::None);
            }
            a.denied("SyncGroup", Read, ResourceType::Group, r.group_id.as_str());
            let mut resp = m::SyncGroupResponse::default();
            resp.error_code = GROUP_DENIED.code();
            deny(resp.into())
        }
        RequestKind::Heartbeat(r) => {
            if a.group(Read, r.group_id.as_str()) {
                return proceed(r.into(), Patch::None);
            }
            let mut resp = m::HeartbeatResponse::default();
            resp.error_code = GROUP_DENIED.code();
            deny(resp.into())
        }
        RequestKind::LeaveGroup(r) => {
            if a.group(Read, r.group_id.as_str()) {
                return proceed(r.into(), Patch::None);
            }
            let mut resp = m::LeaveGroupResponse::default();
            resp.error_code = GROUP_DENIED.code();
            deny(resp.into())
        }
        RequestKind::OffsetCommit(mut r) => {
            if !a.group(Read, r.group_id.as_str()) {
                a.denied(
                    "OffsetCommit",
                    Read,
                    ResourceType::Group,
                    r.group_id.as_str(),
                );
                let mut resp = m::OffsetCommitResponse::default();
                resp.topics = r
                    .topics
                    .into_iter()
                    .map(|t| offset_commit_denied(t, GROUP_DENIED))
                    .collect();
                return deny(resp.into());
            }
            let (ok, denied) = split(r.topics, |t| a.topic(Read, t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    a.denied("OffsetCommit", Read, ResourceType::Topic, t.name.as_str());
                    offset_commit_denied(t, TOPIC_DENIED)
                })
                .collect();
            proceed(r.into(), Patch::OffsetCommit(denied))
        }
        RequestKind::OffsetFetch(mut r) => {
            if version < 8 {
                if !a.group(Describe, r.group_id.as_str()) {
                    a.denied(
                        "OffsetFetch",
                        Describe,
                        ResourceType::Group,
                        r.group_id.as_str(),
                    );
                    let mut resp = m::OffsetFetchResponse::default();
                    resp.error_code = GROUP_DENIED.code();
                    return deny(resp.into());
                }
                let mut topics = Vec::new();
                if let Some(ts) = r.topics.take() {
                    let (ok, denied) = split(ts, |t| a.topic(Describe, t.name.as_str()));
                    r.topics = Some(ok);
                    for t in denied {
                        let mut tr = m::offset_fetch_response::OffsetFetchResponseTopic::default();
                        tr.name = t.name;
                        for p in t.partition_indexes {
                            let mut pr =
                                m::offset_fetch_response::OffsetFetchResponsePartition::default();
                            pr.partition_index = p;
                            pr.committed_offset = -1;
                            pr.committed_leader_epoch = -1;
                            pr.error_code = TOPIC_DENIED.code();
                            tr.partitions.push(pr);
                        }
                        topics.push(tr);
                    }
                }
                return proceed(
                    r.into(),
                    Patch::OffsetFetch {
                        topics,
                        groups: Vec::new(),
                        group_topics: Vec::new(),
                        access: a,
                    },
                );
            }
            let (ok, denied) = split(r.groups, |g| a.group(Describe, g.group_id.as_str()));
            let groups = denied
                .into_iter()
                .map(|g| {
                    a.denied(
                        "OffsetFetch",
                        Describe,
                        ResourceType::Group,
                        g.group_id.as_str(),
                    );
                    let mut gr = m::offset_fetch_response::OffsetFetchResponseGroup::default();
                    gr.group_id = g.group_id;
                    gr.error_code = GROUP_DENIED.code();
                    gr
                })
                .collect();
            let mut group_topics = Vec::new();
            r.groups = ok
                .into_iter()
                .map(|mut g| {
                    if let Some(ts) = g.topics.take() {
                        let (ok, denied) = split(ts, |t| a.topic(Describe, t.name.as_str()));
                        g.topics = Some(ok);
                        let denied: Vec<_> = denied
                            .into_iter()
                            .map(|t| {
                                let mut tr =
                                    m::offset_fetch_response::OffsetFetchResponseTopics::default();
                                tr.name = t.name;
                                tr.topic_id = t.topic_id;
                                for p in t.partition_indexes {
                                    let mut pr = m::offset_fetch_response::OffsetFetchResponsePartitions::default();
                                    pr.partition_index = p;
                                    pr.committed_offset = -1;
                                    pr.committed_leader_epoch = -1;
                                    pr.error_code = TOPIC_DENIED.code();
                                    tr.partitions.push(pr);
                                }
                                tr
                            })
                            .collect();
                        if !denied.is_empty() {
                            group_topics.push((g.group_id.to_string(), denied));
                        }
                    }
                    g
                })
                .collect();
            proceed(
                r.into(),
                Patch::OffsetFetch {
                    topics: Vec::new(),
                    groups,
                    group_topics,
                    access: a,
                },
            )
        }
        RequestKind::FindCoordinator(mut r) => {
            // Key type 0 is a group, 1 a transactional id.
            let ok = |key_type: i8, key: &str| {
                if key_type == 1 {
                    a.txn(Describe, key)
                } else {
                    a.group(Describe, key)
                }
            };
            let (code, rt) = if r.key_type == 1 {
                (TXN_DENIED, ResourceType::TransactionalId)
            } else {
                (GROUP_DENIED, ResourceType::Group)
            };
            if version < 4 {
                if ok(r.key_type, r.key.as_str()) {
                    return proceed(r.into(), Patch::None);
                }
                a.denied("FindCoordinator", Describe, rt, r.key.as_str());
                let mut resp = m::FindCoordinatorResponse::default();
                resp.error_code = code.code();
                resp.node_id = m::BrokerId(-1);
                resp.port = -1;
                return deny(resp.into());
            }
            let key_type = r.key_type;
            let (keys, denied) = split(r.coordinator_keys, |k| ok(key_type, k.as_str()));
            r.coordinator_keys = keys;
            let denied = denied
                .into_iter()
                .map(|k| {
                    a.denied("FindCoordinator", Describe, rt, k.as_str());
                    let mut c = m::find_coordinator_response::Coordinator::default();
                    c.key = k;
                    c.node_id = m::BrokerId(-1);
                    c.port = -1;
                    c.error_code = code.code();
                    c
                })
                .collect();
            proceed(r.into(), Patch::FindCoordinator(denied))
        }
        RequestKind::DescribeGroups(mut r) => {
            let (ok, denied) = split(r.groups, |g| a.group(Describe, g.as_str()));
            r.groups = ok;
            let denied = denied
                .into_iter()
                .map(|g| {
                    let mut d = m::describe_groups_response::DescribedGroup::default();
                    d.group_id = g;
                    d.error_code = GROUP_DENIED.code();
                    d.authorized_operations = i32::MIN;
                    d
                })
                .collect();
            proceed(r.into(), Patch::DescribeGroups(denied))
        }
        RequestKind::ListGroups(r) => {
            if a.cluster(Describe) {
                proceed(r.into(), Patch::None)
            } else {
                proceed(r.into(), Patch::ListGroups(a))
            }
        }
        RequestKind::DeleteGroups(mut r) => {
            let (ok, denied) = split(r.groups_names, |g| a.group(Delete, g.as_str()));
            r.groups_names = ok;
            let denied = denied
                .into_iter()
                .map(|g| {
                    a.denied("DeleteGroups", Delete, ResourceType::Group, g.as_str());
                    let mut d = m::delete_groups_response::DeletableGroupResult::default();
                    d.group_id = g;
                    d.error_code = GROUP_DENIED.code();
                    d
                })
                .collect();
            proceed(r.into(), Patch::DeleteGroups(denied))
        }
        RequestKind::OffsetDelete(mut r) => {
            if !a.group(Delete, r.group_id.as_str()) {
                a.denied(
                    "OffsetDelete",
                    Delete,
                    ResourceType::Group,
                    r.group_id.as_str(),
                );
                let mut resp = m::OffsetDeleteResponse::default();
                resp.error_code = GROUP_DENIED.code();
                return deny(resp.into());
            }
            let (ok, denied) = split(r.topics, |t| a.topic(Read, t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    let mut tr = m::offset_delete_response::OffsetDeleteResponseTopic::default();
                    tr.name = t.name;
                    for p in t.partitions {
                        let mut pr =
                            m::offset_delete_response::OffsetDeleteResponsePartition::default();
                        pr.partition_index = p.partition_index;
                        pr.error_code = TOPIC_DENIED.code();
                        tr.partitions.push(pr);
                    }
                    tr
                })
                .collect();
            proceed(r.into(), Patch::OffsetDelete(denied))
        }
        RequestKind::CreateTopics(mut r) => {
            let (ok, denied) = split(r.topics, |t| a.may_create(t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    a.denied("CreateTopics", Create, ResourceType::Topic, t.name.as_str());
                    let mut tr = m::create_topics_response::CreatableTopicResult::default();
                    tr.name = t.name;
                    tr.error_code = TOPIC_DENIED.code();
                    tr.error_message = Some(sb("Authorization failed."));
                    tr.num_partitions = -1;
                    tr.replication_factor = -1;
                    tr
                })
                .collect();
            proceed(r.into(), Patch::CreateTopics(denied))
        }
        RequestKind::DeleteTopics(mut r) => {
            // Topics named by id cannot be checked (ids are not served): refused.
            let ok =
                |name: Option<&m::TopicName>| name.is_some_and(|n| a.topic(Delete, n.as_str()));
            let (topics, denied_states) = split(r.topics, |t| ok(t.name.as_ref()));
            let (names, denied_names) = split(r.topic_names, |n| ok(Some(n)));
            r.topics = topics;
            r.topic_names = names;
            let denied = denied_states
                .into_iter()
                .map(|t| (t.name, t.topic_id))
                .chain(
                    denied_names
                        .into_iter()
                        .map(|n| (Some(n), Default::default())),
                )
                .map(|(name, id)| {
                    let mut d = m::delete_topics_response::DeletableTopicResult::default();
                    d.name = name;
                    d.topic_id = id;
                    d.error_code = TOPIC_DENIED.code();
                    d
                })
                .collect();
            proceed(r.into(), Patch::DeleteTopics(denied))
        }
        RequestKind::CreatePartitions(mut r) => {
            let (ok, denied) = split(r.topics, |t| a.topic(Alter, t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    let mut d =
                        m::create_partitions_response::CreatePartitionsTopicResult::default();
                    d.name = t.name;
                    d.error_code = TOPIC_DENIED.code();
                    d
                })
                .collect();
            proceed(r.into(), Patch::CreatePartitions(denied))
        }
        RequestKind::DeleteRecords(mut r) => {
            let (ok, denied) = split(r.topics, |t| a.topic(Delete, t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    let mut tr = m::delete_records_response::DeleteRecordsTopicResult::default();
                    tr.name = t.name;
                    for p in t.partitions {
                        let mut pr =
                            m::delete_records_response::DeleteRecordsPartitionResult::default();
                        pr.partition_index = p.partition_index;
                        pr.low_watermark = -1;
                        pr.error_code = TOPIC_DENIED.code();
                        tr.partitions.push(pr);
                    }
                    tr
                })
                .collect();
            proceed(r.into(), Patch::DeleteRecords(denied))
        }
        RequestKind::DescribeConfigs(mut r) => {
            let (ok, denied) = split(r.resources, |res| {
                config_allowed(
                    &a,
                    DescribeConfigs,
                    res.resource_type,
                    res.resource_name.as_str(),
                )
            });
            r.resources = ok;
            let denied = denied
                .into_iter()
                .map(|res| {
                    let mut d = m::describe_configs_response::DescribeConfigsResult::default();
                    d.error_code = config_denied_code(res.resource_type).code();
                    d.resource_type = res.resource_type;
                    d.resource_name = res.resource_name;
                    d
                })
                .collect();
            proceed(r.into(), Patch::DescribeConfigs(denied))
        }
        RequestKind::AlterConfigs(mut r) => {
            let (ok, denied) = split(r.resources, |res| {
                config_allowed(
                    &a,
                    AlterConfigs,
                    res.resource_type,
                    res.resource_name.as_str(),
                )
            });
            r.resources = ok;
            let denied = denied
                .into_iter()
                .map(|res| {
                    let mut d = m::alter_configs_response::AlterConfigsResourceResponse::default();
                    d.error_code = config_denied_code(res.resource_type).code();
                    d.resource_type = res.resource_type;
                    d.resource_name = res.resource_name;
                    d
                })
                .collect();
            proceed(r.into(), Patch::AlterConfigs(denied))
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let (ok, denied) = split(r.resources, |res| {
                config_allowed(
                    &a,
                    AlterConfigs,
                    res.resource_type,
                    res.resource_name.as_str(),
                )
            });
            r.resources = ok;
            let denied = denied
                .into_iter()
                .map(|res| {
                    let mut d = m::incremental_alter_configs_response::AlterConfigsResourceResponse::default();
                    d.error_code = config_denied_code(res.resource_type).code();
                    d.resource_type = res.resource_type;
                    d.resource_name = res.resource_name;
                    d
                })
                .collect();
            proceed(r.into(), Patch::IncrementalAlterConfigs(denied))
        }
        RequestKind::InitProducerId(r) => {
            let allowed = match r.transactional_id.as_ref().filter(|t| !t.is_empty()) {
                Some(id) => a.txn(Write, id.as_str()),
                None => {
                    a.cluster(IdempotentWrite)
                        || Authorizer {
                            acls: &a.acls,
                            super_users: &a.super_users,
                        }
                        .allowed_any(
                            &a.principal,
                            &a.host,
                            Write,
                            ResourceType::Topic,
                        )
                }
            };
            if allowed {
                return proceed(r.into(), Patch::None);
            }
            match r.transactional_id.as_ref().filter(|t| !t.is_empty()) {
                Some(id) => a.denied(
                    "InitProducerId",
                    Write,
                    ResourceType::TransactionalId,
                    id.as_str(),
                ),
                None => a.denied(
                    "InitProducerId",
                    IdempotentWrite,
                    ResourceType::Cluster,
                    CLUSTER_NAME,
                ),
            }
            let mut resp = m::InitProducerIdResponse::default();
            resp.error_code = if r.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
                TXN_DENIED.code()
            } else {
                CLUSTER_DENIED.code()
            };
            resp.producer_id = m::ProducerId(-1);
            resp.producer_epoch = -1;
            deny(resp.into())
        }
        RequestKind::AddPartitionsToTxn(r) => {
            let id_ok = a.txn(Write, r.v3_and_below_transactional_id.as_str());
            let all_topics_ok = r
                .v3_and_below_topics
                .iter()
                .all(|t| a.topic(Write, t.name.as_str()));
            if id_ok && all_topics_ok {
                return proceed(r.into(), Patch::None);
            }
            // As Kafka: nothing is added; refused topics get the authorization error and the
            // rest OPERATION_NOT_ATTEMPTED.
            let mut resp = m::AddPartitionsToTxnResponse::default();
            for t in r.v3_and_below_topics {
                let code = if !id_ok {
                    TXN_DENIED
                } else if a.topic(Write, t.name.as_str()) {
                    ResponseError::OperationNotAttempted
                } else {
                    TOPIC_DENIED
                };
                let mut tr =
                    m::add_partitions_to_txn_response::AddPartitionsToTxnTopicResult::default();
                tr.name = t.name;
                for p in t.partitions {
                    let mut pr =
                        m::add_partitions_to_txn_response::AddPartitionsToTxnPartitionResult::default();
                    pr.partition_index = p;
                    pr.partition_error_code = code.code();
                    tr.results_by_partition.push(pr);
                }
                resp.results_by_topic_v3_and_below.push(tr);
            }
            deny(resp.into())
        }
        RequestKind::AddOffsetsToTxn(r) => {
            let code = if !a.txn(Write, r.transactional_id.as_str()) {
                TXN_DENIED
            } else if !a.group(Read, r.group_id.as_str()) {
                GROUP_DENIED
            } else {
                return proceed(r.into(), Patch::None);
            };
            let mut resp = m::AddOffsetsToTxnResponse::default();
            resp.error_code = code.code();
            deny(resp.into())
        }
        RequestKind::EndTxn(r) => {
            if a.txn(Write, r.transactional_id.as_str()) {
                return proceed(r.into(), Patch::None);
            }
            a.denied(
                "EndTxn",
                Write,
                ResourceType::TransactionalId,
                r.transactional_id.as_str(),
            );
            let mut resp = m::EndTxnResponse::default();
            resp.error_code = TXN_DENIED.code();
            resp.producer_id = m::ProducerId(-1);
            resp.producer_epoch = -1;
            deny(resp.into())
        }
        RequestKind::TxnOffsetCommit(mut r) => {
            let whole = if !a.txn(Write, r.transactional_id.as_str()) {
                Some(TXN_DENIED)
            } else if !a.group(Read, r.group_id.as_str()) {
                Some(GROUP_DENIED)
            } else {
                None
            };
            if let Some(code) = whole {
                let mut resp = m::TxnOffsetCommitResponse::default();
                resp.topics = r
                    .topics
                    .into_iter()
                    .map(|t| txn_offset_commit_denied(t, code))
                    .collect();
                return deny(resp.into());
            }
            let (ok, denied) = split(r.topics, |t| a.topic(Read, t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| txn_offset_commit_denied(t, TOPIC_DENIED))
                .collect();
            proceed(r.into(), Patch::TxnOffsetCommit(denied))
        }
        RequestKind::DescribeProducers(mut r) => {
            let (ok, denied) = split(r.topics, |t| a.topic(Read, t.name.as_str()));
            r.topics = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    let mut tr = m::describe_producers_response::TopicResponse::default();
                    tr.name = t.name;
                    for p in t.partition_indexes {
                        let mut pr = m::describe_producers_response::PartitionResponse::default();
                        pr.partition_index = p;
                        pr.error_code = TOPIC_DENIED.code();
                        tr.partitions.push(pr);
                    }
                    tr
                })
                .collect();
            proceed(r.into(), Patch::DescribeProducers(denied))
        }
        RequestKind::DescribeTransactions(mut r) => {
            let (ok, denied) = split(r.transactional_ids, |t| a.txn(Describe, t.as_str()));
            r.transactional_ids = ok;
            let denied = denied
                .into_iter()
                .map(|t| {
                    let mut s = m::describe_transactions_response::TransactionState::default();
                    s.transactional_id = t;
                    s.error_code = TXN_DENIED.code();
                    s
                })
                .collect();
            proceed(r.into(), Patch::DescribeTransactions(denied))
        }
        RequestKind::ListTransactions(r) => proceed(r.into(), Patch::ListTransactions(a)),
        RequestKind::DescribeLogDirs(r) => {
            if a.cluster(Describe) {
                return proceed(r.into(), Patch::None);
            }
            let mut resp = m::DescribeLogDirsResponse::default();
            resp.error_code = CLUSTER_DENIED.code();
            deny(resp.into())
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            if a.cluster(Describe) {
                return proceed(r.into(), Patch::None);
            }
            a.denied(
                "DescribeUserScramCredentials",
                Describe,
                ResourceType::Cluster,
                CLUSTER_NAME,
            );
            let mut resp = m::DescribeUserScramCredentialsResponse::default();
            resp.error_message = None;
            // Named users get the refusal per user and none at the top: librdkafka 2.16 frees
            // an invalid pointer (the process aborts) on a top-level error when users were
            // named. "All users" has nobody to answer for, so it is refused at the top.
            if r.users.as_ref().is_none_or(|u| u.is_empty()) {
                resp.error_code = CLUSTER_DENIED.code();
                resp.error_message = Some(sb("Authorization failed."));
            }
            for u in r.users.iter().flatten() {
                let mut res = m::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult::default();
                res.user = u.name.clone();
                res.error_code = CLUSTER_DENIED.code();
                res.error_message = Some(sb("Authorization failed."));
                resp.results.push(res);
            }
            deny(resp.into())
        }
        RequestKind::AlterUserScramCredentials(r) => {
            if a.cluster(Alter) {
                return proceed(r.into(), Patch::None);
            }
            a.denied(
                "AlterUserScramCredentials",
                Alter,
                ResourceType::Cluster,
                CLUSTER_NAME,
            );
            let mut resp = m::AlterUserScramCredentialsResponse::default();
            let users = r
                .deletions
                .iter()
                .map(|d| &d.name)
                .chain(r.upsertions.iter().map(|u| &u.name));
            for u in users {
                if resp.results.iter().any(|x| &x.user == u) {
                    continue;
                }
                let mut res = m::alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default();
                res.user = u.clone();
                res.error_code = CLUSTER_DENIED.code();
                res.error_message = Some(sb("Authorization failed."));
                resp.results.push(res);
            }
            deny(resp.into())
        }
        RequestKind::DescribeAcls(r) => {
            if a.cluster(Describe) {
                return proceed(r.into(), Patch::None);
            }
            a.denied(
                "DescribeAcls",
                Describe,
                ResourceType::Cluster,
                CLUSTER_NAME,
            );
            let mut resp = m::DescribeAclsResponse::default();
            resp.error_code = CLUSTER_DENIED.code();
            resp.error_message = Some(sb("Authorization failed."));
            deny(resp.into())
        }
        RequestKind::CreateAcls(r) => {
            if a.cluster(Alter) {
                return proceed(r.into(), Patch::None);
            }
            a.denied("CreateAcls", Alter, ResourceType::Cluster, CLUSTER_NAME);
            deny(create_acls_denied(&r, CLUSTER_DENIED))
        }
        RequestKind::DeleteAcls(r) => {
            if a.cluster(Alter) {
                return proceed(r.into(), Patch::None);
            }
            a.denied("DeleteAcls", Alter, ResourceType::Cluster, CLUSTER_NAME);
            deny(delete_acls_denied(&r, CLUSTER_DENIED))
        }
        // Anything else is not served (decode refuses it); refuse rather than guess.
        other => {
            tracing::warn!(api = ?header.request_api_key, "no authorization rule; refused");
            let _ = other;
            Outcome::Deny(None)
        }
    }
}

/// DescribeConfigs/AlterConfigs: topic resources (2) need `op` on the topic, broker resources
/// (4) and broker loggers (8) on the cluster; other types are left to the handler's error.
fn config_allowed(a: &Access, op: Operation, resource_type: i8, name: &str) -> bool {
    match resource_type {
        2 => a.topic(op, name),
        4 | 8 => a.cluster(op),
        _ => true,
    }
}

fn config_denied_code(resource_type: i8) -> ResponseError {
    if resource_type == 2 {
        TOPIC_DENIED
    } else {
        CLUSTER_DENIED
    }
}

fn produce_denied(
    t: kafka_protocol::messages::produce_request::TopicProduceData,
    code: ResponseError,
) -> kafka_protocol::messages::produce_response::TopicProduceResponse {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    let mut tr = TopicProduceResponse::default();
    tr.name = t.name;
    tr.topic_id = t.topic_id;
    for p in t.partition_data {
        let mut pr = PartitionProduceResponse::default();
        pr.index = p.index;
        pr.error_code = code.code();
        pr.base_offset = -1;
        pr.log_append_time_ms = -1;
        pr.log_start_offset = -1;
        tr.partition_responses.push(pr);
    }
    tr
}

fn offset_commit_denied(
    t: kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic,
    code: ResponseError,
) -> kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic {
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    let mut tr = OffsetCommitResponseTopic::default();
    tr.name = t.name;
    tr.topic_id = t.topic_id;
    for p in t.partitions {
        let mut pr = OffsetCommitResponsePartition::default();
        pr.partition_index = p.partition_index;
        pr.error_code = code.code();
        tr.partitions.push(pr);
    }
    tr
}

fn txn_offset_commit_denied(
    t: kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic,
    code: ResponseError,
) -> kafka_protocol::messages::txn_offset_commit_response::TxnOffsetCommitResponseTopic {
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    let mut tr = TxnOffsetCommitResponseTopic::default();
    tr.name = t.name;
    for p in t.partitions {
        let mut pr = TxnOffsetCommitResponsePartition::default();
        pr.partition_index = p.partition_index;
        pr.error_code = code.code();
        tr.partitions.push(pr);
    }
    tr
}

fn create_acls_denied(
    r: &kafka_protocol::messages::CreateAclsRequest,
    code: ResponseError,
) -> ResponseKind {
    let mut resp = kafka_protocol::messages::CreateAclsResponse::default();
    for _ in &r.creations {
        let mut res = kafka_protocol::messages::create_acls_response::AclCreationResult::default();
        res.error_code = code.code();
        res.error_message = Some(sb(refusal(code)));
        resp.results.push(res);
    }
    resp.into()
}

fn delete_acls_denied(
    r: &kafka_protocol::messages::DeleteAclsRequest,
    code: ResponseError,
) -> ResponseKind {
    let mut resp = kafka_protocol::messages::DeleteAclsResponse::default();
    for _ in &r.filters {
        let mut res =
            kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult::default();
        res.error_code = code.code();
        res.error_message = Some(sb(refusal(code)));
        resp.filter_results.push(res);
    }
    resp.into()
}

fn refusal(code: ResponseError) -> &'static str {
    if code == ResponseError::SecurityDisabled {
        "no authorizer is configured on the broker"
    } else {
        "Authorization failed."
    }
}

impl Patch {
    /// Applies the patch to the handler's answer.
    pub fn apply(self, resp: ResponseKind) -> ResponseKind {
        use Operation::Describe;
        match (self, resp) {
            (Patch::None, r) => r,
            (Patch::Produce(d), ResponseKind::Produce(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::Fetch(d), ResponseKind::Fetch(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::ListOffsets(d), ResponseKind::ListOffsets(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::OffsetForLeaderEpoch(d), ResponseKind::OffsetForLeaderEpoch(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::Metadata(d, a), ResponseKind::Metadata(mut r)) => {
                r.topics.retain(|t| {
                    t.name
                        .as_ref()
                        .is_none_or(|n| a.topic(Describe, n.as_str()))
                });
                r.topics.extend(d);
                r.into()
            }
            (Patch::OffsetCommit(d), ResponseKind::OffsetCommit(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (
                Patch::OffsetFetch {
                    topics,
                    groups,
                    group_topics,
                    access,
                },
                ResponseKind::OffsetFetch(mut r),
            ) => {
                // "All topics" answers list only describable topics, as in Kafka.
                r.topics.retain(|t| access.topic(Describe, t.name.as_str()));
                r.topics.extend(topics);
                for g in &mut r.groups {
                    g.topics.retain(|t| access.topic(Describe, t.name.as_str()));
                    if let Some((_, d)) = group_topics
                        .iter()
                        .find(|(id, _)| id.as_str() == g.group_id.as_str())
                    {
                        g.topics.extend(d.iter().cloned());
                    }
                }
                r.groups.extend(groups);
                r.into()
            }
            (Patch::TxnOffsetCommit(d), ResponseKind::TxnOffsetCommit(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::OffsetDelete(d), ResponseKind::OffsetDelete(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::CreateTopics(d), ResponseKind::CreateTopics(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::DeleteTopics(d), ResponseKind::DeleteTopics(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::CreatePartitions(d), ResponseKind::CreatePartitions(mut r)) => {
                r.results.extend(d);
                r.into()
            }
            (Patch::DeleteRecords(d), ResponseKind::DeleteRecords(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::DescribeConfigs(d), ResponseKind::DescribeConfigs(mut r)) => {
                r.results.extend(d);
                r.into()
            }
            (Patch::AlterConfigs(d), ResponseKind::AlterConfigs(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::IncrementalAlterConfigs(d), ResponseKind::IncrementalAlterConfigs(mut r)) => {
                r.responses.extend(d);
                r.into()
            }
            (Patch::DescribeGroups(d), ResponseKind::DescribeGroups(mut r)) => {
                r.groups.extend(d);
                r.into()
            }
            (Patch::DeleteGroups(d), ResponseKind::DeleteGroups(mut r)) => {
                r.results.extend(d);
                r.into()
            }
            (Patch::ListGroups(a), ResponseKind::ListGroups(mut r)) => {
                r.groups.retain(|g| a.group(Describe, g.group_id.as_str()));
                r.into()
            }
            (Patch::FindCoordinator(d), ResponseKind::FindCoordinator(mut r)) => {
                r.coordinators.extend(d);
                r.into()
            }
            (Patch::DescribeProducers(d), ResponseKind::DescribeProducers(mut r)) => {
                r.topics.extend(d);
                r.into()
            }
            (Patch::DescribeTransactions(d), ResponseKind::DescribeTransactions(mut r)) => {
                r.transaction_states.extend(d);
                r.into()
            }
            (Patch::ListTransactions(a), ResponseKind::ListTransactions(mut r)) => {
                r.transaction_states
                    .retain(|t| a.txn(Describe, t.transactional_id.as_str()));
                r.into()
            }
            // A patch for another API than the answer's is a wiring bug; the answer stands.
            (_, r) => r,
        }
    }
}
