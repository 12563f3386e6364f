//! Reset planning: from current offsets, log bounds and mode-specific inputs, compute the new
//! offset per partition, clamped to the log's bounds with a warning for each clamp.
//!
//! Pure: every input (including offsets-for-time and "now") is passed in, so plans are
//! deterministic and testable without a broker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waterline_core::TopicPartition;

use crate::error::PlanError;

/// How to choose the new offsets (flag names follow kafka-consumer-groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode", content = "value")]
pub enum ResetMode {
    /// `--to-earliest`: the log start offset.
    ToEarliest,
    /// `--to-latest`: the log end offset.
    ToLatest,
    /// `--to-current`: the committed offset (log end when there is none).
    ToCurrent,
    /// `--to-offset N`.
    ToOffset(i64),
    /// `--shift-by N`: committed offset plus N (negative rewinds).
    ShiftBy(i64),
    /// `--to-datetime TS`: the first offset whose timestamp is >= TS (ms since epoch).
    ToDatetime(i64),
    /// `--by-duration D`: like `--to-datetime now - D` (D in ms).
    ByDuration(i64),
    /// `--to-group OTHER`: another group's committed offsets.
    ToGroup(String),
    /// `--from-file F`: offsets read from a file.
    FromFile,
}

impl ResetMode {
    /// The flag, for messages.
    pub fn flag(&self) -> &'static str {
        match self {
            ResetMode::ToEarliest => "--to-earliest",
            ResetMode::ToLatest => "--to-latest",
            ResetMode::ToCurrent => "--to-current",
            ResetMode::ToOffset(_) => "--to-offset",
            ResetMode::ShiftBy(_) => "--shift-by",
            ResetMode::ToDatetime(_) => "--to-datetime",
            ResetMode::ByDuration(_) => "--by-duration",
            ResetMode::ToGroup(_) => "--to-group",
            ResetMode::FromFile => "--from-file",
        }
    }

    /// The timestamp to look offsets up for, if this mode needs one. Never negative: negative
    /// ListOffsets timestamps are sentinels (-1 latest, -2 earliest, ...), and any time before
    /// the epoch means "from the first record" anyway.
    pub fn lookup_timestamp(&self, now_ms: i64) -> Option<i64> {
        match self {
            ResetMode::ToDatetime(ts) => Some((*ts).max(0)),
            ResetMode::ByDuration(d) => Some(now_ms.saturating_sub(*d).max(0)),
            _ => None,
        }
    }
}

/// What is known about one partition before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInput {
    /// The partition.
    pub tp: TopicPartition,
    /// The group's committed offset, if any.
    pub current: Option<i64>,
    /// Log start offset.
    pub log_start: i64,
    /// Log end offset.
    pub log_end: i64,
    /// `--to-datetime`/`--by-duration`: ListOffsets' answer for the timestamp; `None` when no
    /// record is that recent (then the log end is used, as Kafka does).
    pub offset_for_time: Option<i64>,
    /// `--to-group`: the other group's offset; `--from-file`: the file's offset.
    pub source_offset: Option<i64>,
}

/// One planned partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset when the plan was made (`None`: no commit).
    pub current: Option<i64>,
    /// The offset to commit.
    pub new: i64,
}

impl PlanRow {
    /// The topic-partition.
    pub fn tp(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }

    /// MESSAGES-SKIPPED-OR-REPLAYED: positive = records skipped, negative = records replayed;
    /// `None` without a committed offset.
    pub fn delta(&self) -> Option<i64> {
        self.current.map(|c| self.new.saturating_sub(c))
    }

    /// The offsets whose records are skipped or replayed, `[first, last]`, if any.
    pub fn affected_range(&self) -> Option<(i64, i64)> {
        let current = self.current?;
        if current == self.new {
            return None;
        }
        let (lo, hi) = (current.min(self.new), current.max(self.new));
        Some((lo, hi - 1))
    }
}

/// A reset plan for one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetPlan {
    /// The group.
    pub group: String,
    /// The mode it was made with.
    pub mode: ResetMode,
    /// When it was made (ms since epoch).
    pub created_ms: i64,
    /// Partitions, sorted.
    pub rows: Vec<PlanRow>,
    /// One line per clamp or substitution made.
    pub warnings: Vec<String>,
}

/// A partition whose committed offset differs from what a plan expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanDrift {
    /// The partition.
    pub tp: TopicPartition,
    /// Committed offset recorded in the plan.
    pub planned: Option<i64>,
    /// Committed offset now.
    pub actual: Option<i64>,
}

impl ResetPlan {
    /// The new offsets to commit.
    pub fn offsets(&self) -> BTreeMap<TopicPartition, i64> {
        self.rows.iter().map(|r| (r.tp(), r.new)).collect()
    }

    /// Clamps every row's new offset to its partition's `(log start, log end)` in `bounds`,
    /// adding the warning a fresh plan gives for each value moved. A plan file is checked
    /// this way before it is applied: it may have been edited, or the log may have moved
    /// (retention, DeleteRecords) since it was written. Rows without bounds are left alone.
    pub fn clamp_to(&mut self, bounds: &BTreeMap<TopicPartition, (i64, i64)>) {
        for row in &mut self.rows {
            let tp = row.tp();
            if let Some((start, end)) = bounds.get(&tp) {
                row.new = clamp(&tp, row.new, *start, *end, &mut self.warnings);
            }
        }
    }

    /// Compares the plan's recorded current offsets with `actual`; the plan may only be
    /// applied when this is empty.
    pub fn drift(&self, actual: &BTreeMap<TopicPartition, i64>) -> Vec<PlanDrift> {
        self.rows
            .iter()
            .filter_map(|r| {
                let tp = r.tp();
                let now = actual.get(&tp).copied();
                (now != r.current).then_some(PlanDrift {
                    tp,
                    planned: r.current,
                    actual: now,
                })
            })
            .collect()
    }
}

/// Computes the new offset of every partition in `inputs`.
pub fn plan(
    group: &str,
    mode: &ResetMode,
    inputs: &[PartitionInput],
    created_ms: i64,
) -> Result<ResetPlan, PlanError> {
    let mut rows = Vec::with_capacity(inputs.len());
    let mut warnings = Vec::new();
    let mut sorted: Vec<&PartitionInput> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.tp.cmp(&b.tp));
    for input in sorted {
        let tp = &input.tp;
        let wanted = match mode {
            ResetMode::ToEarliest => input.log_start,
            ResetMode::ToLatest => input.log_end,
            ResetMode::ToCurrent => match input.current {
                Some(c) => c,
                None => {
                    warnings.push(format!(
                        "{} partition {}: no committed offset; using the log end offset {}",
                        tp.topic, tp.partition, input.log_end
                    ));
                    input.log_end
                }
            },
            ResetMode::ToOffset(n) => *n,
            ResetMode::ShiftBy(n) => input
                .current
                .ok_or_else(|| PlanError::NoCurrentOffset {
                    group: group.to_string(),
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    mode: "shift",
                })?
                .saturating_add(*n),
            ResetMode::ToDatetime(_) | ResetMode::ByDuration(_) => match input.offset_for_time {
                Some(o) => o,
                None => {
                    warnings.push(format!(
                        "{} partition {}: no record at or after the time; using the log end offset {}",
                        tp.topic, tp.partition, input.log_end
                    ));
                    input.log_end
                }
            },
            ResetMode::ToGroup(other) => {
                input
                    .source_offset
                    .ok_or_else(|| PlanError::NoOtherGroupOffset {
                        other: other.clone(),
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                    })?
            }
            ResetMode::FromFile => input.source_offset.ok_or_else(|| PlanError::NoFileOffset {
                topic: tp.topic.clone(),
                partition: tp.partition,
            })?,
        };
        let new = clamp(tp, wanted, input.log_start, input.log_end, &mut warnings);
        rows.push(PlanRow {
            topic: tp.topic.clone(),
            partition: tp.partition,
            current: input.current,
            new,
        });
    }
    Ok(ResetPlan {
        group: group.to_string(),
        mode: mode.clone(),
        created_ms,
        rows,
        warnings,
    })
}

/// Clamps to `[log_start, log_end]`, recording a warning when the value moves.
fn clamp(
    tp: &TopicPartition,
    wanted: i64,
    start: i64,
    end: i64,
    warnings: &mut Vec<String>,
) -> i64 {
    if wanted < start {
        warnings.push(format!(
            "{} partition {}: offset {wanted} is before the log start offset {start}; using {start}",
            tp.topic, tp.partition
        ));
        start
    } else if wanted > end {
        warnings.push(format!(
            "{} partition {}: offset {wanted} is after the log end offset {end}; using {end}",
            tp.topic, tp.partition
        ));
        end
    } else {
        wanted
    }
}

/// One line describing the time span of the records a row skips or replays, given the
/// timestamps of the first and last affected records (when they could be read).
pub fn describe_time_range(row: &PlanRow, first_ts: Option<i64>, last_ts: Option<i64>) -> String {
    use crate::timefmt::{format_ms, format_span_ms};
    let (Some(delta), Some((lo, hi))) = (row.delta(), row.affected_range()) else {
        return "-".to_string();
    };
    let verb = if delta > 0 { "skips" } else { "replays" };
    let n = delta.unsigned_abs();
    match (first_ts, last_ts) {
        (Some(a), Some(b)) => format!(
            "{verb} {n} records (offsets {lo}..={hi}) produced {} .. {} ({})",
            format_ms(a),
            format_ms(b),
            format_span_ms(b.saturating_sub(a).max(0))
        ),
        _ => format!("{verb} {n} records (offsets {lo}..={hi}), timestamps unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(p: i32, current: Option<i64>, start: i64, end: i64) -> PartitionInput {
        PartitionInput {
            tp: TopicPartition::new("t", p),
            current,
            log_start: start,
            log_end: end,
            offset_for_time: None,
            source_offset: None,
        }
    }

    fn check(
        mode: ResetMode,
        inputs: &[PartitionInput],
        expect_new: &[i64],
        expect_warnings: usize,
    ) {
        let plan = plan("g", &mode, inputs, 0).unwrap();
        let got: Vec<i64> = plan.rows.iter().map(|r| r.new).collect();
        assert_eq!(got, expect_new, "{mode:?}");
        assert_eq!(
            plan.warnings.len(),
            expect_warnings,
            "{mode:?}: {:?}",
            plan.warnings
        );
    }

    #[test]
    fn each_mode() {
        let ins = [input(0, Some(50), 10, 100), input(1, None, 0, 20)];
        check(ResetMode::ToEarliest, &ins, &[10, 0], 0);
        check(ResetMode::ToLatest, &ins, &[100, 20], 0);
        check(ResetMode::ToCurrent, &ins, &[50, 20], 1);
        check(ResetMode::ToOffset(15), &ins, &[15, 15], 0);
        check(ResetMode::ShiftBy(-5), &ins[..1], &[45], 0);
        let mut t = ins.clone();
        t[0].offset_for_time = Some(30);
        check(ResetMode::ToDatetime(123), &t, &[30, 20], 1);
        check(ResetMode::ByDuration(1_000), &t, &[30, 20], 1);
        let mut g = ins.clone();
        g[0].source_offset = Some(60);
        g[1].source_offset = Some(3);
        check(ResetMode::ToGroup("other".into()), &g, &[60, 3], 0);
        check(ResetMode::FromFile, &g, &[60, 3], 0);
    }

    #[test]
    fn lookup_timestamps_are_never_sentinels() {
        assert_eq!(
            ResetMode::ByDuration(5_000).lookup_timestamp(10_000),
            Some(5_000)
        );
        assert_eq!(
            ResetMode::ByDuration(50_000).lookup_timestamp(10_000),
            Some(0)
        );
        assert_eq!(ResetMode::ToDatetime(-2).lookup_timestamp(0), Some(0));
        assert_eq!(ResetMode::ToLatest.lookup_timestamp(0), None);
    }

    #[test]
    fn clamps_with_warnings() {
        let ins = [input(0, Some(50), 10, 100)];
        check(ResetMode::ToOffset(5), &ins, &[10], 1);
        check(ResetMode::ToOffset(500), &ins, &[100], 1);
        check(ResetMode::ShiftBy(-1_000), &ins, &[10], 1);
        check(ResetMode::ShiftBy(i64::MAX), &ins, &[100], 1);
        let plan = plan("g", &ResetMode::ToOffset(5), &ins, 0).unwrap();
        assert_eq!(
            plan.warnings[0],
            "t partition 0: offset 5 is before the log start offset 10; using 10"
        );
    }

    #[test]
    fn missing_inputs_are_errors_naming_the_partition() {
        let ins = [input(3, None, 0, 10)];
        let err = plan("g", &ResetMode::ShiftBy(1), &ins, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "group g: t partition 3 has no committed offset to shift from"
        );
        let err = plan("g", &ResetMode::ToGroup("o".into()), &ins, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "group o: no committed offset for t partition 3"
        );
        assert!(plan("g", &ResetMode::FromFile, &ins, 0).is_err());
    }

    #[test]
    fn deltas_ranges_and_time_text() {
        let row = PlanRow {
            topic: "t".into(),
            partition: 0,
            current: Some(50),
            new: 40,
        };
        assert_eq!(row.delta(), Some(-10));
        assert_eq!(row.affected_range(), Some((40, 49)));
        assert_eq!(
            describe_time_range(&row, Some(1_706_702_400_000), Some(1_706_702_460_000)),
            "replays 10 records (offsets 40..=49) produced 2024-01-31T12:00:00.000Z .. 2024-01-31T12:01:00.000Z (1m)"
        );
        let row = PlanRow {
            current: Some(40),
            new: 50,
            ..row
        };
        assert_eq!(row.delta(), Some(10));
        assert!(describe_time_range(&row, None, None).starts_with("skips 10 records"));
        let row = PlanRow {
            current: None,
            ..row
        };
        assert_eq!(row.delta(), None);
        assert_eq!(describe_time_range(&row, None, None), "-");
    }

    #[test]
    fn plans_are_clamped_to_the_current_log_bounds() {
        let ins = [input(0, Some(50), 0, 100), input(1, Some(5), 0, 100)];
        let mut p = plan("g", &ResetMode::ToEarliest, &ins, 0).unwrap();
        // Edited by hand, and the log of partition 1 has moved since.
        p.rows[0].new = 99_999_999;
        p.rows[1].new = 3;
        p.clamp_to(&BTreeMap::from([
            (TopicPartition::new("t", 0), (0, 100)),
            (TopicPartition::new("t", 1), (10, 20)),
        ]));
        assert_eq!((p.rows[0].new, p.rows[1].new), (100, 10));
        assert_eq!(
            p.warnings,
            vec![
                "t partition 0: offset 99999999 is after the log end offset 100; using 100",
                "t partition 1: offset 3 is before the log start offset 10; using 10",
            ]
        );
    }

    #[test]
    fn drift_detects_moved_and_vanished_commits() {
        let ins = [input(0, Some(50), 0, 100), input(1, None, 0, 100)];
        let p = plan("g", &ResetMode::ToEarliest, &ins, 0).unwrap();
        let same = BTreeMap::from([(TopicPartition::new("t", 0), 50)]);
        assert!(p.drift(&same).is_empty());
        let moved = BTreeMap::from([
            (TopicPartition::new("t", 0), 51),
            (TopicPartition::new("t", 1), 7),
        ]);
        let d = p.drift(&moved);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].planned, d[0].actual), (Some(50), Some(51)));
        assert_eq!((d[1].planned, d[1].actual), (None, Some(7)));
    }

    #[test]
    fn plans_serialize_and_read_back() {
        let ins = [input(0, Some(50), 0, 100)];
        let p = plan(
            "g",
            &ResetMode::ToGroup("o".into()),
            &[PartitionInput {
                source_offset: Some(1),
                ..ins[0].clone()
            }],
            9,
        )
        .unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<ResetPlan>(&json).unwrap(), p);
    }

    proptest! {
        #[test]
        fn new_offsets_always_within_log_bounds(
            start in 0i64..1_000, len in 0i64..1_000, current in proptest::option::of(0i64..3_000),
            n in -5_000i64..5_000, which in 0u8..5,
        ) {
            let end = start + len;
            let mode = match which {
                0 => ResetMode::ToOffset(n),
                1 => ResetMode::ShiftBy(n),
                2 => ResetMode::ToCurrent,
                3 => ResetMode::ToDatetime(0),
                _ => ResetMode::FromFile,
            };
            let inp = PartitionInput {
                tp: TopicPartition::new("t", 0),
                current: current.or(Some(start)),
                log_start: start,
                log_end: end,
                offset_for_time: Some(n),
                source_offset: Some(n),
            };
            let p = plan("g", &mode, &[inp], 0).unwrap();
            let row = &p.rows[0];
            prop_assert!(row.new >= start && row.new <= end);
            // A warning is given exactly when the wanted value was moved.
            let wanted = match mode {
                ResetMode::ToOffset(_) | ResetMode::ToDatetime(_) | ResetMode::FromFile => n,
                ResetMode::ShiftBy(s) => row.current.unwrap() + s,
                _ => row.current.unwrap(),
            };
            prop_assert_eq!(p.warnings.is_empty(), wanted == row.new);
            // The delta moves from current to new.
            prop_assert_eq!(row.current.unwrap() + row.delta().unwrap(), row.new);
        }
    }
}
