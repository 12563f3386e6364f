//! Scale benchmark of the `waterline` binary (issue 17), not a timed test. Two parts:
//!
//! `scale`: many partitions under a low open-file limit. Starts `WATERLINE_BIN serve` with
//! `RLIMIT_NOFILE` = `WL_SCALE_NOFILE` (default 4096), creates `WL_SCALE_PARTITIONS` (default
//! 100,000) partitions in topics of 10,000, produces one batch of 10 records to each (acks=all),
//! commits a group on all of them, then: SIGTERM (time to exit), restart (ready time after a
//! clean stop), produce 10 more records to each, kill -9, restart (ready time after kill -9),
//! and reads a sample back (records and committed offsets). RSS of the broker after each step.
//!
//! `throughput`: produce (acks=all, 8 connections, one per partition, 16 KiB batches) then
//! consume (Fetch) `WL_TP_MB` MiB (default 256) on a topic of 8 partitions, against each binary
//! in `WL_TP_BINS` (comma-separated, e.g. the build before and after a change), alternating
//! `WL_TP_ROUNDS` rounds (default 3) so both see the same machine conditions.
//!
//! `WL_BENCH_PARTS` picks the parts (default `scale,throughput`); data goes under
//! `WL_BENCH_DIR` (default a temp dir, deleted at the end). Run:
//! `WATERLINE_BIN=target/release/waterline cargo bench -p waterline-broker --bench scale`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, GroupId,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PER_TOPIC: i32 = 10_000;
const CHUNK: i32 = 2_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A raw Kafka connection (requests answered in order; long timeout for huge requests).
struct Client {
    stream: TcpStream,
    corr: i32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client { stream, corr: 0 }
    }

    async fn send<R: Encodable>(&mut self, key: ApiKey, version: i16, req: &R) {
        self.corr += 1;
        let mut body = BytesMut::new();
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = self.corr;
        h.client_id = Some(StrBytes::from_static_str("scale-bench"));
        h.encode(&mut body, key.request_header_version(version))
            .expect("header");
        req.encode(&mut body, version).expect("body");
        let mut f = BytesMut::with_capacity(body.len() + 4);
        f.put_i32(body.len() as i32);
        f.put_slice(&body);
        self.stream.write_all(&f).await.expect("send");
    }

    async fn recv<T: Decodable>(&mut self, key: ApiKey, version: i16) -> T {
        let read = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await?;
            let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(Bytes::from(buf))
        };
        let mut f = tokio::time::timeout(Duration::from_secs(900), read)
            .await
            .expect("response in time")
            .expect("response");
        ResponseHeader::decode(&mut f, key.response_header_version(version)).expect("header");
        T::decode(&mut f, version).expect("response body")
    }

    async fn call<R: Encodable, T: Decodable>(&mut self, key: ApiKey, version: i16, req: &R) -> T {
        self.send(key, version, req).await;
        self.recv(key, version).await
    }
}

/// `n` records stamped now (older timestamps would roll a segment per batch and be deleted by
/// retention).
fn batch(n: usize, value_bytes: usize, tag: &str) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: now + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!(
                "{tag} {i} {}",
                "x".repeat(value_bytes)
            ))),
            headers: IndexMap::new(),
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
    .expect("encode");
    buf.freeze()
}

/// A running `waterline serve`; killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary and waits for its ready line; (server, ready time).
    fn start(bin: &Path, data: &Path, extra: &[&str]) -> (Server, Duration) {
        let started = Instant::now();
        let child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn waterline");
        // Owned by the guard at once: a panic below kills the broker.
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let out = server.child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        loop {
            let line = lines
                .next()
                .expect("broker exited before it was ready")
                .expect("stdout");
            if let Some(rest) = line.strip_prefix("waterline: ready on ") {
                let addr = rest.split_whitespace().next().expect("address");
                server.addr = addr.parse().expect("address");
                return (server, started.elapsed());
            }
        }
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss_mib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |kb| kb / 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Sends a signal with kill(1) (no signal bindings needed for a bench).
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill(1)")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM and wait for the exit; the time it took.
    fn terminate(mut self) -> Duration {
        let t = Instant::now();
        self.signal("TERM");
        let status = self.child.wait().expect("wait");
        let took = t.elapsed();
        assert!(status.success(), "unclean exit after SIGTERM: {status}");
        took
    }

    fn kill9(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

fn topic_of(i: i32) -> String {
    format!("scale-{}", i / PER_TOPIC)
}

async fn produce_all(c: &mut Client, partitions: i32, tag: &str) -> Duration {
    let t = Instant::now();
    let b = batch(10, 20, tag);
    let mut from = 0;
    while from < partitions {
        let to = (from + CHUNK)
            .min(partitions)
            .min((from / PER_TOPIC + 1) * PER_TOPIC);
        let mut td = TopicProduceData::default();
        td.name = name(&topic_of(from));
        td.partition_data = (from..to)
            .map(|p| {
                let mut d = PartitionProduceData::default();
                d.index = p % PER_TOPIC;
                d.records = Some(b.clone());
                d
            })
            .collect();
        let mut r = ProduceRequest::default();
        r.acks = -1;
        r.timeout_ms = 600_000;
        r.topic_data = vec![td];
        let resp: ProduceResponse = c.call(ApiKey::Produce, 9, &r).await;
        for p in &resp.responses[0].partition_responses {
            assert_eq!(p.error_code, 0, "produce to {} {}", topic_of(from), p.index);
        }
        from = to;
    }
    t.elapsed()
}

async fn check_sample(c: &mut Client, partitions: i32, records: i64) {
    let step = (partitions / 50).max(1);
    for i in (0..partitions).step_by(step as usize) {
        let mut f = FetchPartition::default();
        f.partition = i % PER_TOPIC;
        f.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = name(&topic_of(i));
        t.partitions = vec![f];
        let mut r = FetchRequest::default();
        r.max_bytes = 1 << 20;
        r.topics = vec![t];
        let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &r).await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!(
            (p.error_code, p.high_watermark),
            (0, records),
            "partition {i}"
        );
        let mut bytes = p.records.clone().unwrap_or_default();
        let mut n = 0;
        while bytes.remaining() >= 61 {
            let len = (&bytes[8..12]).get_i32() as usize;
            n += i64::from((&bytes[57..61]).get_i32());
            bytes.advance(12 + len);
        }
        assert_eq!(n, records, "records read back from partition {i}");
        let mut ot = OffsetFetchRequestTopic::default();
        ot.name = name(&topic_of(i));
        ot.partition_indexes = vec![i % PER_TOPIC];
        let mut of = OffsetFetchRequest::default();
        of.group_id = GroupId(StrBytes::from_static_str("scale-group"));
        of.topics = Some(vec![ot]);
        let resp: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 5, &of).await;
        assert_eq!(
            resp.topics[0].partitions[0].committed_offset, 10,
            "commit {i}"
        );
    }
}

async fn scale(bin: &Path, base: &Path) {
    let partitions: i32 = env_or("WL_SCALE_PARTITIONS", 100_000);
    let nofile: u64 = env_or("WL_SCALE_NOFILE", 4096);
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        setrlimit(Resource::RLIMIT_NOFILE, nofile.min(hard), hard).expect("setrlimit");
    }
    let data = base.join("scale");
    println!(
        "scale: {partitions} partitions, RLIMIT_NOFILE {nofile}, {}",
        bin.display()
    );
    let (server, ready) = Server::start(bin, &data, &[]);
    println!(
        "  ready (empty data dir)            {:>9.2} s",
        ready.as_secs_f64()
    );
    let mut c = Client::connect(server.addr).await;
    let t = Instant::now();
    for first in (0..partitions).step_by(PER_TOPIC as usize) {
        let mut ct = CreatableTopic::default();
        ct.name = name(&topic_of(first));
        ct.num_partitions = (partitions - first).min(PER_TOPIC);
        ct.replication_factor = 1;
        let mut r = CreateTopicsRequest::default();
        r.topics = vec![ct];
        r.timeout_ms = 600_000;
        let resp: CreateTopicsResponse = c.call(ApiKey::CreateTopics, 5, &r).await;
        assert_eq!(resp.topics[0].error_code, 0, "{resp:?}");
    }
    println!(
        "  create                            {:>9.2} s",
        t.elapsed().as_secs_f64()
    );
    let took = produce_all(&mut c, partitions, "first").await;
    println!(
        "  produce 10 records to each        {:>9.2} s",
        took.as_secs_f64()
    );
    let t = Instant::now();
    let mut from = 0;
    while from < partitions {
        let to = (from + PER_TOPIC).min(partitions);
        let mut ot = OffsetCommitRequestTopic::default();
        ot.name = name(&topic_of(from));
        ot.partitions = (from..to)
            .map(|p| {
                let mut cp = OffsetCommitRequestPartition::default();
                cp.partition_index = p % PER_TOPIC;
                cp.committed_offset = 10;
                cp
            })
            .collect();
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(StrBytes::from_static_str("scale-group"));
        r.generation_id_or_member_epoch = -1;
        r.topics = vec![ot];
        let resp: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, 8, &r).await;
        assert!(
            resp.topics[0].partitions.iter().all(|p| p.error_code == 0),
            "commit"
        );
        from = to;
    }
    println!(
        "  commit a group on all             {:>9.2} s",
        t.elapsed().as_secs_f64()
    );
    let (rss, hwm) = server.rss_mib();
    println!("  RSS after load                    {rss:>9} MiB (peak {hwm} MiB)");
    drop(c);
    let took = server.terminate();
    println!(
        "  SIGTERM to exit                   {:>9.2} s",
        took.as_secs_f64()
    );
    let (server, ready) = Server::start(bin, &data, &[]);
    println!(
        "  ready after clean stop            {:>9.2} s",
        ready.as_secs_f64()
    );
    let (rss, _) = server.rss_mib();
    println!("  RSS when ready                    {rss:>9} MiB");
    let mut c = Client::connect(server.addr).await;
    check_sample(&mut c, partitions, 10).await;
    let took = produce_all(&mut c, partitions, "second").await;
    println!(
        "  produce 10 more to each           {:>9.2} s",
        took.as_secs_f64()
    );
    drop(c);
    server.kill9();
    let (server, ready) = Server::start(bin, &data, &[]);
    println!(
        "  ready after kill -9               {:>9.2} s",
        ready.as_secs_f64()
    );
    let (rss, hwm) = server.rss_mib();
    println!("  RSS when ready                    {rss:>9} MiB (peak {hwm} MiB)");
    let mut c = Client::connect(server.addr).await;
    check_sample(&mut c, partitions, 20).await;
    drop(c);
    let took = server.terminate();
    println!(
        "  SIGTERM to exit (after recovery)  {:>9.2} s",
        took.as_secs_f64()
    );
    let (server, ready) = Server::start(bin, &data, &[]);
    println!(
        "  ready after that clean stop       {:>9.2} s",
        ready.as_secs_f64()
    );
    let took = server.terminate();
    println!(
        "  SIGTERM to exit (nothing written) {:>9.2} s",
        took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&data);
}

/// One throughput round against `bin`: (produce MiB/s, consume MiB/s).
async fn throughput_round(bin: &Path, data: &Path, total_mib: usize) -> (f64, f64) {
    const PARTS: i32 = 8;
    let _ = std::fs::remove_dir_all(data);
    let (server, _) = Server::start(bin, data, &[]);
    let mut admin = Client::connect(server.addr).await;
    let mut ct = CreatableTopic::default();
    ct.name = name("tp");
    ct.num_partitions = PARTS;
    ct.replication_factor = 1;
    let mut r = CreateTopicsRequest::default();
    r.topics = vec![ct];
    let resp: CreateTopicsResponse = admin.call(ApiKey::CreateTopics, 5, &r).await;
    assert_eq!(resp.topics[0].error_code, 0);
    // 16 KiB batches of 160 records of ~100 bytes; each connection keeps 4 in flight.
    let b = batch(160, 80, "tp");
    let per_part = (total_mib << 20) / PARTS as usize / b.len();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PARTS {
        let b = b.clone();
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut td = TopicProduceData::default();
            td.name = name("tp");
            let mut d = PartitionProduceData::default();
            d.index = p;
            d.records = Some(b);
            td.partition_data = vec![d];
            let mut r = ProduceRequest::default();
            r.acks = -1;
            r.timeout_ms = 30_000;
            r.topic_data = vec![td];
            let (mut sent, mut got) = (0, 0);
            while got < per_part {
                while sent < per_part && sent - got < 4 {
                    c.send(ApiKey::Produce, 9, &r).await;
                    sent += 1;
                }
                let resp: ProduceResponse = c.recv(ApiKey::Produce, 9).await;
                assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
                got += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("producer");
    }
    let produced = t.elapsed();
    let bytes = (per_part * PARTS as usize * b.len()) as f64;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PARTS {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut offset = 0i64;
            let mut read = 0usize;
            loop {
                let mut f = FetchPartition::default();
                f.partition = p;
                f.fetch_offset = offset;
                f.partition_max_bytes = 1 << 20;
                let mut t = FetchTopic::default();
                t.topic = name("tp");
                t.partitions = vec![f];
                let mut r = FetchRequest::default();
                r.max_bytes = 1 << 20;
                r.topics = vec![t];
                let resp: FetchResponse = c.call(ApiKey::Fetch, 11, &r).await;
                let part = &resp.responses[0].partitions[0];
                let mut bytes = part.records.clone().unwrap_or_default();
                if bytes.is_empty() {
                    return read;
                }
                read += bytes.len();
                while bytes.remaining() >= 61 {
                    let base = (&bytes[..8]).get_i64();
                    let len = (&bytes[8..12]).get_i32() as usize;
                    let delta = i64::from((&bytes[23..27]).get_i32());
                    offset = base + delta + 1;
                    bytes.advance(12 + len);
                }
            }
        }));
    }
    let mut read = 0;
    for t in tasks {
        read += t.await.expect("consumer");
    }
    let consumed = t.elapsed();
    assert!(read as f64 >= bytes, "read back {read} of {bytes} bytes");
    drop(admin);
    server.terminate();
    let _ = std::fs::remove_dir_all(data);
    let mib = bytes / f64::from(1 << 20);
    (
        mib / produced.as_secs_f64(),
        read as f64 / f64::from(1 << 20) / consumed.as_secs_f64(),
    )
}

async fn throughput(bins: &[PathBuf], base: &Path) {
    let rounds: usize = env_or("WL_TP_ROUNDS", 3);
    let total_mib: usize = env_or("WL_TP_MB", 256);
    println!(
        "throughput: 8 partitions, {total_mib} MiB, acks=all, 16 KiB batches, {rounds} rounds"
    );
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); bins.len()];
    for round in 0..rounds {
        for (i, bin) in bins.iter().enumerate() {
            let r = throughput_round(bin, &base.join("tp"), total_mib).await;
            println!(
                "  round {round} {:<40} produce {:>7.1} MiB/s  consume {:>7.1} MiB/s",
                bin.display(),
                r.0,
                r.1
            );
            results[i].push(r);
        }
    }
    for (bin, rs) in bins.iter().zip(&results) {
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "  median {:<39} produce {:>7.1} MiB/s  consume {:>7.1} MiB/s",
            bin.display(),
            median(rs.iter().map(|r| r.0).collect()),
            median(rs.iter().map(|r| r.1).collect())
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with nothing to do.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(bin) = std::env::var("WATERLINE_BIN") else {
        eprintln!("scale bench: set WATERLINE_BIN to a waterline binary (skipped)");
        return;
    };
    let parts = std::env::var("WL_BENCH_PARTS").unwrap_or_else(|_| "scale,throughput".into());
    let tmp = tempfile::tempdir_in(std::env::var("WL_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))
        .expect("bench dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if parts.split(',').any(|p| p == "throughput") {
            let bins: Vec<PathBuf> = std::env::var("WL_TP_BINS")
                .unwrap_or_else(|_| bin.clone())
                .split(',')
                .map(PathBuf::from)
                .collect();
            throughput(&bins, tmp.path()).await;
        }
        if parts.split(',').any(|p| p == "scale") {
            scale(Path::new(&bin), tmp.path()).await;
        }
    });
}
