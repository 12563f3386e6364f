//! Commit statistics. Times and durations are inputs; nothing here reads a clock.

use std::collections::VecDeque;

/// How many recent commit durations the rolling mean covers.
pub const DURATION_WINDOW: usize = 32;

/// A point-in-time copy of the commit statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitStats {
    /// Commits handed to a store.
    pub attempted: u64,
    /// Commits the store confirmed.
    pub succeeded: u64,
    /// Commits the store rejected or that failed.
    pub failed: u64,
    /// Offsets newly covered by successful commits (sum of commit point advances).
    pub offsets_committed: u64,
    /// Time of the last successful commit, as supplied by the caller.
    pub last_commit_ms: Option<i64>,
    /// Mean duration of the last [`DURATION_WINDOW`] commits (successful or not).
    pub mean_commit_duration_ms: Option<f64>,
    /// Acks ignored because they carried a revoked or older assignment generation.
    pub stale_acks: u64,
    /// Partitions committed without their acked set because it exceeded the budget.
    pub over_budget: u64,
}

/// Accumulates [`CommitStats`].
#[derive(Debug, Clone, Default)]
pub struct StatsRecorder {
    stats: CommitStats,
    durations: VecDeque<u64>,
    duration_sum: u64,
}

impl StatsRecorder {
    /// A commit was handed to a store.
    pub fn attempted(&mut self) {
        self.stats.attempted += 1;
    }

    /// A commit finished after `duration_ms`; on success it covered `offsets` new offsets.
    pub fn finished(&mut self, ok: bool, offsets: u64, now_ms: i64, duration_ms: u64) {
        if ok {
            self.stats.succeeded += 1;
            self.stats.offsets_committed += offsets;
            self.stats.last_commit_ms = Some(now_ms);
        } else {
            self.stats.failed += 1;
        }
        if self.durations.len() == DURATION_WINDOW
            && let Some(old) = self.durations.pop_front()
        {
            self.duration_sum -= old;
        }
        self.durations.push_back(duration_ms);
        self.duration_sum += duration_ms;
        self.stats.mean_commit_duration_ms =
            Some(self.duration_sum as f64 / self.durations.len() as f64);
    }

    /// Stale acks were ignored.
    pub fn stale_acks(&mut self, n: u64) {
        self.stats.stale_acks += n;
    }

    /// A partition's acked set did not fit the budget.
    pub fn over_budget(&mut self) {
        self.stats.over_budget += 1;
    }

    /// A copy of the current figures.
    pub fn snapshot(&self) -> CommitStats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_mean_and_counters() {
        let mut r = StatsRecorder::default();
        assert_eq!(r.snapshot().mean_commit_duration_ms, None);
        r.attempted();
        r.finished(true, 10, 100, 4);
        r.attempted();
        r.finished(false, 99, 200, 8);
        let s = r.snapshot();
        assert_eq!((s.attempted, s.succeeded, s.failed), (2, 1, 1));
        assert_eq!(s.offsets_committed, 10);
        assert_eq!(s.last_commit_ms, Some(100));
        assert_eq!(s.mean_commit_duration_ms, Some(6.0));
        for _ in 0..DURATION_WINDOW {
            r.finished(true, 0, 300, 2);
        }
        assert_eq!(r.snapshot().mean_commit_duration_ms, Some(2.0));
    }
}
