//! Helpers for in-process broker tests: start a broker on 127.0.0.1:0 with a temp data dir, and
//! a minimal Kafka client built from kafka-protocol's encoders.
#![allow(dead_code)]

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waterline_broker::{Broker, BrokerConfig, RunningBroker};

/// A broker over a temp dir (the dir outlives restarts until dropped).
pub struct TestBroker {
    pub broker: Option<RunningBroker>,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        max_frame_bytes: 1 << 20,
        ..BrokerConfig::default()
    }
}

impl TestBroker {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(config(dir.path())).await.unwrap();
        TestBroker {
            broker: Some(broker),
            dir,
        }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.broker.as_ref().unwrap().local_addr()
    }

    pub async fn restart(&mut self) {
        self.broker.take().unwrap().shutdown().await.unwrap();
        self.broker = Some(Broker::start(config(self.dir.path())).await.unwrap());
    }

    pub async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().await.unwrap();
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr()).await
    }
}

/// A raw connection speaking frames.
pub struct Client {
    pub stream: TcpStream,
    next_corr: i32,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_corr: 1,
        }
    }

    /// Sends a request; returns its correlation id.
    pub async fn send<R: Encodable>(&mut self, key: ApiKey, version: i16, req: &R) -> i32 {
        let corr = self.next_corr;
        self.next_corr += 1;
        let mut body = BytesMut::new();
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = corr;
        h.client_id = Some(StrBytes::from_static_str("test"));
        h.encode(&mut body, key.request_header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        self.send_raw_frame(&body).await;
        corr
    }

    pub async fn send_raw_frame(&mut self, body: &[u8]) {
        let mut f = BytesMut::new();
        f.put_i32(body.len() as i32);
        f.put_slice(body);
        self.stream.write_all(&f).await.unwrap();
    }

    /// Reads one response frame (after the length); None on EOF/reset/timeout.
    pub async fn read_frame(&mut self) -> Option<Bytes> {
        let fut = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await.ok()?;
            let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut buf).await.ok()?;
            Some(Bytes::from(buf))
        };
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .ok()
            .flatten()
    }

    /// Reads a response of `key`/`version`; returns (correlation id, body).
    pub async fn recv<T: Decodable>(&mut self, key: ApiKey, version: i16) -> (i32, T) {
        let mut f = self.read_frame().await.expect("response frame");
        let h = ResponseHeader::decode(&mut f, key.response_header_version(version)).unwrap();
        let body = T::decode(&mut f, version).unwrap();
        (h.correlation_id, body)
    }

    pub async fn call<R: Encodable, T: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &R,
    ) -> T {
        let corr = self.send(key, version, req).await;
        let (c, t) = self.recv(key, version).await;
        assert_eq!(c, corr);
        t
    }

    /// True if the broker closed the connection (EOF) within a few seconds.
    pub async fn is_closed(&mut self) -> bool {
        self.is_closed_within(Duration::from_secs(5)).await
    }

    /// True if the broker closed the connection (EOF or reset) within `wait`.
    pub async fn is_closed_within(&mut self, wait: Duration) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(wait, self.stream.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

/// Records with values `v{i}` and timestamps `ts0 + i`.
pub fn records(n: usize, ts0: i64) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch unless offset - sequence is constant; this keeps
            // all records in one batch with base sequence -1 (no sequence).
            sequence: i as i32 - 1,
            timestamp: ts0 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i} {}", "x".repeat(50)))),
            headers: IndexMap::new(),
        })
        .collect()
}

/// Encodes one v2 batch.
pub fn batch(recs: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// An idempotent batch: producer id/epoch and base sequence set on every record.
pub fn idempotent_batch(n: usize, pid: i64, epoch: i16, seq: i32) -> Bytes {
    let mut recs = records(n, 1_000);
    for (i, r) in recs.iter_mut().enumerate() {
        r.producer_id = pid;
        r.producer_epoch = epoch;
        r.sequence = seq + i as i32;
    }
    batch(&recs, Compression::None)
}

/// Base offset of a stored batch.
pub fn base_offset(b: &[u8]) -> i64 {
    (&b[..8]).get_i64()
}

/// A produce request of `records` for one partition.
pub fn produce_req(
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = kafka_protocol::messages::TopicName(StrBytes::from_string(topic.to_string()));
    t.partition_data = vec![p];
    let mut r = kafka_protocol::messages::ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 10_000;
    r.topic_data = vec![t];
    r
}

/// Produces `records` to partition 0 of `topic` with acks=all; the partition's answer.
pub async fn produce(
    c: &mut Client,
    topic: &str,
    records: Bytes,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    let r: kafka_protocol::messages::ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_req(topic, 0, records, -1))
        .await;
    r.responses[0].partition_responses[0].clone()
}
