//! decode_request: every served API decodes at every advertised version (the pre-decode guard
//! agrees with kafka-protocol), and arbitrary or mutated frames never panic or over-allocate.

mod common;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use proptest::prelude::*;
use waterline_broker::decode_request;
use waterline_broker::handlers::SUPPORTED;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn frame(key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = 3;
    h.client_id = Some(s("c"));
    h.encode(&mut buf, key.request_header_version(version))
        .ok()?;
    body.encode(&mut buf, version).ok()?;
    Some(buf.to_vec())
}

/// A request of each served API with nested arrays populated.
fn populated(key: ApiKey, version: i16) -> RequestKind {
    let two = |n: &str| vec![TopicName(s(n)), TopicName(s("other"))];
    match key {
        ApiKey::Produce => {
            let mut p = PartitionProduceData::default();
            p.index = 1;
            p.records = Some(Bytes::from_static(b"opaque"));
            let mut t = TopicProduceData::default();
            t.name = TopicName(s("t"));
            t.partition_data = vec![p.clone(), p];
            let mut r = ProduceRequest::default();
            r.acks = -1;
            r.topic_data = vec![t];
            r.into()
        }
        ApiKey::Fetch => {
            let mut p = FetchPartition::default();
            p.fetch_offset = 5;
            let mut t = FetchTopic::default();
            t.topic = TopicName(s("t"));
            t.partitions = vec![p.clone(), p];
            let mut f = ForgottenTopic::default();
            f.topic = TopicName(s("f"));
            f.partitions = vec![1, 2, 3];
            let mut r = FetchRequest::default();
            r.topics = vec![t.clone(), t];
            if version >= 7 {
                r.forgotten_topics_data = vec![f];
            }
            if version >= 12 {
                r.cluster_id = Some(s("cluster"));
            }
            r.into()
        }
        ApiKey::ListOffsets => {
            let mut p = ListOffsetsPartition::default();
            p.timestamp = -1;
            let mut t = ListOffsetsTopic::default();
            t.name = TopicName(s("t"));
            t.partitions = vec![p.clone(), p];
            let mut r = ListOffsetsRequest::default();
            r.topics = vec![t];
            r.into()
        }
        ApiKey::Metadata => {
            let mut r = MetadataRequest::default();
            r.topics = Some(
                two("t")
                    .into_iter()
                    .map(|n| {
                        let mut t = MetadataRequestTopic::default();
                        t.name = Some(n);
                        t
                    })
                    .collect(),
            );
            r.into()
        }
        ApiKey::CreateTopics => {
            let mut c = CreatableTopicConfig::default();
            c.name = s("retention.ms");
            c.value = Some(s("1"));
            let mut t = CreatableTopic::default();
            t.name = TopicName(s("t"));
            t.num_partitions = 2;
            t.replication_factor = 1;
            t.configs = vec![c.clone(), c];
            let mut r = CreateTopicsRequest::default();
            r.topics = vec![t];
            r.into()
        }
        ApiKey::DeleteTopics => {
            let mut r = DeleteTopicsRequest::default();
            if version >= 6 {
                let mut t = DeleteTopicState::default();
                t.name = Some(TopicName(s("t")));
                r.topics = vec![t.clone(), t];
            } else {
                r.topic_names = two("t");
            }
            r.into()
        }
        ApiKey::CreatePartitions => {
            let mut t = CreatePartitionsTopic::default();
            t.name = TopicName(s("t"));
            t.count = 3;
            let mut r = CreatePartitionsRequest::default();
            r.topics = vec![t.clone(), t];
            r.into()
        }
        ApiKey::DescribeConfigs => {
            let mut res = DescribeConfigsResource::default();
            res.resource_type = 2;
            res.resource_name = s("t");
            res.configuration_keys = Some(vec![s("a"), s("b")]);
            let mut r = DescribeConfigsRequest::default();
            r.resources = vec![res.clone(), res];
            r.into()
        }
        ApiKey::InitProducerId => InitProducerIdRequest::default().into(),
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsRequest::default();
            r.client_software_name = s("x");
            r.client_software_version = s("1");
            r.into()
        }
        // Consumer-group APIs (their own tests live beside their handlers): defaults.
        ApiKey::OffsetCommit => OffsetCommitRequest::default().into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default().into(),
        ApiKey::FindCoordinator => FindCoordinatorRequest::default().into(),
        ApiKey::JoinGroup => JoinGroupRequest::default().into(),
        ApiKey::SyncGroup => SyncGroupRequest::default().into(),
        ApiKey::Heartbeat => HeartbeatRequest::default().into(),
        ApiKey::LeaveGroup => LeaveGroupRequest::default().into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default().into(),
        ApiKey::ListGroups => ListGroupsRequest::default().into(),
        ApiKey::DeleteGroups => DeleteGroupsRequest::default().into(),
        ApiKey::OffsetDelete => OffsetDeleteRequest::default().into(),
        ApiKey::AlterConfigs => {
            use kafka_protocol::messages::alter_configs_request::{
                AlterConfigsResource, AlterableConfig,
            };
            let mut c = AlterableConfig::default();
            c.name = s("retention.ms");
            c.value = Some(s("1000"));
            let mut res = AlterConfigsResource::default();
            res.resource_type = 2;
            res.resource_name = s("t");
            res.configs = vec![c.clone(), c];
            let mut r = AlterConfigsRequest::default();
            r.resources = vec![res];
            r.into()
        }
        ApiKey::IncrementalAlterConfigs => {
            use kafka_protocol::messages::incremental_alter_configs_request::{
                AlterConfigsResource, AlterableConfig,
            };
            let mut c = AlterableConfig::default();
            c.name = s("cleanup.policy");
            c.config_operation = 2;
            c.value = Some(s("compact"));
            let mut res = AlterConfigsResource::default();
            res.resource_type = 2;
            res.resource_name = s("t");
            res.configs = vec![c];
            let mut r = IncrementalAlterConfigsRequest::default();
            r.resources = vec![res.clone(), res];
            r.into()
        }
        ApiKey::DeleteRecords => {
            use kafka_protocol::messages::delete_records_request::{
                DeleteRecordsPartition, DeleteRecordsTopic,
            };
            let mut p = DeleteRecordsPartition::default();
            p.partition_index = 1;
            p.offset = 5;
            let mut t = DeleteRecordsTopic::default();
            t.name = TopicName(s("t"));
            t.partitions = vec![p.clone(), p];
            let mut r = DeleteRecordsRequest::default();
            r.topics = vec![t];
            r.into()
        }
        ApiKey::DescribeLogDirs => {
            use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
            let mut t = DescribableLogDirTopic::default();
            t.topic = TopicName(s("t"));
            t.partitions = vec![0, 1, 2];
            let mut r = DescribeLogDirsRequest::default();
            r.topics = Some(vec![t.clone(), t]);
            r.into()
        }
        ApiKey::AddPartitionsToTxn => {
            use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
            let mut t = AddPartitionsToTxnTopic::default();
            t.name = TopicName(s("t"));
            t.partitions = vec![0, 1];
            let mut r = AddPartitionsToTxnRequest::default();
            r.v3_and_below_transactional_id = TransactionalId(s("tx"));
            r.v3_and_below_producer_id = ProducerId(7);
            r.v3_and_below_topics = vec![t.clone(), t];
            r.into()
        }
        ApiKey::AddOffsetsToTxn => {
            let mut r = AddOffsetsToTxnRequest::default();
            r.transactional_id = TransactionalId(s("tx"));
            r.group_id = GroupId(s("g"));
            r.into()
        }
        ApiKey::EndTxn => {
            let mut r = EndTxnRequest::default();
            r.transactional_id = TransactionalId(s("tx"));
            r.committed = true;
            r.into()
        }
        ApiKey::TxnOffsetCommit => {
            use kafka_protocol::messages::txn_offset_commit_request::{
                TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
            };
            let mut p = TxnOffsetCommitRequestPartition::default();
            p.partition_index = 1;
            p.committed_offset = 5;
            p.committed_metadata = Some(s("m"));
            let mut t = TxnOffsetCommitRequestTopic::default();
            t.name = TopicName(s("t"));
            t.partitions = vec![p.clone(), p];
            let mut r = TxnOffsetCommitRequest::default();
            r.transactional_id = TransactionalId(s("tx"));
            r.group_id = GroupId(s("g"));
            r.topics = vec![t];
            r.into()
        }
        ApiKey::DescribeProducers => {
            use kafka_protocol::messages::describe_producers_request::TopicRequest;
            let mut t = TopicRequest::default();
            t.name = TopicName(s("t"));
            t.partition_indexes = vec![0, 1];
            let mut r = DescribeProducersRequest::default();
            r.topics = vec![t.clone(), t];
            r.into()
        }
        ApiKey::DescribeTransactions => {
            let mut r = DescribeTransactionsRequest::default();
            r.transactional_ids = vec![TransactionalId(s("a")), TransactionalId(s("b"))];
            r.into()
        }
        ApiKey::ListTransactions => {
            let mut r = ListTransactionsRequest::default();
            r.state_filters = vec![s("Ongoing")];
            r.producer_id_filters = vec![ProducerId(1), ProducerId(2)];
            r.into()
        }
        ApiKey::OffsetForLeaderEpoch => {
            use kafka_protocol::messages::offset_for_leader_epoch_request::{
                OffsetForLeaderPartition, OffsetForLeaderTopic,
            };
            let mut p = OffsetForLeaderPartition::default();
            p.partition = 1;
            p.leader_epoch = 0;
            let mut t = OffsetForLeaderTopic::default();
            t.topic = TopicName(s("t"));
            t.partitions = vec![p.clone(), p];
            let mut r = OffsetForLeaderEpochRequest::default();
            r.topics = vec![t];
            r.into()
        }
        ApiKey::SaslHandshake => {
            let mut r = SaslHandshakeRequest::default();
            r.mechanism = s("SCRAM-SHA-256");
            r.into()
        }
        ApiKey::SaslAuthenticate => {
            let mut r = SaslAuthenticateRequest::default();
            r.auth_bytes = bytes::Bytes::from_static(b"n,,n=u,r=nonce");
            r.into()
        }
        ApiKey::DescribeUserScramCredentials => {
            use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
            let mut u = UserName::default();
            u.name = s("alice");
            let mut r = DescribeUserScramCredentialsRequest::default();
            r.users = Some(vec![u.clone(), u]);
            r.into()
        }
        ApiKey::AlterUserScramCredentials => {
            use kafka_protocol::messages::alter_user_scram_credentials_request::{
                ScramCredentialDeletion, ScramCredentialUpsertion,
            };
            let mut d = ScramCredentialDeletion::default();
            d.name = s("bob");
            d.mechanism = 1;
            let mut u = ScramCredentialUpsertion::default();
            u.name = s("alice");
            u.mechanism = 2;
            u.iterations = 4096;
            u.salt = bytes::Bytes::from_static(b"salt");
            u.salted_password = bytes::Bytes::from(vec![7u8; 64]);
            let mut r = AlterUserScramCredentialsRequest::default();
            r.deletions = vec![d];
            r.upsertions = vec![u.clone(), u];
            r.into()
        }
        other => panic!("no sample for {other:?}"),
    }
}

#[test]
fn every_served_api_decodes_at_every_version() {
    let mut checked = 0;
    for &(key, range) in SUPPORTED {
        for v in range.min..=range.max {
            let req = populated(key, v);
            let f = frame(key, v, &req).expect("encodes");
            let (h, decoded) =
                decode_request(&f).unwrap_or_else(|e| panic!("{key:?} v{v} rejected: {e}"));
            assert_eq!(h.correlation_id, 3);
            // Re-encoding the decoded request gives the same frame: nothing was skipped.
            assert_eq!(frame(key, v, &decoded).unwrap(), f, "{key:?} v{v}");
            checked += 1;
        }
    }
    assert!(checked > 60, "{checked}");
}

#[test]
fn truncations_of_valid_frames_are_errors_not_panics() {
    for &(key, range) in SUPPORTED {
        for v in range.min..=range.max {
            let f = frame(key, v, &populated(key, v)).unwrap();
            for cut in 0..f.len() {
                let _ = decode_request(&f[..cut]);
            }
        }
    }
}

/// Every valid frame of every served API/version, for mutation.
fn corpus() -> Vec<Vec<u8>> {
    SUPPORTED
        .iter()
        .flat_map(|&(key, range)| {
            (range.min..=range.max).filter_map(move |v| frame(key, v, &populated(key, v)))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_request(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let corpus = corpus();
        let mut f = corpus[which.index(corpus.len())].clone();
        for (at, byte) in edits {
            let i = at.index(f.len());
            f[i] = byte;
        }
        let _ = decode_request(&f);
    }

    #[test]
    fn huge_counts_anywhere_are_refused(
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        count in prop_oneof![Just(i32::MAX), Just(0x7fff_0000), Just(-2i32)],
    ) {
        let corpus = corpus();
        let mut f = corpus[which.index(corpus.len())].clone();
        prop_assume!(f.len() >= 12);
        let i = 8 + at.index(f.len() - 11);
        f[i..i + 4].copy_from_slice(&count.to_be_bytes());
        // Must return (Ok or Err) without aborting on a giant allocation.
        let _ = decode_request(&f);
    }
}

/// Every served API answers every served version with a response that decodes in that
/// version's schema (kafka-protocol refuses to encode fields a version lacks, which would
/// otherwise close the connection).
#[tokio::test]
async fn every_served_version_gets_a_decodable_response() {
    let b = common::TestBroker::start().await;
    let mut c = b.client().await;
    for &(key, range) in SUPPORTED {
        for v in range.min..=range.max {
            let mut req = populated(key, v);
            if let RequestKind::Fetch(f) = &mut req {
                f.max_wait_ms = 0;
            }
            if let RequestKind::JoinGroup(j) = &mut req {
                // A join with no protocols is refused at once instead of waiting for a rebalance.
                j.session_timeout_ms = 10;
            }
            let f = frame(key, v, &req).unwrap();
            c.send_raw_frame(&f).await;
            let mut resp = c
                .read_frame()
                .await
                .unwrap_or_else(|| panic!("{key:?} v{v}: no response"));
            let h = ResponseHeader::decode(&mut resp, key.response_header_version(v)).unwrap();
            assert_eq!(h.correlation_id, 3, "{key:?} v{v}");
            ResponseKind::decode(key, &mut resp, v)
                .unwrap_or_else(|e| panic!("{key:?} v{v}: response does not decode: {e}"));
        }
    }
    b.stop().await;
}

/// A Produce or Fetch or Metadata or ListOffsets request of random shape.
fn random_request(
    key_pick: u8,
    names: &[String],
    parts: &[i32],
    blob: &[u8],
) -> (ApiKey, RequestKind) {
    let topic = |n: &String| TopicName(s(n));
    match key_pick % 4 {
        0 => {
            let mut r = ProduceRequest::default();
            r.acks = 1;
            r.topic_data = names
                .iter()
                .map(|n| {
                    let mut t = TopicProduceData::default();
                    t.name = topic(n);
                    t.partition_data = parts
                        .iter()
                        .map(|&i| {
                            let mut p = PartitionProduceData::default();
                            p.index = i;
                            p.records = Some(Bytes::copy_from_slice(blob));
                            p
                        })
                        .collect();
                    t
                })
                .collect();
            (ApiKey::Produce, r.into())
        }
        1 => {
            let mut r = FetchRequest::default();
            r.topics = names
                .iter()
                .map(|n| {
                    let mut t = FetchTopic::default();
                    t.topic = topic(n);
                    t.partitions = parts
                        .iter()
                        .map(|&i| {
                            let mut p = FetchPartition::default();
                            p.partition = i;
                            p.fetch_offset = i64::from(i) * 1000;
                            p
                        })
                        .collect();
                    t
                })
                .collect();
            (ApiKey::Fetch, r.into())
        }
        2 => {
            let mut r = MetadataRequest::default();
            r.topics = if names.is_empty() {
                None
            } else {
                Some(
                    names
                        .iter()
                        .map(|n| {
                            let mut t = MetadataRequestTopic::default();
                            t.name = Some(topic(n));
                            t
                        })
                        .collect(),
                )
            };
            (ApiKey::Metadata, r.into())
        }
        _ => {
            let mut r = ListOffsetsRequest::default();
            r.topics = names
                .iter()
                .map(|n| {
                    let mut t = ListOffsetsTopic::default();
                    t.name = topic(n);
                    t.partitions = parts
                        .iter()
                        .map(|&i| {
                            let mut p = ListOffsetsPartition::default();
                            p.partition_index = i;
                            p.timestamp = -2;
                            p
                        })
                        .collect();
                    t
                })
                .collect();
            (ApiKey::ListOffsets, r.into())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The guard accepts every well-formed request kafka-protocol encodes, whatever its shape:
    /// it walks exactly the bytes kafka-protocol writes.
    #[test]
    fn random_valid_requests_pass_the_guard(
        key_pick in any::<u8>(),
        version_pick in any::<prop::sample::Index>(),
        names in proptest::collection::vec("[a-zA-Z0-9._-]{1,40}", 0..6),
        parts in proptest::collection::vec(0i32..1000, 0..6),
        blob in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (key, req) = random_request(key_pick, &names, &parts, &blob);
        let range = SUPPORTED.iter().find(|(k, _)| *k == key).unwrap().1;
        let span = (range.max - range.min + 1) as usize;
        let v = range.min + version_pick.index(span) as i16;
        let f = frame(key, v, &req).unwrap();
        let decoded = decode_request(&f);
        prop_assert!(decoded.is_ok(), "{:?} v{}: {:?}", key, v, decoded.err());
        let (_, back) = decoded.unwrap();
        prop_assert_eq!(frame(key, v, &back).unwrap(), f);
    }
}
