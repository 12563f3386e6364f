//! OffsetForLeaderEpoch (23), v2-4: a consumer validating its position after a leader change
//! (KIP-320) asks where the leader epoch of its last record ended. This node is the only
//! replica and never changes leader, so every partition has one epoch, 0, which ends at the
//! log end offset: for a requested epoch >= 0 the answer is (0, log end offset), for a
//! negative one (-1, -1) as Kafka answers UNDEFINED_EPOCH. A current leader epoch above 0 is
//! UNKNOWN_LEADER_EPOCH (the client knows a newer epoch than exists), as in Kafka.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader,
};

use crate::state::SharedState;

/// The leader epoch of every partition of this single-node broker.
pub const LEADER_EPOCH: i32 = 0;

/// Handles a decoded OffsetForLeaderEpoch request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            let end = state
                .topics
                .partition(t.topic.as_str(), p.partition)
                .and_then(|part| part.with_log(|log| log.log_end_offset()));
            match end {
                None => e.error_code = ResponseError::UnknownTopicOrPartition.code(),
                Some(_) if p.current_leader_epoch > LEADER_EPOCH => {
                    e.error_code = ResponseError::UnknownLeaderEpoch.code();
                }
                Some(_) if p.leader_epoch < 0 => {}
                Some(end) => {
                    e.leader_epoch = LEADER_EPOCH;
                    e.end_offset = end;
                }
            }
            tr.partitions.push(e);
        }
        tr.topic = t.topic;
        resp.topics.push(tr);
    }
    resp
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };

    use super::*;
    use crate::handlers::test_util::{self, batch, produce_req};
    use crate::handlers::{produce, sb};

    #[tokio::test]
    async fn epoch_zero_ends_at_the_log_end() {
        let (state, _dir) = test_util::state();
        let h = test_util::header(ApiKey::Produce, 9);
        produce::handle(&state, &h, produce_req("t", 0, batch(3, 0, None), -1))
            .await
            .unwrap();
        let mut req = OffsetForLeaderEpochRequest::default();
        let mut t = OffsetForLeaderTopic::default();
        t.topic = kafka_protocol::messages::TopicName(sb("t"));
        for (partition, current, epoch) in [(0, -1, 0), (0, 0, -1), (0, 5, 0), (7, -1, 0)] {
            let mut p = OffsetForLeaderPartition::default();
            p.partition = partition;
            p.current_leader_epoch = current;
            p.leader_epoch = epoch;
            t.partitions.push(p);
        }
        req.topics.push(t);
        let r = handle(
            &state,
            &test_util::header(ApiKey::OffsetForLeaderEpoch, 4),
            req,
        )
        .await;
        let got: Vec<(i16, i32, i64)> = r.topics[0]
            .partitions
            .iter()
            .map(|e| (e.error_code, e.leader_epoch, e.end_offset))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0, 3),
                (0, -1, -1),
                (ResponseError::UnknownLeaderEpoch.code(), -1, -1),
                (ResponseError::UnknownTopicOrPartition.code(), -1, -1),
            ]
        );
    }
}
