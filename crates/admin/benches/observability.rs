//! Metrics at scale against an in-process `waterline serve` with 10,000 partitions (100 topics
//! of 100, 10 records each; `WL_OBS_TOPICS` changes the topic count) and 1,000 groups (each
//! committed at offset 5 on 10 partitions, so 10,000 group partitions each lag by 5 and their
//! exact time lag needs a Fetch):
//! - the broker's `/metrics` text (rendered at scrape time: logs, groups, offsets, lag);
//! - one exporter poll cycle (Metadata, ListOffsets, ListGroups, DescribeGroups, OffsetFetch
//!   and a Fetch per group, statuses);
//! - rendering the exporter's metrics text from a poll's snapshot (done once per poll).
//!
//! 10,000 partitions fit under this machine's open-file limit since partition files are opened
//! on demand through the log's bounded handle cache (`max_open_files`).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use waterline_admin::client::{AdminClient, ClientConfig, ConnSettings, Connection};
use waterline_admin::exporter::{NameFilter, PollStatus, Poller, render_metrics};
use waterline_broker::{Broker, BrokerConfig, RunningBroker};
use waterline_core::TopicPartition;

/// Topics of [`PARTITIONS_PER_TOPIC`] partitions (`WL_OBS_TOPICS`, default 100).
fn topics() -> i32 {
    std::env::var("WL_OBS_TOPICS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(100)
}
const PARTITIONS_PER_TOPIC: i32 = 100;
const GROUPS: i32 = 1_000;
const PARTITIONS_PER_GROUP: i32 = 10;

fn main() {
    divan::main();
}

struct Setup {
    rt: tokio::runtime::Runtime,
    broker: Option<RunningBroker>,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            let _ = self.rt.block_on(b.shutdown());
        }
    }
}

fn topic(i: i32) -> String {
    format!("bench-{i:03}")
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".into(),
        auto_create_topics: false,
        ..Default::default()
    };
    let broker = rt.block_on(Broker::start(config)).unwrap();
    let addr = broker.local_addr().to_string();
    rt.block_on(async {
        let mut conn = Connection::connect(
            &addr,
            ConnSettings {
                client_id: "bench".into(),
                request_timeout: Duration::from_secs(120),
                max_frame_bytes: 100 << 20,
                security: Default::default(),
            },
        )
        .await
        .unwrap();
        let v = conn.version_for::<CreateTopicsRequest>(i16::MAX).unwrap();
        conn.request(
            v,
            &CreateTopicsRequest::default()
                .with_timeout_ms(120_000)
                .with_topics(
                    (0..topics())
                        .map(|t| {
                            CreatableTopic::default()
                                .with_name(TopicName(StrBytes::from_string(topic(t))))
                                .with_num_partitions(PARTITIONS_PER_TOPIC)
                                .with_replication_factor(1)
                        })
                        .collect(),
                ),
        )
        .await
        .unwrap();
        // Current timestamps: records older than segment.ms would roll a segment per append.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let records: Vec<Record> = (0..10)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: -1,
                timestamp: now_ms + i,
                key: None,
                value: Some(Bytes::from_static(b"value")),
                headers: Default::default(),
            })
            .collect();
        let mut batch = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut batch,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        let batch = batch.freeze();
        let v = conn.version_for::<ProduceRequest>(9).unwrap();
        for t in 0..topics() {
            conn.request(
                v,
                &ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(120_000)
                    .with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(topic(t))))
                            .with_partition_data(
                                (0..PARTITIONS_PER_TOPIC)
                                    .map(|p| {
                                        PartitionProduceData::default()
                                            .with_index(p)
                                            .with_records(Some(batch.clone()))
                                    })
                                    .collect(),
                            ),
                    ]),
            )
            .await
            .unwrap();
        }
        let mut client = AdminClient::connect(ClientConfig::new([addr.clone()]))
            .await
            .unwrap();
        for g in 0..GROUPS {
            let t = g % topics();
            // Three or four groups per block of 10 partitions.
            let first = ((g / topics()) % (PARTITIONS_PER_TOPIC / PARTITIONS_PER_GROUP))
                * PARTITIONS_PER_GROUP;
            let offsets: BTreeMap<TopicPartition, i64> = (first..first + PARTITIONS_PER_GROUP)
                .map(|p| (TopicPartition::new(topic(t), p), 5))
                .collect();
            let failed = client
                .offset_commit(&format!("group-{g:04}"), &offsets)
                .await
                .unwrap();
            assert!(failed.is_empty());
        }
    });
    Setup {
        rt,
        broker: Some(broker),
        addr,
        _dir: dir,
    }
}

#[divan::bench(sample_count = 10)]
fn broker_metrics_3k_partitions_1k_groups(bencher: divan::Bencher) {
    let s = setup();
    let state = s.broker.as_ref().unwrap().state().clone();
    let text = s.rt.block_on(waterline_broker::metrics::render(&state));
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("kafka_consumergroup_lag{"))
            .count(),
        (GROUPS * PARTITIONS_PER_GROUP) as usize
    );
    eprintln!(
        "broker /metrics: {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
    bencher.bench_local(|| s.rt.block_on(waterline_broker::metrics::render(&state)));
}

fn poller(s: &Setup) -> Poller {
    let client =
        s.rt.block_on(AdminClient::connect(ClientConfig::new([s.addr.clone()])))
            .unwrap();
    Poller::new(client, NameFilter::default(), NameFilter::default(), 10)
}

#[divan::bench(sample_count = 10)]
fn exporter_poll_3k_partitions_1k_groups(bencher: divan::Bencher) {
    let s = setup();
    let mut p = poller(&s);
    let snap = s.rt.block_on(p.poll()).unwrap();
    assert_eq!(snap.groups.len(), GROUPS as usize);
    bencher.bench_local(|| s.rt.block_on(p.poll()).unwrap());
}

#[divan::bench(sample_count = 20)]
fn exporter_render_3k_partitions_1k_groups(bencher: divan::Bencher) {
    let s = setup();
    let mut p = poller(&s);
    let snap = s.rt.block_on(p.poll()).unwrap();
    let text = render_metrics(&snap, PollStatus::default());
    eprintln!(
        "exporter /metrics: {} bytes, {} lines",
        text.len(),
        text.lines().count()
    );
    bencher.bench_local(|| render_metrics(&snap, PollStatus::default()));
}
