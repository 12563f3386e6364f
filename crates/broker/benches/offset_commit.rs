//! OffsetCommit benchmark (plain `main`, no harness): durable commit throughput and latency of
//! an in-process broker with 1, 10 and 100 concurrent clients, each on its own TCP connection,
//! each committing 10 partitions per request; then, after `kill -9` of a `waterline serve`
//! child process holding 1,000 groups x 100 committed partitions: the time to reopen its offset
//! store in-process, and the time from starting the process again to it accepting connections
//! and answering an OffsetFetch (which includes recovering the topic's 100 partition logs).
//!
//! Run: `cargo bench -p waterline-broker --bench offset_commit`. The restart part needs the
//! `waterline` binary: `WATERLINE_BIN=/path/to/waterline` (default: `waterline` next to the
//! bench's own target directory, e.g. target/release/waterline); it is skipped if absent.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, GroupId, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waterline_broker::{Broker, BrokerConfig, BrokerState};

const TOPIC: &str = "bench";
const PARTITIONS_PER_REQUEST: i32 = 10;
const COMMIT_VERSION: i16 = 8;
const MEASURE: Duration = Duration::from_secs(3);
const WARMUP: Duration = Duration::from_millis(500);

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A minimal blocking-in-order Kafka client over one connection.
struct Conn {
    stream: TcpStream,
    corr: i32,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn { stream, corr: 0 }
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.corr += 1;
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = self.corr;
        h.client_id = Some(s("bench"));
        let mut body = BytesMut::new();
        h.encode(&mut body, key.request_header_version(version))
            .expect("header");
        req.encode(&mut body, version).expect("body");
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        self.stream.write_all(&frame).await.expect("write");
        let len = self.stream.read_i32().await.expect("read length");
        let mut buf = vec![0u8; usize::try_from(len).expect("length")];
        self.stream.read_exact(&mut buf).await.expect("read body");
        let mut buf = bytes::Bytes::from(buf);
        let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version))
            .expect("response header");
        assert_eq!(rh.correlation_id, self.corr);
        let resp = Resp::decode(&mut buf, version).expect("response body");
        assert!(!buf.has_remaining() || buf.remaining() < 1 << 20);
        resp
    }
}

fn commit_request(group: &str, first: i32, count: i32, offset: i64) -> OffsetCommitRequest {
    let mut t = OffsetCommitRequestTopic::default();
    t.name = TopicName(s(TOPIC));
    t.partitions = (first..first + count)
        .map(|p| {
            let mut x = OffsetCommitRequestPartition::default();
            x.partition_index = p;
            x.committed_offset = offset;
            x.committed_leader_epoch = -1;
            x.committed_metadata = Some(s("bench"));
            x
        })
        .collect();
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    // Standalone commits (generation -1): no group membership needed.
    r.generation_id_or_member_epoch = -1;
    r.topics = vec![t];
    r
}

fn check_committed(resp: &OffsetCommitResponse) {
    for t in &resp.topics {
        for p in &t.partitions {
            assert_eq!(p.error_code, 0, "commit failed");
        }
    }
}

/// One client: commits until `stop`, recording each request's latency after `measure_from`.
async fn client(addr: SocketAddr, id: usize, measure_from: Instant, stop: Instant) -> Vec<u32> {
    let mut conn = Conn::connect(addr).await;
    let group = format!("bench-{id}");
    let mut latencies = Vec::new();
    let mut offset = 0i64;
    loop {
        let start = Instant::now();
        if start >= stop {
            return latencies;
        }
        offset += 1;
        let req = commit_request(&group, 0, PARTITIONS_PER_REQUEST, offset);
        let resp: OffsetCommitResponse =
            conn.call(ApiKey::OffsetCommit, COMMIT_VERSION, &req).await;
        check_committed(&resp);
        if start >= measure_from {
            latencies.push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
        }
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config).await.expect("broker");
    let state = broker.state().clone();
    tokio::task::spawn_blocking(move || {
        state
            .topics
            .get_or_create(TOPIC, PARTITIONS_PER_REQUEST, BrokerState::now_ms())
            .expect("topic");
    })
    .await
    .expect("topic task");
    let addr = broker.local_addr();
    println!(
        "| clients | partition commits/s | requests/s | p50 ms | p99 ms | max ms | fsyncs/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for clients in [1usize, 10, 100] {
        let before = broker.state().groups.store_stats().expect("store open");
        let begin = Instant::now();
        let measure_from = begin + WARMUP;
        let stop = measure_from + MEASURE;
        let tasks: Vec<_> = (0..clients)
            .map(|id| tokio::spawn(client(addr, id, measure_from, stop)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        let after = broker.state().groups.store_stats().expect("store open");
        let wall = begin.elapsed().as_secs_f64();
        all.sort_unstable();
        let secs = MEASURE.as_secs_f64();
        let requests = all.len() as f64 / secs;
        let fsyncs = (after.backend_commits - before.backend_commits) as f64 / wall;
        println!(
            "| {clients} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0} |",
            requests * f64::from(PARTITIONS_PER_REQUEST),
            requests,
            percentile(&all, 0.50),
            percentile(&all, 0.99),
            percentile(&all, 1.0),
            fsyncs,
        );
    }
    broker.shutdown().await.expect("shutdown");
}

fn waterline_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WATERLINE_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/<profile>/deps/offset_commit-<hash> -> target/<profile>/waterline
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("waterline");
    candidate.exists().then_some(candidate)
}

/// Starts `waterline serve` and returns it with its bound address (from the ready line).
fn serve(bin: &Path, data: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(bin)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn waterline");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let addr = line
        .strip_prefix("waterline: ready on ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ready line: {line:?}"));
    (child, addr)
}

async fn restart_time(bin: &Path) {
    const GROUPS: usize = 1_000;
    const PARTITIONS: i32 = 100;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut child, addr) = serve(bin, &data);

    let mut conn = Conn::connect(addr).await;
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(s(TOPIC));
    topic.num_partitions = PARTITIONS;
    topic.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![topic];
    req.timeout_ms = 30_000;
    let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 5, &req).await;
    assert_eq!(resp.topics[0].error_code, 0, "create topic");

    let fill = Instant::now();
    let writers: Vec<_> = (0..10)
        .map(|w| {
            tokio::spawn(async move {
                let mut conn = Conn::connect(addr).await;
                for g in (w..GROUPS).step_by(10) {
                    let req = commit_request(&format!("group-{g}"), 0, PARTITIONS, 42);
                    let resp: OffsetCommitResponse =
                        conn.call(ApiKey::OffsetCommit, COMMIT_VERSION, &req).await;
                    check_committed(&resp);
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    let fill = fill.elapsed();

    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // The offset store alone: reopen a copy of the crash-state file in-process and list its
    // groups (what the broker does at start-up). A copy, so that any crash recovery the open
    // performs is left for the restarted child to do too.
    let copy = dir.path().join("offsets-copy.redb");
    std::fs::copy(data.join("offsets.redb"), &copy).expect("copy offset store");
    let store_open = Instant::now();
    let store = waterline_store::RedbStore::open(&copy)
        .await
        .expect("reopen offset store");
    let groups = waterline_store::OffsetStore::list_groups(&store)
        .await
        .expect("list groups");
    assert_eq!(groups.len(), GROUPS);
    drop(store);
    let store_open = store_open.elapsed();

    let restarted = Instant::now();
    let (mut child, addr) = serve(bin, &data);
    let ready = restarted.elapsed();
    let mut conn = Conn::connect(addr).await;
    let mut t = OffsetFetchRequestTopic::default();
    t.name = TopicName(s(TOPIC));
    t.partition_indexes = vec![0, PARTITIONS - 1];
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(s(&format!("group-{}", GROUPS - 1)));
    req.topics = Some(vec![t]);
    let resp: OffsetFetchResponse = conn.call(ApiKey::OffsetFetch, 7, &req).await;
    let answered = restarted.elapsed();
    let offsets: Vec<i64> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, vec![42, 42], "committed offsets lost");
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "| {GROUPS} groups x {PARTITIONS} partitions | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
        fill.as_secs_f64() * 1000.0,
        store_open.as_secs_f64() * 1000.0,
        ready.as_secs_f64() * 1000.0,
        answered.as_secs_f64() * 1000.0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if quick {
        println!("offset_commit: run with `cargo bench` to measure");
        return;
    }
    println!("## OffsetCommit: durable commits, 10 partitions per request (in-process broker)\n");
    rt.block_on(throughput());
    println!("\n## kill -9 to serving again (`waterline serve` child process)\n");
    match waterline_bin() {
        Some(bin) => {
            println!(
                "| state | fill time | offset store reopen + list groups | restart -> ready line | restart -> OffsetFetch answered |"
            );
            println!("|---|---:|---:|---:|---:|");
            rt.block_on(restart_time(&bin));
        }
        None => println!("skipped: set WATERLINE_BIN to a built `waterline` binary"),
    }
}
