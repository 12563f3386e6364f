//! Shared helpers for tests against an in-process `waterline serve` broker: start/stop,
//! create topics, produce records with known timestamps, join a group, run CLI commands.
#![allow(dead_code)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, CreateTopicsRequest, GroupId, JoinGroupRequest, ProduceRequest,
    SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use waterline_admin::cli::{GroupsArgs, LagArgs, OffsetsArgs, TopicsArgs};
use waterline_admin::client::{AdminClient, ClientConfig, ConnSettings, Connection};
use waterline_broker::{Broker, BrokerConfig, RunningBroker};

/// A broker on 127.0.0.1:0 with its data in a temporary directory (removed on drop).
pub struct TestBroker {
    pub broker: Option<RunningBroker>,
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl TestBroker {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = BrokerConfig {
            data_dir: dir.path().join("data"),
            listen: "127.0.0.1:0".into(),
            auto_create_topics: false,
            ..Default::default()
        };
        config.groups.initial_rebalance_delay_ms = 0;
        let broker = Broker::start(config).await.unwrap();
        let addr = broker.local_addr().to_string();
        TestBroker {
            broker: Some(broker),
            addr,
            dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await.unwrap();
        }
    }

    pub async fn client(&self) -> AdminClient {
        AdminClient::connect(ClientConfig::new([self.addr.clone()]))
            .await
            .unwrap()
    }

    pub async fn conn(&self) -> Connection {
        Connection::connect(
            &self.addr,
            ConnSettings {
                client_id: "test".into(),
                request_timeout: Duration::from_secs(10),
                max_frame_bytes: 10 << 20,
                security: Default::default(),
            },
        )
        .await
        .unwrap()
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let mut conn = self.conn().await;
        let v = conn.version_for::<CreateTopicsRequest>(i16::MAX).unwrap();
        let resp = conn
            .request(
                v,
                &CreateTopicsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(vec![
                        CreatableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.into())))
                            .with_num_partitions(partitions)
                            .with_replication_factor(1),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(resp.topics[0].error_code, 0, "{resp:?}");
    }

    /// Produces one batch of records with the given timestamps to a partition.
    pub async fn produce(&self, topic: &str, partition: i32, timestamps: &[i64]) {
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: *ts,
                key: None,
                value: Some(Bytes::from(format!("v{i}"))),
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
        let mut conn = self.conn().await;
        let v = conn.version_for::<ProduceRequest>(9).unwrap();
        let resp = conn
            .request(
                v,
                &ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(10_000)
                    .with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(topic.into())))
                            .with_partition_data(vec![
                                PartitionProduceData::default()
                                    .with_index(partition)
                                    .with_records(Some(batch.freeze())),
                            ]),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(
            resp.responses[0].partition_responses[0].error_code, 0,
            "{resp:?}"
        );
    }

    /// Joins `group` as its only member (range protocol), assigning it `assignment`, and keeps
    /// the connection open so the member stays; returns the member id and connection.
    pub async fn join(&self, group: &str, assignment: &[(&str, Vec<i32>)]) -> (String, Connection) {
        let mut conn = self.conn().await;
        let gid = GroupId(StrBytes::from_string(group.into()));
        // v3: no MEMBER_ID_REQUIRED round trip.
        let join = conn
            .request(
                3,
                &JoinGroupRequest::default()
                    .with_group_id(gid.clone())
                    .with_session_timeout_ms(30_000)
                    .with_rebalance_timeout_ms(30_000)
                    .with_member_id(StrBytes::new())
                    .with_protocol_type(StrBytes::from_static_str("consumer"))
                    .with_protocols(vec![
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str("range"))
                            .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(join.error_code, 0, "{join:?}");
        let member = join.member_id.to_string();
        let body = ConsumerProtocolAssignment::default().with_assigned_partitions(
            assignment
                .iter()
                .map(|(t, ps)| {
                    AssignedTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps.clone())
                })
                .collect(),
        );
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&0i16.to_be_bytes());
        body.encode(&mut bytes, 0).unwrap();
        let sync = conn
            .request(
                3,
                &SyncGroupRequest::default()
                    .with_group_id(gid)
                    .with_generation_id(join.generation_id)
                    .with_member_id(join.member_id.clone())
                    .with_assignments(vec![
                        SyncGroupRequestAssignment::default()
                            .with_member_id(join.member_id.clone())
                            .with_assignment(bytes.freeze()),
                    ]),
            )
            .await
            .unwrap();
        assert_eq!(sync.error_code, 0, "{sync:?}");
        (member, conn)
    }
}

#[derive(Debug, Parser)]
#[command(name = "waterline")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    Groups(GroupsArgs),
    Offsets(OffsetsArgs),
    Lag(LagArgs),
    Topics(TopicsArgs),
}

/// Output of one CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: u8,
    pub out: String,
    pub err: String,
}

/// Runs `waterline ARGS --bootstrap-server ADDR` in-process. Clap errors give code 2.
pub async fn run(addr: &str, args: &[&str]) -> Run {
    let mut argv = vec!["waterline".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv.push("--bootstrap-server".into());
    argv.push(addr.to_string());
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            return Run {
                code: 2,
                out: String::new(),
                err: e.to_string(),
            };
        }
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = match cli.cmd {
        Cmd::Groups(a) => waterline_admin::cli::run_groups_with(a, &mut out, &mut err).await,
        Cmd::Offsets(a) => waterline_admin::cli::run_offsets_with(a, &mut out, &mut err).await,
        Cmd::Lag(a) => waterline_admin::cli::run_lag_with(a, false, &mut out, &mut err).await,
        Cmd::Topics(a) => waterline_admin::cli::run_topics_with(a, &mut out, &mut err).await,
    };
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}
