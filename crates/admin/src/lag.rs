//! Lag statuses in the spirit of Burrow, and honest time lag. One rule engine for every
//! surface (`waterline lag`, `lag --watch`, `lag --check`, the exporter).
//!
//! A partition keeps a window of the last N *commits* it was seen to make (default 10):
//! a commit is an observed change of its committed offset, recorded with the time it was
//! seen and the lag at that moment. Polling cannot see a commit that repeats the same
//! offset, so "not moving" is judged by time, with the group's membership telling a live
//! consumer that is stuck (STALL) from one that is gone (STOP).
//!
//! Rules, first match wins (`L` = current lag, `W` = the window):
//! 1. OK: `L == 0` (caught up, also when idle).
//! 2. LOST: the committed offset is below the log start: records were deleted by retention
//!    before the group read them.
//! 3. UNKNOWN: no committed offset (every record counts as lag, nothing to judge).
//! 4. STOP: the group has no active members and its committed offset was not seen to move.
//! 5. With a full window, the time since the last progress (the last commit, or the last
//!    sample that was caught up) is longer than the window took (first to last commit):
//!    STALL when the group has active members, else STOP.
//! 6. UNKNOWN: the window is not full yet ("still learning"), or this is a one-shot look,
//!    which cannot judge a trend. Never OK: a lagging partition is only OK once judged.
//! 7. REWIND: a commit in the window went below the one before it.
//! 8. OK: some commit in the window had zero lag.
//! 9. WARN: the lag never decreased from commit to commit and ended higher than it began.
//! 10. OK: consuming.
//!
//! Statuses are ordered by severity (OK < UNKNOWN < WARN < STALL < STOP < REWIND < LOST);
//! a group's status is its worst partition's.

use std::collections::VecDeque;

use serde::Serialize;

use crate::timefmt::format_span_ms;

/// The default window, in commits (Burrow's default).
pub const DEFAULT_WINDOW_COMMITS: usize = 10;

/// One observation of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken (ms since epoch).
    pub time_ms: i64,
    /// The group's committed offset, if any.
    pub committed: Option<i64>,
    /// The log end offset.
    pub log_end: i64,
}

impl Sample {
    /// Records between the committed offset and the log end (all of them without a commit).
    pub fn lag(&self) -> i64 {
        self.log_end
            .saturating_sub(self.committed.unwrap_or(0))
            .max(0)
    }
}

/// What one look at the cluster tells besides the offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    /// Whether the group has members (`None`: unknown).
    pub members_active: Option<bool>,
    /// The partition's log start offset, when known.
    pub log_start: Option<i64>,
}

/// Partition or group status, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Consuming normally, or caught up.
    Ok,
    /// Lagging, and not judged yet: still learning, or a one-shot look that cannot tell.
    Unknown,
    /// Lag grew over the window.
    Warn,
    /// Members are connected but the committed offset does not move while lag > 0.
    Stall,
    /// Nobody is committing: no members, or no commit for longer than the window took.
    Stop,
    /// The committed offset went backwards.
    Rewind,
    /// The committed offset is below the log start: records were lost to retention.
    Lost,
}

impl Status {
    /// Every status, in severity order.
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::Unknown,
        Status::Warn,
        Status::Stall,
        Status::Stop,
        Status::Rewind,
        Status::Lost,
    ];

    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Unknown => "UNKNOWN",
            Status::Warn => "WARN",
            Status::Stall => "STALL",
            Status::Stop => "STOP",
            Status::Rewind => "REWIND",
            Status::Lost => "LOST",
        }
    }
}

/// A status with the reason it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// The status.
    pub status: Status,
    /// Why, in one line.
    pub reason: String,
}

fn eval(status: Status, reason: String) -> Evaluation {
    Evaluation { status, reason }
}

/// One commit in the window: the committed offset, when it was first seen and the lag then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    /// When the offset was first seen (ms since epoch).
    pub time_ms: i64,
    /// The committed offset.
    pub offset: i64,
    /// Log end minus the offset at that moment.
    pub lag: i64,
}

/// A partition's history: the window of its last commits and what progress was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    capacity: usize,
    commits: VecDeque<Commit>,
    /// The latest sample observed.
    last: Option<Sample>,
    /// The last time the partition was seen caught up (no commit was due then).
    caught_up_ms: Option<i64>,
    /// Whether the committed offset was ever seen to change.
    moved: bool,
}

impl Window {
    /// An empty window of `capacity` commits (at least 2: a trend needs two points).
    pub fn new(capacity: usize) -> Self {
        Window {
            capacity: capacity.max(2),
            commits: VecDeque::new(),
            last: None,
            caught_up_ms: None,
            moved: false,
        }
    }

    /// The commits in the window, oldest first.
    pub fn commits(&self) -> impl Iterator<Item = &Commit> {
        self.commits.iter()
    }

    /// Whether the window holds as many commits as it can.
    pub fn is_full(&self) -> bool {
        self.commits.len() >= self.capacity
    }

    /// The latest sample observed.
    pub fn last(&self) -> Option<Sample> {
        self.last
    }

    /// Takes one sample (in time order): a changed committed offset enters the window as a
    /// commit, pushing the oldest out when full.
    pub fn observe(&mut self, s: Sample) {
        if s.lag() == 0 {
            self.caught_up_ms = Some(s.time_ms);
        }
        if let Some(offset) = s.committed {
            let changed = self.commits.back().is_none_or(|c| c.offset != offset);
            if changed {
                if !self.commits.is_empty() {
                    self.moved = true;
                }
                self.commits.push_back(Commit {
                    time_ms: s.time_ms,
                    offset,
                    lag: s.lag(),
                });
                while self.commits.len() > self.capacity {
                    self.commits.pop_front();
                }
            }
        }
        self.last = Some(s);
    }

    /// Judges the partition at `now_ms` from the window and the latest sample (see the module
    /// docs for the rules).
    pub fn evaluate(&self, now_ms: i64, facts: Facts) -> Evaluation {
        let Some(last) = self.last else {
            return eval(Status::Unknown, "no samples yet".into());
        };
        if let Some(e) = judge_at_a_look(last, facts, self.moved) {
            return e;
        }
        let lag = last.lag();
        if self.is_full()
            && let (Some(first), Some(newest)) = (self.commits.front(), self.commits.back())
        {
            let took = newest.time_ms - first.time_ms;
            let progress = self
                .caught_up_ms
                .map_or(newest.time_ms, |t| t.max(newest.time_ms));
            let idle = now_ms.saturating_sub(progress);
            if idle > took {
                let (status, who) = if facts.members_active == Some(true) {
                    (Status::Stall, "members are connected but ")
                } else {
                    (Status::Stop, "")
                };
                return eval(
                    status,
                    format!(
                        "{who}the committed offset has not moved for {} with lag {lag} (its last {} commits took {})",
                        format_span_ms(idle),
                        self.commits.len(),
                        format_span_ms(took)
                    ),
                );
            }
        }
        if !self.is_full() {
            return eval(
                Status::Unknown,
                format!(
                    "lag {lag}; still learning: {} of {} commits seen",
                    self.commits.len(),
                    self.capacity
                ),
            );
        }
        let commits: Vec<&Commit> = self.commits.iter().collect();
        for pair in commits.windows(2) {
            if pair[1].offset < pair[0].offset {
                return eval(
                    Status::Rewind,
                    format!(
                        "committed offset went back from {} to {}",
                        pair[0].offset, pair[1].offset
                    ),
                );
            }
        }
        if commits.iter().any(|c| c.lag == 0) {
            return eval(
                Status::Ok,
                format!(
                    "lag {lag}; caught up within the last {} commits",
                    commits.len()
                ),
            );
        }
        let first = commits[0].lag;
        let end = commits[commits.len() - 1].lag;
        if commits.windows(2).all(|p| p[1].lag >= p[0].lag) && end > first {
            return eval(
                Status::Warn,
                format!(
                    "lag grew from {first} to {end} over the last {} commits and never decreased",
                    commits.len()
                ),
            );
        }
        eval(Status::Ok, format!("consuming; lag {lag}"))
    }
}

/// What a single look can know: `Some` for caught up, lost to retention, no commit, no
/// members; `None` when judging needs a window. `moved`: the committed offset was seen to
/// change (a standalone consumer commits without being a member).
fn judge_at_a_look(s: Sample, facts: Facts, moved: bool) -> Option<Evaluation> {
    let lag = s.lag();
    if lag == 0 {
        return Some(eval(Status::Ok, "caught up".into()));
    }
    let Some(committed) = s.committed else {
        return Some(eval(
            Status::Unknown,
            format!("no committed offset; {lag} records in the log"),
        ));
    };
    if let Some(start) = facts.log_start
        && committed < start
    {
        return Some(eval(
            Status::Lost,
            format!(
                "committed offset {committed} is below the log start {start}: {} records were deleted by retention before the group read them",
                start - committed
            ),
        ));
    }
    if facts.members_active == Some(false) && !moved {
        return Some(eval(
            Status::Stop,
            format!("no active members while {lag} records behind"),
        ));
    }
    None
}

/// One-shot judgement of a single sample: only what one look can know; a lagging partition
/// it cannot judge is UNKNOWN, never OK.
pub fn evaluate_once(s: Sample, facts: Facts) -> Evaluation {
    judge_at_a_look(s, facts, false).unwrap_or_else(|| {
        eval(
            Status::Unknown,
            format!(
                "lag {}; one look cannot judge a trend (use --watch)",
                s.lag()
            ),
        )
    })
}

/// The group's status: the most severe partition status, with that partition named.
pub fn group_status<'a>(
    partitions: impl IntoIterator<Item = (&'a str, i32, &'a Evaluation)>,
) -> Evaluation {
    let mut worst: Option<(&str, i32, &Evaluation)> = None;
    for (t, p, e) in partitions {
        if worst.is_none_or(|(_, _, w)| e.status > w.status) {
            worst = Some((t, p, e));
        }
    }
    match worst {
        Some((_, _, e)) if e.status == Status::Ok => eval(Status::Ok, "all partitions OK".into()),
        Some((t, p, e)) => eval(e.status, format!("{t} partition {p}: {}", e.reason)),
        None => eval(Status::Ok, "no partitions".into()),
    }
}

/// Time lag of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "ms", rename_all = "snake_case")]
pub enum TimeLag {
    /// The age of the record at the committed offset (0 when caught up).
    Exact(i64),
    /// Interpolated from sampled (log end offset, time) points.
    Estimate(i64),
    /// Older than every sampled point: at least this much.
    AtLeast(i64),
    /// No committed offset, or nothing to estimate from.
    Unknown,
}

impl TimeLag {
    /// Milliseconds, when known or estimated.
    pub fn ms(self) -> Option<i64> {
        match self {
            TimeLag::Exact(ms) | TimeLag::Estimate(ms) | TimeLag::AtLeast(ms) => Some(ms),
            TimeLag::Unknown => None,
        }
    }

    /// Table text: `1m2s` exact, `~1m2s` estimated, `>1m2s` lower bound, `-` unknown.
    pub fn display(self) -> String {
        match self {
            TimeLag::Exact(ms) => format_span_ms(ms),
            TimeLag::Estimate(ms) => format!("~{}", format_span_ms(ms)),
            TimeLag::AtLeast(ms) => format!(">{}", format_span_ms(ms)),
            TimeLag::Unknown => "-".into(),
        }
    }
}

/// Computes time lag.
///
/// - caught up (`committed >= log_end`): exact 0, also for idle partitions;
/// - the record at the committed offset was read (`record_ts_ms`): exact, its age;
/// - otherwise: the time the log end passed `committed`, interpolated linearly between the
///   two `(log_end, time_ms)` points around it (`history` in time order), as an estimate.
pub fn time_lag(
    now_ms: i64,
    committed: Option<i64>,
    log_end: i64,
    record_ts_ms: Option<i64>,
    history: &[(i64, i64)],
) -> TimeLag {
    let Some(committed) = committed else {
        return TimeLag::Unknown;
    };
    if committed >= log_end {
        return TimeLag::Exact(0);
    }
    if let Some(ts) = record_ts_ms {
        return TimeLag::Exact(now_ms.saturating_sub(ts).max(0));
    }
    // The record at `committed` was appended when the log end moved from <= committed to
    // > committed: find that step.
    let mut prev: Option<(i64, i64)> = None;
    for &(end, t) in history {
        if end > committed {
            return match prev {
                Some((pend, pt)) if end > pend => {
                    let frac = (committed - pend) as f64 / (end - pend) as f64;
                    let produced = pt as f64 + frac * (t - pt) as f64;
                    TimeLag::Estimate((now_ms as f64 - produced).max(0.0).round() as i64)
                }
                // Already past `committed` at the first point: older than the history.
                _ => TimeLag::AtLeast(now_ms.saturating_sub(t).max(0)),
            };
        }
        prev = Some((end, t));
    }
    TimeLag::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs the rule tables in `testdata/lag_rules.txt` (golden style): each case is a
    /// sequence of samples and facts; after each `eval T` / `once T` line the file holds the
    /// expected `-> STATUS: reason`. `WATERLINE_BLESS=1` rewrites the expectations.
    ///
    /// Lines: `case NAME` starts a case; `window N` sets its window (commits, default 10);
    /// `members yes|no|unknown` and `log-start N|unknown` set facts; `at T committed C|none
    /// end E` observes a sample (T in seconds); `eval T` judges the window at T; `once` judges
    /// the latest sample as a one-shot look.
    #[test]
    fn lag_rule_tables() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/lag_rules.txt");
        let input = std::fs::read_to_string(path).unwrap();
        let mut out = String::new();
        let mut window = Window::new(DEFAULT_WINDOW_COMMITS);
        let mut facts = Facts::default();
        for (n, line) in input.lines().enumerate() {
            if line.starts_with("->") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
            let words: Vec<&str> = line.split_whitespace().collect();
            macro_rules! bad {
                () => {
                    panic!("{path}:{}: cannot read {line:?}", n + 1)
                };
            }
            let num = |w: &str| w.parse::<i64>().unwrap_or_else(|_| bad!());
            let verdict = match words.as_slice() {
                [] => None,
                [w, ..] if w.starts_with('#') => None,
                ["case", ..] => {
                    window = Window::new(DEFAULT_WINDOW_COMMITS);
                    facts = Facts::default();
                    None
                }
                ["window", k] => {
                    window = Window::new(num(k) as usize);
                    None
                }
                ["members", m] => {
                    facts.members_active = match *m {
                        "yes" => Some(true),
                        "no" => Some(false),
                        "unknown" => None,
                        _ => bad!(),
                    };
                    None
                }
                ["log-start", v] => {
                    facts.log_start = (*v != "unknown").then(|| num(v));
                    None
                }
                ["at", t, "committed", c, "end", e] => {
                    window.observe(Sample {
                        time_ms: num(t) * 1_000,
                        committed: (*c != "none").then(|| num(c)),
                        log_end: num(e),
                    });
                    None
                }
                ["eval", t] => Some(window.evaluate(num(t) * 1_000, facts)),
                ["once"] => Some(evaluate_once(
                    window.last().unwrap_or_else(|| bad!()),
                    facts,
                )),
                _ => bad!(),
            };
            if let Some(e) = verdict {
                out.push_str(&format!("-> {}: {}\n", e.status.as_str(), e.reason));
            }
        }
        if std::env::var_os("WATERLINE_BLESS").is_some() {
            std::fs::write(path, &out).unwrap();
        } else if out != input {
            let diff: Vec<String> = input
                .lines()
                .zip(out.lines())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .take(5)
                .map(|(i, (a, b))| format!("line {}:\n  file:   {a}\n  actual: {b}", i + 1))
                .collect();
            panic!(
                "lag rules differ from {path} (WATERLINE_BLESS=1 rewrites it after review):\n{}",
                diff.join("\n")
            );
        }
    }

    #[test]
    fn window_keeps_only_changed_offsets_and_its_capacity() {
        let mut w = Window::new(3);
        for (t, c) in [(0, 1), (1, 1), (2, 2), (3, 3), (4, 3), (5, 4)] {
            w.observe(Sample {
                time_ms: t,
                committed: Some(c),
                log_end: 10,
            });
        }
        let offsets: Vec<i64> = w.commits().map(|c| c.offset).collect();
        assert_eq!(offsets, vec![2, 3, 4]);
        assert!(w.is_full());
        assert_eq!(Window::new(0).capacity, 2);
    }

    #[test]
    fn group_status_is_the_worst_partition() {
        let ok = eval(Status::Ok, "consuming".into());
        let stall = eval(Status::Stall, "stuck".into());
        let g = group_status([("t", 0, &ok), ("t", 1, &stall)]);
        assert_eq!(g.status, Status::Stall);
        assert_eq!(g.reason, "t partition 1: stuck");
        assert_eq!(group_status([("t", 0, &ok)]).reason, "all partitions OK");
    }

    #[test]
    fn time_lag_cases() {
        // Idle and caught up: 0, not NaN.
        assert_eq!(time_lag(1_000, Some(10), 10, None, &[]), TimeLag::Exact(0));
        assert_eq!(
            time_lag(1_000, Some(3), 10, Some(400), &[]),
            TimeLag::Exact(600)
        );
        // Clock skew never gives negative lag.
        assert_eq!(
            time_lag(1_000, Some(3), 10, Some(5_000), &[]),
            TimeLag::Exact(0)
        );
        // Log end was 0 at t=0 and 100 at t=1000: offset 25 was produced around t=250.
        let h = [(0, 0), (100, 1_000), (200, 2_000)];
        assert_eq!(
            time_lag(3_000, Some(25), 200, None, &h),
            TimeLag::Estimate(2_750)
        );
        assert_eq!(
            time_lag(3_000, Some(150), 200, None, &h),
            TimeLag::Estimate(1_500)
        );
        // Older than the first point.
        assert_eq!(
            time_lag(3_000, Some(5), 200, None, &h[1..]),
            TimeLag::AtLeast(2_000)
        );
        assert_eq!(time_lag(3_000, None, 200, None, &h), TimeLag::Unknown);
        assert_eq!(time_lag(3_000, Some(5), 200, None, &[]), TimeLag::Unknown);
        assert_eq!(TimeLag::Estimate(90_000).display(), "~1m30s");
        assert_eq!(TimeLag::Exact(0).display(), "0s");
    }

    proptest! {
        #[test]
        fn estimates_are_bounded_by_the_surrounding_points(
            steps in proptest::collection::vec((1i64..100, 1i64..10_000), 1..20),
            pick in 0.0f64..1.0,
        ) {
            let mut h = vec![(0i64, 0i64)];
            for (d_end, d_t) in steps {
                let (e, t) = *h.last().unwrap();
                h.push((e + d_end, t + d_t));
            }
            let (end, t_end) = *h.last().unwrap();
            let committed = ((end - 1) as f64 * pick) as i64;
            let now = t_end + 1;
            let lag = time_lag(now, Some(committed), end, None, &h);
            let i = h.iter().position(|(e, _)| *e > committed).unwrap();
            let (lo_t, hi_t) = (h[i - 1].1, h[i].1);
            match lag {
                TimeLag::Estimate(ms) => prop_assert!(ms >= now - hi_t && ms <= now - lo_t),
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
