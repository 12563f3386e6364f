//! The conformance suite against every backend in this crate.

use std::path::PathBuf;

use async_trait::async_trait;
use tempfile::TempDir;
use waterline_store::conformance::{Backend, run_all};
use waterline_store::{Coalescing, FileStore, MemoryStore, OffsetStore, RedbStore, StoreError};

struct Memory;

#[async_trait]
impl Backend for Memory {
    async fn open(&self) -> Result<Box<dyn OffsetStore>, StoreError> {
        Ok(Box::new(MemoryStore::new()))
    }
    fn durable(&self) -> bool {
        false
    }
}

/// The coalescing wrapper over a backend chosen at run time (`Box<dyn OffsetStore>`).
struct CoalescingDynMemory;

#[async_trait]
impl Backend for CoalescingDynMemory {
    async fn open(&self) -> Result<Box<dyn OffsetStore>, StoreError> {
        let inner: Box<dyn OffsetStore> = Box::new(MemoryStore::new());
        Ok(Box::new(Coalescing::new(inner)?))
    }
    fn durable(&self) -> bool {
        false
    }
}

#[derive(Clone, Copy)]
enum Kind {
    File,
    Redb,
    CoalescingRedb,
    CoalescingFile,
}

struct OnDisk {
    dir: TempDir,
    kind: Kind,
}

impl OnDisk {
    fn new(kind: Kind) -> Self {
        OnDisk {
            dir: tempfile::tempdir().expect("temp dir"),
            kind,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("offsets.redb")
    }
}

#[async_trait]
impl Backend for OnDisk {
    async fn open(&self) -> Result<Box<dyn OffsetStore>, StoreError> {
        Ok(match self.kind {
            Kind::File => Box::new(FileStore::open(self.dir.path()).await?),
            Kind::Redb => Box::new(RedbStore::open(self.db()).await?),
            Kind::CoalescingRedb => Box::new(Coalescing::new(RedbStore::open(self.db()).await?)?),
            Kind::CoalescingFile => {
                Box::new(Coalescing::new(FileStore::open(self.dir.path()).await?)?)
            }
        })
    }
    fn durable(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    run_all(|| Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file() {
    run_all(|| OnDisk::new(Kind::File)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb() {
    run_all(|| OnDisk::new(Kind::Redb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_over_redb() {
    run_all(|| OnDisk::new(Kind::CoalescingRedb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_over_file() {
    run_all(|| OnDisk::new(Kind::CoalescingFile)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_over_boxed_dyn_memory() {
    run_all(|| CoalescingDynMemory).await;
}
