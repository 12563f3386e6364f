//! Typed errors, one enum per subject. Every message names what failed (API, group, topic,
//! partition, file and line) so an operator can act on a single line.

use std::path::PathBuf;

use crate::codes;

/// Errors from the Kafka client: connection, framing, version negotiation and broker errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No bootstrap address was given, or none could be reached.
    #[error("cannot reach any bootstrap server ({addrs}): {reason}")]
    Bootstrap {
        /// The addresses tried, comma-separated.
        addrs: String,
        /// Why the last attempt failed.
        reason: String,
    },
    /// The client settings (`--command-config`) cannot be used.
    #[error("client configuration: {0}")]
    Config(String),
    /// The TLS handshake failed.
    #[error("TLS to {addr}: {message}")]
    Tls {
        /// The broker address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The broker refused the SASL login (or the exchange broke).
    #[error("SASL {mechanism} authentication to {addr} failed: {message}")]
    Authentication {
        /// The broker address.
        addr: String,
        /// The mechanism.
        mechanism: &'static str,
        /// The broker's or the client's reason.
        message: String,
    },
    /// Connecting to a broker failed.
    #[error("connect to {addr}: {cause}")]
    Connect {
        /// The broker address.
        addr: String,
        /// The socket error (part of the message, so not also `source()`).
        cause: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("{api} to {addr}: connection error: {cause}")]
    Io {
        /// The API being called.
        api: &'static str,
        /// The broker address.
        addr: String,
        /// The socket error (part of the message, so not also `source()`).
        cause: std::io::Error,
    },
    /// The broker did not answer within the request timeout.
    #[error("{api} to {addr}: no response within {timeout_ms} ms")]
    Timeout {
        /// The API being called.
        api: &'static str,
        /// The broker address.
        addr: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// The broker announced a response frame outside the accepted size range.
    #[error("{api} from {addr}: response frame of {size} bytes is outside 4..={limit}")]
    FrameSize {
        /// The API being called.
        api: &'static str,
        /// The broker address.
        addr: String,
        /// The announced size.
        size: i64,
        /// The largest accepted frame.
        limit: usize,
    },
    /// The first answer of a connection was not a Kafka frame: the address is most likely not
    /// a Kafka listener (an HTTP port, TLS, another protocol).
    #[error(
        "{addr} does not answer like a Kafka broker (its reply starts with {starts_with}): is this a Kafka listener?"
    )]
    NotKafka {
        /// The address.
        addr: String,
        /// The first bytes of the answer, as text or hex.
        starts_with: String,
    },
    /// The response carried another correlation id than the request.
    #[error("{api} from {addr}: correlation id {got}, expected {expected}")]
    Correlation {
        /// The API being called.
        api: &'static str,
        /// The broker address.
        addr: String,
        /// The id sent.
        expected: i32,
        /// The id received.
        got: i32,
    },
    /// Encoding a request failed (a value does not fit the chosen version).
    #[error("{api} v{version}: cannot encode request: {message}")]
    Encode {
        /// The API being called.
        api: &'static str,
        /// The negotiated version.
        version: i16,
        /// The encoder's message.
        message: String,
    },
    /// A response could not be decoded, or was structurally wrong.
    #[error("{api} v{version} from {addr}: malformed response: {message}")]
    Decode {
        /// The API being called.
        api: &'static str,
        /// The negotiated version.
        version: i16,
        /// The broker address.
        addr: String,
        /// What was wrong.
        message: String,
    },
    /// No API version is supported by both this client and the broker.
    #[error(
        "{api}: no common version (client supports {client_min}..={client_max}, broker {broker})"
    )]
    NoCommonVersion {
        /// The API.
        api: &'static str,
        /// Lowest version this client speaks.
        client_min: i16,
        /// Highest version this client speaks.
        client_max: i16,
        /// The broker's range, or "does not advertise it".
        broker: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{api} failed for {context}: {}", codes::describe(*code))]
    Kafka {
        /// The API being called.
        api: &'static str,
        /// What the error applies to, e.g. `group g1` or `topic t partition 3`.
        context: String,
        /// The Kafka error code.
        code: i16,
    },
    /// The broker's metadata does not list a needed broker, topic or partition.
    #[error("{0}")]
    Metadata(String),
}

impl ClientError {
    /// The Kafka error code, when the broker answered with one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A broker's refusal of one topic or config resource in a batched admin request (CreateTopics,
/// DeleteTopics, CreatePartitions, DescribeConfigs, IncrementalAlterConfigs): the Kafka error
/// code and the broker's own message, which often names the offending key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{api} failed for {resource}: {}{}",
    codes::describe(*code),
    message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
)]
pub struct ResourceError {
    /// The API called.
    pub api: &'static str,
    /// What was refused, e.g. `topic orders` or `broker 1`.
    pub resource: String,
    /// The Kafka error code.
    pub code: i16,
    /// The broker's error message, when it sent one.
    pub message: Option<String>,
}

/// A malformed ISO-8601 duration or datetime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeParseError {
    /// The duration is not `PnDTnHnMnS`-shaped.
    #[error("malformed duration '{input}': {reason} (expected ISO-8601 like P1DT2H30M or PT15M)")]
    Duration {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The datetime is not `YYYY-MM-DDTHH:mm:SS[.sss][zone]`.
    #[error(
        "malformed datetime '{input}': {reason} (expected YYYY-MM-DDTHH:mm:SS.sss with optional zone, e.g. 2024-01-31T12:00:00.000Z)"
    )]
    DateTime {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A line of an offsets CSV file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub message: String,
}

/// Errors reading or writing backup and plan files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (part of the message, so not also `source()`).
        cause: std::io::Error,
    },
    /// The JSON content is not a valid backup or plan.
    #[error("{}: not a valid {kind} file: {message}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// "backup" or "plan".
        kind: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The CSV content is invalid.
    #[error("{}: {cause}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The line-numbered error (part of the message, so not also `source()`).
        cause: CsvError,
    },
}

/// Why a reset cannot be planned from the inputs given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A partition has no committed offset, and the mode needs one (`--to-current`, `--shift-by`).
    #[error("group {group}: {topic} partition {partition} has no committed offset to {mode} from")]
    NoCurrentOffset {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The mode that needs it.
        mode: &'static str,
    },
    /// The log bounds of a partition are unknown.
    #[error("{topic} partition {partition}: log start/end offsets unknown")]
    NoLogBounds {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// `--to-group`: the other group has no offset for a partition being reset.
    #[error("group {other}: no committed offset for {topic} partition {partition}")]
    NoOtherGroupOffset {
        /// The source group.
        other: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// `--from-file`: the file lists no offset for a partition being reset.
    #[error("file gives no offset for {topic} partition {partition}")]
    NoFileOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
}
