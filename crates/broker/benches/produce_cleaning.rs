//! Produce acks=all (idempotent) throughput while the log cleaner compacts another topic,
//! against the same load with the cleaner idle, in interleaved rounds of one run (plain `main`).
//!
//! An in-process broker (cleaner on, 1 thread, backoff 100 ms, default settings otherwise:
//! no I/O throttle, 128 MiB map) hosts `prod` (8 partitions, retention 64 MiB per partition)
//! and `dirty` (compacted, 1 partition, 128 MiB segments). Producers: 8 TCP connections, one
//! per `prod` partition, each with its own producer id from InitProducerId, sending Produce v9
//! acks=-1 requests of one 64 KiB batch (64 records of 1 KiB, sequences in order), 4 requests
//! in flight per connection (the broker answers them in order). A round measures acked bytes
//! per second over `WL_ROUND_SECS` (default 3 s).
//!
//! Busy rounds first write `WL_DIRTY_MIB` (default 1024) MiB of keyed 1 KiB updates to `dirty`
//! (each key written 10 times: 10% live; the producers pause meanwhile, as the fill alone
//! saturates the disk, and `dirty` is `cleanup.policy=delete` until the fill is complete, so
//! the cleaner starts on the whole of it), then measure from 150 ms after `compact` is set
//! (the cleaner plans every 100 ms) until the pass is installed (the dirty ratio drops, polled
//! every 20 ms): the busy window is the pass itself. Idle rounds measure `WL_ROUND_SECS` with
//! `dirty` clean. Rounds alternate idle, busy, idle, busy... (`WL_ROUNDS` pairs,
//! default 4).
//!
//! Run: `cargo bench -p waterline-broker --bench produce_cleaning`. Env `WL_CLEANER_IO` sets
//! `cleaner_io_max_bytes_per_second`, `WL_CLEANER_NICE` sets `cleaner_thread_nice`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use waterline_broker::{Broker, BrokerConfig, BrokerState, SharedState};

const PROD: &str = "prod";
const DIRTY: &str = "dirty";
const PRODUCERS: i32 = 8;
const IN_FLIGHT: usize = 4;
const RECORDS_PER_BATCH: usize = 64;
const VALUE_BYTES: usize = 1024;
const PRODUCE_VERSION: i16 = 9;

/// Produce requests answered with an error (durability timeouts).
static ERRORS: AtomicU64 = AtomicU64::new(0);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn frame<Req: Encodable>(key: ApiKey, version: i16, corr: i32, req: &Req) -> BytesMut {
    let mut h = RequestHeader::default();
    h.request_api_key = key as i16;
    h.request_api_version = version;
    h.correlation_id = corr;
    h.client_id = Some(s("bench"));
    let mut body = BytesMut::new();
    h.encode(&mut body, key.request_header_version(version))
        .expect("header");
    req.encode(&mut body, version).expect("body");
    let mut f = BytesMut::with_capacity(body.len() + 4);
    f.put_i32(body.len() as i32);
    f.put_slice(&body);
    f
}

async fn read_response<Resp: Decodable>(
    stream: &mut (impl AsyncReadExt + Unpin),
    key: ApiKey,
    version: i16,
    corr: i32,
) -> Resp {
    let len = stream.read_i32().await.expect("read length");
    let mut buf = vec![0u8; usize::try_from(len).expect("length")];
    stream.read_exact(&mut buf).await.expect("read body");
    let mut buf = Bytes::from(buf);
    let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version))
        .expect("response header");
    assert_eq!(rh.correlation_id, corr, "responses in order");
    let r = Resp::decode(&mut buf, version).expect("response body");
    assert!(!buf.has_remaining());
    r
}

fn zz(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// An uncompressed v2 batch of keyed records; `seq` is patched per request by [`set_seq`].
fn batch(keys: &[u64], value: usize, pid: i64, epoch: i16, ts: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let key = format!("key-{k:012}");
        let mut body = vec![0u8];
        zz(&mut body, 0);
        zz(&mut body, i as i64);
        zz(&mut body, key.len() as i64);
        body.extend_from_slice(key.as_bytes());
        zz(&mut body, value as i64);
        body.extend(std::iter::repeat_n(b'v', value));
        zz(&mut body, 0);
        zz(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let mut b = Vec::with_capacity(61 + records.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(keys.len() as i32 - 1).to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&(if pid < 0 { -1i32 } else { 0 }).to_be_bytes());
    b.extend_from_slice(&(keys.len() as i32).to_be_bytes());
    b.extend_from_slice(&records);
    set_seq(&mut b, if pid < 0 { -1 } else { 0 });
    b
}

/// Sets the base sequence and recomputes the CRC.
fn set_seq(b: &mut [u8], seq: i32) {
    b[53..57].copy_from_slice(&seq.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = TopicName(s(topic));
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = -1;
    r.timeout_ms = 30_000;
    r.topic_data = vec![t];
    r
}

fn check(resp: &ProduceResponse) {
    for t in &resp.responses {
        for p in &t.partition_responses {
            assert_eq!(
                p.error_code, 0,
                "produce to {} {} failed: {:?}",
                t.name.0, p.index, p.error_message
            );
        }
    }
}

/// One idempotent producer on its own connection and partition, running until `stop`, adding
/// acknowledged bytes to `acked` while `counting` is set.
async fn producer(
    addr: SocketAddr,
    partition: i32,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    counting: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut rd, mut wr) = stream.into_split();
    let mut init = InitProducerIdRequest::default();
    init.transaction_timeout_ms = 60_000;
    init.producer_id = (-1).into();
    init.producer_epoch = -1;
    wr.write_all(&frame(ApiKey::InitProducerId, 4, 1, &init))
        .await
        .expect("write");
    let r: InitProducerIdResponse = read_response(&mut rd, ApiKey::InitProducerId, 4, 1).await;
    assert_eq!(r.error_code, 0);
    let keys: Vec<u64> = (0..RECORDS_PER_BATCH as u64).collect();
    let now = BrokerState::now_ms();
    let mut template = batch(&keys, VALUE_BYTES, r.producer_id.0, r.producer_epoch, now);
    let size = template.len() as u64;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(i32, bool)>(IN_FLIGHT);
    // Reader: answers come in request order.
    let reader = tokio::spawn(async move {
        while let Some((corr, counted)) = rx.recv().await {
            let r: ProduceResponse =
                read_response(&mut rd, ApiKey::Produce, PRODUCE_VERSION, corr).await;
            // A durability timeout (the append itself happened, so the sequence goes on) is
            // counted as an error, not as acked bytes.
            let ok = r
                .responses
                .iter()
                .flat_map(|t| &t.partition_responses)
                .all(|p| p.error_code == 0);
            if !ok {
                if ERRORS.fetch_add(1, Ordering::Relaxed) < 3 {
                    let p = &r.responses[0].partition_responses[0];
                    eprintln!("produce error {} {:?}", p.error_code, p.error_message);
                }
            } else if counted {
                acked.fetch_add(size, Ordering::Relaxed);
            }
        }
    });
    let mut seq = 0i32;
    let mut corr = 1;
    while !stop.load(Ordering::Relaxed) {
        if paused.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        corr += 1;
        set_seq(&mut template, seq);
        seq = seq.wrapping_add(RECORDS_PER_BATCH as i32) & i32::MAX;
        let req = produce_request(PROD, partition, Bytes::copy_from_slice(&template));
        let f = frame(ApiKey::Produce, PRODUCE_VERSION, corr, &req);
        // Waits while IN_FLIGHT requests are unanswered.
        tx.send((corr, counting.load(Ordering::Relaxed)))
            .await
            .expect("reader alive");
        wr.write_all(&f).await.expect("write");
    }
    drop(tx);
    reader.await.expect("reader");
}

/// Writes `mib` MiB of keyed updates to `dirty` (each key 10 times), acks=all, 1 MiB batches.
async fn fill_dirty(addr: SocketAddr, mib: u64, round: u64) {
    let per_record = (VALUE_BYTES + 30) as u64;
    let records = (mib << 20) / per_record;
    let key_space = (records / 10).max(1);
    // Under max.message.bytes (1 MiB by default).
    let per_batch = (900 << 10) / per_record;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut next = round * 7;
    let mut corr = 0;
    let mut sent = 0;
    while sent < records {
        let keys: Vec<u64> = (0..per_batch).map(|i| (next + i) % key_space).collect();
        next += per_batch;
        sent += per_batch;
        corr += 1;
        let b = batch(&keys, VALUE_BYTES, -1, -1, BrokerState::now_ms());
        let req = produce_request(DIRTY, 0, Bytes::from(b));
        stream
            .write_all(&frame(ApiKey::Produce, PRODUCE_VERSION, corr, &req))
            .await
            .expect("write");
        let r: ProduceResponse =
            read_response(&mut stream, ApiKey::Produce, PRODUCE_VERSION, corr).await;
        check(&r);
    }
}

/// Sets `dirty`'s cleanup.policy (the fill runs with `delete`, so the cleaner cannot start on
/// it before it is complete).
async fn set_policy(state: &SharedState, policy: &'static str) {
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        st.topics
            .alter_config(DIRTY, false, |t| {
                let mut o = t.overrides.clone();
                o.insert("cleanup.policy".into(), policy.into());
                Ok(o)
            })
            .expect("alter dirty");
    })
    .await
    .expect("alter task");
}

fn dirty_ratio(state: &SharedState) -> f64 {
    state
        .topics
        .partition(DIRTY, 0)
        .and_then(|p| p.with_log(|l| l.dirty_ratio(BrokerState::now_ms())))
        .unwrap_or(0.0)
}

fn dirty_size(state: &SharedState) -> u64 {
    state
        .topics
        .partition(DIRTY, 0)
        .and_then(|p| p.with_log(|l| l.size_bytes()))
        .unwrap_or(0)
}

/// Measures acked produce MB/s over `secs` with the producers running.
async fn measure(counting: &AtomicBool, acked: &AtomicU64, secs: f64) -> f64 {
    acked.store(0, Ordering::Relaxed);
    counting.store(true, Ordering::Relaxed);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    // Requests counted were sent inside the window; let their answers arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    acked.load(Ordering::Relaxed) as f64 / (1 << 20) as f64 / elapsed
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rounds: usize = env("WL_ROUNDS", 4);
    let secs: f64 = env("WL_ROUND_SECS", 3.0);
    let dirty_mib: u64 = env("WL_DIRTY_MIB", 1024);
    let dir = tempfile::tempdir_in(env("WL_BENCH_DIR", std::env::temp_dir())).expect("tempdir");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        cleaner_threads: 1,
        cleaner_backoff_ms: 100,
        cleaner_io_max_bytes_per_second: std::env::var("WL_CLEANER_IO")
            .ok()
            .and_then(|v| v.parse().ok()),
        cleaner_thread_nice: std::env::var("WL_CLEANER_NICE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(BrokerConfig::default().cleaner_thread_nice),
        ..BrokerConfig::default()
    };
    println!(
        "config: cleaner_io_max_bytes_per_second {:?}, cleaner_thread_nice {}, {rounds} round pairs of {secs} s, {dirty_mib} MiB dirty per busy round",
        config.cleaner_io_max_bytes_per_second, config.cleaner_thread_nice
    );
    let broker = Broker::start(config).await.expect("broker");
    let state = broker.state().clone();
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let prod = [
            ("retention.bytes", "67108864"),
            ("segment.bytes", "16777216"),
        ];
        st.topics
            .create(
                PROD,
                PRODUCERS,
                prod.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                false,
                BrokerState::now_ms(),
            )
            .expect("prod topic");
        let dirty = [
            ("cleanup.policy", "compact"),
            ("segment.bytes", "134217728"),
        ];
        st.topics
            .create(
                DIRTY,
                1,
                dirty
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                false,
                BrokerState::now_ms(),
            )
            .expect("dirty topic");
    })
    .await
    .expect("topics");
    let addr = broker.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            tokio::spawn(producer(
                addr,
                p,
                stop.clone(),
                paused.clone(),
                counting.clone(),
                acked.clone(),
            ))
        })
        .collect();
    // Warm-up.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut idle = Vec::new();
    let mut busy = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        // Idle: wait for any pass to finish first.
        while dirty_ratio(&state) > 0.2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let e = ERRORS.load(Ordering::Relaxed);
        let i = measure(&counting, &acked, secs).await;
        idle.push(i);
        println!(
            "round {round} idle: {i:.1} MiB/s acked ({} produce errors)",
            ERRORS.load(Ordering::Relaxed) - e
        );

        // The fill itself saturates the disk: producers pause (their requests in flight are
        // answered first), so the busy window sees only the cleaner.
        paused.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        set_policy(&state, "delete").await;
        fill_dirty(addr, dirty_mib, round as u64).await;
        let filled = t.elapsed().as_secs_f64();
        paused.store(false, Ordering::Relaxed);
        set_policy(&state, "compact").await;
        let before = dirty_size(&state);
        // The cleaner plans every 100 ms: the window opens 150 ms after the policy change and
        // closes when the pass is installed (the dirty ratio drops), polled every 20 ms.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let started_dirty = dirty_ratio(&state) > 0.2;
        let e = ERRORS.load(Ordering::Relaxed);
        acked.store(0, Ordering::Relaxed);
        counting.store(true, Ordering::Relaxed);
        let t = Instant::now();
        while dirty_ratio(&state) > 0.2 && t.elapsed() < Duration::from_secs(120) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        counting.store(false, Ordering::Relaxed);
        let window = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let b = acked.load(Ordering::Relaxed) as f64 / (1 << 20) as f64 / window;
        let after = dirty_size(&state);
        let still_dirty = started_dirty && window > 0.5;
        println!(
            "round {round} busy: {b:.1} MiB/s acked ({:.0}% of idle) over the pass, {window:.2} s, {} produce errors; dirty fill {filled:.1} s, partition {} -> {} MiB{}",
            100.0 * b / i,
            ERRORS.load(Ordering::Relaxed) - e,
            before >> 20,
            after >> 20,
            if still_dirty {
                ""
            } else {
                " [NOT COUNTED: no pass seen]"
            }
        );
        if still_dirty {
            busy.push(b);
            ratios.push(b / i);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.expect("producer");
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            f64::NAN
        } else {
            v[v.len() / 2]
        }
    };
    let list: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:.0}%", r * 100.0))
        .collect();
    println!(
        "median idle {:.1} MiB/s, median busy {:.1} MiB/s; per-round busy/idle {} (median {:.0}%)",
        med(&mut idle),
        med(&mut busy),
        list.join(" "),
        100.0 * med(&mut ratios.clone())
    );
    broker.shutdown().await.expect("shutdown");
}
