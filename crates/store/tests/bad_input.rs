//! Damaged files, wrong versions and over-limit input: typed errors naming the problem.

use std::path::Path;

use waterline_store::{
    FileStore, Limits, OffsetAndMetadata, OffsetStore, RedbOptions, RedbStore, StoreError,
    TopicPartition,
};

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn batch(n: i32) -> Vec<(TopicPartition, OffsetAndMetadata)> {
    (0..n)
        .map(|p| (tp(p), OffsetAndMetadata::new(i64::from(p) + 10, 1)))
        .collect()
}

fn assert_corrupt(err: StoreError, path: &Path) {
    match err {
        StoreError::Corrupt { path: p, reason } => {
            assert_eq!(p, path, "error names the file");
            assert!(!reason.is_empty());
            assert!(
                StoreError::Corrupt { path: p, reason }
                    .to_string()
                    .contains(&path.display().to_string())
            );
        }
        other => panic!("expected Corrupt for {}, got {other:?}", path.display()),
    }
}

/// A file store with one committed group; returns the store, its dir guard and the doc path.
async fn file_with_group() -> (FileStore, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    store.commit("grp", &batch(3)).await.unwrap();
    let path = store.group_path("grp").unwrap();
    assert!(path.exists());
    (store, dir, path)
}

#[tokio::test]
async fn file_document_is_human_readable_and_versioned() {
    let (_store, _dir, path) = file_with_group().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"version\": 1"), "{text}");
    assert!(text.contains("\"format\": \"waterline-offsets\""), "{text}");
    assert!(text.contains("\"group\": \"grp\""), "{text}");
    assert!(text.lines().count() > 10, "pretty-printed: {text}");
    assert_eq!(path.file_name().unwrap(), "g-grp.json");
}

#[tokio::test]
async fn file_garbage_truncated_and_empty_documents_are_corrupt_not_empty() {
    let (store, _dir, path) = file_with_group().await;
    let good = std::fs::read(&path).unwrap();
    let damaged: Vec<Vec<u8>> = vec![
        b"\x00\xffnot json at all".to_vec(),
        good[..good.len() / 2].to_vec(),
        good[..good.len() - 3].to_vec(),
        Vec::new(),
        b"{}".to_vec(),
        b"[1,2,3]".to_vec(),
    ];
    for bytes in damaged {
        std::fs::write(&path, &bytes).unwrap();
        assert_corrupt(store.get("grp", &tp(0)).await.unwrap_err(), &path);
        assert_corrupt(store.get_group("grp").await.unwrap_err(), &path);
        // A commit must not paper over the damage by starting from an empty document.
        assert_corrupt(store.commit("grp", &batch(1)).await.unwrap_err(), &path);
        assert_corrupt(store.delete("grp", &[tp(0)]).await.unwrap_err(), &path);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "damaged file left as found"
        );
    }
    // Other groups are unaffected, and deleting the damaged group is allowed.
    store.commit("other", &batch(1)).await.unwrap();
    store.delete_group("grp").await.unwrap();
    assert_eq!(store.list_groups().await.unwrap(), vec!["other"]);
}

#[tokio::test]
async fn file_wrong_version_name_group_or_position_is_reported() {
    let (store, _dir, path) = file_with_group().await;
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(&path, good.replace("\"version\": 1", "\"version\": 7")).unwrap();
    match store.get_group("grp").await.unwrap_err() {
        StoreError::UnsupportedVersion {
            path: p,
            found,
            supported,
        } => {
            assert_eq!((p.as_path(), found, supported), (path.as_path(), 7, 1));
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }

    std::fs::write(&path, good.replace("waterline-offsets", "something-else")).unwrap();
    assert_corrupt(store.get_group("grp").await.unwrap_err(), &path);

    std::fs::write(
        &path,
        good.replace("\"group\": \"grp\"", "\"group\": \"x\""),
    )
    .unwrap();
    assert_corrupt(store.get_group("grp").await.unwrap_err(), &path);

    std::fs::write(
        &path,
        good.replace("\"offset\": 10", "\"bytes_hex\": \"zz\""),
    )
    .unwrap();
    assert_corrupt(store.get_group("grp").await.unwrap_err(), &path);

    std::fs::write(&path, good.replace("\"partition\": 1", "\"partition\": 0")).unwrap();
    assert_corrupt(store.get_group("grp").await.unwrap_err(), &path);

    std::fs::write(&path, &good).unwrap();
    assert_eq!(store.get_group("grp").await.unwrap(), batch(3));
}

#[tokio::test]
async fn file_store_is_locked_and_cleans_temp_files() {
    let (store, dir, path) = file_with_group().await;
    match FileStore::open(dir.path()).await.unwrap_err() {
        StoreError::Locked { path } => assert_eq!(path, dir.path().join("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(store);
    // A write that died before its rename leaves a temp file; it must not count or linger.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, b"{ half a docu").unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    assert!(!tmp.exists());
    assert_eq!(store.list_groups().await.unwrap(), vec!["grp"]);
    assert_eq!(store.get_group("grp").await.unwrap(), batch(3));
}

#[tokio::test]
async fn file_store_rejects_names_too_long_for_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).await.unwrap();
    let long = "x".repeat(241);
    assert!(matches!(
        store.commit(&long, &batch(1)).await.unwrap_err(),
        StoreError::GroupNameTooLong { len: 241, max: 240 }
    ));
    // Escaping counts: 81 slashes encode to 243 bytes.
    let slashes = "/".repeat(81);
    assert!(matches!(
        store.commit(&slashes, &batch(1)).await.unwrap_err(),
        StoreError::GroupNameTooLong { .. }
    ));
    store.commit(&"x".repeat(240), &batch(1)).await.unwrap();
}

#[tokio::test]
async fn configured_metadata_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let small = Limits {
        max_metadata_bytes: Some(10),
    };
    let file = FileStore::open_with_limits(dir.path().join("f"), small)
        .await
        .unwrap();
    let redb = RedbStore::open_with(
        dir.path().join("db.redb"),
        RedbOptions {
            limits: small,
            ..RedbOptions::default()
        },
    )
    .await
    .unwrap();
    let unlimited = RedbStore::open_with(
        dir.path().join("unlimited.redb"),
        RedbOptions {
            limits: Limits::unlimited(),
            ..RedbOptions::default()
        },
    )
    .await
    .unwrap();
    let ok = vec![(
        tp(0),
        OffsetAndMetadata::new(1, 1).with_metadata("0123456789"),
    )];
    let big = vec![(
        tp(0),
        OffsetAndMetadata::new(1, 1).with_metadata("0123456789a"),
    )];
    for store in [&file as &dyn OffsetStore, &redb] {
        store.commit("g", &ok).await.unwrap();
        let err = store.commit("g", &big).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::MetadataTooLarge {
                    len: 11,
                    max: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("over the limit of 10 bytes"));
    }
    let huge = vec![(
        tp(0),
        OffsetAndMetadata::new(1, 1).with_metadata("m".repeat(100_000)),
    )];
    unlimited.commit("g", &huge).await.unwrap();
    assert_eq!(
        unlimited.get("g", &tp(0)).await.unwrap(),
        Some(huge[0].1.clone())
    );
}

async fn redb_with_data(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("offsets.redb");
    let store = RedbStore::open(&path).await.unwrap();
    store.commit("g", &batch(2000)).await.unwrap();
    drop(store);
    path
}

#[tokio::test]
async fn redb_garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.redb");
    for bytes in [
        b"hello, I am not a database\n".to_vec(),
        vec![0xA5; 64 * 1024],
        vec![0; 4096],
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = RedbStore::open(&path).await.unwrap_err();
        assert_corrupt(err, &path);
    }
}

#[tokio::test]
async fn redb_damaged_pages_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = redb_with_data(dir.path()).await;
    let good = std::fs::read(&path).unwrap();
    assert!(good.len() > 8192);
    // Keep the header, scribble over every page after it.
    let mut damaged = good.clone();
    for b in &mut damaged[4096..] {
        *b ^= 0x5A;
    }
    std::fs::write(&path, &damaged).unwrap();
    assert_corrupt(RedbStore::open(&path).await.unwrap_err(), &path);
    // Truncated to the header only.
    std::fs::write(&path, &good[..4096]).unwrap();
    assert_corrupt(RedbStore::open(&path).await.unwrap_err(), &path);
}

#[tokio::test]
async fn redb_wrong_format_version_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("format_version", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    match RedbStore::open(&path).await.unwrap_err() {
        StoreError::UnsupportedVersion {
            path: p,
            found,
            supported,
        } => assert_eq!((p, found, supported), (path.clone(), 99, 1)),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}

#[tokio::test]
async fn redb_corrupt_row_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = redb_with_data(dir.path()).await;
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut rows = txn
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("offsets"))
                .unwrap();
            // Group "g", topic "t", partition 0: a value claiming a 4 GiB text token.
            let mut key = vec![0, 0, 0, 1, b'g', 0, 0, 0, 1, b't'];
            key.extend_from_slice(&0x8000_0000u32.to_be_bytes());
            rows.insert(key.as_slice(), [1u8, 0xff, 0xff, 0xff, 0xff, 1].as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).await.unwrap();
    assert_corrupt(store.get("g", &tp(0)).await.unwrap_err(), &path);
    assert_corrupt(store.get_group("g").await.unwrap_err(), &path);
    assert_eq!(
        store.get("g", &tp(1)).await.unwrap(),
        Some(OffsetAndMetadata::new(11, 1))
    );
}

#[tokio::test]
async fn redb_second_open_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.redb");
    let _store = RedbStore::open(&path).await.unwrap();
    match RedbStore::open(&path).await.unwrap_err() {
        StoreError::Locked { path: p } => assert_eq!(p, path),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[tokio::test]
async fn open_default_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    let store = waterline_store::open_default(&nested).await.unwrap();
    store.commit("g", &batch(1)).await.unwrap();
    assert_eq!(store.path(), nested.join("offsets.redb"));
    assert!(nested.join("offsets.redb").exists());
}

#[tokio::test]
async fn redb_creation_leftovers_and_empty_files_start_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offsets.redb");
    // What a crash during creation leaves: a half-written staging file, or an empty file.
    std::fs::write(dir.path().join("offsets.redb.creating"), b"half a header").unwrap();
    std::fs::write(&path, b"").unwrap();
    let store = RedbStore::open(&path).await.unwrap();
    assert!(store.list_groups().await.unwrap().is_empty());
    assert!(!dir.path().join("offsets.redb.creating").exists());
    store.commit("g", &batch(1)).await.unwrap();
    drop(store);
    let store = RedbStore::open(&path).await.unwrap();
    assert_eq!(store.get_group("g").await.unwrap(), batch(1));
}
