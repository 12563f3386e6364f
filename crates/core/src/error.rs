//! Typed errors, one enum per subject.

use thiserror::Error;

/// Why an encoded set of acknowledged offsets could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The string is non-empty but does not carry Waterline's prefix (someone else's metadata).
    #[error("metadata is not a Waterline encoding (missing \"wl1:\" prefix)")]
    ForeignMetadata,
    /// The text after the prefix is not valid standard base64.
    #[error("invalid base64 after the \"wl1:\" prefix")]
    InvalidBase64,
    /// The input ended before a field it announced.
    #[error("encoding truncated while reading {field}")]
    Truncated {
        /// Which field was being read.
        field: &'static str,
    },
    /// The format version byte is not one this build understands.
    #[error("unsupported encoding format version {0}")]
    UnsupportedVersion(u8),
    /// The encoding kind byte is neither run-length nor bitmap.
    #[error("unknown encoding kind {0}")]
    UnknownKind(u8),
    /// A varint is longer than 10 bytes or does not fit in 64 bits.
    #[error("malformed varint in {field}")]
    MalformedVarint {
        /// Which field was being read.
        field: &'static str,
    },
    /// The embedded base offset differs from the committed offset the metadata travels with.
    #[error("encoding is relative to offset {found}, but the committed offset is {expected}")]
    BaseMismatch {
        /// The committed offset.
        expected: i64,
        /// The base found in the encoding.
        found: u64,
    },
    /// Offsets described by the encoding do not fit in a non-negative i64.
    #[error("encoded offsets overflow i64")]
    Overflow,
    /// The structure is well-formed byte-wise but violates the format's rules.
    #[error("invalid encoding: {0}")]
    Invalid(&'static str),
    /// Bytes remain after the announced content.
    #[error("{0} trailing bytes after the encoding")]
    TrailingBytes(usize),
}

/// Why a set of acknowledged offsets could not be built or encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoding would exceed the configured metadata budget.
    #[error("encoded acknowledgements need {needed} bytes, budget is {budget}")]
    OverBudget {
        /// Size of the smallest encoding in the budgeted form.
        needed: usize,
        /// The budget.
        budget: usize,
    },
    /// The ranges are not sorted, disjoint, non-adjacent, non-empty and above the base.
    #[error("invalid acknowledged ranges: {0}")]
    InvalidRanges(&'static str),
}

/// Errors from the offset tracker.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// An ack names an offset that was never handed out.
    #[error("offset {offset} was acknowledged but never handed out (next to hand out: {next})")]
    NotHandedOut {
        /// The acknowledged offset.
        offset: i64,
        /// The next offset the tracker expects to hand out.
        next: i64,
    },
    /// Offsets must be handed out in increasing order; this one is not above the last.
    #[error("offset {offset} handed out out of order (next expected >= {next})")]
    OutOfOrderHandOut {
        /// The offending offset.
        offset: i64,
        /// The lowest offset that may be handed out now.
        next: i64,
    },
    /// The offset is already done (restored from a commit); check `should_process` first.
    #[error("offset {0} is already done and must not be handed out again")]
    AlreadyDone(i64),
    /// Handing this offset out would exceed the tracker's memory window.
    #[error("offset {offset} is {distance} past the commit point, window is {max_window}")]
    WindowExceeded {
        /// The offending offset.
        offset: i64,
        /// Distance from the commit point.
        distance: u64,
        /// Configured maximum window.
        max_window: u64,
    },
    /// Offsets are non-negative in Kafka.
    #[error("negative offset {0}")]
    NegativeOffset(i64),
    /// The offset has no successor in i64 (`i64::MAX` cannot be handed out).
    #[error("offset {0} is out of range")]
    OffsetOutOfRange(i64),
    /// The tracker handles sequence-numbered offsets only; opaque positions bypass it.
    #[error("committed position is opaque (text/bytes); the tracker needs a numeric offset")]
    OpaquePosition,
    /// The committed metadata carries a corrupt Waterline encoding.
    #[error("committed metadata is corrupt: {0}")]
    Metadata(DecodeError),
    /// The acknowledged set no longer fits the budget (admission control was bypassed).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The topic-partition is not assigned to this tracker.
    #[error("partition {0} is not assigned")]
    NotAssigned(String),
    /// The tracker configuration is unusable.
    #[error("invalid tracker configuration: {0}")]
    InvalidConfig(&'static str),
}

// By hand rather than `#[from]`: the message prints the decode error, so it is not also
// returned as `source()` (a printed error chain would show it twice).
impl From<DecodeError> for TrackerError {
    fn from(e: DecodeError) -> Self {
        TrackerError::Metadata(e)
    }
}

/// Invalid arguments to a commit policy.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// "Every N acks" needs N >= 1.
    #[error("commit every N acks needs N >= 1")]
    ZeroCount,
    /// An interval policy needs a positive interval.
    #[error("commit interval must be > 0 ms")]
    ZeroInterval,
    /// A combination needs at least one member.
    #[error("a policy combination needs at least one member")]
    EmptyCombination,
}

/// Invalid reset arguments (detected before any resolver is asked).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ResetConfigError {
    /// A fallback chain must name at least one strategy.
    #[error("reset fallback chain is empty")]
    EmptyChain,
    /// Exact offsets are non-negative.
    #[error("exact reset offset {0} is negative")]
    NegativeOffset(i64),
    /// Timestamps are milliseconds since the epoch, non-negative.
    #[error("reset timestamp {0} is negative")]
    NegativeTimestamp(i64),
    /// A strategy that always decides (earliest, latest, error) is followed by more entries.
    #[error("reset strategy at position {0} can never be reached")]
    UnreachableStrategy(usize),
    /// Text could not be parsed as a reset strategy.
    #[error("cannot parse reset strategy {0:?}")]
    Parse(String),
}

/// Why a reset could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ResetError<E> {
    /// The arguments were invalid.
    #[error(transparent)]
    Config(#[from] ResetConfigError),
    /// The policy says to fail when nothing is committed.
    #[error("no committed offset for {0} and the reset policy is \"error\"")]
    NoCommittedOffset(String),
    /// Every strategy in the chain fell through.
    #[error("no reset strategy resolved an offset for {0}")]
    Unresolved(String),
    /// A shift needs a current position.
    #[error("cannot shift {0}: it has no committed offset")]
    NothingToShift(String),
    /// The log bounds are inconsistent (earliest > latest).
    #[error("log bounds for {tp} are inconsistent: earliest {earliest} > latest {latest}")]
    BadBounds {
        /// The partition.
        tp: String,
        /// Reported earliest offset.
        earliest: i64,
        /// Reported latest offset.
        latest: i64,
    },
    /// The resolver failed.
    #[error("offset resolver failed: {0}")]
    Resolver(E),
}

/// Errors of the in-memory log resolver.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InMemoryLogError {
    /// The partition does not exist in the log.
    #[error("unknown partition {0}")]
    UnknownPartition(String),
    /// Appended offsets or timestamps must not go backwards.
    #[error("offset {offset} does not follow the log end {end}")]
    NonMonotonicOffset {
        /// The appended offset.
        offset: i64,
        /// The log end offset.
        end: i64,
    },
}
