//! Metadata (3): brokers, topics and partitions; auto-creates requested topics when enabled.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};

use crate::handlers::{sb, topic_for_use};
use crate::state::{CLUSTER_ID, NODE_ID, SharedState};
use crate::topics::Topic;

/// Kafka's "authorized operations not requested" marker.
const OPS_NOT_REQUESTED: i32 = i32::MIN;

/// Describes the requested topics (all topics for a null list, or an empty list in v0).
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: MetadataRequest,
) -> MetadataResponse {
    let version = header.request_api_version;
    let mut r = MetadataResponse::default();
    let mut broker = MetadataResponseBroker::default();
    broker.node_id = BrokerId(NODE_ID);
    broker.host = sb(state.advertised_host.clone());
    broker.port = state.advertised_port;
    r.brokers = vec![broker];
    r.cluster_id = Some(sb(CLUSTER_ID));
    r.controller_id = BrokerId(NODE_ID);
    r.cluster_authorized_operations = OPS_NOT_REQUESTED;
    // v4+ lets the client opt out of auto-creation; older versions always allowed it.
    let allow_create = version < 4 || req.allow_auto_topic_creation;
    let requested = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t),
    };
    match requested {
        None => {
            for t in state.topics.list() {
                r.topics.push(describe(&t));
            }
        }
        Some(list) => {
            for t in list {
                let Some(name) = t.name else {
                    // Lookup by topic id: this broker does not assign topic ids.
                    let mut e = MetadataResponseTopic::default();
                    e.topic_id = t.topic_id;
                    e.error_code = ResponseError::UnknownTopicId.code();
                    e.topic_authorized_operations = OPS_NOT_REQUESTED;
                    r.topics.push(e);
                    continue;
                };
                match topic_for_use(state, &name, allow_create).await {
                    Ok(topic) => r.topics.push(describe(&topic)),
                    Err(err) => {
                        let mut e = MetadataResponseTopic::default();
                        e.name = Some(name);
                        e.error_code = err.code();
                        e.topic_authorized_operations = OPS_NOT_REQUESTED;
                        r.topics.push(e);
                    }
                }
            }
        }
    }
    r
}

fn describe(t: &Topic) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default();
    e.name = Some(TopicName(sb(t.name.to_string())));
    e.topic_authorized_operations = OPS_NOT_REQUESTED;
    e.partitions = t
        .partitions
        .iter()
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p.index;
            mp.leader_id = BrokerId(NODE_ID);
            // Unknown epoch (see list_offsets.rs): clients then skip leader-epoch validation.
            mp.leader_epoch = -1;
            mp.replica_nodes = vec![BrokerId(NODE_ID)];
            mp.isr_nodes = vec![BrokerId(NODE_ID)];
            mp
        })
        .collect();
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_util;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;

    fn req(names: &[&str], create: bool) -> MetadataRequest {
        let mut r = MetadataRequest::default();
        r.allow_auto_topic_creation = create;
        r.topics = Some(
            names
                .iter()
                .map(|n| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(TopicName(sb(*n)));
                    t
                })
                .collect(),
        );
        r
    }

    #[tokio::test]
    async fn auto_creates_and_reports_unknown_and_invalid() {
        let (state, _dir) = test_util::state();
        let h = test_util::header(ApiKey::Metadata, 9);
        let r = handle(&state, &h, req(&["orders"], false)).await;
        assert_eq!(r.topics[0].error_code, 3, "unknown without auto-create");
        let r = handle(&state, &h, req(&["orders", "bad/name"], true)).await;
        assert_eq!(r.topics[0].error_code, 0);
        assert_eq!(r.topics[0].partitions.len(), 1);
        assert_eq!(r.topics[1].error_code, 17);
        assert_eq!(r.brokers[0].port, 9092);
        let mut all = MetadataRequest::default();
        all.topics = None;
        let r = handle(&state, &h, all).await;
        assert_eq!(r.topics.len(), 1);
    }
}
