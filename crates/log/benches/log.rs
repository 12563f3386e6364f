//! Append+sync throughput on FsStorage vs raw sequential write+fsync of the same bytes, and read
//! throughput from the page cache. 1 KiB records, 16 records per batch.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use waterline_log::{FsStorage, LogConfig, PartitionLog};

fn main() {
    divan::main();
}

const RECORDS: usize = 16;
const VALUE: usize = 1024;
/// Batches written per benchmark iteration (16 MiB of values).
const BATCHES: usize = 1024;

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

/// An uncompressed v2 batch of 16 records with 1 KiB values.
fn batch() -> Vec<u8> {
    let mut records = Vec::new();
    for i in 0..RECORDS {
        let mut body = vec![0u8];
        put_varint(&mut body, 0);
        put_varint(&mut body, i as i64);
        put_varint(&mut body, -1);
        put_varint(&mut body, VALUE as i64);
        body.extend(std::iter::repeat_n(b'x', VALUE));
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
    b.extend_from_slice(&(RECORDS as i32 - 1).to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&(RECORDS as i32).to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn total_bytes() -> usize {
    batch().len() * BATCHES
}

/// Appends 1024 batches to a fresh log, fsyncing (group commit) every `per_sync` batches.
/// Opening the log (directory creation and its fsyncs) is setup, not measured.
#[divan::bench(args = [1, 16, 1024], sample_count = 5, sample_size = 1)]
fn append_sync(bencher: Bencher, per_sync: usize) {
    let b = batch();
    bencher
        .counter(BytesCount::new(total_bytes()))
        .with_inputs(|| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let log = PartitionLog::open(
                Arc::new(FsStorage::new()),
                tmp.path().join("t-0"),
                LogConfig::default(),
                0,
            )
            .expect("open");
            (tmp, log)
        })
        .bench_local_values(|(tmp, mut log)| {
            for i in 0..BATCHES {
                log.append(&b, 0).expect("append");
                if (i + 1) % per_sync == 0 {
                    log.sync().expect("sync");
                }
            }
            (tmp, log)
        });
}

/// The same bytes written sequentially to one file with fsync every `per_sync` batches.
/// Creating the file is setup, not measured.
#[divan::bench(args = [1, 16, 1024], sample_count = 5, sample_size = 1)]
fn raw_write_fsync(bencher: Bencher, per_sync: usize) {
    let b = batch();
    bencher
        .counter(BytesCount::new(total_bytes()))
        .with_inputs(|| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(tmp.path().join("raw"))
                .expect("open");
            (tmp, f)
        })
        .bench_local_values(|(tmp, mut f)| {
            for i in 0..BATCHES {
                f.write_all(&b).expect("write");
                if (i + 1) % per_sync == 0 {
                    f.sync_data().expect("fsync");
                }
            }
            (tmp, f)
        });
}

/// Reads the whole log (16 MiB, page cache warm) in 1 MiB fetches, as a consumer would.
#[divan::bench(sample_count = 10)]
fn read_page_cache(bencher: Bencher) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let b = batch();
    let mut log = PartitionLog::open(
        Arc::new(FsStorage::new()),
        tmp.path().join("t-0"),
        LogConfig::default(),
        0,
    )
    .expect("open");
    for _ in 0..BATCHES {
        log.append(&b, 0).expect("append");
    }
    log.sync().expect("sync");
    let end = log.high_watermark();
    bencher
        .counter(BytesCount::new(total_bytes()))
        .bench_local(|| {
            let mut off = 0;
            while off < end {
                let got = log.read(off, 1 << 20, end).expect("read");
                let last =
                    waterline_log::BatchHeader::parse(&got[got.len() - b.len()..]).expect("hdr");
                off = last.last_offset() + 1;
                black_box(&got);
            }
        });
}

/// A produce request's path through the log for one compressed batch of 16 × 1 KiB records
/// (text-like values, so the codec has work to do): `split_produced` validates it (decoding
/// every record once), then the batch is appended. `hinted = false` appends with `append`,
/// which decodes the records a second time to index the maximum timestamp whenever a batch
/// raises it, as every batch of a producer with a clock does (the path before
/// `append_produced`); `true` passes what validation found. In memory (MemStorage), no sync:
/// CPU only. Timestamps rise from batch to batch, as from a real producer.
#[divan::bench(
    args = [("lz4", false), ("lz4", true), ("zstd", false), ("zstd", true)],
    sample_count = 20,
    sample_size = 64
)]
fn produce_compressed(bencher: Bencher, (codec, hinted): (&str, bool)) {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use waterline_log::{MemStorage, split_produced};
    let compression = match codec {
        "lz4" => Compression::Lz4,
        _ => Compression::Zstd,
    };
    let request = |batch: i64| {
        let records: Vec<Record> = (0..RECORDS as i64)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: -1,
                timestamp: 1_700_000_000_000 + batch * 100 + i,
                key: None,
                value: Some(bytes::Bytes::from(
                    (0..VALUE)
                        .map(|j| b"order shipped to warehouse "[(j * 7 + i as usize) % 27])
                        .collect::<Vec<u8>>(),
                )),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        buf.to_vec()
    };
    // More batches than divan runs, so each one raises the maximum timestamp.
    let requests: Vec<Vec<u8>> = (0..2048).map(request).collect();
    let mut next = requests.iter().cycle();
    let mut log = PartitionLog::open(
        Arc::new(MemStorage::new()),
        "bench-0".into(),
        LogConfig::default(),
        0,
    )
    .expect("open");
    bencher
        .counter(BytesCount::new(RECORDS * VALUE))
        .bench_local(|| {
            let request = next.next().expect("cycle");
            let produced = split_produced(black_box(request), 1 << 20).expect("valid");
            for b in &produced {
                let bytes = &request[b.range.clone()];
                if hinted {
                    log.append_produced(bytes, b.max_timestamp_delta, 0)
                } else {
                    log.append(bytes, 0)
                }
                .expect("append");
            }
        });
}
