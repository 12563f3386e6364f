//! The ordering modes against the in-process broker, with the consumer process SIGKILLed at
//! random moments and restarted (the child is this test binary re-executed with
//! `--ignored --exact child_main`).
//!
//! The child processes with [`Consumer::process`]: random 1..10 ms per record, 8 at once, about one
//! first attempt in ten failing (retried). It logs each call's start (`H`), each success
//! (`A`), each commit (`C`), and any ordering violation it sees (`V`): in Key mode two
//! calls of one key at once or a key's record started after a later one of that key, in
//! Partition mode the same per partition. The parent checks, over all runs:
//! - no violation;
//! - every record processed at least once;
//! - a record processed again after a crash was not done according to the last commit
//!   before that crash (re-processing is limited to what was in flight, waiting or acked
//!   but uncommitted);
//! - the final run commits everything.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rdkafka::producer::FutureRecord;
use waterline_consumer::waterline_core::AckedSet;
use waterline_consumer::{
    Consumer, ConsumerConfig, ConsumerEvent, Exhausted, FailurePolicy, Interval, Ordering,
    TopicPartition,
};

use common::{TestBroker, init_tracing, producer};

const PARTITIONS: i32 = 3;
const KEYS: usize = 40;
const TOTAL: usize = 4000;
const KILLS: usize = 6;

/// Record `i`: key `k{i % KEYS}`, on the key's partition (as a key-hashing producer would).
async fn produce_keyed(addr: &str, topic: &str) {
    let p = producer(addr);
    let mut futs = Vec::new();
    for i in 0..TOTAL {
        let k = i % KEYS;
        let (p, topic) = (p.clone(), topic.to_string());
        futs.push(async move {
            let key = format!("k{k}");
            let payload = i.to_string();
            p.send(
                FutureRecord::to(&topic)
                    .partition((k % PARTITIONS as usize) as i32)
                    .key(key.as_bytes())
                    .payload(payload.as_bytes()),
                Duration::from_secs(20),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
        });
    }
    for r in futures::future::join_all(futs).await {
        r.unwrap();
    }
}

fn spawn_child(vars: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--ignored",
        "--exact",
        "child_main",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

async fn kill_randomly(mut child: Child) {
    let ms = rand::rng().random_range(200..700);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn run_to_end(child: Child) {
    let status = tokio::task::spawn_blocking(move || {
        let mut child = child;
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("final child did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "final child failed: {status}");
}

#[derive(Default)]
struct RunLog {
    handed: BTreeSet<(i32, i64)>,
    acked: BTreeSet<(i32, i64)>,
    commits: BTreeMap<i32, (i64, String)>,
    violations: Vec<String>,
}

fn parse_log(path: &Path) -> RunLog {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = RunLog::default();
    for line in text.lines() {
        // A SIGKILL can cut the last line short: only lines ending in '.' count.
        let Some(line) = line.strip_suffix('.') else {
            continue;
        };
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok());
        match (f.first().copied(), num(1), num(2)) {
            (Some("H"), Some(p), Some(o)) => {
                log.handed.insert((p as i32, o));
            }
            (Some("A"), Some(p), Some(o)) => {
                log.acked.insert((p as i32, o));
            }
            (Some("C"), Some(p), Some(o)) if f.len() == 4 => {
                log.commits.insert(p as i32, (o, f[3].to_string()));
            }
            (Some("V"), _, _) => log.violations.push(line.to_string()),
            _ => {}
        }
    }
    log
}

fn committed_done(offset: i64, meta: &str, o: i64) -> bool {
    o < offset
        || (!meta.is_empty() && AckedSet::decode_string(offset, meta).is_ok_and(|s| s.contains(o)))
}

async fn crash_loop(mode: &str) {
    init_tracing();
    let b = TestBroker::start(PARTITIONS).await;
    let topic = format!("order-{mode}");
    produce_keyed(&b.addr, &topic).await;
    let dir = tempfile::tempdir().unwrap();
    let vars = |run: usize, final_run: bool| {
        vec![
            ("WL_CHILD", "ordering".to_string()),
            ("WL_MODE", mode.to_string()),
            ("WL_ADDR", b.addr.clone()),
            ("WL_TOPIC", topic.clone()),
            ("WL_FINAL", final_run.to_string()),
            (
                "WL_LOG",
                dir.path()
                    .join(format!("run-{run:02}.log"))
                    .display()
                    .to_string(),
            ),
        ]
    };
    for run in 0..KILLS {
        kill_randomly(spawn_child(&vars(run, false))).await;
    }
    run_to_end(spawn_child(&vars(KILLS, true))).await;

    let logs: Vec<RunLog> = (0..=KILLS)
        .map(|r| parse_log(&dir.path().join(format!("run-{r:02}.log"))))
        .collect();
    let violations: Vec<&String> = logs.iter().flat_map(|l| &l.violations).collect();
    assert!(
        violations.is_empty(),
        "{mode}: ordering violated: {violations:?}"
    );
    let mut per: HashMap<i32, i64> = HashMap::new();
    for i in 0..TOTAL {
        *per.entry(((i % KEYS) % PARTITIONS as usize) as i32)
            .or_default() += 1;
    }
    let want: BTreeSet<(i32, i64)> = per
        .iter()
        .flat_map(|(p, n)| (0..*n).map(move |o| (*p, o)))
        .collect();
    let acked: BTreeSet<(i32, i64)> = logs.iter().flat_map(|l| l.acked.iter().copied()).collect();
    assert_eq!(acked, want, "{mode}: every record processed at least once");
    let mut last_commit: BTreeMap<i32, (i64, String)> = BTreeMap::new();
    let mut ever: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut again = 0usize;
    for (run, log) in logs.iter().enumerate() {
        for &(p, o) in &log.handed {
            if ever.contains(&(p, o)) {
                again += 1;
                if let Some((c, meta)) = last_commit.get(&p) {
                    assert!(
                        !committed_done(*c, meta, o),
                        "{mode}: run {run} processed {p}/{o} again, which the commit \
                         ({c}, {meta:?}) before the crash had marked done"
                    );
                }
            }
        }
        ever.extend(log.handed.iter().copied());
        for (p, c) in &log.commits {
            last_commit.insert(*p, c.clone());
        }
    }
    for (p, n) in &per {
        assert_eq!(
            last_commit.get(p).map(|c| c.0),
            Some(*n),
            "{mode}: partition {p}"
        );
    }
    let per_run: Vec<usize> = logs.iter().map(|l| l.acked.len()).collect();
    eprintln!("{mode}: {again} records processed again across {KILLS} kills; per run {per_run:?}");
    assert!(
        per_run[..KILLS].iter().filter(|n| **n > 0).count() >= 3,
        "{mode}: killed runs should make progress: {per_run:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unordered_survives_kill_9() {
    crash_loop("unordered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_survives_kill_9() {
    crash_loop("partition").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_survives_kill_9() {
    crash_loop("key").await;
}

// ---- the child ----------------------------------------------------------------------------

struct LineLog(Mutex<std::fs::File>);

impl LineLog {
    fn line(&self, s: &str) {
        // One write per line, ending in '.': a kill cuts at most the last line.
        let _ = self
            .0
            .lock()
            .unwrap()
            .write_all(format!("{s}.\n").as_bytes());
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

/// What the child watches to report violations: per ordering unit (key or partition), the
/// calls running and the last offset started.
#[derive(Default)]
struct Watch {
    running: HashMap<String, u32>,
    last_started: HashMap<String, i64>,
}

async fn child() {
    let path = env("WL_LOG");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let log = Arc::new(LineLog(Mutex::new(file)));
    let final_run = env("WL_FINAL") == "true";
    let topic = env("WL_TOPIC");
    let mode = env("WL_MODE");
    let ordering = match mode.as_str() {
        "unordered" => Ordering::Unordered,
        "partition" => Ordering::Partition,
        _ => Ordering::Key,
    };
    let committed: Arc<Mutex<HashMap<i32, i64>>> = Arc::default();
    let (l, c2) = (Arc::clone(&log), Arc::clone(&committed));
    let cfg = ConsumerConfig::builder(env("WL_ADDR"), format!("g-{mode}"))
        .assign(
            (0..PARTITIONS)
                .map(|p| TopicPartition::new(topic.clone(), p))
                .collect(),
        )
        .ordering(ordering)
        .commit_policy(Interval::new(100).unwrap())
        .max_in_flight_per_partition(32)
        .failure_policy(FailurePolicy {
            max_attempts: 5,
            backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            exhausted: Exhausted::Hold,
        })
        .on_event(move |e| match e {
            ConsumerEvent::Committed { offsets } => {
                for (tp, o) in offsets {
                    let off = o.offset().unwrap();
                    l.line(&format!("C {} {} {}", tp.partition, off, o.metadata));
                    c2.lock().unwrap().insert(tp.partition, off);
                }
            }
            ConsumerEvent::Assigned { positions, .. } => {
                for (tp, start) in positions {
                    c2.lock().unwrap().insert(tp.partition, *start);
                }
            }
            _ => {}
        })
        .build()
        .unwrap();
    let consumer = Arc::new(Consumer::new(cfg).unwrap());
    let watch: Arc<Mutex<Watch>> = Arc::default();
    let ordered = ordering != Ordering::Unordered;
    let (c, lg) = (Arc::clone(&consumer), Arc::clone(&log));
    let worker = tokio::spawn(async move {
        c.process(8, move |r| {
            let (log, watch) = (Arc::clone(&lg), Arc::clone(&watch));
            async move {
                let (p, o) = (r.partition(), r.offset());
                let unit = match ordering {
                    Ordering::Key => {
                        String::from_utf8_lossy(r.key().unwrap_or_default()).into_owned()
                    }
                    _ => p.to_string(),
                };
                {
                    let mut w = watch.lock().unwrap();
                    let running = w.running.entry(unit.clone()).or_default();
                    *running += 1;
                    if ordered && *running > 1 {
                        log.line(&format!("V {p} {o} {unit} running together"));
                    }
                    let last = w.last_started.entry(unit.clone()).or_insert(-1);
                    if ordered && o < *last {
                        log.line(&format!("V {p} {o} {unit} started after {last}"));
                    }
                    *last = (*last).max(o);
                }
                log.line(&format!("H {p} {o}"));
                let (ms, fail) = {
                    let mut rng = rand::rng();
                    (rng.random_range(1..10), rng.random_bool(0.1))
                };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                *watch.lock().unwrap().running.get_mut(&unit).unwrap() -= 1;
                if fail {
                    return Err("injected failure");
                }
                log.line(&format!("A {p} {o}"));
                Ok(())
            }
        })
        .await
    });
    let total = TOTAL as i64;
    while !(final_run && committed.lock().unwrap().values().sum::<i64>() == total) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = consumer.shutdown(Duration::from_secs(10)).await;
    assert!(report.final_commit_ok);
    worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the crash tests as a child process"]
async fn child_main() {
    if std::env::var("WL_CHILD").as_deref() == Ok("ordering") {
        child().await;
    }
}
