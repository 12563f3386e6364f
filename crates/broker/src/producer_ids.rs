//! Durable producer-id allocation for InitProducerId.
//!
//! FORMAT: `<data_dir>/producer_ids` holds one decimal number and a newline: the first id not
//! yet reserved. Ids are handed out from an in-memory block of [`BLOCK`] ids; before the first id
//! of a block is issued, the end of the block is written durably (temp file, fsync, rename,
//! directory fsync: `topics::write_durably`). A restarted broker starts at the persisted number, so it
//! never reissues an id, at the cost of skipping the unused rest of the last block.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::BrokerError;
use crate::topics::write_durably;

/// Ids reserved per durable write.
pub const BLOCK: i64 = 1000;

/// Hands out producer ids that are never reused, even across restarts.
pub struct ProducerIds {
    path: PathBuf,
    /// (next id to issue, first id not reserved on disk); invariant: next <= limit.
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// Reads the persisted reservation (or starts at 0). Blocking.
    pub fn open(data_dir: &Path) -> Result<Self, BrokerError> {
        let path = data_dir.join("producer_ids");
        let next = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| BrokerError::CorruptMetadata {
                    path: path.clone(),
                    reason: format!("expected a non-negative integer, found {text:?}"),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(BrokerError::io("reading", &path, e)),
        };
        Ok(ProducerIds {
            path,
            state: Mutex::new((next, next)),
        })
    }

    /// Issues a fresh producer id. Blocking when a new block must be reserved.
    pub fn allocate(&self) -> Result<i64, BrokerError> {
        self.reserve(1).map(|r| r.start)
    }

    /// Issues `n` consecutive fresh ids (the transaction coordinator's pool), durably reserved
    /// before this returns. Blocking when the reservation on disk must grow.
    pub fn reserve(&self, n: i64) -> Result<std::ops::Range<i64>, BrokerError> {
        let mut state = self.state.lock();
        let (next, limit) = *state;
        let exhausted = || BrokerError::CorruptMetadata {
            path: self.path.clone(),
            reason: "producer id space exhausted".to_string(),
        };
        let end = next.checked_add(n.max(1)).ok_or_else(exhausted)?;
        if end > limit {
            let new_limit = end.checked_add(BLOCK - 1).ok_or_else(exhausted)?;
            write_durably(&self.path, format!("{new_limit}\n").as_bytes())?;
            state.1 = new_limit;
        }
        state.0 = end;
        Ok(next..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIds::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let b = ProducerIds::open(dir.path()).unwrap();
        let next = b.allocate().unwrap();
        assert_eq!(next, BLOCK, "a restart skips to the next reserved block");
        for _ in 0..BLOCK {
            assert!(b.allocate().unwrap() > next);
        }
    }

    #[test]
    fn reserved_blocks_never_overlap_single_ids_even_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIds::open(dir.path()).unwrap();
        let one = a.allocate().unwrap();
        let block = a.reserve(2500).unwrap();
        assert_eq!(block, one + 1..one + 2501);
        let after = a.allocate().unwrap();
        assert_eq!(after, block.end);
        drop(a);
        let b = ProducerIds::open(dir.path()).unwrap();
        assert!(b.reserve(10).unwrap().start > after);
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("producer_ids"), "banana").unwrap();
        assert!(ProducerIds::open(dir.path()).is_err());
    }
}
