//! Walker tests: every message kafka-protocol encodes walks to its last byte, and bodies no
//! valid message can be are refused with the reason.

use super::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message, Request, StrBytes};

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

/// Encodes `m` at every version it encodes at (defaults can be unencodable in some versions,
/// e.g. a null that a version forbids); at least one version must encode.
fn encodings<M: Encodable + Message>(m: &M) -> Vec<(i16, BytesMut)> {
    let out: Vec<_> = (M::VERSIONS.min..=M::VERSIONS.max)
        .filter_map(|v| {
            let mut buf = BytesMut::new();
            m.encode(&mut buf, v).ok().map(|_| (v, buf))
        })
        .collect();
    assert!(!out.is_empty(), "no version encodes");
    out
}

/// One helper for every "well-formed message" case: the walk accepts it and ends exactly at
/// its last byte (a walk that stopped short or ran on would mean a wrong layout).
fn check_exact(dir: Direction, key: i16, version: i16, body: &[u8]) {
    let used = walk(dir, key, version, body)
        .unwrap_or_else(|e| panic!("{} key {key} v{version}: {e}", dir.name()));
    assert_eq!(used, body.len(), "{} key {key} v{version}", dir.name());
}

fn requests_exact<R: Request + Default>(seen: &mut Vec<i16>) {
    for (v, body) in encodings(&R::default()) {
        check_exact(Direction::Request, R::KEY, v, &body);
    }
    seen.push(R::KEY);
}

fn responses_exact<R: Request>(seen: &mut Vec<i16>)
where
    R::Response: Default,
{
    for (v, body) in encodings(&R::Response::default()) {
        check_exact(Direction::Response, R::KEY, v, &body);
    }
    seen.push(R::KEY);
}

fn keys(table: &[(i16, &[StructSchema])]) -> Vec<i16> {
    let mut k: Vec<i16> = table.iter().map(|(k, _)| *k).collect();
    k.sort_unstable();
    k
}

#[test]
fn every_request_in_the_table_walks_exactly_at_every_version() {
    let mut seen = Vec::new();
    requests_exact::<ProduceRequest>(&mut seen);
    requests_exact::<FetchRequest>(&mut seen);
    requests_exact::<ListOffsetsRequest>(&mut seen);
    requests_exact::<MetadataRequest>(&mut seen);
    requests_exact::<OffsetCommitRequest>(&mut seen);
    requests_exact::<OffsetFetchRequest>(&mut seen);
    requests_exact::<FindCoordinatorRequest>(&mut seen);
    requests_exact::<JoinGroupRequest>(&mut seen);
    requests_exact::<HeartbeatRequest>(&mut seen);
    requests_exact::<LeaveGroupRequest>(&mut seen);
    requests_exact::<SyncGroupRequest>(&mut seen);
    requests_exact::<DescribeGroupsRequest>(&mut seen);
    requests_exact::<ListGroupsRequest>(&mut seen);
    requests_exact::<ApiVersionsRequest>(&mut seen);
    requests_exact::<CreateTopicsRequest>(&mut seen);
    requests_exact::<DeleteTopicsRequest>(&mut seen);
    requests_exact::<InitProducerIdRequest>(&mut seen);
    requests_exact::<DescribeConfigsRequest>(&mut seen);
    requests_exact::<CreatePartitionsRequest>(&mut seen);
    requests_exact::<DeleteGroupsRequest>(&mut seen);
    requests_exact::<OffsetDeleteRequest>(&mut seen);
    requests_exact::<DeleteRecordsRequest>(&mut seen);
    requests_exact::<AlterConfigsRequest>(&mut seen);
    requests_exact::<IncrementalAlterConfigsRequest>(&mut seen);
    requests_exact::<AddPartitionsToTxnRequest>(&mut seen);
    requests_exact::<AddOffsetsToTxnRequest>(&mut seen);
    requests_exact::<EndTxnRequest>(&mut seen);
    requests_exact::<TxnOffsetCommitRequest>(&mut seen);
    requests_exact::<DescribeProducersRequest>(&mut seen);
    requests_exact::<DescribeTransactionsRequest>(&mut seen);
    requests_exact::<ListTransactionsRequest>(&mut seen);
    requests_exact::<OffsetForLeaderEpochRequest>(&mut seen);
    requests_exact::<DescribeLogDirsRequest>(&mut seen);
    requests_exact::<SaslHandshakeRequest>(&mut seen);
    requests_exact::<SaslAuthenticateRequest>(&mut seen);
    requests_exact::<DescribeUserScramCredentialsRequest>(&mut seen);
    requests_exact::<AlterUserScramCredentialsRequest>(&mut seen);
    seen.sort_unstable();
    assert_eq!(
        seen,
        keys(schema::REQUESTS),
        "test list and request table differ"
    );
    assert!(seen.iter().all(|k| knows_request(*k)));
}

#[test]
fn every_response_in_the_table_walks_exactly_at_every_version() {
    let mut seen = Vec::new();
    responses_exact::<ApiVersionsRequest>(&mut seen);
    responses_exact::<MetadataRequest>(&mut seen);
    responses_exact::<ListOffsetsRequest>(&mut seen);
    responses_exact::<FetchRequest>(&mut seen);
    responses_exact::<FindCoordinatorRequest>(&mut seen);
    responses_exact::<OffsetFetchRequest>(&mut seen);
    responses_exact::<OffsetCommitRequest>(&mut seen);
    responses_exact::<OffsetDeleteRequest>(&mut seen);
    responses_exact::<DescribeGroupsRequest>(&mut seen);
    responses_exact::<ListGroupsRequest>(&mut seen);
    responses_exact::<DeleteGroupsRequest>(&mut seen);
    responses_exact::<ProduceRequest>(&mut seen);
    responses_exact::<CreateTopicsRequest>(&mut seen);
    responses_exact::<JoinGroupRequest>(&mut seen);
    responses_exact::<SyncGroupRequest>(&mut seen);
    responses_exact::<DeleteTopicsRequest>(&mut seen);
    responses_exact::<DescribeConfigsRequest>(&mut seen);
    responses_exact::<AlterConfigsRequest>(&mut seen);
    responses_exact::<IncrementalAlterConfigsRequest>(&mut seen);
    responses_exact::<CreatePartitionsRequest>(&mut seen);
    responses_exact::<DeleteRecordsRequest>(&mut seen);
    responses_exact::<DescribeLogDirsRequest>(&mut seen);
    responses_exact::<SaslHandshakeRequest>(&mut seen);
    responses_exact::<SaslAuthenticateRequest>(&mut seen);
    responses_exact::<DescribeUserScramCredentialsRequest>(&mut seen);
    responses_exact::<AlterUserScramCredentialsRequest>(&mut seen);
    for (v, body) in encodings(&assignment()) {
        check_exact(Direction::Response, CONSUMER_ASSIGNMENT, v, &body);
    }
    seen.push(CONSUMER_ASSIGNMENT);
    seen.sort_unstable();
    assert_eq!(
        seen,
        keys(schema::RESPONSES),
        "test list and response table differ"
    );
    assert!(seen.iter().all(|k| knows_response(*k)));
}

#[test]
fn unknown_apis_are_refused() {
    assert!(!knows_request(CONSUMER_ASSIGNMENT));
    assert!(!knows_request(999));
    assert!(!knows_response(999));
    assert_eq!(
        check_request(999, 0, &[]),
        Err(WireError::UnknownApi {
            direction: "request",
            api_key: 999
        })
    );
    assert_eq!(
        check_response(999, 0, &[]).unwrap_err().to_string(),
        "no response layout known for API key 999"
    );
}

fn metadata() -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(s("h"))
                .with_port(9092),
        ])
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(s("t"))))
                .with_partitions(vec![
                    MetadataResponsePartition::default()
                        .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                        .with_isr_nodes(vec![BrokerId(1)]),
                ]),
        ])
}

fn assignment() -> ConsumerProtocolAssignment {
    ConsumerProtocolAssignment::default()
        .with_assigned_partitions(vec![
            AssignedTopic::default()
                .with_topic(TopicName(s("a")))
                .with_partitions(vec![0, 1, 2]),
            AssignedTopic::default().with_topic(TopicName(s("b"))),
        ])
        .with_user_data(Some(Bytes::from_static(b"user")))
}

/// Populated messages reach the nested structs that default (empty) ones leave unwalked.
#[test]
fn populated_messages_walk_exactly() {
    for (v, body) in encodings(&metadata()) {
        check_exact(Direction::Response, ApiKey::Metadata as i16, v, &body);
    }
    let group = DescribeGroupsResponse::default().with_groups(vec![
        DescribedGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_group_state(s("Stable"))
            .with_protocol_type(s("consumer"))
            .with_protocol_data(s("range"))
            .with_members(vec![
                DescribedGroupMember::default()
                    .with_member_id(s("m-1"))
                    .with_client_id(s("c"))
                    .with_client_host(s("/127.0.0.1"))
                    .with_member_metadata(Bytes::from_static(b"meta"))
                    .with_member_assignment(Bytes::from_static(b"assign")),
            ]),
    ]);
    for (v, body) in encodings(&group) {
        check_exact(Direction::Response, ApiKey::DescribeGroups as i16, v, &body);
    }
    let fetch = FetchResponse::default().with_responses(vec![
        FetchableTopicResponse::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(vec![
                PartitionData::default()
                    .with_high_watermark(10)
                    .with_aborted_transactions(Some(vec![AbortedTransaction::default()]))
                    .with_current_leader(LeaderIdAndEpoch::default().with_leader_id(BrokerId(1)))
                    .with_records(Some(Bytes::from_static(&[7; 61]))),
            ]),
    ]);
    for (v, body) in encodings(&fetch) {
        check_exact(Direction::Response, ApiKey::Fetch as i16, v, &body);
    }
    let request = FetchRequest::default()
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![FetchPartition::default(); 3]),
        ])
        .with_cluster_id(Some(s("cluster")));
    for (v, body) in encodings(&request) {
        check_exact(Direction::Request, ApiKey::Fetch as i16, v, &body);
    }
}

/// Tagged fields the table does not know are skipped by their size; known ones are walked.
#[test]
fn unknown_tagged_fields_are_skipped_by_size() {
    let m = metadata().with_unknown_tagged_field(99, Bytes::from_static(b"opaque"));
    let mut body = BytesMut::new();
    m.encode(&mut body, 12).unwrap();
    check_exact(Direction::Response, ApiKey::Metadata as i16, 12, &body);
    // The last byte of a v12 top-level struct ends its tagged section, here the tag's data:
    // one byte fewer is truncated.
    let short = &body[..body.len() - 1];
    assert!(matches!(
        check_response(ApiKey::Metadata as i16, 12, short),
        Err(WireError::Truncated { .. })
    ));
}

#[test]
fn counts_the_body_cannot_hold_are_refused() {
    // Metadata response v1: brokers array count first.
    let mut body = i32::MAX.to_be_bytes().to_vec();
    body.extend_from_slice(&[0; 16]);
    let err = check_response(ApiKey::Metadata as i16, 1, &body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "array claims 2147483647 elements with 16 bytes left"
    );
    // Compact form (v9): throttle, then a varint count of 2^32 - 2.
    let mut body = vec![0, 0, 0, 0];
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        check_response(ApiKey::Metadata as i16, 9, &body),
        Err(WireError::CountExceedsBytes { .. })
    ));
    // Metadata request v4: the topics count alone, then allow_auto_topic_creation.
    let mut body = i32::MAX.to_be_bytes().to_vec();
    body.push(1);
    assert!(matches!(
        check_request(ApiKey::Metadata as i16, 4, &body),
        Err(WireError::CountExceedsBytes {
            count: 2147483647,
            left: 1
        })
    ));
}

#[test]
fn malformed_values_are_refused_with_the_reason() {
    let metadata = ApiKey::Metadata as i16;
    assert_eq!(
        check_response(metadata, 1, &[0, 0]),
        Err(WireError::Truncated { needed: 4, left: 2 })
    );
    assert_eq!(
        check_response(metadata, 1, &(-2i32).to_be_bytes()),
        Err(WireError::NegativeCount(-2))
    );
    // A null (-1) brokers array is not a count; the walk goes on to the next field.
    assert!(matches!(
        check_response(metadata, 1, &(-1i32).to_be_bytes()),
        Err(WireError::Truncated { .. })
    ));
    // Request v1: one topic whose name has length -2.
    let mut body = 1i32.to_be_bytes().to_vec();
    body.extend_from_slice(&(-2i16).to_be_bytes());
    assert_eq!(
        check_request(metadata, 1, &body),
        Err(WireError::NegativeLength(-2))
    );
    // Response v9: throttle, then a varint with the continuation bit on all five bytes.
    let body = [0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    assert_eq!(
        check_response(metadata, 9, &body),
        Err(WireError::VarintTooLong)
    );
}

/// A Metadata v0 request with `n` topics named "" (2 bytes each).
fn metadata_request_with(n: usize) -> Vec<u8> {
    let mut body = (n as i32).to_be_bytes().to_vec();
    body.resize(4 + 2 * n, 0);
    body
}

#[test]
fn the_element_budget_holds_across_the_whole_body() {
    let key = ApiKey::Metadata as i16;
    let at = metadata_request_with(MAX_REQUEST_ELEMENTS);
    check_exact(Direction::Request, key, 0, &at);
    let over = metadata_request_with(MAX_REQUEST_ELEMENTS + 1);
    assert_eq!(
        check_request(key, 0, &over),
        Err(WireError::TooManyElements {
            limit: MAX_REQUEST_ELEMENTS
        })
    );
    // Responses have their own, larger budget: the same count passes as a list of 4-byte
    // replica ids (Metadata response v0: no brokers, one topic, one partition).
    let n = MAX_REQUEST_ELEMENTS + 1;
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes()); // brokers
    body.extend_from_slice(&1i32.to_be_bytes()); // topics
    body.extend_from_slice(&[0, 0, 0, 0]); // error_code, name ""
    body.extend_from_slice(&1i32.to_be_bytes()); // partitions
    body.extend_from_slice(&[0; 10]); // error_code, partition_index, leader_id
    body.extend_from_slice(&(n as i32).to_be_bytes()); // replica_nodes
    body.resize(body.len() + 4 * n, 0);
    body.extend_from_slice(&0i32.to_be_bytes()); // isr_nodes
    check_exact(Direction::Response, key, 0, &body);
}

/// Synthetic tables for the defensive paths the generated tables cannot reach.
static LOOP: &[StructSchema] = &[StructSchema {
    name: "Loop",
    flex: None,
    fields: &[Field {
        tag: None,
        min: 0,
        max: 0,
        kind: Kind::OptionStruct("Loop"),
    }],
}];
static DANGLING: &[StructSchema] = &[StructSchema {
    name: "Top",
    flex: None,
    fields: &[Field {
        tag: None,
        min: 0,
        max: 0,
        kind: Kind::Struct("Gone"),
    }],
}];

#[test]
fn nesting_and_missing_layouts_are_refused() {
    let deep = [1u8; 64];
    let mut w = Walker::new(&deep, LOOP, 0, MAX_REQUEST_ELEMENTS);
    assert_eq!(w.walk_struct(&LOOP[0], 0), Err(WireError::TooDeep));
    let shallow = [1, 1, 0];
    let mut w = Walker::new(&shallow, LOOP, 0, MAX_REQUEST_ELEMENTS);
    assert_eq!(w.walk_struct(&LOOP[0], 0), Ok(()));
    assert_eq!(w.left(), 0);
    let mut w = Walker::new(&[], DANGLING, 0, MAX_REQUEST_ELEMENTS);
    assert_eq!(
        w.walk_struct(&DANGLING[0], 0),
        Err(WireError::MissingLayout("Gone"))
    );
}

/// Every struct a table names exists in its entry, and every entry starts with its message.
#[test]
fn tables_are_closed_under_struct_references() {
    for (dir, table) in [
        (Direction::Request, schema::REQUESTS),
        (Direction::Response, schema::RESPONSES),
    ] {
        for (key, structs) in table {
            let top = structs[0].name;
            let suffix = match dir {
                Direction::Request => "Request",
                Direction::Response => "Response",
            };
            assert!(
                top.ends_with(suffix) || *key == CONSUMER_ASSIGNMENT,
                "{key}: {top}"
            );
            for st in *structs {
                for f in st.fields {
                    let named = match f.kind {
                        Kind::Struct(n) | Kind::OptionStruct(n) => Some(n),
                        Kind::Array(Elem::Struct(n)) | Kind::CArray(Elem::Struct(n)) => Some(n),
                        _ => None,
                    };
                    if let Some(n) = named {
                        assert!(structs.iter().any(|x| x.name == n), "{key}: {n}");
                    }
                }
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn never_panics_on_any_bytes(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        v in -1i16..20,
    ) {
        for (key, _) in schema::REQUESTS {
            let _ = check_request(*key, v, &data);
        }
        for (key, _) in schema::RESPONSES {
            let _ = check_response(*key, v, &data);
        }
    }

}
