//! OffsetCommit (8), v2-9, checked the way Kafka's classic group coordinator does, then stored
//! durably before the response is sent.
//!
//! Order of checks: unknown topic or partition (UNKNOWN_TOPIC_OR_PARTITION per partition); then
//! the group (generation, member, state through the coordinator; its error answers every
//! remaining partition); then per-partition metadata size (OFFSET_METADATA_TOO_LARGE). What
//! passes is queued on the coalescing store in one batch when [`handle`] is called (so commits
//! take effect in the order their requests arrived), and the response is sent only once that
//! batch is durable: only that wait overlaps the connection's later requests. A store failure answers the batch's partitions with an error,
//! never with success. v2-4's per-request `retention_time_ms` is ignored: offsets expire with
//! their group (`groups.offsets_retention_ms`), as in Kafka 2.1+.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, RequestHeader};
use waterline_coordinator::OffsetCommitCheck;
use waterline_store::{OffsetAndMetadata, TopicPartition};

use crate::groups::store_error_code;
use crate::state::{BrokerState, SharedState};

/// Handles a decoded OffsetCommit request: checks it and queues its offsets now, synchronously;
/// the returned future waits for them to be durable and builds the response.
pub fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: OffsetCommitRequest,
) -> impl std::future::Future<Output = OffsetCommitResponse> + Send + use<> {
    let version = header.request_api_version;
    let group = req.group_id.to_string();
    let max_metadata = state.groups.config().offset_metadata_max_bytes;
    let now = BrokerState::now_ms();

    // One slot per requested partition, in request order; `None` = still to be stored.
    let mut codes: Vec<Vec<(i32, Option<i16>)>> = Vec::with_capacity(req.topics.len());
    let mut candidates = 0usize;
    for t in &req.topics {
        let known = state.topics.get(t.name.as_str());
        let row = t
            .partitions
            .iter()
            .map(|p| {
                let exists = known.as_ref().is_some_and(|topic| {
                    usize::try_from(p.partition_index).is_ok_and(|i| i < topic.partitions.len())
                });
                if exists {
                    candidates += 1;
                    (p.partition_index, None)
                } else {
                    (
                        p.partition_index,
                        Some(ResponseError::UnknownTopicOrPartition.code()),
                    )
                }
            })
            .collect();
        codes.push(row);
    }

    let mut stored = None;
    if candidates > 0 {
        let check = OffsetCommitCheck {
            group_id: group.clone(),
            generation_id: req.generation_id_or_member_epoch,
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            api_version: version,
        };
        let group_error = state.groups.validate_commit(&check).err().map(|e| e.code());
        let mut batch = Vec::with_capacity(candidates);
        for (t, row) in req.topics.iter().zip(codes.iter_mut()) {
            for (p, slot) in t.partitions.iter().zip(row.iter_mut()) {
                if slot.1.is_some() {
                    continue;
                }
                if let Some(code) = group_error {
                    slot.1 = Some(code);
                    continue;
                }
                let metadata = p.committed_metadata.as_ref().map_or("", |m| m.as_str());
                if metadata.len() > max_metadata {
                    slot.1 = Some(ResponseError::OffsetMetadataTooLarge.code());
                    continue;
                }
                let mut om = OffsetAndMetadata::new(p.committed_offset, now)
                    .with_metadata(metadata.to_string());
                om.leader_epoch = (version >= 6 && p.committed_leader_epoch >= 0)
                    .then_some(p.committed_leader_epoch);
                batch.push((
                    TopicPartition::new(t.name.to_string(), p.partition_index),
                    om,
                ));
            }
        }
        if !batch.is_empty() {
            stored = Some((
                group.clone(),
                batch.len(),
                state.groups.commit(&group, &batch),
            ));
        }
    }

    let topics: Vec<_> = req.topics.into_iter().map(|t| t.name).collect();
    async move {
        if let Some((group, partitions, durable)) = stored {
            let code = match durable.await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(%group, error = %e, partitions, "offset commit failed");
                    store_error_code(&e)
                }
            };
            for row in &mut codes {
                for slot in row.iter_mut() {
                    slot.1.get_or_insert(code);
                }
            }
        }
        let mut resp = OffsetCommitResponse::default();
        for (t, row) in topics.into_iter().zip(codes) {
            let mut rt = OffsetCommitResponseTopic::default();
            rt.name = t;
            rt.partitions = row
                .into_iter()
                .map(|(index, code)| {
                    let mut rp = OffsetCommitResponsePartition::default();
                    rp.partition_index = index;
                    rp.error_code = code.unwrap_or(0);
                    rp
                })
                .collect();
            resp.topics.push(rt);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, TopicName};

    use super::*;
    use crate::handlers::{offset_fetch, sb, test_util};

    fn request(group: &str, partitions: &[i32], offset: i64) -> OffsetCommitRequest {
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(sb("t"));
        t.partitions = partitions
            .iter()
            .map(|&p| {
                let mut x = OffsetCommitRequestPartition::default();
                x.partition_index = p;
                x.committed_offset = offset;
                x
            })
            .collect();
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(sb(group));
        r.generation_id_or_member_epoch = -1;
        r.topics = vec![t];
        r
    }

    fn codes(r: &OffsetCommitResponse) -> Vec<i16> {
        r.topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect()
    }

    #[tokio::test]
    async fn a_store_failure_is_never_answered_as_success() {
        let (state, _dir) = crate::groups::test_util::state(0);
        state
            .topics
            .get_or_create("t", 2, BrokerState::now_ms())
            .unwrap();
        let h = test_util::header(ApiKey::OffsetCommit, 8);
        let ok = handle(&state, &h, request("g", &[0, 1], 5)).await;
        assert_eq!(codes(&ok), vec![0, 0]);

        state.groups.detach_store();
        let failed = handle(&state, &h, request("g", &[0, 1], 6)).await;
        let unavailable = ResponseError::CoordinatorNotAvailable.code();
        assert_eq!(codes(&failed), vec![unavailable, unavailable]);

        let mut t = OffsetFetchRequestTopic::default();
        t.name = TopicName(sb("t"));
        t.partition_indexes = vec![0];
        let mut f = OffsetFetchRequest::default();
        f.group_id = GroupId(sb("g"));
        f.topics = Some(vec![t]);
        let fetched =
            offset_fetch::handle(&state, &test_util::header(ApiKey::OffsetFetch, 5), f).await;
        assert_eq!(fetched.error_code, unavailable);
        assert_eq!(fetched.topics[0].partitions[0].committed_offset, -1);
    }
}
