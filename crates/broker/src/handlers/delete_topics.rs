//! DeleteTopics (20).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};

use crate::error::BrokerError;
use crate::handlers::sb;
use crate::state::SharedState;
use crate::topics::TopicError;

/// Deletes each named topic and its data. Topic ids (v6) are not assigned, so lookups by id
/// answer UNKNOWN_TOPIC_ID.
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<Option<TopicName>> = if header.request_api_version >= 6 {
        req.topics.into_iter().map(|t| t.name).collect()
    } else {
        req.topic_names.into_iter().map(Some).collect()
    };
    let mut resp = DeleteTopicsResponse::default();
    for name in targets {
        let mut r = DeletableTopicResult::default();
        let Some(name) = name else {
            r.error_code = ResponseError::UnknownTopicId.code();
            resp.responses.push(r);
            continue;
        };
        r.name = Some(name.clone());
        let s = state.clone();
        let n = name.to_string();
        let result = tokio::task::spawn_blocking(move || s.topics.delete(&n))
            .await
            .unwrap_or_else(|e| Err(TopicError::Storage(BrokerError::Task(e.to_string()))));
        if let Err(e) = result {
            r.error_code = e.code();
            r.error_message = Some(sb(e.to_string()));
        }
        resp.responses.push(r);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_util;
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn deletes_existing_and_reports_unknown() {
        let (state, _dir) = test_util::state();
        state
            .topics
            .create("gone", 2, Default::default(), false, 0)
            .unwrap();
        let h = test_util::header(ApiKey::DeleteTopics, 4);
        let mut req = DeleteTopicsRequest::default();
        req.topic_names = vec![TopicName(sb("gone")), TopicName(sb("never"))];
        let r = handle(&state, &h, req).await;
        assert_eq!(r.responses[0].error_code, 0);
        assert_eq!(r.responses[1].error_code, 3);
        assert!(state.topics.get("gone").is_none());
    }
}
