//! Crash loops: a consumer process processing concurrently with random delays is SIGKILLed at
//! random moments 20 times and restarted, against the in-process broker.
//!
//! - At least once (offsets in the Kafka group): every record is processed at least once, and
//!   every record processed again after a crash was not done according to the last commit
//!   before that crash (it was in flight, or acked but not yet committed).
//! - Exactly once into PostgreSQL (offsets written in the same transaction as the rows): the
//!   final table holds every record exactly once.
//!
//! The child is this test binary re-executed with `--ignored --exact child_main` and its role
//! in environment variables.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use waterline_consumer::waterline_core::{AckedSet, Interval, TopicPartition};
use waterline_consumer::{Consumer, ConsumerConfig, ConsumerEvent, OffsetStorage};
use waterline_store_postgres::testing::TempCluster;
use waterline_store_postgres::{PgStoreConfig, PostgresStore, tokio_postgres};

use common::{TestBroker, index_of, init_tracing, produce};

const PARTITIONS: i32 = 3;
const KILLS: usize = 20;

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

/// Kills `child` after a random 150..600 ms (SIGKILL: `Child::kill` on Unix).
async fn kill_randomly(mut child: Child) {
    let ms = rand::rng().random_range(150..600);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn run_to_end(child: Child) {
    let status = tokio::task::spawn_blocking(move || {
        let mut child = child;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
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

// ---- at least once ------------------------------------------------------------------------

#[derive(Default)]
struct RunLog {
    handed: BTreeSet<(i32, i64)>,
    acked: BTreeSet<(i32, i64)>,
    /// Last commit per partition: (offset, metadata).
    commits: BTreeMap<i32, (i64, String)>,
}

fn parse_log(path: &Path) -> RunLog {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = RunLog::default();
    for line in text.lines() {
        // A SIGKILL can cut the last line short: skip anything malformed.
        let f: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok());
        match (f.first().copied(), num(1), num(2)) {
            (Some("H"), Some(p), Some(o)) if f.len() == 3 => {
                log.handed.insert((p as i32, o));
            }
            (Some("A"), Some(p), Some(o)) if f.len() == 3 => {
                log.acked.insert((p as i32, o));
            }
            (Some("C"), Some(p), Some(o)) if f.len() == 4 && line.ends_with('.') => {
                let meta = f[3].trim_end_matches('.').to_string();
                log.commits.insert(p as i32, (o, meta));
            }
            _ => {}
        }
    }
    log
}

/// Whether `(p, o)` is done according to a commit of `offset` with `meta`.
fn committed_done(offset: i64, meta: &str, o: i64) -> bool {
    if o < offset {
        return true;
    }
    if meta.is_empty() {
        return false;
    }
    AckedSet::decode_string(offset, meta)
        .map(|s| s.contains(o))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_at_least_once() {
    init_tracing();
    let b = TestBroker::start(PARTITIONS).await;
    let total = 2400usize;
    produce(&b.addr, "crash", PARTITIONS, total, 100).await;
    let dir = tempfile::tempdir().unwrap();
    let vars = |run: usize, final_run: bool| {
        vec![
            ("WL_CHILD", "at-least-once".to_string()),
            ("WL_ADDR", b.addr.clone()),
            ("WL_TOPIC", "crash".to_string()),
            ("WL_TOTAL", total.to_string()),
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
    // Every record processed at least once.
    let acked: BTreeSet<(i32, i64)> = logs.iter().flat_map(|l| l.acked.iter().copied()).collect();
    let per = (total / PARTITIONS as usize) as i64;
    let want: BTreeSet<(i32, i64)> = (0..PARTITIONS)
        .flat_map(|p| (0..per).map(move |o| (p, o)))
        .collect();
    assert_eq!(acked, want, "every record processed at least once");
    // Re-processing after each crash is limited to what the last commit did not cover.
    let mut last_commit: BTreeMap<i32, (i64, String)> = BTreeMap::new();
    let mut ever: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut reprocessed = 0usize;
    for (run, log) in logs.iter().enumerate() {
        for &(p, o) in &log.handed {
            if ever.contains(&(p, o)) {
                reprocessed += 1;
                if let Some((c, meta)) = last_commit.get(&p) {
                    assert!(
                        !committed_done(*c, meta, o),
                        "run {run} re-processed {p}/{o}, which the commit ({c}, {meta:?}) \
                         before the previous crash had marked done"
                    );
                }
            }
        }
        ever.extend(log.handed.iter().copied());
        for (p, c) in &log.commits {
            last_commit.insert(*p, c.clone());
        }
    }
    // The final run committed everything.
    for p in 0..PARTITIONS {
        assert_eq!(last_commit.get(&p).map(|c| c.0), Some(per), "partition {p}");
    }
    let per_run: Vec<usize> = logs.iter().map(|l| l.acked.len()).collect();
    eprintln!(
        "at-least-once: {reprocessed} re-deliveries across {KILLS} kills; acks per run {per_run:?}"
    );
    assert!(
        per_run[..KILLS].iter().filter(|n| **n > 0).count() >= 5,
        "killed runs should make progress: {per_run:?}"
    );
    b.stop().await;
}

struct LineLog(std::sync::Mutex<std::fs::File>);

impl LineLog {
    fn open(path: &str) -> Self {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        LineLog(std::sync::Mutex::new(f))
    }
    fn line(&self, s: &str) {
        // One write per line: a kill cuts at most the last line.
        let mut f = self.0.lock().unwrap();
        let _ = f.write_all(format!("{s}\n").as_bytes());
    }
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"))
}

fn assignment(topic: &str) -> Vec<TopicPartition> {
    (0..PARTITIONS)
        .map(|p| TopicPartition::new(topic, p))
        .collect()
}

async fn child_at_least_once() {
    let log = Arc::new(LineLog::open(&env("WL_LOG")));
    let total: i64 = env("WL_TOTAL").parse().unwrap();
    let final_run = env("WL_FINAL") == "true";
    let topic = env("WL_TOPIC");
    let committed: Arc<std::sync::Mutex<HashMap<i32, i64>>> = Arc::default();
    let (l, c2) = (Arc::clone(&log), Arc::clone(&committed));
    let cfg = ConsumerConfig::builder(env("WL_ADDR"), "g-crash")
        .assign(assignment(&topic))
        .commit_policy(Interval::new(100).unwrap())
        .max_in_flight_per_partition(8)
        .on_event(move |e| match e {
            ConsumerEvent::Committed { offsets } => {
                for (tp, o) in offsets {
                    let off = o.offset().unwrap();
                    // Trailing '.' marks a complete line.
                    l.line(&format!("C {} {} {}.", tp.partition, off, o.metadata));
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
    loop {
        if final_run && committed.lock().unwrap().values().sum::<i64>() == total {
            break;
        }
        let d = tokio::select! {
            d = consumer.recv() => d.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        log.line(&format!("H {} {}", d.partition(), d.offset()));
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let ms = rand::rng().random_range(5..60);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let (p, o) = (d.partition(), d.offset());
            if d.ack() {
                log.line(&format!("A {p} {o}"));
            }
        });
    }
    let report = consumer.shutdown(Duration::from_secs(10)).await;
    assert!(report.final_commit_ok);
}

// ---- exactly once into PostgreSQL ---------------------------------------------------------

const POOL: usize = 6;

async fn connect(conn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_exactly_once_postgres() {
    init_tracing();
    let pg = TempCluster::start().expect("start PostgreSQL");
    let b = TestBroker::start(PARTITIONS).await;
    let total = 3000usize;
    produce(&b.addr, "eo", PARTITIONS, total, 100).await;
    let client = connect(&pg.conn_str()).await;
    client
        .batch_execute(
            "CREATE TABLE results (p INTEGER NOT NULL, o BIGINT NOT NULL, idx BIGINT NOT NULL)",
        )
        .await
        .unwrap();
    let vars = |final_run: bool| {
        vec![
            ("WL_CHILD", "exactly-once".to_string()),
            ("WL_ADDR", b.addr.clone()),
            ("WL_TOPIC", "eo".to_string()),
            ("WL_TOTAL", total.to_string()),
            ("WL_FINAL", final_run.to_string()),
            ("WL_PG", pg.conn_str()),
        ]
    };
    let mut progress = Vec::new();
    for _ in 0..KILLS {
        kill_randomly(spawn_child(&vars(false))).await;
        let n: i64 = client
            .query_one("SELECT count(*) FROM results", &[])
            .await
            .unwrap()
            .get(0);
        progress.push(n);
    }
    run_to_end(spawn_child(&vars(true))).await;
    eprintln!("exactly-once: rows after each kill {progress:?}");
    assert!(
        progress.windows(2).filter(|w| w[1] > w[0]).count() >= 5,
        "killed runs should make progress: {progress:?}"
    );

    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT (p, o)), count(DISTINCT idx) FROM results",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct, idx): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(distinct, total as i64, "every record present");
    assert_eq!(idx, total as i64);
    assert_eq!(
        rows, total as i64,
        "no record written twice (progress {progress:?})"
    );
    // The stored offsets are the log ends.
    let store = PostgresStore::connect(&pg.conn_str(), PgStoreConfig::default())
        .await
        .unwrap();
    let offsets = waterline_consumer::waterline_store::OffsetStore::get_group(&store, "g-eo")
        .await
        .unwrap();
    let per = (total / PARTITIONS as usize) as i64;
    assert_eq!(offsets.len(), PARTITIONS as usize);
    assert!(
        offsets.iter().all(|(_, o)| o.offset() == Some(per)),
        "{offsets:?}"
    );
    drop(client);
    b.stop().await;
    drop(pg);
}

async fn child_exactly_once() {
    let total: i64 = env("WL_TOTAL").parse().unwrap();
    let final_run = env("WL_FINAL") == "true";
    let topic = env("WL_TOPIC");
    let conn = env("WL_PG");
    let store = Arc::new(
        PostgresStore::connect(&conn, PgStoreConfig::default())
            .await
            .unwrap(),
    );
    let mut pool = Vec::new();
    for _ in 0..POOL {
        pool.push(Arc::new(tokio::sync::Mutex::new(connect(&conn).await)));
    }
    let checker = connect(&conn).await;
    let cfg = ConsumerConfig::builder(env("WL_ADDR"), "g-eo")
        .assign(assignment(&topic))
        .offset_storage(OffsetStorage::Transactional(store.clone()))
        .max_in_flight_per_partition(8)
        .build()
        .unwrap();
    let consumer = Arc::new(Consumer::new(cfg).unwrap());
    let mut n = 0usize;
    loop {
        if final_run {
            let done: i64 = checker
                .query_one("SELECT count(DISTINCT (p, o)) FROM results", &[])
                .await
                .unwrap()
                .get(0);
            if done == total {
                break;
            }
        }
        let d = tokio::select! {
            d = consumer.recv() => d.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        n += 1;
        let client = Arc::clone(&pool[n % POOL]);
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let ms = rand::rng().random_range(5..40);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            // Connection first, then the partition's transaction lock (a fixed order: no
            // deadlock between steps).
            let mut client = client.lock().await;
            let Ok(step) = d.begin_transaction().await else {
                return;
            };
            let r = step.record();
            let (p, o) = (r.partition(), r.offset());
            let idx = index_of(r.payload().unwrap()) as i64;
            let txn = client.transaction().await.unwrap();
            txn.execute(
                "INSERT INTO results (p, o, idx) VALUES ($1, $2, $3)",
                &[&p, &o, &idx],
            )
            .await
            .unwrap();
            let out = store
                .commit_in(&txn, step.group(), step.offsets())
                .await
                .unwrap();
            if !out.kept.is_empty() {
                txn.rollback().await.unwrap();
                step.aborted("overtaken by a newer commit");
                return;
            }
            txn.commit().await.unwrap();
            step.committed();
        });
    }
    consumer.shutdown(Duration::from_secs(10)).await;
}

/// Entry point of the re-executed child; ignored in normal runs.
#[test]
#[ignore = "child process entry point for the crash loops"]
fn child_main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("WL_CHILD").as_deref() {
        Ok("at-least-once") => rt.block_on(child_at_least_once()),
        Ok("exactly-once") => rt.block_on(child_exactly_once()),
        _ => panic!("child_main runs only as a crash-loop child (WL_CHILD unset)"),
    }
}
