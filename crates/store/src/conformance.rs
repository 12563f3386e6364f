//! The backend-independent test suite every [`OffsetStore`] must pass.
//!
//! Enabled by the `conformance` feature. A backend provides a [`Backend`]: something that opens
//! the store at one location, again and again (for durable backends, reopening must show what
//! was committed before). [`run_all`] runs every check, each against a fresh backend from the
//! given factory, and panics naming the first check that fails. The checks are also public,
//! one async function each, taking `&dyn Backend`.
//!
//! Checks use the default [`Limits`](crate::Limits) expectations only where stated; a backend
//! should be opened with the default limits.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use waterline_core::{OffsetAndMetadata, Position, TopicPartition};

use crate::{CommitBatch, OffsetStore, StoreError};

/// One location of a store, opened as often as a check needs.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens the store at this backend's location; the first call sees an empty store. Each
    /// check closes ([`OffsetStore::close`]) and drops a store before opening it again.
    async fn open(&self) -> Result<Box<dyn OffsetStore>, StoreError>;
    /// Whether committed offsets survive closing and reopening.
    fn durable(&self) -> bool;
}

type Check = for<'a> fn(&'a dyn Backend) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// The name and function of every check, in the order [`run_all`] runs them.
        pub fn checks() -> Vec<(&'static str, Check)> {
            vec![$((stringify!($name), |b| Box::pin($name(b)))),*]
        }
    };
}

checks!(
    get_missing,
    commit_and_get,
    overwrite,
    batch_is_atomic_and_last_entry_wins,
    large_batch,
    rejected_batch_writes_nothing,
    empty_batch_is_noop,
    get_group_sorted,
    groups_are_isolated,
    delete_partitions,
    delete_group,
    list_groups,
    positions_round_trip,
    metadata_and_epoch_round_trip,
    odd_group_names,
    commit_many_applies_in_order,
    concurrent_commits,
    reopen_persists,
);

/// Runs every check against a fresh backend from `make`; panics naming the failing check.
pub async fn run_all<B, F>(mut make: F)
where
    B: Backend + 'static,
    F: FnMut() -> B,
{
    for (name, check) in checks() {
        let backend = make();
        let run = tokio::spawn(async move {
            check(&backend).await;
        });
        if let Err(e) = run.await {
            panic!("conformance check `{name}` failed: {e}");
        }
    }
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

fn at(offset: i64) -> OffsetAndMetadata {
    OffsetAndMetadata::new(offset, 1_700_000_000_000 + offset)
}

async fn open(b: &dyn Backend) -> Box<dyn OffsetStore> {
    b.open().await.expect("open store")
}

async fn close(store: Box<dyn OffsetStore>) {
    store.close().await.expect("close store");
    drop(store);
}

/// Nothing committed: `get` is `None`, `get_group` empty, no groups.
pub async fn get_missing(b: &dyn Backend) {
    let s = open(b).await;
    assert_eq!(s.get("g", &tp("t", 0)).await.unwrap(), None);
    assert!(s.get_group("g").await.unwrap().is_empty());
    assert!(s.list_groups().await.unwrap().is_empty());
    close(s).await;
}

/// A committed offset is read back exactly.
pub async fn commit_and_get(b: &dyn Backend) {
    let s = open(b).await;
    s.commit("g", &[(tp("t", 0), at(5))]).await.unwrap();
    assert_eq!(s.get("g", &tp("t", 0)).await.unwrap(), Some(at(5)));
    assert_eq!(s.get("g", &tp("t", 1)).await.unwrap(), None);
    assert_eq!(s.get("g", &tp("u", 0)).await.unwrap(), None);
    close(s).await;
}

/// A later commit replaces the earlier one, also with a lower offset (stores do not judge).
pub async fn overwrite(b: &dyn Backend) {
    let s = open(b).await;
    s.commit("g", &[(tp("t", 0), at(5))]).await.unwrap();
    s.commit("g", &[(tp("t", 0), at(9))]).await.unwrap();
    assert_eq!(s.get("g", &tp("t", 0)).await.unwrap(), Some(at(9)));
    s.commit("g", &[(tp("t", 0), at(3))]).await.unwrap();
    assert_eq!(s.get("g", &tp("t", 0)).await.unwrap(), Some(at(3)));
    close(s).await;
}

/// Every entry of a batch lands; duplicates in a batch resolve to the later entry.
pub async fn batch_is_atomic_and_last_entry_wins(b: &dyn Backend) {
    let s = open(b).await;
    let batch: Vec<_> = (0..500).map(|p| (tp("t", p), at(i64::from(p)))).collect();
    s.commit("g", &batch).await.unwrap();
    s.commit("g", &[(tp("t", 1), at(100)), (tp("t", 1), at(200))])
        .await
        .unwrap();
    let got = s.get_group("g").await.unwrap();
    assert_eq!(got.len(), 500);
    assert_eq!(s.get("g", &tp("t", 1)).await.unwrap(), Some(at(200)));
    assert_eq!(s.get("g", &tp("t", 499)).await.unwrap(), Some(at(499)));
    close(s).await;
}

/// A batch of 10,000 partitions (the size a big consumer commits at once) lands whole.
pub async fn large_batch(b: &dyn Backend) {
    let s = open(b).await;
    let batch: Vec<_> = (0..10_000)
        .map(|p| (tp(&format!("topic-{}", p % 10), p), at(i64::from(p))))
        .collect();
    s.commit("big", &batch).await.unwrap();
    let got = s.get_group("big").await.unwrap();
    assert_eq!(got.len(), 10_000);
    let mut want = batch;
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got, want);
    close(s).await;
}

/// A batch with one over-long metadata string fails whole: none of its entries land.
pub async fn rejected_batch_writes_nothing(b: &dyn Backend) {
    let s = open(b).await;
    s.commit("g", &[(tp("t", 0), at(1))]).await.unwrap();
    let too_long = at(2).with_metadata("m".repeat(crate::DEFAULT_MAX_METADATA_BYTES + 1));
    let err = s
        .commit("g", &[(tp("t", 0), at(2)), (tp("t", 1), too_long)])
        .await
        .unwrap_err();
    match err {
        StoreError::MetadataTooLarge {
            group,
            topic_partition,
            len,
            max,
        } => {
            assert_eq!(group, "g");
            assert_eq!(topic_partition, tp("t", 1));
            assert_eq!(len, crate::DEFAULT_MAX_METADATA_BYTES + 1);
            assert_eq!(max, crate::DEFAULT_MAX_METADATA_BYTES);
        }
        other => panic!("expected MetadataTooLarge, got {other:?}"),
    }
    assert_eq!(s.get("g", &tp("t", 0)).await.unwrap(), Some(at(1)));
    assert_eq!(s.get("g", &tp("t", 1)).await.unwrap(), None);
    let exactly = at(3).with_metadata("m".repeat(crate::DEFAULT_MAX_METADATA_BYTES));
    s.commit("g", &[(tp("t", 1), exactly.clone())])
        .await
        .unwrap();
    assert_eq!(s.get("g", &tp("t", 1)).await.unwrap(), Some(exactly));
    close(s).await;
}

/// An empty batch changes nothing and creates no group.
pub async fn empty_batch_is_noop(b: &dyn Backend) {
    let s = open(b).await;
    s.commit("g", &[]).await.unwrap();
    assert!(s.list_groups().await.unwrap().is_empty());
    close(s).await;
}

/// `get_group` returns all partitions sorted by topic, then numerically by partition.
pub async fn get_group_sorted(b: &dyn Backend) {
    let s = open(b).await;
    let batch = vec![
        (tp("b", 10), at(1)),
        (tp("a", 2), at(2)),
        (tp("b", 9), at(3)),
        (tp("a", -1), at(4)),
        (tp("a", 100), at(5)),
        // Name order, not length order.
        (tp("c", 0), at(6)),
        (tp("bb", 0), at(7)),
    ];
    s.commit("g", &batch).await.unwrap();
    let mut want = batch.clone();
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(s.get_group("g").await.unwrap(), want);
    close(s).await;
}

/// Groups sharing a name prefix do not see each other's offsets.
pub async fn groups_are_isolated(b: &dyn Backend) {
    let s = open(b).await;
    s.commit("g", &[(tp("t", 0), at(1))]).await.unwrap();
    s.commit("g2", &[(tp("t", 0), at(2))]).await.unwrap();
    s.commit("", &[(tp("t", 0), at(3))]).await.unwrap();
    assert_eq!(s.get("g", &tp("t", 0)).await.unwrap(), Some(at(1)));
    assert_eq!(s.get("g2", &tp("t", 0)).await.unwrap(), Some(at(2)));
    assert_eq!(s.get("", &tp("t", 0)).await.unwrap(), Some(at(3)));
    assert_eq!(s.get_group("g").await.unwrap(), vec![(tp("t", 0), at(1))]);
    s.delete_group("g").await.unwrap();
    assert_eq!(s.get("g2", &tp("t", 0)).await.unwrap(), Some(at(2)));
    assert_eq!(s.get("", &tp("t", 0)).await.unwrap(), Some(at(3)));
    close(s).await;
}

/// `delete` removes the named partitions only; unknown ones are ignored; a group emptied by
/// `delete` disappears from `list_groups`.
pub async fn delete_partitions(b: &dyn Backend) {
    let s = open(b).await;
    s.commit(
        "g",
        &[
            (tp("t", 0), at(1)),
            (tp("t", 1), at(2)),
            (tp("u", 0), at(3)),
        ],
    )
    .await
    .unwrap();
    s.delete("g", &[tp("t", 1), tp("zz", 7)]).await.unwrap();
    assert_eq!(
        s.get_group("g").await.unwrap(),
        vec![(tp("t", 0), at(1)), (tp("u", 0), at(3))]
    );
    s.delete("nope", &[tp("t", 0)]).await.unwrap();
    s.delete("g", &[tp("t", 0), tp("u", 0)]).await.unwrap();
    assert!(s.get_group("g").await.unwrap().is_empty());
    assert!(s.list_groups().await.unwrap().is_empty());
    close(s).await;
}

/// `delete_group` removes all of a group; unknown groups are a no-op.
pub async fn delete_group(b: &dyn Backend) {
    let s = open(b).await;
    let batch: Vec<_> = (0..50).map(|p| (tp("t", p), at(1))).collect();
    s.commit("g", &batch).await.unwrap();
    s.delete_group("g").await.unwrap();
    s.delete_group("never-existed").await.unwrap();
    assert!(s.get_group("g").await.unwrap().is_empty());
    assert_eq!(s.get("g", &tp("t", 3)).await.unwrap(), None);
    assert!(s.list_groups().await.unwrap().is_empty());
    s.commit("g", &[(tp("t", 0), at(7))]).await.unwrap();
    assert_eq!(s.get_group("g").await.unwrap(), vec![(tp("t", 0), at(7))]);
    close(s).await;
}

/// `list_groups` lists each group with offsets once, sorted.
pub async fn list_groups(b: &dyn Backend) {
    let s = open(b).await;
    for g in ["c", "a", "b", "a"] {
        let batch: Vec<_> = (0..3).map(|p| (tp("t", p), at(1))).collect();
        s.commit(g, &batch).await.unwrap();
    }
    assert_eq!(s.list_groups().await.unwrap(), vec!["a", "b", "c"]);
    close(s).await;
}

/// Numeric, text and binary positions round-trip exactly, including extreme values.
pub async fn positions_round_trip(b: &dyn Backend) {
    let s = open(b).await;
    let positions = [
        Position::Offset(0),
        Position::Offset(-1),
        Position::Offset(i64::MAX),
        Position::Offset(i64::MIN),
        Position::Text(String::new()),
        Position::Text("file.log:1234 \"quoted\" \\ ünïcödé \u{0} \n".into()),
        Position::Bytes(Vec::new()),
        Position::Bytes((0..=255).collect()),
    ];
    let batch: Vec<_> = positions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut o = at(0);
            o.position = p.clone();
            (tp("t", i32::try_from(i).unwrap()), o)
        })
        .collect();
    s.commit("g", &batch).await.unwrap();
    assert_eq!(s.get_group("g").await.unwrap(), batch);
    close(s).await;
}

/// Metadata strings, timestamps and leader epochs (present, absent, extreme) round-trip.
pub async fn metadata_and_epoch_round_trip(b: &dyn Backend) {
    let s = open(b).await;
    let cases = [
        (String::new(), 0, None),
        ("plain".to_string(), -1, Some(0)),
        (
            "{\"acked\":[1,2,3]}\n\t✓".to_string(),
            i64::MAX,
            Some(i32::MAX),
        ),
        ("x".repeat(4096), i64::MIN, Some(-1)),
    ];
    let batch: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (m, ts, epoch))| {
            let o = OffsetAndMetadata {
                position: Position::Offset(42),
                metadata: m.clone(),
                commit_timestamp_ms: *ts,
                leader_epoch: *epoch,
            };
            (tp("meta", i32::try_from(i).unwrap()), o)
        })
        .collect();
    s.commit("g", &batch).await.unwrap();
    for (tp, o) in &batch {
        assert_eq!(s.get("g", tp).await.unwrap().as_ref(), Some(o));
    }
    close(s).await;
}

/// Group and topic names with separators, dots, percent signs, unicode and control characters
/// are stored apart and listed as given.
pub async fn odd_group_names(b: &dyn Backend) {
    let s = open(b).await;
    let names = [
        "",
        ".",
        "..",
        "a/b",
        "a\\b",
        "%41",
        "A",
        "a",
        "g-x.json",
        "spa ce",
        "ünï 🦀",
        "nul\u{0}byte",
        "line\nbreak",
    ];
    for (i, g) in names.iter().enumerate() {
        let topic = format!("topic/{g}");
        s.commit(g, &[(tp(&topic, 0), at(i64::try_from(i).unwrap()))])
            .await
            .unwrap_or_else(|e| panic!("commit to group {g:?}: {e}"));
    }
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(s.list_groups().await.unwrap(), want);
    for (i, g) in names.iter().enumerate() {
        let topic = format!("topic/{g}");
        assert_eq!(
            s.get_group(g).await.unwrap(),
            vec![(tp(&topic, 0), at(i64::try_from(i).unwrap()))],
            "group {g:?}"
        );
    }
    close(s).await;
}

/// `commit_many` applies every batch, later batches over earlier ones.
pub async fn commit_many_applies_in_order(b: &dyn Backend) {
    let s = open(b).await;
    let batches = vec![
        CommitBatch {
            group: "a".into(),
            offsets: vec![(tp("t", 0), at(1)), (tp("t", 1), at(1))],
        },
        CommitBatch {
            group: "b".into(),
            offsets: vec![(tp("t", 0), at(2))],
        },
        CommitBatch {
            group: "a".into(),
            offsets: vec![(tp("t", 1), at(3))],
        },
        CommitBatch {
            group: "c".into(),
            offsets: vec![],
        },
    ];
    s.commit_many(&batches).await.unwrap();
    assert_eq!(
        s.get_group("a").await.unwrap(),
        vec![(tp("t", 0), at(1)), (tp("t", 1), at(3))]
    );
    assert_eq!(s.get_group("b").await.unwrap(), vec![(tp("t", 0), at(2))]);
    assert_eq!(s.list_groups().await.unwrap(), vec!["a", "b"]);
    close(s).await;
}

/// Many tasks committing at once, to the same and to different groups: every write lands and
/// each partition ends at its writer's last offset.
pub async fn concurrent_commits(b: &dyn Backend) {
    let s: std::sync::Arc<dyn OffsetStore> = std::sync::Arc::from(open(b).await);
    let mut tasks = Vec::new();
    for w in 0..16i32 {
        let s = std::sync::Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let group = format!("g{}", w % 4);
            for round in 1..=5i64 {
                let batch: Vec<_> = (0..10)
                    .map(|p| (tp(&format!("t{w}"), p), at(round)))
                    .collect();
                s.commit(&group, &batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for g in 0..4 {
        let got = s.get_group(&format!("g{g}")).await.unwrap();
        assert_eq!(got.len(), 40, "group g{g}");
        assert!(got.iter().all(|(_, o)| *o == at(5)));
    }
    s.close().await.unwrap();
}

/// For durable backends: everything committed, overwritten and deleted is as left after
/// closing and reopening (twice).
pub async fn reopen_persists(b: &dyn Backend) {
    if !b.durable() {
        return;
    }
    let s = open(b).await;
    let mut text = at(0);
    text.position = Position::Text("tok".into());
    text.leader_epoch = Some(4);
    let batch: Vec<_> = (0..100).map(|p| (tp("t", p), at(i64::from(p)))).collect();
    s.commit("keep", &batch).await.unwrap();
    s.commit("keep", &[(tp("x", 0), text.clone())])
        .await
        .unwrap();
    s.commit("gone", &[(tp("t", 0), at(1))]).await.unwrap();
    s.commit("partly", &[(tp("t", 0), at(1)), (tp("t", 1), at(2))])
        .await
        .unwrap();
    s.delete_group("gone").await.unwrap();
    s.delete("partly", &[tp("t", 0)]).await.unwrap();
    close(s).await;

    for _ in 0..2 {
        let s = open(b).await;
        assert_eq!(s.list_groups().await.unwrap(), vec!["keep", "partly"]);
        let keep = s.get_group("keep").await.unwrap();
        assert_eq!(keep.len(), 101);
        assert_eq!(
            s.get("keep", &tp("x", 0)).await.unwrap(),
            Some(text.clone())
        );
        assert_eq!(s.get("keep", &tp("t", 99)).await.unwrap(), Some(at(99)));
        assert_eq!(
            s.get_group("partly").await.unwrap(),
            vec![(tp("t", 1), at(2))]
        );
        close(s).await;
    }
}
