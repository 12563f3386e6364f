//! The admin client against a tiny fake broker on 127.0.0.1:0 that answers canned
//! kafka-protocol responses: version negotiation, error decoding, framing checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::FindCoordinatorResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchResponse, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, OffsetCommitResponse, OffsetFetchResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes, decode_request_header_from_buffer};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use waterline_admin::ClientError;
use waterline_admin::client::{AdminClient, ClientConfig, OffsetSpec};
use waterline_core::TopicPartition;

/// What the fake answers: raw response body bytes (after the response header), or a fully
/// raw frame to test framing errors.
enum Reply {
    Body(Bytes),
    RawFrame(Vec<u8>),
}

type Handler = Box<dyn Fn(&RequestHeader, &mut Bytes) -> Reply + Send + Sync>;

struct Fake {
    addr: String,
    /// (api key, version) of every request received.
    seen: Arc<Mutex<Vec<(i16, i16)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn encode<T: Encodable>(msg: &T, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version).unwrap();
    buf.freeze()
}

async fn start(handler: Handler) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let seen = seen2.clone();
            tokio::spawn(async move {
                loop {
                    let Ok(size) = sock.read_i32().await else {
                        return;
                    };
                    let mut buf = vec![0u8; size as usize];
                    if sock.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                    let mut bytes = Bytes::from(buf);
                    let header = decode_request_header_from_buffer(&mut bytes).unwrap();
                    seen.lock()
                        .unwrap()
                        .push((header.request_api_key, header.request_api_version));
                    let frame = match handler(&header, &mut bytes) {
                        Reply::RawFrame(f) => f,
                        Reply::Body(body) => {
                            let api = ApiKey::try_from(header.request_api_key).unwrap();
                            let hv = api.response_header_version(header.request_api_version);
                            let mut out = BytesMut::new();
                            ResponseHeader::default()
                                .with_correlation_id(header.correlation_id)
                                .encode(&mut out, hv)
                                .unwrap();
                            out.extend_from_slice(&body);
                            let mut f = Vec::new();
                            f.put_i32(out.len() as i32);
                            f.extend_from_slice(&out);
                            f
                        }
                    };
                    if sock.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Fake { addr, seen, task }
}

fn versions(keys: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        keys.iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

fn answer_api_versions(h: &RequestHeader, keys: &[(ApiKey, i16, i16)]) -> Reply {
    Reply::Body(encode(&versions(keys), h.request_api_version))
}

fn metadata(port: i32, topic: &str, partitions: i32) -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(port),
        ])
        .with_topics(vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))
                .with_partitions(
                    (0..partitions)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(1))
                        })
                        .collect(),
                ),
        ])
}

fn port_of(addr: &str) -> i32 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

async fn client(fake: &Fake) -> AdminClient {
    AdminClient::connect(ClientConfig::new([fake.addr.clone()]))
        .await
        .unwrap()
}

/// A fake whose port is only known after binding: handlers read it from this cell.
fn port_cell() -> Arc<Mutex<i32>> {
    Arc::new(Mutex::new(0))
}

#[tokio::test]
async fn negotiates_the_highest_common_version_per_api() {
    let port = port_cell();
    let p2 = port.clone();
    let fake = start(Box::new(move |h, body| {
        match ApiKey::try_from(h.request_api_key) {
            Ok(ApiKey::ApiVersions) => answer_api_versions(
                h,
                &[
                    (ApiKey::ApiVersions, 0, 3),
                    (ApiKey::Metadata, 0, 9),
                    (ApiKey::ListOffsets, 1, 3),
                ],
            ),
            Ok(ApiKey::Metadata) => {
                // The request must decode at the version the header names.
                let req = MetadataRequest::decode(body, h.request_api_version).unwrap();
                assert!(!req.allow_auto_topic_creation);
                Reply::Body(encode(
                    &metadata(*p2.lock().unwrap(), "t", 2),
                    h.request_api_version,
                ))
            }
            _ => panic!("unexpected request {}", h.request_api_key),
        }
    }))
    .await;
    *port.lock().unwrap() = port_of(&fake.addr);
    let mut c = client(&fake).await;
    assert_eq!(c.broker_versions(ApiKey::Metadata), Some((0, 9)));
    assert_eq!(c.negotiated_version::<MetadataRequest>().unwrap(), 9);
    let meta = c.metadata(Some(&["t".to_string()])).await.unwrap();
    assert_eq!(meta.topic("t").unwrap().partitions.len(), 2);
    assert_eq!(meta.brokers[0].port, port_of(&fake.addr));
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen, vec![(18, 3), (3, 9)]);
}

#[tokio::test]
async fn falls_back_when_the_broker_does_not_know_api_versions_v3() {
    let fake = start(Box::new(|h, _| {
        if h.request_api_version > 2 {
            // Like Kafka: a v0 body carrying UNSUPPORTED_VERSION and the broker's key list.
            let body = versions(&[(ApiKey::ApiVersions, 0, 2), (ApiKey::Metadata, 0, 5)])
                .with_error_code(35);
            Reply::Body(encode(&body, 0))
        } else {
            panic!("client should not resend ApiVersions")
        }
    }))
    .await;
    let c = client(&fake).await;
    assert_eq!(c.broker_versions(ApiKey::Metadata), Some((0, 5)));
    assert_eq!(c.negotiated_version::<MetadataRequest>().unwrap(), 5);
}

#[tokio::test]
async fn missing_or_disjoint_apis_fail_clearly() {
    let fake = start(Box::new(|h, _| {
        answer_api_versions(
            h,
            &[
                (ApiKey::ApiVersions, 0, 3),
                (ApiKey::FindCoordinator, 0, 4),
                (ApiKey::OffsetCommit, 0, 1),
            ],
        )
    }))
    .await;
    let c = client(&fake).await;
    let err = c
        .negotiated_version::<kafka_protocol::messages::OffsetCommitRequest>()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "OffsetCommit: no common version (client supports 2..=8, broker supports 0..=1)"
    );
    let err = c
        .negotiated_version::<kafka_protocol::messages::OffsetDeleteRequest>()
        .unwrap_err();
    assert!(matches!(err, ClientError::NoCommonVersion { .. }), "{err}");
    assert!(err.to_string().contains("does not advertise it"), "{err}");
}

fn group_fake(port: Arc<Mutex<i32>>, commit_code: i16, not_coordinator_first: bool) -> Handler {
    let calls = Arc::new(Mutex::new(0u32));
    // The port cell is filled right after binding; FindCoordinator answers with it.
    Box::new(move |h: &RequestHeader, _: &mut Bytes| {
        let v = h.request_api_version;
        match ApiKey::try_from(h.request_api_key).unwrap() {
            ApiKey::ApiVersions => answer_api_versions(
                h,
                &[
                    (ApiKey::ApiVersions, 0, 3),
                    (ApiKey::FindCoordinator, 0, 3),
                    (ApiKey::OffsetFetch, 1, 7),
                    (ApiKey::OffsetCommit, 2, 8),
                ],
            ),
            ApiKey::FindCoordinator => {
                let p = *port.lock().unwrap();
                Reply::Body(encode(
                    &FindCoordinatorResponse::default()
                        .with_node_id(BrokerId(1))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(p),
                    v,
                ))
            }
            ApiKey::OffsetFetch => {
                let mut n = calls.lock().unwrap();
                *n += 1;
                let code = if not_coordinator_first && *n == 1 {
                    16
                } else {
                    0
                };
                Reply::Body(encode(
                    &OffsetFetchResponse::default()
                        .with_error_code(code)
                        .with_topics(vec![
                            OffsetFetchResponseTopic::default()
                                .with_name(TopicName(StrBytes::from_static_str("t")))
                                .with_partitions(vec![
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(0)
                                        .with_committed_offset(42)
                                        .with_metadata(Some(StrBytes::from_static_str("m"))),
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(1)
                                        .with_committed_offset(-1),
                                ]),
                        ]),
                    v,
                ))
            }
            ApiKey::OffsetCommit => Reply::Body(encode(
                &OffsetCommitResponse::default().with_topics(vec![
                    OffsetCommitResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(vec![
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(0)
                                .with_error_code(commit_code),
                        ]),
                ]),
                v,
            )),
            other => panic!("unexpected {other:?}"),
        }
    })
}

async fn start_group_fake(commit_code: i16, not_coordinator_first: bool) -> Fake {
    let cell = port_cell();
    let fake = start(group_fake(cell.clone(), commit_code, not_coordinator_first)).await;
    *cell.lock().unwrap() = port_of(&fake.addr);
    fake
}

#[tokio::test]
async fn offset_fetch_retries_after_not_coordinator_and_skips_missing_commits() {
    let fake = start_group_fake(0, true).await;
    let mut c = client(&fake).await;
    let offsets = c.offset_fetch("g", None).await.unwrap();
    assert_eq!(offsets.len(), 1);
    let committed = &offsets[&TopicPartition::new("t", 0)];
    assert_eq!(committed.offset, 42);
    assert_eq!(committed.metadata, "m");
    let seen = fake.seen.lock().unwrap().clone();
    // ApiVersions, FindCoordinator, OffsetFetch (NOT_COORDINATOR), FindCoordinator, OffsetFetch.
    let keys: Vec<i16> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, vec![18, 10, 9, 10, 9]);
    assert!(seen.contains(&(9, 7)));
}

#[tokio::test]
async fn commit_errors_are_named_per_partition() {
    let fake = start_group_fake(25, false).await;
    let mut c = client(&fake).await;
    let offsets = BTreeMap::from([(TopicPartition::new("t", 0), 5)]);
    let failures = c.offset_commit("g", &offsets).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].code, 25);
    assert_eq!(
        waterline_admin::codes::describe(failures[0].code),
        "UNKNOWN_MEMBER_ID (code 25)"
    );
    let fake = start_group_fake(0, false).await;
    let mut c = client(&fake).await;
    assert!(c.offset_commit("g", &offsets).await.unwrap().is_empty());
}

fn offsets_fake(port: Arc<Mutex<i32>>, list_code: i16) -> Handler {
    Box::new(move |h: &RequestHeader, _: &mut Bytes| {
        let v = h.request_api_version;
        match ApiKey::try_from(h.request_api_key).unwrap() {
            ApiKey::ApiVersions => answer_api_versions(
                h,
                &[
                    (ApiKey::ApiVersions, 0, 3),
                    (ApiKey::Metadata, 0, 12),
                    (ApiKey::ListOffsets, 1, 10),
                    (ApiKey::Fetch, 4, 17),
                ],
            ),
            ApiKey::Metadata => Reply::Body(encode(&metadata(*port.lock().unwrap(), "t", 1), v)),
            ApiKey::ListOffsets => Reply::Body(encode(
                &ListOffsetsResponse::default().with_topics(vec![
                    ListOffsetsTopicResponse::default()
                        .with_name(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(vec![
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(0)
                                .with_error_code(list_code)
                                .with_offset(17),
                        ]),
                ]),
                v,
            )),
            ApiKey::Fetch => {
                let records: Vec<Record> = (0..3)
                    .map(|i| Record {
                        transactional: false,
                        control: false,
                        delete_horizon: false,
                        partition_leader_epoch: 0,
                        producer_id: -1,
                        producer_epoch: -1,
                        timestamp_type: TimestampType::Creation,
                        offset: 10 + i,
                        sequence: -1,
                        timestamp: 5_000 + 100 * i,
                        key: None,
                        value: Some(Bytes::from_static(b"v")),
                        headers: Default::default(),
                    })
                    .collect();
                let mut batch = BytesMut::new();
                RecordBatchEncoder::encode(
                    &mut batch,
                    &records,
                    &RecordEncodeOptions {
                        version: 2,
                        compression: Compression::Gzip,
                    },
                )
                .unwrap();
                Reply::Body(encode(
                    &FetchResponse::default().with_responses(vec![
                        FetchableTopicResponse::default()
                            .with_topic(TopicName(StrBytes::from_static_str("t")))
                            .with_partitions(vec![
                                PartitionData::default()
                                    .with_partition_index(0)
                                    .with_high_watermark(13)
                                    .with_records(Some(batch.freeze())),
                            ]),
                    ]),
                    v,
                ))
            }
            other => panic!("unexpected {other:?}"),
        }
    })
}

#[tokio::test]
async fn list_offsets_and_fetch_a_compressed_record() {
    let port = port_cell();
    let fake = start(offsets_fake(port.clone(), 0)).await;
    *port.lock().unwrap() = port_of(&fake.addr);
    let mut c = client(&fake).await;
    let tp = TopicPartition::new("t", 0);
    let offs = c
        .list_offsets(&[(tp.clone(), OffsetSpec::Latest)])
        .await
        .unwrap();
    assert_eq!(offs[&tp], Some(17));
    let rec = c.fetch_record(&tp, 11).await.unwrap().unwrap();
    assert_eq!((rec.offset, rec.timestamp_ms), (11, 5_100));
    let seen = fake.seen.lock().unwrap().clone();
    assert!(seen.contains(&(2, 7)), "ListOffsets capped at v7: {seen:?}");
    assert!(seen.contains(&(1, 12)), "Fetch capped at v12: {seen:?}");
}

#[tokio::test]
async fn partition_errors_name_the_partition_and_code() {
    let port = port_cell();
    let fake = start(offsets_fake(port.clone(), 3)).await;
    *port.lock().unwrap() = port_of(&fake.addr);
    let mut c = client(&fake).await;
    let err = c
        .list_offsets(&[(TopicPartition::new("t", 0), OffsetSpec::Earliest)])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ListOffsets failed for topic t partition 0: UNKNOWN_TOPIC_OR_PARTITION (code 3)"
    );
    assert_eq!(err.kafka_code(), Some(3));
}

#[tokio::test]
async fn oversized_frames_and_wrong_correlation_ids_are_refused() {
    let fake = start(Box::new(|h, _| {
        match ApiKey::try_from(h.request_api_key).unwrap() {
            ApiKey::ApiVersions => {
                answer_api_versions(h, &[(ApiKey::ApiVersions, 0, 3), (ApiKey::Metadata, 0, 12)])
            }
            _ => Reply::RawFrame(i32::MAX.to_be_bytes().to_vec()),
        }
    }))
    .await;
    let mut config = ClientConfig::new([fake.addr.clone()]);
    config.max_frame_bytes = 1 << 20;
    let mut c = AdminClient::connect(config).await.unwrap();
    let err = c.metadata(None).await.unwrap_err();
    assert!(matches!(err, ClientError::FrameSize { .. }), "{err}");
    assert!(err.to_string().contains("2147483647"), "{err}");

    let fake = start(Box::new(|h, _| {
        match ApiKey::try_from(h.request_api_key).unwrap() {
            ApiKey::ApiVersions => {
                answer_api_versions(h, &[(ApiKey::ApiVersions, 0, 3), (ApiKey::Metadata, 0, 12)])
            }
            _ => {
                let mut out = BytesMut::new();
                out.put_i32(8);
                out.put_i32(h.correlation_id + 100);
                out.put_i32(0);
                Reply::RawFrame(out.to_vec())
            }
        }
    }))
    .await;
    let mut c = client(&fake).await;
    let err = c.metadata(None).await.unwrap_err();
    assert!(matches!(err, ClientError::Correlation { .. }), "{err}");
}

#[tokio::test]
async fn truncated_bodies_are_decode_errors() {
    let fake = start(Box::new(|h, _| {
        match ApiKey::try_from(h.request_api_key).unwrap() {
            ApiKey::ApiVersions => {
                answer_api_versions(h, &[(ApiKey::ApiVersions, 0, 3), (ApiKey::Metadata, 0, 12)])
            }
            _ => Reply::Body(Bytes::from_static(&[0, 0, 0])),
        }
    }))
    .await;
    let mut c = client(&fake).await;
    let err = c.metadata(None).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err}");
    assert!(err.to_string().starts_with("Metadata v12 from"), "{err}");
}

#[tokio::test]
async fn unreachable_bootstrap_is_reported() {
    // Bind then drop to get a port with nothing listening.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let err = AdminClient::connect(ClientConfig::new([addr.clone()]))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot reach any bootstrap server"),
        "{err}"
    );
}

#[tokio::test]
async fn element_counts_the_body_cannot_hold_are_refused_before_decoding() {
    // Without the guard, kafka-protocol would reserve 2^31 - 1 brokers and abort.
    let fake = start(Box::new(|h, _| {
        match ApiKey::try_from(h.request_api_key).unwrap() {
            ApiKey::ApiVersions => {
                answer_api_versions(h, &[(ApiKey::ApiVersions, 0, 3), (ApiKey::Metadata, 0, 1)])
            }
            _ => {
                let mut body = BytesMut::new();
                body.put_i32(i32::MAX);
                body.put_slice(&[0; 32]);
                Reply::Body(body.freeze())
            }
        }
    }))
    .await;
    let mut c = client(&fake).await;
    let err = c.metadata(None).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err}");
    assert!(
        err.to_string().contains("claims 2147483647 elements"),
        "{err}"
    );
}
