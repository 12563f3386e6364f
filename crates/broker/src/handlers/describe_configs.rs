//! DescribeConfigs (32): effective topic configuration, enough for admin tools.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};

use crate::handlers::sb;
use crate::state::{NODE_ID, SharedState};
use crate::topics::Topic;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
/// Kafka ConfigType values.
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// (name, effective value, type) of every config a topic reports.
pub(crate) fn topic_configs(t: &Topic) -> Vec<(&'static str, String, i8)> {
    let c = &t.log_config;
    let opt = |v: Option<i64>| v.unwrap_or(-1).to_string();
    vec![
        ("cleanup.policy", "delete".into(), TYPE_LIST),
        ("compression.type", "producer".into(), TYPE_STRING),
        ("max.message.bytes", c.max_batch_bytes.to_string(), TYPE_INT),
        ("message.timestamp.type", "CreateTime".into(), TYPE_STRING),
        ("min.insync.replicas", "1".into(), TYPE_INT),
        (
            "retention.bytes",
            opt(c.retention_bytes.map(|b| b as i64)),
            TYPE_LONG,
        ),
        ("retention.ms", opt(c.retention_ms), TYPE_LONG),
        ("segment.bytes", c.segment_bytes.to_string(), TYPE_INT),
        ("segment.ms", opt(c.segment_ms), TYPE_LONG),
    ]
}

/// Describes topic resources (and the broker resource, with no configs).
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
                    for (name, value, ty) in topic_configs(&t) {
                        let wanted = res
                            .configuration_keys
                            .as_ref()
                            .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name));
                        if !wanted {
                            continue;
                        }
                        let mut e = DescribeConfigsResourceResult::default();
                        e.name = sb(name);
                        e.value = Some(sb(value));
                        e.read_only = false;
                        e.config_source = if t.overrides.contains_key(name) {
                            SOURCE_TOPIC
                        } else {
                            SOURCE_DEFAULT
                        };
                        e.config_type = ty;
                        r.configs.push(e);
                    }
                }
            },
            RESOURCE_BROKER if res.resource_name.as_str() == NODE_ID.to_string() => {}
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
}
