//! A connection's requests take effect in the order they were sent, even when a client pipelines
//! them (librdkafka sends async OffsetCommits and auto-commits back to back on one connection and
//! expects the last one sent to stick).
//!
//! - `pipelined_commits_keep_the_last_one_sent`: N OffsetCommits of offsets 1..=N for one
//!   partition, pipelined on one raw socket, then OffsetFetch: it must say N, in every trial.
//! - `interleaved_pipelines_match_a_sequential_model`: a proptest of several connections, each
//!   pipelining a random mix of OffsetCommit, OffsetFetch and OffsetDelete on its own group, all
//!   at once; every OffsetFetch answer and the final state must equal what applying that
//!   connection's requests one at a time, in order, gives.

mod common;

use std::collections::BTreeMap;

use common::{Client, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, GroupId, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;

const TOPIC: &str = "ordered";
const PARTITIONS: i32 = 3;
const COMMIT_V: i16 = 8;
const FETCH_V: i16 = 7;
const DELETE_V: i16 = 0;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn create_topic(c: &mut Client) {
    let mut t = CreatableTopic::default();
    t.name = TopicName(s(TOPIC));
    t.num_partitions = PARTITIONS;
    t.replication_factor = 1;
    let mut r = CreateTopicsRequest::default();
    r.topics = vec![t];
    r.timeout_ms = 5_000;
    let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &r).await;
    assert_eq!(resp.topics[0].error_code, 0, "{resp:?}");
}

fn commit_req(group: &str, partition: i32, offset: i64) -> OffsetCommitRequest {
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = partition;
    p.committed_offset = offset;
    p.committed_metadata = Some(s(&format!("m{offset}")));
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s(TOPIC));
    t.partitions = vec![p];
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    r.generation_id_or_member_epoch = -1;
    r.topics = vec![t];
    r
}

fn fetch_req(group: &str) -> OffsetFetchRequest {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(s(TOPIC));
    t.partition_indexes = (0..PARTITIONS).collect();
    let mut r = OffsetFetchRequest::default();
    r.group_id = GroupId(s(group));
    r.topics = Some(vec![t]);
    r
}

fn delete_req(group: &str, partition: i32) -> OffsetDeleteRequest {
    let mut p = OffsetDeleteRequestPartition::default();
    p.partition_index = partition;
    let mut t = OffsetDeleteRequestTopic::default();
    t.name = TopicName(s(TOPIC));
    t.partitions = vec![p];
    let mut r = OffsetDeleteRequest::default();
    r.group_id = GroupId(s(group));
    r.topics = vec![t];
    r
}

/// Committed offsets per partition (absent = none), as an OffsetFetch answer shows them.
fn fetched(resp: &OffsetFetchResponse) -> BTreeMap<i32, i64> {
    assert_eq!(resp.error_code, 0, "{resp:?}");
    resp.topics
        .iter()
        .flat_map(|t| &t.partitions)
        .inspect(|p| assert_eq!(p.error_code, 0, "{p:?}"))
        .filter(|p| p.committed_offset >= 0)
        .map(|p| (p.partition_index, p.committed_offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_commits_keep_the_last_one_sent() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    create_topic(&mut c).await;
    for (trial, n) in [10i64, 200, 10, 50, 200, 10, 100, 200, 10, 30]
        .into_iter()
        .enumerate()
    {
        let group = format!("g{trial}");
        let mut sent = Vec::new();
        for offset in 1..=n {
            sent.push(
                c.send(
                    ApiKey::OffsetCommit,
                    COMMIT_V,
                    &commit_req(&group, 0, offset),
                )
                .await,
            );
        }
        for corr in sent {
            let (got, resp): (i32, OffsetCommitResponse) =
                c.recv(ApiKey::OffsetCommit, COMMIT_V).await;
            assert_eq!(got, corr, "answers in request order");
            assert_eq!(resp.topics[0].partitions[0].error_code, 0);
        }
        let resp: OffsetFetchResponse = c
            .call(ApiKey::OffsetFetch, FETCH_V, &fetch_req(&group))
            .await;
        assert_eq!(
            fetched(&resp).get(&0),
            Some(&n),
            "trial {trial}: the last of {n} pipelined commits must stick"
        );
        let meta = &resp.topics[0].partitions[0].metadata;
        assert_eq!(meta.as_deref(), Some(format!("m{n}").as_str()));
    }
    b.stop().await;
}

/// One request of a connection's pipeline.
#[derive(Clone, Debug)]
enum Op {
    Commit { partition: i32, offset: i64 },
    Fetch,
    Delete { partition: i32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..PARTITIONS, 0i64..1_000).prop_map(|(partition, offset)| Op::Commit { partition, offset }),
        2 => Just(Op::Fetch),
        1 => (0..PARTITIONS).prop_map(|partition| Op::Delete { partition }),
    ]
}

/// Sends every op of `ops` back to back, then reads the answers and checks each against the
/// model of the connection's group applied one request at a time.
async fn run_pipeline(mut c: Client, group: String, ops: Vec<Op>) -> Result<(), String> {
    for op in &ops {
        match op {
            Op::Commit { partition, offset } => {
                c.send(
                    ApiKey::OffsetCommit,
                    COMMIT_V,
                    &commit_req(&group, *partition, *offset),
                )
                .await
            }
            Op::Fetch => {
                c.send(ApiKey::OffsetFetch, FETCH_V, &fetch_req(&group))
                    .await
            }
            Op::Delete { partition } => {
                c.send(
                    ApiKey::OffsetDelete,
                    DELETE_V,
                    &delete_req(&group, *partition),
                )
                .await
            }
        };
    }
    let mut model: BTreeMap<i32, i64> = BTreeMap::new();
    let mut group_known = false;
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Commit { partition, offset } => {
                let (_, r): (i32, OffsetCommitResponse) =
                    c.recv(ApiKey::OffsetCommit, COMMIT_V).await;
                if r.topics[0].partitions[0].error_code != 0 {
                    return Err(format!("op {i} {op:?}: {r:?}"));
                }
                model.insert(*partition, *offset);
                group_known = true;
            }
            Op::Fetch => {
                let (_, r): (i32, OffsetFetchResponse) = c.recv(ApiKey::OffsetFetch, FETCH_V).await;
                let got = fetched(&r);
                if got != model {
                    return Err(format!(
                        "{group} op {i}: OffsetFetch saw {got:?}, in-order model {model:?}"
                    ));
                }
            }
            Op::Delete { partition } => {
                let (_, r): (i32, OffsetDeleteResponse) =
                    c.recv(ApiKey::OffsetDelete, DELETE_V).await;
                // A group never committed to is unknown; otherwise it is Empty (no members)
                // and the delete succeeds.
                let expected = if group_known { 0 } else { 69 };
                if r.error_code != expected {
                    return Err(format!("{group} op {i} {op:?}: {r:?}"));
                }
                model.remove(partition);
            }
        }
    }
    let r: OffsetFetchResponse = c
        .call(ApiKey::OffsetFetch, FETCH_V, &fetch_req(&group))
        .await;
    let got = fetched(&r);
    if got != model {
        return Err(format!("{group} final: {got:?}, model {model:?}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn interleaved_pipelines_match_a_sequential_model(
        pipelines in prop::collection::vec(prop::collection::vec(op(), 1..60), 2..5)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let outcome: Result<(), String> = rt.block_on(async move {
            let b = TestBroker::start().await;
            create_topic(&mut b.client().await).await;
            let mut tasks = Vec::new();
            for (i, ops) in pipelines.into_iter().enumerate() {
                let c = b.client().await;
                tasks.push(tokio::spawn(run_pipeline(c, format!("conn{i}"), ops)));
            }
            let mut result = Ok(());
            for t in tasks {
                if let Err(e) = t.await.unwrap() {
                    result = Err(e);
                }
            }
            b.stop().await;
            result
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
