//! Crash test of durable group metadata: a child process drives a two-member group through
//! rebalance after rebalance on the broker's real group subsystem ([`Groups`]), while another
//! task keeps committing offsets into the same database, and reports each generation once its
//! SyncGroup answers are in hand. The parent SIGKILLs it at random moments and reopens the data
//! dir. Every time, the stored record must decode and restore (never torn), be one whole
//! snapshot (every member's assignment names the record's generation), and hold the last
//! reported generation or the one after it (the child may die between the answers and its
//! report), never an earlier one: an answered SyncGroup's generation is durable.
//!
//! The child is this test binary itself, re-executed with `--exact crash_child --ignored`.
//! Like the store's crash tests this cannot simulate power loss (the page cache survives
//! SIGKILL); it shows atomicity and the write-before-answer order.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use waterline_broker::BrokerConfig;
use waterline_broker::groups::{GroupConfig, Groups, OFFSETS_FILE};
use waterline_coordinator::{
    GroupSnapshot, GroupState, JoinGroupRequest, Protocol, Request, Response, SyncGroupRequest,
};
use waterline_store::{OffsetAndMetadata, RedbStore, TopicPartition};

const CHILD_ENV: &str = "WATERLINE_GROUPS_CRASH_DIR";
const GROUP: &str = "crash-group";
const DONE: &str = "synced generation ";
const KILLS: usize = 30;

fn config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        data_dir: dir.to_path_buf(),
        groups: GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        },
        ..BrokerConfig::default()
    }
}

fn assignment(generation: i32, member: &str) -> Bytes {
    Bytes::from(format!("{generation}:{member}"))
}

async fn join(groups: &Groups, member_id: &str) -> (String, i32) {
    let req = JoinGroupRequest {
        group_id: GROUP.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        require_known_member_id: false,
        supports_skip_assignment: false,
        client_id: "crash".into(),
        client_host: "/127.0.0.1".into(),
        rebalance_timeout_ms: 60_000,
        session_timeout_ms: 60_000,
        protocol_type: "consumer".into(),
        protocols: vec![Protocol {
            name: "range".into(),
            metadata: Bytes::from_static(b"subscription"),
        }],
    };
    match groups.call(Request::JoinGroup(req)).await {
        Response::JoinGroup(r) if r.error.is_none() => (r.member_id, r.generation_id),
        other => panic!("join failed: {other:?}"),
    }
}

async fn sync(groups: &Groups, member_id: &str, generation: i32, members: &[&str]) {
    let req = SyncGroupRequest {
        group_id: GROUP.into(),
        generation_id: generation,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: None,
        protocol_name: None,
        assignments: members
            .iter()
            .map(|m| ((*m).to_owned(), assignment(generation, m)))
            .collect(),
    };
    match groups.call(Request::SyncGroup(req)).await {
        Response::SyncGroup(r) if r.error.is_none() => {
            assert_eq!(r.assignment, assignment(generation, member_id));
        }
        other => panic!("sync failed: {other:?}"),
    }
}

fn report(generation: i32) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{DONE}{generation}").expect("report");
    out.flush().expect("flush");
}

/// The follower's SyncGroup parks on its own task and reports as soon as its answer arrives:
/// that answer is delivered by the leader's SyncGroup call, so a broker that answered before
/// writing would let the report overtake the record.
async fn synced_pair(
    groups: &std::sync::Arc<Groups>,
    leader: &str,
    follower: &str,
    generation: i32,
) {
    let parked = {
        let groups = groups.clone();
        let follower = follower.to_owned();
        tokio::spawn(async move {
            sync(&groups, &follower, generation, &[]).await;
            report(generation);
        })
    };
    // Let the follower's SyncGroup park first (if it has not, it is answered from the Stable
    // group later, which is fine too, just not the interesting case).
    tokio::time::sleep(Duration::from_millis(2)).await;
    sync(groups, leader, generation, &[leader, follower]).await;
    parked.await.expect("follower task");
}

#[test]
#[ignore = "child process of the crash test, started by it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let groups = std::sync::Arc::new(
            Groups::open(&config(Path::new(&dir)), CancellationToken::new()).expect("open"),
        );
        // Offset commits share the database (and its write lock) with the metadata writes.
        let committer = groups.clone();
        tokio::spawn(async move {
            for i in 0i64.. {
                let tp = TopicPartition::new("t", 0);
                committer
                    .commit("other-group", &[(tp, OffsetAndMetadata::new(i, 0))])
                    .await
                    .expect("commit");
            }
        });
        // Resume from whatever was restored.
        let (mut a, mut b) = match groups.group(GROUP) {
            Some(v) if v.state == GroupState::Stable => {
                let leader = v.leader.clone().expect("leader");
                let other = v.members.iter().find(|m| **m != leader).cloned();
                (Some(leader), other)
            }
            Some(v) => panic!("restored in an unexpected state: {v:?}"),
            None => (None, None),
        };
        // libtest has printed "test crash_child ... " without a line end.
        writeln!(std::io::stdout().lock()).expect("report");
        loop {
            let generation = match (&a, &b) {
                (None, _) => {
                    let (id, generation) = join(&groups, "").await;
                    sync(&groups, &id, generation, &[&id]).await;
                    a = Some(id);
                    generation
                }
                (Some(leader), None) => {
                    // The newcomer's join opens the round; the leader's rejoin completes it.
                    let ((new, generation), _) =
                        tokio::join!(join(&groups, ""), join(&groups, leader));
                    synced_pair(&groups, leader, &new, generation).await;
                    b = Some(new);
                    continue;
                }
                (Some(leader), Some(follower)) => {
                    // The leader's join always rebalances; the follower's completes the round.
                    let ((_, generation), _) =
                        tokio::join!(join(&groups, leader), join(&groups, follower));
                    synced_pair(&groups, leader, follower, generation).await;
                    continue;
                }
            };
            report(generation);
        }
    });
}

/// The stored record's generation (0 if none), after checking it is one whole snapshot.
async fn stored_generation(dir: &Path) -> i32 {
    let store = RedbStore::open(dir.join(OFFSETS_FILE))
        .await
        .expect("reopen");
    let records = store.group_metadata().await.expect("read records");
    drop(store);
    let Some((_, bytes)) = records.iter().find(|(g, _)| g == GROUP) else {
        return 0;
    };
    let s = GroupSnapshot::decode(GROUP, bytes).expect("record decodes");
    assert!(!s.rebalance_pending, "{s:?}");
    assert!(!s.members.is_empty() && s.members.len() <= 2, "{s:?}");
    for m in &s.members {
        assert_eq!(
            m.assignment.as_ref(),
            Some(&assignment(s.generation_id, &m.member_id)),
            "a torn record: {s:?}"
        );
    }
    s.generation_id
}

/// Kills and reaps the child if the parent panics, so no process outlives the test.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small xorshift generator: kill delays need no quality, and no extra dependency.
struct Jitter(u64);

impl Jitter {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn group_metadata_survives_sigkill_during_rebalances() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut jitter = Jitter(seed);
    let mut durable = 0i32;
    for round in 0..KILLS {
        let mut child = ChildGuard(
            Command::new(&exe)
                .args([
                    "--exact",
                    "crash_child",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, dir.path())
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
                    let _ = seen_tx.send(n.parse::<i32>().expect("generation"));
                }
            }
        });
        // Odd rounds wait for a report first, so the child makes progress however slow the
        // machine is; even rounds may also hit opening and restoring.
        let mut reported = None;
        if round % 2 == 1 {
            reported = Some(
                seen.recv_timeout(Duration::from_secs(60))
                    .expect("child reports a generation"),
            );
        }
        std::thread::sleep(Duration::from_millis(jitter.below(150)));
        child.kill().expect("SIGKILL child");
        let status = child.wait().expect("reap child");
        reader.join().expect("reader thread");
        reported = seen.try_iter().last().or(reported);
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        assert!(
            !status.success() && !stderr.contains("panicked"),
            "round {round}: child failed: {stderr}"
        );

        let floor = durable.max(reported.unwrap_or(0));
        let generation = rt.block_on(stored_generation(dir.path()));
        assert!(
            generation == floor || generation == floor + 1,
            "round {round}: stored generation {generation}, but {floor} was answered \
             (previously stored {durable}, reported this round {reported:?})"
        );
        // The broker's own start-up path restores it.
        rt.block_on(async {
            let groups =
                Groups::open(&config(dir.path()), CancellationToken::new()).expect("reopen");
            let view = groups.group(GROUP);
            assert_eq!(view.map(|v| v.generation_id).unwrap_or(0), generation);
            groups.close().await;
        });
        durable = generation;
    }
    assert!(
        durable >= (KILLS / 2) as i32,
        "only {durable} generations in {KILLS} rounds"
    );
}
