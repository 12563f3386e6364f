//! Crash tests: a child process commits in a loop and reports each finished commit; the
//! parent SIGKILLs it at random moments and reopens the store. After every kill the store must
//! open without error and hold the last reported commit or the one after it (the child may die
//! between a commit returning and its report), never an earlier one, and never part of a batch.
//!
//! The child is this test binary itself, re-executed with `--exact crash_child --ignored` and
//! the environment variables below.
//!
//! What this shows: batches are atomic and a returned commit survives the process dying. It does
//! not simulate power loss (the page cache survives SIGKILL), so it cannot show that the fsyncs
//! are placed right; the module docs and code review carry that.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::Rng;
use waterline_store::{
    FileStore, OffsetAndMetadata, OffsetStore, Position, RedbStore, TopicPartition,
};

const CHILD_ENV: &str = "WATERLINE_STORE_CRASH_CHILD";
const DIR_ENV: &str = "WATERLINE_STORE_CRASH_DIR";
const GROUP: &str = "crash/group";
const PARTITIONS: i32 = 100;
const KILLS: usize = 50;
const CREATION_KILLS: usize = 25;
const DONE: &str = "committed seq ";

async fn open(kind: &str, dir: &Path) -> Box<dyn OffsetStore> {
    match kind {
        "file" => Box::new(FileStore::open(dir).await.expect("open file store")),
        "redb" => Box::new(
            RedbStore::open(dir.join("offsets.redb"))
                .await
                .expect("open redb store"),
        ),
        other => panic!("unknown store kind {other}"),
    }
}

fn batch(seq: u64) -> Vec<(TopicPartition, OffsetAndMetadata)> {
    let offset = i64::try_from(seq).expect("seq fits");
    (0..PARTITIONS)
        .map(|p| {
            let mut o =
                OffsetAndMetadata::new(offset, offset * 1000).with_metadata(format!("seq {seq}"));
            if p % 2 == 1 {
                o.position = Position::Text(format!("tok-{seq}"));
            }
            o.leader_epoch = Some(p);
            (TopicPartition::new(format!("topic-{}", p % 7), p), o)
        })
        .collect()
}

/// The sequence number of the stored batch (0 if none); panics if the stored state is not
/// exactly one whole batch.
async fn stored_seq(store: &dyn OffsetStore) -> u64 {
    let got = store
        .get_group(GROUP)
        .await
        .expect("read group after crash");
    if got.is_empty() {
        return 0;
    }
    let seq = got[0]
        .1
        .metadata
        .strip_prefix("seq ")
        .and_then(|s| s.parse::<u64>().ok())
        .expect("metadata holds the sequence number");
    let mut want = batch(seq);
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want, "the stored state is exactly batch {seq}");
    seq
}

#[test]
#[ignore = "child process of the crash tests, started by them"]
fn crash_child() {
    let (Ok(kind), Ok(dir)) = (std::env::var(CHILD_ENV), std::env::var(DIR_ENV)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = open(&kind, Path::new(&dir)).await;
        let start = stored_seq(&*store).await + 1;
        let mut out = std::io::stdout().lock();
        // libtest has printed "test crash_child ... " without a line end; start a fresh line.
        writeln!(out).expect("report");
        for seq in start.. {
            store.commit(GROUP, &batch(seq)).await.expect("commit");
            writeln!(out, "{DONE}{seq}").expect("report");
            out.flush().expect("flush");
        }
    });
}

/// Kills and reaps the child if the parent panics, so no process outlives the test.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kills` rounds of: start the child, SIGKILL it, reopen and check. With `fresh_dir`, every
/// round starts from an empty directory and kills early, to hit store creation.
fn crash_loop(kind: &str, kills: usize, fresh_dir: bool) {
    let mut dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = rand::rng();
    let mut durable = 0u64;
    for round in 0..kills {
        if fresh_dir {
            dir = tempfile::tempdir().expect("temp dir");
            durable = 0;
        }
        let mut child = ChildGuard(
            Command::new(&exe)
                .args([
                    "--exact",
                    "crash_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, kind)
                .env(DIR_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child"),
        );
        let child = &mut child.0;
        let stdout = child.stdout.take().expect("child stdout");
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix(DONE) {
                    let _ = seen_tx.send(n.parse::<u64>().expect("sequence number"));
                }
            }
        });
        // Even rounds: kill at a random time after spawning, which may hit opening and
        // recovery. Odd rounds: kill at a random time after the first reported commit, so the
        // child makes progress however slow the machine is.
        let mut reported = None;
        if fresh_dir {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        } else if round % 2 == 1 {
            reported = Some(
                seen.recv_timeout(Duration::from_secs(60))
                    .expect("child reports a commit"),
            );
            std::thread::sleep(Duration::from_millis(rng.random_range(0..40)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..120)));
        }
        child.kill().expect("SIGKILL child");
        let status = child.wait().expect("reap child");
        reader.join().expect("reader thread");
        // Every report the child made before dying; the last one is the floor.
        reported = seen.try_iter().last().or(reported);
        if status.success() {
            // The child ended on its own: it must have failed before looping (e.g. open).
            panic!("round {round}: child exited instead of being killed");
        }
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        assert!(
            !stderr.contains("panicked"),
            "round {round}: child failed: {stderr}"
        );

        let floor = durable.max(reported.unwrap_or(0));
        let seq = rt.block_on(async {
            let store = open(kind, dir.path()).await;
            let seq = stored_seq(&*store).await;
            store.close().await.expect("close");
            seq
        });
        assert!(
            seq == floor || seq == floor + 1,
            "round {round}: stored batch {seq}, but batch {floor} was reported durable \
             (previously stored {durable}, reported this round {reported:?})"
        );
        durable = seq;
    }
    if !fresh_dir {
        // Each odd round saw at least one new commit reported.
        assert!(
            durable >= (kills / 2) as u64,
            "only {durable} commits in {kills} rounds"
        );
    }
}

#[test]
fn file_store_survives_sigkill() {
    crash_loop("file", KILLS, false);
}

#[test]
fn redb_store_survives_sigkill() {
    crash_loop("redb", KILLS, false);
}

#[test]
fn file_store_creation_survives_sigkill() {
    crash_loop("file", CREATION_KILLS, true);
}

#[test]
fn redb_store_creation_survives_sigkill() {
    crash_loop("redb", CREATION_KILLS, true);
}
