//! Log compaction: cleaning passes, the swap's crash safety, reads over gaps, producer state.

mod common;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;
use waterline_log::{
    CleanerConfig, CleanupPolicy, ControlType, CrashMode, LogConfig, MemStorage, OffsetMap,
    PartitionLog, Storage, StorageFile, Unthrottled,
};

const DIR: &str = "/disk/c-0";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        segment_ms: None,
        retention_ms: None,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

/// One batch of keyed records (None value = tombstone), optionally from an idempotent producer
/// (pid, epoch, base sequence).
fn keyed(
    recs: &[(&str, Option<&str>)],
    ts: i64,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> Vec<u8> {
    keyed_tx(recs, ts, compression, producer, false)
}

fn keyed_tx(
    recs: &[(&str, Option<&str>)],
    ts: i64,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
    transactional: bool,
) -> Vec<u8> {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = recs
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if seq < 0 { i as i32 } else { seq + i as i32 },
            timestamp: ts + i as i64,
            key: Some(Bytes::from(k.to_string())),
            value: v.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode");
    buf.to_vec()
}

fn open(s: &MemStorage, c: LogConfig) -> PartitionLog {
    PartitionLog::open(Arc::new(s.clone()), PathBuf::from(DIR), c, 0).expect("open")
}

/// Every record of the log: (offset, key, value, timestamp), decoded by kafka-protocol (which
/// checks each batch's CRC).
fn records(log: &PartitionLog) -> Vec<(i64, String, Option<String>, i64)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let bytes = log.read(at, 1 << 20, i64::MAX).expect("read");
        if bytes.is_empty() {
            break;
        }
        let mut b = bytes.clone();
        let mut last = at;
        for set in RecordBatchDecoder::decode_all(&mut b).expect("decode") {
            for r in set.records {
                let k = String::from_utf8(r.key.expect("key").to_vec()).expect("utf8");
                let v = r
                    .value
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
                if r.offset >= at {
                    out.push((r.offset, k, v, r.timestamp));
                }
            }
        }
        // Next read starts after the last batch returned.
        let mut p = 0;
        while p + 61 <= bytes.len() {
            let base = i64::from_be_bytes(bytes[p..p + 8].try_into().expect("8"));
            let len = i32::from_be_bytes(bytes[p + 8..p + 12].try_into().expect("4")) as usize;
            let lod = i32::from_be_bytes(bytes[p + 23..p + 27].try_into().expect("4"));
            last = base + i64::from(lod) + 1;
            p += 12 + len;
        }
        at = last;
    }
    out
}

/// Latest value per key by the log's contents.
fn latest(recs: &[(i64, String, Option<String>, i64)]) -> BTreeMap<String, Option<String>> {
    let mut m = BTreeMap::new();
    for (_, k, v, _) in recs {
        m.insert(k.clone(), v.clone());
    }
    m
}

fn clean(log: &mut PartitionLog, now: i64, cfg: &CleanerConfig) -> bool {
    let Some(plan) = log.forced_cleaning_plan(now) else {
        return false;
    };
    let res = plan.run(cfg, &mut Unthrottled).expect("run");
    log.install_cleaned(res).expect("install");
    true
}

/// Appends `n` rounds of updates to keys k0..k{keys}, then syncs and rolls.
fn fill(log: &mut PartitionLog, keys: usize, n: usize, ts: i64, c: Compression) {
    for round in 0..n {
        for k in 0..keys {
            let key = format!("k{k}");
            let val = format!("v{round}-{k}");
            log.append(&keyed(&[(&key, Some(&val))], ts, c, None), ts)
                .expect("append");
        }
    }
    log.sync().expect("sync");
}

#[test]
fn cleaning_keeps_latest_value_per_key_with_gaps() {
    for c in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let s = MemStorage::new();
        let mut log = open(&s, config());
        fill(&mut log, 5, 8, 100, c);
        let before = records(&log);
        let want = latest(&before);
        assert!(clean(&mut log, 200, &CleanerConfig::default()));
        let after = records(&log);
        assert_eq!(latest(&after), want, "{c:?}");
        assert!(after.len() < before.len(), "{c:?}: nothing removed");
        assert!(
            after.windows(2).all(|w| w[0].0 < w[1].0),
            "offsets increase"
        );
        // Among cleaned records (below the active segment) every key appears once.
        let mut seen = std::collections::HashSet::new();
        let cleaned_end = s
            .list_dir(Path::new(DIR))
            .expect("ls")
            .iter()
            .filter_map(|n| n.strip_suffix(".log")?.parse::<i64>().ok())
            .max()
            .expect("active segment");
        for (o, k, _, _) in after.iter().filter(|r| r.0 < cleaned_end) {
            assert!(
                seen.insert(k.clone()),
                "{c:?}: duplicate key {k} at {o}: {after:?} {:?}",
                s.list_dir(Path::new(DIR))
            );
        }
        // Reopen (clean and unclean) and check again.
        log.close().expect("close");
        let log = open(&s, config());
        assert_eq!(latest(&records(&log)), want);
        drop(log);
        s.crash(CrashMode::DropUnsynced);
        let log = open(&s, config());
        assert_eq!(latest(&records(&log)), want);
    }
}

#[test]
fn fetch_in_gap_returns_next_batch_and_timestamps_stay_right() {
    let s = MemStorage::new();
    let mut log = open(&s, config());
    for i in 0..40i64 {
        let k = format!("k{}", i % 3);
        let v = format!("v{i}");
        log.append(
            &keyed(&[(&k, Some(&v))], 1000 + i * 10, Compression::None, None),
            0,
        )
        .expect("append");
    }
    log.sync().expect("sync");
    assert!(clean(&mut log, 5000, &CleanerConfig::default()));
    let recs = records(&log);
    let mut offsets: Vec<i64> = vec![log.log_start_offset() - 1];
    offsets.extend(recs.iter().map(|r| r.0));
    // Find a gap and fetch inside it.
    let gap = offsets
        .windows(2)
        .find(|w| w[1] > w[0] + 1)
        .unwrap_or_else(|| panic!("a gap: {offsets:?}"));
    let bytes = log.read(gap[0] + 1, 1 << 20, i64::MAX).expect("read");
    let first = i64::from_be_bytes(bytes[..8].try_into().expect("8"));
    assert_eq!(first, gap[1]);
    // offset_for_timestamp: the first surviving record at or after each timestamp.
    for ts in [0, 1000, 1005, 1100, 1250, 1390, 1391] {
        let want = recs.iter().find(|r| r.3 >= ts).map(|r| (r.0, r.3));
        assert_eq!(log.offset_for_timestamp(ts).expect("oft"), want, "ts {ts}");
    }
}

#[test]
fn tombstones_survive_until_delete_horizon_then_vanish() {
    let s = MemStorage::new();
    let mut log = open(&s, config());
    fill(&mut log, 4, 3, 100, Compression::None);
    log.append(&keyed(&[("k1", None)], 150, Compression::None, None), 150)
        .expect("tombstone");
    fill(&mut log, 4, 3, 160, Compression::None);
    log.append(&keyed(&[("k2", None)], 170, Compression::None, None), 170)
        .expect("tombstone");
    // Push the tombstones out of the active segment.
    fill(&mut log, 1, 12, 180, Compression::Lz4);
    let before = latest(&records(&log));
    assert_eq!(before.get("k2"), Some(&None));
    assert!(clean(&mut log, 1_000, &CleanerConfig::default()));
    // Horizon = 1000 + delete.retention.ms (1000): kept at 1999.
    assert_eq!(latest(&records(&log)), before);
    let plan = log.cleaning_plan(1_999);
    assert!(
        plan.is_none()
            || plan.is_some_and(|p| p.reason != waterline_log::CleanReason::DeleteHorizon)
    );
    let plan = log.cleaning_plan(2_000).expect("horizon makes a pass due");
    assert_eq!(plan.reason, waterline_log::CleanReason::DeleteHorizon);
    let res = plan
        .run(&CleanerConfig::default(), &mut Unthrottled)
        .expect("run");
    assert!(res.stats.tombstones_removed >= 1);
    log.install_cleaned(res).expect("install");
    let after = latest(&records(&log));
    let mut want = before.clone();
    want.retain(|_, v| v.is_some());
    assert_eq!(after, want);
    drop(log);
    s.crash(CrashMode::DropUnsynced);
    assert_eq!(latest(&records(&open(&s, config()))), want);
}

/// The pending delete horizon of kept tombstones is durable (`delete-horizon`): after a crash
/// (or a clean restart) the pass that removes them is still due at the horizon, not only once
/// the dirty ratio calls for one.
#[test]
fn delete_horizon_survives_restart() {
    let horizon_plan = |log: &PartitionLog, now: i64| {
        log.cleaning_plan(now)
            .map(|p| p.reason)
            .filter(|r| *r == waterline_log::CleanReason::DeleteHorizon)
    };
    let s = MemStorage::new();
    let mut log = open(&s, config());
    fill(&mut log, 4, 3, 100, Compression::None);
    log.append(&keyed(&[("k1", None)], 150, Compression::None, None), 150)
        .expect("tombstone");
    fill(&mut log, 1, 12, 180, Compression::None);
    assert!(clean(&mut log, 1_000, &CleanerConfig::default()));
    assert_eq!(latest(&records(&log)).get("k1"), Some(&None));
    drop(log);
    s.crash(CrashMode::DropUnsynced);

    let mut log = open(&s, config());
    assert_eq!(horizon_plan(&log, 1_999), None, "not before the horizon");
    let plan = log
        .cleaning_plan(2_000)
        .expect("due at the horizon after restart");
    assert_eq!(plan.reason, waterline_log::CleanReason::DeleteHorizon);
    let res = plan
        .run(&CleanerConfig::default(), &mut Unthrottled)
        .expect("run");
    assert_eq!(res.stats.tombstones_removed, 1);
    log.install_cleaned(res).expect("install");
    assert_eq!(latest(&records(&log)).get("k1"), None);
    log.close().expect("close");

    // No tombstone left: nothing is due after a restart, however late.
    let log = open(&s, config());
    assert_eq!(horizon_plan(&log, i64::MAX / 2), None);
    drop(log);

    // A log cleaned before `delete-horizon` existed (file missing): a pass is due at once.
    s.remove_file(&PathBuf::from(DIR).join("delete-horizon"))
        .expect("remove");
    let log = open(&s, config());
    assert_eq!(
        horizon_plan(&log, 10_000),
        Some(waterline_log::CleanReason::DeleteHorizon)
    );
}

#[test]
fn idempotent_producer_state_survives_cleaning_and_replay() {
    let s = MemStorage::new();
    let mut log = open(&s, config());
    // Producer 7 writes the same key repeatedly: cleaning empties all but its last batches.
    for seq in 0..30 {
        let v = format!("v{seq}");
        let b = keyed(
            &[("same", Some(&v))],
            100,
            Compression::None,
            Some((7, 0, seq)),
        );
        log.append(&b, 0).expect("append");
    }
    // Another producer fills segments so producer 7's batches are sealed.
    for i in 0..20 {
        let v = format!("w{i}");
        log.append(
            &keyed(&[("other", Some(&v))], 100, Compression::None, None),
            0,
        )
        .expect("append");
    }
    log.sync().expect("sync");
    assert!(clean(&mut log, 1000, &CleanerConfig::default()));
    log.close().expect("close");
    // Recover without snapshots: state comes from replaying the (cleaned) headers.
    for n in s.list_dir(Path::new(DIR)).expect("ls") {
        if n.ends_with(".snapshot") {
            s.remove_file(&Path::new(DIR).join(&n)).expect("rm");
        }
    }
    s.remove_file(&Path::new(DIR).join("clean-shutdown"))
        .expect("rm marker");
    let mut log = open(&s, config());
    // A retry of the last batch is a duplicate; the next sequence appends.
    let last = keyed(
        &[("same", Some("v29"))],
        100,
        Compression::None,
        Some((7, 0, 29)),
    );
    let out = log.append(&last, 0).expect("retry");
    assert!(out.duplicate);
    assert_eq!(out.base_offset, 29);
    let next = keyed(
        &[("same", Some("v30"))],
        100,
        Compression::None,
        Some((7, 0, 30)),
    );
    assert!(!log.append(&next, 0).expect("next").duplicate);
    let bad = keyed(
        &[("same", Some("x"))],
        100,
        Compression::None,
        Some((7, 0, 40)),
    );
    assert!(log.append(&bad, 0).is_err());
}

#[test]
fn small_offset_map_cleans_in_several_passes() {
    let s = MemStorage::new();
    let mut log = open(&s, config());
    fill(&mut log, 40, 3, 100, Compression::None);
    fill(&mut log, 1, 20, 100, Compression::None);
    let want = latest(&records(&log));
    // 17 slots * 0.9: 15 keys per pass.
    let cfg = CleanerConfig {
        dedupe_buffer_bytes: 17 * 24,
        ..CleanerConfig::default()
    };
    let mut passes = 0;
    while log.dirty_ratio(1000) > 0.0 {
        assert!(clean(&mut log, 1000, &cfg));
        passes += 1;
        assert!(passes < 100);
    }
    assert!(passes > 2, "passes {passes}");
    let recs = records(&log);
    assert_eq!(latest(&recs), want);
    let mut seen = std::collections::HashSet::new();
    for (_, k, _, _) in recs.iter().filter(|r| r.1 != "k0") {
        assert!(seen.insert(k.clone()), "duplicate {k}");
    }
}

/// The superseded-offset bitmap decides records of the mapped range without the map; with no
/// bitmap, or one too small for the range (the rest is decided by the map), a pass keeps exactly
/// the same records. Several passes (a small map) and a first clean part exercise both paths.
#[test]
fn superseded_bitmap_and_map_lookups_agree() {
    let mut outcomes = Vec::new();
    for bitmap in [0, 1, 8, 8 << 20] {
        let s = MemStorage::new();
        let mut log = open(&s, config());
        fill(&mut log, 40, 3, 100, Compression::None);
        fill(&mut log, 7, 9, 100, Compression::Lz4);
        let want = latest(&records(&log));
        let cfg = CleanerConfig {
            dedupe_buffer_bytes: 30 * 24,
            superseded_bitmap_bytes: bitmap,
            ..CleanerConfig::default()
        };
        // Clean part: one pass, then more updates, then passes until nothing is dirty.
        assert!(clean(&mut log, 1000, &cfg));
        fill(&mut log, 25, 2, 100, Compression::None);
        let want_after = latest(&records(&log));
        assert_ne!(want, want_after);
        let mut passes = 0;
        while log.dirty_ratio(1000) > 0.0 {
            assert!(clean(&mut log, 1000, &cfg));
            passes += 1;
            assert!(passes < 100);
        }
        let recs = records(&log);
        assert_eq!(latest(&recs), want_after, "bitmap {bitmap}");
        outcomes.push(recs);
    }
    assert!(outcomes.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn offset_map_counts_and_bounds() {
    let mut m = OffsetMap::new(1000 * 24, 0.9);
    assert!(m.capacity() <= 900);
    for i in 0..m.capacity() {
        assert!(m.put(format!("key{i}").as_bytes(), i as i64));
    }
    assert!(!m.put(b"one more", 1));
    assert!(m.put(b"key3", 77));
    assert_eq!(m.get(b"key3"), Some(77));
    assert_eq!(m.get(b"key4"), Some(4));
    assert_eq!(m.get(b"absent"), None);
    assert!((m.allocated_bytes() as f64 / m.capacity() as f64) <= 27.0);
}

#[test]
fn delete_only_policy_never_plans_and_compact_only_keeps_retention_off() {
    let s = MemStorage::new();
    let c = LogConfig {
        cleanup_policy: CleanupPolicy::Delete,
        ..config()
    };
    let mut log = open(&s, c);
    fill(&mut log, 5, 8, 100, Compression::None);
    assert!(log.forced_cleaning_plan(1000).is_none());
    drop(log);
    let s = MemStorage::new();
    let c = LogConfig {
        retention_bytes: Some(1),
        retention_ms: Some(1),
        ..config()
    };
    let mut log = open(&s, c);
    fill(&mut log, 5, 8, 100, Compression::None);
    assert_eq!(log.enforce_retention(1_000_000).expect("retention"), 0);
    // Only one pass at a time.
    let p = log.forced_cleaning_plan(1000).expect("plan");
    assert!(log.forced_cleaning_plan(1000).is_none());
    drop(p);
    assert!(log.forced_cleaning_plan(1000).is_some());
}

#[test]
fn install_skips_groups_whose_segments_retention_deleted() {
    let s = MemStorage::new();
    let c = LogConfig {
        cleanup_policy: CleanupPolicy::CompactDelete,
        retention_bytes: Some(1200),
        ..config()
    };
    let mut log = open(&s, c);
    fill(&mut log, 5, 10, 100, Compression::None);
    let plan = log.forced_cleaning_plan(1000).expect("plan");
    let res = plan
        .run(&CleanerConfig::default(), &mut Unthrottled)
        .expect("run");
    assert!(log.enforce_retention(1000).expect("retention") > 0);
    let start = log.log_start_offset();
    let out = log.install_cleaned(res).expect("install");
    assert!(out.skipped >= 1);
    assert_eq!(log.log_start_offset(), start);
    let recs = records(&log);
    assert!(recs.iter().all(|r| r.0 >= start));
    let names = s.list_dir(Path::new(DIR)).expect("ls");
    assert!(!names.iter().any(|n| n.ends_with(".cleaned")), "{names:?}");
}

/// A storage that stops working (every call fails) after `budget` mutating operations, as a
/// killed process would; then the test crashes the MemStorage beneath and reopens.
struct Dying {
    inner: MemStorage,
    left: Arc<AtomicUsize>,
}

fn dead() -> io::Error {
    io::Error::other("process killed")
}

impl Dying {
    fn step(&self) -> io::Result<()> {
        let prev = self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        prev.map(|_| ()).map_err(|_| dead())
    }
}

struct DyingFile {
    inner: Box<dyn StorageFile>,
    left: Arc<AtomicUsize>,
}

impl DyingFile {
    fn step(&self) -> io::Result<()> {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| dead())
    }
}

impl StorageFile for DyingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_at(buf, pos)
    }
    fn append(&self, data: &[u8]) -> io::Result<u64> {
        self.step()?;
        self.inner.append(data)
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.step()?;
        self.inner.truncate(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.step()?;
        self.inner.sync()
    }
}

impl Storage for Dying {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn StorageFile>> {
        if create && !self.inner.exists(path)? {
            self.step()?;
        }
        Ok(Box::new(DyingFile {
            inner: self.inner.open(path, create)?,
            left: self.left.clone(),
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        self.inner.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

/// Checks a recovered log: the expected latest values, CRC-valid batches (decoded), offsets
/// increasing, and indexes consistent (every offset fetch starts at the right batch).
fn check_recovered(log: &PartitionLog, want: &BTreeMap<String, Option<String>>) {
    let recs = records(log);
    assert_eq!(&latest(&recs), want);
    assert!(recs.windows(2).all(|w| w[0].0 < w[1].0));
    for r in &recs {
        let b = log.read(r.0, 1, i64::MAX).expect("read");
        let base = i64::from_be_bytes(b[..8].try_into().expect("8"));
        let lod = i32::from_be_bytes(b[23..27].try_into().expect("4"));
        assert!(
            base <= r.0 && r.0 <= base + i64::from(lod),
            "index finds {}",
            r.0
        );
    }
}

/// The log the swap crash tests clean: an idempotent producer, zstd batches, a tombstone.
fn swap_fixture() -> (MemStorage, BTreeMap<String, Option<String>>, usize) {
    let mem = MemStorage::new();
    let mut log = open(&mem, config());
    for seq in 0..4 {
        let v = format!("p{seq}");
        let b = keyed(
            &[("k1", Some(&v))],
            90,
            Compression::None,
            Some((5, 1, seq)),
        );
        log.append(&b, 0).expect("producer");
    }
    fill(&mut log, 6, 6, 100, Compression::Zstd);
    log.append(&keyed(&[("k3", None)], 150, Compression::None, None), 150)
        .expect("tombstone");
    fill(&mut log, 1, 10, 160, Compression::None);
    let want = latest(&records(&log));
    let before = records(&log).len();
    log.close().expect("close");
    (mem, want, before)
}

/// (base, bytes) of every segment.
fn segment_bases(mem: &MemStorage) -> Vec<(i64, Vec<u8>)> {
    let mut v: Vec<(i64, Vec<u8>)> = mem
        .list_dir(Path::new(DIR))
        .expect("ls")
        .iter()
        .filter_map(|n| {
            let base = n.strip_suffix(".log")?.parse().ok()?;
            Some((base, mem.read_file(&Path::new(DIR).join(n))?))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn kill_at_every_step_of_a_cleaning_pass_leaves_old_or_new_segments() {
    // The segment layouts before and after a complete pass.
    let (mem, _, _) = swap_fixture();
    let old_bases = segment_bases(&mem);
    let mut log = open(&mem, config());
    assert!(clean(&mut log, 1000, &CleanerConfig::default()));
    drop(log);
    let new_bases = segment_bases(&mem);
    assert_ne!(old_bases, new_bases);
    for mode in [
        CrashMode::DropUnsynced,
        CrashMode::TearLastWrite { keep: 30 },
    ] {
        let mut step = 0;
        loop {
            let (mem, want, before) = swap_fixture();
            let left = Arc::new(AtomicUsize::new(usize::MAX));
            let dying: Arc<dyn Storage> = Arc::new(Dying {
                inner: mem.clone(),
                left: left.clone(),
            });
            let mut log = PartitionLog::open(dying, PathBuf::from(DIR), config(), 0).expect("open");
            left.store(step, Ordering::SeqCst);
            let finished = (|| {
                let plan = log.forced_cleaning_plan(1000)?;
                let res = plan.run(&CleanerConfig::default(), &mut Unthrottled).ok()?;
                log.install_cleaned(res).ok()
            })()
            .is_some();
            drop(log);
            mem.crash(mode);
            let mut log = open(&mem, config());
            check_recovered(&log, &want);
            let bases = segment_bases(&mem);
            assert!(
                bases == old_bases || bases == new_bases,
                "step {step}: the segments are neither all old nor all new"
            );
            let after = records(&log).len();
            if finished {
                // A full pass leaves every key once below the active segment.
                let active = log.log_end_offset() - 10;
                let mut seen = std::collections::HashSet::new();
                for r in records(&log).iter().filter(|r| r.0 < active) {
                    assert!(seen.insert(r.1.clone()), "duplicate key {} at {}", r.1, r.0);
                }
            }
            // Producer 5's state survived: a retry of its last batch is a duplicate.
            let retry = keyed(
                &[("k1", Some("p3"))],
                90,
                Compression::None,
                Some((5, 1, 3)),
            );
            let out = log.append(&retry, 0).expect("retry");
            assert!(out.duplicate && out.base_offset == 3, "{out:?}");
            // Either the old segments or the cleaned ones, never a mix of a group.
            let names = mem.list_dir(Path::new(DIR)).expect("ls");
            assert!(
                !names
                    .iter()
                    .any(|n| n.ends_with(".cleaned") || n == "clean-swap"),
                "{names:?}"
            );
            if finished {
                assert!(after < before);
                break;
            }
            step += 1;
            assert!(step < 10_000);
        }
        assert!(step > 10, "the pass took {step} steps");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    /// Several records in one batch with a codec (0 none .. 4 zstd).
    PutMany(Vec<(u8, u8)>, u8),
    Delete(u8),
    Sync,
    Clean(i64),
    Crash(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..12, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => (proptest::collection::vec((0u8..12, any::<u8>()), 2..5), 0u8..5)
            .prop_map(|(kv, c)| Op::PutMany(kv, c)),
        2 => (0u8..12).prop_map(Op::Delete),
        2 => Just(Op::Sync),
        2 => (0i64..3000).prop_map(Op::Clean),
        1 => any::<bool>().prop_map(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random keyed puts, tombstones, syncs, cleaning passes (with a tiny offset map, so
    /// several passes) and crashes against a model of the latest durable value per key.
    #[test]
    fn cleaning_matches_latest_value_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mem = MemStorage::new();
        let mut log = open(&mem, config());
        // Model: latest value per key among synced data, and among all appended data.
        let mut durable: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut written = durable.clone();
        let cfg = CleanerConfig { dedupe_buffer_bytes: 11 * 24, ..CleanerConfig::default() };
        let mut now = 0;
        for op in ops {
            now += 10;
            match op {
                Op::Put(k, v) => {
                    let key = format!("k{k}");
                    let val = format!("v{v}");
                    log.append(&keyed(&[(&key, Some(&val))], now, Compression::None, None), now).expect("append");
                    written.insert(key, Some(val));
                }
                Op::PutMany(kv, c) => {
                    let codec = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd][c as usize];
                    let owned: Vec<(String, String)> = kv.iter().map(|(k, v)| (format!("k{k}"), format!("v{v}"))).collect();
                    let recs: Vec<(&str, Option<&str>)> = owned.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))).collect();
                    log.append(&keyed(&recs, now, codec, None), now).expect("append");
                    for (k, v) in owned {
                        written.insert(k, Some(v));
                    }
                }
                Op::Delete(k) => {
                    let key = format!("k{k}");
                    log.append(&keyed(&[(&key, None)], now, Compression::None, None), now).expect("append");
                    written.insert(key, None);
                }
                Op::Sync => {
                    log.sync().expect("sync");
                    durable = written.clone();
                }
                Op::Clean(dt) => {
                    now += dt;
                    if let Some(plan) = log.forced_cleaning_plan(now) {
                        let res = plan.run(&cfg, &mut Unthrottled).expect("run");
                        log.install_cleaned(res).expect("install");
                    }
                }
                Op::Crash(tear) => {
                    drop(log);
                    mem.crash(if tear { CrashMode::TearLastWrite { keep: 40 } } else { CrashMode::DropUnsynced });
                    log = open(&mem, config());
                    let got = latest(&records(&log));
                    // Tombstoned keys may be gone (horizon passed) or still tombstoned.
                    let live = |m: &BTreeMap<String, Option<String>>| -> BTreeMap<String, String> {
                        m.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect()
                    };
                    prop_assert_eq!(live(&got), live(&durable));
                    written = durable.clone();
                }
            }
        }
        log.sync().expect("sync");
        let got = latest(&records(&log));
        let live = |m: &BTreeMap<String, Option<String>>| -> BTreeMap<String, String> {
            m.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect()
        };
        prop_assert_eq!(live(&got), live(&written));
    }
}

#[test]
fn transactional_batches_are_kept_and_never_supersede() {
    let s = MemStorage::new();
    let mut log = open(&s, config());
    log.append(
        &keyed(&[("t", Some("committed"))], 100, Compression::None, None),
        0,
    )
    .expect("append");
    // A transactional write of the same key, committed: the cleaner keeps it as it is and
    // never lets it supersede other records (only aborted transactions' data is dropped).
    let tx = keyed_tx(
        &[("t", Some("maybe-aborted"))],
        100,
        Compression::None,
        Some((9, 0, 0)),
        true,
    );
    log.append(&tx, 0).expect("tx");
    // Without the marker the open transaction would hold the cleaner below its first offset.
    log.append_marker(9, 0, ControlType::Commit, 0, 0)
        .expect("marker")
        .expect("appended");
    fill(&mut log, 3, 10, 100, Compression::None);
    assert!(clean(&mut log, 1000, &CleanerConfig::default()));
    let recs = records(&log);
    let vals: Vec<_> = recs
        .iter()
        .filter(|r| r.1 == "t")
        .map(|r| r.2.clone())
        .collect();
    assert_eq!(
        vals,
        vec![
            Some("committed".to_string()),
            Some("maybe-aborted".to_string())
        ]
    );
}

#[test]
fn throttle_sees_every_byte_read_and_written() {
    struct Count(u64);
    impl waterline_log::Throttle for Count {
        fn on_io(&mut self, bytes: u64) {
            self.0 += bytes;
        }
    }
    let s = MemStorage::new();
    let mut log = open(&s, config());
    fill(&mut log, 4, 10, 100, Compression::Gzip);
    let plan = log.forced_cleaning_plan(1000).expect("plan");
    let mut count = Count(0);
    let res = plan
        .run(&CleanerConfig::default(), &mut count)
        .expect("run");
    assert_eq!(count.0, res.stats.bytes_read + res.stats.bytes_written);
    assert!(res.stats.bytes_written < res.stats.bytes_read);
    assert_eq!(res.stats.passes, 1);
    log.install_cleaned(res).expect("install");
}

#[test]
fn recovery_still_detects_corruption_in_cleaned_segments() {
    let s = MemStorage::new();
    let mut log = open(&s, config());
    fill(&mut log, 30, 1, 100, Compression::None);
    fill(&mut log, 1, 20, 100, Compression::None);
    assert!(clean(&mut log, 1000, &CleanerConfig::default()));
    let cleaned = records(&log);
    log.close().expect("close");
    // Unclean restart that rescans everything: no marker, no recovery point.
    let dir = Path::new(DIR);
    s.remove_file(&dir.join("clean-shutdown")).expect("marker");
    s.remove_file(&dir.join("recovery-point")).expect("rp");
    let first = dir.join("00000000000000000000.log");
    let mut bytes = s.read_file(&first).expect("segment");
    assert!(bytes.len() > 100);
    // Corrupt the second batch's records (CRC-covered).
    let len0 = 12 + i32::from_be_bytes(bytes[8..12].try_into().expect("4")) as usize;
    bytes[len0 + 70] ^= 0xff;
    s.write_file(&first, &bytes);
    let log = open(&s, config());
    let first_base = i64::from_be_bytes(bytes[..8].try_into().expect("8"));
    let lod = i32::from_be_bytes(bytes[23..27].try_into().expect("4"));
    assert_eq!(log.log_end_offset(), first_base + i64::from(lod) + 1);
    let left = records(&log);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0], cleaned[0]);
    // The cleaner offset no longer claims offsets past the truncated end.
    drop(log);
    let ckpt = s.read_file(&dir.join("cleaner-offset")).expect("ckpt");
    let value = i64::from_be_bytes(ckpt[8..16].try_into().expect("8"));
    assert!(value <= first_base + i64::from(lod) + 1, "{value}");
}

#[test]
fn keyless_records_are_found_for_per_record_errors() {
    let mut records = Vec::new();
    for i in 0..5 {
        records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: 0,
            key: (i % 2 == 0).then(|| Bytes::from("k")),
            value: Some(Bytes::from("v")),
            headers: Default::default(),
        });
    }
    for compression in [Compression::None, Compression::Zstd] {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        assert_eq!(
            waterline_log::keyless_records(&buf).expect("scan"),
            vec![1, 3]
        );
    }
    let keyed = keyed(&[("a", Some("b"))], 0, Compression::Lz4, None);
    assert!(
        waterline_log::keyless_records(&keyed)
            .expect("scan")
            .is_empty()
    );
}

#[test]
fn plans_follow_dirty_ratio_and_compaction_lags() {
    fn assert_send<T: Send>() {}
    assert_send::<waterline_log::CleanPlan>();
    assert_send::<waterline_log::CleanResult>();
    use waterline_log::CleanReason;
    // min.compaction.lag.ms: segments whose newest record is younger are not cleanable.
    let s = MemStorage::new();
    let c = LogConfig {
        min_compaction_lag_ms: 1000,
        ..config()
    };
    let mut log = open(&s, c);
    fill(&mut log, 5, 8, 100, Compression::None);
    assert!(log.forced_cleaning_plan(1099).is_none());
    assert!(log.cleaning_plan(1099).is_none());
    let p = log.cleaning_plan(1100).expect("old enough");
    assert_eq!(p.reason, CleanReason::DirtyRatio);
    assert_eq!(p.dirty_bytes, p.cleanable_bytes);
    let res = p
        .run(&CleanerConfig::default(), &mut Unthrottled)
        .expect("run");
    log.install_cleaned(res).expect("install");
    // Everything cleanable is clean: nothing is due.
    assert_eq!(log.dirty_ratio(5000), 0.0);
    assert!(log.cleaning_plan(5000).is_none());
    drop(log);

    // min.cleanable.dirty.ratio not reached, but max.compaction.lag.ms forces a pass.
    let s = MemStorage::new();
    let c = LogConfig {
        min_cleanable_dirty_ratio: 0.99,
        max_compaction_lag_ms: 10_000,
        ..config()
    };
    let mut log = open(&s, c.clone());
    fill(&mut log, 5, 8, 100, Compression::None);
    assert!(clean(&mut log, 200, &CleanerConfig::default()));
    fill(&mut log, 5, 2, 300, Compression::None);
    let ratio = log.dirty_ratio(400);
    assert!(ratio > 0.0 && ratio < 0.99, "{ratio}");
    assert!(log.cleaning_plan(400).is_none());
    let p = log.cleaning_plan(300 + 10_001).expect("lag forces");
    assert_eq!(p.reason, CleanReason::MaxCompactionLag);
    drop(p);
    // The cleaner offset survives a restart.
    log.close().expect("close");
    let log = open(&s, c);
    assert!((log.dirty_ratio(400) - ratio).abs() < 1e-9);
}

#[test]
fn kill_during_recovery_of_a_committed_swap() {
    // Find install steps after which the manifest is durable, then kill recovery at every
    // step of finishing that swap.
    let mut committed = 0;
    for step in 0..200 {
        let (mem, want, _) = swap_fixture();
        let left = Arc::new(AtomicUsize::new(usize::MAX));
        let dying: Arc<dyn Storage> = Arc::new(Dying {
            inner: mem.clone(),
            left: left.clone(),
        });
        let mut log = PartitionLog::open(dying, PathBuf::from(DIR), config(), 0).expect("open");
        let plan = log.forced_cleaning_plan(1000).expect("plan");
        let res = plan
            .run(&CleanerConfig::default(), &mut Unthrottled)
            .expect("run");
        left.store(step, Ordering::SeqCst);
        let done = log.install_cleaned(res).is_ok();
        drop(log);
        mem.crash(CrashMode::DropUnsynced);
        if done {
            break;
        }
        let names = mem.list_dir(Path::new(DIR)).expect("ls");
        if !names.iter().any(|n| n == "clean-swap") {
            continue;
        }
        committed += 1;
        let mut r = 0;
        loop {
            left.store(usize::MAX, Ordering::SeqCst);
            let dying: Arc<dyn Storage> = Arc::new(Dying {
                inner: mem.clone(),
                left: left.clone(),
            });
            left.store(r, Ordering::SeqCst);
            let ok = PartitionLog::open(dying, PathBuf::from(DIR), config(), 0).is_ok();
            mem.crash(CrashMode::DropUnsynced);
            let log = open(&mem, config());
            check_recovered(&log, &want);
            drop(log);
            if ok {
                break;
            }
            r += 1;
            assert!(r < 1000);
        }
    }
    assert!(committed > 0, "no step left a committed manifest behind");
}

#[test]
fn compacted_log_rolls_at_max_compaction_lag() {
    let s = MemStorage::new();
    let c = LogConfig {
        segment_bytes: 1 << 20,
        segment_ms: Some(1_000_000),
        max_compaction_lag_ms: 500,
        ..config()
    };
    let mut log = open(&s, c);
    log.append(
        &keyed(&[("a", Some("1"))], 100, Compression::None, None),
        100,
    )
    .expect("append");
    log.append(
        &keyed(&[("a", Some("2"))], 599, Compression::None, None),
        599,
    )
    .expect("append");
    log.append(
        &keyed(&[("a", Some("3"))], 600, Compression::None, None),
        600,
    )
    .expect("append");
    log.sync().expect("sync");
    // The first two records were rolled out of the active segment and can be cleaned.
    let p = log.cleaning_plan(10_000).expect("due");
    assert_eq!(p.cleanable_bytes, p.dirty_bytes);
    let res = p
        .run(&CleanerConfig::default(), &mut Unthrottled)
        .expect("run");
    log.install_cleaned(res).expect("install");
    let vals: Vec<_> = records(&log).into_iter().map(|r| r.2).collect();
    assert_eq!(vals, vec![Some("2".to_string()), Some("3".to_string())]);
}

#[test]
fn rate_throttle_paces_to_the_configured_rate() {
    use waterline_log::Throttle;
    let mut t = waterline_log::RateThrottle::new(1_000_000.0);
    let start = std::time::Instant::now();
    for _ in 0..10 {
        t.on_io(20_000);
    }
    // 200 KB at 1 MB/s takes at least 0.2 s (only a lower bound: the machine may be slow).
    assert!(start.elapsed() >= std::time::Duration::from_millis(195));
}

/// A compacted log with aborted and committed transactions spread over several segments.
/// Returns the storage, the aborted transactions (producer id, first offset) and the log end.
fn txn_fixture() -> (MemStorage, Vec<(i64, i64)>, i64) {
    let mem = MemStorage::new();
    let mut log = open(&mem, config());
    let mut seqs = [0i32; 3];
    for round in 0..6 {
        for pid in 1..3i64 {
            let key = format!("t{round}-{pid}");
            let seq = seqs[pid as usize];
            let b = keyed_tx(
                &[(&key, Some("x"))],
                100,
                Compression::None,
                Some((pid, 0, seq)),
                true,
            );
            log.append(&b, 100).expect("tx");
            seqs[pid as usize] += 1;
        }
        fill(&mut log, 2, 1, 100, Compression::None);
        // Producer 1 aborts every round, producer 2 commits every other.
        let c2 = if round % 2 == 0 {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        log.append_marker(1, 0, ControlType::Abort, 0, 100)
            .expect("marker")
            .expect("appended");
        fill(&mut log, 2, 1, 100, Compression::None);
        log.append_marker(2, 0, c2, 0, 100)
            .expect("marker")
            .expect("appended");
    }
    fill(&mut log, 3, 4, 200, Compression::None);
    let end = log.log_end_offset();
    let aborted: Vec<(i64, i64)> = log
        .aborted_transactions(0, end)
        .expect("aborted")
        .iter()
        .map(|a| (a.producer_id, a.first_offset))
        .collect();
    assert_eq!(aborted.len(), 9);
    assert_eq!(log.last_stable_offset(), end);
    log.close().expect("close");
    (mem, aborted, end)
}

/// (base, bytes) of every `.txnindex` file.
fn txn_indexes(mem: &MemStorage) -> Vec<(i64, Vec<u8>)> {
    let mut v: Vec<(i64, Vec<u8>)> = mem
        .list_dir(Path::new(DIR))
        .expect("ls")
        .iter()
        .filter_map(|n| {
            let base = n.strip_suffix(".txnindex")?.parse().ok()?;
            Some((base, mem.read_file(&Path::new(DIR).join(n))?))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn kill_at_every_step_of_a_pass_keeps_the_aborted_transaction_index() {
    let (mem, _, _) = txn_fixture();
    let old = (segment_bases(&mem), txn_indexes(&mem));
    let mut log = open(&mem, config());
    log.set_config(LogConfig {
        segment_bytes: 1 << 20,
        ..config()
    });
    assert!(clean(&mut log, 1000, &CleanerConfig::default()));
    drop(log);
    let new = (segment_bases(&mem), txn_indexes(&mem));
    assert!(
        new.1.len() < old.1.len(),
        "segments with aborts were merged"
    );
    let mut step = 0;
    loop {
        let (mem, aborted, end) = txn_fixture();
        let left = Arc::new(AtomicUsize::new(usize::MAX));
        let dying: Arc<dyn Storage> = Arc::new(Dying {
            inner: mem.clone(),
            left: left.clone(),
        });
        let mut log = PartitionLog::open(dying, PathBuf::from(DIR), config(), 0).expect("open");
        log.set_config(LogConfig {
            segment_bytes: 1 << 20,
            ..config()
        });
        left.store(step, Ordering::SeqCst);
        let finished = (|| {
            let plan = log.forced_cleaning_plan(1000)?;
            let res = plan.run(&CleanerConfig::default(), &mut Unthrottled).ok()?;
            log.install_cleaned(res).ok()
        })()
        .is_some();
        drop(log);
        mem.crash(CrashMode::DropUnsynced);
        let log = open(&mem, config());
        let now = (segment_bases(&mem), txn_indexes(&mem));
        assert!(now == old || now == new, "step {step}: neither old nor new");
        let got: Vec<(i64, i64)> = log
            .aborted_transactions(0, end)
            .expect("aborted")
            .iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect();
        assert_eq!(got, aborted, "step {step}");
        assert_eq!(log.last_stable_offset(), end);
        assert!(log.recovery_repairs().is_empty(), "step {step}");
        if finished {
            assert_eq!(now, new);
            break;
        }
        step += 1;
        assert!(step < 10_000);
    }
    assert!(step > 10, "the pass took {step} steps");
}

#[test]
fn kill_during_recovery_of_a_committed_swap_keeps_the_aborted_transaction_index() {
    let mut committed = 0;
    for step in 0..300 {
        let (mem, aborted, end) = txn_fixture();
        let left = Arc::new(AtomicUsize::new(usize::MAX));
        let dying: Arc<dyn Storage> = Arc::new(Dying {
            inner: mem.clone(),
            left: left.clone(),
        });
        let mut log = PartitionLog::open(dying, PathBuf::from(DIR), config(), 0).expect("open");
        log.set_config(LogConfig {
            segment_bytes: 1 << 20,
            ..config()
        });
        let plan = log.forced_cleaning_plan(1000).expect("plan");
        let res = plan
            .run(&CleanerConfig::default(), &mut Unthrottled)
            .expect("run");
        left.store(step, Ordering::SeqCst);
        let done = log.install_cleaned(res).is_ok();
        drop(log);
        mem.crash(CrashMode::DropUnsynced);
        if done {
            break;
        }
        let names = mem.list_dir(Path::new(DIR)).expect("ls");
        if !names.iter().any(|n| n == "clean-swap") {
            continue;
        }
        committed += 1;
        let mut r = 0;
        loop {
            let dying: Arc<dyn Storage> = Arc::new(Dying {
                inner: mem.clone(),
                left: left.clone(),
            });
            left.store(r, Ordering::SeqCst);
            let ok = PartitionLog::open(dying, PathBuf::from(DIR), config(), 0).is_ok();
            mem.crash(CrashMode::DropUnsynced);
            let log = open(&mem, config());
            let got: Vec<(i64, i64)> = log
                .aborted_transactions(0, end)
                .expect("aborted")
                .iter()
                .map(|a| (a.producer_id, a.first_offset))
                .collect();
            assert_eq!(got, aborted, "step {step}, recovery step {r}");
            assert_eq!(log.last_stable_offset(), end);
            assert!(log.recovery_repairs().is_empty());
            drop(log);
            if ok {
                break;
            }
            r += 1;
            assert!(r < 1000);
        }
    }
    assert!(committed > 0, "no step left a committed manifest behind");
}

/// On the real disk with a handle cache of 2, every file is closed and reopened by name between
/// uses: the cleaned segments, renamed over the originals by the install, must be read through
/// their final names (the pass wrote them as `.cleaned`).
#[test]
fn cleaning_on_disk_with_a_tiny_handle_cache() {
    let tmp = tempfile::tempdir().expect("tmp");
    let storage = Arc::new(waterline_log::FsStorage::with_max_open_files(2));
    let dir = tmp.path().join("c-0");
    let mut log = PartitionLog::open(storage.clone(), dir.clone(), config(), 0).expect("open");
    fill(&mut log, 5, 8, 100, Compression::Lz4);
    let want = latest(&records(&log));
    assert!(clean(&mut log, 200, &CleanerConfig::default()));
    // Churn the cache so the installed segments' handles are closed and reopened.
    let other = storage.open(&tmp.path().join("x"), true).expect("x");
    other.append(b"x").expect("x");
    let third = storage.open(&tmp.path().join("y"), true).expect("y");
    third.append(b"y").expect("y");
    assert_eq!(latest(&records(&log)), want);
    fill(&mut log, 5, 2, 300, Compression::None);
    let want = latest(&records(&log));
    log.close().expect("close");
    let log = PartitionLog::open(storage.clone(), dir, config(), 0).expect("reopen");
    assert_eq!(latest(&records(&log)), want);
    assert!(storage.open_files() <= 2 + 1, "{}", storage.open_files());
}
