//! Fetch (1): whole stored batches below the high watermark (below the last stable offset for
//! `read_committed`, with the aborted transactions the range overlaps, so the client can skip
//! their records), with a min_bytes/max_wait long poll
//! that waits on the partitions' high-watermark channels (not blocking the connection: requests
//! are dispatched concurrently, see server.rs).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, RequestHeader};
use tokio::time::Instant;
use waterline_log::LogError;

use crate::partition::Partition;
use crate::state::SharedState;

/// Upper bound on a long poll, whatever the client asks for.
const MAX_WAIT_MS: i32 = 300_000;

/// One requested partition.
struct Item {
    partition: Option<Arc<Partition>>,
    offset: i64,
    max_bytes: i32,
}

/// What a read produced for one partition.
#[derive(Clone)]
struct ReadResult {
    error_code: i16,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    records: Bytes,
    /// Aborted transactions overlapping the range read (read_committed only).
    aborted: Vec<waterline_log::AbortedTxn>,
}

impl ReadResult {
    fn error(code: i16) -> Self {
        ReadResult {
            error_code: code,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: Bytes::new(),
            aborted: Vec::new(),
        }
    }
}

fn read_one(p: &Partition, offset: i64, limit: usize, read_committed: bool) -> ReadResult {
    p.with_log(|log| {
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        let hw = log.high_watermark();
        let lso = log.last_stable_offset().min(hw);
        if offset < start || offset > end {
            return ReadResult::error(ResponseError::OffsetOutOfRange.code());
        }
        let mut r = ReadResult {
            error_code: 0,
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: start,
            records: Bytes::new(),
            aborted: Vec::new(),
        };
        let upper = if read_committed { lso } else { hw };
        if offset < upper {
            match log.read(offset, limit, upper) {
                Ok(b) => r.records = b,
                Err(LogError::OffsetOutOfRange { .. }) => {
                    return ReadResult::error(ResponseError::OffsetOutOfRange.code());
                }
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "fetch read failed");
                    return ReadResult::error(ResponseError::KafkaStorageError.code());
                }
            }
            if read_committed && !r.records.is_empty() {
                match log.aborted_transactions(offset, upper) {
                    Ok(a) => r.aborted = a,
                    Err(e) => {
                        tracing::error!(topic = %p.topic, partition = p.index, error = %e, "reading aborted transactions failed");
                        return ReadResult::error(ResponseError::KafkaStorageError.code());
                    }
                }
            }
        }
        r
    })
    .unwrap_or_else(|| ReadResult::error(ResponseError::UnknownTopicOrPartition.code()))
}

/// Reads every item within the response budget. Blocking (file reads).
fn read_all(items: &[Item], max_bytes: usize, read_committed: bool) -> Vec<ReadResult> {
    let mut remaining = max_bytes;
    let mut have_data = false;
    items
        .iter()
        .map(|it| {
            let Some(p) = &it.partition else {
                return ReadResult::error(ResponseError::UnknownTopicOrPartition.code());
            };
            if have_data && remaining == 0 {
                return read_meta_only(p, it.offset, read_committed);
            }
            let limit = (it.max_bytes.max(0) as usize).min(remaining);
            let mut r = read_one(p, it.offset, limit, read_committed);
            if !r.records.is_empty() {
                // Only the first partition with data may exceed the budget (one whole batch),
                // as in Kafka; later ones are left for the next fetch.
                if have_data && r.records.len() > limit {
                    r.records = Bytes::new();
                }
                remaining = remaining.saturating_sub(r.records.len());
                have_data |= !r.records.is_empty();
            }
            r
        })
        .collect()
}

fn read_meta_only(p: &Partition, offset: i64, read_committed: bool) -> ReadResult {
    let mut r = read_one(p, offset, 0, read_committed);
    r.records = Bytes::new();
    r.aborted.clear();
    r
}

/// Handles a decoded fetch request (v4-12).
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: FetchRequest,
) -> FetchResponse {
    let mut resp = FetchResponse::default();
    resp.session_id = 0;
    if req.session_id != 0 && req.session_epoch > 0 {
        // This broker never creates fetch sessions, so an incremental fetch cannot be valid.
        resp.error_code = ResponseError::FetchSessionIdNotFound.code();
        return resp;
    }
    let mut items = Vec::new();
    let mut shape = Vec::new();
    for t in &req.topics {
        let topic = state.topics.get(&t.topic);
        shape.push((
            t.topic.clone(),
            t.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
        ));
        for p in &t.partitions {
            let partition = topic
                .as_ref()
                .and_then(|tp| {
                    usize::try_from(p.partition)
                        .ok()
                        .and_then(|i| tp.partitions.get(i))
                })
                .cloned();
            items.push(Item {
                partition,
                offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
            });
        }
    }
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        i32::MAX as usize
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let read_committed = req.isolation_level == 1;
    let max_wait = Duration::from_millis(req.max_wait_ms.clamp(0, MAX_WAIT_MS) as u64);
    let deadline = Instant::now() + max_wait;
    let mut receivers: Vec<_> = items
        .iter()
        .filter_map(|it| it.partition.as_ref().map(|p| p.subscribe()))
        .collect();

    let items = Arc::new(items);
    let results = loop {
        for r in &mut receivers {
            r.borrow_and_update();
        }
        let it = items.clone();
        let results =
            match tokio::task::spawn_blocking(move || read_all(&it, max_bytes, read_committed))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "fetch read task failed");
                    vec![ReadResult::error(ResponseError::UnknownServerError.code()); items.len()]
                }
            };
        let total: usize = results.iter().map(|r| r.records.len()).sum();
        let any_error = results.iter().any(|r| r.error_code != 0);
        if total >= min_bytes || any_error || Instant::now() >= deadline {
            break results;
        }
        let changed = async {
            if receivers.is_empty() {
                std::future::pending::<()>().await;
            } else {
                let futs = receivers.iter_mut().map(|r| Box::pin(r.changed()));
                let _ = futures::future::select_all(futs).await;
            }
        };
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = state.shutdown.cancelled() => {}
        }
        if state.shutdown.is_cancelled() {
            // One last read so the response reflects the current state, then return.
            let it = items.clone();
            break tokio::task::spawn_blocking(move || read_all(&it, max_bytes, read_committed))
                .await
                .unwrap_or_default();
        }
    };

    let mut results = results.into_iter();
    for (topic, partitions) in shape {
        let mut t = FetchableTopicResponse::default();
        t.topic = topic;
        for index in partitions {
            let r = results
                .next()
                .unwrap_or_else(|| ReadResult::error(ResponseError::UnknownServerError.code()));
            let mut pd = PartitionData::default();
            pd.partition_index = index;
            pd.error_code = r.error_code;
            pd.high_watermark = r.high_watermark;
            pd.last_stable_offset = r.last_stable_offset;
            pd.log_start_offset = r.log_start_offset;
            pd.aborted_transactions = Some(
                r.aborted
                    .iter()
                    .map(|a| {
                        let mut t = AbortedTransaction::default();
                        t.producer_id = kafka_protocol::messages::ProducerId(a.producer_id);
                        t.first_offset = a.first_offset;
                        t
                    })
                    .collect(),
            );
            pd.preferred_read_replica = BrokerId(-1);
            // Never null: librdkafka rejects a MessageSetSize of -1.
            pd.records = Some(r.records);
            t.partitions.push(pd);
        }
        resp.responses.push(t);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::produce;
    use crate::handlers::test_util::{self, batch, produce_req};
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};

    fn req(topic: &str, parts: &[(i32, i64)], max_wait: i32, max_bytes: i32) -> FetchRequest {
        let mut t = FetchTopic::default();
        t.topic = kafka_protocol::messages::TopicName(crate::handlers::sb(topic));
        t.partitions = parts
            .iter()
            .map(|&(p, o)| {
                let mut fp = FetchPartition::default();
                fp.partition = p;
                fp.fetch_offset = o;
                fp.partition_max_bytes = 1 << 20;
                fp
            })
            .collect();
        let mut r = FetchRequest::default();
        r.topics = vec![t];
        r.max_wait_ms = max_wait;
        r.min_bytes = 1;
        r.max_bytes = max_bytes;
        r
    }

    async fn produce(state: &SharedState, topic: &str, p: i32, n: usize) {
        let h = test_util::header(ApiKey::Produce, 9);
        let r = produce::handle(state, &h, produce_req(topic, p, batch(n, 1, None), -1))
            .await
            .unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }

    #[tokio::test]
    async fn returns_whole_batches_and_partition_errors() {
        let (state, _dir) = test_util::state();
        state
            .topics
            .create("f", 2, Default::default(), false, 0)
            .unwrap();
        produce(&state, "f", 0, 3).await;
        produce(&state, "f", 0, 2).await;
        let h = test_util::header(ApiKey::Fetch, 11);
        let r = handle(
            &state,
            &h,
            req("f", &[(0, 1), (1, 0), (0, 99), (9, 0)], 0, 1 << 20),
        )
        .await;
        let ps = &r.responses[0].partitions;
        let first = ps[0].records.as_ref().unwrap();
        assert_eq!(
            i64::from_be_bytes(first[..8].try_into().unwrap()),
            0,
            "whole batch containing 1"
        );
        assert_eq!((ps[0].high_watermark, ps[0].last_stable_offset), (5, 5));
        assert_eq!(ps[0].preferred_read_replica, BrokerId(-1));
        assert_eq!(ps[0].aborted_transactions, Some(vec![]));
        assert_eq!(
            (ps[1].error_code, ps[1].records.as_ref().unwrap().len()),
            (0, 0)
        );
        assert_eq!(ps[2].error_code, 1, "OFFSET_OUT_OF_RANGE");
        assert_eq!(ps[3].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
        assert!(ps.iter().all(|p| p.records.is_some()), "never null records");
    }

    #[tokio::test]
    async fn max_bytes_gives_at_least_one_batch_then_stops() {
        let (state, _dir) = test_util::state();
        state
            .topics
            .create("m", 2, Default::default(), false, 0)
            .unwrap();
        produce(&state, "m", 0, 20).await;
        produce(&state, "m", 1, 20).await;
        let h = test_util::header(ApiKey::Fetch, 11);
        let r = handle(&state, &h, req("m", &[(0, 0), (1, 0)], 0, 10)).await;
        let ps = &r.responses[0].partitions;
        assert!(
            ps[0].records.as_ref().unwrap().len() > 10,
            "one whole batch over the limit"
        );
        assert!(ps[1].records.as_ref().unwrap().is_empty(), "budget spent");
        assert_eq!(ps[1].high_watermark, 20);
    }

    #[tokio::test]
    async fn long_poll_wakes_on_new_data() {
        let (state, _dir) = test_util::state();
        state
            .topics
            .create("w", 1, Default::default(), false, 0)
            .unwrap();
        let s = state.clone();
        let waiter = tokio::spawn(async move {
            let h = test_util::header(ApiKey::Fetch, 11);
            handle(&s, &h, req("w", &[(0, 0)], 20_000, 1 << 20)).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "waits for data");
        let start = std::time::Instant::now();
        produce(&state, "w", 0, 1).await;
        let r = waiter.await.unwrap();
        assert!(
            !r.responses[0].partitions[0]
                .records
                .as_ref()
                .unwrap()
                .is_empty()
        );
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
