//! Group commit: acks=all produce throughput through the Produce handler (no sockets) on the
//! real file system, with 1, 8 and 32 concurrent producers over 8 partitions. Each produce is
//! answered only after an fsync covers it; concurrent producers share fsyncs.

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use waterline_broker::{BrokerConfig, SharedState};

fn main() {
    divan::main();
}

struct Env {
    rt: tokio::runtime::Runtime,
    state: SharedState,
    _dir: tempfile::TempDir,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // The broker's background tasks need a runtime context.
        let _guard = rt.enter();
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let state = Arc::new(
            waterline_broker::server::build_state(config, "127.0.0.1".into(), 9092).unwrap(),
        );
        state
            .topics
            .create("bench", 8, Default::default(), false, 0)
            .unwrap();
        Env {
            rt,
            state,
            _dir: dir,
        }
    })
}

/// 10 records of 100 bytes in one uncompressed batch (~1.2 KiB).
fn batch() -> Bytes {
    let recs: Vec<Record> = (0..10)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i,
            key: None,
            value: Some(Bytes::from(vec![b'x'; 100])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn request(partition: i32, records: Bytes) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_static_str("bench"));
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 30_000;
    r.topic_data = vec![t];
    r
}

#[divan::bench(args = [1, 8, 32], sample_count = 30, sample_size = 1)]
fn produce_acks_all(bencher: divan::Bencher, producers: usize) {
    let env = env();
    let b = batch();
    bencher
        .counter(divan::counter::ItemsCount::new(producers))
        .bench(|| {
            env.rt.block_on(async {
                let mut tasks = Vec::with_capacity(producers);
                for i in 0..producers {
                    let state = env.state.clone();
                    let req = request((i % 8) as i32, b.clone());
                    tasks.push(tokio::spawn(async move {
                        let h = RequestHeader::default();
                        waterline_broker::handlers::produce::handle(&state, &h, req).await
                    }));
                }
                for t in tasks {
                    let r = t.await.unwrap().unwrap();
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
                }
            })
        });
}
