//! IncrementalAlterConfigs (44), v0-1: per-key SET, DELETE, APPEND and SUBTRACT (the last two
//! for list configs such as `cleanup.policy`) on a topic's overrides or on the dynamic broker
//! defaults (resource `""` or `0`, as in AlterConfigs); the rest stay as they are. Checked as
//! a whole, stored durably before the answer, applied live.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
};

use crate::handlers::alter_configs::{RESOURCE_TOPIC, alter_defaults, alter_topic, broker_scope};
use crate::handlers::sb;
use crate::state::SharedState;
use crate::topic_config::{self, AlterOp, Scope};
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;

/// Handles a decoded IncrementalAlterConfigs request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let scope = if res.resource_type == RESOURCE_TOPIC {
            None
        } else {
            match broker_scope(res.resource_type, &res.resource_name) {
                Ok(scope) => Some(scope),
                Err(answer) => {
                    resp.responses.push(response(&res, answer));
                    continue;
                }
            }
        };
        let (code, message) = {
            let mut ops = Vec::with_capacity(res.configs.len());
            let mut bad = None;
            for c in &res.configs {
                match AlterOp::from_code(c.config_operation) {
                    Some(op) => ops.push((
                        c.name.to_string(),
                        op,
                        c.value.as_ref().map(|v| v.to_string()),
                    )),
                    None => {
                        bad = Some(format!(
                            "{}: unknown operation {} (0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT)",
                            c.name.as_str(),
                            c.config_operation
                        ))
                    }
                }
            }
            match bad {
                Some(m) => (ResponseError::InvalidRequest.code(), Some(m)),
                None => match scope {
                    None => {
                        let defaults = state.topics.defaults();
                        alter_topic(state, &res.resource_name, req.validate_only, move |topic| {
                            topic_config::apply_incremental(
                                Scope::Topic,
                                &topic.overrides,
                                &ops,
                                |k| defaults.default_value(k).0,
                            )
                        })
                        .await
                    }
                    Some(scope) => {
                        alter_defaults(state, scope, req.validate_only, move |defaults| {
                            topic_config::apply_incremental(
                                Scope::Broker,
                                defaults.dynamic(scope),
                                &ops,
                                |broker_key| {
                                    topic_config::dynamic_broker_key(broker_key)
                                        .map(|k| defaults.default_value(k.name).0)
                                        .unwrap_or_default()
                                },
                            )
                        })
                        .await
                    }
                },
            }
        };
        resp.responses.push(response(&res, (code, message)));
    }
    resp
}

fn response(
    res: &AlterConfigsResource,
    (code, message): (i16, Option<String>),
) -> AlterConfigsResourceResponse {
    let mut r = AlterConfigsResourceResponse::default();
    r.error_code = code;
    r.error_message = message.map(sb);
    r.resource_type = res.resource_type;
    r.resource_name = res.resource_name.clone();
    r
}
