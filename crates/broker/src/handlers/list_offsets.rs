//! ListOffsets (2): -2 earliest (log start), -1 latest (high watermark), -3 max timestamp,
//! -4 earliest local (= log start), or the first offset with a timestamp >= the one given.
//! With `isolation_level` read_committed (1) the visible end is the last stable offset, as in
//! Kafka: "latest" answers it and lookups ignore offsets at or past it.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};

use crate::partition::Partition;
use crate::state::SharedState;

/// Special timestamps of ListOffsets.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

/// (error code, timestamp, offset) for one partition. Blocking (may scan the log).
fn lookup(p: &Partition, ts: i64, read_committed: bool) -> (i16, i64, i64) {
    p.with_log(|log| {
        let hw = if read_committed {
            log.last_stable_offset().min(log.high_watermark())
        } else {
            log.high_watermark()
        };
        match ts {
            LATEST => (0, -1, hw),
            EARLIEST | EARLIEST_LOCAL => (0, -1, log.log_start_offset()),
            MAX_TIMESTAMP => match log.max_timestamp() {
                Some((t, o)) if o < hw => (0, t, o),
                _ => (0, -1, -1),
            },
            // No tiered storage: nothing is tiered.
            LATEST_TIERED => (0, -1, -1),
            t if t < 0 => (ResponseError::InvalidRequest.code(), -1, -1),
            t => match log.offset_for_timestamp(t) {
                Ok(Some((o, found))) if o < hw => (0, found, o),
                Ok(_) => (0, -1, -1),
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "timestamp lookup failed");
                    (ResponseError::KafkaStorageError.code(), -1, -1)
                }
            },
        }
    })
    .unwrap_or((ResponseError::UnknownTopicOrPartition.code(), -1, -1))
}

/// Handles a decoded ListOffsets request (v1+).
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let read_committed = req.isolation_level == 1;
    let mut work: Vec<(Option<Arc<Partition>>, i32, i64)> = Vec::new();
    let mut shape = Vec::new();
    for t in &req.topics {
        let topic = state.topics.get(&t.name);
        shape.push((t.name.clone(), t.partitions.len()));
        for p in &t.partitions {
            let part = topic.as_ref().and_then(|tp| {
                usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| tp.partitions.get(i).cloned())
            });
            work.push((part, p.partition_index, p.timestamp));
        }
    }
    let answers = tokio::task::spawn_blocking(move || {
        work.into_iter()
            .map(|(p, index, ts)| {
                let (code, t, o) = match p {
                    Some(p) => lookup(&p, ts, read_committed),
                    None => (ResponseError::UnknownTopicOrPartition.code(), -1, -1),
                };
                (index, code, t, o)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut answers = answers.into_iter();
    let mut resp = ListOffsetsResponse::default();
    for (name, n) in shape {
        let mut t = ListOffsetsTopicResponse::default();
        t.name = name;
        for (index, code, ts, offset) in answers.by_ref().take(n) {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = index;
            pr.error_code = code;
            pr.timestamp = ts;
            pr.offset = offset;
            // No leader epochs on a single node: -1 keeps clients from validating positions with
            // OffsetForLeaderEpoch, which is not served.
            pr.leader_epoch = -1;
            t.partitions.push(pr);
        }
        resp.topics.push(t);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::produce;
    use crate::handlers::test_util::{self, batch, produce_req};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};

    async fn lookup_ts(
        state: &SharedState,
        topic: &str,
        partition: i32,
        ts: i64,
    ) -> (i16, i64, i64) {
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = ts;
        let mut t = ListOffsetsTopic::default();
        t.name = kafka_protocol::messages::TopicName(crate::handlers::sb(topic));
        t.partitions = vec![p];
        let mut r = ListOffsetsRequest::default();
        r.topics = vec![t];
        let resp = handle(state, &test_util::header(ApiKey::ListOffsets, 7), r).await;
        let p = &resp.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    }

    #[tokio::test]
    async fn special_and_timestamp_lookups() {
        let (state, _dir) = test_util::state();
        state
            .topics
            .create("l", 1, Default::default(), false, 0)
            .unwrap();
        assert_eq!(lookup_ts(&state, "l", 0, -1).await, (0, 0, -1));
        assert_eq!(
            lookup_ts(&state, "l", 0, -3).await,
            (0, -1, -1),
            "empty log"
        );
        let h = test_util::header(ApiKey::Produce, 9);
        let r = produce::handle(&state, &h, produce_req("l", 0, batch(4, 100, None), -1)).await;
        assert_eq!(r.unwrap().responses[0].partition_responses[0].error_code, 0);
        assert_eq!(lookup_ts(&state, "l", 0, -2).await, (0, 0, -1));
        assert_eq!(lookup_ts(&state, "l", 0, -4).await, (0, 0, -1));
        assert_eq!(lookup_ts(&state, "l", 0, -1).await, (0, 4, -1));
        assert_eq!(lookup_ts(&state, "l", 0, -3).await, (0, 3, 103));
        assert_eq!(lookup_ts(&state, "l", 0, 102).await, (0, 2, 102));
        assert_eq!(lookup_ts(&state, "l", 0, 500).await, (0, -1, -1));
        assert_eq!(lookup_ts(&state, "l", 0, -9).await.0, 42, "INVALID_REQUEST");
        assert_eq!(lookup_ts(&state, "l", 3, -1).await.0, 3);
        assert_eq!(lookup_ts(&state, "nope", 0, -1).await.0, 3);
    }
}
