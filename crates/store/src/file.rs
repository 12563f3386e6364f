//! A directory of human-readable JSON documents, one per group.
//!
//! # FORMAT (version 1)
//!
//! The directory holds:
//! - `LOCK`: an empty file, exclusively locked (advisory `flock`) while a [`FileStore`] has the
//!   directory open, so two processes never write the same documents.
//! - `g-<name>.json`: one document per group that has committed offsets. `<name>` is the group
//!   name percent-encoded: bytes `A-Z a-z 0-9 - _` stand for themselves, every other byte of
//!   the UTF-8 name is `%` and two upper-case hex digits. The mapping is reversible and yields
//!   portable names (no `/`, `.` or `..`, no case folding surprises); the prefix makes the empty
//!   group name representable. Encoded names are limited to [`MAX_ENCODED_NAME`] bytes.
//! - `g-<name>.json.tmp`: a document being written; removed when the store opens.
//!
//! A document is pretty-printed JSON:
//!
//! ```json
//! {
//!   "format": "waterline-offsets",
//!   "version": 1,
//!   "group": "orders",
//!   "offsets": [
//!     {
//!       "topic": "t",
//!       "partition": 0,
//!       "position": { "offset": 42 },
//!       "metadata": "",
//!       "commit_timestamp_ms": 1700000000000,
//!       "leader_epoch": 3
//!     }
//!   ]
//! }
//! ```
//!
//! `position` holds exactly one of `"offset"` (a number), `"text"` (a string) or `"bytes_hex"`
//! (lower-case hex of an opaque binary token). `leader_epoch` is a number or `null`. `offsets` is
//! sorted by topic then partition. `group` repeats the decoded file name, as a check.
//!
//! # Durability
//!
//! A write builds the whole new document, writes it to the `.tmp` file, fsyncs that file,
//! renames it over the document and fsyncs the directory; only then does the call return. A
//! crash therefore leaves either the old or the new document, never a mix. A document that does
//! not parse is reported as [`StoreError::Corrupt`] naming it, never read as empty. A failed
//! fsync poisons the store: every later write fails with [`StoreError::Poisoned`].

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use waterline_core::{OffsetAndMetadata, Position, TopicPartition};

use crate::error::blocking;
use crate::{CommitBatch, GroupOffsets, Limits, OffsetStore, StoreError};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;
/// The `format` field of every document.
pub const FORMAT_NAME: &str = "waterline-offsets";
/// Longest accepted percent-encoded group name, in bytes; keeps `g-<name>.json.tmp` within
/// the usual 255-byte file-name limit.
pub const MAX_ENCODED_NAME: usize = 240;

const PREFIX: &str = "g-";
const SUFFIX: &str = ".json";
const TMP_SUFFIX: &str = ".json.tmp";

type PartitionMap = BTreeMap<TopicPartition, OffsetAndMetadata>;

/// The JSON-directory store. Cheap to clone; clones share the directory lock.
#[derive(Debug, Clone)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    limits: Limits,
    // Serialises read-modify-write of documents; readers do not take it because renames are
    // atomic.
    write_lock: Mutex<()>,
    poisoned: AtomicBool,
    // Held for the store's lifetime: the OS releases the lock when the file is closed, including
    // when the process dies.
    _lock_file: File,
}

impl FileStore {
    /// Opens the store in `dir` (created if missing) with the default [`Limits`].
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_limits(dir, Limits::default()).await
    }

    /// Opens the store in `dir` (created if missing) enforcing `limits`.
    ///
    /// Fails with [`StoreError::Locked`] if another store has the directory open.
    pub async fn open_with_limits(
        dir: impl AsRef<Path>,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let inner = blocking(move || Inner::open(dir, limits)).await?;
        Ok(FileStore {
            inner: Arc::new(inner),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The path of the document that holds `group`'s offsets (it may not exist).
    pub fn group_path(&self, group: &str) -> Result<PathBuf, StoreError> {
        self.inner.group_path(group)
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&inner)).await
    }
}

#[async_trait]
impl OffsetStore for FileStore {
    /// Durable when it returns: document fsynced, renamed, directory fsynced.
    async fn commit(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), StoreError> {
        self.inner.limits.check(group, offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let batch = CommitBatch {
            group: group.to_owned(),
            offsets: offsets.to_vec(),
        };
        self.run(move |inner| inner.commit_many(std::slice::from_ref(&batch)))
            .await
    }

    /// One document rewrite (one file fsync) per distinct group, then one directory fsync for
    /// all of them. Each group's document is replaced atomically, so each batch is atomic, but
    /// batches of different groups are not atomic together.
    async fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        for b in batches {
            self.inner.limits.check(&b.group, &b.offsets)?;
        }
        let batches = batches.to_vec();
        self.run(move |inner| inner.commit_many(&batches)).await
    }

    async fn get(
        &self,
        group: &str,
        tp: &TopicPartition,
    ) -> Result<Option<OffsetAndMetadata>, StoreError> {
        let group = group.to_owned();
        let tp = tp.clone();
        self.run(move |inner| Ok(inner.load(&group)?.remove(&tp)))
            .await
    }

    async fn get_group(&self, group: &str) -> Result<GroupOffsets, StoreError> {
        let group = group.to_owned();
        self.run(move |inner| Ok(inner.load(&group)?.into_iter().collect()))
            .await
    }

    /// Durable when it returns: the document is rewritten (or removed when it becomes empty)
    /// and the directory fsynced.
    async fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError> {
        let group = group.to_owned();
        let tps = tps.to_vec();
        self.run(move |inner| inner.delete(&group, &tps)).await
    }

    /// Durable when it returns: the document is removed and the directory fsynced.
    async fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        let group = group.to_owned();
        self.run(move |inner| inner.delete_group(&group)).await
    }

    /// Lists the groups that have a document, from file names alone: a group whose document
    /// is damaged is listed, and reading it reports [`StoreError::Corrupt`].
    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        self.run(|inner| inner.list_groups()).await
    }
}

impl Inner {
    fn open(dir: PathBuf, limits: Limits) -> Result<Inner, StoreError> {
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create directory", &dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io("open", &lock_path, e))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io("lock", &lock_path, e)),
        }
        // Leftover temp files are writes that never returned; their documents are intact.
        let mut removed = false;
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io("list", &dir, e))? {
            let entry = entry.map_err(|e| StoreError::io("list", &dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&dir)?;
        }
        Ok(Inner {
            dir,
            limits,
            write_lock: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            _lock_file: lock_file,
        })
    }

    fn group_path(&self, group: &str) -> Result<PathBuf, StoreError> {
        let encoded = encode_name(group);
        if encoded.len() > MAX_ENCODED_NAME {
            return Err(StoreError::GroupNameTooLong {
                len: group.len(),
                max: MAX_ENCODED_NAME,
            });
        }
        Ok(self.dir.join(format!("{PREFIX}{encoded}{SUFFIX}")))
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Poisoned {
                path: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn poison<T>(&self, err: StoreError) -> Result<T, StoreError> {
        self.poisoned.store(true, Ordering::Release);
        Err(err)
    }

    /// The group's offsets; empty if it has no document.
    fn load(&self, group: &str) -> Result<PartitionMap, StoreError> {
        let path = self.group_path(group)?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PartitionMap::new()),
            Err(e) => return Err(StoreError::io("read", &path, e)),
        };
        decode_document(&path, group, &bytes)
    }

    fn commit_many(&self, batches: &[CommitBatch]) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.check_writable()?;
        // Merge per group, keeping batch order so later entries win.
        let mut per_group: BTreeMap<&str, PartitionMap> = BTreeMap::new();
        for b in batches.iter().filter(|b| !b.offsets.is_empty()) {
            let map = match per_group.entry(&b.group) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => v.insert(self.load(&b.group)?),
            };
            for (tp, o) in &b.offsets {
                map.insert(tp.clone(), o.clone());
            }
        }
        if per_group.is_empty() {
            return Ok(());
        }
        // Write and fsync every temp file first, then rename them all, then one directory fsync.
        let mut staged = Vec::with_capacity(per_group.len());
        for (group, map) in &per_group {
            let path = self.group_path(group)?;
            let tmp = tmp_path(&path);
            let doc = encode_document(group, map)?;
            self.write_tmp(&tmp, &doc)?;
            staged.push((tmp, path));
        }
        for (tmp, path) in &staged {
            fs::rename(tmp, path).map_err(|e| StoreError::io("rename", tmp, e))?;
        }
        self.sync_dir_or_poison()
    }

    fn delete(&self, group: &str, tps: &[TopicPartition]) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.check_writable()?;
        let mut map = self.load(group)?;
        let before = map.len();
        for tp in tps {
            map.remove(tp);
        }
        if map.len() == before {
            return Ok(());
        }
        let path = self.group_path(group)?;
        if map.is_empty() {
            fs::remove_file(&path).map_err(|e| StoreError::io("remove", &path, e))?;
        } else {
            let tmp = tmp_path(&path);
            self.write_tmp(&tmp, &encode_document(group, &map)?)?;
            fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &tmp, e))?;
        }
        self.sync_dir_or_poison()
    }

    fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.check_writable()?;
        let path = self.group_path(group)?;
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir_or_poison(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", &path, e)),
        }
    }

    fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        let mut groups = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &self.dir, e))?;
            let name = entry.file_name();
            // Names that are not canonical encodings are not documents of this store.
            let Some(encoded) = name
                .to_str()
                .and_then(|n| n.strip_prefix(PREFIX))
                .and_then(|n| n.strip_suffix(SUFFIX))
            else {
                continue;
            };
            if let Some(group) = decode_name(encoded) {
                groups.push(group);
            }
        }
        groups.sort();
        Ok(groups)
    }

    fn write_tmp(&self, tmp: &Path, doc: &[u8]) -> Result<(), StoreError> {
        let written = (|| {
            let mut f = File::create(tmp).map_err(|e| StoreError::io("create", tmp, e))?;
            f.write_all(doc)
                .map_err(|e| StoreError::io("write", tmp, e))?;
            Ok::<_, StoreError>(f)
        })();
        let f = match written {
            Ok(f) => f,
            Err(e) => {
                // Best effort: a leftover temp file is removed at the next open anyway.
                let _ = fs::remove_file(tmp);
                return Err(e);
            }
        };
        match f.sync_all() {
            Ok(()) => Ok(()),
            Err(e) => self.poison(StoreError::io("fsync", tmp, e)),
        }
    }

    fn sync_dir_or_poison(&self) -> Result<(), StoreError> {
        match sync_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) => self.poison(e),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Percent-encodes a group name into a file-name-safe string (see the module's FORMAT).
pub fn encode_name(group: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(group.len());
    for &b in group.as_bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Inverts [`encode_name`]; `None` for anything that is not a canonical encoding of a UTF-8
/// name, so `encode_name(decode_name(s)?) == s` always holds.
pub fn decode_name(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = upper_hex_value(*bytes.get(i + 1)?)?;
            let lo = upper_hex_value(*bytes.get(i + 2)?)?;
            let v = (hi << 4) | lo;
            if is_plain(v) {
                return None;
            }
            out.push(v);
            i += 3;
        } else if is_plain(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn upper_hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u64,
}

#[derive(Serialize, Deserialize)]
struct Document {
    format: String,
    version: u64,
    group: String,
    offsets: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    topic: String,
    partition: i32,
    position: DiskPosition,
    metadata: String,
    commit_timestamp_ms: i64,
    leader_epoch: Option<i32>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DiskPosition {
    Offset(i64),
    Text(String),
    BytesHex(String),
}

fn encode_document(group: &str, map: &PartitionMap) -> Result<Vec<u8>, StoreError> {
    let doc = Document {
        format: FORMAT_NAME.to_owned(),
        version: FORMAT_VERSION,
        group: group.to_owned(),
        offsets: map
            .iter()
            .map(|(tp, o)| Entry {
                topic: tp.topic.clone(),
                partition: tp.partition,
                position: match &o.position {
                    Position::Offset(n) => DiskPosition::Offset(*n),
                    Position::Text(s) => DiskPosition::Text(s.clone()),
                    Position::Bytes(b) => DiskPosition::BytesHex(to_hex(b)),
                },
                metadata: o.metadata.clone(),
                commit_timestamp_ms: o.commit_timestamp_ms,
                leader_epoch: o.leader_epoch,
            })
            .collect(),
    };
    let mut out = serde_json::to_vec_pretty(&doc)
        .map_err(|e| StoreError::TaskFailed(format!("encoding group {group:?}: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

fn decode_document(path: &Path, group: &str, bytes: &[u8]) -> Result<PartitionMap, StoreError> {
    let header: Header = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::corrupt(path, format!("not a valid document: {e}")))?;
    if header.format != FORMAT_NAME {
        return Err(StoreError::corrupt(
            path,
            format!("format is {:?}, expected {FORMAT_NAME:?}", header.format),
        ));
    }
    if header.version != FORMAT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: header.version,
            supported: FORMAT_VERSION,
        });
    }
    let doc: Document = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::corrupt(path, format!("not a valid document: {e}")))?;
    if doc.group != group {
        return Err(StoreError::corrupt(
            path,
            format!("document is for group {:?}, expected {group:?}", doc.group),
        ));
    }
    let mut map = PartitionMap::new();
    for e in doc.offsets {
        let position = match e.position {
            DiskPosition::Offset(n) => Position::Offset(n),
            DiskPosition::Text(s) => Position::Text(s),
            DiskPosition::BytesHex(h) => Position::Bytes(from_hex(&h).ok_or_else(|| {
                StoreError::corrupt(path, format!("bad bytes_hex position {h:?}"))
            })?),
        };
        let tp = TopicPartition::new(e.topic, e.partition);
        let offset = OffsetAndMetadata {
            position,
            metadata: e.metadata,
            commit_timestamp_ms: e.commit_timestamp_ms,
            leader_epoch: e.leader_epoch,
        };
        if map.insert(tp.clone(), offset).is_some() {
            return Err(StoreError::corrupt(
                path,
                format!("partition {tp} listed twice"),
            ));
        }
    }
    Ok(map)
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_encode_to_safe_file_names() {
        assert_eq!(encode_name("orders-v2_x"), "orders-v2_x");
        assert_eq!(encode_name(""), "");
        assert_eq!(encode_name("."), "%2E");
        assert_eq!(encode_name("a/b"), "a%2Fb");
        assert_eq!(encode_name("é"), "%C3%A9");
    }

    #[test]
    fn non_canonical_names_are_rejected() {
        assert_eq!(decode_name("%41"), None); // 'A' must be literal
        assert_eq!(decode_name("%2e"), None); // lower-case hex
        assert_eq!(decode_name("a.b"), None);
        assert_eq!(decode_name("%C3"), None); // not UTF-8
        assert_eq!(decode_name("%2"), None);
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }

    proptest! {
        #[test]
        fn name_encoding_round_trips(name in ".{0,40}") {
            let enc = encode_name(&name);
            prop_assert!(enc.bytes().all(|b| is_plain(b) || b == b'%' || b.is_ascii_hexdigit()));
            prop_assert_eq!(decode_name(&enc), Some(name));
        }

        #[test]
        fn decode_never_panics_and_is_canonical(s in "[%0-9A-Fa-z._/-]{0,20}") {
            if let Some(name) = decode_name(&s) {
                prop_assert_eq!(encode_name(&name), s);
            }
        }
    }
}
