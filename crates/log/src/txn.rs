//! Transactions in one partition: the public types the broker sees ([`ControlType`],
//! [`AbortedTxn`], [`ProducerInfo`]), transaction markers (control batches) and the
//! aborted-transaction index entries (`{base}.txnindex`, see the crate's FORMAT section).

use crate::batch::{BatchHeader, LOG_OVERHEAD};

/// Type of a transaction marker (control record key: version i16 = 0, type i16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlType {
    /// The transaction's records are discarded (type 0).
    Abort,
    /// The transaction's records become visible to read_committed consumers (type 1).
    Commit,
}

impl ControlType {
    fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
        }
    }
}

/// One aborted transaction, as Fetch returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// Producer id of the transaction.
    pub producer_id: i64,
    /// Offset of the transaction's first batch in this partition.
    pub first_offset: i64,
}

/// A producer's state in one partition (for DescribeProducers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerInfo {
    /// Producer id.
    pub producer_id: i64,
    /// Current epoch.
    pub producer_epoch: i16,
    /// Sequence of the last record appended with the current epoch, -1 if none.
    pub last_sequence: i32,
    /// Max timestamp of the producer's last batch (data or marker), -1 if unknown.
    pub last_timestamp: i64,
    /// Coordinator epoch of the producer's last marker, -1 if none.
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction in this partition, -1 if none.
    pub current_txn_start_offset: i64,
}

/// A marker's content: what it ends and which coordinator wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Marker {
    pub control: ControlType,
    pub coordinator_epoch: i32,
}

/// A transaction ended by a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the marker.
    pub last_offset: i64,
    pub aborted: bool,
}

/// One entry of the aborted-transaction index (Kafka's `AbortedTxn`): the transaction's
/// offsets and the last stable offset right after its marker (the first offset of the oldest
/// other open transaction, else `last_offset + 1`), which lets a search stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedEntry {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

/// Size of one `.txnindex` entry: version u16 | producerId i64 | firstOffset i64 |
/// lastOffset i64 | lastStableOffset i64 | CRC-32C u32 of the preceding 34 bytes.
pub(crate) const TXN_ENTRY: usize = 38;
const TXN_ENTRY_VERSION: u16 = 0;

pub(crate) fn encode_entry(e: &AbortedEntry, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&TXN_ENTRY_VERSION.to_be_bytes());
    out.extend_from_slice(&e.producer_id.to_be_bytes());
    out.extend_from_slice(&e.first_offset.to_be_bytes());
    out.extend_from_slice(&e.last_offset.to_be_bytes());
    out.extend_from_slice(&e.last_stable_offset.to_be_bytes());
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

pub(crate) fn encode_entries(entries: &[AbortedEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TXN_ENTRY);
    for e in entries {
        encode_entry(e, &mut out);
    }
    out
}

/// Decodes a `.txnindex` file: the valid entries before the first bad one, and the byte
/// position and reason of that bad one (a torn tail, a CRC mismatch, an unknown version or
/// an entry that is inconsistent or out of order), if any.
pub(crate) fn decode_entries(b: &[u8]) -> (Vec<AbortedEntry>, Option<(u64, &'static str)>) {
    let mut out: Vec<AbortedEntry> = Vec::with_capacity(b.len() / TXN_ENTRY);
    for (i, c) in b.chunks(TXN_ENTRY).enumerate() {
        let pos = (i * TXN_ENTRY) as u64;
        if c.len() < TXN_ENTRY {
            return (out, Some((pos, "torn entry")));
        }
        let crc = u32::from_be_bytes([c[34], c[35], c[36], c[37]]);
        if crc != crc32c::crc32c(&c[..34]) {
            return (out, Some((pos, "entry CRC mismatch")));
        }
        if u16::from_be_bytes([c[0], c[1]]) != TXN_ENTRY_VERSION {
            return (out, Some((pos, "unknown entry version")));
        }
        let at = |k: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&c[k..k + 8]);
            i64::from_be_bytes(a)
        };
        let e = AbortedEntry {
            producer_id: at(2),
            first_offset: at(10),
            last_offset: at(18),
            last_stable_offset: at(26),
        };
        let sane = e.producer_id >= 0
            && 0 <= e.first_offset
            && e.first_offset < e.last_offset
            && e.last_stable_offset >= 0
            && out.last().is_none_or(|p| p.last_offset < e.last_offset);
        if !sane {
            return (out, Some((pos, "inconsistent entry")));
        }
        out.push(e);
    }
    (out, None)
}

/// Attributes of a marker batch: transactional (bit 4) | control (bit 5), no compression,
/// create time.
const MARKER_ATTRIBUTES: i16 = 0x30;

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

fn read_varint(buf: &mut &[u8], max_bytes: usize) -> Option<i64> {
    let mut v: u64 = 0;
    for i in 0..max_bytes {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

/// A control batch holding one marker record (Kafka's `EndTransactionMarker`): key = version
/// i16 0 | type i16, value = version i16 0 | coordinatorEpoch i32; base offset 0 (the log
/// assigns it), partitionLeaderEpoch -1, base sequence -1, both timestamps `now_ms`.
pub(crate) fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    now_ms: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.control.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut body = vec![0u8]; // record attributes
    put_varint(&mut body, 0); // timestampDelta
    put_varint(&mut body, 0); // offsetDelta
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0); // headers
    let mut rec = Vec::with_capacity(body.len() + 1);
    put_varint(&mut rec, body.len() as i64);
    rec.extend_from_slice(&body);

    let mut b = Vec::with_capacity(BatchHeader::SIZE + rec.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((BatchHeader::SIZE - LOG_OVERHEAD + rec.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&MARKER_ATTRIBUTES.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
    b.extend_from_slice(&now_ms.to_be_bytes());
    b.extend_from_slice(&now_ms.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&rec);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Reads the marker of a stored control batch; None if it is not a COMMIT/ABORT marker the
/// log can read (compressed, no record, key or value malformed, unknown type), which Kafka
/// ignores as well.
pub(crate) fn parse_marker(batch: &[u8]) -> Option<Marker> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() || h.compression() != 0 || h.record_count < 1 {
        return None;
    }
    let mut rest = batch.get(BatchHeader::SIZE..)?;
    let len = usize::try_from(read_varint(&mut rest, 5)?).ok()?;
    let mut r = rest.get(..len)?;
    r = r.get(1..)?; // attributes
    read_varint(&mut r, 10)?; // timestampDelta
    read_varint(&mut r, 5)?; // offsetDelta
    let klen = usize::try_from(read_varint(&mut r, 5)?).ok()?;
    let key = r.get(..klen)?;
    r = &r[klen..];
    if key.len() < 4 || i16::from_be_bytes([key[0], key[1]]) < 0 {
        return None;
    }
    let control = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlType::Abort,
        1 => ControlType::Commit,
        _ => return None,
    };
    let vlen = usize::try_from(read_varint(&mut r, 5)?).ok()?;
    let value = r.get(..vlen)?;
    let coordinator_epoch = if value.len() >= 6 {
        i32::from_be_bytes([value[2], value[3], value[4], value[5]])
    } else {
        -1
    };
    Some(Marker {
        control,
        coordinator_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Depth, validate_batch};

    #[test]
    fn marker_round_trip_is_a_valid_control_batch() {
        for control in [ControlType::Abort, ControlType::Commit] {
            let m = Marker {
                control,
                coordinator_epoch: 7,
            };
            let b = encode_marker(42, 3, m, 1_700_000_000_000);
            assert_eq!(validate_batch(&b, 1 << 20, Depth::Deep).unwrap(), b.len());
            let h = BatchHeader::parse(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(parse_marker(&b), Some(m));
            // The record key is version 0 + type, as Kafka encodes it.
            let key_at = BatchHeader::SIZE + 5;
            assert_eq!(&b[key_at..key_at + 4], &[0, 0, 0, control.code() as u8]);
        }
    }

    #[test]
    fn entries_round_trip_and_damage_is_located() {
        let es = vec![
            AbortedEntry {
                producer_id: 1,
                first_offset: 3,
                last_offset: 9,
                last_stable_offset: 10,
            },
            AbortedEntry {
                producer_id: 2,
                first_offset: 5,
                last_offset: 12,
                last_stable_offset: 8,
            },
        ];
        let b = encode_entries(&es);
        assert_eq!(b.len(), 2 * TXN_ENTRY);
        assert_eq!(decode_entries(&b), (es.clone(), None));
        assert_eq!(
            decode_entries(&b[..TXN_ENTRY + 5]),
            (es[..1].to_vec(), Some((TXN_ENTRY as u64, "torn entry")))
        );
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x10;
            let (got, bad) = decode_entries(&d);
            assert_eq!(got.len(), i / TXN_ENTRY, "flip at {i}");
            assert_eq!(bad.map(|b| b.0), Some((i / TXN_ENTRY * TXN_ENTRY) as u64));
        }
    }
}
