//! Shared helpers for Waterline's real-client tests and benchmarks with the Rust `rdkafka`
//! crate: an in-process broker on a loopback port with a temporary data dir.
#![deny(missing_docs)]

use std::net::SocketAddr;

use waterline_broker::{Broker, BrokerConfig, RunningBroker};

/// A broker running in this process on 127.0.0.1 with its own temporary data dir.
pub struct TestBroker {
    broker: Option<RunningBroker>,
    /// Kept alive for as long as the broker runs; removed on drop.
    pub data_dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a broker with default settings on an ephemeral loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a broker after letting the caller adjust its configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut BrokerConfig)) -> anyhow::Result<Self> {
        let data_dir = tempfile::tempdir()?;
        let mut config = BrokerConfig {
            data_dir: data_dir.path().to_path_buf(),
            listen: "127.0.0.1:0".to_string(),
            ..BrokerConfig::default()
        };
        adjust(&mut config);
        let broker = Broker::start(config).await?;
        Ok(Self {
            broker: Some(broker),
            data_dir,
        })
    }

    /// The address to give clients as `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.broker
            .as_ref()
            .map(|b| b.local_addr())
            .expect("broker is running")
    }

    /// Clean shutdown.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(b) = self.broker.take() {
            b.shutdown().await?;
        }
        Ok(())
    }
}
