//! The crate's error type.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use waterline_store::StoreError;

/// Everything the PostgreSQL store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgStoreError {
    /// The table name is not a plain SQL identifier (letters, digits, `_`; at most 63 bytes).
    #[error("invalid table name {0:?}: use letters, digits and '_' only, at most 63 bytes")]
    InvalidTableName(String),
    /// Connecting to the server failed.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// A statement failed (server error, lost connection, serialization failure).
    #[error("PostgreSQL {op} failed: {source}")]
    Query {
        /// What was being done, e.g. "commit offsets".
        op: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A stored row does not describe a valid position (edited by hand, or another schema).
    #[error("corrupt offset row in table {table}: {reason}")]
    CorruptRow {
        /// The offsets table.
        table: String,
        /// What is wrong with the row.
        reason: String,
    },
    /// The store-level checks rejected the batch (e.g. metadata over the limit).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PgStoreError {
    pub(crate) fn query(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| PgStoreError::Query { op, source }
    }
}

/// The [`OffsetStore`](waterline_store::OffsetStore) trait speaks [`StoreError`]; PostgreSQL
/// failures travel as [`StoreError::Io`] (the "path" names the table), corrupt rows as
/// [`StoreError::Corrupt`], so callers keep treating them as "outcome unknown".
impl From<PgStoreError> for StoreError {
    fn from(e: PgStoreError) -> Self {
        match e {
            PgStoreError::Store(s) => s,
            PgStoreError::CorruptRow { table, reason } => StoreError::Corrupt {
                path: PathBuf::from(format!("postgresql:{table}")),
                reason,
            },
            PgStoreError::Query { op, source } => StoreError::Io {
                op,
                path: PathBuf::from("postgresql"),
                source: Arc::new(io::Error::other(source)),
            },
            PgStoreError::Connect(source) => StoreError::Io {
                op: "connect",
                path: PathBuf::from("postgresql"),
                source: Arc::new(io::Error::other(source)),
            },
            other @ PgStoreError::InvalidTableName(_) => StoreError::Io {
                op: "configure",
                path: PathBuf::from("postgresql"),
                source: Arc::new(io::Error::other(other.to_string())),
            },
        }
    }
}
