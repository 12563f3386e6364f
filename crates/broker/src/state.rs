//! Shared broker state handed to every request handler.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::BrokerConfig;
use crate::producer_ids::ProducerIds;
use crate::sync::SyncManager;
use crate::topics::Topics;

/// The id of this (only) broker node.
pub const NODE_ID: i32 = 0;
/// Cluster id reported in Metadata.
pub const CLUSTER_ID: &str = "waterline";

/// Everything handlers share. New subsystems (e.g. consumer groups) are added as fields here.
pub struct BrokerState {
    /// The configuration the broker was started with.
    pub config: BrokerConfig,
    /// Host clients are told to connect to.
    pub advertised_host: String,
    /// Port clients are told to connect to.
    pub advertised_port: i32,
    /// Topics and their partition logs.
    pub topics: Topics,
    /// Producer id allocation.
    pub producer_ids: ProducerIds,
    /// Group commit of appended data.
    pub sync: SyncManager,
    /// Consumer groups and committed offsets.
    pub groups: crate::groups::Groups,
    /// Transactions: coordinator, state file, markers.
    pub transactions: crate::transactions::Transactions,
    /// SCRAM credentials (`<data_dir>/scram-credentials`).
    pub credentials: crate::auth::Credentials,
    /// SASL mechanisms offered on SASL listeners.
    pub mechanisms: Vec<waterline_sasl::Mechanism>,
    /// Cancelled when the broker shuts down: long polls return early.
    pub shutdown: CancellationToken,
    /// Request, connection and fsync metrics (served with `http_listen`).
    pub metrics: crate::metrics::BrokerMetrics,
}

impl BrokerState {
    /// Milliseconds since the Unix epoch (the log takes time as an input).
    pub fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Shared handle on the broker state.
pub type SharedState = Arc<BrokerState>;
