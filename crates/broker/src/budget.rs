//! The broker-wide budget for request bytes being read or in flight.
//!
//! Every frame takes room for its whole length *before* its body is read, and gives it back
//! when its request is answered, so the bytes of all requests held in memory never exceed the
//! budget, whatever lengths clients claim. Buffers then grow only as bytes arrive (see
//! `server::read_frame`), so a claim alone costs no memory at all.
//!
//! Large frames (above [`SMALL_FRAME_BYTES`]) may fill only 7/8 of the budget: the last eighth
//! is kept for small requests, so clients that claim large frames and then trickle (or never
//! send) cannot starve producers and consumers whose requests are small. Waiting is not FIFO:
//! whoever fits when room frees up goes first.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Frames up to this size may use the reserved part of the budget.
pub const SMALL_FRAME_BYTES: usize = 1 << 20;

/// The shared budget; see the [module docs](self).
#[derive(Debug)]
pub struct RequestBudget {
    limit: usize,
    used: Mutex<usize>,
    freed: Notify,
}

/// Room taken for one frame; given back on drop.
#[derive(Debug)]
pub struct BudgetPermit {
    budget: Arc<RequestBudget>,
    bytes: usize,
}

impl RequestBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<RequestBudget> {
        Arc::new(RequestBudget {
            limit,
            used: Mutex::new(0),
            freed: Notify::new(),
        })
    }

    /// How much of the budget a frame of `bytes` may fill.
    fn ceiling(&self, bytes: usize) -> usize {
        if bytes <= SMALL_FRAME_BYTES {
            self.limit
        } else {
            self.limit - self.limit / 8
        }
    }

    /// Takes room for `bytes`, waiting until it fits. `bytes` must fit an empty budget
    /// (`BrokerConfig::validate` ensures that for every accepted frame length).
    pub async fn acquire(self: &Arc<Self>, bytes: usize) -> BudgetPermit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release between the check and the wait is
            // not missed.
            freed.as_mut().enable();
            {
                let mut used = self.used.lock();
                if *used + bytes <= self.ceiling(bytes) {
                    *used += bytes;
                    return BudgetPermit {
                        budget: Arc::clone(self),
                        bytes,
                    };
                }
            }
            freed.await;
        }
    }

    /// Bytes currently taken.
    pub fn used(&self) -> usize {
        *self.used.lock()
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        *self.budget.used.lock() -= self.bytes;
        self.budget.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn large_frames_leave_room_for_small_ones_and_waiters_wake() {
        let b = RequestBudget::new(8 << 20);
        let big1 = b.acquire(3 << 20).await;
        let big2 = b.acquire(3 << 20).await;
        assert_eq!(b.used(), 6 << 20);
        // A third large frame would pass 7/8 of the budget: it waits.
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { b.acquire(2 << 20).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        // Small frames still fit in the reserved eighth.
        let small = b.acquire(1 << 20).await;
        assert_eq!(b.used(), 7 << 20);
        drop(small);
        drop(big1);
        let third = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.used(), 5 << 20);
        drop((big2, third));
        assert_eq!(b.used(), 0);
    }
}
