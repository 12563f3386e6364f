//! DescribeProducers (61), v0: the idempotent and transactional producers each partition
//! knows (epoch, last sequence, open transaction's first offset), from the log's producer
//! state.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, RequestHeader,
};

use crate::handlers::sb;
use crate::state::SharedState;

/// Handles a decoded DescribeProducers request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let mut tr = TopicResponse::default();
        for index in t.partition_indexes {
            let mut pr = PartitionResponse::default();
            pr.partition_index = index;
            let producers = state
                .topics
                .partition(t.name.as_str(), index)
                .and_then(|p| p.with_log(|log| log.producers()));
            match producers {
                None => {
                    pr.error_code = ResponseError::UnknownTopicOrPartition.code();
                    pr.error_message = Some(sb("no such partition"));
                }
                Some(ps) => {
                    for p in ps {
                        let mut s = ProducerState::default();
                        s.producer_id = ProducerId(p.producer_id);
                        s.producer_epoch = i32::from(p.producer_epoch);
                        s.last_sequence = p.last_sequence;
                        s.last_timestamp = p.last_timestamp;
                        s.coordinator_epoch = p.coordinator_epoch;
                        s.current_txn_start_offset = p.current_txn_start_offset;
                        pr.active_producers.push(s);
                    }
                }
            }
            tr.partitions.push(pr);
        }
        tr.name = t.name;
        resp.topics.push(tr);
    }
    resp
}
