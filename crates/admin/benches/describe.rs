//! `waterline groups describe` on a group with 1,000 partitions against an in-process
//! `waterline serve`, end to end: connect, DescribeGroups, OffsetFetch, ListOffsets, Fetch of
//! the records at the committed offsets (exact time lag), table rendering.
//!
//! Also the pure parts at that size: rendering alone and reset planning alone.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use waterline_admin::cli::render::{DescribeView, GroupView, OffsetRow, render_describe};
use waterline_admin::cli::{GroupsArgs, OutputFormat};
use waterline_admin::client::{AdminClient, ClientConfig, ConnSettings, Connection};
use waterline_admin::lag::TimeLag;
use waterline_admin::reset::{PartitionInput, ResetMode, plan};
use waterline_broker::{Broker, BrokerConfig, RunningBroker};
use waterline_core::TopicPartition;

const PARTITIONS: i32 = 1_000;

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

/// Topic `bench` with 1,000 partitions of 10 records each; group `g` committed at offset 5
/// everywhere (lag 5, exact time lag needs one record per partition).
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
                request_timeout: Duration::from_secs(30),
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
                .with_timeout_ms(30_000)
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("bench")))
                        .with_num_partitions(PARTITIONS)
                        .with_replication_factor(1),
                ]),
        )
        .await
        .unwrap();
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
                timestamp: 1_700_000_000_000 + i,
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
        conn.request(
            v,
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("bench")))
                        .with_partition_data(
                            (0..PARTITIONS)
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
        let mut client = AdminClient::connect(ClientConfig::new([addr.clone()]))
            .await
            .unwrap();
        let offsets: BTreeMap<TopicPartition, i64> = (0..PARTITIONS)
            .map(|p| (TopicPartition::new("bench", p), 5))
            .collect();
        assert!(
            client
                .offset_commit("g", &offsets)
                .await
                .unwrap()
                .is_empty()
        );
    });
    Setup {
        rt,
        broker: Some(broker),
        addr,
        _dir: dir,
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    groups: GroupsArgs,
}

#[divan::bench(sample_count = 30)]
fn groups_describe_1000_partitions(bencher: divan::Bencher) {
    let s = setup();
    let argv = [
        "waterline",
        "describe",
        "--group",
        "g",
        "--bootstrap-server",
        &s.addr,
    ];
    bencher.bench_local(|| {
        let args = Cli::try_parse_from(argv).unwrap().groups;
        let mut out = Vec::with_capacity(200_000);
        let mut err = Vec::new();
        let code = s.rt.block_on(waterline_admin::cli::run_groups_with(
            args, &mut out, &mut err,
        ));
        assert_eq!(code, 0);
        // The "no active members" message, a blank line, the header, 1,000 partition lines.
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1_003);
        out
    });
}

fn view() -> GroupView {
    GroupView {
        group: "g".into(),
        state: "Stable".into(),
        coordinator: Some("127.0.0.1:9092".into()),
        protocol: "range".into(),
        offsets: (0..PARTITIONS)
            .map(|p| OffsetRow {
                topic: "bench".into(),
                partition: p,
                current: Some(5),
                log_end: Some(10),
                time_lag: TimeLag::Exact(12_345),
                consumer_id: Some(format!("consumer-{}", p % 10)),
                host: Some("/127.0.0.1".into()),
                client_id: Some("app".into()),
            })
            .collect(),
        members: Vec::new(),
        exists: true,
    }
}

#[divan::bench]
fn render_describe_table_1000_partitions(bencher: divan::Bencher) {
    let v = [view()];
    bencher.bench_local(|| render_describe(&v, DescribeView::Offsets, OutputFormat::Table));
}

#[divan::bench]
fn plan_reset_1000_partitions(bencher: divan::Bencher) {
    let inputs: Vec<PartitionInput> = (0..PARTITIONS)
        .map(|p| PartitionInput {
            tp: TopicPartition::new("bench", p),
            current: Some(5),
            log_start: 0,
            log_end: 10,
            offset_for_time: None,
            source_offset: None,
        })
        .collect();
    bencher.bench_local(|| plan("g", &ResetMode::ShiftBy(-3), &inputs, 0).unwrap());
}
