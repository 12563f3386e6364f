//! CreatePartitions (37): grows a topic's partition count.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader};

use crate::error::BrokerError;
use crate::handlers::sb;
use crate::state::{BrokerState, SharedState};
use crate::topics::TopicError;

/// Grows each topic to the requested total (replica assignments are ignored: one node).
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        let s = state.clone();
        let name = t.name.to_string();
        let (count, validate_only) = (t.count, req.validate_only);
        let result = tokio::task::spawn_blocking(move || {
            s.topics
                .add_partitions(&name, count, validate_only, BrokerState::now_ms())
        })
        .await
        .unwrap_or_else(|e| Err(TopicError::Storage(BrokerError::Task(e.to_string()))));
        if let Err(e) = result {
            r.error_code = e.code();
            r.error_message = Some(sb(e.to_string()));
        }
        resp.results.push(r);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_util;
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::{ApiKey, TopicName};

    #[tokio::test]
    async fn grows_and_refuses_shrinking() {
        let (state, _dir) = test_util::state();
        state
            .topics
            .create("t", 1, Default::default(), false, 0)
            .unwrap();
        let h = test_util::header(ApiKey::CreatePartitions, 2);
        let req = |n| {
            let mut t = CreatePartitionsTopic::default();
            t.name = TopicName(sb("t"));
            t.count = n;
            let mut r = CreatePartitionsRequest::default();
            r.topics = vec![t];
            r
        };
        assert_eq!(handle(&state, &h, req(4)).await.results[0].error_code, 0);
        assert_eq!(state.topics.get("t").unwrap().partitions.len(), 4);
        assert_eq!(handle(&state, &h, req(2)).await.results[0].error_code, 37);
    }
}
