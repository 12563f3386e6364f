//! Unit tests of transactions in [`PartitionLog`]: markers, the last stable offset, the
//! aborted-transaction index, producer state, recovery and the cleaner's bound.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::batch::tests::{build_batch, fix_crc};
use crate::storage::{CrashMode, MemStorage};
use crate::{CleanerConfig, Unthrottled};

const NOW: i64 = 1_700_000_000_000;

fn dir() -> PathBuf {
    PathBuf::from("/data/txn-0")
}

fn open(s: &MemStorage, config: LogConfig) -> PartitionLog {
    PartitionLog::open(Arc::new(s.clone()), dir(), config, NOW).unwrap()
}

fn small() -> LogConfig {
    LogConfig {
        segment_bytes: 400,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

/// A transactional data batch of `n` records.
fn txn(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = build_batch((pid, epoch, seq), NOW, &vec![NOW; n], 8);
    b[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    fix_crc(&mut b);
    b
}

fn plain(n: usize) -> Vec<u8> {
    build_batch((-1, -1, -1), NOW, &vec![NOW; n], 8)
}

fn aborted(log: &PartitionLog, from: i64, to: i64) -> Vec<(i64, i64)> {
    log.aborted_transactions(from, to)
        .unwrap()
        .into_iter()
        .map(|a| (a.producer_id, a.first_offset))
        .collect()
}

fn marker(log: &mut PartitionLog, pid: i64, epoch: i16, c: ControlType) -> Option<AppendOutcome> {
    log.append_marker(pid, epoch, c, 0, NOW).unwrap()
}

#[test]
fn commit_keeps_lso_at_first_offset_until_the_marker_is_durable() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    log.append(&plain(2), NOW).unwrap(); // 0..2
    assert_eq!(log.append(&txn(7, 0, 0, 3), NOW).unwrap().base_offset, 2); // 2..5
    log.append(&plain(1), NOW).unwrap(); // 5
    assert_eq!(log.last_stable_offset(), 0, "nothing durable yet");
    log.sync().unwrap();
    assert_eq!(log.high_watermark(), 6);
    assert_eq!(log.last_stable_offset(), 2);
    let p = log.producers();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].current_txn_start_offset, 2);
    assert_eq!(p[0].last_sequence, 2);
    log.append(&txn(7, 0, 3, 1), NOW).unwrap(); // 6, same transaction
    let m = marker(&mut log, 7, 0, ControlType::Commit).unwrap();
    assert_eq!((m.base_offset, m.last_offset, m.duplicate), (7, 7, false));
    assert_eq!(log.producers()[0].current_txn_start_offset, -1);
    assert_eq!(log.producers()[0].coordinator_epoch, 0);
    // Ended, but the marker is not durable yet: still unstable.
    assert_eq!(log.last_stable_offset(), 2);
    log.sync().unwrap();
    assert_eq!(log.last_stable_offset(), 8);
    assert_eq!(log.high_watermark(), 8);
    assert!(aborted(&log, 0, 8).is_empty());
    // The marker is a control batch as Kafka writes it.
    let all = log.read(7, 1 << 20, 8).unwrap();
    let h = BatchHeader::parse(&all).unwrap();
    assert!(h.is_control() && h.is_transactional());
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (7, 0, -1)
    );
    assert_eq!(
        txn::parse_marker(&all),
        Some(Marker {
            control: ControlType::Commit,
            coordinator_epoch: 0
        })
    );
}

#[test]
fn aborts_are_indexed_and_queried_by_overlap() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    log.append(&txn(1, 0, 0, 2), NOW).unwrap(); // 0..2 pid 1
    log.append(&txn(2, 0, 0, 1), NOW).unwrap(); // 2 pid 2
    log.append(&plain(1), NOW).unwrap(); // 3
    marker(&mut log, 2, 0, ControlType::Abort).unwrap(); // 4
    log.append(&txn(1, 0, 2, 1), NOW).unwrap(); // 5
    marker(&mut log, 1, 0, ControlType::Abort).unwrap(); // 6
    log.append(&txn(2, 0, 1, 1), NOW).unwrap(); // 7: a new transaction of pid 2
    log.sync().unwrap();
    assert_eq!(log.last_stable_offset(), 7);
    assert_eq!(aborted(&log, 0, 7), vec![(1, 0), (2, 2)]);
    // Overlap: last_offset >= from && first_offset < to.
    assert_eq!(aborted(&log, 5, 7), vec![(1, 0)]);
    assert_eq!(aborted(&log, 4, 5), vec![(1, 0), (2, 2)]);
    assert_eq!(aborted(&log, 0, 1), vec![(1, 0)]);
    assert!(aborted(&log, 7, 8).is_empty());
    // The test is applied as it stands, also to an empty range.
    assert_eq!(aborted(&log, 3, 3), vec![(1, 0), (2, 2)]);
    let p = log.producers();
    assert_eq!(p[1].current_txn_start_offset, 7);
    // The stored entries carry the LSO after their marker.
    let e = &log.active().aborted;
    assert_eq!(e[0].last_stable_offset, 0, "pid 1 was still open");
    assert_eq!(e[1].last_stable_offset, 7);
}

#[test]
fn marker_epochs_fence_and_stale_markers_are_not_appended() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    log.append(&txn(3, 5, 0, 2), NOW).unwrap(); // 0..2
    // A newer epoch (the coordinator aborted on a timeout) ends it and fences epoch 5.
    let out = log.append_marker(3, 6, ControlType::Abort, 2, NOW).unwrap();
    assert_eq!(out.map(|o| o.base_offset), Some(2));
    assert_eq!(log.producers()[0].producer_epoch, 6);
    assert!(matches!(
        log.append(&txn(3, 5, 2, 1), NOW),
        Err(LogError::ProducerFenced {
            current_epoch: 6,
            ..
        })
    ));
    // The old epoch's marker comes too late: not appended.
    assert_eq!(
        log.append_marker(3, 5, ControlType::Commit, 2, NOW)
            .unwrap(),
        None
    );
    assert_eq!(log.log_end_offset(), 3);
    // A marker with no open transaction is still appended, and ends nothing.
    let again = log.append_marker(3, 6, ControlType::Abort, 2, NOW).unwrap();
    assert_eq!(again.map(|o| o.base_offset), Some(3));
    log.sync().unwrap();
    assert_eq!(aborted(&log, 0, 10), vec![(3, 0)]);
    assert_eq!(log.last_stable_offset(), 4);
    // Sequences restart at 0 under the new epoch.
    assert!(log.append(&txn(3, 6, 0, 1), NOW).is_ok());
    // A marker for a producer never seen creates its state.
    marker(&mut log, 99, 1, ControlType::Commit).unwrap();
    let p99 = log
        .producers()
        .into_iter()
        .find(|p| p.producer_id == 99)
        .unwrap();
    assert_eq!((p99.producer_epoch, p99.last_sequence), (1, -1));
    assert_eq!(p99.last_timestamp, NOW);
}

#[test]
fn control_batches_are_refused_by_append() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    let m = txn::encode_marker(
        1,
        0,
        Marker {
            control: ControlType::Commit,
            coordinator_epoch: 0,
        },
        NOW,
    );
    assert!(matches!(
        log.append(&m, NOW),
        Err(LogError::Batch(BatchError::ControlBatch))
    ));
    assert!(matches!(
        log.append_marker(-1, 0, ControlType::Commit, 0, NOW),
        Err(LogError::Batch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn lso_is_never_below_log_start() {
    let s = MemStorage::new();
    let mut log = open(&s, small());
    log.append(&txn(1, 0, 0, 1), NOW).unwrap();
    for _ in 0..12 {
        log.append(&plain(3), NOW).unwrap();
    }
    log.sync().unwrap();
    assert_eq!(log.last_stable_offset(), 0);
    let start = log.delete_records_before(10).unwrap();
    assert_eq!(start, 10);
    assert_eq!(log.last_stable_offset(), 10);
    marker(&mut log, 1, 0, ControlType::Abort).unwrap();
    log.sync().unwrap();
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

/// Transactions spanning segments, then a reopen after a clean close and after a crash.
fn build_spanning(log: &mut PartitionLog) -> (i64, Vec<(i64, i64)>) {
    let mut seq = [0i32; 4];
    let mut t = |log: &mut PartitionLog, pid: i64| {
        let o = log.append(&txn(pid, 0, seq[pid as usize], 2), NOW).unwrap();
        seq[pid as usize] += 2;
        o.base_offset
    };
    let a = t(log, 1);
    for _ in 0..4 {
        log.append(&plain(2), NOW).unwrap();
    }
    let b = t(log, 2);
    t(log, 1);
    for _ in 0..4 {
        log.append(&plain(2), NOW).unwrap();
    }
    marker(log, 1, 0, ControlType::Abort).unwrap();
    let c = t(log, 3);
    marker(log, 2, 0, ControlType::Commit).unwrap();
    log.append(&plain(2), NOW).unwrap();
    t(log, 1);
    let _ = c;
    (b, vec![(1, a)])
}

#[test]
fn state_survives_clean_close_and_crash() {
    for crash in [false, true] {
        let s = MemStorage::new();
        let mut log = open(&s, small());
        let (_b, want_aborted) = build_spanning(&mut log);
        log.sync().unwrap();
        assert!(log.segments.len() > 2, "spans segments");
        let lso = log.last_stable_offset();
        let end = log.log_end_offset();
        let producers = log.producers();
        assert_eq!(aborted(&log, 0, end), want_aborted);
        if crash {
            // Unsynced tail after the sync point is lost.
            log.append(&txn(4, 0, 0, 1), NOW).unwrap();
            drop(log);
            s.crash(CrashMode::DropUnsynced);
        } else {
            log.close().unwrap();
        }
        let log = open(&s, small());
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(log.last_stable_offset(), lso, "crash {crash}");
        assert_eq!(log.producers(), producers);
        assert_eq!(aborted(&log, 0, end), want_aborted);
    }
}

#[test]
fn cleaner_stays_below_the_last_stable_offset() {
    let s = MemStorage::new();
    let config = LogConfig {
        cleanup_policy: crate::CleanupPolicy::Compact,
        min_compaction_lag_ms: 0,
        ..small()
    };
    let mut log = open(&s, config);
    for _ in 0..6 {
        log.append(&plain(3), NOW).unwrap();
    }
    let first = log.append(&txn(1, 0, 0, 1), NOW).unwrap().base_offset;
    for _ in 0..12 {
        log.append(&plain(3), NOW).unwrap();
    }
    log.sync().unwrap();
    assert_eq!(log.last_stable_offset(), first);
    let plan = log.forced_cleaning_plan(NOW).unwrap();
    assert!(plan.segments.iter().all(|seg| seg.end <= first));
    drop(plan);
    marker(&mut log, 1, 0, ControlType::Abort).unwrap();
    log.append(&plain(3), NOW).unwrap();
    log.sync().unwrap();
    let plan = log.forced_cleaning_plan(NOW).unwrap();
    assert!(plan.segments.iter().any(|seg| seg.end > first));
}

fn txn_files(s: &MemStorage) -> Vec<(i64, Vec<u8>)> {
    let mut v: Vec<(i64, Vec<u8>)> = s
        .list_dir(&dir())
        .unwrap()
        .into_iter()
        .filter_map(|n| {
            let base = format::parse_name(&n, TXN_SUFFIX)?;
            Some((base, s.read_file(&dir().join(n))?))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn txnindex_is_written_on_abort_and_made_durable_by_the_sync_point() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    log.append(&txn(1, 0, 0, 2), NOW).unwrap();
    log.append(&txn(2, 0, 0, 1), NOW).unwrap();
    assert!(
        txn_files(&s).is_empty(),
        "created with the first abort only"
    );
    marker(&mut log, 1, 0, ControlType::Abort).unwrap(); // 3
    let files = txn_files(&s);
    assert_eq!(files.len(), 1);
    let (entries, bad) = txn::decode_entries(&files[0].1);
    assert_eq!(bad, None);
    assert_eq!(
        entries,
        vec![AbortedEntry {
            producer_id: 1,
            first_offset: 0,
            last_offset: 3,
            last_stable_offset: 2,
        }]
    );
    // The sync point covers the new file and the directory entry.
    let point = log.sync_point();
    point.fsync().unwrap();
    log.complete_sync(&point);
    s.crash(CrashMode::DropUnsynced);
    assert_eq!(txn_files(&s), files);
    // A second abort appends one entry; lost in a crash before the sync, the marker with it.
    let mut log = open(&s, LogConfig::default());
    marker(&mut log, 2, 0, ControlType::Abort).unwrap();
    assert_eq!(txn_files(&s)[0].1.len(), 2 * txn::TXN_ENTRY);
    drop(log);
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s, LogConfig::default());
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(aborted(&log, 0, 4), vec![(1, 0)]);
    assert_eq!(log.last_stable_offset(), 2, "pid 2 is open again");
    assert_eq!(txn_files(&s), files);
    assert!(log.recovery_repairs().is_empty());
}

#[test]
fn torn_tail_of_an_unsynced_txnindex_is_rebuilt_silently() {
    for keep in [0, 5, 37, 38, 60, 1000] {
        let s = MemStorage::new();
        let mut log = open(&s, LogConfig::default());
        log.append(&txn(1, 0, 0, 2), NOW).unwrap();
        log.append(&txn(2, 0, 0, 1), NOW).unwrap();
        log.sync().unwrap();
        marker(&mut log, 1, 0, ControlType::Abort).unwrap();
        marker(&mut log, 2, 0, ControlType::Abort).unwrap();
        drop(log);
        s.crash(CrashMode::TearLastWrite { keep });
        let log = open(&s, LogConfig::default());
        let end = log.log_end_offset();
        let want: Vec<(i64, i64)> = [(1, 0, 3), (2, 2, 4)]
            .into_iter()
            .filter(|&(_, _, m)| m < end)
            .map(|(p, f, _)| (p, f))
            .collect();
        assert_eq!(aborted(&log, 0, end), want, "keep {keep}");
        assert!(log.recovery_repairs().is_empty());
        let files = txn_files(&s);
        let n: usize = files
            .iter()
            .map(|f| txn::decode_entries(&f.1).0.len())
            .sum();
        assert_eq!(n, want.len());
    }
}

#[test]
fn damaged_txnindex_of_a_trusted_segment_is_reported_truncated_and_rebuilt() {
    for close in [true, false] {
        let s = MemStorage::new();
        let mut log = open(&s, small());
        build_spanning(&mut log);
        // More aborted transactions in later segments.
        for i in 0..3 {
            log.append(&txn(5, 0, i * 2, 2), NOW).unwrap();
            for _ in 0..3 {
                log.append(&plain(3), NOW).unwrap();
            }
            marker(&mut log, 5, 0, ControlType::Abort).unwrap();
        }
        log.sync().unwrap();
        let end = log.log_end_offset();
        let want = aborted(&log, 0, end);
        let lso = log.last_stable_offset();
        let producers = log.producers();
        assert!(want.len() >= 3);
        if close {
            log.close().unwrap();
        } else {
            drop(log);
            s.crash(CrashMode::DropUnsynced);
        }
        let files = txn_files(&s);
        assert!(files.len() >= 2, "{files:?}");
        // Flip a byte in the first file's last entry.
        let (base, mut bytes) = files[0].clone();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x55;
        let path = dir().join(format::file_name(base, TXN_SUFFIX));
        s.write_file(&path, &bytes);
        let log = open(&s, small());
        let repairs = log.recovery_repairs();
        assert_eq!(repairs.len(), 1, "close {close}: {repairs:?}");
        assert_eq!(repairs[0].path, path);
        assert_eq!(repairs[0].reason, "entry CRC mismatch");
        assert_eq!(aborted(&log, 0, end), want);
        assert_eq!(log.last_stable_offset(), lso);
        assert_eq!(log.producers(), producers);
        // The file was rewritten whole.
        assert_eq!(txn_files(&s), files);
        drop(log);
        s.crash(CrashMode::DropUnsynced);
        let log = open(&s, small());
        assert!(log.recovery_repairs().is_empty());
        assert_eq!(aborted(&log, 0, end), want);
    }
}

#[test]
fn txnindex_goes_with_its_segment() {
    let s = MemStorage::new();
    let config = LogConfig {
        retention_bytes: Some(1),
        ..small()
    };
    let mut log = open(&s, config.clone());
    for seq in 0..4 {
        log.append(&txn(1, 0, seq, 1), NOW).unwrap();
        for _ in 0..3 {
            log.append(&plain(3), NOW).unwrap();
        }
        marker(&mut log, 1, 0, ControlType::Abort).unwrap();
    }
    log.sync().unwrap();
    let before = txn_files(&s).len();
    assert!(before >= 3);
    let first_base = *log.segments.keys().nth(1).unwrap();
    log.delete_records_before(first_base).unwrap();
    let after_dr = txn_files(&s);
    assert!(after_dr.iter().all(|f| f.0 >= first_base));
    log.enforce_retention(NOW).unwrap();
    let bases: Vec<i64> = log.segments.keys().copied().collect();
    assert!(txn_files(&s).iter().all(|f| bases.contains(&f.0)));
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let want = aborted(&log, start, end);
    drop(log);
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s, config);
    assert_eq!(aborted(&log, start, end), want);
    assert!(log.recovery_repairs().is_empty());
}

#[test]
fn a_cleaned_segment_takes_the_union_of_its_sources_index() {
    let s = MemStorage::new();
    let config = LogConfig {
        cleanup_policy: crate::CleanupPolicy::Compact,
        min_compaction_lag_ms: 0,
        segment_bytes: 300,
        ..small()
    };
    let mut log = open(&s, config.clone());
    for seq in 0..6 {
        log.append(&txn(1, 0, seq, 1), NOW).unwrap();
        log.append(&plain(2), NOW).unwrap();
        marker(&mut log, 1, 0, ControlType::Abort).unwrap();
    }
    for _ in 0..4 {
        log.append(&plain(2), NOW).unwrap();
    }
    log.sync().unwrap();
    let end = log.log_end_offset();
    let want = aborted(&log, 0, end);
    assert_eq!(want.len(), 6);
    let files_before = txn_files(&s);
    // Larger segments from now on, so that the pass merges the small ones.
    log.set_config(LogConfig {
        segment_bytes: 1 << 20,
        ..config.clone()
    });
    let plan = log.forced_cleaning_plan(NOW).unwrap();
    let res = plan
        .run(&CleanerConfig::default(), &mut Unthrottled)
        .unwrap();
    let out = log.install_cleaned(res).unwrap();
    assert!(out.installed >= 1);
    let files_after = txn_files(&s);
    assert!(files_after.len() < files_before.len(), "{files_after:?}");
    // Same entries, in the same order, fewer files.
    let all = |f: &[(i64, Vec<u8>)]| -> Vec<AbortedEntry> {
        f.iter().flat_map(|f| txn::decode_entries(&f.1).0).collect()
    };
    assert_eq!(all(&files_after), all(&files_before));
    assert_eq!(aborted(&log, 0, end), want);
    for (base, bytes) in &files_after {
        let seg = &log.segments[base];
        assert_eq!(txn::decode_entries(bytes).0, seg.aborted);
    }
    drop(log);
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s, config);
    assert_eq!(aborted(&log, 0, end), want);
    assert!(log.recovery_repairs().is_empty());
}

/// Backward compatibility: a log closed by the release before transactions (version 1
/// snapshots) opens with its idempotent producer state intact.
#[test]
fn a_log_with_version_1_snapshots_opens() {
    let s = MemStorage::new();
    let mut log = open(&s, small());
    let idem = |seq: i32| build_batch((8, 2, seq), NOW, &[NOW, NOW], 8);
    for i in 0..10 {
        log.append(&idem(i * 2), NOW).unwrap();
    }
    assert!(log.segments.len() > 1);
    let end = log.log_end_offset();
    log.close().unwrap();
    // Rewrite every snapshot as the old release wrote it.
    let mut rewritten = 0;
    for name in s.list_dir(&dir()).unwrap() {
        let Some(off) = format::parse_name(&name, SNAPSHOT_SUFFIX) else {
            continue;
        };
        let path = dir().join(&name);
        let (o, st) = format::decode_snapshot(&s.read_file(&path).unwrap()).unwrap();
        assert_eq!(o, off);
        s.write_file(&path, &format::encode_snapshot_version(off, &st, 1));
        rewritten += 1;
    }
    assert!(rewritten >= 1);
    let mut log = open(&s, small());
    assert_eq!(log.log_end_offset(), end);
    let p = log.producers();
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].producer_epoch, p[0].last_sequence), (2, 19));
    assert_eq!(p[0].coordinator_epoch, -1);
    assert_eq!(p[0].current_txn_start_offset, -1);
    // The last batch is recognised as a duplicate, the next sequence appends.
    let dup = log.append(&idem(18), NOW).unwrap();
    assert!(dup.duplicate);
    assert!(!log.append(&idem(20), NOW).unwrap().duplicate);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

/// Kafka's cleaner discards aborted transactions' records: their data batches go (or are
/// emptied when producer state refers to them); committed data, markers and the index stay.
#[test]
fn the_cleaner_drops_aborted_data_and_keeps_the_rest() {
    let s = MemStorage::new();
    let config = LogConfig {
        cleanup_policy: crate::CleanupPolicy::Compact,
        min_compaction_lag_ms: 0,
        segment_bytes: 300,
        ..small()
    };
    let mut log = open(&s, config.clone());
    // Producer 1 aborts, producer 2 commits; interleaved over several segments.
    let mut aborted_batches = Vec::new();
    let mut committed_batches = Vec::new();
    for round in 0..8 {
        let a = log.append(&txn(1, 0, round * 2, 2), NOW).unwrap();
        aborted_batches.push(a.base_offset);
        let c = log.append(&txn(2, 0, round, 1), NOW).unwrap();
        committed_batches.push(c.base_offset);
        marker(&mut log, 1, 0, ControlType::Abort).unwrap();
        marker(&mut log, 2, 0, ControlType::Commit).unwrap();
    }
    for _ in 0..6 {
        log.append(&plain(2), NOW).unwrap();
    }
    log.sync().unwrap();
    let end = log.log_end_offset();
    let want = aborted(&log, 0, end);
    assert_eq!(want.len(), 8);
    let producers = log.producers();
    let plan = log.forced_cleaning_plan(NOW).unwrap();
    let res = plan
        .run(&CleanerConfig::default(), &mut Unthrottled)
        .unwrap();
    assert!(res.stats.aborted_batches_removed >= 6, "{:?}", res.stats);
    log.install_cleaned(res).unwrap();
    // What is left of each batch, by base offset.
    let all = log.read(0, usize::MAX, end).unwrap();
    let mut left = BTreeMap::new();
    let mut p = 0;
    while p + BatchHeader::SIZE <= all.len() {
        let h = BatchHeader::parse(&all[p..]).unwrap();
        left.insert(h.base_offset, h);
        p += h.total_size().unwrap();
    }
    // Producer 1's last five batches are kept for its sequence state, emptied; the cleaned
    // segments lost the others (the last segments are not cleanable).
    let cleaned_end = *log.segments.keys().next_back().unwrap();
    for (i, &b) in aborted_batches.iter().enumerate() {
        match left.get(&b) {
            Some(h) if i >= 3 || b >= cleaned_end => {
                assert!(h.is_transactional());
                if b < cleaned_end {
                    assert_eq!(h.record_count, 0, "{b}");
                }
            }
            other => assert!(other.is_none(), "aborted batch at {b} kept: {other:?}"),
        }
    }
    assert!(!left.contains_key(&aborted_batches[0]));
    for &b in &committed_batches {
        assert_eq!(
            left.get(&b).map(|h| h.record_count),
            Some(1),
            "committed {b}"
        );
    }
    assert_eq!(left.values().filter(|h| h.is_control()).count(), 16);
    assert_eq!(aborted(&log, 0, end), want);
    assert_eq!(log.last_stable_offset(), end);
    // Producer state and the index survive a reopen, and a crash.
    drop(log);
    s.crash(CrashMode::DropUnsynced);
    let mut log = open(&s, config);
    assert_eq!(log.producers(), producers);
    assert_eq!(aborted(&log, 0, end), want);
    assert!(
        log.append(&txn(1, 0, 16, 1), NOW).is_ok(),
        "sequences continue"
    );
}
