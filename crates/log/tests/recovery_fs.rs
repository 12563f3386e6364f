//! Recovery on the real file system with a deliberately corrupted tail.

mod common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::records::Compression;
use waterline_log::{FsStorage, LogConfig, PartitionLog};

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionLog {
    PartitionLog::open(Arc::new(FsStorage::new()), dir.to_path_buf(), config(), 0).expect("open")
}

/// Appends `n` batches of 4 records, syncs, and returns (base, stored bytes) per batch.
fn fill(log: &mut PartitionLog, n: usize) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let codec = if i % 3 == 0 {
            Compression::Lz4
        } else {
            Compression::None
        };
        let b = common::batch(&[i as i64; 4], 100, codec);
        let o = log.append(&b, 0).expect("append");
        out.push((o.base_offset, common::stored(&b, o.base_offset)));
    }
    log.sync().expect("sync");
    out
}

fn active_log(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

fn read_all(log: &PartitionLog) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX, log.log_end_offset())
        .expect("read")
        .to_vec()
}

#[test]
fn flipped_byte_in_last_batch_truncates_there() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = open(&dir);
    let batches = fill(&mut log, 40);
    drop(log); // unclean stop: no clean-shutdown marker
    let path = active_log(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = &batches[batches.len() - 1];
    let at = bytes.len() - 10; // inside the last batch's records
    bytes[at] ^= 0x5a;
    bytes.extend_from_slice(b"garbage after the end of the log");
    std::fs::write(&path, &bytes).unwrap();
    // Garbage in the active segment's index too.
    let mut idx = OpenOptions::new()
        .append(true)
        .open(path.with_extension("index"))
        .unwrap();
    idx.write_all(&[0xff; 13]).unwrap();

    let log = open(&dir);
    assert_eq!(log.log_end_offset(), last.0);
    let want: Vec<u8> = batches[..batches.len() - 1]
        .iter()
        .flat_map(|b| b.1.clone())
        .collect();
    assert_eq!(read_all(&log), want);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        bytes.len() - 32 - last.1.len()
    );
    for (base, b) in &batches[..batches.len() - 1] {
        assert_eq!(
            &log.read(base + 3, 1, log.log_end_offset()).unwrap()[..],
            &b[..]
        );
    }
    log.close().unwrap();
}

#[test]
fn appended_garbage_is_cut_without_losing_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("t-0");
    let mut log = open(&dir);
    let batches = fill(&mut log, 25);
    drop(log);
    let path = active_log(&dir);
    // A plausible-looking header: right length field, wrong CRC.
    let mut garbage = batches[0].1.clone();
    garbage[..8].copy_from_slice(&100i64.to_be_bytes());
    garbage[30] ^= 1;
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&garbage[..garbage.len() / 2]).unwrap();
    drop(f);
    let mut log = open(&dir);
    assert_eq!(log.log_end_offset(), 100);
    let want: Vec<u8> = batches.iter().flat_map(|b| b.1.clone()).collect();
    assert_eq!(read_all(&log), want);
    // The log keeps working after recovery and survives a clean restart.
    let more = fill(&mut log, 3);
    log.close().unwrap();
    let log = open(&dir);
    assert_eq!(log.log_end_offset(), 112);
    assert_eq!(
        &log.read(100, usize::MAX, 112).unwrap()[..],
        &more.concat_bytes()[..]
    );
}

trait ConcatBytes {
    fn concat_bytes(&self) -> Vec<u8>;
}

impl ConcatBytes for Vec<(i64, Vec<u8>)> {
    fn concat_bytes(&self) -> Vec<u8> {
        self.iter().flat_map(|b| b.1.clone()).collect()
    }
}
