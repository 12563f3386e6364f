//! Just enough record-batch (magic 2) parsing to find the offset and timestamp of the first
//! record at or after an offset, for exact time lag.
//!
//! Written here rather than using `kafka_protocol::records` because that decoder trusts counts
//! from the wire (`reserve(record_count)`, header maps sized from a varint); this walker never
//! allocates from a wire count and checks every length against the bytes present.
//!
//! Batch layout: baseOffset i64 @0 | batchLength i32 @8 | partitionLeaderEpoch i32 @12 |
//! magic i8 @16 | crc u32 @17 (CRC-32C of bytes 21..end) | attributes i16 @21 |
//! lastOffsetDelta i32 @23 | baseTimestamp i64 @27 | maxTimestamp i64 @35 | producerId i64 @43 |
//! producerEpoch i16 @51 | baseSequence i32 @53 | recordCount i32 @57 | records @61.

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
const LOG_OVERHEAD: usize = 12;

/// Offset and timestamp of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordInfo {
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp, milliseconds since the Unix epoch (LogAppendTime when the batch
    /// says so, otherwise CreateTime).
    pub timestamp_ms: i64,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Finds the first data record with offset >= `target` in a Fetch response's `records` bytes.
///
/// A trailing partial batch (Fetch may cut the last one) is ignored. Control batches
/// (transaction markers) hold no data records and are skipped.
pub fn first_record_at_or_after(records: &[u8], target: i64) -> Result<Option<RecordInfo>, String> {
    let mut pos = 0usize;
    while records.len() - pos >= HEADER_LEN {
        let batch = &records[pos..];
        let base_offset = be_i64(batch, 0);
        let batch_len = be_i32(batch, 8);
        let total = usize::try_from(batch_len)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|t| *t >= HEADER_LEN)
            .ok_or_else(|| format!("batch at offset {base_offset}: invalid length {batch_len}"))?;
        if total > batch.len() {
            break; // partial trailing batch
        }
        let batch = &batch[..total];
        pos += total;
        let magic = batch[16] as i8;
        if magic != 2 {
            return Err(format!(
                "batch at offset {base_offset}: unsupported magic {magic}"
            ));
        }
        let crc = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
        if crc32c::crc32c(&batch[21..]) != crc {
            return Err(format!("batch at offset {base_offset}: CRC mismatch"));
        }
        let attributes = be_i16(batch, 21);
        let last_offset_delta = be_i32(batch, 23);
        if base_offset.saturating_add(i64::from(last_offset_delta)) < target {
            continue;
        }
        if attributes & 0x20 != 0 {
            continue; // control batch
        }
        let log_append_time = attributes & 0x08 != 0;
        let base_ts = be_i64(batch, 27);
        let max_ts = be_i64(batch, 35);
        let count = be_i32(batch, 57);
        let body = Bytes::copy_from_slice(&batch[HEADER_LEN..]);
        let body = decompress(attributes & 0x07, body)
            .map_err(|e| format!("batch at offset {base_offset}: {e}"))?;
        let found = walk_records(&body, count, |offset_delta, ts_delta| {
            let offset = base_offset.saturating_add(offset_delta);
            (offset >= target).then(|| RecordInfo {
                offset,
                timestamp_ms: if log_append_time {
                    max_ts
                } else {
                    base_ts.saturating_add(ts_delta)
                },
            })
        })
        .map_err(|e| format!("batch at offset {base_offset}: {e}"))?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn decompress(codec: i16, mut body: Bytes) -> Result<Bytes, String> {
    let take = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    let out = match codec {
        0 => return Ok(body),
        1 => <Gzip as Decompressor<Bytes>>::decompress(&mut body, take),
        2 => <Snappy as Decompressor<Bytes>>::decompress(&mut body, take),
        3 => <Lz4 as Decompressor<Bytes>>::decompress(&mut body, take),
        4 => <Zstd as Decompressor<Bytes>>::decompress(&mut body, take),
        other => return Err(format!("unknown compression codec {other}")),
    };
    out.map_err(|e| format!("decompression failed: {e:#}"))
}

/// Zig-zag varint (at most 10 bytes) starting at `*pos`.
fn varlong(b: &[u8], pos: &mut usize) -> Result<i64, String> {
    let mut raw: u64 = 0;
    for shift in 0..10 {
        let byte = *b.get(*pos).ok_or("record truncated inside a varint")?;
        *pos += 1;
        raw |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".to_string())
}

/// Calls `visit(offset_delta, timestamp_delta)` for each record until it returns `Some`.
/// Stops after `count` records or at the end of the bytes, whichever comes first: the count is
/// only a loop bound, never an allocation size.
fn walk_records<T>(
    body: &[u8],
    count: i32,
    mut visit: impl FnMut(i64, i64) -> Option<T>,
) -> Result<Option<T>, String> {
    let mut pos = 0usize;
    for _ in 0..count.max(0) {
        if pos >= body.len() {
            break;
        }
        let len = varlong(body, &mut pos)?;
        let start = pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|end| *end <= body.len())
            .ok_or_else(|| format!("record length {len} exceeds the batch"))?;
        let record = &body[..end];
        let mut p = start + 1; // attributes (unused)
        let ts_delta = varlong(record, &mut p)?;
        let offset_delta = varlong(record, &mut p)?;
        if let Some(found) = visit(offset_delta, ts_delta) {
            return Ok(Some(found));
        }
        pos = end;
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn zigzag(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }

    /// An uncompressed batch of `n` records with the given timestamps deltas (test helper, also
    /// used by the client tests' fake broker).
    pub(crate) fn batch(
        base_offset: i64,
        base_ts: i64,
        ts_deltas: &[i64],
        attributes: i16,
    ) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, d) in ts_deltas.iter().enumerate() {
            let mut r = vec![0u8];
            zigzag(*d, &mut r);
            zigzag(i as i64, &mut r);
            zigzag(-1, &mut r); // null key
            zigzag(1, &mut r);
            r.push(b'v');
            zigzag(0, &mut r); // no headers
            zigzag(r.len() as i64, &mut records);
            records.extend_from_slice(&r);
        }
        let max_ts = base_ts + ts_deltas.iter().copied().max().unwrap_or(0);
        let mut tail = Vec::new();
        tail.extend_from_slice(&attributes.to_be_bytes());
        tail.extend_from_slice(&((ts_deltas.len() as i32) - 1).to_be_bytes());
        tail.extend_from_slice(&base_ts.to_be_bytes());
        tail.extend_from_slice(&max_ts.to_be_bytes());
        tail.extend_from_slice(&(-1i64).to_be_bytes());
        tail.extend_from_slice(&(-1i16).to_be_bytes());
        tail.extend_from_slice(&(-1i32).to_be_bytes());
        tail.extend_from_slice(&(ts_deltas.len() as i32).to_be_bytes());
        tail.extend_from_slice(&records);
        let mut out = Vec::new();
        out.extend_from_slice(&base_offset.to_be_bytes());
        out.extend_from_slice(&((tail.len() + 9) as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.push(2);
        out.extend_from_slice(&crc32c::crc32c(&tail).to_be_bytes());
        out.extend_from_slice(&tail);
        out
    }

    #[test]
    fn finds_the_record_at_the_target_offset() {
        let mut bytes = batch(10, 1_000, &[0, 5, 9], 0);
        bytes.extend(batch(13, 2_000, &[0, 1], 0));
        let r = first_record_at_or_after(&bytes, 11).unwrap().unwrap();
        assert_eq!(
            r,
            RecordInfo {
                offset: 11,
                timestamp_ms: 1_005
            }
        );
        let r = first_record_at_or_after(&bytes, 14).unwrap().unwrap();
        assert_eq!(
            r,
            RecordInfo {
                offset: 14,
                timestamp_ms: 2_001
            }
        );
        // Before the first batch: the first record.
        let r = first_record_at_or_after(&bytes, 0).unwrap().unwrap();
        assert_eq!(r.offset, 10);
        assert_eq!(first_record_at_or_after(&bytes, 15).unwrap(), None);
    }

    #[test]
    fn log_append_time_uses_the_batch_max_timestamp() {
        let bytes = batch(0, 1_000, &[0, 7], 0x08);
        let r = first_record_at_or_after(&bytes, 0).unwrap().unwrap();
        assert_eq!(r.timestamp_ms, 1_007);
    }

    #[test]
    fn control_batches_and_partial_tails_are_skipped() {
        let mut bytes = batch(0, 1_000, &[0], 0x20);
        bytes.extend(batch(1, 3_000, &[0], 0));
        let partial = batch(2, 4_000, &[0], 0);
        bytes.extend_from_slice(&partial[..partial.len() - 3]);
        let r = first_record_at_or_after(&bytes, 0).unwrap().unwrap();
        assert_eq!(
            r,
            RecordInfo {
                offset: 1,
                timestamp_ms: 3_000
            }
        );
        assert_eq!(first_record_at_or_after(&bytes, 2).unwrap(), None);
    }

    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let mut bytes = batch(0, 1_000, &[0, 1], 0);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(
            first_record_at_or_after(&bytes, 0)
                .unwrap_err()
                .contains("CRC")
        );
        let mut bytes = batch(0, 1_000, &[0], 0);
        bytes[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(first_record_at_or_after(&bytes, 0).is_err());
    }

    #[test]
    fn huge_record_counts_do_not_allocate() {
        let mut bytes = batch(0, 1_000, &[0], 0);
        bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let r = first_record_at_or_after(&bytes, 0).unwrap().unwrap();
        assert_eq!(r.offset, 0);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), target in 0i64..100) {
            let _ = first_record_at_or_after(&data, target);
        }
    }
}
