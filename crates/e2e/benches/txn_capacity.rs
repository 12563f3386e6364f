//! The broker's transaction capacity, measured with a light protocol-level driver instead of
//! librdkafka.
//!
//! Run: `cargo bench -p waterline-e2e --bench txn_capacity`
//! Env: `WATERLINE_BENCH_SECS` (seconds per case, default 10), `WATERLINE_BENCH_PRODUCERS`
//! (comma-separated producer counts, default `1,10,100`).
//!
//! Why a second transaction benchmark: `benches/transactions.rs` drives the broker with one
//! librdkafka instance per producer. A librdkafka instance runs about ten threads, so 100 of them
//! on this 2-core machine spend the CPU on the clients and the number measures librdkafka's
//! scheduling, not the broker. Here each producer is one tokio task on one TCP connection,
//! sending exactly the requests librdkafka sends for the same transaction, in the same order, and
//! waiting for each answer as librdkafka does:
//!
//! 1. AddPartitionsToTxn for both partitions (retried after 1 ms on CONCURRENT_TRANSACTIONS,
//!    while the previous transaction's markers are still being written: librdkafka retries too);
//! 2. one Produce (acks=all) carrying a transactional batch of 5 records of 100 B for each of the
//!    2 partitions;
//! 3. AddOffsetsToTxn for the producer's group, then TxnOffsetCommit of one input offset;
//! 4. EndTxn(commit).
//!
//! The broker runs in this process on its own 2-worker runtime with default settings (every
//! answer waits for its fsync); the driver runs on a separate runtime with one worker thread. Reported:
//! committed transactions per second over all producers, the median transaction latency and the
//! AddPartitionsToTxn retries per transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, CreateTopicsRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
    TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waterline_e2e::TestBroker;

const RECORDS_PER_PARTITION: i32 = 5;
const RECORD_BYTES: usize = 100;
/// Kafka's CONCURRENT_TRANSACTIONS: the previous transaction is still completing.
const CONCURRENT_TRANSACTIONS: i16 = 51;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One connection sending one request at a time, as a transactional producer's coordinator
/// connection does.
struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

impl Conn {
    async fn connect(addr: std::net::SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            correlation_id: 0,
        })
    }

    async fn call<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("txn-capacity")));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, R::header_version(version))?;
        request.encode(&mut frame, version)?;
        let len = i32::try_from(frame.len() - 4)?;
        frame[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&frame).await?;
        let len = self.stream.read_i32().await?;
        if !(4..=16 << 20).contains(&len) {
            bail!("response frame of {len} bytes");
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(
            &mut body,
            <R::Response as kafka_protocol::protocol::HeaderVersion>::header_version(version),
        )?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "correlation id {} for {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        let response = R::Response::decode(&mut body, version)?;
        if body.has_remaining() {
            bail!("{} bytes left after the response", body.remaining());
        }
        Ok(response)
    }
}

fn check(what: &str, code: i16) -> Result<()> {
    if code != 0 {
        bail!("{what}: error code {code}");
    }
    Ok(())
}

async fn create_topics(addr: std::net::SocketAddr, names: &[(&str, i32)]) -> Result<()> {
    let mut conn = Conn::connect(addr).await?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            names
                .iter()
                .map(|(name, partitions)| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_num_partitions(*partitions)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let response = conn.call(5, &request).await?;
    for topic in response.topics {
        check(&format!("CreateTopics {}", topic.name.0), topic.error_code)?;
    }
    Ok(())
}

/// One uncompressed transactional batch of [`RECORDS_PER_PARTITION`] records.
fn batch(producer_id: i64, epoch: i16, sequence: i32, payload: &Bytes) -> Result<Bytes> {
    let records: Vec<Record> = (0..RECORDS_PER_PARTITION)
        .map(|i| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: sequence + i,
            timestamp: 1_700_000_000_000,
            key: Some(Bytes::from(sequence.to_be_bytes().to_vec())),
            value: Some(payload.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )?;
    Ok(buf.freeze())
}

#[derive(Default)]
struct Counters {
    committed: AtomicU64,
    retries: AtomicU64,
}

/// One transactional producer: init, then transactions until `stop`. Returns the latencies.
async fn producer(
    addr: std::net::SocketAddr,
    topic: String,
    index: usize,
    ready: Arc<tokio::sync::Barrier>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> Result<Vec<Duration>> {
    let txn_id = TransactionalId(StrBytes::from_string(format!("{topic}-producer-{index}")));
    let group = GroupId(StrBytes::from_string(format!("{topic}-group-{index}")));
    let topic = TopicName(StrBytes::from_string(topic));
    let mut conn = Conn::connect(addr).await?;
    let init = conn
        .call(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(txn_id.clone()))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        )
        .await?;
    check("InitProducerId", init.error_code)?;
    let (producer_id, epoch) = (init.producer_id, init.producer_epoch);
    let payload = Bytes::from(vec![0x5au8; RECORD_BYTES]);
    let mut sequence = 0i32;
    let mut latencies = Vec::new();
    ready.wait().await;
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id.clone())
            .with_v3_and_below_producer_id(producer_id)
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![
                AddPartitionsToTxnTopic::default()
                    .with_name(topic.clone())
                    .with_partitions(vec![0, 1]),
            ]);
        loop {
            let response = conn.call(3, &add).await?;
            let code = response
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter())
                .map(|p| p.partition_error_code)
                .find(|&c| c != 0)
                .unwrap_or(0);
            if code == CONCURRENT_TRANSACTIONS {
                counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            check("AddPartitionsToTxn", code)?;
            break;
        }
        let partitions = (0..2)
            .map(|p| -> Result<PartitionProduceData> {
                Ok(PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(batch(producer_id.0, epoch, sequence, &payload)?)))
            })
            .collect::<Result<Vec<_>>>()?;
        sequence += RECORDS_PER_PARTITION;
        let produce = conn
            .call(
                9,
                &ProduceRequest::default()
                    .with_transactional_id(Some(txn_id.clone()))
                    .with_acks(-1)
                    .with_timeout_ms(30_000)
                    .with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(topic.clone())
                            .with_partition_data(partitions),
                    ]),
            )
            .await?;
        for t in &produce.responses {
            for p in &t.partition_responses {
                check("Produce", p.error_code)?;
            }
        }
        let offsets = conn
            .call(
                3,
                &AddOffsetsToTxnRequest::default()
                    .with_transactional_id(txn_id.clone())
                    .with_producer_id(producer_id)
                    .with_producer_epoch(epoch)
                    .with_group_id(group.clone()),
            )
            .await?;
        check("AddOffsetsToTxn", offsets.error_code)?;
        let commit = conn
            .call(
                3,
                &TxnOffsetCommitRequest::default()
                    .with_transactional_id(txn_id.clone())
                    .with_group_id(group.clone())
                    .with_producer_id(producer_id)
                    .with_producer_epoch(epoch)
                    .with_generation_id(-1)
                    .with_topics(vec![
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("capacity-input")))
                            .with_partitions(vec![
                                TxnOffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(i64::from(sequence)),
                            ]),
                    ]),
            )
            .await?;
        for t in &commit.topics {
            for p in &t.partitions {
                check("TxnOffsetCommit", p.error_code)?;
            }
        }
        let end = conn
            .call(
                3,
                &EndTxnRequest::default()
                    .with_transactional_id(txn_id.clone())
                    .with_producer_id(producer_id)
                    .with_producer_epoch(epoch)
                    .with_committed(true),
            )
            .await?;
        check("EndTxn", end.error_code)?;
        latencies.push(start.elapsed());
        counters.committed.fetch_add(1, Ordering::Relaxed);
    }
    Ok(latencies)
}

/// (txn/s, median latency, AddPartitionsToTxn retries per transaction).
fn run_case(
    driver: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    producers: usize,
    secs: u64,
) -> Result<(f64, Duration, f64)> {
    let topic = format!("capacity-p{producers}");
    driver.block_on(create_topics(addr, &[(&topic, 2)]))?;
    let ready = Arc::new(tokio::sync::Barrier::new(producers + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let tasks: Vec<_> = (0..producers)
        .map(|i| {
            driver.spawn(producer(
                addr,
                topic.clone(),
                i,
                ready.clone(),
                stop.clone(),
                counters.clone(),
            ))
        })
        .collect();
    driver.block_on(ready.wait());
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let committed = counters.committed.load(Ordering::Relaxed);
    let retries = counters.retries.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(driver.block_on(task).context("producer task")??);
    }
    latencies.sort();
    let p50 = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    Ok((
        committed as f64 / elapsed.as_secs_f64(),
        p50,
        retries as f64 / committed.max(1) as f64,
    ))
}

fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("txn_capacity: pass --bench (cargo bench) to run");
        return Ok(());
    }
    let secs = env("WATERLINE_BENCH_SECS", 10);
    let counts: Vec<usize> = std::env::var("WATERLINE_BENCH_PRODUCERS")
        .unwrap_or_else(|_| "1,10,100".into())
        .split(',')
        .map(|n| n.trim().parse().context("WATERLINE_BENCH_PRODUCERS"))
        .collect::<Result<_>>()?;
    let broker_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // One worker: the producers' tasks run while the main thread sleeps through a case.
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let broker = broker_rt.block_on(TestBroker::start())?;
    let addr = broker.addr();
    driver.block_on(create_topics(addr, &[("capacity-input", 1)]))?;
    println!(
        "## transaction capacity, protocol-level driver ({secs} s per case; per transaction \
         {} x {RECORD_BYTES} B over 2 partitions + offsets)",
        2 * RECORDS_PER_PARTITION
    );
    println!("| producers | txn/s | median latency | AddPartitionsToTxn retries per txn |");
    println!("|---|---|---|---|");
    for producers in counts {
        let (rate, p50, retries) = run_case(&driver, addr, producers, secs)?;
        println!(
            "| {producers} | {rate:.0} | {:.2} ms | {retries:.2} |",
            p50.as_secs_f64() * 1e3
        );
    }
    broker_rt.block_on(broker.shutdown())?;
    Ok(())
}
