//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! IncrementalAlterConfigs and DescribeLogDirs, at the best version both sides speak.
//!
//! Batched requests answer per topic or resource. A broker's refusal of one item (its Kafka
//! error code and message) is a [`ResourceError`] in that item's [`ResourceOutcome`], not an
//! `Err` of the call: the other items may have succeeded. `Err` means the request itself
//! failed (connection, version, malformed response).
//!
//! Topic creation, deletion and growth go to the controller (Kafka with ZooKeeper answers
//! NOT_CONTROLLER elsewhere; KRaft brokers and `waterline serve` accept them anywhere).
//! Broker configs go to the broker they describe; topic configs to any broker.

use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, IncrementalAlterConfigsRequest, TopicName,
    create_partitions_request::CreatePartitionsTopic,
    create_topics_request::{CreatableTopic, CreatableTopicConfig},
    delete_topics_request::DeleteTopicState,
    describe_configs_request::DescribeConfigsResource,
    describe_configs_response::DescribeConfigsResourceResult,
    describe_log_dirs_request::DescribableLogDirTopic,
    incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

use super::{AdminClient, self_timeout_ms};
use crate::codes;
use crate::error::{ClientError, ResourceError};
use waterline_core::TopicPartition;

/// Kafka resource type code of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka resource type code of a broker.
const RESOURCE_BROKER: i8 = 4;
/// How many times a controller request is sent again after NOT_CONTROLLER.
const CONTROLLER_ATTEMPTS: u32 = 3;
/// Pause before asking again for the controller.
const CONTROLLER_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// Partition count; `None` leaves it to the broker's default (CreateTopics v4+).
    pub partitions: Option<i32>,
    /// Replication factor; `None` leaves it to the broker's default (CreateTopics v4+).
    pub replication_factor: Option<i16>,
    /// Topic config overrides, `(key, value)`, in the order given.
    pub configs: Vec<(String, String)>,
}

/// What happened to one topic or resource of a batched request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceOutcome {
    /// The topic name (or resource name).
    pub name: String,
    /// `Ok` when the broker applied (or, validating only, accepted) it.
    pub result: Result<(), ResourceError>,
}

impl ResourceOutcome {
    fn from_code(api: &'static str, name: String, code: i16, message: Option<String>) -> Self {
        let result = if code == codes::NONE {
            Ok(())
        } else {
            Err(ResourceError {
                api,
                resource: format!("topic {name}"),
                code,
                message: message.filter(|m| !m.is_empty()),
            })
        };
        ResourceOutcome { name, result }
    }
}

/// A config resource: a topic, or a broker by node id (`""`: the cluster-wide defaults).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker, by node id as text; `""` names the cluster-wide dynamic defaults.
    Broker(String),
}

impl ConfigResource {
    fn wire(&self) -> (i8, &str) {
        match self {
            ConfigResource::Topic(n) => (RESOURCE_TOPIC, n),
            ConfigResource::Broker(n) => (RESOURCE_BROKER, n),
        }
    }

    /// `topic NAME` or `broker ID` for messages.
    pub fn describe(&self) -> String {
        match self {
            ConfigResource::Topic(n) => format!("topic {n}"),
            ConfigResource::Broker(n) if n.is_empty() => "cluster-wide broker defaults".into(),
            ConfigResource::Broker(n) => format!("broker {n}"),
        }
    }
}

/// Where a config value comes from (DescribeConfigs v1+ `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConfigSource {
    /// 1: set on this topic.
    Topic,
    /// 2: set dynamically on this broker.
    DynamicBroker,
    /// 3: set dynamically as the cluster-wide default.
    DynamicDefault,
    /// 4: set in the broker's static configuration (file or flags).
    StaticBroker,
    /// 5: the built-in default.
    Default,
    /// Any other code (logger, client metrics, group configs, unknown).
    Other(i8),
}

impl ConfigSource {
    /// From Kafka's `ConfigSource` code.
    pub fn from_code(code: i8) -> Self {
        match code {
            1 => ConfigSource::Topic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefault,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }

    /// Kafka's code.
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::Topic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefault => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
            ConfigSource::Other(c) => c,
        }
    }

    /// A short name for output: `topic`, `dynamic-broker`, `dynamic-default`,
    /// `static-broker`, `default`, or `other(N)`.
    pub fn name(self) -> String {
        match self {
            ConfigSource::Topic => "topic".into(),
            ConfigSource::DynamicBroker => "dynamic-broker".into(),
            ConfigSource::DynamicDefault => "dynamic-default".into(),
            ConfigSource::StaticBroker => "static-broker".into(),
            ConfigSource::Default => "default".into(),
            ConfigSource::Other(c) => format!("other({c})"),
        }
    }
}

/// One config entry from DescribeConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key, e.g. `cleanup.policy`.
    pub name: String,
    /// Value; `None` when the broker withholds it (sensitive) or has none.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it cannot be changed at run time.
    pub read_only: bool,
    /// Whether the value is secret.
    pub sensitive: bool,
    /// Synonyms in precedence order, `(name, value, source)`, when asked for.
    pub synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// The configs of one resource, or why the broker refused to describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfigs {
    /// The resource.
    pub resource: ConfigResource,
    /// Its entries, in the broker's order.
    pub result: Result<Vec<ConfigEntry>, ResourceError>,
}

/// One change of IncrementalAlterConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Set `key` to `value` (operation 0).
    Set(String, String),
    /// Remove the override of `key`, back to the inherited value (operation 1).
    Delete(String),
}

impl AlterConfigOp {
    fn wire(&self) -> AlterableConfig {
        match self {
            AlterConfigOp::Set(k, v) => AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(v.clone()))),
            AlterConfigOp::Delete(k) => AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(1)
                .with_value(None),
        }
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn opt_string(s: Option<StrBytes>) -> Option<String> {
    s.map(|s| s.to_string())
}

impl AdminClient {
    /// The controller's address (for topic creation, deletion and growth), from a fresh
    /// Metadata request; the bootstrap broker when none is reported.
    async fn controller_addr(&mut self) -> Result<String, ClientError> {
        let meta = self.metadata(Some(&[])).await?;
        match meta.controller_id {
            Some(id) if self.brokers.contains_key(&id) => self.node_addr(id),
            _ => Ok(self.any_addr()),
        }
    }

    /// Runs a controller request; sends it again (after looking the controller up anew) while
    /// every item answers NOT_CONTROLLER.
    async fn with_controller(
        &mut self,
        mut op: impl AsyncFnMut(&mut Self, String) -> Result<Vec<ResourceOutcome>, ClientError>,
    ) -> Result<Vec<ResourceOutcome>, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let addr = self.controller_addr().await?;
            let outcomes = op(self, addr).await?;
            let moved = !outcomes.is_empty()
                && outcomes.iter().all(|o| {
                    o.result
                        .as_ref()
                        .is_err_and(|e| e.code == codes::NOT_CONTROLLER)
                });
            if !moved || attempt >= CONTROLLER_ATTEMPTS {
                return Ok(outcomes);
            }
            tokio::time::sleep(CONTROLLER_BACKOFF).await;
        }
    }

    /// Creates `topics` (or, with `validate_only`, asks the broker whether it would).
    /// One outcome per topic, in the order given.
    pub async fn create_topics(
        &mut self,
        topics: &[NewTopic],
        validate_only: bool,
    ) -> Result<Vec<ResourceOutcome>, ClientError> {
        let timeout_ms = self_timeout_ms(&self.settings);
        self.with_controller(async |this, addr| {
            let (_, resp) = this
                .send(&addr, |_| {
                    CreateTopicsRequest::default()
                        .with_timeout_ms(timeout_ms)
                        .with_validate_only(validate_only)
                        .with_topics(
                            topics
                                .iter()
                                .map(|t| {
                                    CreatableTopic::default()
                                        .with_name(topic_name(&t.name))
                                        .with_num_partitions(t.partitions.unwrap_or(-1))
                                        .with_replication_factor(t.replication_factor.unwrap_or(-1))
                                        .with_configs(
                                            t.configs
                                                .iter()
                                                .map(|(k, v)| {
                                                    CreatableTopicConfig::default()
                                                        .with_name(StrBytes::from_string(k.clone()))
                                                        .with_value(Some(StrBytes::from_string(
                                                            v.clone(),
                                                        )))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .await?;
            let answers = resp
                .topics
                .into_iter()
                .map(|r| {
                    (
                        r.name.0.to_string(),
                        (r.error_code, opt_string(r.error_message)),
                    )
                })
                .collect();
            in_request_order(
                "CreateTopics",
                &addr,
                topics.iter().map(|t| t.name.as_str()),
                answers,
            )
        })
        .await
    }

    /// Deletes `topics`. One outcome per topic, in the order given.
    pub async fn delete_topics(
        &mut self,
        topics: &[String],
    ) -> Result<Vec<ResourceOutcome>, ClientError> {
        let timeout_ms = self_timeout_ms(&self.settings);
        self.with_controller(async |this, addr| {
            let (_, resp) = this
                .send(&addr, |v| {
                    let req = DeleteTopicsRequest::default().with_timeout_ms(timeout_ms);
                    // v6 names topics in `topics` (by name or id); older versions in
                    // `topic_names`.
                    if v >= 6 {
                        req.with_topics(
                            topics
                                .iter()
                                .map(|t| DeleteTopicState::default().with_name(Some(topic_name(t))))
                                .collect(),
                        )
                    } else {
                        req.with_topic_names(topics.iter().map(|t| topic_name(t)).collect())
                    }
                })
                .await?;
            let answers = resp
                .responses
                .into_iter()
                .map(|r| {
                    (
                        r.name.map(|n| n.0.to_string()).unwrap_or_default(),
                        (r.error_code, opt_string(r.error_message)),
                    )
                })
                .collect();
            in_request_order(
                "DeleteTopics",
                &addr,
                topics.iter().map(String::as_str),
                answers,
            )
        })
        .await
    }

    /// Grows each topic to the given total partition count (or, with `validate_only`, asks
    /// whether the broker would). One outcome per topic, in the order given.
    pub async fn create_partitions(
        &mut self,
        topics: &[(String, i32)],
        validate_only: bool,
    ) -> Result<Vec<ResourceOutcome>, ClientError> {
        let timeout_ms = self_timeout_ms(&self.settings);
        self.with_controller(async |this, addr| {
            let (_, resp) = this
                .send(&addr, |_| {
                    CreatePartitionsRequest::default()
                        .with_timeout_ms(timeout_ms)
                        .with_validate_only(validate_only)
                        .with_topics(
                            topics
                                .iter()
                                .map(|(t, n)| {
                                    CreatePartitionsTopic::default()
                                        .with_name(topic_name(t))
                                        .with_count(*n)
                                        .with_assignments(None)
                                })
                                .collect(),
                        )
                })
                .await?;
            let answers = resp
                .results
                .into_iter()
                .map(|r| {
                    (
                        r.name.0.to_string(),
                        (r.error_code, opt_string(r.error_message)),
                    )
                })
                .collect();
            in_request_order(
                "CreatePartitions",
                &addr,
                topics.iter().map(|(t, _)| t.as_str()),
                answers,
            )
        })
        .await
    }

    /// Size on disk of each partition's leader replica, with DescribeLogDirs sent to each
    /// partition's leader (summed over its log directories, future replicas of a move between
    /// directories left out). A partition the leader does not report is missing from the map.
    pub async fn describe_log_dirs(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let items: Vec<(TopicPartition, ())> =
            partitions.iter().map(|tp| (tp.clone(), ())).collect();
        let mut out = BTreeMap::new();
        for (addr, items) in self.by_leader(&items).await? {
            let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (tp, ()) in &items {
                topics
                    .entry(tp.topic.clone())
                    .or_default()
                    .push(tp.partition);
            }
            let (_, resp) = self
                .send(&addr, |_| {
                    DescribeLogDirsRequest::default().with_topics(Some(
                        topics
                            .into_iter()
                            .map(|(name, ps)| {
                                DescribableLogDirTopic::default()
                                    .with_topic(TopicName(StrBytes::from_string(name)))
                                    .with_partitions(ps)
                            })
                            .collect(),
                    ))
                })
                .await?;
            if resp.error_code != codes::NONE {
                return Err(ClientError::Kafka {
                    api: "DescribeLogDirs",
                    context: format!("broker {addr}"),
                    code: resp.error_code,
                });
            }
            for dir in resp.results.iter().filter(|d| d.error_code == codes::NONE) {
                for t in &dir.topics {
                    for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        if items.iter().any(|(x, ())| *x == tp) {
                            *out.entry(tp).or_insert(0) += p.partition_size;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Where a config request for `resource` goes: a broker's own configs to that broker,
    /// everything else to the bootstrap broker.
    async fn config_addr(&mut self, resource: &ConfigResource) -> Result<String, ClientError> {
        match resource {
            ConfigResource::Broker(id) => match id.parse::<i32>() {
                Ok(node) => {
                    if !self.brokers.contains_key(&node) {
                        self.metadata(Some(&[])).await?;
                    }
                    self.node_addr(node)
                }
                Err(_) => Ok(self.any_addr()),
            },
            ConfigResource::Topic(_) => Ok(self.any_addr()),
        }
    }

    /// Describes the configs of `resources` (all keys), with synonyms when asked: one request
    /// per broker asked (topics together; each broker's own configs to that broker). One
    /// result per resource, in the order given.
    pub async fn describe_configs(
        &mut self,
        resources: &[ConfigResource],
        synonyms: bool,
    ) -> Result<Vec<DescribedConfigs>, ClientError> {
        let mut by_addr: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, resource) in resources.iter().enumerate() {
            let addr = self.config_addr(resource).await?;
            by_addr.entry(addr).or_default().push(i);
        }
        let mut found: BTreeMap<usize, DescribedConfigs> = BTreeMap::new();
        for (addr, indexes) in by_addr {
            let (version, resp) = self
                .send(&addr, |_| {
                    DescribeConfigsRequest::default()
                        .with_include_synonyms(synonyms)
                        .with_resources(
                            indexes
                                .iter()
                                .map(|i| {
                                    let (rtype, rname) = resources[*i].wire();
                                    DescribeConfigsResource::default()
                                        .with_resource_type(rtype)
                                        .with_resource_name(StrBytes::from_string(
                                            rname.to_string(),
                                        ))
                                        .with_configuration_keys(None)
                                })
                                .collect(),
                        )
                })
                .await?;
            let mut results = resp.results;
            for i in indexes {
                let resource = &resources[i];
                let (rtype, rname) = resource.wire();
                let Some(at) = results
                    .iter()
                    .position(|r| r.resource_type == rtype && r.resource_name.as_str() == rname)
                else {
                    return Err(ClientError::Decode {
                        api: "DescribeConfigs",
                        version,
                        addr: addr.clone(),
                        message: format!("no answer for {}", resource.describe()),
                    });
                };
                let r = results.swap_remove(at);
                let result = if r.error_code != codes::NONE {
                    Err(ResourceError {
                        api: "DescribeConfigs",
                        resource: resource.describe(),
                        code: r.error_code,
                        message: opt_string(r.error_message).filter(|m| !m.is_empty()),
                    })
                } else {
                    Ok(r.configs.into_iter().map(config_entry).collect())
                };
                found.insert(
                    i,
                    DescribedConfigs {
                        resource: resource.clone(),
                        result,
                    },
                );
            }
        }
        Ok(found.into_values().collect())
    }

    /// Applies `ops` to one resource's configs in one IncrementalAlterConfigs request (the
    /// broker checks them as a whole), or with `validate_only` asks whether it would.
    pub async fn incremental_alter_configs(
        &mut self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
        validate_only: bool,
    ) -> Result<Result<(), ResourceError>, ClientError> {
        let addr = self.config_addr(resource).await?;
        let (rtype, rname) = resource.wire();
        let (version, resp) = self
            .send(&addr, |_| {
                IncrementalAlterConfigsRequest::default()
                    .with_validate_only(validate_only)
                    .with_resources(vec![
                        AlterConfigsResource::default()
                            .with_resource_type(rtype)
                            .with_resource_name(StrBytes::from_string(rname.to_string()))
                            .with_configs(ops.iter().map(AlterConfigOp::wire).collect()),
                    ])
            })
            .await?;
        let r = resp
            .responses
            .into_iter()
            .find(|r| r.resource_type == rtype && r.resource_name.as_str() == rname)
            .ok_or_else(|| ClientError::Decode {
                api: "IncrementalAlterConfigs",
                version,
                addr: addr.clone(),
                message: format!("no answer for {}", resource.describe()),
            })?;
        Ok(if r.error_code == codes::NONE {
            Ok(())
        } else {
            Err(ResourceError {
                api: "IncrementalAlterConfigs",
                resource: resource.describe(),
                code: r.error_code,
                message: opt_string(r.error_message).filter(|m| !m.is_empty()),
            })
        })
    }
}

fn config_entry(c: DescribeConfigsResourceResult) -> ConfigEntry {
    ConfigEntry {
        name: c.name.to_string(),
        value: opt_string(c.value),
        source: ConfigSource::from_code(c.config_source),
        read_only: c.read_only,
        sensitive: c.is_sensitive,
        synonyms: c
            .synonyms
            .into_iter()
            .map(|s| {
                (
                    s.name.to_string(),
                    opt_string(s.value),
                    ConfigSource::from_code(s.source),
                )
            })
            .collect(),
    }
}

/// Matches per-topic answers to the topics asked for, in request order. A topic the broker
/// did not answer for is a malformed response.
fn in_request_order<'a>(
    api: &'static str,
    addr: &str,
    asked: impl Iterator<Item = &'a str>,
    mut answers: Vec<(String, (i16, Option<String>))>,
) -> Result<Vec<ResourceOutcome>, ClientError> {
    let mut out = Vec::new();
    for name in asked {
        let Some(i) = answers.iter().position(|(n, _)| n == name) else {
            return Err(ClientError::Decode {
                api,
                version: 0,
                addr: addr.to_string(),
                message: format!("no answer for topic {name}"),
            });
        };
        let (name, (code, message)) = answers.swap_remove(i);
        out.push(ResourceOutcome::from_code(api, name, code, message));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_to_the_request_order() {
        let answers = vec![
            (
                "b".to_string(),
                (36, Some("topic b already exists".to_string())),
            ),
            ("a".to_string(), (0, None)),
        ];
        let out = in_request_order("CreateTopics", "x:1", ["a", "b"].into_iter(), answers).unwrap();
        assert_eq!(out[0].name, "a");
        assert!(out[0].result.is_ok());
        let e = out[1].result.clone().unwrap_err();
        assert_eq!(e.code, 36);
        assert_eq!(
            e.to_string(),
            "CreateTopics failed for topic b: TOPIC_ALREADY_EXISTS (code 36): topic b already exists"
        );
        let err = in_request_order("DeleteTopics", "x:1", ["c"].into_iter(), vec![]).unwrap_err();
        assert!(err.to_string().contains("no answer for topic c"), "{err}");
    }

    #[test]
    fn empty_broker_messages_are_left_out() {
        let o = ResourceOutcome::from_code("DeleteTopics", "t".into(), 3, Some(String::new()));
        assert_eq!(
            o.result.unwrap_err().to_string(),
            "DeleteTopics failed for topic t: UNKNOWN_TOPIC_OR_PARTITION (code 3)"
        );
    }

    #[test]
    fn config_sources_round_trip_their_codes() {
        for code in 0..=8 {
            assert_eq!(ConfigSource::from_code(code).code(), code);
        }
        assert_eq!(ConfigSource::from_code(1).name(), "topic");
        assert_eq!(ConfigSource::from_code(4).name(), "static-broker");
        assert_eq!(ConfigSource::from_code(7).name(), "other(7)");
    }

    #[test]
    fn alter_ops_encode_set_and_delete() {
        let set = AlterConfigOp::Set("retention.ms".into(), "1000".into()).wire();
        assert_eq!(
            (set.config_operation, set.value.as_deref()),
            (0, Some("1000"))
        );
        let del = AlterConfigOp::Delete("retention.ms".into()).wire();
        assert_eq!((del.config_operation, del.value), (1, None));
    }
}
