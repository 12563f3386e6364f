//! Record batch v2: header parsing, validation of produced bytes, and record-level scanning
//! (timestamps and offset deltas only) for timestamp lookups.
//!
//! Layout (big-endian): baseOffset i64 @0 | batchLength i32 @8 | partitionLeaderEpoch i32 @12 |
//! magic i8 @16 | crc u32 @17 | attributes i16 @21 | lastOffsetDelta i32 @23 | baseTimestamp i64
//! @27 | maxTimestamp i64 @35 | producerId i64 @43 | producerEpoch i16 @51 | baseSequence i32 @53
//! | recordCount i32 @57 | records @61. Total size = 12 + batchLength. The CRC-32C covers
//! attributes..end, so rewriting baseOffset (and partitionLeaderEpoch) keeps it valid.

use std::io::Read;
use std::ops::Range;

use crate::error::BatchError;

/// Byte offset of the batch length field.
pub(crate) const LENGTH_OFFSET: usize = 8;
/// Bytes before the length-counted part (baseOffset + batchLength).
pub(crate) const LOG_OVERHEAD: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
/// The CRC covers everything from the attributes field on.
const CRC_START: usize = 21;
/// Smallest encoded record: length, attributes, timestampDelta, offsetDelta, keyLength,
/// valueLength and header count need at least one byte each.
const MIN_RECORD_BYTES: usize = 7;
/// Attributes bit marking a batch whose baseTimestamp is the delete horizon.
pub(crate) const DELETE_HORIZON_FLAG: i16 = 0x40;
/// Decompressed bytes examined per batch at most (guards against decompression bombs).
pub(crate) const MAX_DECOMPRESSED_BYTES: u64 = 256 << 20;

/// The fixed 61-byte header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the log on append).
    pub base_offset: i64,
    /// Bytes after this field (total batch size minus 12).
    pub batch_length: i32,
    /// Leader epoch (not covered by the CRC).
    pub partition_leader_epoch: i32,
    /// Format version; 2 for record batches.
    pub magic: i8,
    /// CRC-32C of attributes..end.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (3), transactional (4), control (5).
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Size of the v2 header in bytes.
    pub const SIZE: usize = 61;

    /// Parses the header fields from the start of `buf` (no length or CRC validation).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < Self::SIZE {
            return Err(BatchError::Truncated {
                needed: Self::SIZE,
                available: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[MAGIC_OFFSET] as i8,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        })
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// Whether the batch is a control batch (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    /// Kafka's delete horizon (attributes bit 6, set by the log cleaner): when set,
    /// baseTimestamp holds the time after which the batch's tombstones may be removed, and
    /// record timestamps are still baseTimestamp + timestampDelta.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_FLAG != 0).then_some(self.base_timestamp)
    }

    /// Whether record timestamps were set by the broker (LogAppendTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & 0x7) as u8
    }

    /// Total size of the batch in bytes (header included), if the length field is sane.
    pub fn total_size(&self) -> Option<usize> {
        let len = usize::try_from(self.batch_length).ok()?;
        (len >= Self::SIZE - LOG_OVERHEAD).then_some(len + LOG_OVERHEAD)
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
}

/// Splits a produce request's `records` bytes into whole v2 batches, validating each:
/// - length bounds (at most `max_batch_bytes` per batch), magic == 2, CRC-32C over
///   attributes..end;
/// - record_count at least 1 and plausible for the bytes present (each record needs at least 7
///   bytes: of payload if uncompressed, of the 256 MiB decompression limit otherwise);
/// - last_offset_delta == record_count - 1;
/// - the records section (decompressed if needed, streaming, never allocating by a count from
///   the wire) holds exactly record_count well-formed records with offset deltas 0, 1, 2, ...
///
/// A batch that passes is safe to hand to a decoder that pre-allocates by record count. Empty
/// input yields no batches.
pub fn split_batches(
    records: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<Range<usize>>, BatchError> {
    Ok(split_produced(records, max_batch_bytes)?
        .into_iter()
        .map(|b| b.range)
        .collect())
}

/// One batch of a produce request, as [`split_produced`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedBatch {
    /// Where the batch lies in the request's `records` bytes.
    pub range: Range<usize>,
    /// Offset delta of the first record carrying the batch's maximum timestamp, learnt while
    /// validating the records, so that appending need not decode (or decompress) them again
    /// ([`PartitionLog::append_produced`](crate::PartitionLog::append_produced)). `None` when
    /// no record carries it (the header claims a larger maximum than any record has).
    pub max_timestamp_delta: Option<i32>,
    /// How many records have a null key (a compacted topic refuses them; see
    /// [`null_key_records`] for which).
    pub null_keys: u32,
}

/// [`split_batches`], also keeping what validation learnt about each batch.
pub fn split_produced(
    records: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<ProducedBatch>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let (size, learnt) = validate(&records[pos..], max_batch_bytes, Depth::Deep)?;
        out.push(ProducedBatch {
            range: pos..pos + size,
            max_timestamp_delta: learnt.max_timestamp_delta,
            null_keys: learnt.null_keys,
        });
        pos += size;
    }
    Ok(out)
}

/// How much of a batch [`validate_batch`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depth {
    /// Header, length, magic, CRC, counts; record framing of uncompressed batches.
    Shallow,
    /// Also decompresses and walks every record.
    Deep,
}

/// Validates the batch at the start of `buf` (which may continue past it) and returns its size.
pub(crate) fn validate_batch(
    buf: &[u8],
    max_batch_bytes: usize,
    depth: Depth,
) -> Result<usize, BatchError> {
    validate_inner(buf, max_batch_bytes, depth, false).map(|(size, _)| size)
}

/// [`validate_batch`] at [`Depth::Shallow`] for a batch already in a segment that the cleaner
/// may have rewritten (`cleaned`): records may have been removed, so recordCount may be
/// anything from 0 to lastOffsetDelta + 1 (Kafka keeps lastOffsetDelta, and keeps emptied
/// batches of idempotent producers). Length, magic, CRC and record framing are still checked.
pub(crate) fn validate_stored(
    buf: &[u8],
    max_batch_bytes: usize,
    cleaned: bool,
) -> Result<usize, BatchError> {
    validate_inner(buf, max_batch_bytes, Depth::Shallow, cleaned).map(|(size, _)| size)
}

/// What a deep validation learnt about a batch's records.
#[derive(Debug, Default, Clone, Copy)]
struct Learnt {
    max_timestamp_delta: Option<i32>,
    null_keys: u32,
}

fn validate(
    buf: &[u8],
    max_batch_bytes: usize,
    depth: Depth,
) -> Result<(usize, Learnt), BatchError> {
    validate_inner(buf, max_batch_bytes, depth, false)
}

/// [`validate_batch`], plus (at [`Depth::Deep`], which walks every record) the offset delta of
/// the first record carrying the batch's maximum timestamp and the count of null keys.
/// `cleaned` relaxes the record count as [`validate_stored`] describes.
fn validate_inner(
    buf: &[u8],
    max_batch_bytes: usize,
    depth: Depth,
    cleaned: bool,
) -> Result<(usize, Learnt), BatchError> {
    if buf.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD,
            available: buf.len(),
        });
    }
    let length = be_i32(buf, LENGTH_OFFSET);
    let size = usize::try_from(length)
        .ok()
        .filter(|&l| l >= BatchHeader::SIZE - LOG_OVERHEAD)
        .ok_or(BatchError::BadLength(length))?
        + LOG_OVERHEAD;
    if size > max_batch_bytes {
        return Err(BatchError::TooLarge {
            size,
            max: max_batch_bytes,
        });
    }
    if buf.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    let batch = &buf[..size];
    let h = BatchHeader::parse(batch)?;
    if h.magic != 2 {
        return Err(BatchError::BadMagic(h.magic));
    }
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if actual != h.crc {
        return Err(BatchError::CrcMismatch {
            expected: h.crc,
            actual,
        });
    }
    let payload = &batch[BatchHeader::SIZE..];
    let min_count = if cleaned { 0 } else { 1 };
    let count = usize::try_from(h.record_count)
        .ok()
        .filter(|&c| c >= min_count)
        .ok_or(BatchError::BadRecordCount(h.record_count))?;
    // Every record needs at least 7 bytes: in the payload itself if uncompressed, within the
    // decompression limit otherwise.
    let room = if h.compression() == 0 {
        payload.len() as u64
    } else {
        MAX_DECOMPRESSED_BYTES
    };
    if count as u64 * MIN_RECORD_BYTES as u64 > room {
        return Err(BatchError::BadRecordCount(h.record_count));
    }
    let delta_ok = if cleaned {
        h.last_offset_delta >= 0 && h.record_count <= h.last_offset_delta.saturating_add(1)
    } else {
        h.last_offset_delta == h.record_count - 1
    };
    if !delta_ok {
        return Err(BatchError::BadOffsetDelta {
            last_offset_delta: h.last_offset_delta,
            record_count: h.record_count,
        });
    }
    if h.compression() > 4 {
        return Err(BatchError::UnknownCompression(h.compression()));
    }
    let learnt = match depth {
        Depth::Shallow if h.compression() == 0 => {
            check_record_framing(payload, count)?;
            Learnt::default()
        }
        Depth::Shallow => Learnt::default(),
        Depth::Deep => check_records(batch)?,
    };
    Ok((size, learnt))
}

/// Walks every record (decompressing if needed): exactly record_count well-formed records with
/// offset deltas 0, 1, 2, ... and nothing after them. Learns the offset delta of the first
/// record carrying the header's maximum timestamp, if one does, and the count of null keys.
fn check_records(batch: &[u8]) -> Result<Learnt, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let mut next = h.base_offset;
    let mut bad_delta = false;
    let mut learnt = Learnt::default();
    walk_records(batch, true, |r| {
        bad_delta = r.offset != next;
        if learnt.max_timestamp_delta.is_none() && r.timestamp >= h.max_timestamp {
            learnt.max_timestamp_delta = i32::try_from(r.offset.wrapping_sub(h.base_offset)).ok();
        }
        learnt.null_keys += u32::from(r.null_key);
        next = next.wrapping_add(1);
        bad_delta
    })?;
    if bad_delta {
        return Err(BatchError::BadRecords(
            "record offset deltas are not 0, 1, 2, ...",
        ));
    }
    Ok(learnt)
}

/// Checks that `payload` is exactly `count` length-prefixed records.
fn check_record_framing(payload: &[u8], count: usize) -> Result<(), BatchError> {
    let mut rest = payload;
    for _ in 0..count {
        let len = read_varint(&mut rest).ok_or(BatchError::BadRecords("bad record length"))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l >= MIN_RECORD_BYTES - 1 && l <= rest.len())
            .ok_or(BatchError::BadRecords("record length out of bounds"))?;
        rest = &rest[len..];
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(BatchError::BadRecords("bytes after the last record"))
    }
}

/// Reads a zig-zag varint (Kafka `varint`, at most 5 bytes) from the front of `buf`.
fn read_varint(buf: &mut &[u8]) -> Option<i32> {
    let v = read_unsigned(buf, 5)?;
    let v = u32::try_from(v).ok()?;
    Some(((v >> 1) as i32) ^ -((v & 1) as i32))
}

fn read_unsigned(buf: &mut &[u8], max_bytes: usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Reads a zig-zag varint/varlong of at most `max_bytes` bytes from a reader.
fn read_zigzag<R: Read>(r: &mut R, max_bytes: usize) -> Result<i64, BatchError> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)
            .map_err(|_| BatchError::BadRecords("truncated varint"))?;
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    Err(BatchError::BadRecords("varint too long"))
}

/// Timestamp and absolute offset of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordStamp {
    pub offset: i64,
    pub timestamp: i64,
    /// The record's key is null (key length -1).
    pub null_key: bool,
}

/// Calls `f` with the timestamp and offset of each record of a whole stored batch, in order,
/// decompressing if needed, until `f` returns `true` (then returns that record). Never allocates
/// by a count or length read from the batch: record bodies are skipped by streaming.
pub(crate) fn find_record(
    batch: &[u8],
    f: impl FnMut(RecordStamp) -> bool,
) -> Result<Option<RecordStamp>, BatchError> {
    walk_records(batch, false, f)
}

/// [`find_record`]; with `exact`, a walk that reaches the last record also requires the
/// records section to end there.
fn walk_records(
    batch: &[u8],
    exact: bool,
    mut f: impl FnMut(RecordStamp) -> bool,
) -> Result<Option<RecordStamp>, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let payload = batch
        .get(BatchHeader::SIZE..)
        .ok_or(BatchError::Truncated {
            needed: BatchHeader::SIZE,
            available: batch.len(),
        })?;
    let count = usize::try_from(h.record_count).unwrap_or(0);
    match h.compression() {
        0 => scan_records(&h, payload, count, exact, &mut f),
        1 => scan_records(
            &h,
            flate2::read::GzDecoder::new(payload),
            count,
            exact,
            &mut f,
        ),
        2 => {
            let data = snappy_decompress(payload)?;
            scan_records(&h, &data[..], count, exact, &mut f)
        }
        3 => {
            let dec =
                lz4::Decoder::new(payload).map_err(|e| BatchError::Decompress(e.to_string()))?;
            scan_records(&h, dec, count, exact, &mut f)
        }
        4 => {
            // One decompression context per thread, reused: creating one (and its input
            // buffer) per batch cost 13x more than decompressing a 16 KiB batch.
            thread_local! {
                static ZSTD: std::cell::RefCell<zstd::zstd_safe::DCtx<'static>> =
                    std::cell::RefCell::new(zstd::zstd_safe::DCtx::create());
            }
            ZSTD.with(|ctx| {
                let mut ctx = ctx.borrow_mut();
                let dec = zstd::stream::read::Decoder::with_context(payload, &mut ctx);
                let out = scan_records(&h, dec, count, exact, &mut f);
                // A frame with a large window grows the context; don't keep that per thread.
                if ctx.sizeof() > MAX_KEPT_ZSTD_CONTEXT {
                    *ctx = zstd::zstd_safe::DCtx::create();
                }
                out
            })
        }
        c => Err(BatchError::UnknownCompression(c)),
    }
}

/// Largest zstd decompression context kept for reuse between batches (per thread).
const MAX_KEPT_ZSTD_CONTEXT: usize = 8 << 20;

fn scan_records<R: Read>(
    h: &BatchHeader,
    reader: R,
    count: usize,
    exact: bool,
    f: &mut impl FnMut(RecordStamp) -> bool,
) -> Result<Option<RecordStamp>, BatchError> {
    let mut r = reader.take(MAX_DECOMPRESSED_BYTES);
    for _ in 0..count {
        let len = read_zigzag(&mut r, 5)?;
        let len =
            u64::try_from(len).map_err(|_| BatchError::BadRecords("negative record length"))?;
        let mut body = (&mut r).take(len);
        let mut attr = [0u8; 1];
        body.read_exact(&mut attr)
            .map_err(|_| BatchError::BadRecords("truncated record"))?;
        let ts_delta = read_zigzag(&mut body, 10)?;
        let offset_delta = read_zigzag(&mut body, 5)?;
        let key_len = read_zigzag(&mut body, 5)?;
        // Skip the rest of the record (key, value, headers) without buffering it.
        let rest = body.limit();
        let skipped = std::io::copy(&mut body, &mut std::io::sink())
            .map_err(|e| BatchError::Decompress(e.to_string()))?;
        if skipped != rest {
            return Err(BatchError::BadRecords("truncated record"));
        }
        let timestamp = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.saturating_add(ts_delta)
        };
        let stamp = RecordStamp {
            offset: h.base_offset.saturating_add(offset_delta),
            timestamp,
            null_key: key_len < 0,
        };
        if f(stamp) {
            return Ok(Some(stamp));
        }
    }
    let mut extra = [0u8; 1];
    if exact
        && r.read(&mut extra)
            .map_err(|e| BatchError::Decompress(e.to_string()))?
            != 0
    {
        return Err(BatchError::BadRecords("bytes after the last record"));
    }
    Ok(None)
}

/// Snappy as Kafka producers write it: xerial framing (magic header then length-prefixed raw
/// blocks) or, without the magic, one raw snappy block. Output bounded by
/// [`MAX_DECOMPRESSED_BYTES`].
pub(crate) fn snappy_decompress(input: &[u8]) -> Result<Vec<u8>, BatchError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER: usize = 16;
    let err = |e: snap::Error| BatchError::Decompress(e.to_string());
    let limit = MAX_DECOMPRESSED_BYTES as usize;
    let mut out = Vec::new();
    let raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let n = snap::raw::decompress_len(block).map_err(err)?;
        if out.len().saturating_add(n) > limit {
            return Err(BatchError::Decompress("snappy output too large".into()));
        }
        let start = out.len();
        out.resize(start + n, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(err)?;
        Ok(())
    };
    if input.len() >= XERIAL_HEADER && input.starts_with(XERIAL_MAGIC) {
        let mut rest = &input[XERIAL_HEADER..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(BatchError::Decompress(
                    "truncated snappy block length".into(),
                ));
            }
            let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if n > rest.len() {
                return Err(BatchError::Decompress("truncated snappy block".into()));
            }
            raw_block(&rest[..n], &mut out)?;
            rest = &rest[n..];
        }
    } else {
        raw_block(input, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes `v` as a zig-zag varint.
    pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    /// Builds an uncompressed v2 batch of records with the given timestamps and value sizes.
    pub(crate) fn build_batch(
        producer: (i64, i16, i32),
        base_ts: i64,
        stamps: &[i64],
        value_len: usize,
    ) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, ts) in stamps.iter().enumerate() {
            let mut body = vec![0u8]; // attributes
            put_varint(&mut body, ts - base_ts);
            put_varint(&mut body, i as i64);
            put_varint(&mut body, -1); // null key
            put_varint(&mut body, value_len as i64);
            body.extend(std::iter::repeat_n(b'v', value_len));
            put_varint(&mut body, 0); // no headers
            put_varint(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let max_ts = stamps.iter().copied().max().unwrap_or(base_ts);
        let mut b = Vec::with_capacity(61 + records.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(stamps.len() as i32 - 1).to_be_bytes());
        b.extend_from_slice(&base_ts.to_be_bytes());
        b.extend_from_slice(&max_ts.to_be_bytes());
        b.extend_from_slice(&producer.0.to_be_bytes());
        b.extend_from_slice(&producer.1.to_be_bytes());
        b.extend_from_slice(&producer.2.to_be_bytes());
        b.extend_from_slice(&(stamps.len() as i32).to_be_bytes());
        b.extend_from_slice(&records);
        fix_crc(&mut b);
        b
    }

    pub(crate) fn fix_crc(b: &mut [u8]) {
        let crc = crc32c::crc32c(&b[CRC_START..]);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn header_round_trip_and_flags() {
        let b = build_batch((7, 3, 10), 1000, &[1000, 1005, 1002], 4);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1005);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (7, 3, 10)
        );
        assert_eq!(h.total_size(), Some(b.len()));
        assert!(!h.is_control() && !h.is_transactional());
        assert_eq!(h.compression(), 0);
        assert!(matches!(
            BatchHeader::parse(&b[..60]),
            Err(BatchError::Truncated { needed: 61, .. })
        ));
    }

    #[test]
    fn split_accepts_concatenated_batches() {
        let a = build_batch((-1, -1, -1), 1, &[1, 2], 10);
        let b = build_batch((-1, -1, -1), 5, &[5], 0);
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let r = split_batches(&all, 1 << 20).unwrap();
        assert_eq!(r, vec![0..a.len(), a.len()..a.len() + b.len()]);
        assert_eq!(split_batches(&[], 1 << 20).unwrap(), vec![]);
    }

    #[test]
    fn split_rejects_crc_mismatch() {
        let mut b = build_batch((-1, -1, -1), 1, &[1, 2], 10);
        let last = b.len() - 2;
        b[last] ^= 0x40;
        assert!(matches!(
            split_batches(&b, 1 << 20),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn split_rejects_truncated() {
        let b = build_batch((-1, -1, -1), 1, &[1, 2], 10);
        for cut in [1, 11, 12, 60, b.len() - 1] {
            assert!(
                matches!(
                    split_batches(&b[..cut], 1 << 20),
                    Err(BatchError::Truncated { .. })
                ),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn split_rejects_bad_magic_and_length_and_size() {
        let mut b = build_batch((-1, -1, -1), 1, &[1], 10);
        b[MAGIC_OFFSET] = 1;
        assert_eq!(split_batches(&b, 1 << 20), Err(BatchError::BadMagic(1)));
        let mut b = build_batch((-1, -1, -1), 1, &[1], 10);
        b[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(split_batches(&b, 1 << 20), Err(BatchError::BadLength(10)));
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(split_batches(&b, 1 << 20), Err(BatchError::BadLength(-5)));
        let b = build_batch((-1, -1, -1), 1, &[1], 100);
        assert!(matches!(
            split_batches(&b, 100),
            Err(BatchError::TooLarge { max: 100, .. })
        ));
    }

    #[test]
    fn split_rejects_huge_record_count_in_61_bytes() {
        let mut b = build_batch((-1, -1, -1), 1, &[1], 0);
        b.truncate(61);
        b[8..12].copy_from_slice(&49i32.to_be_bytes());
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
        fix_crc(&mut b);
        assert_eq!(
            split_batches(&b, 1 << 20),
            Err(BatchError::BadRecordCount(i32::MAX))
        );
        // Same claim with a compression codec set: still refused.
        b[21..23].copy_from_slice(&4i16.to_be_bytes());
        fix_crc(&mut b);
        assert_eq!(
            split_batches(&b, 1 << 20),
            Err(BatchError::BadRecordCount(i32::MAX))
        );
        // Zero and negative counts.
        for c in [0i32, -3] {
            b[21..23].copy_from_slice(&0i16.to_be_bytes());
            b[57..61].copy_from_slice(&c.to_be_bytes());
            fix_crc(&mut b);
            assert_eq!(
                split_batches(&b, 1 << 20),
                Err(BatchError::BadRecordCount(c))
            );
        }
    }

    #[test]
    fn split_rejects_bad_offset_delta_and_framing() {
        let mut b = build_batch((-1, -1, -1), 1, &[1, 2], 3);
        b[23..27].copy_from_slice(&5i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            split_batches(&b, 1 << 20),
            Err(BatchError::BadOffsetDelta { .. })
        ));
        // Claim 3 records while the payload holds 2 (plausible by size, wrong by framing).
        let mut b = build_batch((-1, -1, -1), 1, &[1, 2], 30);
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        b[23..27].copy_from_slice(&2i32.to_be_bytes());
        fix_crc(&mut b);
        assert!(matches!(
            split_batches(&b, 1 << 20),
            Err(BatchError::BadRecords(_))
        ));
    }

    fn encoded(codec: kafka_protocol::records::Compression, n: usize) -> Vec<u8> {
        use kafka_protocol::records::{
            Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1000 + i as i64,
                key: None,
                value: Some(bytes::Bytes::from_static(b"value value value")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    /// The per-thread zstd context is reused: a frame that fails half-way leaves nothing
    /// behind for the next batch, and interleaved good and bad batches decode as alone.
    #[test]
    fn zstd_context_reuse_survives_bad_frames() {
        use kafka_protocol::records::Compression;
        let good = encoded(Compression::Zstd, 5);
        let mut bad = good.clone();
        // Damage the compressed bytes past the frame header, keeping the CRC right.
        let mid = BatchHeader::SIZE + (good.len() - BatchHeader::SIZE) / 2;
        for b in &mut bad[mid..mid + 4] {
            *b ^= 0x5a;
        }
        fix_crc(&mut bad);
        let mut truncated_frame = good.clone();
        truncated_frame.truncate(good.len() - 3);
        let len = (truncated_frame.len() - LOG_OVERHEAD) as i32;
        truncated_frame[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut truncated_frame);
        for _ in 0..3 {
            assert!(split_batches(&bad, 1 << 20).is_err());
            let p = split_produced(&good, 1 << 20).unwrap();
            assert_eq!(
                p[0].max_timestamp_delta,
                Some(4),
                "the last record has the max"
            );
            assert!(split_batches(&truncated_frame, 1 << 20).is_err());
            assert_eq!(split_batches(&good, 1 << 20).unwrap().len(), 1);
        }
    }

    #[test]
    fn split_checks_compressed_records_deeply() {
        use kafka_protocol::records::Compression;
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = encoded(codec, 4);
            assert_eq!(split_batches(&b, 1 << 20).unwrap().len(), 1, "{codec:?}");
            // Claims one more record than the compressed payload holds.
            let mut more = b.clone();
            more[57..61].copy_from_slice(&5i32.to_be_bytes());
            more[23..27].copy_from_slice(&4i32.to_be_bytes());
            fix_crc(&mut more);
            assert!(
                matches!(
                    split_batches(&more, 1 << 20),
                    Err(BatchError::BadRecords(_))
                ),
                "{codec:?}"
            );
            // Claims one record less: bytes are left after the last record.
            let mut less = b.clone();
            less[57..61].copy_from_slice(&3i32.to_be_bytes());
            less[23..27].copy_from_slice(&2i32.to_be_bytes());
            fix_crc(&mut less);
            assert!(
                matches!(
                    split_batches(&less, 1 << 20),
                    Err(BatchError::BadRecords(_))
                ),
                "{codec:?}"
            );
            // Garbage instead of compressed data (valid CRC).
            let mut junk = b.clone();
            for x in &mut junk[61..] {
                *x = 0xa5;
            }
            fix_crc(&mut junk);
            assert!(split_batches(&junk, 1 << 20).is_err(), "{codec:?}");
            // Shallow validation (append, recovery) does not decompress.
            assert!(validate_batch(&junk, 1 << 20, Depth::Shallow).is_ok());
        }
    }

    #[test]
    fn split_rejects_wrong_offset_deltas() {
        // Two records whose offset deltas are 0 and 5.
        let mut b = build_batch((-1, -1, -1), 1, &[1, 2], 3);
        let first_len = b[61] as usize / 2 + 1;
        let second = 61 + first_len;
        assert_eq!(b[second + 3], 2); // zig-zag 1
        b[second + 3] = 10; // zig-zag 5
        fix_crc(&mut b);
        assert!(matches!(
            split_batches(&b, 1 << 20),
            Err(BatchError::BadRecords(_))
        ));
    }

    #[test]
    fn find_record_in_uncompressed_batch() {
        let mut b = build_batch((-1, -1, -1), 100, &[100, 90, 130, 120], 2);
        b[..8].copy_from_slice(&50i64.to_be_bytes());
        let hit = find_record(&b, |r| r.timestamp >= 110).unwrap().unwrap();
        assert_eq!(
            hit,
            RecordStamp {
                offset: 52,
                timestamp: 130,
                null_key: true,
            }
        );
        assert_eq!(find_record(&b, |r| r.timestamp >= 131).unwrap(), None);
    }

    #[test]
    fn varint_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i32::MAX as i64,
            i32::MIN as i64,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut s = &out[..];
            assert_eq!(read_varint(&mut s), Some(v as i32));
            assert_eq!(read_zigzag(&mut &out[..], 10).unwrap(), v);
        }
    }
}
