//! Waterline's transaction coordinator as a pure state machine (crate docs follow in a later commit).
#![deny(missing_docs)]

mod coordinator;
mod error;
mod record;
mod types;

#[cfg(test)]
mod proptests;

pub use coordinator::TxnCoordinator;
pub use error::{DecodeError, TxnError};
pub use record::{
    DecodedRecords, FORMAT_VERSION, HEADER_LEN, MAX_RECORD_LEN, MAX_STRING_LEN, TxnRecord,
    decode_all,
};
pub use types::*;
