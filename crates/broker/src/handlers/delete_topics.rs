//! DeleteTopics (20): deletes each topic, its data and (as Kafka does) every group's committed
//! offsets for it.

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
        match result {
            Err(e) => {
                r.error_code = e.code();
                r.error_message = Some(sb(e.to_string()));
            }
            // The topic is gone; so are its committed offsets, in every group. Should this
            // fail, the next start-up deletes them (offsets of missing topics go at start).
            Ok(()) => match state.groups.delete_topic_offsets(&name).await {
                Ok(n) if n > 0 => {
                    tracing::info!(topic = %name.as_str(), partitions = n, "deleted committed offsets of deleted topic")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(topic = %name.as_str(), error = %e, "deleting committed offsets of deleted topic")
                }
            },
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

    async fn offsets(state: &SharedState, group: &str) -> Vec<(String, i32)> {
        state
            .groups
            .committed(group)
            .await
            .unwrap()
            .into_iter()
            .map(|(tp, _)| (tp.topic, tp.partition))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleting_a_topic_deletes_its_offsets_in_every_group_also_after_a_crash() {
        use waterline_store::{OffsetAndMetadata, TopicPartition};
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let build = |c: crate::config::BrokerConfig| {
            std::sync::Arc::new(crate::server::build_state(c, "127.0.0.1".into(), 9092).unwrap())
        };
        let state = build(config.clone());
        for t in ["gone", "kept", "crashed"] {
            state
                .topics
                .create(t, 2, Default::default(), false, 0)
                .unwrap();
        }
        let commit =
            |topic: &str, p: i32| (TopicPartition::new(topic, p), OffsetAndMetadata::new(5, 0));
        for g in ["g1", "g2"] {
            let batch = [
                commit("gone", 0),
                commit("gone", 1),
                commit("kept", 0),
                commit("crashed", 1),
            ];
            state.groups.commit(g, &batch).await.unwrap();
        }
        let h = test_util::header(ApiKey::DeleteTopics, 4);
        let mut req = DeleteTopicsRequest::default();
        req.topic_names = vec![TopicName(sb("gone"))];
        assert_eq!(handle(&state, &h, req).await.responses[0].error_code, 0);
        for g in ["g1", "g2"] {
            assert_eq!(
                offsets(&state, g).await,
                vec![("crashed".to_string(), 1), ("kept".to_string(), 0)]
            );
        }
        // A topic deleted without its offsets (as if the broker died in between): the next
        // start deletes them.
        state.topics.delete("crashed").unwrap();
        state.groups.close().await;
        state.topics.close_all();
        drop(state);
        let state = build(config);
        for g in ["g1", "g2"] {
            assert_eq!(offsets(&state, g).await, vec![("kept".to_string(), 0)]);
        }
        state.groups.close().await;
        state.topics.close_all();
    }
}
