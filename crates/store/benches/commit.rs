//! Durable commit throughput of the file and redb stores and the coalescing wrapper, next to
//! the raw fsync rate of the same file system.
//!
//! Run: `cargo bench -p waterline-store --bench commit`. Temp files go to
//! `$WATERLINE_BENCH_DIR` if set, else the system temp dir; compare numbers only within one run.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;

use divan::Bencher;
use divan::counter::ItemsCount;
use tempfile::TempDir;
use waterline_store::{
    Coalescing, FileStore, OffsetAndMetadata, OffsetStore, RedbStore, TopicPartition,
};

fn main() {
    divan::main();
}

fn bench_dir() -> TempDir {
    match std::env::var_os("WATERLINE_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("bench dir"),
        None => tempfile::tempdir().expect("bench dir"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn batch(topic: &str, n: usize, offset: i64) -> Vec<(TopicPartition, OffsetAndMetadata)> {
    (0..n)
        .map(|p| {
            let p = i32::try_from(p).expect("partition");
            (
                TopicPartition::new(topic, p),
                OffsetAndMetadata::new(offset, 1_700_000_000_000),
            )
        })
        .collect()
}

/// One small overwrite plus `fdatasync` / `fsync`: the ceiling for one-fsync-per-commit stores.
#[divan::bench(args = ["fdatasync", "fsync"], sample_count = 50, sample_size = 10)]
fn raw_fsync(bencher: Bencher, kind: &str) {
    let dir = bench_dir();
    let mut f = File::create(dir.path().join("fsync-probe")).expect("probe file");
    f.write_all(&[0u8; 4096]).expect("fill");
    f.sync_all().expect("initial sync");
    let mut n = 0u64;
    bencher.bench_local(|| {
        n += 1;
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.write_all(&n.to_le_bytes()).expect("write");
        if kind == "fsync" {
            f.sync_all().expect("fsync");
        } else {
            f.sync_data().expect("fdatasync");
        }
    });
}

fn commit_loop(bencher: Bencher, store: &dyn OffsetStore, rt: &tokio::runtime::Runtime, n: usize) {
    let mut offset = 0;
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        offset += 1;
        let b = batch("topic", n, offset);
        rt.block_on(store.commit("bench-group", &b))
            .expect("commit");
    });
}

/// One `commit` of `n` partitions to one group (one document rewrite + fsyncs).
#[divan::bench(args = [1, 100, 10_000], sample_count = 20, sample_size = 1)]
fn file_commit(bencher: Bencher, n: usize) {
    let dir = bench_dir();
    let rt = runtime();
    let store = rt.block_on(FileStore::open(dir.path())).expect("open");
    commit_loop(bencher, &store, &rt, n);
}

/// One `commit` of `n` partitions (one write transaction, one fsync).
#[divan::bench(args = [1, 100, 10_000], sample_count = 20, sample_size = 1)]
fn redb_commit(bencher: Bencher, n: usize) {
    let dir = bench_dir();
    let rt = runtime();
    let store = rt
        .block_on(RedbStore::open(dir.path().join("offsets.redb")))
        .expect("open");
    commit_loop(bencher, &store, &rt, n);
}

const COMMITS_PER_TASK: usize = 10;
const PARTITIONS_PER_COMMIT: usize = 10;

/// `committers` tasks, each its own group, each making 10 back-to-back commits of 10
/// partitions; one iteration ends when all have finished. Counter: partitions committed.
#[divan::bench(args = [1, 10, 100], sample_count = 10, sample_size = 1)]
fn coalescing_redb(bencher: Bencher, committers: usize) {
    let dir = bench_dir();
    let rt = runtime();
    let store = rt.block_on(async {
        let redb = RedbStore::open(dir.path().join("offsets.redb"))
            .await
            .expect("open");
        Arc::new(Coalescing::new(redb).expect("wrap"))
    });
    let mut round = 0i64;
    bencher
        .counter(ItemsCount::new(
            committers * COMMITS_PER_TASK * PARTITIONS_PER_COMMIT,
        ))
        .bench_local(|| {
            round += 1;
            rt.block_on(async {
                let tasks: Vec<_> = (0..committers)
                    .map(|c| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move {
                            let group = format!("group-{c}");
                            for i in 0..COMMITS_PER_TASK {
                                let offset = round * 100 + i64::try_from(i).expect("i");
                                let b = batch("topic", PARTITIONS_PER_COMMIT, offset);
                                store.commit(&group, &b).await.expect("commit");
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("committer");
                }
            });
        });
    let stats = store.stats();
    eprintln!(
        "coalescing_redb({committers}): {} batches in {} backend commits ({:.1} batches per fsync)",
        stats.batches_committed,
        stats.backend_commits,
        stats.batches_committed as f64 / stats.backend_commits.max(1) as f64
    );
}
