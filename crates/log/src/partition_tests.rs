//! Unit tests of [`PartitionLog`] on [`MemStorage`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::*;
use crate::batch::tests::build_batch;
use crate::storage::{CrashMode, MemStorage};

const NOW: i64 = 1_700_000_000_000;

fn dir() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

fn open(s: &MemStorage, config: LogConfig) -> PartitionLog {
    PartitionLog::open(Arc::new(s.clone()), dir(), config, NOW).unwrap()
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 150,
        ..LogConfig::default()
    }
}

/// A batch of `n` records with timestamp `ts` and 20-byte values.
fn batch(n: usize, ts: i64) -> Vec<u8> {
    build_batch((-1, -1, -1), ts, &vec![ts; n], 20)
}

fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    build_batch((pid, epoch, seq), NOW, &vec![NOW; n], 8)
}

/// A batch encoded by kafka-protocol with the given codec and per-record timestamps.
fn encoded(compression: Compression, stamps: &[i64]) -> Vec<u8> {
    let records: Vec<Record> = stamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch when offset - sequence changes.
            sequence: i as i32,
            timestamp: ts,
            key: None,
            value: Some(bytes::Bytes::from(vec![b'x'; 50])),
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
    .unwrap();
    buf.to_vec()
}

/// The batch as stored: base offset rewritten.
fn stored(b: &[u8], base: i64) -> Vec<u8> {
    let mut v = b.to_vec();
    v[..8].copy_from_slice(&base.to_be_bytes());
    v
}

fn files(s: &MemStorage, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .list_dir(&dir())
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn append_read_round_trip() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    let (a, b, c) = (batch(3, NOW), batch(1, NOW + 1), batch(4, NOW + 2));
    assert_eq!(log.append(&a, NOW).unwrap().base_offset, 0);
    let o = log.append(&b, NOW).unwrap();
    assert_eq!((o.base_offset, o.last_offset, o.duplicate), (3, 3, false));
    assert_eq!(log.append(&c, NOW).unwrap().last_offset, 7);
    assert_eq!(log.log_end_offset(), 8);
    // Nothing is visible below the high watermark before a sync.
    assert_eq!(log.high_watermark(), 0);
    assert!(
        log.read(0, 1 << 20, log.high_watermark())
            .unwrap()
            .is_empty()
    );
    log.sync().unwrap();
    assert_eq!(log.high_watermark(), 8);
    let got = log.read(0, 1 << 20, log.high_watermark()).unwrap();
    let want = [stored(&a, 0), stored(&b, 3), stored(&c, 4)].concat();
    assert_eq!(&got[..], &want[..]);
    // Stored batches keep a valid CRC after the base offset rewrite.
    assert_eq!(crate::split_batches(&got, 1 << 20).unwrap().len(), 3);
    assert!(log.read(8, 100, 8).unwrap().is_empty());
}

#[test]
fn read_from_middle_of_batch_returns_whole_batch() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    let a = batch(5, NOW);
    let b = batch(5, NOW);
    log.append(&a, NOW).unwrap();
    log.append(&b, NOW).unwrap();
    log.sync().unwrap();
    assert_eq!(
        &log.read(2, 1 << 20, 10).unwrap()[..],
        &[stored(&a, 0), stored(&b, 5)].concat()[..]
    );
    assert_eq!(&log.read(7, 1 << 20, 10).unwrap()[..], &stored(&b, 5)[..]);
    assert_eq!(&log.read(4, 1 << 20, 5).unwrap()[..], &stored(&a, 0)[..]);
}

#[test]
fn max_bytes_honoured_but_at_least_one_batch() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    let a = batch(2, NOW);
    let b = batch(2, NOW);
    log.append(&a, NOW).unwrap();
    log.append(&b, NOW).unwrap();
    log.sync().unwrap();
    assert_eq!(&log.read(0, 1, 4).unwrap()[..], &stored(&a, 0)[..]);
    assert_eq!(&log.read(0, 0, 4).unwrap()[..], &stored(&a, 0)[..]);
    assert_eq!(
        &log.read(0, a.len() + b.len() - 1, 4).unwrap()[..],
        &stored(&a, 0)[..]
    );
    assert_eq!(
        log.read(0, a.len() + b.len(), 4).unwrap().len(),
        a.len() + b.len()
    );
}

#[test]
fn out_of_range_offsets() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    log.append(&batch(2, NOW), NOW).unwrap();
    for off in [-1, 3] {
        assert!(matches!(
            log.read(off, 100, 2),
            Err(LogError::OffsetOutOfRange {
                start: 0,
                end: 2,
                ..
            })
        ));
    }
}

#[test]
fn append_rejects_invalid_and_multiple_batches() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    let mut bad = batch(2, NOW);
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        log.append(&bad, NOW),
        Err(LogError::Batch(BatchError::CrcMismatch { .. }))
    ));
    let two = [batch(1, NOW), batch(1, NOW)].concat();
    assert!(matches!(
        log.append(&two, NOW),
        Err(LogError::Batch(BatchError::TrailingBytes(_)))
    ));
    assert_eq!(log.log_end_offset(), 0);
    // Rejections do not poison.
    log.append(&batch(1, NOW), NOW).unwrap();
}

#[test]
fn rolls_by_size_and_reads_across_segments() {
    let s = MemStorage::new();
    let mut log = open(&s, small_config());
    let mut want = Vec::new();
    for i in 0..20 {
        let b = batch(3, NOW + i);
        let o = log.append(&b, NOW).unwrap();
        want.extend_from_slice(&stored(&b, o.base_offset));
    }
    log.sync().unwrap();
    let segs = files(&s, ".log");
    assert!(segs.len() >= 5, "{segs:?}");
    assert_eq!(segs[0], "00000000000000000000.log");
    for seg in &segs {
        let bytes = s.read_file(&dir().join(seg)).unwrap();
        assert!(bytes.len() <= 500);
    }
    assert_eq!(&log.read(0, 1 << 20, 60).unwrap()[..], &want[..]);
    // Reads starting in any segment, by offset.
    for off in [0, 13, 29, 59] {
        let got = log.read(off, 1 << 20, 60).unwrap();
        let h = BatchHeader::parse(&got).unwrap();
        assert!(h.base_offset <= off && h.last_offset() >= off);
    }
    log.close().unwrap();
    let log = open(&s, small_config());
    assert_eq!(&log.read(0, 1 << 20, 60).unwrap()[..], &want[..]);
}

#[test]
fn rolls_by_age() {
    let s = MemStorage::new();
    let cfg = LogConfig {
        segment_ms: Some(1000),
        ..LogConfig::default()
    };
    let mut log = open(&s, cfg);
    log.append(&batch(1, NOW), NOW).unwrap();
    log.append(&batch(1, NOW + 500), NOW + 500).unwrap();
    assert_eq!(files(&s, ".log").len(), 1);
    log.append(&batch(1, NOW + 1000), NOW + 1000).unwrap();
    assert_eq!(
        files(&s, ".log"),
        vec!["00000000000000000000.log", "00000000000000000002.log"]
    );
}

#[test]
fn retention_by_size_advances_log_start_and_survives_restart() {
    let s = MemStorage::new();
    let cfg = LogConfig {
        retention_bytes: Some(1500),
        retention_ms: None,
        ..small_config()
    };
    let mut log = open(&s, cfg.clone());
    for i in 0..30 {
        log.append(&batch(2, NOW + i), NOW).unwrap();
    }
    log.sync().unwrap();
    let before = files(&s, ".log").len();
    let deleted = log.enforce_retention(NOW).unwrap();
    assert!(deleted > 0);
    assert_eq!(files(&s, ".log").len(), before - deleted);
    let total: usize = files(&s, ".log")
        .iter()
        .map(|n| s.read_file(&dir().join(n)).unwrap().len())
        .sum();
    assert!(total <= 1500 + 500, "{total}");
    let start = log.log_start_offset();
    assert!(start > 0);
    assert_eq!(format!("{start:020}.log"), files(&s, ".log")[0]);
    assert!(matches!(
        log.read(0, 10, 60),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.append(&batch(1, NOW), NOW).unwrap().log_start_offset,
        start
    );
    log.sync().unwrap();
    // Both after a crash and after a clean close the log start is kept.
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s, cfg.clone());
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), 61);
    log.close().unwrap();
    assert_eq!(open(&s, cfg).log_start_offset(), start);
}

#[test]
fn retention_by_time_never_deletes_active_segment() {
    let s = MemStorage::new();
    let cfg = LogConfig {
        retention_ms: Some(10_000),
        ..small_config()
    };
    let mut log = open(&s, cfg);
    for i in 0..12 {
        log.append(&batch(3, NOW + i * 1000), NOW).unwrap();
    }
    log.sync().unwrap();
    let segs = files(&s, ".log").len();
    assert!(segs > 2);
    assert_eq!(log.enforce_retention(NOW + 5_000).unwrap(), 0);
    // Everything is expired, but the active segment stays.
    assert_eq!(log.enforce_retention(NOW + 1_000_000).unwrap(), segs - 1);
    assert_eq!(files(&s, ".log").len(), 1);
    assert_eq!(log.log_start_offset(), log.active().base);
    let hw = log.high_watermark();
    assert!(
        !log.read(log.log_start_offset(), 1 << 20, hw)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn offset_for_timestamp_uncompressed() {
    let s = MemStorage::new();
    let mut log = open(&s, small_config());
    // Offsets 0..2 at ts 100,150,120; 3..5 at 200,180,250; then many later batches.
    log.append(&build_batch((-1, -1, -1), 100, &[100, 150, 120], 5), NOW)
        .unwrap();
    log.append(&build_batch((-1, -1, -1), 200, &[200, 180, 250], 5), NOW)
        .unwrap();
    for i in 0..30 {
        log.append(&batch(2, 1000 + i * 10), NOW).unwrap();
    }
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(101).unwrap(), Some((1, 150)));
    assert_eq!(log.offset_for_timestamp(150).unwrap(), Some((1, 150)));
    assert_eq!(log.offset_for_timestamp(151).unwrap(), Some((3, 200)));
    assert_eq!(log.offset_for_timestamp(201).unwrap(), Some((5, 250)));
    assert_eq!(log.offset_for_timestamp(251).unwrap(), Some((6, 1000)));
    assert_eq!(
        log.offset_for_timestamp(1125).unwrap(),
        Some((6 + 13 * 2, 1130))
    );
    assert_eq!(log.offset_for_timestamp(1290).unwrap(), Some((64, 1290)));
    assert_eq!(log.offset_for_timestamp(1291).unwrap(), None);
    assert_eq!(log.max_timestamp(), Some((1290, 64)));
    // Same answers after a clean restart (indexes loaded) and after a crash (rebuilt).
    log.close().unwrap();
    let mut log = open(&s, small_config());
    assert_eq!(log.offset_for_timestamp(1125).unwrap(), Some((32, 1130)));
    assert_eq!(log.max_timestamp(), Some((1290, 64)));
    log.sync().unwrap();
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s, small_config());
    assert_eq!(log.offset_for_timestamp(201).unwrap(), Some((5, 250)));
    assert_eq!(log.max_timestamp(), Some((1290, 64)));
}

#[test]
fn offset_for_timestamp_compressed() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
        Compression::None,
    ] {
        let s = MemStorage::new();
        let mut log = open(&s, LogConfig::default());
        let a = encoded(codec, &[10, 30, 20, 40]);
        assert!(crate::split_batches(&a, 1 << 20).is_ok(), "{codec:?}");
        log.append(&a, NOW).unwrap();
        log.append(&encoded(codec, &[50, 45, 60]), NOW).unwrap();
        assert_eq!(
            log.offset_for_timestamp(25).unwrap(),
            Some((1, 30)),
            "{codec:?}"
        );
        assert_eq!(
            log.offset_for_timestamp(31).unwrap(),
            Some((3, 40)),
            "{codec:?}"
        );
        assert_eq!(
            log.offset_for_timestamp(46).unwrap(),
            Some((4, 50)),
            "{codec:?}"
        );
        assert_eq!(log.offset_for_timestamp(61).unwrap(), None);
        assert_eq!(log.max_timestamp(), Some((60, 6)), "{codec:?}");
    }
}

/// Appending what `split_produced` found indexes time exactly as decoding the records again
/// does, for every codec (the hint only saves the second decode).
#[test]
fn produced_batches_index_time_like_decoded_ones() {
    let stamps: [&[i64]; 4] = [&[5, 9, 9, 2], &[3, 12, 1], &[12, 12], &[20, 4, 20, 19]];
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let (s1, s2) = (MemStorage::new(), MemStorage::new());
        let (mut decoded, mut hinted) = (open(&s1, small_config()), open(&s2, small_config()));
        let mut request = Vec::new();
        for st in stamps {
            request.extend_from_slice(&encoded(codec, st));
        }
        let produced = crate::split_produced(&request, 1 << 20).unwrap();
        assert_eq!(produced.len(), stamps.len());
        for b in &produced {
            let bytes = &request[b.range.clone()];
            decoded.append(bytes, NOW).unwrap();
            hinted
                .append_produced(bytes, b.max_timestamp_delta, NOW)
                .unwrap();
        }
        assert_eq!(produced[0].max_timestamp_delta, Some(1), "{codec:?}");
        assert_eq!(hinted.max_timestamp(), decoded.max_timestamp(), "{codec:?}");
        assert_eq!(hinted.max_timestamp(), Some((20, 9)), "{codec:?}");
        for ts in 0..22 {
            assert_eq!(
                hinted.offset_for_timestamp(ts).unwrap(),
                decoded.offset_for_timestamp(ts).unwrap(),
                "{codec:?} ts {ts}"
            );
        }
    }
}

#[test]
fn max_timestamp_is_first_record_carrying_it() {
    let s = MemStorage::new();
    let mut log = open(&s, small_config());
    assert_eq!(log.max_timestamp(), None);
    log.append(&build_batch((-1, -1, -1), 5, &[5, 9, 9], 5), NOW)
        .unwrap();
    log.append(&build_batch((-1, -1, -1), 9, &[9, 3], 5), NOW)
        .unwrap();
    assert_eq!(log.max_timestamp(), Some((9, 1)));
    log.append(&build_batch((-1, -1, -1), 7, &[7, 11], 5), NOW)
        .unwrap();
    assert_eq!(log.max_timestamp(), Some((11, 6)));
}

#[test]
fn idempotent_duplicate_out_of_order_and_fenced() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    let first = log.append(&idem(7, 0, 0, 3), NOW).unwrap();
    log.append(&idem(7, 0, 3, 2), NOW).unwrap();
    log.append(&batch(1, NOW), NOW).unwrap();
    // Retry of the first batch: not appended again, original offsets returned.
    let dup = log.append(&idem(7, 0, 0, 3), NOW).unwrap();
    assert!(dup.duplicate);
    assert_eq!(
        (dup.base_offset, dup.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert_eq!(log.log_end_offset(), 6);
    assert!(matches!(
        log.append(&idem(7, 0, 9, 1), NOW),
        Err(LogError::OutOfOrderSequence {
            expected: 5,
            received: 9,
            ..
        })
    ));
    log.append(&idem(7, 1, 0, 1), NOW).unwrap();
    assert!(matches!(
        log.append(&idem(7, 0, 5, 1), NOW),
        Err(LogError::ProducerFenced {
            epoch: 0,
            current_epoch: 1,
            ..
        })
    ));
    assert!(matches!(
        log.append(&idem(8, 0, 4, 1), NOW),
        Err(LogError::UnknownProducerId { .. })
    ));
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn producer_state_survives_clean_restart_and_crash() {
    for crash in [false, true] {
        let s = MemStorage::new();
        let mut log = open(&s, small_config());
        for i in 0..20 {
            log.append(&idem(3, 0, i * 2, 2), NOW).unwrap();
        }
        log.sync().unwrap();
        if crash {
            s.crash(CrashMode::DropUnsynced);
        } else {
            log.close().unwrap();
        }
        let mut log = open(&s, small_config());
        let dup = log.append(&idem(3, 0, 38, 2), NOW).unwrap();
        assert!(dup.duplicate, "crash={crash}");
        assert_eq!(dup.base_offset, 38);
        assert!(matches!(
            log.append(&idem(3, 0, 41, 1), NOW),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        assert!(!log.append(&idem(3, 0, 40, 1), NOW).unwrap().duplicate);
    }
}

#[test]
fn failed_fsync_poisons_the_log() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    log.append(&batch(1, NOW), NOW).unwrap();
    s.fail_next_syncs(1);
    let point = log.sync_point();
    assert!(point.fsync().is_err());
    log.complete_sync(&point);
    assert_eq!(log.high_watermark(), 0);
    assert!(matches!(
        log.append(&batch(1, NOW), NOW),
        Err(LogError::Poisoned)
    ));
    assert!(matches!(log.sync(), Err(LogError::Poisoned)));
    assert!(matches!(log.close(), Err(LogError::Poisoned)));
    // Reopening recovers: the unsynced batch may or may not be there, but the log works.
    let mut log = open(&s, LogConfig::default());
    log.append(&batch(1, NOW), NOW).unwrap();
}

#[test]
fn sync_point_can_run_while_appends_continue() {
    let s = MemStorage::new();
    let mut log = open(&s, small_config());
    log.append(&batch(2, NOW), NOW).unwrap();
    let point = log.sync_point();
    for i in 0..10 {
        log.append(&batch(2, NOW + i), NOW).unwrap(); // rolls segments meanwhile
    }
    point.fsync().unwrap();
    log.complete_sync(&point);
    assert_eq!(log.high_watermark(), 2);
    // An older point completing later never moves the high watermark back.
    let p2 = log.sync_point();
    p2.fsync().unwrap();
    log.complete_sync(&p2);
    log.complete_sync(&point);
    assert_eq!(log.high_watermark(), 22);
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s, small_config());
    assert_eq!(log.log_end_offset(), 22);
}

#[test]
fn clean_restart_does_not_rescan_but_crash_restart_does() {
    let s = MemStorage::new();
    let mut log = open(&s, small_config());
    for i in 0..20 {
        log.append(&batch(3, NOW + i), NOW).unwrap();
    }
    log.close().unwrap();
    assert!(s.exists(&dir().join("clean-shutdown")).unwrap());
    // Flip a byte inside the first batch of the active segment (outside any index check).
    let active = files(&s, ".log").pop().unwrap();
    let p = dir().join(&active);
    let mut bytes = s.read_file(&p).unwrap();
    bytes[70] ^= 0xff;
    s.write_file(&p, &bytes);
    let mut log = open(&s, small_config());
    assert_eq!(log.log_end_offset(), 60, "clean start trusts the files");
    // The first write removes the marker; then the process dies.
    log.append(&batch(1, NOW), NOW).unwrap();
    assert!(!s.exists(&dir().join("clean-shutdown")).unwrap());
    drop(log);
    // Now an unclean start: the active segment is rescanned and truncated at the bad batch.
    let log = open(&s, small_config());
    let base: i64 = active.trim_end_matches(".log").parse().unwrap();
    assert_eq!(log.log_end_offset(), base);
}

#[test]
fn corrupted_index_is_rebuilt() {
    let s = MemStorage::new();
    let mut log = open(&s, small_config());
    let mut want = Vec::new();
    for i in 0..20 {
        let b = batch(3, NOW + i);
        let o = log.append(&b, NOW).unwrap();
        want.extend_from_slice(&stored(&b, o.base_offset));
    }
    log.close().unwrap();
    for (n, garbage) in [
        (0usize, vec![0xffu8; 16]),
        (1, vec![0, 0, 0, 1, 0, 0, 0, 3]),
        (2, vec![1, 2, 3]),
    ] {
        let idx = &files(&s, ".index")[n];
        s.write_file(&dir().join(idx), &garbage);
    }
    let ti = &files(&s, ".timeindex")[3];
    s.write_file(&dir().join(ti), &[0xff; 24]);
    // Well-formed but lying: claims a maximum the segment does not have.
    let ti = &files(&s, ".timeindex")[4];
    s.write_file(
        &dir().join(ti),
        &crate::format::encode_time_index(&[(NOW + 1000, 1)]),
    );
    let log = open(&s, small_config());
    assert_eq!(&log.read(0, 1 << 20, 60).unwrap()[..], &want[..]);
    for off in 0..60 {
        let got = log.read(off, 1, 60).unwrap();
        let h = BatchHeader::parse(&got).unwrap();
        assert!(h.base_offset <= off && off <= h.last_offset());
    }
    assert_eq!(
        log.offset_for_timestamp(NOW + 10).unwrap(),
        Some((30, NOW + 10))
    );
}

#[test]
fn delete_removes_directory() {
    let s = MemStorage::new();
    let mut log = open(&s, LogConfig::default());
    log.append(&batch(1, NOW), NOW).unwrap();
    log.delete().unwrap();
    assert!(!s.exists(&dir()).unwrap());
    assert!(
        !s.exists(Path::new("/data/topic-0/00000000000000000000.log"))
            .unwrap()
    );
}

#[test]
fn retention_never_deletes_data_above_the_high_watermark() {
    let s = MemStorage::new();
    let cfg = LogConfig {
        retention_bytes: Some(1),
        retention_ms: Some(1),
        ..small_config()
    };
    let mut log = open(&s, cfg);
    for i in 0..10 {
        log.append(&batch(3, NOW + i), NOW).unwrap();
    }
    assert!(files(&s, ".log").len() > 2);
    assert_eq!(
        log.enforce_retention(NOW + 1_000_000).unwrap(),
        0,
        "nothing is durable yet"
    );
    log.sync().unwrap();
    let n = files(&s, ".log").len();
    assert_eq!(log.enforce_retention(NOW + 1_000_000).unwrap(), n - 1);
    assert!(log.log_start_offset() <= log.high_watermark());
}

#[test]
fn delete_records_moves_the_start_inside_a_segment_durably() {
    let s = MemStorage::new();
    let cfg = small_config();
    let mut log = open(&s, cfg.clone());
    for _ in 0..12 {
        log.append(&batch(3, NOW), NOW).unwrap();
    }
    // Not durable yet: nothing may be deleted past the high watermark.
    assert!(matches!(
        log.delete_records_before(5),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    log.sync().unwrap();
    let segments_before = files(&s, ".log").len();
    assert!(segments_before > 2);
    // Inside the second segment.
    let second: i64 = files(&s, ".log")[1][..20].parse().unwrap();
    let target = second + 1;
    assert_eq!(log.delete_records_before(target).unwrap(), target);
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(
        files(&s, ".log").len(),
        segments_before - 1,
        "the first segment went"
    );
    assert!(matches!(
        log.read(target - 1, 1 << 20, i64::MAX),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    // The batch holding the new start is returned whole; clients skip what lies before.
    let first = BatchHeader::parse(&log.read(target, 1 << 20, i64::MAX).unwrap()).unwrap();
    assert!(first.base_offset <= target && first.last_offset() >= target);
    // Going backwards is a no-op; past the high watermark is refused.
    assert_eq!(log.delete_records_before(1).unwrap(), target);
    assert!(log.delete_records_before(1_000).is_err());
    // The new start survives a crash and a clean reopen.
    s.crash(CrashMode::DropUnsynced);
    let mut log = open(&s, cfg.clone());
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.log_end_offset(), 36);
    // Up to the end: every sealed segment goes, the active one stays.
    assert_eq!(log.delete_records_before(36).unwrap(), 36);
    assert_eq!(log.read(36, 1 << 20, i64::MAX).unwrap().len(), 0);
    log.close().unwrap();
    let log = open(&s, cfg);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (36, 36));
}

#[test]
fn clean_open_writes_nothing_until_the_first_write() {
    let s = MemStorage::new();
    let mut log = open(&s, small_config());
    for i in 0..20 {
        log.append(&batch(3, NOW + i), NOW).unwrap();
    }
    log.close().unwrap();
    let marker = dir().join("clean-shutdown");
    // A clean open and a close without writes in between sync nothing and keep the marker.
    let before = s.sync_counts();
    let log = open(&s, small_config());
    assert!(log.is_clean());
    assert_eq!(
        log.high_watermark(),
        60,
        "everything was durable at the clean close"
    );
    assert_eq!(
        log.read(0, usize::MAX, 60).unwrap().len() as u64,
        log.size_bytes()
    );
    log.close().unwrap();
    assert_eq!(
        s.sync_counts(),
        before,
        "no fsync at a clean open or an idle close"
    );
    assert!(s.exists(&marker).unwrap());
    // A power loss now changes nothing: the marker is durable and still true.
    s.crash(CrashMode::DropUnsynced);
    let mut log = open(&s, small_config());
    assert!(log.is_clean());
    // The first write removes the marker durably before writing; an acknowledged (synced)
    // write survives a crash through a full recovery.
    log.append(&batch(2, NOW), NOW).unwrap();
    assert!(!log.is_clean());
    assert!(!s.exists(&marker).unwrap());
    log.sync().unwrap();
    drop(log);
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s, small_config());
    assert!(!log.is_clean(), "a recovered log is not clean");
    assert_eq!(log.log_end_offset(), 62);
    assert!(!s.exists(&marker).unwrap());
    log.close().unwrap();
    // Retention and DeleteRecords are writes too.
    let mut log = open(&s, small_config());
    assert!(log.is_clean());
    assert_eq!(log.delete_records_before(10).unwrap(), 10);
    assert!(!log.is_clean() && !s.exists(&marker).unwrap());
    log.close().unwrap();
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s, small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 62));
}

#[test]
fn batched_close_marks_clean_only_after_a_flush() {
    let s = MemStorage::new();
    let marker = dir().join("clean-shutdown");
    let mut log = open(&s, small_config());
    for i in 0..10 {
        log.append(&batch(3, NOW + i), NOW).unwrap();
    }
    // Not synced by the log: the flush of the whole storage makes it durable.
    assert!(log.prepare_close().unwrap());
    s.sync_all(&dir()).unwrap();
    log.finish_close().unwrap();
    // Crash before the second flush: the marker's rename is lost, the data is not.
    s.crash(CrashMode::DropUnsynced);
    assert!(!s.exists(&marker).unwrap());
    let mut log = open(&s, small_config());
    assert!(!log.is_clean());
    assert_eq!(log.log_end_offset(), 30);
    log.append(&batch(2, NOW), NOW).unwrap();
    assert!(log.prepare_close().unwrap());
    // Crash before the first flush: no marker, recovery keeps what was durable.
    drop(log);
    s.crash(CrashMode::DropUnsynced);
    let mut log = open(&s, small_config());
    assert!(!log.is_clean());
    assert_eq!(
        log.log_end_offset(),
        30,
        "the unsynced append is gone, nothing else"
    );
    log.append(&batch(2, NOW), NOW).unwrap();
    assert!(log.prepare_close().unwrap());
    s.sync_all(&dir()).unwrap();
    log.finish_close().unwrap();
    s.sync_all(&dir()).unwrap();
    s.crash(CrashMode::DropUnsynced);
    let mut log = open(&s, small_config());
    assert!(log.is_clean(), "the whole batched close was durable");
    assert_eq!(log.log_end_offset(), 32);
    assert_eq!(
        log.read(0, usize::MAX, 32).unwrap().len() as u64,
        log.size_bytes()
    );
    // Nothing written since a clean open: nothing to close.
    assert!(!log.prepare_close().unwrap());
    // A failed flush leaves no marker: the caller never calls finish_close.
    let mut log = open(&s, small_config());
    log.append(&batch(1, NOW), NOW).unwrap();
    assert!(log.prepare_close().unwrap());
    s.fail_next_syncs(1);
    assert!(s.sync_all(&dir()).is_err());
    drop(log);
    assert!(!s.exists(&marker).unwrap());
}

/// Running out of file descriptors (a handle the storage closed cannot be reopened: EMFILE)
/// fails only the operation at hand: the log is not poisoned, and the same operation
/// succeeds once descriptors are free again. Only failed writes and fsyncs of data stick.
#[test]
fn out_of_descriptors_is_transient_and_does_not_poison() {
    let s = MemStorage::new();
    let mut log = open(&s, small_config());
    let first = batch(2, NOW);
    log.append(&first, NOW).unwrap();
    log.sync().unwrap();

    // An append whose segment file cannot be opened: a retriable error, nothing written.
    s.fail_next_handles(1);
    let err = log.append(&batch(2, NOW), NOW).unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(matches!(err, LogError::OutOfDescriptors { .. }), "{err}");
    assert_eq!(log.log_end_offset(), 2);
    let second = batch(3, NOW);
    assert_eq!(log.append(&second, NOW).unwrap().base_offset, 2);

    // A sync whose file cannot be reopened: retriable, the next sync makes the data durable.
    s.fail_next_handles(1);
    let point = log.sync_point();
    let err = point.fsync().unwrap_err();
    assert!(err.is_retriable(), "{err}");
    log.complete_sync(&point);
    assert_eq!(log.high_watermark(), 2);
    log.sync().unwrap();
    assert_eq!(log.high_watermark(), 5);

    // A read that cannot open its file fails alone; the next read returns the data.
    s.fail_next_handles(1);
    assert!(log.read(0, 1 << 20, 5).unwrap_err().is_retriable());
    let mut want = stored(&first, 0);
    want.extend_from_slice(&stored(&second, 2));
    assert_eq!(&log.read(0, 1 << 20, 5).unwrap()[..], &want[..]);

    // Rolling a segment (files created) retried after an EMFILE completes the roll.
    for _ in 0..10 {
        s.fail_next_handles(1);
        let _ = log.append(&batch(4, NOW), NOW);
        log.append(&batch(4, NOW), NOW).unwrap();
    }
    log.sync().unwrap();
    let end = log.log_end_offset();
    log.close().unwrap();
    let log = open(&s, small_config());
    assert_eq!(log.log_end_offset(), end);
}

/// Under a caller-wide record ([`CleanMarker::Vouched`]) the first write leaves the marker
/// and fsyncs no directory; without the record the marker is ignored.
#[test]
fn vouched_marker_costs_the_first_write_nothing_and_needs_the_record() {
    let s = MemStorage::new();
    let vouched = |valid| {
        PartitionLog::open_with(
            Arc::new(s.clone()),
            dir(),
            small_config(),
            NOW,
            CleanMarker::Vouched {
                record_valid: valid,
            },
        )
        .unwrap()
    };
    let mut log = vouched(false);
    log.append(&batch(1, NOW), NOW).unwrap();
    log.close().unwrap();
    let marker = dir().join("clean-shutdown");
    assert!(s.exists(&marker).unwrap());

    let mut log = vouched(true);
    assert!(log.is_clean());
    let (_, dir_syncs) = s.sync_counts();
    log.append(&batch(1, NOW), NOW).unwrap();
    assert_eq!(
        s.sync_counts().1,
        dir_syncs,
        "no directory fsync in the append"
    );
    assert!(!log.is_clean());
    assert!(s.exists(&marker).unwrap(), "stale, and left in place");
    log.sync().unwrap();
    s.crash(CrashMode::DropUnsynced);
    // The caller's record was removed at start: the stale marker is not trusted.
    let log = vouched(false);
    assert!(!log.is_clean());
    assert_eq!(log.log_end_offset(), 2);
}
