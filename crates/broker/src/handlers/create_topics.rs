//! CreateTopics (19).

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, RequestHeader};

use crate::error::BrokerError;
use crate::handlers::{describe_configs, sb};
use crate::state::{BrokerState, SharedState};
use crate::topics::TopicError;

/// Creates each topic (or validates only), with per-topic config overrides.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.configs = Some(Vec::new());
        let partitions = if !t.assignments.is_empty() {
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            state.config.default_partitions
        } else {
            t.num_partitions
        };
        let replication_ok = t.replication_factor == -1
            || t.replication_factor == 1
            || (t.replication_factor > 1 && state.config.accept_any_replication_factor);
        if !replication_ok {
            r.error_code = ResponseError::InvalidReplicationFactor.code();
            r.error_message = Some(sb("this single-node broker supports replication factor 1"));
            r.num_partitions = -1;
            r.replication_factor = -1;
            resp.topics.push(r);
            continue;
        }
        let overrides: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        let s = state.clone();
        let name = t.name.to_string();
        let validate_only = req.validate_only;
        let result = tokio::task::spawn_blocking(move || {
            s.topics.create(
                &name,
                partitions,
                overrides,
                validate_only,
                BrokerState::now_ms(),
            )
        })
        .await
        .unwrap_or_else(|e| Err(TopicError::Storage(BrokerError::Task(e.to_string()))));
        match result {
            Ok(topic) => {
                r.num_partitions = partitions;
                r.replication_factor = 1;
                // v5+ reports the effective configuration of the new topic.
                r.configs = Some(
                    describe_configs::topic_entries(&state.topics.defaults(), &topic)
                        .into_iter()
                        .map(|e| {
                            let mut c = CreatableTopicConfigs::default();
                            c.name = sb(e.name);
                            c.value = Some(sb(e.value));
                            c.config_source = e.source;
                            c.is_sensitive = false;
                            c
                        })
                        .collect(),
                );
            }
            Err(e) => {
                if let TopicError::Storage(err) = &e {
                    tracing::error!(topic = %t.name.0, error = %err, "creating topic");
                }
                r.error_code = e.code();
                r.error_message = Some(sb(e.to_string()));
                r.num_partitions = -1;
                r.replication_factor = -1;
            }
        }
        resp.topics.push(r);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_util;
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{ApiKey, TopicName};

    fn topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
        let mut t = CreatableTopic::default();
        t.name = TopicName(sb(name));
        t.num_partitions = partitions;
        t.replication_factor = 1;
        t.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = CreatableTopicConfig::default();
                c.name = sb(*k);
                c.value = Some(sb(*v));
                c
            })
            .collect();
        t
    }

    #[tokio::test]
    async fn creates_validates_and_rejects() {
        let (state, _dir) = test_util::state();
        let h = test_util::header(ApiKey::CreateTopics, 5);
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![
            topic("a", 3, &[("retention.ms", "1000")]),
            topic("a", 1, &[]),
            topic("b", 0, &[]),
            topic("c", 1, &[("cleanup.policy", "shred")]),
            topic("bad name", 1, &[]),
            topic("d", -1, &[]),
        ];
        let r = handle(&state, &h, req).await;
        let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, 36, 37, 40, 17, 0]);
        let reported = r.topics[0].configs.as_ref().unwrap();
        let rm = reported
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .unwrap();
        assert_eq!(
            (rm.value.as_ref().unwrap().as_str(), rm.config_source),
            ("1000", 1)
        );
        assert_eq!(state.topics.get("a").unwrap().partitions.len(), 3);
        assert_eq!(
            state.topics.get("a").unwrap().log_config.retention_ms,
            Some(1000)
        );
        assert_eq!(state.topics.get("d").unwrap().partitions.len(), 1);
        let mut only = CreateTopicsRequest::default();
        only.validate_only = true;
        only.topics = vec![topic("e", 2, &[])];
        let r = handle(&state, &h, only).await;
        assert_eq!(r.topics[0].error_code, 0);
        assert!(state.topics.get("e").is_none());
    }
}
