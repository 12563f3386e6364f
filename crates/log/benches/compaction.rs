//! Cleaner throughput against a plain sequential read of the same segment bytes, in one run,
//! and the cleaner's memory. Not a divan bench: each phase is one long measured operation.
//!
//! `cargo bench -p waterline-log --bench compaction -- build DIR MIB VALUE_BYTES LIVE_PERCENT`
//! writes a compacted partition of MIB MiB (16 keyed records per batch, each key updated
//! 100 / LIVE_PERCENT times, keys spread evenly); `... -- clean DIR DEDUPE_MIB [ROUNDS]
//! [warm,cold]` reads every sealed segment sequentially (1 MiB reads), then runs one cleaning
//! pass over the same segments, per round and mode, printing both rates, the pass's stats and
//! the process's peak RSS (VmHWM from /proc/self/status). `cold` first drops the partition's
//! files from the page cache (fsync + `POSIX_FADV_DONTNEED`) before the read and again before
//! the pass; `warm` reads them once first. Passes are not installed, so rounds repeat the same
//! work; `WL_INSTALL=1` installs the last one (then rebuild the partition to rerun).
//! `WL_SEGMENT_MIB` sets the segment size (default 128).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use waterline_log::{
    CleanerConfig, CleanupPolicy, FsStorage, LogConfig, PartitionLog, Unthrottled,
};

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn batch(keys: &[u64], value: usize, ts: i64) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let key = format!("key-{k:010}");
        let mut body = vec![0u8];
        put_varint(&mut body, 0);
        put_varint(&mut body, i as i64);
        put_varint(&mut body, key.len() as i64);
        body.extend_from_slice(key.as_bytes());
        put_varint(&mut body, value as i64);
        body.extend(std::iter::repeat_n(b'x', value));
        put_varint(&mut body, 0);
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(keys.len() as i32 - 1).to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(keys.len() as i32).to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Segment size: 128 MiB, or `WL_SEGMENT_MIB`.
fn config() -> LogConfig {
    let seg_mib: u64 = std::env::var("WL_SEGMENT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    LogConfig {
        segment_bytes: seg_mib << 20,
        segment_ms: None,
        retention_ms: None,
        cleanup_policy: CleanupPolicy::Compact,
        max_batch_bytes: 64 << 20,
        ..LogConfig::default()
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Drops every file of the partition from the page cache (written back and fsynced first, as
/// `POSIX_FADV_DONTNEED` skips dirty pages), so the next reads come from the disk, as they do
/// for the old segments a cleaner usually cleans. (The VM's host may still cache them.)
fn evict(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).expect("ls") {
        let path = e.expect("entry").path();
        if !path.is_file() {
            continue;
        }
        let f = std::fs::File::open(&path).expect("open for eviction");
        f.sync_all().expect("fsync before eviction");
        nix::fcntl::posix_fadvise(
            &f,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .expect("fadvise");
    }
}

/// Reads the segments once (untimed) so the warm rows start from the page cache.
fn warm(dir: &std::path::Path, names: &[String]) {
    let mut buf = vec![0u8; 1 << 20];
    for n in names {
        let mut f = std::fs::File::open(dir.join(n)).expect("open segment");
        while f.read(&mut buf).expect("read") > 0 {}
    }
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let dir = PathBuf::from(arg(1, "/tmp/wl-compaction-bench"));
    let storage = Arc::new(FsStorage::new());
    match arg(0, "help").as_str() {
        "build" => {
            let mib: u64 = arg(2, "1024").parse().expect("MIB");
            let value: usize = arg(3, "100").parse().expect("VALUE_BYTES");
            let live: u64 = arg(4, "10").parse().expect("LIVE_PERCENT");
            let _ = std::fs::remove_dir_all(&dir);
            let mut log = PartitionLog::open(storage, dir.clone(), config(), 0).expect("open");
            let per_record = (value + 14 + 8) as u64;
            let records = (mib << 20) / per_record;
            let keys = (records * live / 100).max(1);
            let mut next = 0u64;
            let t = Instant::now();
            while log.log_end_offset() < records as i64 {
                let ks: Vec<u64> = (0..16).map(|i| (next + i) % keys).collect();
                next += 16;
                log.append(&batch(&ks, value, 1_700_000_000_000), 0)
                    .expect("append");
            }
            log.sync().expect("sync");
            log.close().expect("close");
            println!(
                "built {records} records, {keys} keys, {mib} MiB in {:.1}s",
                t.elapsed().as_secs_f64()
            );
        }
        "clean" => {
            // clean DIR DEDUPE_MIB [ROUNDS] [MODES]: each round runs, for each mode (`warm`,
            // `cold`; default both, alternating which goes first), the sequential read and then
            // one pass over the same segments. Passes are not installed (unless WL_INSTALL),
            // so every round cleans the same bytes.
            let dedupe: usize = arg(2, "128").parse().expect("DEDUPE_MIB");
            let rounds: usize = arg(3, "1").parse().expect("ROUNDS");
            let modes: Vec<String> = arg(4, "warm,cold").split(',').map(String::from).collect();
            let mut log = PartitionLog::open(storage, dir.clone(), config(), 0).expect("open");
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .expect("ls")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".log"))
                .collect();
            names.sort();
            names.pop(); // the active segment is never cleaned
            let cfg = CleanerConfig {
                dedupe_buffer_bytes: dedupe << 20,
                ..CleanerConfig::default()
            };
            // WL_INSTALL=1 installs the last pass (the log is then clean: rebuild it to rerun).
            let install = std::env::var_os("WL_INSTALL").is_some();
            let rss_before = peak_rss_kib();
            let mut ratios: Vec<(String, f64)> = Vec::new();
            for round in 0..rounds {
                let mut order = modes.clone();
                if round % 2 == 1 {
                    order.reverse();
                }
                for mode in &order {
                    let cold = match mode.as_str() {
                        "cold" => true,
                        "warm" => false,
                        m => panic!("mode {m}: warm or cold"),
                    };
                    if cold {
                        evict(&dir);
                    } else {
                        warm(&dir, &names);
                    }
                    let t = Instant::now();
                    let mut buf = vec![0u8; 1 << 20];
                    let mut read = 0u64;
                    for n in &names {
                        let mut f = std::fs::File::open(dir.join(n)).expect("open segment");
                        loop {
                            let k = f.read(&mut buf).expect("read");
                            if k == 0 {
                                break;
                            }
                            read += k as u64;
                        }
                    }
                    let read_s = t.elapsed().as_secs_f64();
                    if cold {
                        evict(&dir);
                    }
                    let last = install && round + 1 == rounds && Some(mode) == order.last();
                    let t = Instant::now();
                    let plan = log.forced_cleaning_plan(i64::MAX / 2).expect("plan");
                    let cleanable = plan.cleanable_bytes;
                    let res = plan.run(&cfg, &mut Unthrottled).expect("run");
                    let stats = res.stats.clone();
                    let clean_s = t.elapsed().as_secs_f64();
                    let installed = if last {
                        let t = Instant::now();
                        let out = log.install_cleaned(res).expect("install");
                        format!("install {:.3}s {out:?}", t.elapsed().as_secs_f64())
                    } else {
                        drop(res);
                        "not installed".to_string()
                    };
                    let read_rate = mib_s(read, read_s);
                    let clean_rate = mib_s(cleanable, clean_s);
                    let ratio = clean_rate / read_rate;
                    ratios.push((mode.clone(), ratio));
                    println!(
                        "round {round} {mode}: read {read} bytes in {read_s:.3}s = {read_rate:.0} MiB/s; cleaner {cleanable} bytes in {clean_s:.3}s = {clean_rate:.0} MiB/s ({:.0}% of read)",
                        100.0 * ratio
                    );
                    println!(
                        "  keys {} records {} kept {} read {} written {} map {} bytes / {} keys = {:.1} B/key, bitmap {} bytes, pass {:.3}s (map {:.3}s, fsync {:.3}s), {installed}",
                        stats.keys,
                        stats.records_read,
                        stats.records_kept,
                        stats.bytes_read,
                        stats.bytes_written,
                        stats.map_bytes,
                        stats.map_capacity,
                        stats.map_bytes as f64 / stats.map_capacity as f64,
                        stats.bitmap_bytes,
                        stats.duration.as_secs_f64(),
                        stats.map_duration.as_secs_f64(),
                        stats.sync_duration.as_secs_f64(),
                    );
                }
            }
            for mode in &modes {
                let mut r: Vec<f64> = ratios
                    .iter()
                    .filter(|(m, _)| m == mode)
                    .map(|(_, r)| *r)
                    .collect();
                r.sort_by(f64::total_cmp);
                let list: Vec<String> = r.iter().map(|x| format!("{:.0}%", x * 100.0)).collect();
                println!(
                    "{mode}: median cleaner/read {:.0}% over {} rounds ({})",
                    100.0 * r[r.len() / 2],
                    r.len(),
                    list.join(" ")
                );
            }
            println!(
                "peak RSS (VmHWM): {} MiB before the passes, {} MiB after",
                rss_before / 1024,
                peak_rss_kib() / 1024
            );
            log.close().expect("close");
        }
        "map" => {
            // Offset map alone: N distinct 14-byte keys put 10 times each, then looked up.
            let n: u64 = arg(1, "1000000").parse().expect("N");
            let budget: usize = arg(2, "128").parse().expect("MIB");
            let keys: Vec<String> = (0..n).map(|k| format!("key-{k:010}")).collect();
            let t = Instant::now();
            let mut map = waterline_log::OffsetMap::new(budget << 20, 0.9);
            let mut off = 0;
            for _ in 0..10 {
                for k in &keys {
                    map.put(k.as_bytes(), off);
                    off += 1;
                }
            }
            let put = t.elapsed().as_secs_f64();
            let huge = std::fs::read_to_string("/proc/self/smaps_rollup")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("AnonHugePages:"))
                        .map(String::from)
                })
                .unwrap_or_default();
            println!("{huge}");
            let t = Instant::now();
            let mut found = 0u64;
            for k in &keys {
                found += u64::from(map.get(k.as_bytes()).is_some());
            }
            let get = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let h = std::hash::RandomState::new();
            let mut acc = 0u64;
            for k in &keys {
                acc ^= std::hash::BuildHasher::hash_one(&h, k.as_bytes());
            }
            let hash = t.elapsed().as_secs_f64();
            println!(
                "{n} keys, {budget} MiB: put {:.0} ns, get {:.0} ns, one SipHash {:.0} ns ({found} {acc})",
                put * 1e9 / (10 * n) as f64,
                get * 1e9 / n as f64,
                hash * 1e9 / n as f64
            );
        }
        _ => eprintln!(
            "usage: compaction build DIR MIB VALUE_BYTES LIVE_PERCENT | clean DIR DEDUPE_MIB [ROUNDS] [warm,cold]"
        ),
    }
}
