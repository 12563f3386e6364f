//! [`TxnRecord`]: the durable state of one transactional id, and its byte format (see the FORMAT
//! section of the crate docs).

use crate::error::DecodeError;
use crate::types::{TopicPartition, TxnState};

/// Current (and only) version of the record format.
pub const FORMAT_VERSION: u8 = 1;

/// Bytes before the versioned body: length (4) and CRC (4).
pub const HEADER_LEN: usize = 8;

/// Largest accepted value of the length field (16 MiB): anything larger is garbage, refused
/// before allocating.
pub const MAX_RECORD_LEN: u32 = 16 * 1024 * 1024;

/// Longest transactional id, topic or group id the format stores (a Kafka protocol string is
/// at most `i16::MAX` bytes, so requests never exceed it).
pub const MAX_STRING_LEN: usize = u16::MAX as usize;

/// The whole state of one transactional id after a change: what the coordinator persists
/// before answering, and what [`crate::TxnCoordinator::load`] rebuilds from (the latest record
/// per transactional id wins; a `Dead` record is a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    /// Transactional id.
    pub transactional_id: String,
    /// State.
    pub state: TxnState,
    /// Current producer id.
    pub producer_id: i64,
    /// The producer id before the last InitProducerId (KIP-360: a retried InitProducerId from a
    /// producer whose epoch was exhausted is recognised by it); -1 if none.
    pub previous_producer_id: i64,
    /// Current producer epoch (-1 before the first InitProducerId completes).
    pub producer_epoch: i16,
    /// The epoch before the last KIP-360 bump, so a retried bump returns the same epoch; -1
    /// after a fencing bump.
    pub last_producer_epoch: i16,
    /// Transaction timeout.
    pub transaction_timeout_ms: i32,
    /// Partitions in the transaction, sorted and unique (empty unless Ongoing or PrepareX).
    pub partitions: Vec<TopicPartition>,
    /// Groups added with AddOffsetsToTxn, sorted and unique (empty unless Ongoing or PrepareX).
    pub groups: Vec<String>,
    /// When the transaction started (first partition or group added); -1 if none.
    pub transaction_start_ms: i64,
    /// Time of the change.
    pub last_update_ms: u64,
}

impl TxnRecord {
    /// Encodes the record as one frame (header and body). Strings longer than
    /// [`MAX_STRING_LEN`] must not occur (the coordinator refuses them in requests); they would
    /// be cut, and the record would not decode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.transactional_id.len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        out.push(FORMAT_VERSION);
        out.push(self.state.id());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.previous_producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.last_producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.transaction_timeout_ms.to_be_bytes());
        out.extend_from_slice(&self.transaction_start_ms.to_be_bytes());
        out.extend_from_slice(&self.last_update_ms.to_be_bytes());
        put_str(out, &self.transactional_id);
        put_count(out, self.partitions.len());
        for tp in &self.partitions {
            put_str(out, &tp.topic);
            out.extend_from_slice(&tp.partition.to_be_bytes());
        }
        put_count(out, self.groups.len());
        for g in &self.groups {
            put_str(out, g);
        }
        let len = out.len() - start - HEADER_LEN;
        let len32 = u32::try_from(len).unwrap_or(u32::MAX);
        let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
        out[start..start + 4].copy_from_slice(&len32.to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    }

    /// Decodes the frame at the start of `buf`; returns the record and the bytes it used.
    pub fn decode(buf: &[u8]) -> Result<(TxnRecord, usize), DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len > MAX_RECORD_LEN {
            return Err(DecodeError::TooLong(len));
        }
        let stored = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let total = HEADER_LEN + len as usize;
        if buf.len() < total {
            return Err(DecodeError::Truncated {
                needed: total,
                available: buf.len(),
            });
        }
        let payload = &buf[HEADER_LEN..total];
        let computed = crc32c::crc32c(payload);
        if computed != stored {
            return Err(DecodeError::CrcMismatch { stored, computed });
        }
        let mut r = Reader { buf: payload };
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let state = TxnState::from_id(r.u8()?).ok_or(DecodeError::Malformed("unknown state"))?;
        let producer_id = r.i64()?;
        let previous_producer_id = r.i64()?;
        let producer_epoch = r.i16()?;
        let last_producer_epoch = r.i16()?;
        let transaction_timeout_ms = r.i32()?;
        let transaction_start_ms = r.i64()?;
        let last_update_ms = r.u64()?;
        let transactional_id = r.string()?;
        let n = r.count(6)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let topic = r.string()?;
            let partition = r.i32()?;
            partitions.push(TopicPartition { topic, partition });
        }
        let n = r.count(2)?;
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            groups.push(r.string()?);
        }
        if !r.buf.is_empty() {
            return Err(DecodeError::Malformed("trailing bytes"));
        }
        let record = TxnRecord {
            transactional_id,
            state,
            producer_id,
            previous_producer_id,
            producer_epoch,
            last_producer_epoch,
            transaction_timeout_ms,
            partitions,
            groups,
            transaction_start_ms,
            last_update_ms,
        };
        Ok((record, total))
    }
}

/// The result of decoding a sequence of frames (a whole state file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecords {
    /// The records of the valid prefix, in file order.
    pub records: Vec<TxnRecord>,
    /// Bytes of the valid prefix: the broker truncates the file here after a torn write.
    pub valid_len: usize,
    /// Why decoding stopped before the end, if it did.
    pub error: Option<DecodeError>,
}

/// Decodes frames from the start of `buf` until the end or the first invalid one.
///
/// A [`DecodeError::Truncated`] error, or any error in the last frame, is what a torn final
/// write looks like; the records before it are intact. Whether to truncate or refuse to start
/// is the broker's policy (see the crate docs).
pub fn decode_all(buf: &[u8]) -> DecodedRecords {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match TxnRecord::decode(&buf[pos..]) {
            Ok((record, used)) => {
                records.push(record);
                pos += used;
            }
            Err(error) => {
                return DecodedRecords {
                    records,
                    valid_len: pos,
                    error: Some(error),
                };
            }
        }
    }
    DecodedRecords {
        records,
        valid_len: pos,
        error: None,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(MAX_STRING_LEN)];
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Malformed("body ends early"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Malformed("invalid UTF-8"))
    }

    /// A u32 element count, bounded by the bytes left (each element is at least `min_size`
    /// bytes), so a corrupt count never drives an allocation.
    fn count(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        if n.saturating_mul(min_size) > self.buf.len() {
            return Err(DecodeError::Malformed("element count exceeds the record"));
        }
        Ok(n)
    }
}
