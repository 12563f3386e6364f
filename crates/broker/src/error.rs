//! Error types of the broker crate.

use std::path::PathBuf;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The TOML text does not parse or has unknown keys.
    #[error("invalid TOML: {0}")]
    Toml(String),
    /// A value is out of its allowed range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Why a request frame could not be turned into a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame is too short to hold a request header.
    #[error("frame of {0} bytes is shorter than a request header")]
    FrameTooShort(usize),
    /// The API key is not one Kafka defines.
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey {
        /// The key read from the frame.
        api_key: i16,
        /// The correlation id read from the frame.
        correlation_id: i32,
    },
    /// The request header itself does not decode.
    #[error("undecodable request header: {0}")]
    BadHeader(String),
    /// The body claims more elements or bytes than the frame holds.
    #[error("request body is malformed: {0}")]
    BadBody(String),
    /// The API version is outside what this broker decodes.
    #[error("unsupported version {version} of API {api_key}")]
    UnsupportedVersion {
        /// The API key.
        api_key: i16,
        /// The version requested.
        version: i16,
        /// The correlation id read from the frame.
        correlation_id: i32,
    },
    /// The response could not be encoded.
    #[error("cannot encode response: {0}")]
    Encode(String),
}

/// Errors of starting, running or stopping the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file or socket operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path or address involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error("data directory {0} is in use by another broker")]
    DataDirLocked(PathBuf),
    /// The partition log reported an error.
    #[error("partition {topic}-{partition}: {source}")]
    Log {
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
        /// The log's error.
        source: waterline_log::LogError,
    },
    /// A persisted metadata file is unreadable.
    #[error("corrupt metadata file {path}: {reason}")]
    CorruptMetadata {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(String),
}

impl BrokerError {
    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BrokerError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
