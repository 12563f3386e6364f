//! DescribeConfigs (32), v1-4: effective topic configuration, and the broker's own settings
//! under Kafka's names (resource type BROKER, name `0`).
//!
//! A broker setting's value comes from, in precedence order: a dynamic value for this broker
//! (DYNAMIC_BROKER_CONFIG), one for the cluster (DYNAMIC_DEFAULT_BROKER_CONFIG), the config
//! file or flags (STATIC_BROKER_CONFIG, when it differs from the built-in default: a value set
//! explicitly to its default reads as a default), the built-in default (DEFAULT_CONFIG). With
//! `include_synonyms` each entry lists every layer that has a value, in that order. Only the
//! broker-wide defaults of topic settings (`log.retention.ms`, `log.cleanup.policy`, ...) are
//! dynamic; the rest are read-only. Resource name `""` describes the cluster-wide dynamic
//! defaults alone.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};

use crate::handlers::sb;
use crate::state::{NODE_ID, SharedState};
use crate::topic_config;
use crate::topics::{DefaultSource, DynamicScope, Topic, TopicDefaults};

use crate::config::{BrokerConfig, FsyncPolicy};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsSynonym;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka ConfigType values.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// One topic config as DescribeConfigs reports it.
pub(crate) struct TopicEntry {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub config_type: i8,
    /// (name, value, source) in Kafka's precedence order: the topic override, the broker
    /// setting, the built-in default.
    pub synonyms: Vec<(&'static str, String, i8)>,
    pub doc: &'static str,
}

/// Every known config of a topic: its override, else the broker's setting, else Kafka's
/// default, with where the value comes from.
pub(crate) fn topic_entries(defaults: &TopicDefaults, t: &Topic) -> Vec<TopicEntry> {
    topic_config::TOPIC_KEYS
        .iter()
        .map(|k| {
            let mut synonyms = Vec::new();
            if let Some(v) = t.overrides.get(k.name) {
                synonyms.push((k.name, v.clone(), SOURCE_TOPIC));
            }
            for (value, source) in defaults.default_layers(k.name) {
                synonyms.push((k.broker_synonym, value, source.code()));
            }
            let (_, value, source) = synonyms[0].clone();
            TopicEntry {
                name: k.name,
                value,
                source,
                config_type: k.ty.code(),
                synonyms,
                doc: k.doc,
            }
        })
        .collect()
}

fn topic_result(
    defaults: &TopicDefaults,
    t: &Topic,
    keys: Option<&[kafka_protocol::protocol::StrBytes]>,
    synonyms: bool,
    documentation: bool,
) -> Vec<DescribeConfigsResourceResult> {
    topic_entries(defaults, t)
        .into_iter()
        .filter(|e| keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name)))
        .map(|entry| {
            let mut e = DescribeConfigsResourceResult::default();
            e.name = sb(entry.name);
            e.value = Some(sb(entry.value));
            e.read_only = false;
            e.config_source = entry.source;
            e.config_type = entry.config_type;
            if documentation {
                e.documentation = Some(sb(entry.doc));
            }
            if synonyms {
                e.synonyms = entry
                    .synonyms
                    .into_iter()
                    .map(|(name, value, source)| {
                        let mut s = DescribeConfigsSynonym::default();
                        s.name = sb(name);
                        s.value = Some(sb(value));
                        s.source = source;
                        s
                    })
                    .collect();
            }
            e
        })
        .collect()
}

/// One broker setting under its Kafka name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BrokerSetting {
    pub name: &'static str,
    /// `None` where Kafka reports a null value (nothing set, e.g. no size-based retention is
    /// reported as -1 instead, as Kafka does).
    pub value: Option<String>,
    pub config_type: i8,
    pub doc: &'static str,
}

/// Every broker setting reported, with its effective value under `config`. `listeners` and
/// `advertised` are the bound and advertised listeners, `PROTOCOL://host:port,...`.
pub(crate) fn broker_settings(
    config: &BrokerConfig,
    listeners: &str,
    advertised: &str,
) -> Vec<BrokerSetting> {
    let g = &config.groups;
    let opt = |v: Option<i64>| v.unwrap_or(-1).to_string();
    // Kafka flushes by count or time; Waterline's `always` fsyncs every acknowledged write
    // (one message), `interval:MS` every MS milliseconds.
    let (flush_messages, flush_ms) = match config.fsync {
        FsyncPolicy::Always => ("1".to_string(), None),
        FsyncPolicy::Interval { ms } => (i64::MAX.to_string(), Some(ms.to_string())),
    };
    let set = |name, value: Option<String>, config_type, doc| BrokerSetting {
        name,
        value,
        config_type,
        doc,
    };
    vec![
        set(
            "node.id",
            Some(NODE_ID.to_string()),
            TYPE_INT,
            "The id of this (only) node.",
        ),
        set(
            "broker.id",
            Some(NODE_ID.to_string()),
            TYPE_INT,
            "The id of this (only) broker.",
        ),
        set(
            "listeners",
            Some(listeners.to_string()),
            TYPE_LIST,
            "Addresses the broker accepts connections on (`listen` / `listeners`).",
        ),
        set(
            "advertised.listeners",
            Some(advertised.to_string()),
            TYPE_LIST,
            "Addresses clients are told to connect to (`advertised` / `advertised_listeners`).",
        ),
        set(
            "connections.max.reauth.ms",
            Some(config.connections_max_reauth_ms.to_string()),
            TYPE_LONG,
            "SASL session lifetime; clients re-authenticate before it ends (`connections_max_reauth_ms`, 0: none).",
        ),
        set(
            "log.dirs",
            Some(config.data_dir.display().to_string()),
            TYPE_STRING,
            "The data directory (`data_dir`).",
        ),
        set(
            "num.partitions",
            Some(config.default_partitions.to_string()),
            TYPE_INT,
            "Partitions of auto-created topics (`default_partitions`).",
        ),
        set(
            "auto.create.topics.enable",
            Some(config.auto_create_topics.to_string()),
            TYPE_BOOLEAN,
            "Create unknown topics on Metadata/Produce (`auto_create_topics`).",
        ),
        set(
            "default.replication.factor",
            Some("1".into()),
            TYPE_INT,
            "One node: every partition has one replica.",
        ),
        set(
            "min.insync.replicas",
            Some("1".into()),
            TYPE_INT,
            "One node: the only replica is always in sync.",
        ),
        set(
            "log.segment.bytes",
            Some(config.segment_bytes.to_string()),
            TYPE_INT,
            "Roll a segment at this size (`segment_bytes`).",
        ),
        set(
            "log.roll.ms",
            Some(opt(config.segment_ms)),
            TYPE_LONG,
            "Roll a segment at this age (`segment_ms`).",
        ),
        set(
            "log.retention.ms",
            Some(opt(config.retention_ms)),
            TYPE_LONG,
            "Delete segments older than this; -1 keeps them (`retention_ms`).",
        ),
        set(
            "log.retention.bytes",
            Some(opt(config.retention_bytes.map(|b| b as i64))),
            TYPE_LONG,
            "Delete old segments above this size per partition; -1: no limit.",
        ),
        set(
            "log.retention.check.interval.ms",
            Some(config.retention_check_ms.to_string()),
            TYPE_LONG,
            "How often retention runs (`retention_check_ms`).",
        ),
        set(
            "log.cleanup.policy",
            Some("delete".into()),
            TYPE_LIST,
            "Default cleanup policy of topics.",
        ),
        set(
            "log.message.timestamp.type",
            Some("CreateTime".into()),
            TYPE_STRING,
            "Records keep the producer's timestamp.",
        ),
        set(
            "compression.type",
            Some("producer".into()),
            TYPE_STRING,
            "Batches are stored as the producer compressed them.",
        ),
        set(
            "log.flush.interval.messages",
            Some(flush_messages),
            TYPE_LONG,
            "1 with `fsync = always`: acknowledged writes are fsynced first.",
        ),
        set(
            "log.flush.interval.ms",
            flush_ms,
            TYPE_LONG,
            "Background fsync period with `fsync = interval:MS`.",
        ),
        set(
            "message.max.bytes",
            Some(config.max_message_bytes.to_string()),
            TYPE_INT,
            "Largest record batch accepted (`max_message_bytes`).",
        ),
        set(
            "socket.request.max.bytes",
            Some(config.max_frame_bytes.to_string()),
            TYPE_INT,
            "Largest request accepted (`max_frame_bytes`).",
        ),
        set(
            "group.initial.rebalance.delay.ms",
            Some(g.initial_rebalance_delay_ms.to_string()),
            TYPE_INT,
            "How long a new group's first rebalance waits for members.",
        ),
        set(
            "group.min.session.timeout.ms",
            Some(g.min_session_timeout_ms.to_string()),
            TYPE_INT,
            "Smallest session timeout a member may ask for.",
        ),
        set(
            "group.max.session.timeout.ms",
            Some(g.max_session_timeout_ms.to_string()),
            TYPE_INT,
            "Largest session timeout a member may ask for.",
        ),
        set(
            "offsets.retention.minutes",
            Some((g.offsets_retention_ms / 60_000).to_string()),
            TYPE_INT,
            "Offsets of a group empty this long are deleted.",
        ),
        set(
            "offset.metadata.max.bytes",
            Some(g.offset_metadata_max_bytes.to_string()),
            TYPE_INT,
            "Longest commit metadata string accepted.",
        ),
    ]
}

/// One broker setting's layers, in precedence order: (value, source).
struct BrokerRow {
    name: &'static str,
    config_type: i8,
    doc: &'static str,
    /// Settable with AlterConfigs (the broker-wide default of an honoured topic key).
    dynamic: bool,
    layers: Vec<(Option<String>, i8)>,
}

/// Every broker setting with its layers: dynamic (this broker, then the cluster), static (file
/// and flags, when it differs from the default), default.
fn broker_rows(state: &SharedState) -> Vec<BrokerRow> {
    let (listen, advertised) = &state.listener_settings;
    let actual = broker_settings(&state.config, listen, advertised);
    // Defaults as `waterline serve` would have them with no file and no flags; the
    // listener addresses are what they are, not settings compared here.
    let defaults = broker_settings(&BrokerConfig::default(), listen, advertised);
    let topic_defaults = state.topics.defaults();
    let dynamic_layers = |name: &str| {
        let mut layers = Vec::new();
        if let Some(v) = topic_defaults.dynamic(DynamicScope::Broker).get(name) {
            layers.push((Some(v.clone()), DefaultSource::DynamicBroker.code()));
        }
        if let Some(v) = topic_defaults.dynamic(DynamicScope::Cluster).get(name) {
            layers.push((Some(v.clone()), DefaultSource::DynamicCluster.code()));
        }
        layers
    };
    let mut rows: Vec<BrokerRow> = actual
        .into_iter()
        .zip(defaults)
        .map(|(a, d)| {
            let dynamic = topic_config::dynamic_broker_key(a.name).is_some();
            let mut layers = dynamic_layers(a.name);
            if a.value != d.value {
                layers.push((a.value, SOURCE_STATIC_BROKER));
            }
            layers.push((d.value, SOURCE_DEFAULT));
            BrokerRow {
                name: a.name,
                config_type: a.config_type,
                doc: a.doc,
                dynamic,
                layers,
            }
        })
        .collect();
    // Dynamic defaults of topic keys that have no static broker setting of their own.
    for k in topic_config::TOPIC_KEYS {
        if topic_config::dynamic_broker_key(k.broker_synonym).is_none()
            || rows.iter().any(|r| r.name == k.broker_synonym)
        {
            continue;
        }
        let mut layers = dynamic_layers(k.broker_synonym);
        layers.push((Some(k.default.to_owned()), SOURCE_DEFAULT));
        rows.push(BrokerRow {
            name: k.broker_synonym,
            config_type: k.ty.code(),
            doc: k.doc,
            dynamic: true,
            layers,
        });
    }
    rows
}

/// The broker resource's entries (`scope` Broker: resource `0`, every setting; Cluster:
/// resource `""`, only the dynamic cluster defaults), filtered by `keys` (`None`: all).
fn broker_entries(
    state: &SharedState,
    scope: DynamicScope,
    keys: Option<&[kafka_protocol::protocol::StrBytes]>,
    synonyms: bool,
    documentation: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let cluster = DefaultSource::DynamicCluster.code();
    broker_rows(state)
        .into_iter()
        .filter(|r| keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == r.name)))
        .filter_map(|mut r| {
            if scope == DynamicScope::Cluster {
                r.layers.retain(|l| l.1 == cluster);
            }
            let (value, source) = r.layers.first().cloned()?;
            let mut e = DescribeConfigsResourceResult::default();
            e.name = sb(r.name);
            e.value = value.map(sb);
            e.read_only = !r.dynamic;
            e.config_source = source;
            e.config_type = r.config_type;
            if documentation {
                e.documentation = Some(sb(r.doc));
            }
            if synonyms {
                e.synonyms = r
                    .layers
                    .into_iter()
                    .map(|(value, source)| {
                        let mut s = DescribeConfigsSynonym::default();
                        s.name = sb(r.name);
                        s.value = value.map(sb);
                        s.source = source;
                        s
                    })
                    .collect();
            }
            Some(e)
        })
        .collect()
}

/// Describes topic and broker resources.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        match res.resource_type {
            RESOURCE_TOPIC => match state.topics.get(&res.resource_name) {
                None => {
                    r.error_code = ResponseError::UnknownTopicOrPartition.code();
                    r.error_message = Some(sb("no such topic"));
                }
                Some(t) => {
                    r.configs = topic_result(
                        &state.topics.defaults(),
                        &t,
                        res.configuration_keys.as_deref(),
                        req.include_synonyms,
                        req.include_documentation,
                    );
                }
            },
            RESOURCE_BROKER
                if res.resource_name.is_empty()
                    || res.resource_name.as_str() == NODE_ID.to_string() =>
            {
                let scope = if res.resource_name.is_empty() {
                    DynamicScope::Cluster
                } else {
                    DynamicScope::Broker
                };
                r.configs = broker_entries(
                    state,
                    scope,
                    res.configuration_keys.as_deref(),
                    req.include_synonyms,
                    req.include_documentation,
                );
            }
            RESOURCE_BROKER => {
                r.error_code = ResponseError::InvalidRequest.code();
                r.error_message = Some(sb("unknown broker id"));
            }
            _ => {
                r.error_code = ResponseError::InvalidRequest.code();
                r.error_message = Some(sb("unsupported resource type"));
            }
        }
        resp.results.push(r);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_util;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;

    #[tokio::test]
    async fn reports_overrides_and_defaults() {
        let (state, _dir) = test_util::state();
        let overrides = [("retention.ms".to_string(), "5000".to_string())].into();
        state.topics.create("t", 1, overrides, false, 0).unwrap();
        let h = test_util::header(ApiKey::DescribeConfigs, 4);
        let mut res = DescribeConfigsResource::default();
        res.resource_type = RESOURCE_TOPIC;
        res.resource_name = sb("t");
        res.configuration_keys = None;
        let mut missing = res.clone();
        missing.resource_name = sb("nope");
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![res, missing];
        let r = handle(&state, &h, req).await;
        let rm = r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .unwrap();
        assert_eq!(rm.value.as_ref().unwrap().as_str(), "5000");
        assert_eq!(rm.config_source, SOURCE_TOPIC);
        let sb_ = r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == "segment.bytes")
            .unwrap();
        assert_eq!(sb_.config_source, SOURCE_DEFAULT);
        assert_eq!(r.results[1].error_code, 3);
    }

    #[tokio::test]
    async fn broker_resource_reports_settings_sources_and_synonyms() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            default_partitions: 4,
            ..BrokerConfig::default()
        };
        let state = std::sync::Arc::new(
            crate::server::build_state(config, "127.0.0.1".into(), 9092).unwrap(),
        );
        let h = test_util::header(ApiKey::DescribeConfigs, 4);
        let mut res = DescribeConfigsResource::default();
        res.resource_type = RESOURCE_BROKER;
        res.resource_name = sb("0");
        res.configuration_keys = None;
        let mut wrong = res.clone();
        wrong.resource_name = sb("7");
        let mut cluster = res.clone();
        cluster.resource_name = sb("");
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![res, wrong, cluster];
        req.include_synonyms = true;
        req.include_documentation = true;
        let r = handle(&state, &h, req).await;
        let find = |name: &str| {
            r.results[0]
                .configs
                .iter()
                .find(|c| c.name.as_str() == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .clone()
        };
        assert_eq!(r.results[0].error_code, 0);
        let parts = find("num.partitions");
        assert_eq!(parts.value.as_deref(), Some("4"));
        assert_eq!(parts.config_source, SOURCE_STATIC_BROKER);
        assert!(parts.read_only);
        assert_eq!(parts.synonyms.len(), 2, "the override, then the default");
        assert_eq!(parts.synonyms[1].value.as_deref(), Some("1"));
        assert_eq!(parts.synonyms[1].source, SOURCE_DEFAULT);
        let retention = find("log.retention.ms");
        assert_eq!(retention.value.as_deref(), Some("604800000"));
        assert_eq!(retention.config_source, SOURCE_DEFAULT);
        assert_eq!(retention.synonyms.len(), 1);
        assert_eq!(retention.config_type, TYPE_LONG);
        assert!(retention.documentation.is_some());
        assert_eq!(
            find("offsets.retention.minutes").value.as_deref(),
            Some("10080")
        );
        assert_eq!(find("auto.create.topics.enable").config_type, TYPE_BOOLEAN);
        assert_eq!(
            find("advertised.listeners").value.as_deref(),
            Some("PLAINTEXT://127.0.0.1:9092")
        );
        assert_eq!(
            r.results[1].error_code,
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            (r.results[2].error_code, r.results[2].configs.len()),
            (0, 0)
        );

        // Asking for some keys returns only those.
        let mut res = DescribeConfigsResource::default();
        res.resource_type = RESOURCE_BROKER;
        res.resource_name = sb("0");
        res.configuration_keys = Some(vec![sb("message.max.bytes"), sb("nope")]);
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![res];
        let r = handle(&state, &h, req).await;
        let names: Vec<&str> = r.results[0]
            .configs
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["message.max.bytes"]);
        assert!(r.results[0].configs[0].synonyms.is_empty());
    }
}
