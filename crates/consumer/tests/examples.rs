//! The three examples run as real processes against the in-process broker (and a throwaway
//! PostgreSQL): each consumes everything, commits the log end, and leaves cleanly on Ctrl-C
//! (SIGINT). The binaries come from `cargo build --all-targets`, which the README's test
//! command runs before the tests.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use waterline_store_postgres::testing::TempCluster;

use common::{TestBroker, index_of, init_tracing, produce, producer};

/// A running example, killed on drop if it is still running.
struct Example(Child);

impl Example {
    fn start(name: &str, args: &[&str]) -> Self {
        // Test binaries live in target/<profile>/deps, examples in target/<profile>/examples.
        let exe = std::env::current_exe().unwrap();
        let bin: PathBuf = exe
            .parent()
            .and_then(|deps| deps.parent())
            .map(|profile| profile.join("examples").join(name))
            .unwrap();
        assert!(
            bin.exists(),
            "{} is missing: build it first (cargo build -p waterline-consumer --examples)",
            bin.display()
        );
        let child = Command::new(&bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        Example(child)
    }

    /// Ctrl-C, then the exit status and what it printed.
    fn interrupt(mut self) -> (std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -INT failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "example did not exit after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            std::io::Read::read_to_string(&mut o, &mut out).unwrap();
        }
        (status, out)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sum of `group`'s committed offsets over `partitions` partitions of `topic` (0 if none).
fn committed(addr: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .map(|got| {
            got.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_example_commits_everything_and_dead_letters_failures() {
    init_tracing();
    let b = TestBroker::start(3).await;
    produce(&b.addr, "orders", 3, 300, 16).await;
    // One record the example's stand-in work refuses: retried, then dead-lettered.
    producer(&b.addr)
        .send(
            FutureRecord::<[u8], [u8]>::to("orders")
                .partition(1)
                .payload(b"please fail"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let ex = Example::start("at_least_once", &[&b.addr, "orders", "billing"]);
    let addr = b.addr.clone();
    wait_for("every offset committed", || {
        committed(&addr, "billing", "orders", 3) == 301
    })
    .await;
    let (status, out) = ex.interrupt();
    assert!(status.success(), "exit status {status}; output:\n{out}");
    assert!(out.contains("shut down:"), "{out}");
    // The failed record reached the dead-letter topic.
    assert_eq!(committed(&b.addr, "billing", "orders", 3), 301);
    let dlq: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("group.id", "dlq-reader")
        .create()
        .unwrap();
    // Auto-created with the broker's default of 3 partitions; the record may be in any.
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("orders.dlq", p, Offset::Beginning)
            .unwrap();
    }
    dlq.assign(&tpl).unwrap();
    let m = dlq
        .poll(Duration::from_secs(20))
        .expect("a dead-lettered record")
        .unwrap();
    assert_eq!(rdkafka::Message::payload(&m), Some(&b"please fail"[..]));
    drop(m);
    drop(dlq);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_example_commits_only_what_it_flushed() {
    init_tracing();
    let b = TestBroker::start(2).await;
    produce(&b.addr, "events", 2, 200, 16).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.out");
    let ex = Example::start("checkpoint", &[&b.addr, "events", out.to_str().unwrap()]);
    let addr = b.addr.clone();
    wait_for("every offset committed", || {
        committed(&addr, "checkpointed-sink", "events", 2) == 200
    })
    .await;
    let (status, printed) = ex.interrupt();
    assert!(status.success(), "exit status {status}; output:\n{printed}");
    // Committed means flushed: every record is in the file.
    let lines: BTreeSet<usize> = std::fs::read(&out)
        .unwrap()
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(index_of)
        .collect();
    assert_eq!(lines, (0..200).collect());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_example_writes_every_record_once() {
    init_tracing();
    let pg = tokio::task::spawn_blocking(|| TempCluster::start().expect("start PostgreSQL"))
        .await
        .unwrap();
    let b = TestBroker::start(2).await;
    produce(&b.addr, "payments", 2, 150, 16).await;
    let conn = pg.conn_str();
    let ex = Example::start("exactly_once_postgres", &[&b.addr, "payments", &conn]);
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = client
            .query_one("SELECT count(*) FROM payments", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0);
        if rows >= 150 {
            break;
        }
        assert!(Instant::now() < deadline, "only {rows} rows after 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, printed) = ex.interrupt();
    assert!(status.success(), "exit status {status}; output:\n{printed}");
    let rows = client
        .query("SELECT body FROM payments", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 150, "every record exactly once");
    let distinct: BTreeSet<usize> = rows
        .iter()
        .map(|r| index_of(&r.get::<_, Vec<u8>>(0)))
        .collect();
    assert_eq!(distinct, (0..150).collect());
    b.stop().await;
    drop(pg);
}
