//! Producer state: producer id -> epoch, the last 5 appended batches' sequences (idempotence),
//! and the producer's open transaction in this partition.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::batch::BatchHeader;
use crate::error::LogError;
use crate::txn::{CompletedTxn, ControlType, Marker};

/// Batches remembered per producer for duplicate detection (Kafka's max.in.flight limit).
pub(crate) const MAX_BATCHES: usize = 5;

/// Sequence and offset range of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

/// State of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, at most [`MAX_BATCHES`].
    pub batches: VecDeque<BatchMeta>,
    /// Coordinator epoch of the last marker, -1 if none.
    pub coordinator_epoch: i32,
    /// Max timestamp of the last batch (data or marker), -1 if unknown.
    pub last_timestamp: i64,
    /// First offset of the open transaction in this partition.
    pub txn_first: Option<i64>,
}

impl ProducerEntry {
    pub fn new(epoch: i16) -> Self {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            coordinator_epoch: -1,
            last_timestamp: -1,
            txn_first: None,
        }
    }
}

/// What an append of an idempotent batch should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Append it.
    Append,
    /// Already appended: answer with the original batch's offsets.
    Duplicate(BatchMeta),
}

/// Sequences wrap from i32::MAX to 0 (Kafka semantics).
fn seq_add(seq: i32, n: i32) -> i32 {
    ((i64::from(seq) + i64::from(n)) % (i64::from(i32::MAX) + 1)) as i32
}

/// All producers of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    pub producers: BTreeMap<i64, ProducerEntry>,
    /// Open transactions as (first offset, producer id): mirrors `txn_first` of the entries.
    pub ongoing: BTreeSet<(i64, i64)>,
}

/// Whether a batch takes part in idempotence checks.
fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && h.base_sequence >= 0 && !h.is_control()
}

impl ProducerState {
    /// Checks a batch before it is appended. Batches without a producer id always append.
    pub fn check(&self, h: &BatchHeader) -> Result<Check, LogError> {
        if h.producer_id < 0 {
            return Ok(Check::Append);
        }
        let pid = h.producer_id;
        let entry = match self.producers.get(&pid) {
            Some(e) => e,
            None if !is_idempotent(h) || h.base_sequence == 0 => return Ok(Check::Append),
            None => {
                return Err(LogError::UnknownProducerId {
                    producer_id: pid,
                    sequence: h.base_sequence,
                });
            }
        };
        if h.producer_epoch < entry.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: pid,
                epoch: h.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if !is_idempotent(h) {
            return Ok(Check::Append);
        }
        if h.producer_epoch > entry.epoch {
            // A new epoch restarts sequences at 0.
            return if h.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(LogError::OutOfOrderSequence {
                    producer_id: pid,
                    expected: 0,
                    received: h.base_sequence,
                })
            };
        }
        let last_seq = seq_add(h.base_sequence, h.last_offset_delta.max(0));
        if let Some(m) = entry
            .batches
            .iter()
            .find(|m| m.first_seq == h.base_sequence && m.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*m));
        }
        let expected = entry.batches.back().map_or(0, |m| seq_add(m.last_seq, 1));
        if h.base_sequence != expected {
            return Err(LogError::OutOfOrderSequence {
                producer_id: pid,
                expected,
                received: h.base_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// Inserts an entry (when a snapshot is decoded), keeping `ongoing` in step.
    pub fn insert(&mut self, pid: i64, entry: ProducerEntry) {
        if let Some(f) = entry.txn_first {
            self.ongoing.insert((f, pid));
        }
        if let Some(old) = self.producers.insert(pid, entry)
            && let Some(f) = old.txn_first
        {
            self.ongoing.remove(&(f, pid));
        }
    }

    /// First offset of the oldest open transaction.
    pub fn first_open_txn(&self) -> Option<i64> {
        self.ongoing.first().map(|&(f, _)| f)
    }

    /// Records an appended batch (`h.base_offset` is the assigned offset). Used both on append
    /// and when replaying batch headers during recovery, so it never fails. `marker` is the
    /// content of a control batch (None for data batches, and for control batches the log
    /// cannot read, which then end nothing). A transactional data batch opens a transaction
    /// at its base offset if the producer has none open; a marker ends the open one and
    /// returns it.
    pub fn apply(&mut self, h: &BatchHeader, marker: Option<Marker>) -> Option<CompletedTxn> {
        if h.producer_id < 0 {
            return None;
        }
        let pid = h.producer_id;
        let entry = self
            .producers
            .entry(pid)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if h.producer_epoch < entry.epoch {
            return None;
        }
        entry.last_timestamp = h.max_timestamp;
        if h.is_control() {
            let m = marker?;
            entry.coordinator_epoch = m.coordinator_epoch;
            let first = entry.txn_first.take()?;
            self.ongoing.remove(&(first, pid));
            return Some(CompletedTxn {
                producer_id: pid,
                first_offset: first,
                last_offset: h.base_offset,
                aborted: m.control == ControlType::Abort,
            });
        }
        if h.is_transactional() && entry.txn_first.is_none() {
            entry.txn_first = Some(h.base_offset);
            self.ongoing.insert((h.base_offset, pid));
        }
        if !is_idempotent(h) {
            return None;
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            // lastOffsetDelta, not recordCount: the cleaner may remove records from a batch
            // (or empty it) but keeps lastOffsetDelta, as Kafka does.
            last_seq: seq_add(h.base_sequence, h.last_offset_delta.max(0)),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while entry.batches.len() > MAX_BATCHES {
            entry.batches.pop_front();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, count: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 0,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: count,
        }
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        assert_eq!(seq_add(i32::MAX, 1), 0);
        assert_eq!(seq_add(i32::MAX - 1, 3), 1);
        let mut st = ProducerState::default();
        st.apply(&h(1, 0, 0, 1, 0), None);
        st.producers.get_mut(&1).unwrap().batches[0].last_seq = i32::MAX;
        assert_eq!(st.check(&h(1, 0, 0, 2, 5)).unwrap(), Check::Append);
        assert!(st.check(&h(1, 0, 1, 2, 5)).is_err());
    }

    #[test]
    fn only_last_five_batches_are_remembered() {
        let mut st = ProducerState::default();
        for i in 0..7 {
            st.apply(&h(9, 0, i * 2, 2, i64::from(i) * 2), None);
        }
        let e = &st.producers[&9];
        assert_eq!(e.batches.len(), MAX_BATCHES);
        assert_eq!(e.batches[0].first_seq, 4);
        assert!(matches!(
            st.check(&h(9, 0, 4, 2, 0)).unwrap(),
            Check::Duplicate(_)
        ));
        // Older than the window: neither duplicate nor next, so out of order.
        assert!(matches!(
            st.check(&h(9, 0, 2, 2, 0)),
            Err(LogError::OutOfOrderSequence { expected: 14, .. })
        ));
    }

    #[test]
    fn new_epoch_resets_and_old_epoch_is_fenced() {
        let mut st = ProducerState::default();
        st.apply(&h(3, 1, 0, 3, 0), None);
        assert!(matches!(
            st.check(&h(3, 2, 5, 1, 0)),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(st.check(&h(3, 2, 0, 1, 0)).unwrap(), Check::Append);
        st.apply(&h(3, 2, 0, 1, 3), None);
        assert!(matches!(
            st.check(&h(3, 1, 3, 1, 0)),
            Err(LogError::ProducerFenced {
                current_epoch: 2,
                ..
            })
        ));
        assert!(matches!(
            st.check(&h(4, 0, 7, 1, 0)),
            Err(LogError::UnknownProducerId { .. })
        ));
    }
}
