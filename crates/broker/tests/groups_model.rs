//! Model-based property test of committed offsets through the handlers (no sockets): random
//! sequences of standalone OffsetCommits (including unknown partitions, oversized metadata and
//! repeated partitions in one request), OffsetFetches and DeleteGroups are checked against a
//! plain map. Invariant: OffsetFetch returns exactly the last accepted commit per partition,
//! and every commit is answered per partition with the code the model predicts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetCommitRequest, OffsetFetchRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use proptest::prelude::*;
use waterline_broker::handlers::{delete_groups, offset_commit, offset_fetch};
use waterline_broker::{BrokerConfig, BrokerState, SharedState};

const TOPIC: &str = "t";
const PARTITIONS: i32 = 3;
const GROUPS: [&str; 2] = ["g0", "g1"];
const MAX_METADATA: usize = 4096;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn header(key: ApiKey, version: i16) -> RequestHeader {
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h
}

#[derive(Debug, Clone)]
enum Op {
    /// (partition, offset, metadata length) entries, committed standalone to GROUPS[group].
    Commit {
        group: usize,
        parts: Vec<(i32, i64, usize)>,
    },
    Fetch {
        group: usize,
    },
    Delete {
        group: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let part = (
        0..=PARTITIONS,
        0i64..1_000_000,
        prop_oneof![4 => 0usize..16, 1 => Just(MAX_METADATA), 1 => Just(MAX_METADATA + 1)],
    );
    prop_oneof![
        5 => (0..GROUPS.len(), prop::collection::vec(part, 1..5))
            .prop_map(|(group, parts)| Op::Commit { group, parts }),
        3 => (0..GROUPS.len()).prop_map(|group| Op::Fetch { group }),
        1 => (0..GROUPS.len()).prop_map(|group| Op::Delete { group }),
    ]
}

/// Metadata of a given length that also identifies the offset, so a mix-up would show.
fn metadata(offset: i64, len: usize) -> String {
    let base = format!("{offset}:");
    let mut m: String = base.chars().cycle().take(len).collect();
    m.truncate(len);
    m
}

#[derive(Default)]
struct Model {
    offsets: BTreeMap<(usize, i32), (i64, String)>,
    /// Groups the coordinator knows: a commit with at least one existing partition registers
    /// the group, even if every such partition was refused for its metadata.
    known: BTreeSet<usize>,
}

async fn run(state: &SharedState, model: &mut Model, op: Op) {
    match op {
        Op::Commit { group, parts } => {
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(s(TOPIC));
            for &(p, offset, len) in &parts {
                let mut x = OffsetCommitRequestPartition::default();
                x.partition_index = p;
                x.committed_offset = offset;
                x.committed_leader_epoch = -1;
                x.committed_metadata = Some(s(&metadata(offset, len)));
                t.partitions.push(x);
            }
            let mut r = OffsetCommitRequest::default();
            r.group_id = GroupId(s(GROUPS[group]));
            r.generation_id_or_member_epoch = -1;
            r.topics = vec![t];
            let resp = offset_commit::handle(state, &header(ApiKey::OffsetCommit, 8), r).await;
            let got: Vec<i16> = resp.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect();
            let want: Vec<i16> = parts
                .iter()
                .map(|&(p, _, len)| {
                    if p >= PARTITIONS {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if len > MAX_METADATA {
                        ResponseError::OffsetMetadataTooLarge.code()
                    } else {
                        0
                    }
                })
                .collect();
            assert_eq!(got, want, "commit codes for {parts:?}");
            if parts.iter().any(|&(p, _, _)| p < PARTITIONS) {
                model.known.insert(group);
            }
            for &(p, offset, len) in &parts {
                if p < PARTITIONS && len <= MAX_METADATA {
                    model
                        .offsets
                        .insert((group, p), (offset, metadata(offset, len)));
                }
            }
        }
        Op::Fetch { group } => {
            let mut r = OffsetFetchRequest::default();
            r.group_id = GroupId(s(GROUPS[group]));
            r.topics = None;
            let resp = offset_fetch::handle(state, &header(ApiKey::OffsetFetch, 7), r).await;
            assert_eq!(resp.error_code, 0);
            let got: Vec<(i32, i64, String)> = resp
                .topics
                .iter()
                .flat_map(|t| {
                    assert_eq!(t.name.as_str(), TOPIC);
                    t.partitions.iter().map(|p| {
                        (
                            p.partition_index,
                            p.committed_offset,
                            p.metadata
                                .as_ref()
                                .map(|m| m.to_string())
                                .unwrap_or_default(),
                        )
                    })
                })
                .collect();
            let want: Vec<(i32, i64, String)> = model
                .offsets
                .iter()
                .filter(|((g, _), _)| *g == group)
                .map(|((_, p), (o, m))| (*p, *o, m.clone()))
                .collect();
            assert_eq!(got, want, "fetch of {}", GROUPS[group]);
        }
        Op::Delete { group } => {
            let mut r = DeleteGroupsRequest::default();
            r.groups_names = vec![GroupId(s(GROUPS[group]))];
            let resp = delete_groups::handle(state, &header(ApiKey::DeleteGroups, 2), r).await;
            let want = if model.known.remove(&group) {
                0
            } else {
                ResponseError::GroupIdNotFound.code()
            };
            assert_eq!(resp.results[0].error_code, want);
            model.offsets.retain(|(g, _), _| *g != group);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn fetch_returns_the_last_accepted_commit(ops in prop::collection::vec(op(), 1..20)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let config = BrokerConfig {
                data_dir: dir.path().to_path_buf(),
                ..BrokerConfig::default()
            };
            let state: SharedState = Arc::new(
                waterline_broker::server::build_state(config, "127.0.0.1".into(), 9092).unwrap(),
            );
            state.topics.get_or_create(TOPIC, PARTITIONS, BrokerState::now_ms()).unwrap();
            let mut model = Model::default();
            for op in ops {
                run(&state, &mut model, op).await;
            }
            state.groups.close().await;
            state.sync.stop();
            state.topics.close_all();
        });
    }
}
