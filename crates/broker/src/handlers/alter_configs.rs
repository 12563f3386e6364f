//! AlterConfigs (33), v0-2: replaces the whole set of a topic's config overrides, or of the
//! dynamic broker defaults (resource `""` for the cluster, `0` for this broker), as Kafka does:
//! keys not named go back to their defaults. Stored durably before the answer and applied to
//! the partitions live. Only the broker-wide defaults of topic settings are dynamic
//! (`log.retention.ms`, `log.cleanup.policy`, ...); other broker keys get INVALID_CONFIG.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, RequestHeader};

use crate::error::BrokerError;
use crate::handlers::sb;
use crate::state::{NODE_ID, SharedState};
use crate::topics::{DynamicScope, Topic, TopicDefaults, TopicError};

/// Kafka ConfigResource types.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;

/// Alters one topic's overrides with `next` (see [`crate::topics::Topics::alter_config`]);
/// returns the error code and message to answer with.
pub(crate) async fn alter_topic(
    state: &SharedState,
    name: &str,
    validate_only: bool,
    next: impl FnOnce(&Topic) -> Result<BTreeMap<String, String>, String> + Send + 'static,
) -> (i16, Option<String>) {
    let s = state.clone();
    let topic = name.to_owned();
    answer(
        name,
        tokio::task::spawn_blocking(move || s.topics.alter_config(&topic, validate_only, next))
            .await,
    )
}

/// Alters the dynamic broker defaults of `scope` with `next` (see
/// [`crate::topics::Topics::alter_defaults`]); returns the error code and message.
pub(crate) async fn alter_defaults(
    state: &SharedState,
    scope: DynamicScope,
    validate_only: bool,
    next: impl FnOnce(&TopicDefaults) -> Result<BTreeMap<String, String>, String> + Send + 'static,
) -> (i16, Option<String>) {
    let s = state.clone();
    answer(
        "broker",
        tokio::task::spawn_blocking(move || s.topics.alter_defaults(scope, validate_only, next))
            .await,
    )
}

fn answer(
    what: &str,
    joined: Result<Result<(), TopicError>, tokio::task::JoinError>,
) -> (i16, Option<String>) {
    let result =
        joined.unwrap_or_else(|e| Err(TopicError::Storage(BrokerError::Task(e.to_string()))));
    match result {
        Ok(()) => (0, None),
        Err(e) => {
            if let TopicError::Storage(err) = &e {
                tracing::error!(resource = what, error = %err, "altering configs");
            }
            let message = match &e {
                TopicError::InvalidConfig(m) => m.clone(),
                other => other.to_string(),
            };
            (e.code(), Some(message))
        }
    }
}

/// Which dynamic defaults a broker resource name addresses: `""` the cluster's, `0` this
/// broker's; `Err` answers anything else.
pub(crate) fn broker_scope(
    resource_type: i8,
    name: &str,
) -> Result<DynamicScope, (i16, Option<String>)> {
    let refuse = |m: &str| Err((ResponseError::InvalidRequest.code(), Some(m.to_owned())));
    match resource_type {
        RESOURCE_BROKER if name.is_empty() => Ok(DynamicScope::Cluster),
        RESOURCE_BROKER if name == NODE_ID.to_string() => Ok(DynamicScope::Broker),
        RESOURCE_BROKER => refuse("unknown broker id"),
        _ => refuse("only topic and broker resources have configs here"),
    }
}

/// Handles a decoded AlterConfigs request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let mut settings = BTreeMap::new();
        let mut null = None;
        for c in &res.configs {
            match &c.value {
                Some(v) => {
                    settings.insert(c.name.to_string(), v.to_string());
                }
                None => null = Some(c.name.to_string()),
            }
        }
        let (code, message) = if let Some(key) = null {
            (
                ResponseError::InvalidConfig.code(),
                Some(format!(
                    "{key}: a null value is not allowed in AlterConfigs"
                )),
            )
        } else if res.resource_type == RESOURCE_TOPIC {
            alter_topic(state, &res.resource_name, req.validate_only, move |_| {
                Ok(settings)
            })
            .await
        } else {
            match broker_scope(res.resource_type, &res.resource_name) {
                Ok(scope) => {
                    alter_defaults(state, scope, req.validate_only, move |_| Ok(settings)).await
                }
                Err(answer) => answer,
            }
        };
        let mut r = AlterConfigsResourceResponse::default();
        r.error_code = code;
        r.error_message = message.map(sb);
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name;
        resp.responses.push(r);
    }
    resp
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};

    use super::*;
    use crate::handlers::test_util;

    fn request(
        topic: &str,
        configs: &[(&str, Option<&str>)],
        validate_only: bool,
    ) -> AlterConfigsRequest {
        let mut res = AlterConfigsResource::default();
        res.resource_type = RESOURCE_TOPIC;
        res.resource_name = sb(topic);
        res.configs = configs
            .iter()
            .map(|(k, v)| {
                let mut c = AlterableConfig::default();
                c.name = sb(*k);
                c.value = v.map(sb);
                c
            })
            .collect();
        let mut r = AlterConfigsRequest::default();
        r.resources = vec![res];
        r.validate_only = validate_only;
        r
    }

    #[tokio::test]
    async fn replaces_all_overrides_durably_and_live() {
        let (state, _dir) = test_util::state();
        let overrides = [("cleanup.policy".to_string(), "compact".to_string())].into();
        state.topics.create("t", 2, overrides, false, 0).unwrap();
        let h = test_util::header(ApiKey::AlterConfigs, 1);

        // validate_only changes nothing.
        let r = handle(
            &state,
            &h,
            request("t", &[("segment.bytes", Some("2048"))], true),
        )
        .await;
        assert_eq!(r.responses[0].error_code, 0);
        assert!(state.topics.get("t").unwrap().settings.compact);

        let r = handle(
            &state,
            &h,
            request("t", &[("segment.bytes", Some("2048"))], false),
        )
        .await;
        assert_eq!(r.responses[0].error_code, 0);
        let t = state.topics.get("t").unwrap();
        // Keys not named went back to their defaults.
        assert!(!t.settings.compact && t.settings.delete);
        assert_eq!(t.log_config.segment_bytes, 2048);
        for p in &t.partitions {
            assert_eq!(p.with_log(|l| l.config().segment_bytes), Some(2048));
        }

        let bad = handle(
            &state,
            &h,
            request("t", &[("segment.bytes", Some("1"))], false),
        )
        .await;
        assert_eq!(
            bad.responses[0].error_code,
            ResponseError::InvalidConfig.code()
        );
        assert!(
            bad.responses[0]
                .error_message
                .as_deref()
                .is_some_and(|m| m.starts_with("segment.bytes=1")),
            "{bad:?}"
        );
        let null = handle(&state, &h, request("t", &[("retention.ms", None)], false)).await;
        assert_eq!(
            null.responses[0].error_code,
            ResponseError::InvalidConfig.code()
        );
        let unknown = handle(&state, &h, request("nope", &[], false)).await;
        assert_eq!(
            unknown.responses[0].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );

        // Stored in topic.toml before the answer (the restart itself is tested with real
        // clients in tests/clients/test_configs.py).
        let meta =
            std::fs::read_to_string(state.config.data_dir.join("topics/t/topic.toml")).unwrap();
        assert!(
            meta.contains("segment.bytes") && !meta.contains("cleanup.policy"),
            "{meta}"
        );
    }
}
