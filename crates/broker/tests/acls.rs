//! CreateAcls, DescribeAcls and DeleteAcls over TCP, and what the ACLs then allow.
//!
//! On a PLAINTEXT listener every connection is `User:ANONYMOUS`; with `authorization = true`
//! that principal is governed by the ACLs like any other. The tests first manage ACLs as a super
//! user (ANONYMOUS listed in `super_users`), then restart the broker on the same data dir
//! without it, so the ACLs written before (durably) decide.

mod common;

use common::{Client, batch, produce_req, records};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, CreateTopicsRequest, DeleteAclsRequest,
    DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse, MetadataRequest,
    MetadataResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;
use waterline_broker::{Broker, BrokerConfig, RunningBroker};

const ANON: &str = "User:ANONYMOUS";
// Kafka's wire codes.
const TOPIC: i8 = 2;
const CLUSTER: i8 = 4;
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DESCRIBE: i8 = 8;
const ALL: i8 = 2;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

async fn start(
    dir: &std::path::Path,
    authorization: Option<bool>,
    super_anon: bool,
) -> RunningBroker {
    let config = BrokerConfig {
        authorization,
        super_users: if super_anon {
            vec![ANON.into()]
        } else {
            vec![]
        },
        ..common::config(dir)
    };
    Broker::start(config).await.unwrap()
}

fn creation(rt: i8, name: &str, pt: i8, principal: &str, op: i8, perm: i8) -> AclCreation {
    let mut c = AclCreation::default();
    c.resource_type = rt;
    c.resource_name = s(name);
    c.resource_pattern_type = pt;
    c.principal = s(principal);
    c.host = s("*");
    c.operation = op;
    c.permission_type = perm;
    c
}

fn filter(rt: i8, name: Option<&str>, pt: i8) -> DeleteAclsFilter {
    let mut f = DeleteAclsFilter::default();
    f.resource_type_filter = rt;
    f.resource_name_filter = name.map(s);
    f.pattern_type_filter = pt;
    // kafka-protocol's defaults for nullable strings are empty strings, not null.
    f.principal_filter = None;
    f.host_filter = None;
    f.operation = ANY;
    f.permission_type = ANY;
    f
}

async fn describe(c: &mut Client, rt: i8, name: Option<&str>, pt: i8) -> DescribeAclsResponse {
    let mut r = DescribeAclsRequest::default();
    r.resource_type_filter = rt;
    r.resource_name_filter = name.map(s);
    r.pattern_type_filter = pt;
    r.principal_filter = None;
    r.host_filter = None;
    r.operation = ANY;
    r.permission_type = ANY;
    c.call(ApiKey::DescribeAcls, 3, &r).await
}

fn count(r: &DescribeAclsResponse) -> usize {
    r.resources.iter().map(|res| res.acls.len()).sum()
}

async fn metadata(c: &mut Client, topics: Option<&[&str]>) -> MetadataResponse {
    let mut r = MetadataRequest::default();
    r.topics = topics.map(|ts| {
        ts.iter()
            .map(|t| {
                let mut m = MetadataRequestTopic::default();
                m.name = Some(TopicName(s(t)));
                m
            })
            .collect()
    });
    r.allow_auto_topic_creation = true;
    c.call(ApiKey::Metadata, 12, &r).await
}

async fn produce_code(c: &mut Client, topic: &str) -> i16 {
    let b = batch(&records(1, 1_000), Compression::None);
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_req(topic, 0, b, -1))
        .await;
    r.responses[0].partition_responses[0].error_code
}

#[tokio::test]
async fn acls_are_managed_durably_and_decide_access() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path(), Some(true), true).await;
    let mut c = Client::connect(broker.local_addr()).await;
    // Topics to test against, created by the super user.
    let mut ct = CreateTopicsRequest::default();
    for name in ["pay-in", "pay-secret", "other"] {
        let mut t = kafka_protocol::messages::create_topics_request::CreatableTopic::default();
        t.name = TopicName(s(name));
        t.num_partitions = 1;
        t.replication_factor = 1;
        ct.topics.push(t);
    }
    let _: kafka_protocol::messages::CreateTopicsResponse =
        c.call(ApiKey::CreateTopics, 5, &ct).await;

    let mut req = CreateAclsRequest::default();
    req.creations = vec![
        creation(TOPIC, "pay-", PREFIXED, ANON, WRITE, ALLOW),
        creation(TOPIC, "pay-secret", LITERAL, ANON, ALL, DENY),
        creation(
            CLUSTER,
            "kafka-cluster",
            LITERAL,
            "User:ops",
            DESCRIBE,
            ALLOW,
        ),
        // Invalid: a prefix pattern needs a name; MATCH is a filter only.
        creation(TOPIC, "", PREFIXED, ANON, WRITE, ALLOW),
        creation(TOPIC, "t", MATCH, ANON, WRITE, ALLOW),
    ];
    let resp: CreateAclsResponse = c.call(ApiKey::CreateAcls, 3, &req).await;
    let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
    let bad = ResponseError::InvalidRequest.code();
    assert_eq!(codes, vec![0, 0, 0, bad, bad]);

    // Filters: ANY by exact name, MATCH by the resource a request would touch.
    let all = describe(&mut c, ANY, None, ANY).await;
    assert_eq!(count(&all), 3, "{all:?}");
    assert_eq!(count(&describe(&mut c, TOPIC, Some("pay-"), ANY).await), 1);
    assert_eq!(
        count(&describe(&mut c, TOPIC, Some("pay-secret"), MATCH).await),
        2
    );
    assert_eq!(count(&describe(&mut c, ANY, None, PREFIXED).await), 1);
    let d = describe(&mut c, TOPIC, Some("pay-in"), MATCH).await;
    assert_eq!(d.resources[0].resource_name.as_str(), "pay-");
    assert_eq!(d.resources[0].pattern_type, PREFIXED);

    // Delete the cluster ACL; the filter result lists it.
    let mut del = DeleteAclsRequest::default();
    del.filters = vec![filter(CLUSTER, None, ANY), filter(0, None, ANY)];
    let resp: DeleteAclsResponse = c.call(ApiKey::DeleteAcls, 3, &del).await;
    assert_eq!(resp.filter_results[0].error_code, 0);
    assert_eq!(resp.filter_results[0].matching_acls.len(), 1);
    assert_eq!(
        resp.filter_results[0].matching_acls[0].principal.as_str(),
        "User:ops"
    );
    assert_eq!(
        resp.filter_results[1].error_code,
        ResponseError::InvalidRequest.code()
    );
    assert_eq!(count(&describe(&mut c, ANY, None, ANY).await), 2);
    drop(c);
    broker.shutdown().await.unwrap();

    // The same data dir without ANONYMOUS as a super user: the ACLs decide.
    let broker = start(dir.path(), Some(true), false).await;
    let mut c = Client::connect(broker.local_addr()).await;
    assert_eq!(produce_code(&mut c, "pay-in").await, 0);
    let denied = ResponseError::TopicAuthorizationFailed.code();
    assert_eq!(produce_code(&mut c, "pay-secret").await, denied);
    assert_eq!(produce_code(&mut c, "other").await, denied);
    // Metadata lists the describable topics only (WRITE implies DESCRIBE; DENY ALL wins).
    let md = metadata(&mut c, None).await;
    let names: Vec<&str> = md
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(names, vec!["pay-in"]);
    // Named topics: an undescribable one, and a missing one without CREATE, are refused.
    let md = metadata(&mut c, Some(&["other", "pay-new"])).await;
    assert!(md.topics.iter().all(|t| t.error_code == denied), "{md:?}");
    // Managing ACLs needs ALTER / DESCRIBE on the cluster.
    let mut req = CreateAclsRequest::default();
    req.creations = vec![creation(TOPIC, "*", LITERAL, ANON, ALL, ALLOW)];
    let resp: CreateAclsResponse = c.call(ApiKey::CreateAcls, 3, &req).await;
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    assert_eq!(
        describe(&mut c, ANY, None, ANY).await.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    drop(c);
    broker.shutdown().await.unwrap();

    // CREATE on the cluster lets Metadata auto-create a describable topic.
    std::fs::write(
        dir.path().join("acls"),
        waterline_broker::auth::acls::encode(
            [
                waterline_broker::auth::acl::AclBinding::from_wire(
                    CLUSTER,
                    "kafka-cluster",
                    LITERAL,
                    ANON,
                    "*",
                    CREATE,
                    ALLOW,
                )
                .unwrap(),
                waterline_broker::auth::acl::AclBinding::from_wire(
                    TOPIC, "pay-", PREFIXED, ANON, "*", WRITE, ALLOW,
                )
                .unwrap(),
            ]
            .iter(),
        ),
    )
    .unwrap();
    let broker = start(dir.path(), Some(true), false).await;
    let mut c = Client::connect(broker.local_addr()).await;
    let md = metadata(&mut c, Some(&["pay-new"])).await;
    assert_eq!(md.topics[0].error_code, 0, "{md:?}");
    drop(c);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_authentication_nothing_is_authorized_and_acl_apis_say_so() {
    let dir = tempfile::tempdir().unwrap();
    // PLAINTEXT only, authorization left to its default: off.
    let broker = start(dir.path(), None, false).await;
    let mut c = Client::connect(broker.local_addr()).await;
    assert_eq!(produce_code(&mut c, "anything").await, 0);
    assert_eq!(
        describe(&mut c, ANY, None, ANY).await.error_code,
        ResponseError::SecurityDisabled.code()
    );
    let mut req = CreateAclsRequest::default();
    req.creations = vec![creation(TOPIC, "t", LITERAL, ANON, WRITE, DENY)];
    let resp: CreateAclsResponse = c.call(ApiKey::CreateAcls, 3, &req).await;
    assert_eq!(
        resp.results[0].error_code,
        ResponseError::SecurityDisabled.code()
    );
    assert!(!dir.path().join("acls").exists());
    drop(c);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn group_transaction_config_and_user_apis_answer_their_authorization_errors() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::*;
    use waterline_broker::auth::acl::AclBinding;
    const GROUP: i8 = 3;
    const READ: i8 = 3;
    let dir = tempfile::tempdir().unwrap();
    // ANONYMOUS may write `pay-*` topics and read `ok-*` groups; nothing else.
    let acls = [
        AclBinding::from_wire(TOPIC, "pay-", PREFIXED, ANON, "*", WRITE, ALLOW).unwrap(),
        AclBinding::from_wire(GROUP, "ok-", PREFIXED, ANON, "*", READ, ALLOW).unwrap(),
    ];
    std::fs::write(
        dir.path().join("acls"),
        waterline_broker::auth::acls::encode(acls.iter()),
    )
    .unwrap();
    let broker = start(dir.path(), Some(true), false).await;
    let mut c = Client::connect(broker.local_addr()).await;
    let group_denied = ResponseError::GroupAuthorizationFailed.code();
    let topic_denied = ResponseError::TopicAuthorizationFailed.code();

    let mut jg = JoinGroupRequest::default();
    jg.group_id = GroupId(s("g"));
    jg.session_timeout_ms = 10_000;
    jg.rebalance_timeout_ms = 10_000;
    jg.protocol_type = s("consumer");
    let r: JoinGroupResponse = c.call(ApiKey::JoinGroup, 5, &jg).await;
    assert_eq!(r.error_code, group_denied);

    let mut fc = FindCoordinatorRequest::default();
    fc.key = s("g");
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 3, &fc).await;
    assert_eq!(r.error_code, group_denied);
    let mut fc = FindCoordinatorRequest::default();
    fc.coordinator_keys = vec![s("g"), s("ok-g")];
    let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &fc).await;
    let mut codes: Vec<(String, i16)> = r
        .coordinators
        .iter()
        .map(|k| (k.key.to_string(), k.error_code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![("g".to_string(), group_denied), ("ok-g".to_string(), 0)]
    );

    // Idempotent producers need IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
    let mut ip = InitProducerIdRequest::default();
    ip.transactional_id = None;
    ip.transaction_timeout_ms = 60_000;
    let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &ip).await;
    assert_eq!(r.error_code, 0);
    ip.transactional_id = Some(TransactionalId(s("tx")));
    let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, 4, &ip).await;
    assert_eq!(
        r.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );

    // OffsetCommit: the group first, then READ on each topic (WRITE does not imply READ).
    let commit = |group: &str| {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = 0;
        p.committed_offset = 1;
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(s("pay-in"));
        t.partitions = vec![p];
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(s(group));
        r.generation_id_or_member_epoch = -1;
        r.topics = vec![t];
        r
    };
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &commit("g")).await;
    assert_eq!(r.topics[0].partitions[0].error_code, group_denied);
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &commit("ok-g")).await;
    assert_eq!(r.topics[0].partitions[0].error_code, topic_denied);

    // DescribeConfigs: a topic without DESCRIBE_CONFIGS, and the broker (the cluster).
    let mut dc = DescribeConfigsRequest::default();
    for (rt, name) in [(2i8, "pay-in"), (4, "0")] {
        let mut res =
            kafka_protocol::messages::describe_configs_request::DescribeConfigsResource::default();
        res.resource_type = rt;
        res.resource_name = s(name);
        res.configuration_keys = None;
        dc.resources.push(res);
    }
    let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, 4, &dc).await;
    let mut codes: Vec<(i8, i16)> = r
        .results
        .iter()
        .map(|x| (x.resource_type, x.error_code))
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        vec![
            (2, topic_denied),
            (4, ResponseError::ClusterAuthorizationFailed.code())
        ]
    );

    // Users are managed with ALTER on the cluster.
    let mut au = AlterUserScramCredentialsRequest::default();
    let mut d =
        kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialDeletion::default();
    d.name = s("bob");
    d.mechanism = 1;
    au.deletions = vec![d];
    let r: AlterUserScramCredentialsResponse =
        c.call(ApiKey::AlterUserScramCredentials, 0, &au).await;
    assert_eq!(
        r.results[0].error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    drop(c);
    broker.shutdown().await.unwrap();
}
