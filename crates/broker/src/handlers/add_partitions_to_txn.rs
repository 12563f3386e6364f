//! AddPartitionsToTxn (24), v0-3: adds partitions to the producer's transaction through the
//! transaction coordinator, answered once the addition is durable. Partitions of unknown
//! topics answer UNKNOWN_TOPIC_OR_PARTITION and, as in Kafka, the rest of the request then
//! OPERATION_NOT_ATTEMPTED without reaching the coordinator. v4+ (the broker-to-coordinator
//! batched form of KIP-890) is not advertised.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, RequestHeader,
};
use waterline_txn::{AddPartitionsRequest, Request, Response, TopicPartition};

use crate::state::SharedState;

/// Applies the request to the coordinator now; the future yields the answer.
pub fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: AddPartitionsToTxnRequest,
) -> impl std::future::Future<Output = AddPartitionsToTxnResponse> + Send + use<> {
    let topics: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = req
        .v3_and_below_topics
        .iter()
        .map(|t| (t.name.clone(), t.partitions.clone()))
        .collect();
    let unknown = |topic: &str, p: i32| state.topics.partition(topic, p).is_none();
    let any_unknown = topics
        .iter()
        .any(|(t, ps)| ps.iter().any(|p| unknown(t.as_str(), *p)));
    let answer = if any_unknown {
        let codes: Vec<Vec<i16>> = topics
            .iter()
            .map(|(t, ps)| {
                ps.iter()
                    .map(|p| {
                        if unknown(t.as_str(), *p) {
                            ResponseError::UnknownTopicOrPartition.code()
                        } else {
                            ResponseError::OperationNotAttempted.code()
                        }
                    })
                    .collect()
            })
            .collect();
        Err(codes)
    } else {
        let partitions = topics
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(|p| TopicPartition::new(t.to_string(), *p)))
            .collect();
        Ok(state
            .transactions
            .call(Request::AddPartitions(AddPartitionsRequest {
                transactional_id: req.v3_and_below_transactional_id.to_string(),
                producer_id: req.v3_and_below_producer_id.0,
                producer_epoch: req.v3_and_below_producer_epoch,
                partitions,
                api_version: header.request_api_version,
            })))
    };
    async move {
        let codes = match answer {
            Err(codes) => codes,
            Ok(pending) => {
                let code = match pending.await {
                    Response::AddPartitions(e) => waterline_txn::TxnError::code_of(e),
                    other => other.error_code(),
                };
                topics.iter().map(|(_, ps)| vec![code; ps.len()]).collect()
            }
        };
        let mut resp = AddPartitionsToTxnResponse::default();
        for ((name, ps), codes) in topics.into_iter().zip(codes) {
            let mut t = AddPartitionsToTxnTopicResult::default();
            t.name = name;
            for (p, code) in ps.into_iter().zip(codes) {
                let mut r = AddPartitionsToTxnPartitionResult::default();
                r.partition_index = p;
                r.partition_error_code = code;
                t.results_by_partition.push(r);
            }
            resp.results_by_topic_v3_and_below.push(t);
        }
        resp
    }
}
