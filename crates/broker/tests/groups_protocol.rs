//! Consumer-group APIs spoken directly over TCP with kafka-protocol's encoders against an
//! in-process broker: error codes real clients depend on, LeaveGroup batches, DeleteGroups,
//! OffsetDelete, retention, and durability of commits across a restart.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Client;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use waterline_broker::groups::GroupConfig;
use waterline_broker::{Broker, BrokerConfig, RunningBroker};

const TOPIC: &str = "t";
const PARTITIONS: i32 = 4;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

/// A broker over a temp dir with a zero initial rebalance delay and a 4-partition topic.
struct GroupBroker {
    broker: Option<RunningBroker>,
    dir: tempfile::TempDir,
    groups: GroupConfig,
}

impl GroupBroker {
    async fn start(groups: GroupConfig) -> GroupBroker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = GroupBroker {
            broker: None,
            dir,
            groups,
        };
        b.broker = Some(b.launch().await);
        let state = b.broker.as_ref().unwrap().state().clone();
        tokio::task::spawn_blocking(move || {
            state
                .topics
                .get_or_create(TOPIC, PARTITIONS, waterline_broker::BrokerState::now_ms())
                .unwrap();
        })
        .await
        .unwrap();
        b
    }

    async fn fast() -> GroupBroker {
        GroupBroker::start(GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        })
        .await
    }

    async fn launch(&self) -> RunningBroker {
        let config = BrokerConfig {
            data_dir: self.dir.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            groups: self.groups.clone(),
            ..BrokerConfig::default()
        };
        Broker::start(config).await.unwrap()
    }

    async fn restart(&mut self) {
        self.broker.take().unwrap().shutdown().await.unwrap();
        self.broker = Some(self.launch().await);
    }

    async fn client(&self) -> Client {
        Client::connect(self.broker.as_ref().unwrap().local_addr()).await
    }

    async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await.unwrap();
        }
    }
}

/// A consumer-protocol subscription (v0) to `topics`: what OffsetDelete reads.
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = vec![0u8, 0];
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

fn join_request(group: &str, member: &str) -> JoinGroupRequest {
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = subscription(&[TOPIC]);
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.session_timeout_ms = 10_000;
    r.rebalance_timeout_ms = 10_000;
    r.protocol_type = s("consumer");
    r.protocols = vec![p];
    r
}

const JOIN_V: i16 = 5;

/// Joins as a new member (v5: MEMBER_ID_REQUIRED first) and returns the completed response.
async fn join_new(c: &mut Client, group: &str) -> JoinGroupResponse {
    let first: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, JOIN_V, &join_request(group, ""))
        .await;
    assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
    assert!(!first.member_id.is_empty());
    c.call(
        ApiKey::JoinGroup,
        JOIN_V,
        &join_request(group, first.member_id.as_str()),
    )
    .await
}

async fn sync(
    c: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &[u8])],
) -> SyncGroupResponse {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id = generation;
    r.member_id = s(member);
    r.assignments = assignments
        .iter()
        .map(|(m, a)| {
            let mut x = SyncGroupRequestAssignment::default();
            x.member_id = s(m);
            x.assignment = Bytes::copy_from_slice(a);
            x
        })
        .collect();
    c.call(ApiKey::SyncGroup, 3, &r).await
}

async fn heartbeat(c: &mut Client, group: &str, generation: i32, member: &str) -> i16 {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id = generation;
    r.member_id = s(member);
    let resp: HeartbeatResponse = c.call(ApiKey::Heartbeat, 3, &r).await;
    resp.error_code
}

/// One partition to commit: (topic, partition, offset, metadata).
type Commit<'a> = (&'a str, i32, i64, &'a str);

fn commit_request(
    group: &str,
    generation: i32,
    member: &str,
    parts: &[Commit],
) -> OffsetCommitRequest {
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id_or_member_epoch = generation;
    r.member_id = s(member);
    for (topic, p, offset, metadata) in parts {
        let mut part = OffsetCommitRequestPartition::default();
        part.partition_index = *p;
        part.committed_offset = *offset;
        part.committed_leader_epoch = -1;
        part.committed_metadata = Some(s(metadata));
        match r.topics.iter_mut().find(|t| t.name.as_str() == *topic) {
            Some(t) => t.partitions.push(part),
            None => {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(s(topic));
                t.partitions.push(part);
                r.topics.push(t);
            }
        }
    }
    r
}

/// Commits with OffsetCommit v8 and returns the error codes in request order.
async fn commit(
    c: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    parts: &[Commit<'_>],
) -> Vec<i16> {
    let r = commit_request(group, generation, member, parts);
    let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &r).await;
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// OffsetFetch v7 for partitions of TOPIC: (partition, offset, metadata) each.
async fn fetch(c: &mut Client, group: &str, partitions: &[i32]) -> Vec<(i32, i64, String)> {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(s(TOPIC));
    t.partition_indexes = partitions.to_vec();
    let mut r = OffsetFetchRequest::default();
    r.group_id = GroupId(s(group));
    r.topics = Some(vec![t]);
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 7, &r).await;
    assert_eq!(resp.error_code, 0);
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            assert_eq!(p.error_code, 0);
            assert_eq!(p.committed_leader_epoch, -1);
            (
                p.partition_index,
                p.committed_offset,
                p.metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// A stable single-member group: returns (member id, generation).
async fn stable_member(c: &mut Client, group: &str) -> (String, i32) {
    let joined = join_new(c, group).await;
    assert_eq!(joined.error_code, 0);
    let member = joined.member_id.to_string();
    let synced = sync(
        c,
        group,
        joined.generation_id,
        &member,
        &[(&member, b"all")],
    )
    .await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment.as_ref(), b"all");
    (member, joined.generation_id)
}

#[tokio::test]
async fn find_coordinator_points_at_this_broker() {
    let b = GroupBroker::fast().await;
    let mut c = b.client().await;
    let mut r = FindCoordinatorRequest::default();
    r.key = s("g");
    let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 2, &r).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        resp.port,
        i32::from(b.broker.as_ref().unwrap().local_addr().port())
    );
    let mut r = FindCoordinatorRequest::default();
    r.coordinator_keys = vec![s("a"), s("b")];
    let resp: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, 4, &r).await;
    assert_eq!(resp.coordinators.len(), 2);
    assert!(resp.coordinators.iter().all(|c| c.error_code == 0));
    b.stop().await;
}

#[tokio::test]
async fn member_id_required_then_generation_and_member_checks() {
    let b = GroupBroker::fast().await;
    let mut c = b.client().await;
    let (member, generation) = stable_member(&mut c, "g").await;
    assert_eq!(generation, 1);
    assert_eq!(heartbeat(&mut c, "g", generation, &member).await, 0);

    // Wrong generation.
    assert_eq!(
        heartbeat(&mut c, "g", generation + 7, &member).await,
        code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        commit(&mut c, "g", generation + 7, &member, &[(TOPIC, 0, 5, "")]).await,
        vec![code(ResponseError::IllegalGeneration)]
    );
    // Unknown member.
    assert_eq!(
        heartbeat(&mut c, "g", generation, "nobody").await,
        code(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        commit(&mut c, "g", generation, "nobody", &[(TOPIC, 0, 5, "")]).await,
        vec![code(ResponseError::UnknownMemberId)]
    );
    // A standalone (generation -1) commit to a group with members is refused too.
    assert_eq!(
        commit(&mut c, "g", -1, "", &[(TOPIC, 0, 5, "")]).await,
        vec![code(ResponseError::UnknownMemberId)]
    );
    // None of the refused commits landed; the member's own does.
    assert_eq!(fetch(&mut c, "g", &[0]).await, vec![(0, -1, String::new())]);
    assert_eq!(
        commit(&mut c, "g", generation, &member, &[(TOPIC, 0, 5, "m")]).await,
        vec![0]
    );
    assert_eq!(
        fetch(&mut c, "g", &[0]).await,
        vec![(0, 5, "m".to_string())]
    );
    b.stop().await;
}

#[tokio::test]
async fn commit_during_rebalance_is_refused_until_the_assignment_arrives() {
    let b = GroupBroker::fast().await;
    let mut a = b.client().await;
    let (member_a, gen1) = stable_member(&mut a, "g").await;

    // B joins: its JoinGroup is parked and the group starts rebalancing.
    let mut bc = b.client().await;
    let first: JoinGroupResponse = bc
        .call(ApiKey::JoinGroup, JOIN_V, &join_request("g", ""))
        .await;
    let member_b = first.member_id.to_string();
    let corr_b = bc
        .send(ApiKey::JoinGroup, JOIN_V, &join_request("g", &member_b))
        .await;
    // Heartbeats tell A to rejoin.
    let mut tries = 0;
    while heartbeat(&mut a, "g", gen1, &member_a).await != code(ResponseError::RebalanceInProgress)
    {
        tries += 1;
        assert!(tries < 100, "group never started rebalancing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A rejoins: the round completes and both get generation 2.
    let joined_a: JoinGroupResponse = a
        .call(ApiKey::JoinGroup, JOIN_V, &join_request("g", &member_a))
        .await;
    let (corr, joined_b): (i32, JoinGroupResponse) = bc.recv(ApiKey::JoinGroup, JOIN_V).await;
    assert_eq!(corr, corr_b);
    assert_eq!((joined_a.error_code, joined_b.error_code), (0, 0));
    let gen2 = joined_a.generation_id;
    assert_eq!(gen2, gen1 + 1);
    assert_eq!(joined_b.generation_id, gen2);
    let leader = joined_a.leader.to_string();
    assert_eq!(joined_b.leader.as_str(), leader);

    // CompletingRebalance: commits with the new generation are refused until the sync.
    assert_eq!(
        commit(&mut a, "g", gen2, &member_a, &[(TOPIC, 1, 9, "")]).await,
        vec![code(ResponseError::RebalanceInProgress)]
    );
    // The follower's SyncGroup is parked until the leader's arrives.
    let (leader_c, follower_c, follower) = if leader == member_a {
        (&mut a, &mut bc, member_b.clone())
    } else {
        (&mut bc, &mut a, member_a.clone())
    };
    let follower_corr = follower_c
        .send(ApiKey::SyncGroup, 3, &{
            let mut r = SyncGroupRequest::default();
            r.group_id = GroupId(s("g"));
            r.generation_id = gen2;
            r.member_id = s(&follower);
            r
        })
        .await;
    let synced = sync(
        leader_c,
        "g",
        gen2,
        &leader,
        &[(&leader, b"L"), (&follower, b"F")],
    )
    .await;
    assert_eq!(
        (synced.error_code, synced.assignment.as_ref()),
        (0, &b"L"[..])
    );
    let (corr, f): (i32, SyncGroupResponse) = follower_c.recv(ApiKey::SyncGroup, 3).await;
    assert_eq!(corr, follower_corr);
    assert_eq!((f.error_code, f.assignment.as_ref()), (0, &b"F"[..]));

    // Stable again: the commit goes through; the old generation is now illegal.
    assert_eq!(
        commit(&mut a, "g", gen2, &member_a, &[(TOPIC, 1, 9, "")]).await,
        vec![0]
    );
    assert_eq!(
        commit(&mut a, "g", gen1, &member_a, &[(TOPIC, 1, 10, "")]).await,
        vec![code(ResponseError::IllegalGeneration)]
    );
    b.stop().await;
}

#[tokio::test]
async fn metadata_limit_and_unknown_partitions_are_per_partition() {
    let b = GroupBroker::fast().await;
    let mut c = b.client().await;
    let big = "x".repeat(4097);
    let limit = "y".repeat(4096);
    let codes = commit(
        &mut c,
        "standalone",
        -1,
        "",
        &[
            (TOPIC, 0, 1, &big),
            (TOPIC, 1, 2, &limit),
            (TOPIC, PARTITIONS, 3, ""),
            ("no-such-topic", 0, 4, ""),
        ],
    )
    .await;
    assert_eq!(
        codes,
        vec![
            code(ResponseError::OffsetMetadataTooLarge),
            0,
            code(ResponseError::UnknownTopicOrPartition),
            code(ResponseError::UnknownTopicOrPartition),
        ]
    );
    assert_eq!(
        fetch(&mut c, "standalone", &[0, 1]).await,
        vec![(0, -1, String::new()), (1, 2, limit)]
    );
    b.stop().await;
}

#[tokio::test]
async fn leave_group_v3_batch_and_delete_groups() {
    let b = GroupBroker::fast().await;
    let mut a = b.client().await;
    let (member_a, _) = stable_member(&mut a, "g").await;
    // Non-empty groups cannot be deleted.
    let mut del = DeleteGroupsRequest::default();
    del.groups_names = vec![GroupId(s("g")), GroupId(s("missing"))];
    let resp: DeleteGroupsResponse = a.call(ApiKey::DeleteGroups, 2, &del).await;
    let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![
            code(ResponseError::NonEmptyGroup),
            code(ResponseError::GroupIdNotFound)
        ]
    );

    // A v3 batch: the member leaves, an unknown one is reported per member.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s("g"));
    leave.members = [member_a.as_str(), "ghost"]
        .into_iter()
        .map(|m| {
            let mut id = MemberIdentity::default();
            id.member_id = s(m);
            id
        })
        .collect();
    let resp: LeaveGroupResponse = a.call(ApiKey::LeaveGroup, 3, &leave).await;
    assert_eq!(resp.error_code, 0);
    let codes: Vec<(String, i16)> = resp
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (member_a.clone(), 0),
            ("ghost".to_string(), code(ResponseError::UnknownMemberId))
        ]
    );

    // Empty now: a standalone commit is accepted, then the group and its offsets are deleted.
    assert_eq!(
        commit(&mut a, "g", -1, "", &[(TOPIC, 2, 7, "")]).await,
        vec![0]
    );
    let mut del = DeleteGroupsRequest::default();
    del.groups_names = vec![GroupId(s("g"))];
    let resp: DeleteGroupsResponse = a.call(ApiKey::DeleteGroups, 2, &del).await;
    assert_eq!(resp.results[0].error_code, 0);
    assert_eq!(fetch(&mut a, "g", &[2]).await, vec![(2, -1, String::new())]);
    b.stop().await;
}

#[tokio::test]
async fn offset_delete_respects_subscriptions() {
    let b = GroupBroker::fast().await;
    let mut c = b.client().await;
    let (member, generation) = stable_member(&mut c, "g").await;
    assert_eq!(
        commit(
            &mut c,
            "g",
            generation,
            &member,
            &[(TOPIC, 0, 3, ""), (TOPIC, 1, 4, "")]
        )
        .await,
        vec![0, 0]
    );
    let req = |parts: &[i32]| {
        let mut t = OffsetDeleteRequestTopic::default();
        t.name = TopicName(s(TOPIC));
        t.partitions = parts
            .iter()
            .map(|p| {
                let mut x = OffsetDeleteRequestPartition::default();
                x.partition_index = *p;
                x
            })
            .collect();
        let mut r = OffsetDeleteRequest::default();
        r.group_id = GroupId(s("g"));
        r.topics = vec![t];
        r
    };
    // The stable member subscribes to TOPIC: its offsets are protected.
    let resp: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &req(&[0])).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        code(ResponseError::GroupSubscribedToTopic)
    );
    // Once the group is empty they can be deleted.
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = GroupId(s("g"));
    leave.member_id = s(&member);
    let resp: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 1, &leave).await;
    assert_eq!(resp.error_code, 0);
    let resp: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &req(&[0])).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        fetch(&mut c, "g", &[0, 1]).await,
        vec![(0, -1, String::new()), (1, 4, String::new())]
    );
    let mut unknown = req(&[0]);
    unknown.group_id = GroupId(s("nope"));
    let resp: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, 0, &unknown).await;
    assert_eq!(resp.error_code, code(ResponseError::GroupIdNotFound));
    b.stop().await;
}

#[tokio::test]
async fn commits_survive_a_restart_and_the_group_is_listed_as_empty() {
    let mut b = GroupBroker::fast().await;
    let mut c = b.client().await;
    assert_eq!(
        commit(
            &mut c,
            "durable",
            -1,
            "",
            &[(TOPIC, 0, 10, "a"), (TOPIC, 3, 30, "d")]
        )
        .await,
        vec![0, 0]
    );
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    assert_eq!(
        fetch(&mut c, "durable", &[0, 1, 3]).await,
        vec![
            (0, 10, "a".to_string()),
            (1, -1, String::new()),
            (3, 30, "d".to_string())
        ]
    );
    // The "all partitions" form (null topics), v8 batch form with two groups.
    let mut g1 = OffsetFetchRequestGroup::default();
    g1.group_id = GroupId(s("durable"));
    g1.topics = None;
    let mut g2 = OffsetFetchRequestGroup::default();
    g2.group_id = GroupId(s("other"));
    let mut t = OffsetFetchRequestTopics::default();
    t.name = TopicName(s(TOPIC));
    t.partition_indexes = vec![0];
    g2.topics = Some(vec![t]);
    let mut r = OffsetFetchRequest::default();
    r.groups = vec![g1, g2];
    let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 8, &r).await;
    let all: Vec<(i32, i64)> = resp.groups[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(all, vec![(0, 10), (3, 30)]);
    assert_eq!(resp.groups[1].topics[0].partitions[0].committed_offset, -1);

    // Recovered groups are listed and described as Empty.
    let mut lr = ListGroupsRequest::default();
    lr.states_filter = vec![s("Empty")];
    let resp: ListGroupsResponse = c.call(ApiKey::ListGroups, 4, &lr).await;
    let listed: Vec<(String, String)> = resp
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
        .collect();
    assert_eq!(listed, vec![("durable".to_string(), "Empty".to_string())]);
    let mut dr = DescribeGroupsRequest::default();
    dr.groups = vec![GroupId(s("durable")), GroupId(s("never"))];
    let resp: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &dr).await;
    assert_eq!(resp.groups[0].group_state.as_str(), "Empty");
    assert_eq!(resp.groups[0].error_code, 0);
    assert_eq!(resp.groups[1].group_state.as_str(), "Dead");
    b.stop().await;
}

#[tokio::test]
async fn offsets_of_empty_groups_expire_after_the_retention() {
    let b = GroupBroker::start(GroupConfig {
        initial_rebalance_delay_ms: 0,
        offsets_retention_ms: 200,
        ..GroupConfig::default()
    })
    .await;
    let mut c = b.client().await;
    assert_eq!(
        commit(&mut c, "brief", -1, "", &[(TOPIC, 0, 1, "")]).await,
        vec![0]
    );
    assert_eq!(fetch(&mut c, "brief", &[0]).await[0].1, 1);
    // The timer task checks at least once a second; allow a few.
    let mut expired = false;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if fetch(&mut c, "brief", &[0]).await[0].1 == -1 {
            expired = true;
            break;
        }
    }
    assert!(expired, "offsets were not expired");
    let resp: ListGroupsResponse = c
        .call(ApiKey::ListGroups, 3, &ListGroupsRequest::default())
        .await;
    assert!(resp.groups.is_empty());
    b.stop().await;
}

#[tokio::test]
async fn shutdown_answers_parked_joins() {
    // A long initial delay keeps the JoinGroup parked; shutdown must still complete promptly.
    let b = GroupBroker::start(GroupConfig {
        initial_rebalance_delay_ms: 60_000,
        ..GroupConfig::default()
    })
    .await;
    let mut c = b.client().await;
    let first: JoinGroupResponse = c
        .call(ApiKey::JoinGroup, JOIN_V, &join_request("slow", ""))
        .await;
    c.send(
        ApiKey::JoinGroup,
        JOIN_V,
        &join_request("slow", first.member_id.as_str()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(Duration::from_secs(10), b.stop())
        .await
        .expect("shutdown hung on a parked JoinGroup");
}

#[tokio::test]
async fn a_silent_member_is_evicted_after_its_session_timeout() {
    let b = GroupBroker::start(GroupConfig {
        initial_rebalance_delay_ms: 0,
        min_session_timeout_ms: 100,
        ..GroupConfig::default()
    })
    .await;
    let short = |member: &str| {
        let mut r = join_request("g", member);
        r.session_timeout_ms = 400;
        r
    };
    // A alone, stable in generation 1.
    let mut a = b.client().await;
    let first: JoinGroupResponse = a.call(ApiKey::JoinGroup, JOIN_V, &short("")).await;
    let member_a = first.member_id.to_string();
    let joined: JoinGroupResponse = a.call(ApiKey::JoinGroup, JOIN_V, &short(&member_a)).await;
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    assert_eq!(sync(&mut a, "g", 1, &member_a, &[]).await.error_code, 0);

    // B joins (parked); A rejoins when told to; both get generation 2.
    let mut bc = b.client().await;
    let first: JoinGroupResponse = bc.call(ApiKey::JoinGroup, JOIN_V, &short("")).await;
    let member_b = first.member_id.to_string();
    bc.send(ApiKey::JoinGroup, JOIN_V, &short(&member_b)).await;
    while heartbeat(&mut a, "g", 1, &member_a).await != code(ResponseError::RebalanceInProgress) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let joined: JoinGroupResponse = a.call(ApiKey::JoinGroup, JOIN_V, &short(&member_a)).await;
    let (_, joined_b): (i32, JoinGroupResponse) = bc.recv(ApiKey::JoinGroup, JOIN_V).await;
    assert_eq!((joined.generation_id, joined_b.generation_id), (2, 2));
    let leader = joined.leader.to_string();
    // Leader syncs first; the follower's sync then completes at once.
    let (lc, fc, follower) = if leader == member_a {
        (&mut a, &mut bc, member_b.clone())
    } else {
        (&mut bc, &mut a, member_a.clone())
    };
    assert_eq!(sync(lc, "g", 2, &leader, &[]).await.error_code, 0);
    assert_eq!(sync(fc, "g", 2, &follower, &[]).await.error_code, 0);

    // B goes silent; A keeps heartbeating until the broker's timer evicts B and A is told to
    // rejoin; A then forms generation 3 alone.
    let mut rebalanced = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if heartbeat(&mut a, "g", 2, &member_a).await == code(ResponseError::RebalanceInProgress) {
            rebalanced = true;
            break;
        }
    }
    assert!(rebalanced, "the silent member was never evicted");
    let joined: JoinGroupResponse = a.call(ApiKey::JoinGroup, JOIN_V, &short(&member_a)).await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 3);
    assert_eq!(joined.leader.as_str(), member_a);
    assert_eq!(joined.members.len(), 1);
    // B's old membership is gone.
    assert_eq!(
        heartbeat(&mut bc, "g", 2, &member_b).await,
        code(ResponseError::UnknownMemberId)
    );
    b.stop().await;
}

#[tokio::test]
async fn describe_groups_reports_each_members_client_host_and_id() {
    let b = GroupBroker::fast().await;
    let mut c = b.client().await;
    let (member, _) = stable_member(&mut c, "hosts").await;
    let mut dr = DescribeGroupsRequest::default();
    dr.groups = vec![GroupId(s("hosts"))];
    let resp: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, 5, &dr).await;
    let g = &resp.groups[0];
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.members.len(), 1);
    let m = &g.members[0];
    assert_eq!(m.member_id.as_str(), member);
    // Kafka's form: the peer address with a leading slash.
    assert_eq!(m.client_host.as_str(), "/127.0.0.1");
    assert_eq!(m.client_id.as_str(), "test");
    b.stop().await;
}
