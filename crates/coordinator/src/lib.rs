//! Waterline's consumer-group coordinator as a pure state machine: requests and clock ticks in,
//! responses and timers out.
#![deny(missing_docs)]

mod coordinator;
mod error;
mod group;
mod types;

#[cfg(test)]
mod proptests;

pub use coordinator::GroupCoordinator;
pub use error::GroupError;
pub use types::*;
