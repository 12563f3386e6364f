//! The crate's error type.

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
    Connect(tokio_postgres::Error),
    /// A statement failed (server error, lost connection, serialization failure).
    #[error("PostgreSQL {op} failed: {cause}")]
    Query {
        /// What was being done, e.g. "commit offsets".
        op: &'static str,
        /// The driver's error (part of the message, so not also `source()`).
        cause: tokio_postgres::Error,
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
        move |cause| PgStoreError::Query { op, cause }
    }
}

/// The [`OffsetStore`](waterline_store::OffsetStore) trait speaks [`StoreError`]: server and
/// connection failures travel as [`StoreError::Backend`] (outcome unknown), corrupt rows as
/// [`StoreError::Corrupt`] naming the table.
impl From<PgStoreError> for StoreError {
    fn from(e: PgStoreError) -> Self {
        let backend = |op, source: Box<dyn std::error::Error + Send + Sync>| StoreError::Backend {
            backend: "PostgreSQL",
            op,
            cause: Arc::from(source),
        };
        match e {
            PgStoreError::Store(s) => s,
            PgStoreError::CorruptRow { table, reason } => StoreError::Corrupt {
                path: PathBuf::from(format!("postgresql:{table}")),
                reason,
            },
            PgStoreError::Query { op, cause } => backend(op, Box::new(cause)),
            PgStoreError::Connect(source) => backend("connect", Box::new(source)),
            other @ PgStoreError::InvalidTableName(_) => backend("configure", Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_failures_become_backend_errors_naming_the_operation() {
        let e: StoreError = PgStoreError::InvalidTableName("a b".into()).into();
        assert!(
            matches!(
                e,
                StoreError::Backend {
                    backend: "PostgreSQL",
                    op: "configure",
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("PostgreSQL configure failed: invalid table name"),
            "{e}"
        );
        let e: StoreError = PgStoreError::CorruptRow {
            table: "t".into(),
            reason: "negative offset".into(),
        }
        .into();
        assert!(e.to_string().contains("postgresql:t"), "{e}");
    }
}
