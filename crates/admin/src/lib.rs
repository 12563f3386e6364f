//! Waterline operator tools: a small async Kafka admin client and the groups/offsets/lag/topics
//! commands.
//!
//! Layout: [`client`] talks to brokers; [`exporter`] polls a cluster and serves Prometheus
//! metrics; [`reset`], [`lag`], [`csvio`], [`files`] and
//! [`timefmt`] are pure logic over plain data (no I/O except the file helpers); [`cli`] wires
//! them into commands and renders tables, JSON and CSV.
#![deny(unsafe_code, missing_docs)]

pub mod cli;
pub mod client;
pub mod codes;
pub mod csvio;
pub mod error;
pub mod exporter;
pub mod files;
pub mod lag;
pub mod reset;
pub mod timefmt;

pub use error::{ClientError, CsvError, FileError, PlanError, ResourceError, TimeParseError};
