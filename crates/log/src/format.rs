//! Encoding of the small durable files and index entries (see the FORMAT section of the crate
//! docs). Every decoder bounds lengths by the bytes present and never panics.

use std::collections::VecDeque;

use crate::producer::{BatchMeta, MAX_BATCHES, ProducerEntry, ProducerState};

/// Offset index entry size: relative offset u32 | position u32.
pub(crate) const INDEX_ENTRY: usize = 8;
/// Time index entry size: timestamp i64 | relative offset u32.
pub(crate) const TIME_ENTRY: usize = 12;
/// Checkpoint/marker file size: magic 4 | version u32 | value i64 | crc u32.
pub(crate) const CHECKPOINT_LEN: usize = 20;

pub(crate) const MAGIC_LOG_START: &[u8; 4] = b"WLLS";
pub(crate) const MAGIC_RECOVERY: &[u8; 4] = b"WLRP";
pub(crate) const MAGIC_CLEAN: &[u8; 4] = b"WLCS";
pub(crate) const MAGIC_CLEANER: &[u8; 4] = b"WLCO";
pub(crate) const MAGIC_HORIZON: &[u8; 4] = b"WLDH";
const MAGIC_SWAP: &[u8; 4] = b"WLSW";
const MAGIC_SNAPSHOT: &[u8; 4] = b"WLPS";
const VERSION: u32 = 1;
/// Snapshot version 2 adds coordinator epoch, last timestamp and open transaction per producer.
const SNAPSHOT_VERSION: u32 = 2;

/// Snapshot v1 bytes per producer before its batches: id i64 | epoch i16 | count u8.
const PRODUCER_FIXED_V1: usize = 11;
/// Snapshot v2: id i64 | epoch i16 | coordinatorEpoch i32 | lastTimestamp i64 |
/// txnFirstOffset i64 | count u8.
const PRODUCER_FIXED_V2: usize = 31;

pub(crate) fn encode_checkpoint(magic: &[u8; 4], value: i64) -> [u8; CHECKPOINT_LEN] {
    let mut b = [0u8; CHECKPOINT_LEN];
    b[..4].copy_from_slice(magic);
    b[4..8].copy_from_slice(&VERSION.to_be_bytes());
    b[8..16].copy_from_slice(&value.to_be_bytes());
    let crc = crc32c::crc32c(&b[..16]);
    b[16..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The value of a checkpoint file, or None if it is torn, foreign or of another version.
pub(crate) fn decode_checkpoint(magic: &[u8; 4], b: &[u8]) -> Option<i64> {
    if b.len() != CHECKPOINT_LEN || &b[..4] != magic || b[4..8] != VERSION.to_be_bytes() {
        return None;
    }
    let crc = u32::from_be_bytes(b[16..20].try_into().ok()?);
    (crc == crc32c::crc32c(&b[..16]))
        .then(|| i64::from_be_bytes(b[8..16].try_into().unwrap_or_default()))
}

/// The `clean-swap` manifest: the groups (base, end) a committed cleaning pass replaces.
pub(crate) fn encode_swap(groups: &[(i64, i64)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + groups.len() * 16);
    b.extend_from_slice(MAGIC_SWAP);
    b.extend_from_slice(&VERSION.to_be_bytes());
    b.extend_from_slice(&(groups.len() as u32).to_be_bytes());
    for &(base, end) in groups {
        b.extend_from_slice(&base.to_be_bytes());
        b.extend_from_slice(&end.to_be_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// Decodes a `clean-swap` manifest; None if torn, foreign or inconsistent.
pub(crate) fn decode_swap(b: &[u8]) -> Option<Vec<(i64, i64)>> {
    if b.len() < 16 || &b[..4] != MAGIC_SWAP || b[4..8] != VERSION.to_be_bytes() {
        return None;
    }
    let n = u32::from_be_bytes(b[8..12].try_into().ok()?) as usize;
    if b.len() != 16 + n.checked_mul(16)? {
        return None;
    }
    let body = &b[..b.len() - 4];
    let crc = u32::from_be_bytes(b[b.len() - 4..].try_into().ok()?);
    if crc != crc32c::crc32c(body) {
        return None;
    }
    let groups: Vec<(i64, i64)> = body[12..]
        .chunks_exact(16)
        .map(|c| {
            (
                i64::from_be_bytes(c[..8].try_into().unwrap_or_default()),
                i64::from_be_bytes(c[8..].try_into().unwrap_or_default()),
            )
        })
        .collect();
    groups
        .iter()
        .all(|&(base, end)| 0 <= base && base < end)
        .then_some(groups)
}

pub(crate) fn encode_index(entries: &[(u32, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * INDEX_ENTRY);
    for &(rel, pos) in entries {
        out.extend_from_slice(&rel.to_be_bytes());
        out.extend_from_slice(&pos.to_be_bytes());
    }
    out
}

/// Decodes offset index entries; None if the length is not a whole number of entries.
pub(crate) fn decode_index(b: &[u8]) -> Option<Vec<(u32, u32)>> {
    if !b.len().is_multiple_of(INDEX_ENTRY) {
        return None;
    }
    Some(
        b.chunks_exact(INDEX_ENTRY)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect(),
    )
}

pub(crate) fn encode_time_index(entries: &[(i64, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * TIME_ENTRY);
    for &(ts, rel) in entries {
        out.extend_from_slice(&ts.to_be_bytes());
        out.extend_from_slice(&rel.to_be_bytes());
    }
    out
}

/// Decodes time index entries; None if the length is not a whole number of entries.
pub(crate) fn decode_time_index(b: &[u8]) -> Option<Vec<(i64, u32)>> {
    if !b.len().is_multiple_of(TIME_ENTRY) {
        return None;
    }
    Some(
        b.chunks_exact(TIME_ENTRY)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                (
                    i64::from_be_bytes(ts),
                    u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                )
            })
            .collect(),
    )
}

/// Encodes a producer-state snapshot (version 2).
pub(crate) fn encode_snapshot(offset: i64, state: &ProducerState) -> Vec<u8> {
    encode_snapshot_version(offset, state, SNAPSHOT_VERSION)
}

/// Encodes a snapshot in `version` 1 (no transaction state; for compatibility tests) or 2.
pub(crate) fn encode_snapshot_version(offset: i64, state: &ProducerState, version: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(MAGIC_SNAPSHOT);
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&(state.producers.len() as u32).to_be_bytes());
    for (&pid, e) in &state.producers {
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&e.epoch.to_be_bytes());
        if version >= 2 {
            b.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            b.extend_from_slice(&e.last_timestamp.to_be_bytes());
            b.extend_from_slice(&e.txn_first.unwrap_or(-1).to_be_bytes());
        }
        b.push(e.batches.len() as u8);
        for m in &e.batches {
            b.extend_from_slice(&m.first_seq.to_be_bytes());
            b.extend_from_slice(&m.last_seq.to_be_bytes());
            b.extend_from_slice(&m.first_offset.to_be_bytes());
            b.extend_from_slice(&m.last_offset.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// A cursor that fails instead of reading past the end.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

/// Decodes a snapshot (version 1 or 2) into (offset, state); None if torn, corrupt or of
/// another version. A version 1 snapshot has no transaction state: its producers have no open
/// transaction (the broker refused transactional batches when it wrote them), coordinator
/// epoch and last timestamp -1.
pub(crate) fn decode_snapshot(b: &[u8]) -> Option<(i64, ProducerState)> {
    let (body, crc) = b.split_last_chunk::<4>()?;
    if u32::from_be_bytes(*crc) != crc32c::crc32c(body) {
        return None;
    }
    let mut c = Cursor(body);
    if &c.take::<4>()? != MAGIC_SNAPSHOT {
        return None;
    }
    let version = u32::from_be_bytes(c.take()?);
    let fixed = match version {
        1 => PRODUCER_FIXED_V1,
        2 => PRODUCER_FIXED_V2,
        _ => return None,
    };
    let offset = i64::from_be_bytes(c.take()?);
    let count = u32::from_be_bytes(c.take()?) as usize;
    // Bound the claimed count by the bytes present before trusting it.
    if count > c.0.len() / fixed {
        return None;
    }
    let mut state = ProducerState::default();
    for _ in 0..count {
        let pid = i64::from_be_bytes(c.take()?);
        let epoch = i16::from_be_bytes(c.take()?);
        let mut entry = ProducerEntry::new(epoch);
        if version >= 2 {
            entry.coordinator_epoch = i32::from_be_bytes(c.take()?);
            entry.last_timestamp = i64::from_be_bytes(c.take()?);
            let first = i64::from_be_bytes(c.take()?);
            if first < -1 || first >= offset {
                return None;
            }
            entry.txn_first = (first >= 0).then_some(first);
        }
        let n = c.take::<1>()?[0] as usize;
        if n > MAX_BATCHES {
            return None;
        }
        let mut batches = VecDeque::with_capacity(n);
        for _ in 0..n {
            batches.push_back(BatchMeta {
                first_seq: i32::from_be_bytes(c.take()?),
                last_seq: i32::from_be_bytes(c.take()?),
                first_offset: i64::from_be_bytes(c.take()?),
                last_offset: i64::from_be_bytes(c.take()?),
            });
        }
        entry.batches = batches;
        if state.producers.contains_key(&pid) {
            return None;
        }
        state.insert(pid, entry);
    }
    c.0.is_empty().then_some((offset, state))
}

/// `{offset:020}` + suffix, Kafka's file naming.
pub(crate) fn file_name(offset: i64, suffix: &str) -> String {
    format!("{offset:020}{suffix}")
}

/// Parses a `{offset:020}{suffix}` file name.
pub(crate) fn parse_name(name: &str, suffix: &str) -> Option<i64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_rejects_damage() {
        let b = encode_checkpoint(MAGIC_LOG_START, 1234);
        assert_eq!(decode_checkpoint(MAGIC_LOG_START, &b), Some(1234));
        assert_eq!(decode_checkpoint(MAGIC_RECOVERY, &b), None);
        for i in 0..b.len() {
            let mut d = b;
            d[i] ^= 1;
            assert_eq!(decode_checkpoint(MAGIC_LOG_START, &d), None, "flip at {i}");
        }
        assert_eq!(decode_checkpoint(MAGIC_LOG_START, &b[..19]), None);
    }

    #[test]
    fn snapshot_round_trip_and_rejects_damage() {
        let mut st = ProducerState::default();
        let mut five = ProducerEntry::new(2);
        five.batches = [BatchMeta {
            first_seq: 0,
            last_seq: 3,
            first_offset: 10,
            last_offset: 13,
        }]
        .into();
        five.coordinator_epoch = 4;
        five.last_timestamp = 1_700_000_000_000;
        five.txn_first = Some(12);
        st.insert(5, five);
        st.insert(9, ProducerEntry::new(0));
        let b = encode_snapshot(42, &st);
        assert_eq!(decode_snapshot(&b), Some((42, st.clone())));
        assert_eq!(st.first_open_txn(), Some(12));
        for cut in 0..b.len() {
            assert_eq!(decode_snapshot(&b[..cut]), None);
        }
        let mut d = b.clone();
        d[20] ^= 0x80;
        assert_eq!(decode_snapshot(&d), None);
    }

    /// Backward compatibility: a version 1 snapshot (written before transactions were
    /// tracked), byte for byte as that release wrote it, still loads.
    #[test]
    fn version_1_snapshot_still_loads() {
        let mut v1 = Vec::new();
        v1.extend_from_slice(b"WLPS");
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&42i64.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&5i64.to_be_bytes()); // producer id
        v1.extend_from_slice(&2i16.to_be_bytes()); // epoch
        v1.push(1);
        for v in [0i32, 3] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        for v in [10i64, 13] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        let (off, st) = decode_snapshot(&v1).unwrap();
        assert_eq!(off, 42);
        let e = &st.producers[&5];
        assert_eq!(
            (e.epoch, e.coordinator_epoch, e.last_timestamp),
            (2, -1, -1)
        );
        assert_eq!(e.txn_first, None);
        assert_eq!(e.batches.len(), 1);
        assert_eq!(e.batches[0].last_offset, 13);
        assert!(st.ongoing.is_empty());
        assert_eq!(encode_snapshot_version(42, &st, 1), v1);
    }

    #[test]
    fn index_codecs_and_names() {
        let e = vec![(1u32, 100u32), (7, 4096)];
        assert_eq!(decode_index(&encode_index(&e)), Some(e));
        assert_eq!(decode_index(&[0; 9]), None);
        let t = vec![(-5i64, 0u32), (1_700_000_000_000, 9)];
        assert_eq!(decode_time_index(&encode_time_index(&t)), Some(t));
        assert_eq!(decode_time_index(&[0; 13]), None);
        assert_eq!(file_name(42, ".log"), "00000000000000000042.log");
        assert_eq!(parse_name("00000000000000000042.log", ".log"), Some(42));
        assert_eq!(parse_name("0000000000000000042.log", ".log"), None);
        assert_eq!(parse_name("0000000000000000004x.log", ".log"), None);
    }
}
