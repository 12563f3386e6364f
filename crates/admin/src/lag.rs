//! Lag evaluation in the spirit of Burrow, and honest time lag.
//!
//! Status rules over a window of samples (time, committed offset, log end offset), first
//! match wins:
//! 1. REWIND: the committed offset went backwards between two samples.
//! 2. OK: the latest sample has no lag (caught up, even if idle).
//! 3. STOP: lag > 0 and the last commit (explicit, or the observed offset change) is older
//!    than the window, or no consumer is active and the offset did not move for a full window.
//! 4. OK: some sample in the window had zero lag (the consumer caught up meanwhile).
//! 5. OK: only one sample in the window, so no trend can be judged yet.
//! 6. STALL: lag > 0 in every sample and the committed offset never moved across the samples.
//! 7. WARN: lag never decreased between samples and ended higher than it started.
//! 8. OK otherwise.

use serde::Serialize;

use crate::timefmt::format_span_ms;

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

/// Partition or group status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Consuming normally.
    Ok,
    /// Lag grew over the window.
    Warn,
    /// Committing the same offset while lag > 0.
    Stall,
    /// No commits for longer than the window.
    Stop,
    /// The committed offset went backwards.
    Rewind,
}

impl Status {
    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Stall => "STALL",
            Status::Stop => "STOP",
            Status::Rewind => "REWIND",
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

/// Inputs besides the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowContext {
    /// Window length in ms.
    pub window_ms: i64,
    /// Current time (ms since epoch).
    pub now_ms: i64,
    /// When the group last committed this partition, when the source can tell.
    pub last_commit_ms: Option<i64>,
    /// Whether the group has members (`None`: unknown).
    pub consumer_active: Option<bool>,
}

fn eval(status: Status, reason: String) -> Evaluation {
    Evaluation { status, reason }
}

/// Evaluates one partition. `samples` must be in time order; only those within the window
/// ending at `now_ms` are used (at least the latest one).
pub fn evaluate(samples: &[Sample], ctx: WindowContext) -> Evaluation {
    let Some(last) = samples.last() else {
        return eval(Status::Ok, "no samples yet".into());
    };
    let from = ctx.now_ms.saturating_sub(ctx.window_ms);
    let start = samples
        .iter()
        .position(|s| s.time_ms >= from)
        .unwrap_or(samples.len() - 1);
    let window = &samples[start..];
    let window_text = format_span_ms(ctx.window_ms);

    for pair in window.windows(2) {
        if let (Some(a), Some(b)) = (pair[0].committed, pair[1].committed)
            && b < a
        {
            return eval(
                Status::Rewind,
                format!("committed offset went back from {a} to {b}"),
            );
        }
    }
    if last.lag() == 0 {
        return eval(Status::Ok, "caught up".into());
    }
    // The last time the committed offset was seen to change (across all samples, not just
    // the window, so a change just before the window still counts).
    let observed_change = samples
        .windows(2)
        .rev()
        .find_map(|p| (p[0].committed != p[1].committed).then_some(p[1].time_ms));
    let last_commit = match (ctx.last_commit_ms, observed_change) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let Some(t) = last_commit
        && ctx.now_ms.saturating_sub(t) > ctx.window_ms
    {
        return eval(
            Status::Stop,
            format!(
                "no commit for {} (window {window_text}) with lag {}",
                format_span_ms(ctx.now_ms - t),
                last.lag()
            ),
        );
    }
    let unchanged = window.iter().all(|s| s.committed == last.committed);
    let span = last.time_ms.saturating_sub(window[0].time_ms);
    let history_span = last.time_ms.saturating_sub(samples[0].time_ms);
    if ctx.consumer_active == Some(false)
        && observed_change.is_none()
        && history_span >= ctx.window_ms
    {
        return eval(
            Status::Stop,
            format!(
                "no active consumer and the committed offset has not moved for {} with lag {}",
                format_span_ms(history_span),
                last.lag()
            ),
        );
    }
    if window.iter().any(|s| s.lag() == 0) {
        return eval(Status::Ok, "caught up within the window".into());
    }
    if window.len() < 2 {
        return eval(
            Status::Ok,
            format!(
                "lag {}; one sample so far, trends need more (--watch)",
                last.lag()
            ),
        );
    }
    if window.len() >= 2 && unchanged {
        let at = last
            .committed
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".into());
        return eval(
            Status::Stall,
            format!(
                "committed offset stuck at {at} for {} while lag is {}",
                format_span_ms(span),
                last.lag()
            ),
        );
    }
    let non_decreasing = window.windows(2).all(|p| p[1].lag() >= p[0].lag());
    let first = window[0].lag();
    if window.len() >= 2 && non_decreasing && last.lag() > first {
        return eval(
            Status::Warn,
            format!(
                "lag grew from {first} to {} over {}",
                last.lag(),
                format_span_ms(span)
            ),
        );
    }
    eval(Status::Ok, "consuming".into())
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

    const MIN: i64 = 60_000;

    fn s(t_min: i64, committed: i64, end: i64) -> Sample {
        Sample {
            time_ms: t_min * MIN,
            committed: Some(committed),
            log_end: end,
        }
    }

    fn ctx(now_min: i64) -> WindowContext {
        WindowContext {
            window_ms: 5 * MIN,
            now_ms: now_min * MIN,
            last_commit_ms: None,
            consumer_active: None,
        }
    }

    fn check(samples: &[Sample], c: WindowContext, status: Status, reason: &str) {
        let e = evaluate(samples, c);
        assert_eq!(e.status, status, "{e:?}");
        assert!(e.reason.contains(reason), "{}", e.reason);
    }

    #[test]
    fn statuses() {
        check(
            &[s(0, 10, 20), s(1, 8, 20)],
            ctx(1),
            Status::Rewind,
            "went back from 10 to 8",
        );
        check(
            &[s(0, 10, 20), s(1, 20, 20)],
            ctx(1),
            Status::Ok,
            "caught up",
        );
        check(
            &[s(0, 10, 10), s(1, 10, 10), s(9, 10, 10)],
            ctx(9),
            Status::Ok,
            "caught up",
        );
        check(
            &[s(0, 10, 20), s(1, 12, 30), s(2, 14, 40)],
            ctx(2),
            Status::Warn,
            "lag grew from 10 to 26",
        );
        check(
            &[s(0, 10, 20), s(1, 10, 25), s(2, 10, 30)],
            ctx(2),
            Status::Stall,
            "stuck at 10",
        );
        check(
            &[s(0, 10, 20), s(1, 18, 25), s(2, 26, 30)],
            ctx(2),
            Status::Ok,
            "consuming",
        );
        // Offset moved at minute 1, nothing since; now minute 8, window 5 minutes.
        check(
            &[s(0, 5, 20), s(1, 10, 20), s(8, 10, 30)],
            ctx(8),
            Status::Stop,
            "no commit for 7m",
        );
        let explicit = WindowContext {
            last_commit_ms: Some(0),
            ..ctx(8)
        };
        check(&[s(8, 10, 30)], explicit, Status::Stop, "window 5m");
        let gone = WindowContext {
            consumer_active: Some(false),
            ..ctx(8)
        };
        check(
            &[s(0, 10, 20), s(8, 10, 30)],
            gone,
            Status::Stop,
            "no active consumer",
        );
        // Caught up at some point in the window: OK even with lag now.
        check(
            &[s(0, 10, 10), s(1, 10, 15)],
            ctx(1),
            Status::Ok,
            "within the window",
        );
        check(&[], ctx(1), Status::Ok, "no samples");
        check(&[s(1, 10, 20)], ctx(1), Status::Ok, "one sample so far");
    }

    #[test]
    fn samples_outside_the_window_are_ignored() {
        // A rewind 10 minutes ago does not count with a 5-minute window.
        check(
            &[s(0, 10, 40), s(1, 5, 40), s(8, 20, 40), s(9, 30, 40)],
            ctx(9),
            Status::Ok,
            "consuming",
        );
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

        #[test]
        fn rewinds_in_the_window_always_win(offs in proptest::collection::vec(0i64..100, 2..10)) {
            let samples: Vec<Sample> = offs.iter().enumerate()
                .map(|(i, o)| Sample { time_ms: i as i64, committed: Some(*o), log_end: 200 })
                .collect();
            let went_back = offs.windows(2).any(|p| p[1] < p[0]);
            let e = evaluate(&samples, WindowContext { window_ms: 1_000, now_ms: offs.len() as i64, last_commit_ms: None, consumer_active: None });
            prop_assert_eq!(e.status == Status::Rewind, went_back);
        }
    }
}
