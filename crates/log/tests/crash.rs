//! Crash consistency on MemStorage: random appends and syncs, then a power loss that drops
//! unsynced bytes or tears them at a random byte; after reopening, everything a completed sync
//! covered must be intact and the log must be a dense prefix of what was appended.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::records::Compression;
use proptest::prelude::*;
use waterline_log::{BatchHeader, CrashMode, LogConfig, MemStorage, PartitionLog, split_batches};

#[derive(Debug, Clone)]
enum Op {
    /// Append a batch of `n` records with `len`-byte values, timestamps starting at `ts`.
    Append { n: usize, len: usize, ts: i64 },
    /// sync_point + fsync + complete_sync.
    Sync,
    /// Take a sync point, append more, then complete the older point.
    SyncOverlapped { n: usize },
    /// Enforce size retention (deletes old segments below the high watermark).
    Retention,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..120, 0i64..1000).prop_map(|(n, len, ts)| Op::Append { n, len, ts }),
        2 => Just(Op::Sync),
        1 => (1usize..4).prop_map(|n| Op::SyncOverlapped { n }),
        1 => Just(Op::Retention),
    ]
}

fn crash_mode() -> impl Strategy<Value = CrashMode> {
    prop_oneof![
        Just(CrashMode::DropUnsynced),
        (0usize..800).prop_map(|keep| CrashMode::TearLastWrite { keep }),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        index_interval_bytes: 150,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: Some(2000),
        ..LogConfig::default()
    }
}

/// What the test appended: (base offset, stored bytes, record timestamps).
#[derive(Default)]
struct Model {
    batches: Vec<(i64, Vec<u8>, Vec<i64>)>,
    end: i64,
}

impl Model {
    fn append(&mut self, log: &mut PartitionLog, n: usize, len: usize, ts: i64) {
        let stamps: Vec<i64> = (0..n as i64).map(|i| ts + (i * 7) % 5).collect();
        let b = common::batch(&stamps, len, Compression::None);
        let out = log.append(&b, 0).expect("append");
        assert_eq!(out.base_offset, self.end);
        self.batches
            .push((out.base_offset, common::stored(&b, out.base_offset), stamps));
        self.end = out.last_offset + 1;
    }
}

const DIR: &str = "/disk/t-0";

fn open(s: &MemStorage) -> PartitionLog {
    PartitionLog::open(Arc::new(s.clone()), PathBuf::from(DIR), config(), 0).expect("reopen")
}

/// Runs the ops, crashes, reopens and checks the recovered log against the model. Returns the
/// reopened log and the model truncated to what survived.
fn run_round(
    s: &MemStorage,
    mut log: PartitionLog,
    mut model: Model,
    ops: &[Op],
    mode: CrashMode,
) -> (PartitionLog, Model) {
    let mut synced = log.high_watermark();
    for op in ops {
        match *op {
            Op::Append { n, len, ts } => model.append(&mut log, n, len, ts),
            Op::Sync => {
                log.sync().expect("sync");
                synced = log.high_watermark();
            }
            Op::SyncOverlapped { n } => {
                let p = log.sync_point();
                for i in 0..n {
                    model.append(&mut log, 2, 10, i as i64);
                }
                p.fsync().expect("fsync");
                log.complete_sync(&p);
                synced = log.high_watermark();
            }
            Op::Retention => {
                log.enforce_retention(0).expect("retention");
                assert!(log.log_start_offset() <= log.high_watermark());
            }
        }
    }
    assert_eq!(synced, log.high_watermark());
    drop(log);
    s.crash(mode);
    let log = open(s);
    check(&log, &mut model, synced);
    (log, model)
}

fn check(log: &PartitionLog, model: &mut Model, synced: i64) {
    let end = log.log_end_offset();
    assert!(
        end >= synced,
        "lost synced data: end {end} < synced {synced}"
    );
    assert_eq!(log.high_watermark(), end);
    // The recovered log is exactly a prefix of the appended batches ending at a batch boundary.
    let keep = model.batches.iter().take_while(|b| b.0 < end).count();
    model.batches.truncate(keep);
    let model_end = model.batches.last().map_or(log.log_start_offset(), |b| {
        let h = BatchHeader::parse(&b.1).expect("header");
        h.last_offset() + 1
    });
    assert_eq!(
        end, model_end,
        "log end is not a batch boundary of the model"
    );
    model.end = end;
    // Retention may have deleted a prefix of whole batches.
    let start = log.log_start_offset();
    let first = model
        .batches
        .iter()
        .position(|b| b.0 >= start)
        .unwrap_or(model.batches.len());
    assert!(
        first == model.batches.len() || model.batches[first].0 == start,
        "log start {start} is not a batch boundary"
    );
    model.batches.drain(..first);
    if model.batches.is_empty() {
        assert_eq!(start, end);
    }
    let all = log.read(start, usize::MAX, end).expect("read all");
    let want: Vec<u8> = model
        .batches
        .iter()
        .flat_map(|b| b.1.iter().copied())
        .collect();
    assert_eq!(all.len(), want.len());
    assert!(all[..] == want[..], "recovered bytes differ");
    assert_eq!(
        split_batches(&all, 1 << 20).expect("valid batches").len(),
        model.batches.len()
    );
    // Indexes agree with a full scan: every offset finds its own batch.
    for (base, bytes, stamps) in &model.batches {
        for off in *base..*base + stamps.len() as i64 {
            let got = log.read(off, 1, end).expect("read one");
            assert!(got[..] == bytes[..], "offset {off} found the wrong batch");
        }
    }
    // Time lookups agree with a brute force over the model.
    let flat: Vec<(i64, i64)> = model
        .batches
        .iter()
        .flat_map(|(base, _, st)| {
            st.iter()
                .enumerate()
                .map(move |(i, &t)| (base + i as i64, t))
        })
        .collect();
    for target in [0, 3, 250, 500, 999, 1003, 2000] {
        // Kafka semantics: first batch whose max >= target, then the first record in it.
        let want = model
            .batches
            .iter()
            .find(|(_, _, st)| st.iter().any(|&t| t >= target))
            .and_then(|(base, _, st)| {
                st.iter()
                    .position(|&t| t >= target)
                    .map(|i| (base + i as i64, st[i]))
            });
        assert_eq!(
            log.offset_for_timestamp(target).expect("ts lookup"),
            want,
            "target {target}"
        );
    }
    let max = flat.iter().map(|x| x.1).max();
    let want_max = max.map(|m| (m, flat.iter().find(|x| x.1 == m).map_or(-1, |x| x.0)));
    assert_eq!(log.max_timestamp(), want_max);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn synced_batches_survive_crashes(
        round1 in prop::collection::vec(op(), 1..40),
        mode1 in crash_mode(),
        round2 in prop::collection::vec(op(), 0..25),
        mode2 in crash_mode(),
    ) {
        let s = MemStorage::new();
        let log = open(&s);
        let (log, model) = run_round(&s, log, Model::default(), &round1, mode1);
        // Keep going on the recovered log and crash again.
        let (mut log, mut model) = run_round(&s, log, model, &round2, mode2);
        model.append(&mut log, 2, 5, 1);
        log.close().expect("close");
        let log = open(&s);
        let end = model.end;
        check(&log, &mut model, end);
    }
}
