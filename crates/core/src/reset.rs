//! Where to start: reset policies for partitions with nothing committed, and reset operations
//! on committed positions.
//!
//! Both consult a small synchronous [`OffsetResolver`] (the log's bounds and a timestamp
//! lookup). The broker and the Kafka client implement it; [`InMemoryLog`] serves tests.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::{InMemoryLogError, ResetConfigError, ResetError};
use crate::offset::TopicPartition;

/// Answers questions about a partition's log.
pub trait OffsetResolver {
    /// Why a lookup failed.
    type Error;
    /// The first offset still in the log (log start).
    fn earliest(&self, tp: &TopicPartition) -> Result<i64, Self::Error>;
    /// The log end offset: the next offset to be written.
    fn latest(&self, tp: &TopicPartition) -> Result<i64, Self::Error>;
    /// The first offset whose timestamp is `>= ts_ms`, or `None` if every record is older.
    fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        ts_ms: i64,
    ) -> Result<Option<i64>, Self::Error>;
}

/// One step of a reset policy for a partition with nothing committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetStrategy {
    /// The log start.
    Earliest,
    /// The log end (only new records).
    Latest,
    /// Fail: a missing committed offset is an error.
    Error,
    /// This exact offset, if it lies within the log; otherwise fall through.
    Exact(i64),
    /// The first record at or after this timestamp (ms); if none, fall through.
    Timestamp(i64),
}

impl ResetStrategy {
    /// Whether this step always decides (nothing after it can run).
    fn is_terminal(self) -> bool {
        matches!(
            self,
            ResetStrategy::Earliest | ResetStrategy::Latest | ResetStrategy::Error
        )
    }
}

impl fmt::Display for ResetStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetStrategy::Earliest => f.write_str("earliest"),
            ResetStrategy::Latest => f.write_str("latest"),
            ResetStrategy::Error => f.write_str("error"),
            ResetStrategy::Exact(o) => write!(f, "offset:{o}"),
            ResetStrategy::Timestamp(t) => write!(f, "timestamp:{t}"),
        }
    }
}

impl FromStr for ResetStrategy {
    type Err = ResetConfigError;

    /// `earliest`, `latest`, `error` (also `none`), `offset:N`, `timestamp:MS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let parse_num = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| ResetConfigError::Parse(s.into()))
        };
        match s.split_once(':') {
            None => match s {
                "earliest" | "smallest" => Ok(ResetStrategy::Earliest),
                "latest" | "largest" => Ok(ResetStrategy::Latest),
                "error" | "none" => Ok(ResetStrategy::Error),
                _ => Err(ResetConfigError::Parse(s.into())),
            },
            Some(("offset", v)) => Ok(ResetStrategy::Exact(parse_num(v)?)),
            Some(("timestamp", v)) => Ok(ResetStrategy::Timestamp(parse_num(v)?)),
            Some(_) => Err(ResetConfigError::Parse(s.into())),
        }
    }
}

/// A validated fallback chain of [`ResetStrategy`]s, tried in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPolicy {
    chain: Vec<ResetStrategy>,
}

impl ResetPolicy {
    /// Validates a chain: non-empty, no negative arguments, nothing after a terminal step.
    pub fn new(chain: Vec<ResetStrategy>) -> Result<Self, ResetConfigError> {
        if chain.is_empty() {
            return Err(ResetConfigError::EmptyChain);
        }
        for (i, s) in chain.iter().enumerate() {
            match *s {
                ResetStrategy::Exact(o) if o < 0 => {
                    return Err(ResetConfigError::NegativeOffset(o));
                }
                ResetStrategy::Timestamp(t) if t < 0 => {
                    return Err(ResetConfigError::NegativeTimestamp(t));
                }
                s if s.is_terminal() && i + 1 < chain.len() => {
                    return Err(ResetConfigError::UnreachableStrategy(i + 1));
                }
                _ => {}
            }
        }
        Ok(Self { chain })
    }

    /// A single-step policy.
    pub fn single(s: ResetStrategy) -> Result<Self, ResetConfigError> {
        Self::new(vec![s])
    }

    /// The chain.
    pub fn chain(&self) -> &[ResetStrategy] {
        &self.chain
    }

    /// Resolves the start offset for `tp`, which has nothing committed.
    pub fn resolve<R: OffsetResolver>(
        &self,
        tp: &TopicPartition,
        resolver: &R,
    ) -> Result<i64, ResetError<R::Error>> {
        for s in &self.chain {
            match *s {
                ResetStrategy::Earliest => {
                    return resolver.earliest(tp).map_err(ResetError::Resolver);
                }
                ResetStrategy::Latest => return resolver.latest(tp).map_err(ResetError::Resolver),
                ResetStrategy::Error => return Err(ResetError::NoCommittedOffset(tp.to_string())),
                ResetStrategy::Exact(o) => {
                    let (lo, hi) = bounds(tp, resolver)?;
                    if (lo..=hi).contains(&o) {
                        return Ok(o);
                    }
                }
                ResetStrategy::Timestamp(ts) => {
                    if let Some(o) = resolver
                        .offset_for_timestamp(tp, ts)
                        .map_err(ResetError::Resolver)?
                    {
                        return Ok(o);
                    }
                }
            }
        }
        Err(ResetError::Unresolved(tp.to_string()))
    }
}

impl FromStr for ResetPolicy {
    type Err = ResetConfigError;

    /// A comma-separated chain, e.g. `timestamp:1700000000000,earliest`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chain = s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(chain)
    }
}

fn bounds<R: OffsetResolver>(
    tp: &TopicPartition,
    resolver: &R,
) -> Result<(i64, i64), ResetError<R::Error>> {
    let lo = resolver.earliest(tp).map_err(ResetError::Resolver)?;
    let hi = resolver.latest(tp).map_err(ResetError::Resolver)?;
    if lo > hi {
        return Err(ResetError::BadBounds {
            tp: tp.to_string(),
            earliest: lo,
            latest: hi,
        });
    }
    Ok((lo, hi))
}

/// An operator's reset of a (possibly committed) position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetOp {
    /// To the log start.
    ToEarliest,
    /// To the log end.
    ToLatest,
    /// To this offset (clamped to the log).
    ToOffset(i64),
    /// To the first record at or after this timestamp; the log end if every record is older.
    ToTimestamp(i64),
    /// Move the committed offset by this many (negative: back), clamped to the log.
    ShiftBy(i64),
}

impl ResetOp {
    /// Rejects arguments that are invalid whatever the log holds.
    pub fn validate(&self) -> Result<(), ResetConfigError> {
        match *self {
            ResetOp::ToOffset(o) if o < 0 => Err(ResetConfigError::NegativeOffset(o)),
            ResetOp::ToTimestamp(t) if t < 0 => Err(ResetConfigError::NegativeTimestamp(t)),
            _ => Ok(()),
        }
    }

    /// Computes the new offset for `tp` whose committed offset is `current`.
    pub fn apply<R: OffsetResolver>(
        &self,
        tp: &TopicPartition,
        current: Option<i64>,
        resolver: &R,
    ) -> Result<ResetOutcome, ResetError<R::Error>> {
        self.validate()?;
        let (lo, hi) = bounds(tp, resolver)?;
        let wanted = match *self {
            ResetOp::ToEarliest => lo,
            ResetOp::ToLatest => hi,
            ResetOp::ToOffset(o) => o,
            ResetOp::ToTimestamp(ts) => resolver
                .offset_for_timestamp(tp, ts)
                .map_err(ResetError::Resolver)?
                .unwrap_or(hi),
            ResetOp::ShiftBy(n) => current
                .ok_or_else(|| ResetError::NothingToShift(tp.to_string()))?
                .saturating_add(n),
        };
        let offset = wanted.clamp(lo, hi);
        Ok(ResetOutcome {
            offset,
            requested: wanted,
            clamped: offset != wanted,
        })
    }
}

/// The result of a [`ResetOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The offset to commit.
    pub offset: i64,
    /// What the operation asked for before clamping.
    pub requested: i64,
    /// Whether the request fell outside the log and was clamped to its bounds.
    pub clamped: bool,
}

/// An in-memory log: per partition, a start offset and records as (offset, timestamp).
#[derive(Debug, Clone, Default)]
pub struct InMemoryLog {
    partitions: BTreeMap<TopicPartition, MemPartition>,
}

#[derive(Debug, Clone, Default)]
struct MemPartition {
    start: i64,
    end: i64,
    records: Vec<(i64, i64)>,
}

impl InMemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates (or empties) `tp` with its log starting at `start`.
    pub fn create(&mut self, tp: TopicPartition, start: i64) {
        self.partitions.insert(
            tp,
            MemPartition {
                start,
                end: start,
                records: Vec::new(),
            },
        );
    }

    /// Appends a record at `offset` (>= the log end; gaps allowed) with a timestamp.
    pub fn append(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        ts_ms: i64,
    ) -> Result<(), InMemoryLogError> {
        let p = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| InMemoryLogError::UnknownPartition(tp.to_string()))?;
        if offset < p.end {
            return Err(InMemoryLogError::NonMonotonicOffset { offset, end: p.end });
        }
        p.records.push((offset, ts_ms));
        p.end = offset + 1;
        Ok(())
    }

    /// Drops records below `offset` (retention).
    pub fn truncate_before(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
    ) -> Result<(), InMemoryLogError> {
        let p = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| InMemoryLogError::UnknownPartition(tp.to_string()))?;
        p.start = p.start.max(offset.min(p.end));
        let start = p.start;
        p.records.retain(|&(o, _)| o >= start);
        Ok(())
    }

    fn get(&self, tp: &TopicPartition) -> Result<&MemPartition, InMemoryLogError> {
        self.partitions
            .get(tp)
            .ok_or_else(|| InMemoryLogError::UnknownPartition(tp.to_string()))
    }
}

impl OffsetResolver for InMemoryLog {
    type Error = InMemoryLogError;

    fn earliest(&self, tp: &TopicPartition) -> Result<i64, Self::Error> {
        Ok(self.get(tp)?.start)
    }

    fn latest(&self, tp: &TopicPartition) -> Result<i64, Self::Error> {
        Ok(self.get(tp)?.end)
    }

    /// Kafka semantics: the first record whose timestamp is `>= ts_ms`, scanning in offset
    /// order (timestamps need not be monotonic).
    fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        ts_ms: i64,
    ) -> Result<Option<i64>, Self::Error> {
        Ok(self
            .get(tp)?
            .records
            .iter()
            .find(|&&(_, t)| t >= ts_ms)
            .map(|&(o, _)| o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    /// Records 100..110 at timestamps 1000, 1010, ..., 1090.
    fn log() -> InMemoryLog {
        let mut l = InMemoryLog::new();
        l.create(tp(), 100);
        for i in 0..10 {
            l.append(&tp(), 100 + i, 1000 + 10 * i).unwrap();
        }
        l
    }

    fn resolve(chain: &str) -> Result<i64, ResetError<InMemoryLogError>> {
        chain.parse::<ResetPolicy>().unwrap().resolve(&tp(), &log())
    }

    #[test]
    fn strategies_and_fallback_chains() {
        let table: &[(&str, Result<i64, ResetError<InMemoryLogError>>)] = &[
            ("earliest", Ok(100)),
            ("latest", Ok(110)),
            ("error", Err(ResetError::NoCommittedOffset("t-0".into()))),
            ("offset:105", Ok(105)),
            ("offset:110", Ok(110)),
            ("offset:5,latest", Ok(110)),
            ("offset:5", Err(ResetError::Unresolved("t-0".into()))),
            ("timestamp:1015", Ok(102)),
            ("timestamp:999999,earliest", Ok(100)),
            (
                "timestamp:999999,offset:7,error",
                Err(ResetError::NoCommittedOffset("t-0".into())),
            ),
            (
                "timestamp:999999",
                Err(ResetError::Unresolved("t-0".into())),
            ),
        ];
        for (chain, want) in table {
            assert_eq!(&resolve(chain), want, "{chain}");
        }
    }

    #[test]
    fn invalid_reset_arguments() {
        let table: &[(&str, ResetConfigError)] = &[
            ("", ResetConfigError::EmptyChain),
            ("offset:-1", ResetConfigError::NegativeOffset(-1)),
            ("timestamp:-5", ResetConfigError::NegativeTimestamp(-5)),
            ("earliest,latest", ResetConfigError::UnreachableStrategy(1)),
            ("bogus", ResetConfigError::Parse("bogus".into())),
            ("offset:x", ResetConfigError::Parse("offset:x".into())),
        ];
        for (chain, want) in table {
            assert_eq!(chain.parse::<ResetPolicy>().unwrap_err(), *want, "{chain}");
        }
        assert_eq!(
            ResetOp::ToOffset(-3).apply(&tp(), None, &log()),
            Err(ResetError::Config(ResetConfigError::NegativeOffset(-3)))
        );
        assert_eq!(
            ResetOp::ToTimestamp(-3).validate(),
            Err(ResetConfigError::NegativeTimestamp(-3))
        );
    }

    #[test]
    fn reset_ops_clamp_and_report() {
        let l = log();
        let cases: &[(ResetOp, Option<i64>, i64, bool)] = &[
            (ResetOp::ToEarliest, Some(105), 100, false),
            (ResetOp::ToLatest, None, 110, false),
            (ResetOp::ToOffset(103), None, 103, false),
            (ResetOp::ToOffset(50), None, 100, true),
            (ResetOp::ToOffset(500), None, 110, true),
            (ResetOp::ToTimestamp(1031), None, 104, false),
            (ResetOp::ToTimestamp(5000), None, 110, false),
            (ResetOp::ShiftBy(-3), Some(105), 102, false),
            (ResetOp::ShiftBy(-30), Some(105), 100, true),
            (ResetOp::ShiftBy(30), Some(105), 110, true),
            (ResetOp::ShiftBy(i64::MAX), Some(105), 110, true),
        ];
        for &(op, cur, want, clamped) in cases {
            let out = op.apply(&tp(), cur, &l).unwrap();
            assert_eq!((out.offset, out.clamped), (want, clamped), "{op:?}");
        }
        assert_eq!(
            ResetOp::ShiftBy(1).apply(&tp(), None, &l),
            Err(ResetError::NothingToShift("t-0".into()))
        );
    }

    #[test]
    fn resolver_errors_and_retention() {
        let mut l = log();
        let other = TopicPartition::new("x", 1);
        assert!(matches!(
            ResetPolicy::single(ResetStrategy::Earliest)
                .unwrap()
                .resolve(&other, &l),
            Err(ResetError::Resolver(InMemoryLogError::UnknownPartition(_)))
        ));
        assert!(l.append(&tp(), 3, 0).is_err());
        l.truncate_before(&tp(), 104).unwrap();
        assert_eq!(l.earliest(&tp()).unwrap(), 104);
        assert_eq!(l.offset_for_timestamp(&tp(), 0).unwrap(), Some(104));
        let out = ResetOp::ShiftBy(-10).apply(&tp(), Some(106), &l).unwrap();
        assert_eq!((out.offset, out.requested, out.clamped), (104, 96, true));
    }

    #[test]
    fn display_round_trips() {
        for s in ["earliest", "latest", "error", "offset:4", "timestamp:9"] {
            assert_eq!(s.parse::<ResetStrategy>().unwrap().to_string(), s);
        }
    }
}
