//! Idempotent producer state: producer id -> epoch and the last 5 appended batches' sequences.

use std::collections::{BTreeMap, VecDeque};

use crate::batch::BatchHeader;
use crate::error::LogError;

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, at most [`MAX_BATCHES`].
    pub batches: VecDeque<BatchMeta>,
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

    /// Records an appended batch (`h.base_offset` is the assigned offset). Used both on append
    /// and when replaying batch headers during recovery, so it never fails.
    pub fn apply(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            });
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if !is_idempotent(h) || h.producer_epoch < entry.epoch {
            return;
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
        st.apply(&h(1, 0, 0, 1, 0));
        st.producers.get_mut(&1).unwrap().batches[0].last_seq = i32::MAX;
        assert_eq!(st.check(&h(1, 0, 0, 2, 5)).unwrap(), Check::Append);
        assert!(st.check(&h(1, 0, 1, 2, 5)).is_err());
    }

    #[test]
    fn only_last_five_batches_are_remembered() {
        let mut st = ProducerState::default();
        for i in 0..7 {
            st.apply(&h(9, 0, i * 2, 2, i64::from(i) * 2));
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
        st.apply(&h(3, 1, 0, 3, 0));
        assert!(matches!(
            st.check(&h(3, 2, 5, 1, 0)),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        assert_eq!(st.check(&h(3, 2, 0, 1, 0)).unwrap(), Check::Append);
        st.apply(&h(3, 2, 0, 1, 3));
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
