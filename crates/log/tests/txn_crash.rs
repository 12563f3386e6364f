//! Transactions against a model, with crashes: random interleavings of transactional appends
//! from several producers, COMMIT/ABORT markers (some bumping the epoch, some stale), plain
//! appends, syncs, DeleteRecords, cleaning passes (compacted log: aborted data is dropped),
//! clean reopens and power losses (unsynced bytes dropped or torn). After every step and every recovery, the last stable offset, the aborted
//! transactions over many ranges and each producer's open transaction match a model replayed
//! over the batches that survived.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;
use waterline_log::{
    CleanerConfig, CleanupPolicy, ControlType, CrashMode, LogConfig, MemStorage, PartitionLog,
    Unthrottled,
};

const DIR: &str = "/disk/txn-0";
const PRODUCERS: i64 = 3;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 450,
        index_interval_bytes: 100,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        cleanup_policy: CleanupPolicy::Compact,
        ..LogConfig::default()
    }
}

fn open(s: &MemStorage) -> PartitionLog {
    PartitionLog::open(Arc::new(s.clone()), PathBuf::from(DIR), config(), 0).expect("open")
}

/// A batch of `n` records; transactional from (pid, epoch, seq) if given.
fn batch(n: usize, producer: Option<(i64, i16, i32)>) -> Vec<u8> {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if seq < 0 { i as i32 } else { seq + i as i32 },
            timestamp: 1000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'v'; 20])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.to_vec()
}

#[derive(Debug, Clone)]
enum Op {
    /// A transactional batch of `n` records from producer `pid`.
    Txn {
        pid: i64,
        n: usize,
    },
    /// A marker for `pid`; `bump` writes it with epoch + 1 (fencing the producer).
    Marker {
        pid: i64,
        abort: bool,
        bump: bool,
    },
    /// A marker with an epoch older than the producer's: not appended.
    Stale {
        pid: i64,
    },
    /// A non-transactional batch.
    Plain {
        n: usize,
    },
    Sync,
    /// Take a sync point, append, then complete the older point.
    SyncOverlapped,
    /// DeleteRecords at log start + (high watermark - log start) * eighths / 8.
    DeleteRecords {
        eighths: i64,
    },
    /// A forced cleaning pass.
    Clean,
    Crash(CrashMode),
    CloseReopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..PRODUCERS, 1usize..4).prop_map(|(pid, n)| Op::Txn { pid, n }),
        5 => (0..PRODUCERS, any::<bool>(), prop::bool::weighted(0.15))
            .prop_map(|(pid, abort, bump)| Op::Marker { pid, abort, bump }),
        1 => (0..PRODUCERS).prop_map(|pid| Op::Stale { pid }),
        4 => (1usize..4).prop_map(|n| Op::Plain { n }),
        3 => Just(Op::Sync),
        1 => Just(Op::SyncOverlapped),
        1 => (0i64..9).prop_map(|eighths| Op::DeleteRecords { eighths }),
        1 => Just(Op::Clean),
        1 => prop_oneof![
            Just(CrashMode::DropUnsynced),
            (0usize..300).prop_map(|keep| CrashMode::TearLastWrite { keep }),
        ]
        .prop_map(Op::Crash),
        1 => Just(Op::CloseReopen),
    ]
}

/// What was appended, in offset order.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Data { pid: i64, epoch: i16, seq: i32 },
    Plain,
    Marker { pid: i64, epoch: i16, abort: bool },
}

#[derive(Debug, Clone, Copy)]
struct Appended {
    base: i64,
    last: i64,
    kind: Kind,
}

/// A transaction as the model sees it.
#[derive(Debug, Clone, Copy)]
struct Txn {
    pid: i64,
    first: i64,
    /// Marker offset and whether it aborted.
    end: Option<(i64, bool)>,
}

#[derive(Default)]
struct Model {
    batches: Vec<Appended>,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.last + 1)
    }

    /// Transactions of the batches below `end`, and each producer's (epoch, next sequence).
    fn replay(&self, end: i64) -> (Vec<Txn>, BTreeMap<i64, (i16, i32)>) {
        let mut txns: Vec<Txn> = Vec::new();
        let mut open: BTreeMap<i64, usize> = BTreeMap::new();
        let mut producers: BTreeMap<i64, (i16, i32)> = BTreeMap::new();
        for b in self.batches.iter().filter(|b| b.last < end) {
            match b.kind {
                Kind::Data { pid, epoch, seq } => {
                    let n = (b.last - b.base + 1) as i32;
                    producers.insert(pid, (epoch, seq + n));
                    open.entry(pid).or_insert_with(|| {
                        txns.push(Txn {
                            pid,
                            first: b.base,
                            end: None,
                        });
                        txns.len() - 1
                    });
                }
                Kind::Marker { pid, epoch, abort } => {
                    let e = producers.entry(pid).or_insert((epoch, 0));
                    if epoch > e.0 {
                        *e = (epoch, 0);
                    }
                    if let Some(i) = open.remove(&pid) {
                        txns[i].end = Some((b.base, abort));
                    }
                }
                Kind::Plain => {}
            }
        }
        (txns, producers)
    }

    fn truncate(&mut self, end: i64) {
        self.batches.retain(|b| b.last < end);
    }
}

/// Checks the log's transaction views against the model replayed over [.., log end).
fn check(log: &PartitionLog, model: &Model) {
    let end = log.log_end_offset();
    let hw = log.high_watermark();
    let start = log.log_start_offset();
    assert_eq!(end, model.end());
    let (txns, _) = model.replay(end);
    // Unstable: open, or ended by a marker not yet below the high watermark.
    let unstable = txns
        .iter()
        .filter(|t| t.end.is_none_or(|(m, _)| m >= hw))
        .map(|t| t.first)
        .min();
    let lso = unstable.map_or(hw, |f| f.min(hw)).max(start);
    assert_eq!(
        log.last_stable_offset(),
        lso,
        "LSO (hw {hw}, start {start})"
    );
    for p in log.producers() {
        let open = txns
            .iter()
            .find(|t| t.pid == p.producer_id && t.end.is_none())
            .map_or(-1, |t| t.first);
        assert_eq!(
            p.current_txn_start_offset, open,
            "producer {}",
            p.producer_id
        );
    }
    for t in txns.iter().filter(|t| t.end.is_none() && t.first >= start) {
        assert!(
            log.producers()
                .iter()
                .any(|p| p.producer_id == t.pid && p.current_txn_start_offset == t.first),
            "open transaction {t:?} missing"
        );
    }
    let step = ((end - start) / 12).max(1);
    let mut from = start;
    while from <= end {
        let mut to = from;
        while to <= end + 1 {
            let mut want: Vec<(i64, i64)> = txns
                .iter()
                .filter_map(|t| match t.end {
                    Some((m, true)) if m >= from && t.first < to => Some((t.first, t.pid)),
                    _ => None,
                })
                .collect();
            want.sort();
            let got: Vec<(i64, i64)> = log
                .aborted_transactions(from, to)
                .expect("aborted")
                .into_iter()
                .map(|a| (a.first_offset, a.producer_id))
                .collect();
            assert_eq!(got, want, "aborted_transactions({from}, {to})");
            to += step;
        }
        from += step;
    }
}

fn run(ops: &[Op]) {
    let s = MemStorage::new();
    let mut log = open(&s);
    let mut model = Model::default();
    let mut synced = 0;
    for op in ops {
        let (_, producers) = model.replay(model.end());
        let state = |pid: i64| producers.get(&pid).copied().unwrap_or((0, 0));
        match *op {
            Op::Txn { pid, n } => {
                let (epoch, seq) = state(pid);
                let out = log
                    .append(&batch(n, Some((pid, epoch, seq))), 0)
                    .expect("txn append");
                assert_eq!(out.base_offset, model.end());
                model.batches.push(Appended {
                    base: out.base_offset,
                    last: out.last_offset,
                    kind: Kind::Data { pid, epoch, seq },
                });
            }
            Op::Marker { pid, abort, bump } => {
                let epoch = state(pid).0 + i16::from(bump);
                let c = if abort {
                    ControlType::Abort
                } else {
                    ControlType::Commit
                };
                let out = log
                    .append_marker(pid, epoch, c, 0, 0)
                    .expect("marker")
                    .expect("appended");
                assert_eq!(out.base_offset, model.end());
                model.batches.push(Appended {
                    base: out.base_offset,
                    last: out.last_offset,
                    kind: Kind::Marker { pid, epoch, abort },
                });
            }
            Op::Stale { pid } => {
                let (epoch, _) = state(pid);
                let known = log.producers().iter().any(|p| p.producer_id == pid);
                if known && epoch > 0 {
                    let out = log
                        .append_marker(pid, epoch - 1, ControlType::Abort, 0, 0)
                        .expect("stale marker");
                    assert_eq!(out, None);
                }
            }
            Op::Plain { n } => {
                let out = log.append(&batch(n, None), 0).expect("append");
                model.batches.push(Appended {
                    base: out.base_offset,
                    last: out.last_offset,
                    kind: Kind::Plain,
                });
            }
            Op::Sync => {
                log.sync().expect("sync");
                synced = log.high_watermark();
            }
            Op::SyncOverlapped => {
                let p = log.sync_point();
                let out = log.append(&batch(1, None), 0).expect("append");
                model.batches.push(Appended {
                    base: out.base_offset,
                    last: out.last_offset,
                    kind: Kind::Plain,
                });
                p.fsync().expect("fsync");
                log.complete_sync(&p);
                synced = log.high_watermark();
            }
            Op::DeleteRecords { eighths } => {
                let start = log.log_start_offset();
                let at = start + (log.high_watermark() - start) * eighths / 8;
                log.delete_records_before(at).expect("delete records");
            }
            Op::Clean => {
                if let Some(plan) = log.forced_cleaning_plan(10_000) {
                    let res = plan
                        .run(&CleanerConfig::default(), &mut Unthrottled)
                        .expect("clean");
                    log.install_cleaned(res).expect("install");
                }
            }
            Op::Crash(mode) => {
                drop(log);
                s.crash(mode);
                log = open(&s);
                let end = log.log_end_offset();
                assert!(end >= synced, "lost synced data: {end} < {synced}");
                model.truncate(end);
                synced = end;
                assert!(log.recovery_repairs().is_empty());
            }
            Op::CloseReopen => {
                log.close().expect("close");
                log = open(&s);
                assert_eq!(log.log_end_offset(), model.end());
                synced = model.end();
                assert!(log.recovery_repairs().is_empty());
            }
        }
        check(&log, &model);
    }
    // Finally: a crash after a full sync loses nothing, and a clean reopen agrees.
    log.sync().expect("sync");
    drop(log);
    s.crash(CrashMode::DropUnsynced);
    let log = open(&s);
    check(&log, &model);
    log.close().expect("close");
    let log = open(&s);
    check(&log, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn transactions_match_the_model_across_crashes(ops in prop::collection::vec(op(), 1..70)) {
        run(&ops);
    }
}

/// Found by the proptest: a roll's snapshot whose name became durable without its content
/// (a later directory fsync), then DeleteRecords deleted the segments after the last valid
/// snapshot, and recovery lost the open transaction and the sequences they held.
#[test]
fn delete_records_after_a_lost_roll_snapshot() {
    use Op::*;
    let ops = vec![
        SyncOverlapped,
        Plain { n: 1 },
        Plain { n: 3 },
        Txn { pid: 0, n: 3 },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        SyncOverlapped,
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Plain { n: 2 },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 3 },
        Plain { n: 3 },
        Txn { pid: 0, n: 1 },
        Plain { n: 3 },
        Marker {
            pid: 1,
            abort: false,
            bump: false,
        },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 2 },
        SyncOverlapped,
        Crash(CrashMode::DropUnsynced),
        DeleteRecords { eighths: 3 },
        Txn { pid: 0, n: 1 },
    ];
    run(&ops);
}

/// Found by the proptest: recovery must replay from the first segment's base, not from the
/// log start inside it, or it misses a transaction that started before the log start.
#[test]
fn transaction_started_before_the_log_start_in_the_same_segment() {
    use Op::*;
    let ops = vec![
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Marker {
            pid: 0,
            abort: false,
            bump: false,
        },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Txn { pid: 0, n: 1 },
        Crash(CrashMode::DropUnsynced),
        Txn { pid: 1, n: 1 },
        Txn { pid: 0, n: 1 },
        Crash(CrashMode::TearLastWrite { keep: 90 }),
        Txn { pid: 0, n: 1 },
        DeleteRecords { eighths: 8 },
        Txn { pid: 1, n: 1 },
    ];
    run(&ops);
}
