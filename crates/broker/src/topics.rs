//! The topic registry: which topics and partitions exist, their per-topic configuration, and how
//! they are laid out and persisted under the data directory.
//!
//! # On-disk layout (FORMAT)
//! ```text
//! <data_dir>/.lock                         flock held by the running broker
//! <data_dir>/producer_ids                  see producer_ids.rs
//! <data_dir>/dynamic-defaults.toml         [cluster] / [broker]: dynamic broker defaults by
//!                                          Kafka broker setting name (strings)
//! <data_dir>/clean-shutdown                the broker-wide clean-shutdown record (below)
//! <data_dir>/topics/<topic>/topic.toml     partitions = N, [config] overrides (strings)
//! <data_dir>/topics/<topic>/<partition>/   one PartitionLog directory per partition (0..N)
//! ```
//! `topic.toml` is written last on create and rewritten (temp file + fsync + rename + dir fsync)
//! when partitions are added, so it is the commit point: at start a topic directory without it is
//! a create or delete that did not finish and is removed, as are partition directories numbered
//! at or above the committed count.
//!
//! ## `clean-shutdown`: the broker-wide clean-shutdown record (20 bytes)
//! ```text
//! 0..4    magic "WLBC"
//! 4..8    version, u32 big-endian = 1
//! 8..16   number of partition logs closed by that shutdown, u64 big-endian (informational)
//! 16..20  CRC-32C (Castagnoli) of bytes 0..16, u32 big-endian
//! ```
//! Any other content (missing, short, long, wrong magic, version or CRC) means "not clean".
//! The record vouches for every partition log's own `clean-shutdown` marker
//! (`waterline_log::CleanMarker::Vouched`): without it, every log is recovered at start.
//!
//! *Invariant:* the record is present on disk only while no log has been written since every
//! log was closed and flushed. Order at shutdown ([`Topics::close_all`]): each written log's
//! last index entries and snapshot, `syncfs`; each log's marker (tmp + rename), `syncfs`;
//! then, only if every log closed without error, the record: `clean-shutdown.tmp` written
//! and fsynced, renamed over `clean-shutdown`, directory fsynced. Order at start
//! ([`Topics::load`]): the record is read, then removed and the data directory fsynced,
//! *before* any log is opened (opening may write: recovery), so the first write to a log
//! needs no fsync of its own and a kill -9 at any later point finds no record. A crash while
//! writing the record leaves a torn or absent record (not clean: full recovery, never a log
//! wrongly trusted).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use waterline_log::{CleanMarker, CleanupPolicy, LogConfig, PartitionLog, Storage};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::topic_config;

/// Name of the broker-wide clean-shutdown record in the data directory (see the module doc).
const CLEAN_RECORD: &str = "clean-shutdown";
/// Magic of the clean-shutdown record.
const CLEAN_RECORD_MAGIC: &[u8; 4] = b"WLBC";
/// Version of the clean-shutdown record.
const CLEAN_RECORD_VERSION: u32 = 1;
/// Size of the clean-shutdown record.
const CLEAN_RECORD_LEN: usize = 20;

/// The clean-shutdown record for `logs` closed logs (layout in the module doc).
fn encode_clean_record(logs: u64) -> [u8; CLEAN_RECORD_LEN] {
    let mut b = [0u8; CLEAN_RECORD_LEN];
    b[..4].copy_from_slice(CLEAN_RECORD_MAGIC);
    b[4..8].copy_from_slice(&CLEAN_RECORD_VERSION.to_be_bytes());
    b[8..16].copy_from_slice(&logs.to_be_bytes());
    let crc = crc32c::crc32c(&b[..16]);
    b[16..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// The number of logs of a valid clean-shutdown record; `None` for anything else.
fn decode_clean_record(b: &[u8]) -> Option<u64> {
    if b.len() != CLEAN_RECORD_LEN
        || &b[..4] != CLEAN_RECORD_MAGIC
        || b[4..8] != CLEAN_RECORD_VERSION.to_be_bytes()
        || b[16..] != crc32c::crc32c(&b[..16]).to_be_bytes()
    {
        return None;
    }
    Some(u64::from_be_bytes(b[8..16].try_into().ok()?))
}

/// Reads the clean-shutdown record and removes it durably (unlink, then fsync of the data
/// directory) before returning, so nothing written afterwards can be vouched for by it.
/// True if it was present and valid. Must run before any partition log is opened.
fn take_clean_record(storage: &dyn Storage, data_dir: &Path) -> Result<bool, BrokerError> {
    let path = data_dir.join(CLEAN_RECORD);
    if !storage
        .exists(&path)
        .map_err(|e| BrokerError::io("reading", &path, e))?
    {
        return Ok(false);
    }
    let valid = (|| {
        let f = storage.open(&path, false)?;
        let len = f.len()?;
        if len != CLEAN_RECORD_LEN as u64 {
            return Ok(None);
        }
        let mut b = [0u8; CLEAN_RECORD_LEN];
        f.read_at(&mut b, 0)?;
        Ok::<_, std::io::Error>(decode_clean_record(&b))
    })()
    .map_err(|e| BrokerError::io("reading", &path, e))?;
    storage
        .remove_file(&path)
        .map_err(|e| BrokerError::io("removing", &path, e))?;
    storage
        .sync_dir(data_dir)
        .map_err(|e| BrokerError::io("syncing", data_dir, e))?;
    if valid.is_none() {
        tracing::warn!(path = %path.display(), "ignoring an invalid clean-shutdown record");
    }
    Ok(valid.is_some())
}

/// Writes the clean-shutdown record durably: tmp file, fsync, rename, directory fsync.
fn write_clean_record(storage: &dyn Storage, data_dir: &Path, logs: u64) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{CLEAN_RECORD}.tmp"));
    storage.create_dir_all(data_dir)?;
    let f = storage.open(&tmp, true)?;
    f.truncate(0)?;
    f.append(&encode_clean_record(logs))?;
    f.sync()?;
    drop(f);
    storage.rename(&tmp, &data_dir.join(CLEAN_RECORD))?;
    storage.sync_dir(data_dir)
}

/// Name of a topic's metadata file.
const TOPIC_META: &str = "topic.toml";
/// Name of the dynamic broker defaults file in the data dir.
pub const DYNAMIC_DEFAULTS: &str = "dynamic-defaults.toml";
/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME: usize = 249;
/// Upper bound on partitions per topic, so one request cannot open millions of files.
pub const MAX_PARTITIONS: i32 = 10_000;

/// Why a topic operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic already exists.
    #[error("topic {0} already exists")]
    AlreadyExists(String),
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    Unknown(String),
    /// The name is empty, too long, `.`/`..`, or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid topic name {0:?}")]
    InvalidName(String),
    /// The partition count is out of range or does not grow the topic.
    #[error("invalid partition count: {0}")]
    InvalidPartitions(String),
    /// A topic config key or value is not supported.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A storage operation failed.
    #[error(transparent)]
    Storage(#[from] BrokerError),
}

impl TopicError {
    /// The Kafka error code for this error.
    pub fn code(&self) -> i16 {
        use kafka_protocol::ResponseError as E;
        match self {
            TopicError::AlreadyExists(_) => E::TopicAlreadyExists.code(),
            TopicError::Unknown(_) => E::UnknownTopicOrPartition.code(),
            TopicError::InvalidName(_) => E::InvalidTopicException.code(),
            TopicError::InvalidPartitions(_) => E::InvalidPartitions.code(),
            TopicError::InvalidConfig(_) => E::InvalidConfig.code(),
            TopicError::Storage(_) => E::KafkaStorageError.code(),
        }
    }
}

/// Persisted form of a topic (`topic.toml`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicMeta {
    partitions: i32,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

/// One topic: its partitions and configuration. Replaced as a whole when partitions are added.
#[derive(Debug)]
pub struct Topic {
    /// Topic name.
    pub name: Arc<str>,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<Arc<Partition>>,
    /// Per-topic config overrides as given by CreateTopics (Kafka key names).
    pub overrides: BTreeMap<String, String>,
    /// The effective log configuration.
    pub log_config: LogConfig,
    /// The effective topic-level settings.
    pub settings: TopicSettings,
}

/// Broker-wide defaults a topic's effective configuration starts from: the dynamic defaults
/// (AlterConfigs on the broker resource), then the static settings (file and flags), then
/// Kafka's built-in defaults.
#[derive(Clone, Debug)]
pub struct TopicDefaults {
    segment_bytes: u64,
    segment_ms: Option<i64>,
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
    max_message_bytes: usize,
    /// Dynamic defaults for the whole cluster (broker resource `""`), by broker setting name.
    pub dynamic_cluster: BTreeMap<String, String>,
    /// Dynamic defaults of this broker (broker resource `0`); they win over the cluster's.
    pub dynamic_broker: BTreeMap<String, String>,
}

/// Where a topic key's default comes from (DescribeConfigs ConfigSource).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultSource {
    /// Set dynamically on this broker: DYNAMIC_BROKER_CONFIG (2).
    DynamicBroker,
    /// Set dynamically for the cluster: DYNAMIC_DEFAULT_BROKER_CONFIG (3).
    DynamicCluster,
    /// The broker's config file or flags, differing from Kafka's default:
    /// STATIC_BROKER_CONFIG (4).
    Static,
    /// Kafka's built-in default: DEFAULT_CONFIG (5).
    Default,
}

impl DefaultSource {
    /// The wire code.
    pub fn code(self) -> i8 {
        match self {
            DefaultSource::DynamicBroker => 2,
            DefaultSource::DynamicCluster => 3,
            DefaultSource::Static => 4,
            DefaultSource::Default => 5,
        }
    }
}

/// Which dynamic defaults an AlterConfigs on the broker resource changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DynamicScope {
    /// Resource name `""`.
    Cluster,
    /// Resource name `0` (this node).
    Broker,
}

impl TopicDefaults {
    /// Takes the defaults from the broker configuration.
    pub fn from_config(c: &BrokerConfig) -> Self {
        TopicDefaults {
            segment_bytes: c.segment_bytes,
            segment_ms: c.segment_ms,
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            max_message_bytes: c.max_message_bytes,
            dynamic_cluster: BTreeMap::new(),
            dynamic_broker: BTreeMap::new(),
        }
    }

    /// The dynamic defaults of `scope`.
    pub fn dynamic(&self, scope: DynamicScope) -> &BTreeMap<String, String> {
        match scope {
            DynamicScope::Cluster => &self.dynamic_cluster,
            DynamicScope::Broker => &self.dynamic_broker,
        }
    }

    /// Every layer that gives topic key `name` a default, in precedence order (the first is
    /// the effective default; the built-in default is always last).
    pub fn default_layers(&self, name: &str) -> Vec<(String, DefaultSource)> {
        let Some(key) = topic_config::key(name) else {
            return Vec::new();
        };
        let mut layers = Vec::new();
        if let Some(v) = self.dynamic_broker.get(key.broker_synonym) {
            layers.push((v.clone(), DefaultSource::DynamicBroker));
        }
        if let Some(v) = self.dynamic_cluster.get(key.broker_synonym) {
            layers.push((v.clone(), DefaultSource::DynamicCluster));
        }
        let from_static = match name {
            "retention.ms" => Some(self.retention_ms.unwrap_or(-1).to_string()),
            "retention.bytes" => Some(self.retention_bytes.map_or(-1, |b| b as i64).to_string()),
            "segment.bytes" => Some(self.segment_bytes.to_string()),
            "segment.ms" => Some(self.segment_ms.unwrap_or(i64::MAX).to_string()),
            "max.message.bytes" => Some(self.max_message_bytes.to_string()),
            _ => None,
        };
        if let Some(v) = from_static.filter(|v| v != key.default) {
            layers.push((v, DefaultSource::Static));
        }
        layers.push((key.default.to_owned(), DefaultSource::Default));
        layers
    }

    /// The value topic key `name` has without a topic override, and where it comes from.
    pub fn default_value(&self, name: &str) -> (String, DefaultSource) {
        self.default_layers(name)
            .into_iter()
            .next()
            .unwrap_or((String::new(), DefaultSource::Default))
    }

    /// The effective log configuration of a topic with these overrides, or why they are
    /// invalid (every key is checked against [`topic_config::TOPIC_KEYS`]).
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, String> {
        topic_config::validate(overrides)?;
        let value = |name: &str| -> String {
            match overrides.get(name) {
                Some(v) => v.trim().to_owned(),
                None => self.default_value(name).0,
            }
        };
        // Validated above, so these parse.
        let long = |name: &str| value(name).parse::<i64>().unwrap_or(-1);
        let settings = TopicSettings::from_values(&value);
        let cleanup_policy = match (settings.delete, settings.compact) {
            (true, true) => CleanupPolicy::CompactDelete,
            (false, true) => CleanupPolicy::Compact,
            // `delete`, or an empty policy (neither): retention decides, and for an empty
            // policy it is switched off below.
            _ => CleanupPolicy::Delete,
        };
        let mut c = LogConfig {
            segment_bytes: long("segment.bytes") as u64,
            segment_ms: Some(long("segment.ms")),
            retention_ms: non_negative(long("retention.ms")),
            retention_bytes: non_negative(long("retention.bytes")).map(|b| b as u64),
            index_interval_bytes: long("index.interval.bytes") as u64,
            max_batch_bytes: long("max.message.bytes") as usize,
            cleanup_policy,
            delete_retention_ms: long("delete.retention.ms"),
            min_compaction_lag_ms: long("min.compaction.lag.ms"),
            max_compaction_lag_ms: long("max.compaction.lag.ms"),
            min_cleanable_dirty_ratio: value("min.cleanable.dirty.ratio")
                .parse::<f64>()
                .unwrap_or(0.5)
                .clamp(0.0, 1.0),
        };
        if !settings.delete {
            // Compact-only or empty policy: time and size retention delete nothing.
            c.retention_ms = None;
            c.retention_bytes = None;
        }
        Ok(c)
    }

    /// The topic-level settings the broker applies outside the log (validated overrides).
    pub fn settings(&self, overrides: &BTreeMap<String, String>) -> TopicSettings {
        TopicSettings::from_values(&|name: &str| match overrides.get(name) {
            Some(v) => v.trim().to_owned(),
            None => self.default_value(name).0,
        })
    }
}

/// Topic-level behaviour outside the partition log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    /// `cleanup.policy` has `delete`: retention deletes old segments.
    pub delete: bool,
    /// `cleanup.policy` has `compact`: records need keys; the cleaner keeps the latest per key.
    pub compact: bool,
    /// `message.timestamp.type=LogAppendTime`: batches are stamped with the append time.
    pub log_append_time: bool,
}

impl TopicSettings {
    fn from_values(value: &dyn Fn(&str) -> String) -> TopicSettings {
        let (delete, compact) =
            topic_config::parse_cleanup_policy(&value("cleanup.policy")).unwrap_or((true, false));
        TopicSettings {
            delete,
            compact,
            log_append_time: value("message.timestamp.type") == "LogAppendTime",
        }
    }
}

fn non_negative(v: i64) -> Option<i64> {
    (v >= 0).then_some(v)
}

/// Checks Kafka's topic naming rules (which also make the name a safe directory name).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TopicError::InvalidName(name.to_string()))
    }
}

/// All topics hosted by the broker.
pub struct Topics {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    /// Replaced whole when the dynamic defaults change (under `admin`).
    defaults: RwLock<TopicDefaults>,
    map: RwLock<BTreeMap<Arc<str>, Arc<Topic>>>,
    /// Serialises create/delete/grow so the registry and the disk never disagree.
    admin: Mutex<()>,
}

impl Topics {
    /// Loads every committed topic under `<data_dir>/topics`, opening (and if needed recovering)
    /// each partition log. Blocking.
    pub fn load(
        storage: Arc<dyn Storage>,
        data_dir: &Path,
        mut defaults: TopicDefaults,
        now_ms: i64,
    ) -> Result<Topics, BrokerError> {
        let dynamic_path = data_dir.join(DYNAMIC_DEFAULTS);
        if dynamic_path.exists() {
            let meta = read_dynamic(&dynamic_path)?;
            defaults.dynamic_cluster = meta.cluster;
            defaults.dynamic_broker = meta.broker;
        }
        let dir = data_dir.join("topics");
        std::fs::create_dir_all(&dir).map_err(|e| BrokerError::io("creating", &dir, e))?;
        // Before any log is opened (see the module doc's invariant).
        let record_valid = take_clean_record(&*storage, data_dir)?;
        let marker = CleanMarker::Vouched { record_valid };
        let mut map = BTreeMap::new();
        let mut pending = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| BrokerError::io("listing", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| BrokerError::io("listing", &dir, e))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                tracing::warn!(path = %path.display(), "ignoring non-UTF-8 entry in topics dir");
                continue;
            };
            if validate_topic_name(&name).is_err() || !path.is_dir() {
                tracing::warn!(path = %path.display(), "ignoring unexpected entry in topics dir");
                continue;
            }
            let meta_path = path.join(TOPIC_META);
            if !meta_path.exists() {
                tracing::warn!(topic = %name, "removing topic whose create or delete did not finish");
                std::fs::remove_dir_all(&path)
                    .map_err(|e| BrokerError::io("removing", &path, e))?;
                continue;
            }
            let meta = read_meta(&meta_path)?;
            let log_config = defaults.log_config(&meta.config).map_err(|reason| {
                BrokerError::CorruptMetadata {
                    path: meta_path.clone(),
                    reason,
                }
            })?;
            remove_uncommitted_partitions(&path, meta.partitions)?;
            pending.push((name, path, meta, log_config));
        }
        // Every partition of every topic is opened in parallel: a cleanly closed log costs a
        // few small reads (no fsync, no handle kept), one that was not is recovered (scan,
        // truncation, fsyncs), and those are what start-up waits for.
        let jobs: Vec<(usize, Arc<str>, i32)> = pending
            .iter()
            .enumerate()
            .flat_map(|(t, (name, _, meta, _))| {
                let name: Arc<str> = name.as_str().into();
                (0..meta.partitions).map(move |p| (t, name.clone(), p))
            })
            .collect();
        let opened = parallel_map(&jobs, |(t, name, p)| {
            let (_, path, _, log_config) = &pending[*t];
            open_partition(&storage, path, name, *p, log_config, now_ms, marker)
        });
        let mut opened = opened.into_iter();
        let (mut clean, mut recovered) = (0usize, 0usize);
        for (name, _, meta, log_config) in pending {
            let mut partitions = Vec::with_capacity(meta.partitions as usize);
            for _ in 0..meta.partitions {
                let p = opened.next().ok_or_else(|| {
                    BrokerError::Task("a partition of the start-up batch is missing".into())
                })??;
                if p.with_log(|l| l.is_clean()).unwrap_or(false) {
                    clean += 1;
                } else {
                    recovered += 1;
                }
                partitions.push(p);
            }
            tracing::debug!(topic = %name, partitions = meta.partitions, "loaded topic");
            let name: Arc<str> = name.into();
            map.insert(
                name.clone(),
                Arc::new(Topic {
                    name,
                    partitions,
                    settings: defaults.settings(&meta.config),
                    overrides: meta.config,
                    log_config,
                }),
            );
        }
        tracing::info!(
            topics = map.len(),
            partitions = clean + recovered,
            clean,
            recovered,
            "loaded partition logs"
        );
        Ok(Topics {
            dir,
            storage,
            defaults: RwLock::new(defaults),
            map: RwLock::new(map),
            admin: Mutex::new(()),
        })
    }

    /// The topic named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.map.read().get(name).cloned()
    }

    /// One partition, if the topic and partition exist.
    pub fn partition(&self, name: &str, index: i32) -> Option<Arc<Partition>> {
        let topic = self.get(name)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i).cloned())
    }

    /// Every topic, in name order.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        self.map.read().values().cloned().collect()
    }

    /// Every partition of every topic.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.map
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// The broker-wide defaults (a snapshot).
    pub fn defaults(&self) -> TopicDefaults {
        self.defaults.read().clone()
    }

    /// Creates a topic (or only validates the request). Blocking.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(TopicError::InvalidPartitions(format!(
                "{partitions} is not between 1 and {MAX_PARTITIONS}"
            )));
        }
        let _admin = self.admin.lock();
        let defaults = self.defaults();
        let log_config = defaults
            .log_config(&overrides)
            .map_err(TopicError::InvalidConfig)?;
        if self.get(name).is_some() {
            return Err(TopicError::AlreadyExists(name.to_string()));
        }
        let name: Arc<str> = name.into();
        if validate_only {
            return Ok(Arc::new(Topic {
                name,
                partitions: Vec::new(),
                settings: defaults.settings(&overrides),
                overrides,
                log_config,
            }));
        }
        let path = self.dir.join(&*name);
        if path.exists() {
            // Leftover of an unfinished create/delete (no topic.toml, or we would know it).
            std::fs::remove_dir_all(&path).map_err(|e| BrokerError::io("removing", &path, e))?;
        }
        std::fs::create_dir_all(&path).map_err(|e| BrokerError::io("creating", &path, e))?;
        let indexes: Vec<i32> = (0..partitions).collect();
        let parts = parallel_map(&indexes, |&p| {
            open_partition(&self.storage, &path, &name, p, &log_config, now_ms, NEW_LOG)
        })
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
        write_meta(
            &path,
            &TopicMeta {
                partitions,
                config: overrides.clone(),
            },
        )?;
        sync_dir(&self.dir)?;
        let topic = Arc::new(Topic {
            name: name.clone(),
            partitions: parts,
            settings: defaults.settings(&overrides),
            overrides,
            log_config,
        });
        self.map.write().insert(name.clone(), topic.clone());
        tracing::info!(topic = %name, partitions, "created topic");
        Ok(topic)
    }

    /// Returns the topic, creating it with the default partition count if it does not exist.
    /// Blocking.
    pub fn get_or_create(
        &self,
        name: &str,
        partitions: i32,
        now_ms: i64,
    ) -> Result<Arc<Topic>, TopicError> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        match self.create(name, partitions, BTreeMap::new(), false, now_ms) {
            Err(TopicError::AlreadyExists(_)) => self
                .get(name)
                .ok_or_else(|| TopicError::Unknown(name.into())),
            other => other,
        }
    }

    /// Deletes a topic and its data. Blocking.
    pub fn delete(&self, name: &str) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let Some(topic) = self.map.write().remove(name) else {
            return Err(TopicError::Unknown(name.to_string()));
        };
        let path = self.dir.join(name);
        // Removing the metadata first makes the delete stick even if we crash midway.
        let meta = path.join(TOPIC_META);
        std::fs::remove_file(&meta).map_err(|e| BrokerError::io("removing", &meta, e))?;
        sync_dir(&path)?;
        for p in &topic.partitions {
            if let Some(log) = p.take_log()
                && let Err(e) = log.delete()
            {
                tracing::warn!(topic = name, partition = p.index, error = %e, "deleting partition log");
            }
        }
        std::fs::remove_dir_all(&path).map_err(|e| BrokerError::io("removing", &path, e))?;
        sync_dir(&self.dir)?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `total` partitions (or only validates). Blocking.
    pub fn add_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if total <= current || total > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; {total} is not more (or above {MAX_PARTITIONS})"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let path = self.dir.join(name);
        let mut parts = topic.partitions.clone();
        let indexes: Vec<i32> = (current..total).collect();
        for p in parallel_map(&indexes, |&p| {
            open_partition(
                &self.storage,
                &path,
                &topic.name,
                p,
                &topic.log_config,
                now_ms,
                NEW_LOG,
            )
        }) {
            parts.push(p?);
        }
        write_meta(
            &path,
            &TopicMeta {
                partitions: total,
                config: topic.overrides.clone(),
            },
        )?;
        let grown = Arc::new(Topic {
            name: topic.name.clone(),
            partitions: parts,
            overrides: topic.overrides.clone(),
            log_config: topic.log_config.clone(),
            settings: topic.settings,
        });
        self.map.write().insert(topic.name.clone(), grown);
        tracing::info!(topic = name, from = current, to = total, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides with what `next` makes of the current topic (or
    /// only validates that): stored durably in `topic.toml` first, then applied to every
    /// partition log live. `next` runs under the registry's admin lock, so concurrent alters
    /// of one topic never lose each other's changes. Blocking.
    pub fn alter_config(
        &self,
        name: &str,
        validate_only: bool,
        next: impl FnOnce(&Topic) -> Result<BTreeMap<String, String>, String>,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let overrides = next(&topic).map_err(TopicError::InvalidConfig)?;
        let defaults = self.defaults();
        let log_config = defaults
            .log_config(&overrides)
            .map_err(TopicError::InvalidConfig)?;
        if validate_only || topic.overrides == overrides {
            return Ok(());
        }
        write_meta(
            &self.dir.join(name),
            &TopicMeta {
                partitions: topic.partitions.len() as i32,
                config: overrides.clone(),
            },
        )?;
        for p in &topic.partitions {
            p.with_log(|log| log.set_config(log_config.clone()));
        }
        let settings = defaults.settings(&overrides);
        self.install_config(&topic, overrides, log_config, settings);
        tracing::info!(topic = name, "altered topic config");
        Ok(())
    }

    /// Applies a topic's new effective configuration to its partition logs and replaces its
    /// registry entry. Called under the admin lock.
    fn install_config(
        &self,
        topic: &Topic,
        overrides: BTreeMap<String, String>,
        log_config: LogConfig,
        settings: TopicSettings,
    ) {
        for p in &topic.partitions {
            p.with_log(|log| log.set_config(log_config.clone()));
        }
        let altered = Arc::new(Topic {
            name: topic.name.clone(),
            partitions: topic.partitions.clone(),
            settings,
            overrides,
            log_config,
        });
        self.map.write().insert(topic.name.clone(), altered);
    }

    /// Replaces the dynamic defaults of `scope` with what `next` makes of the current ones (or
    /// only validates that): stored durably in `<data_dir>/dynamic-defaults.toml` first, then
    /// applied live to every topic whose effective configuration changes. Blocking.
    pub fn alter_defaults(
        &self,
        scope: DynamicScope,
        validate_only: bool,
        next: impl FnOnce(&TopicDefaults) -> Result<BTreeMap<String, String>, String>,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let mut defaults = self.defaults();
        let settings = next(&defaults).map_err(TopicError::InvalidConfig)?;
        topic_config::validate_in(topic_config::Scope::Broker, &settings)
            .map_err(TopicError::InvalidConfig)?;
        match scope {
            DynamicScope::Cluster => defaults.dynamic_cluster = settings,
            DynamicScope::Broker => defaults.dynamic_broker = settings,
        }
        // Every topic must still be valid under the new defaults.
        let topics = self.list();
        let mut changed = Vec::new();
        for t in &topics {
            let log_config = defaults
                .log_config(&t.overrides)
                .map_err(|e| TopicError::InvalidConfig(format!("topic {}: {e}", t.name)))?;
            let settings = defaults.settings(&t.overrides);
            if log_config != t.log_config || settings != t.settings {
                changed.push((t.clone(), log_config, settings));
            }
        }
        if validate_only {
            return Ok(());
        }
        let data_dir = self.dir.parent().unwrap_or(&self.dir);
        write_dynamic(
            &data_dir.join(DYNAMIC_DEFAULTS),
            &DynamicMeta {
                cluster: defaults.dynamic_cluster.clone(),
                broker: defaults.dynamic_broker.clone(),
            },
        )?;
        *self.defaults.write() = defaults;
        for (t, log_config, settings) in changed {
            self.install_config(&t, t.overrides.clone(), log_config, settings);
        }
        tracing::info!(?scope, "altered dynamic broker defaults");
        Ok(())
    }

    /// Closes every partition log cleanly; returns how many failed (each is logged).
    /// Blocking.
    ///
    /// A log not written since a clean open has nothing to do. The others are closed in three
    /// steps with two flushes of the whole storage instead of several fsyncs per log (see
    /// `PartitionLog::prepare_close`): write each log's last index entries and snapshot, flush,
    /// write each marker, flush. A log whose step fails, or every log if a flush fails, is
    /// left without a marker and recovered at the next start. Storages without a whole-storage
    /// flush close logs one by one. Each step runs on [`PARALLEL_LOG_IO`] threads.
    ///
    /// Then, only if every log closed without error, writes the broker-wide clean-shutdown
    /// record (see the module doc) so that the next start trusts the logs' markers.
    pub fn close_all(&self) -> usize {
        let (failed, closed) = self.close_logs();
        if failed == 0 {
            let data_dir = self.dir.parent().unwrap_or(&self.dir);
            if let Err(e) = write_clean_record(&*self.storage, data_dir, closed as u64) {
                tracing::error!(dir = %data_dir.display(), error = %e,
                    "writing the clean-shutdown record failed; the logs will be recovered at the next start");
            }
        }
        failed
    }

    /// The logs' part of [`Topics::close_all`]: (failed, closed before the call).
    fn close_logs(&self) -> (usize, usize) {
        let logs: Vec<(Arc<Partition>, Mutex<Option<PartitionLog>>)> = self
            .all_partitions()
            .into_iter()
            .filter_map(|p| p.take_log().map(|l| (p, Mutex::new(Some(l)))))
            .collect();
        let total = logs.len();
        let report = |p: &Partition, step: &str, e: &dyn std::fmt::Display| {
            tracing::error!(topic = %p.topic, partition = p.index, error = %e, step, "closing partition log");
        };
        // Ok(true): prepared; Ok(false): nothing to do; Err: failed (reported).
        let prepared: Vec<Result<bool, ()>> = parallel_map(&logs, |(p, log)| {
            let mut slot = log.lock();
            let Some(l) = slot.as_mut() else {
                return Ok(false);
            };
            l.prepare_close().map_err(|e| report(p, "prepare", &e))
        });
        let prepare_failed = prepared.iter().filter(|r| r.is_err()).count();
        let logs: Vec<_> = logs
            .into_iter()
            .zip(prepared)
            .filter(|(_, r)| *r == Ok(true))
            .map(|(l, _)| l)
            .collect();
        if logs.is_empty() {
            return (prepare_failed, total);
        }
        // From here, a log counts as failed until its marker is durable.
        let failed = prepare_failed + logs.len();
        match self.storage.sync_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                let closed: usize = parallel_map(&logs, |(p, log)| {
                    let Some(l) = log.lock().take() else { return 0 };
                    match l.close() {
                        Ok(()) => 1,
                        Err(e) => {
                            report(p, "close", &e);
                            0
                        }
                    }
                })
                .into_iter()
                .sum();
                return (failed - closed, total);
            }
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e,
                    "flushing partition logs at shutdown failed; they will be recovered at the next start");
                return (failed, total);
            }
        }
        let finished: usize = parallel_map(&logs, |(p, log)| {
            let Some(l) = log.lock().take() else { return 0 };
            match l.finish_close() {
                Ok(()) => 1,
                Err(e) => {
                    report(p, "marker", &e);
                    0
                }
            }
        })
        .into_iter()
        .sum();
        if let Err(e) = self.storage.sync_all(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e,
                "flushing clean-shutdown markers failed; the logs will be recovered at the next start");
            return (failed, total);
        }
        (failed - finished, total)
    }
}

/// Threads that open, recover or close partition logs at once. The work is mostly waiting
/// for the disk (fsyncs, small reads), so more threads than cores keep it busy.
const PARALLEL_LOG_IO: usize = 16;

/// Runs `f` on every item, on up to [`PARALLEL_LOG_IO`] threads; results in input order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..items.len().min(PARALLEL_LOG_IO) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else {
                        return;
                    };
                    *results[i].lock() = Some(f(item));
                }
            });
        }
    });
    // Every index below items.len() was taken by exactly one worker, which stored its result
    // before taking the next; the scope joined them all.
    results
        .into_iter()
        .map(|r| r.into_inner().expect("every item was processed"))
        .collect()
}

/// How logs created while the broker runs treat markers: the record was taken at start.
const NEW_LOG: CleanMarker = CleanMarker::Vouched {
    record_valid: false,
};

fn open_partition(
    storage: &Arc<dyn Storage>,
    topic_dir: &Path,
    topic: &Arc<str>,
    index: i32,
    config: &LogConfig,
    now_ms: i64,
    marker: CleanMarker,
) -> Result<Arc<Partition>, BrokerError> {
    let dir = topic_dir.join(index.to_string());
    let log = PartitionLog::open_with(storage.clone(), dir, config.clone(), now_ms, marker)
        .map_err(|source| BrokerError::Log {
            topic: topic.to_string(),
            partition: index,
            source,
        })?;
    for r in log.recovery_repairs() {
        tracing::warn!(%topic, partition = index, path = %r.path.display(), position = r.position,
            reason = %r.reason, "damaged file repaired at start-up (truncated at the first bad byte)");
    }
    Ok(Partition::new(topic.clone(), index, log))
}

/// Persisted dynamic broker defaults (`dynamic-defaults.toml`), by broker setting name.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DynamicMeta {
    #[serde(default)]
    cluster: BTreeMap<String, String>,
    #[serde(default)]
    broker: BTreeMap<String, String>,
}

fn read_dynamic(path: &Path) -> Result<DynamicMeta, BrokerError> {
    let text = std::fs::read_to_string(path).map_err(|e| BrokerError::io("reading", path, e))?;
    let corrupt = |reason: String| BrokerError::CorruptMetadata {
        path: path.to_path_buf(),
        reason,
    };
    let meta: DynamicMeta = toml::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    for settings in [&meta.cluster, &meta.broker] {
        topic_config::validate_in(topic_config::Scope::Broker, settings).map_err(corrupt)?;
    }
    Ok(meta)
}

fn write_dynamic(path: &Path, meta: &DynamicMeta) -> Result<(), BrokerError> {
    let text = toml::to_string(meta).map_err(|e| BrokerError::CorruptMetadata {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_durably(path, text.as_bytes())
}

fn read_meta(path: &Path) -> Result<TopicMeta, BrokerError> {
    let text = std::fs::read_to_string(path).map_err(|e| BrokerError::io("reading", path, e))?;
    let meta: TopicMeta = toml::from_str(&text).map_err(|e| BrokerError::CorruptMetadata {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !(1..=MAX_PARTITIONS).contains(&meta.partitions) {
        return Err(BrokerError::CorruptMetadata {
            path: path.to_path_buf(),
            reason: format!("partition count {} out of range", meta.partitions),
        });
    }
    Ok(meta)
}

fn write_meta(topic_dir: &Path, meta: &TopicMeta) -> Result<(), BrokerError> {
    let text = toml::to_string(meta).map_err(|e| BrokerError::CorruptMetadata {
        path: topic_dir.join(TOPIC_META),
        reason: e.to_string(),
    })?;
    write_durably(&topic_dir.join(TOPIC_META), text.as_bytes())
}

/// Removes partition directories at or above the committed count (an unfinished grow).
fn remove_uncommitted_partitions(topic_dir: &Path, count: i32) -> Result<(), BrokerError> {
    let entries =
        std::fs::read_dir(topic_dir).map_err(|e| BrokerError::io("listing", topic_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BrokerError::io("listing", topic_dir, e))?;
        let name = entry.file_name();
        if let Some(n) = name.to_str().and_then(|s| s.parse::<i32>().ok())
            && n >= count
        {
            let path = entry.path();
            tracing::warn!(path = %path.display(), "removing partition beyond committed count");
            std::fs::remove_dir_all(&path).map_err(|e| BrokerError::io("removing", &path, e))?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync the dir.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), BrokerError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| BrokerError::io("creating", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| BrokerError::io("writing", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| BrokerError::io("renaming", &tmp, e))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Fsyncs a directory so creates, renames and deletes in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BrokerError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BrokerError::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["a", "orders.v1", "A_b-c", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(250), "../x"] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_are_validated_and_applied() {
        let d = TopicDefaults::from_config(&BrokerConfig::default());
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "-1".to_string());
        o.insert("segment.bytes".to_string(), "4096".to_string());
        let c = d.log_config(&o).unwrap();
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.segment_bytes, 4096);
        for (k, v) in [
            ("segment.bytes", "10"),
            ("retention.ms", "x"),
            ("cleanup.policy", "shred"),
            ("foo", "1"),
        ] {
            let o = BTreeMap::from([(k.to_string(), v.to_string())]);
            assert!(d.log_config(&o).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn compact_only_topics_keep_segments_and_settings_follow_overrides() {
        let d = TopicDefaults::from_config(&BrokerConfig::default());
        let o = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "message.timestamp.type".to_string(),
                "LogAppendTime".to_string(),
            ),
        ]);
        let c = d.log_config(&o).unwrap();
        assert_eq!((c.retention_ms, c.retention_bytes), (None, None));
        let s = d.settings(&o);
        assert!(s.compact && !s.delete && s.log_append_time);
        let both = BTreeMap::from([("cleanup.policy".to_string(), "compact,delete".to_string())]);
        assert_eq!(d.log_config(&both).unwrap().retention_ms, Some(604_800_000));
        let plain = d.settings(&BTreeMap::new());
        assert!(plain.delete && !plain.compact && !plain.log_append_time);
        // Defaults come from the broker's settings where it has them.
        let custom = TopicDefaults::from_config(&BrokerConfig {
            retention_ms: Some(1000),
            ..BrokerConfig::default()
        });
        assert_eq!(
            custom.default_value("retention.ms"),
            ("1000".to_string(), DefaultSource::Static)
        );
        assert_eq!(
            d.default_value("retention.ms"),
            ("604800000".to_string(), DefaultSource::Default)
        );
        assert_eq!(
            d.default_value("delete.retention.ms"),
            ("86400000".to_string(), DefaultSource::Default)
        );
        // Dynamic defaults win: this broker's over the cluster's over the static setting.
        let mut dynamic = custom.clone();
        dynamic
            .dynamic_cluster
            .insert("log.retention.ms".into(), "2000".into());
        assert_eq!(
            dynamic.default_value("retention.ms"),
            ("2000".to_string(), DefaultSource::DynamicCluster)
        );
        dynamic
            .dynamic_broker
            .insert("log.retention.ms".into(), "3000".into());
        let layers: Vec<DefaultSource> = dynamic
            .default_layers("retention.ms")
            .into_iter()
            .map(|l| l.1)
            .collect();
        assert_eq!(
            layers,
            vec![
                DefaultSource::DynamicBroker,
                DefaultSource::DynamicCluster,
                DefaultSource::Static,
                DefaultSource::Default
            ]
        );
        assert_eq!(
            dynamic.log_config(&BTreeMap::new()).unwrap().retention_ms,
            Some(3000)
        );
    }

    /// The broker-wide record vouches for the logs' markers at the start after a clean
    /// shutdown only: it is gone once the broker has started, so a kill -9 at any later point
    /// recovers every log, markers notwithstanding; a torn record is not clean.
    #[test]
    fn clean_shutdown_record_vouches_for_markers_until_the_next_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(waterline_log::FsStorage::new());
        let defaults = TopicDefaults::from_config(&BrokerConfig::default());
        let load = || Topics::load(storage.clone(), dir.path(), defaults.clone(), 0).unwrap();
        let clean = |t: &Topics| {
            t.get("t")
                .unwrap()
                .partitions
                .iter()
                .map(|p| p.with_log(|l| l.is_clean()).unwrap())
                .collect::<Vec<_>>()
        };
        let record = dir.path().join(CLEAN_RECORD);
        let topics = load();
        topics.create("t", 3, BTreeMap::new(), false, 0).unwrap();
        assert_eq!(topics.close_all(), 0);
        let bytes = std::fs::read(&record).unwrap();
        assert_eq!(decode_clean_record(&bytes), Some(3));

        let topics = load();
        assert!(!record.exists(), "taken before any log is opened");
        assert_eq!(clean(&topics), vec![true; 3]);
        drop(topics); // kill -9: no close

        let topics = load();
        assert!(dir.path().join("topics/t/0/clean-shutdown").exists());
        assert_eq!(
            clean(&topics),
            vec![false; 3],
            "stale markers are not trusted"
        );
        assert_eq!(topics.close_all(), 0);

        std::fs::write(&record, &encode_clean_record(3)[..10]).unwrap();
        let topics = load();
        assert_eq!(clean(&topics), vec![false; 3], "a torn record is not clean");
        assert!(!record.exists());
        assert_eq!(topics.close_all(), 0);
        assert_eq!(clean(&load()), vec![true; 3]);
    }

    #[test]
    fn dynamic_defaults_apply_live_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(waterline_log::FsStorage::new());
        let defaults = TopicDefaults::from_config(&BrokerConfig::default());
        let topics = Topics::load(storage.clone(), dir.path(), defaults.clone(), 0).unwrap();
        topics
            .create("follows", 1, BTreeMap::new(), false, 0)
            .unwrap();
        let pinned = BTreeMap::from([("retention.ms".to_string(), "42".to_string())]);
        topics.create("pinned", 1, pinned, false, 0).unwrap();
        let set = |k: &str, v: &str| {
            let m = BTreeMap::from([(k.to_string(), v.to_string())]);
            move |_: &TopicDefaults| Ok(m)
        };
        topics
            .alter_defaults(
                DynamicScope::Cluster,
                false,
                set("log.retention.ms", "5000"),
            )
            .unwrap();
        let retention = |t: &Topics, name: &str| {
            let topic = t.get(name).unwrap();
            let live = topic.partitions[0]
                .with_log(|l| l.config().retention_ms)
                .flatten();
            assert_eq!(
                live, topic.log_config.retention_ms,
                "registry and log agree"
            );
            live
        };
        assert_eq!(retention(&topics, "follows"), Some(5000));
        assert_eq!(retention(&topics, "pinned"), Some(42), "overrides win");
        // This broker's value wins over the cluster's.
        topics
            .alter_defaults(DynamicScope::Broker, false, set("log.retention.ms", "6000"))
            .unwrap();
        assert_eq!(retention(&topics, "follows"), Some(6000));
        // validate_only and refused changes leave everything as it was.
        topics
            .alter_defaults(DynamicScope::Broker, true, set("log.retention.ms", "7000"))
            .unwrap();
        let refused = topics
            .alter_defaults(DynamicScope::Broker, false, set("num.partitions", "3"))
            .unwrap_err();
        assert!(refused.to_string().contains("num.partitions"), "{refused}");
        assert_eq!(retention(&topics, "follows"), Some(6000));
        topics.close_all();
        drop(topics);
        let reloaded = Topics::load(storage, dir.path(), defaults, 0).unwrap();
        assert_eq!(retention(&reloaded, "follows"), Some(6000));
        let d = reloaded.defaults();
        assert_eq!(d.dynamic_cluster["log.retention.ms"], "5000");
        assert_eq!(
            d.default_value("retention.ms"),
            ("6000".to_string(), DefaultSource::DynamicBroker)
        );
        reloaded.close_all();
    }
}
