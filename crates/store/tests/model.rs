//! Model-based property test: random operation sequences give the same observable state on
//! every backend as on a plain map.

use std::collections::BTreeMap;

use proptest::prelude::*;
use waterline_store::{
    CommitBatch, FileStore, MemoryStore, OffsetAndMetadata, OffsetStore, Position, RedbStore,
    TopicPartition,
};

const GROUPS: [&str; 4] = ["a", "b", "a/b", ""];

#[derive(Debug, Clone)]
enum Op {
    Commit(usize, Vec<(TopicPartition, OffsetAndMetadata)>),
    CommitMany(Vec<(usize, Vec<(TopicPartition, OffsetAndMetadata)>)>),
    Delete(usize, Vec<TopicPartition>),
    DeleteGroup(usize),
}

fn tp() -> impl Strategy<Value = TopicPartition> {
    (prop_oneof!["t", "u", "topic.x"], -1i32..4).prop_map(|(t, p)| TopicPartition::new(t, p))
}

fn offset() -> impl Strategy<Value = OffsetAndMetadata> {
    let position = prop_oneof![
        any::<i64>().prop_map(Position::Offset),
        "[a-z]{0,5}".prop_map(Position::Text),
        proptest::collection::vec(any::<u8>(), 0..5).prop_map(Position::Bytes),
    ];
    (
        position,
        "[ -~]{0,8}",
        any::<i64>(),
        proptest::option::of(any::<i32>()),
    )
        .prop_map(|(position, metadata, ts, epoch)| OffsetAndMetadata {
            position,
            metadata,
            commit_timestamp_ms: ts,
            leader_epoch: epoch,
        })
}

fn entries() -> impl Strategy<Value = Vec<(TopicPartition, OffsetAndMetadata)>> {
    proptest::collection::vec((tp(), offset()), 0..6)
}

fn op() -> impl Strategy<Value = Op> {
    let g = 0..GROUPS.len();
    prop_oneof![
        4 => (g.clone(), entries()).prop_map(|(g, e)| Op::Commit(g, e)),
        2 => proptest::collection::vec((g.clone(), entries()), 0..4).prop_map(Op::CommitMany),
        2 => (g.clone(), proptest::collection::vec(tp(), 0..4)).prop_map(|(g, t)| Op::Delete(g, t)),
        1 => g.prop_map(Op::DeleteGroup),
    ]
}

type Model = BTreeMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>;

fn apply(model: &mut Model, group: &str, entries: &[(TopicPartition, OffsetAndMetadata)]) {
    if entries.is_empty() {
        return;
    }
    let g = model.entry(group.to_owned()).or_default();
    for (tp, o) in entries {
        g.insert(tp.clone(), o.clone());
    }
}

async fn run(store: &dyn OffsetStore, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    for op in ops {
        match op {
            Op::Commit(g, e) => {
                store.commit(GROUPS[*g], e).await.unwrap();
                apply(&mut model, GROUPS[*g], e);
            }
            Op::CommitMany(batches) => {
                let batches: Vec<CommitBatch> = batches
                    .iter()
                    .map(|(g, e)| CommitBatch {
                        group: GROUPS[*g].to_owned(),
                        offsets: e.clone(),
                    })
                    .collect();
                store.commit_many(&batches).await.unwrap();
                for b in &batches {
                    apply(&mut model, &b.group, &b.offsets);
                }
            }
            Op::Delete(g, tps) => {
                store.delete(GROUPS[*g], tps).await.unwrap();
                if let Some(m) = model.get_mut(GROUPS[*g]) {
                    for tp in tps {
                        m.remove(tp);
                    }
                    if m.is_empty() {
                        model.remove(GROUPS[*g]);
                    }
                }
            }
            Op::DeleteGroup(g) => {
                store.delete_group(GROUPS[*g]).await.unwrap();
                model.remove(GROUPS[*g]);
            }
        }
    }
    let listed = store.list_groups().await.unwrap();
    prop_assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());
    for g in GROUPS {
        let want: Vec<_> = model
            .get(g)
            .map(|m| m.iter().map(|(t, o)| (t.clone(), o.clone())).collect())
            .unwrap_or_default();
        prop_assert_eq!(store.get_group(g).await.unwrap(), want.clone());
        for (tp, o) in &want {
            prop_assert_eq!(store.get(g, tp).await.unwrap(), Some(o.clone()));
        }
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_matches_model(ops in proptest::collection::vec(op(), 0..20)) {
        runtime().block_on(run(&MemoryStore::new(), &ops))?;
    }

    #[test]
    fn redb_matches_model(ops in proptest::collection::vec(op(), 0..20)) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let store = RedbStore::open(dir.path().join("db.redb")).await.unwrap();
            run(&store, &ops).await
        })?;
    }

    #[test]
    fn file_matches_model(ops in proptest::collection::vec(op(), 0..20)) {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(async {
            let store = FileStore::open(dir.path()).await.unwrap();
            run(&store, &ops).await
        })?;
    }
}
