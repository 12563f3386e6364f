//! End-to-end tests over TCP against an in-process broker.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn fetch_req(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = name(topic);
    t.partitions = vec![p];
    let mut r = FetchRequest::default();
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = 1;
    r.max_bytes = 1 << 20;
    r.topics = vec![t];
    r
}

fn list_offsets_req(topic: &str, ts: i64) -> ListOffsetsRequest {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = ts;
    let mut t = ListOffsetsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut r = ListOffsetsRequest::default();
    r.topics = vec![t];
    r
}

fn metadata_req(topic: &str) -> MetadataRequest {
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name(topic));
    let mut r = MetadataRequest::default();
    r.topics = Some(vec![t]);
    r.allow_auto_topic_creation = true;
    r
}

async fn fetch_all(c: &mut Client, topic: &str, offset: i64) -> Bytes {
    let r: FetchResponse = c
        .call(ApiKey::Fetch, 11, &fetch_req(topic, offset, 0))
        .await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.records.clone().unwrap()
}

async fn list_offset(c: &mut Client, topic: &str, ts: i64) -> (i64, i64) {
    let r: ListOffsetsResponse = c
        .call(ApiKey::ListOffsets, 7, &list_offsets_req(topic, ts))
        .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.offset, p.timestamp)
}

/// Shifts the base offset of every batch in `b` by `base` (the encoder numbers records from 0;
/// the broker assigns offsets from the log end).
fn with_base(b: &Bytes, base: i64) -> Vec<u8> {
    let mut v = b.to_vec();
    let mut pos = 0;
    while pos < v.len() {
        let orig = base_offset(&v[pos..]);
        v[pos..pos + 8].copy_from_slice(&(base + orig).to_be_bytes());
        let len = i32::from_be_bytes(v[pos + 8..pos + 12].try_into().unwrap()) as usize;
        pos += 12 + len;
    }
    v
}

#[tokio::test]
async fn produce_and_fetch_back_identical_batches_in_every_codec() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let md: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("t")).await;
    assert_eq!(md.topics[0].error_code, 0, "auto-created");
    let mut expected = Vec::new();
    let mut next = 0;
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = batch(&records(3, 1_000), codec);
        let r = produce(&mut c, "t", batch.clone()).await;
        assert_eq!(r.error_code, 0, "{codec:?}: {:?}", r.error_message);
        assert_eq!(r.base_offset, next);
        expected.extend(with_base(&batch, next));
        next += 3;
    }
    let got = fetch_all(&mut c, "t", 0).await;
    assert_eq!(
        &got[..],
        &expected[..],
        "stored batches come back byte for byte"
    );
    // A fetch in the middle of a batch returns that whole batch.
    let mid = fetch_all(&mut c, "t", 4).await;
    assert_eq!(base_offset(&mid), 3);
    b.stop().await;
}

#[tokio::test]
async fn list_offsets_earliest_latest_timestamp_and_max() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("lo")).await;
    assert_eq!(list_offset(&mut c, "lo", -1).await.0, 0);
    produce(&mut c, "lo", batch(&records(5, 1_000), Compression::None)).await;
    produce(&mut c, "lo", batch(&records(5, 2_000), Compression::Gzip)).await;
    assert_eq!(list_offset(&mut c, "lo", -2).await.0, 0);
    assert_eq!(list_offset(&mut c, "lo", -1).await.0, 10);
    assert_eq!(list_offset(&mut c, "lo", 1_002).await, (2, 1_002));
    assert_eq!(
        list_offset(&mut c, "lo", 2_003).await,
        (8, 2_003),
        "inside a compressed batch"
    );
    assert_eq!(list_offset(&mut c, "lo", 9_999).await.0, -1);
    assert_eq!(list_offset(&mut c, "lo", -3).await, (9, 2_004));
    b.stop().await;
}

#[tokio::test]
async fn idempotent_retry_gets_the_original_offset_and_is_not_stored_twice() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("idem")).await;
    let pid: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default())
        .await;
    assert_eq!(pid.error_code, 0);
    let id = pid.producer_id.0;
    let first = idempotent_batch(2, id, 0, 0);
    assert_eq!(produce(&mut c, "idem", first.clone()).await.base_offset, 0);
    assert_eq!(
        produce(&mut c, "idem", idempotent_batch(2, id, 0, 2))
            .await
            .base_offset,
        2
    );
    let dup = produce(&mut c, "idem", first).await;
    assert_eq!((dup.error_code, dup.base_offset), (0, 0));
    assert_eq!(
        list_offset(&mut c, "idem", -1).await.0,
        4,
        "not appended twice"
    );
    let gap = produce(&mut c, "idem", idempotent_batch(1, id, 0, 10)).await;
    assert_eq!(gap.error_code, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    b.stop().await;
}

#[tokio::test]
async fn long_poll_fetch_does_not_block_later_requests_on_the_connection() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("lp")).await;
    let start = Instant::now();
    let fetch_corr = c.send(ApiKey::Fetch, 11, &fetch_req("lp", 0, 15_000)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Sent after the fetch on the same connection; its data must wake the fetch.
    let produce_corr = c
        .send(
            ApiKey::Produce,
            9,
            &produce_req("lp", 0, batch(&records(1, 5), Compression::None), 1),
        )
        .await;
    let (corr, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 11).await;
    assert_eq!(corr, fetch_corr, "responses in request order");
    assert!(
        !f.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "woken by the produce, not max_wait"
    );
    let (corr, p): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
    assert_eq!(corr, produce_corr);
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);

    // A Metadata sent behind a fetch that waits it out is answered right after it, in order.
    let fetch_corr = c.send(ApiKey::Fetch, 11, &fetch_req("lp", 1, 300)).await;
    let md_corr = c.send(ApiKey::Metadata, 9, &metadata_req("lp")).await;
    let (c1, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 11).await;
    let (c2, md): (i32, MetadataResponse) = c.recv(ApiKey::Metadata, 9).await;
    assert_eq!((c1, c2), (fetch_corr, md_corr));
    assert!(
        f.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
    assert_eq!(md.topics[0].error_code, 0);
    b.stop().await;
}

#[tokio::test]
async fn restart_keeps_topics_data_and_producer_ids() {
    let mut b = TestBroker::start().await;
    let mut c = b.client().await;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("keep")).await;
    let data = batch(&records(4, 100), Compression::Zstd);
    produce(&mut c, "keep", data.clone()).await;
    let pid1: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default())
        .await;
    drop(c);
    b.restart().await;
    let mut c = b.client().await;
    assert_eq!(
        &fetch_all(&mut c, "keep", 0).await[..],
        &with_base(&data, 0)[..]
    );
    assert_eq!(list_offset(&mut c, "keep", -1).await.0, 4);
    let pid2: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default())
        .await;
    assert!(
        pid2.producer_id.0 > pid1.producer_id.0,
        "ids are never reissued"
    );
    b.stop().await;
}

#[tokio::test]
async fn a_second_broker_cannot_take_the_data_dir() {
    let b = TestBroker::start().await;
    let err = waterline_broker::Broker::start(config(b.dir.path())).await;
    assert!(matches!(
        err,
        Err(waterline_broker::BrokerError::DataDirLocked(_))
    ));
    b.stop().await;
}

async fn still_serves(b: &TestBroker) {
    let mut c = b.client().await;
    let r: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    assert_eq!(r.error_code, 0);
}

#[tokio::test]
async fn bad_frames_close_the_connection_and_the_broker_stays_up() {
    let b = TestBroker::start().await;
    for len in [0i32, 3, -1, i32::MIN, (1 << 20) + 1] {
        let mut c = b.client().await;
        c.stream
            .try_write(&len.to_be_bytes())
            .expect("write length");
        assert!(c.is_closed().await, "length {len} closes the connection");
        still_serves(&b).await;
    }
    // Garbage after a valid header.
    let mut c = b.client().await;
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(4);
    f.put_i32(1);
    f.put_i16(-1);
    f.put_slice(&[0x7f; 7]);
    c.send_raw_frame(&f).await;
    assert!(c.is_closed().await);
    // An array claiming 2^31-1 topics.
    let mut c = b.client().await;
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(4);
    f.put_i32(1);
    f.put_i16(-1);
    f.put_i32(i32::MAX);
    f.put_u8(1);
    c.send_raw_frame(&f).await;
    assert!(c.is_closed().await);
    still_serves(&b).await;
    b.stop().await;
}

#[tokio::test]
async fn unknown_keys_and_unsupported_versions_are_answered() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    // Unknown API key: an error body with UNSUPPORTED_VERSION, and the connection stays usable.
    let mut f = BytesMut::new();
    f.put_i16(9999);
    f.put_i16(0);
    f.put_i32(77);
    f.put_i16(-1);
    c.send_raw_frame(&f).await;
    let resp = c.read_frame().await.unwrap();
    assert_eq!(&resp[..], &[0, 0, 0, 77, 0, 35]);
    // ApiVersions newer than known: v0 body with UNSUPPORTED_VERSION and the key list.
    let corr = c
        .send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await;
    let _ = c.recv::<ApiVersionsResponse>(ApiKey::ApiVersions, 3).await;
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::ApiVersions as i16);
    f.put_i16(99);
    f.put_i32(corr + 1);
    f.put_i16(-1);
    f.put_u8(0);
    c.send_raw_frame(&f).await;
    let (cid, v): (i32, ApiVersionsResponse) = c.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!((cid, v.error_code), (corr + 1, 35));
    assert!(v.api_keys.iter().any(|k| k.api_key == 0));
    // Produce v2 (advertised like Kafka 4, not served): UNSUPPORTED_VERSION per partition.
    let mut f = BytesMut::new();
    f.put_i16(0);
    f.put_i16(2);
    f.put_i32(5);
    f.put_i16(-1);
    f.put_i16(1); // acks
    f.put_i32(1000);
    f.put_i32(1);
    f.put_i16(1);
    f.put_slice(b"t");
    f.put_i32(1);
    f.put_i32(0);
    f.put_i32(0);
    c.send_raw_frame(&f).await;
    let resp = c.read_frame().await.unwrap();
    let mut expect = BytesMut::new();
    expect.put_i32(5);
    expect.put_i32(1);
    expect.put_i16(1);
    expect.put_slice(b"t");
    expect.put_i32(1);
    expect.put_i32(0);
    expect.put_i16(35);
    expect.put_i64(-1);
    expect.put_i64(-1);
    expect.put_i32(0);
    assert_eq!(&resp[..], &expect[..]);
    // An unsupported version of a served API closes the connection.
    let mut f = BytesMut::new();
    f.put_i16(ApiKey::Metadata as i16);
    f.put_i16(99);
    f.put_i32(9);
    f.put_i16(-1);
    c.send_raw_frame(&f).await;
    assert!(c.is_closed().await);
    still_serves(&b).await;
    b.stop().await;
}

#[tokio::test]
async fn corrupt_and_implausible_batches_are_rejected_with_error_codes() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("bad")).await;
    let good = batch(&records(2, 1), Compression::None);
    let mut crc = good.to_vec();
    let last = crc.len() - 1;
    crc[last] ^= 0xff;
    let r = produce(&mut c, "bad", Bytes::from(crc)).await;
    assert_eq!(r.error_code, 2, "CORRUPT_MESSAGE");
    // A 61-byte header claiming 2^31-1 records (with a correct CRC over what is there).
    let mut huge = good[..61].to_vec();
    huge[8..12].copy_from_slice(&49i32.to_be_bytes());
    huge[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    huge[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    let crc = crc32c::crc32c(&huge[21..]);
    huge[17..21].copy_from_slice(&crc.to_be_bytes());
    let r = produce(&mut c, "bad", Bytes::from(huge)).await;
    assert_ne!(r.error_code, 0);
    assert_eq!(list_offset(&mut c, "bad", -1).await.0, 0, "nothing stored");
    still_serves(&b).await;
    b.stop().await;
}

#[tokio::test]
async fn concurrent_producers_share_syncs_and_lose_nothing() {
    let b = TestBroker::start().await;
    let mut admin = b.client().await;
    let mut t = kafka_protocol::messages::create_topics_request::CreatableTopic::default();
    t.name = name("many");
    t.num_partitions = 4;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let r: CreateTopicsResponse = admin.call(ApiKey::CreateTopics, 5, &req).await;
    assert_eq!(r.topics[0].error_code, 0);
    let mut tasks = Vec::new();
    for conn in 0..8 {
        let addr = b.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut offsets = Vec::new();
            for i in 0..15 {
                let partition = (conn + i) % 4;
                let req = produce_req(
                    "many",
                    partition,
                    batch(&records(2, 1), Compression::None),
                    -1,
                );
                let r: ProduceResponse = c.call(ApiKey::Produce, 9, &req).await;
                let p = &r.responses[0].partition_responses[0];
                assert_eq!(p.error_code, 0);
                offsets.push((partition, p.base_offset));
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(
        all.len(),
        before,
        "every acknowledged batch got its own offsets"
    );
    let mut lo = list_offsets_req("many", -1);
    lo.topics[0].partitions = (0..4)
        .map(|i| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = i;
            p.timestamp = -1;
            p
        })
        .collect();
    let r: ListOffsetsResponse = admin.call(ApiKey::ListOffsets, 7, &lo).await;
    let total: i64 = r.topics[0].partitions.iter().map(|p| p.offset).sum();
    assert_eq!(
        total,
        8 * 15 * 2,
        "high watermarks cover every acknowledged record"
    );
    b.stop().await;
}

#[tokio::test]
async fn interval_fsync_answers_at_once_and_data_becomes_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.fsync = waterline_broker::FsyncPolicy::Interval { ms: 50 };
    let broker = waterline_broker::Broker::start(cfg).await.unwrap();
    let mut c = Client::connect(broker.local_addr()).await;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("iv")).await;
    let r = produce(&mut c, "iv", batch(&records(3, 1), Compression::None)).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    // Consumers see it once the background sync has run (the fetch long-polls for it).
    let f: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch_req("iv", 0, 5_000)).await;
    assert!(
        !f.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
    assert_eq!(f.responses[0].partitions[0].high_watermark, 3);
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_long_polls_promptly() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("sd")).await;
    let corr = c.send(ApiKey::Fetch, 11, &fetch_req("sd", 0, 60_000)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let stop = tokio::spawn(b.stop());
    let (cid, f): (i32, FetchResponse) = c.recv(ApiKey::Fetch, 11).await;
    assert_eq!(cid, corr);
    assert_eq!(f.responses[0].partitions[0].error_code, 0);
    stop.await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn pipelined_idempotent_produces_are_appended_in_order() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let _: MetadataResponse = c.call(ApiKey::Metadata, 9, &metadata_req("pipe")).await;
    let pid: InitProducerIdResponse = c
        .call(ApiKey::InitProducerId, 4, &InitProducerIdRequest::default())
        .await;
    let id = pid.producer_id.0;
    for round in 0..4 {
        let mut corrs = Vec::new();
        // Five in flight per partition, as librdkafka and the Java client do.
        for i in 0..5 {
            let seq = round * 10 + i * 2;
            let req = produce_req("pipe", 0, idempotent_batch(2, id, 0, seq), -1);
            corrs.push(c.send(ApiKey::Produce, 9, &req).await);
        }
        for (i, corr) in corrs.into_iter().enumerate() {
            let (cid, r): (i32, ProduceResponse) = c.recv(ApiKey::Produce, 9).await;
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(cid, corr);
            assert_eq!(p.error_code, 0, "{:?}", p.error_message);
            assert_eq!(p.base_offset, i64::from(round * 10) + 2 * i as i64);
        }
    }
    b.stop().await;
}

#[tokio::test]
async fn versions_above_the_served_ones_are_refused_in_their_own_schema() {
    let b = TestBroker::start().await;
    let mut c = b.client().await;
    let r: FetchResponse = c.call(ApiKey::Fetch, 15, &fetch_req("x", 0, 0)).await;
    assert_eq!(r.error_code, 35);
    let p = produce_req("x", 0, batch(&records(1, 1), Compression::None), 1);
    let r: ProduceResponse = c.call(ApiKey::Produce, 13, &p).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 35);
    still_serves(&b).await;
    b.stop().await;
}

#[tokio::test]
async fn retention_task_deletes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention_check_ms = 100;
    let broker = waterline_broker::Broker::start(cfg).await.unwrap();
    let mut c = Client::connect(broker.local_addr()).await;
    let mut t = kafka_protocol::messages::create_topics_request::CreatableTopic::default();
    t.name = name("ret");
    t.num_partitions = 1;
    t.replication_factor = 1;
    t.configs = [("retention.ms", "1000"), ("segment.bytes", "1024")]
        .iter()
        .map(|(k, v)| {
            let mut cfg =
                kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default();
            cfg.name = StrBytes::from_static_str(k);
            cfg.value = Some(StrBytes::from_static_str(v));
            cfg
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &req).await;
    assert_eq!(r.topics[0].error_code, 0);
    // Records stamped in 1970: far older than retention.ms once their segment is rolled.
    for _ in 0..10 {
        assert_eq!(
            produce(&mut c, "ret", batch(&records(10, 1_000), Compression::None))
                .await
                .error_code,
            0
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (start, _) = list_offset(&mut c, "ret", -2).await;
        if start > 0 {
            let r: FetchResponse = c.call(ApiKey::Fetch, 11, &fetch_req("ret", 0, 0)).await;
            assert_eq!(
                r.responses[0].partitions[0].error_code, 1,
                "deleted offsets are out of range"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never advanced the log start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(list_offset(&mut c, "ret", -1).await.0, 100);
    broker.shutdown().await.unwrap();
}
