//! DeleteRecords (21), v0-2: moves partitions' log start offsets forward. Offset -1 means the
//! high watermark. The new start is durable (checkpoint fsynced) before the answer; segments
//! wholly below it are deleted; fetches below it get OFFSET_OUT_OF_RANGE and ListOffsets
//! earliest answers it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};
use waterline_log::LogError;

use crate::state::SharedState;

/// Kafka's "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// Handles a decoded DeleteRecords request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let s = state.clone();
    let topics = tokio::task::spawn_blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let mut tr = DeleteRecordsTopicResult::default();
                tr.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut pr = DeleteRecordsPartitionResult::default();
                        pr.partition_index = p.partition_index;
                        let (low, code) = delete_one(&s, &t.name, p.partition_index, p.offset);
                        pr.low_watermark = low;
                        pr.error_code = code;
                        pr
                    })
                    .collect();
                tr.name = t.name;
                tr
            })
            .collect::<Vec<_>>()
    })
    .await;
    let mut resp = DeleteRecordsResponse::default();
    match topics {
        Ok(t) => resp.topics = t,
        Err(e) => tracing::error!(error = %e, "DeleteRecords task failed"),
    }
    resp
}

/// Deletes one partition's records below `offset`; returns (low watermark, error code).
fn delete_one(state: &SharedState, topic: &str, partition: i32, offset: i64) -> (i64, i16) {
    let Some(p) = state.topics.partition(topic, partition) else {
        return (-1, ResponseError::UnknownTopicOrPartition.code());
    };
    let outcome = p.with_log(|log| {
        let target = if offset == HIGH_WATERMARK {
            log.high_watermark()
        } else {
            offset
        };
        log.delete_records_before(target)
    });
    match outcome {
        None => (-1, ResponseError::UnknownTopicOrPartition.code()),
        Some(Ok(low)) => {
            tracing::info!(topic, partition, log_start = low, "records deleted");
            (low, 0)
        }
        Some(Err(LogError::OffsetOutOfRange { .. })) => {
            (-1, ResponseError::OffsetOutOfRange.code())
        }
        Some(Err(e)) => {
            tracing::error!(topic, partition, error = %e, "DeleteRecords failed");
            (-1, ResponseError::KafkaStorageError.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };

    use super::*;
    use crate::handlers::test_util::{self, batch, produce_req};
    use crate::handlers::{produce, sb};

    fn request(topic: &str, parts: &[(i32, i64)]) -> DeleteRecordsRequest {
        let mut t = DeleteRecordsTopic::default();
        t.name = kafka_protocol::messages::TopicName(sb(topic));
        t.partitions = parts
            .iter()
            .map(|&(i, o)| {
                let mut p = DeleteRecordsPartition::default();
                p.partition_index = i;
                p.offset = o;
                p
            })
            .collect();
        let mut r = DeleteRecordsRequest::default();
        r.topics = vec![t];
        r
    }

    #[tokio::test]
    async fn moves_the_log_start_and_reports_errors_per_partition() {
        let (state, _dir) = test_util::state();
        state
            .topics
            .create("d", 2, Default::default(), false, 0)
            .unwrap();
        let ph = test_util::header(ApiKey::Produce, 9);
        for _ in 0..3 {
            let r = produce::handle(&state, &ph, produce_req("d", 0, batch(4, 1, None), -1))
                .await
                .unwrap();
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
        let h = test_util::header(ApiKey::DeleteRecords, 2);
        let r = handle(&state, &h, request("d", &[(0, 5), (1, 99), (7, 0)])).await;
        let got: Vec<(i64, i16)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.low_watermark, p.error_code))
            .collect();
        assert_eq!(
            got,
            vec![
                (5, 0),
                (-1, ResponseError::OffsetOutOfRange.code()),
                (-1, ResponseError::UnknownTopicOrPartition.code())
            ]
        );
        let r = handle(&state, &h, request("d", &[(0, HIGH_WATERMARK)])).await;
        assert_eq!(r.topics[0].partitions[0].low_watermark, 12);
        let start = state
            .topics
            .partition("d", 0)
            .unwrap()
            .with_log(|l| l.log_start_offset());
        assert_eq!(start, Some(12));
    }
}
