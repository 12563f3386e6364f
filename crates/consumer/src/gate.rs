//! Per-key turn-taking for [`Ordering::Key`](crate::Ordering::Key) and
//! [`Ordering::Partition`](crate::Ordering::Partition) (where every record of a partition has
//! the same key).
//!
//! A record reaches the gate only after the partition's tracker recorded it as handed out, so
//! a record waiting here is unfinished for the tracker: the commit point cannot pass it, it
//! counts against the in-flight limit and admission control like a record in the
//! application's hands, and revocation forgets it with the partition (it is processed again
//! by the next owner).
//!
//! Invariants (per partition; the gate lives in its partition state, behind one mutex):
//! - A key is *busy* while it has an entry; `holders` counts the records of that key in the
//!   application's hands or waiting to be retried (a batch holds several), and is >= 1 for
//!   every entry except while its next record sits in `ready`.
//! - `waiting` holds a busy key's records in offset order: records enter in offset order (the
//!   order the tracker handed them out) and leave from the front, so each key's records are
//!   delivered, and therefore completed, in offset order.
//! - A record leaves the gate only through `ready` (its key's turn came) or
//!   [`Gate::take_followers`] (it joins a batch of its key), never while another record of
//!   its key is held.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

/// A key's slot, as the hash of the key bytes (64 bits: two keys sharing a hash only take
/// turns needlessly, which costs throughput, never order).
pub(crate) type Slot = u64;

/// The slot of `key` (`None`: a record without a key, not ordered).
pub(crate) fn key_slot(key: Option<&[u8]>) -> Option<Slot> {
    key.map(|k| {
        // Fixed keys: the same key maps to the same slot in every run.
        let mut h =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .build_hasher();
        h.write(k);
        h.finish()
    })
}

/// The slot every record of a partition shares in [`Ordering::Partition`](crate::Ordering).
pub(crate) const PARTITION_SLOT: Slot = 0;

#[derive(Debug)]
struct Busy<T> {
    holders: u32,
    waiting: VecDeque<T>,
}

/// The turn-taking state of one partition; see the module docs.
#[derive(Debug)]
pub(crate) struct Gate<T> {
    busy: HashMap<Slot, Busy<T>>,
    /// Records whose key's turn came, oldest first, waiting to be handed to the application.
    ready: VecDeque<(Slot, T)>,
    /// Records in `waiting` queues and in `ready`.
    len: usize,
}

impl<T> Default for Gate<T> {
    fn default() -> Self {
        Self {
            busy: HashMap::new(),
            ready: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> Gate<T> {
    /// A record of `slot` arrives (in offset order): returned when its key is free (the key is
    /// now held by it), kept when the key is busy.
    pub fn enter(&mut self, slot: Slot, item: T) -> Option<T> {
        match self.busy.get_mut(&slot) {
            Some(b) => {
                b.waiting.push_back(item);
                self.len += 1;
                None
            }
            None => {
                self.busy.insert(
                    slot,
                    Busy {
                        holders: 1,
                        waiting: VecDeque::new(),
                    },
                );
                Some(item)
            }
        }
    }

    /// A record of `slot` finished (acked, dead-lettered, or given up). When it was the last
    /// holder, the key's next record becomes ready; returns whether one did.
    pub fn leave(&mut self, slot: Slot) -> bool {
        let Some(b) = self.busy.get_mut(&slot) else {
            // Cleared meanwhile (revocation): nothing waits for this key any more.
            return false;
        };
        b.holders = b.holders.saturating_sub(1);
        if b.holders > 0 {
            return false;
        }
        match b.waiting.pop_front() {
            Some(next) => {
                // The ready record holds the key from now on.
                b.holders = 1;
                self.ready.push_back((slot, next));
                true
            }
            None => {
                self.busy.remove(&slot);
                false
            }
        }
    }

    /// The oldest record whose turn came, with its slot (it holds its key).
    pub fn take_ready(&mut self) -> Option<(Slot, T)> {
        let r = self.ready.pop_front()?;
        self.len -= 1;
        Some(r)
    }

    /// Up to `n` further records of `slot`, which the caller holds already, to process in the
    /// same batch: each becomes a holder of the key.
    pub fn take_followers(&mut self, slot: Slot, n: usize) -> Vec<T> {
        let Some(b) = self.busy.get_mut(&slot) else {
            return Vec::new();
        };
        let k = n.min(b.waiting.len());
        let out: Vec<T> = b.waiting.drain(..k).collect();
        b.holders += k as u32;
        self.len -= k;
        out
    }

    /// Records waiting (behind a busy key, or ready).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets every key and waiting record (revocation); returns how many records waited.
    pub fn clear(&mut self) -> usize {
        let n = self.len;
        self.busy.clear();
        self.ready.clear();
        self.len = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_takes_turns_and_others_flow_past() {
        let mut g = Gate::default();
        assert_eq!(g.enter(1, 10), Some(10));
        assert_eq!(g.enter(1, 11), None, "key 1 is busy");
        assert_eq!(g.enter(2, 12), Some(12), "another key flows past");
        assert_eq!(g.enter(1, 13), None);
        assert_eq!(g.len(), 2);
        assert!(g.take_ready().is_none());
        assert!(g.leave(1));
        assert_eq!(g.take_ready(), Some((1, 11)));
        assert_eq!(g.enter(1, 14), None, "still busy: 11 holds it");
        assert!(g.leave(1));
        assert_eq!(g.take_ready(), Some((1, 13)));
        assert!(g.leave(1));
        assert_eq!(g.take_ready(), Some((1, 14)));
        assert!(!g.leave(1));
        assert_eq!(g.enter(1, 15), Some(15), "free again");
        assert!(!g.leave(2));
        assert_eq!(g.len(), 0);
    }

    #[test]
    fn followers_join_a_batch_and_all_must_leave() {
        let mut g = Gate::default();
        assert_eq!(g.enter(7, 0), Some(0));
        for i in 1..5 {
            assert_eq!(g.enter(7, i), None);
        }
        assert_eq!(g.take_followers(7, 2), vec![1, 2]);
        assert_eq!(g.len(), 2);
        assert!(!g.leave(7));
        assert!(!g.leave(7));
        assert!(g.leave(7), "the third holder frees the key");
        assert_eq!(g.take_ready(), Some((7, 3)));
        assert_eq!(g.clear(), 1);
        assert!(!g.leave(7), "cleared");
        assert_eq!(key_slot(Some(b"a")), key_slot(Some(b"a")));
        assert_ne!(key_slot(Some(b"a")), key_slot(Some(b"b")));
        assert_eq!(key_slot(None), None);
    }
}
