//! waterline serve: a single-node server speaking the Kafka wire protocol over the Waterline log.
//!
//! Layout: [`config`] (settings), [`server`] (TCP, connections, shutdown), [`codec`] (frame
//! decoding that never panics, response encoding), [`guard`] (pre-decode bounds checks, from
//! waterline-wire), [`handlers`] (one module per Kafka API), [`topics`] (registry and on-disk
//! layout), [`partition`] (a log behind a mutex plus its high-watermark channel), [`sync`] (group
//! commit), [`producer_ids`] (durable producer-id allocation), [`groups`] (consumer groups and
//! offsets), [`transactions`] (transaction coordinator, state file, markers), [`listener`]
//! (listener strings and protocols), [`auth`] (TLS, SASL sessions, SCRAM credentials).
#![deny(missing_docs)]

pub mod auth;
pub mod budget;
mod cleaner;
pub mod codec;
pub mod config;
pub mod error;
pub mod groups;
pub mod guard;
pub mod handlers;
mod http;
pub mod listener;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod server;
pub mod state;
pub mod sync;
pub mod topic_config;
pub mod topics;
pub mod transactions;

pub use codec::{decode_request, encode_response};
pub use config::{BrokerConfig, FsyncPolicy};
pub use error::{BrokerError, ConfigError, ProtocolError};
pub use server::{Broker, RunningBroker};
pub use state::{BrokerState, SharedState};
