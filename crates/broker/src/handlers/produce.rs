//! Produce (0): validates record batches, appends them, and answers acks=1/-1 only once a sync
//! covers them (group commit, see sync.rs). acks=0 gets no response.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};
use waterline_log::{BatchError, BatchHeader, LogError, split_produced};

use crate::config::FsyncPolicy;
use crate::handlers::{sb, topic_for_use};
use crate::partition::Partition;
use crate::state::{BrokerState, SharedState};

/// Longest a produce waits for its sync when the request's own timeout is not usable.
const DEFAULT_SYNC_WAIT_MS: i32 = 30_000;

/// Kafka error code for a log error on append.
pub fn append_error_code(e: &LogError) -> i16 {
    match e {
        LogError::Batch(b) => batch_error_code(b),
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
        LogError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch.code(),
        LogError::UnknownProducerId { .. } => ResponseError::UnknownProducerId.code(),
        LogError::OffsetOverflow(_) => ResponseError::UnknownServerError.code(),
        _ => ResponseError::KafkaStorageError.code(),
    }
}

/// Kafka error code for an invalid batch.
pub fn batch_error_code(e: &BatchError) -> i16 {
    match e {
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge.code(),
        BatchError::BadRecordCount(_)
        | BatchError::BadOffsetDelta { .. }
        | BatchError::BadRecords(_) => ResponseError::InvalidRecord.code(),
        _ => ResponseError::CorruptMessage.code(),
    }
}

/// Outcome of appending one partition's records.
#[derive(Debug, Clone)]
struct Appended {
    error_code: i16,
    error_message: Option<String>,
    base_offset: i64,
    /// Offset after the last appended record; the sync must reach it before acks=1/-1.
    end_offset: i64,
    log_start_offset: i64,
}

impl Appended {
    fn error(code: i16, message: impl Into<String>) -> Self {
        Appended {
            error_code: code,
            error_message: Some(message.into()),
            base_offset: -1,
            end_offset: -1,
            log_start_offset: -1,
        }
    }
}

/// Validates and appends every batch of one partition's `records`. Blocking (file writes).
fn append_partition(
    state: &BrokerState,
    p: &Arc<Partition>,
    records: &[u8],
    max_batch: usize,
) -> Appended {
    let batches = match split_produced(records, max_batch) {
        Ok(r) if r.is_empty() => {
            return Appended::error(ResponseError::InvalidRecord.code(), "no record batches");
        }
        Ok(r) => r,
        Err(e) => return Appended::error(batch_error_code(&e), e.to_string()),
    };
    for b in &batches {
        match BatchHeader::parse(&records[b.range.clone()]) {
            Ok(h) if h.is_transactional() || h.is_control() => {
                return Appended::error(
                    ResponseError::InvalidRecord.code(),
                    "transactional and control batches are not supported",
                );
            }
            Ok(_) => {}
            Err(e) => return Appended::error(batch_error_code(&e), e.to_string()),
        }
    }
    let now = BrokerState::now_ms();
    let result = p.with_log(|log| {
        let mut first: Option<i64> = None;
        let mut end = -1;
        let mut start = log.log_start_offset();
        for b in &batches {
            // Validation above decoded the records once; the hint spares the log a second pass.
            match log.append_produced(&records[b.range.clone()], b.max_timestamp_delta, now) {
                Ok(o) => {
                    first.get_or_insert(o.base_offset);
                    end = end.max(o.last_offset + 1);
                    start = o.log_start_offset;
                }
                Err(e) => {
                    let mut a = Appended::error(append_error_code(&e), e.to_string());
                    // Batches before the failing one stay appended and must still be synced.
                    a.end_offset = end;
                    return a;
                }
            }
        }
        Appended {
            error_code: 0,
            error_message: None,
            base_offset: first.unwrap_or(-1),
            end_offset: end,
            log_start_offset: start,
        }
    });
    match result {
        Some(a) => {
            if a.end_offset >= 0 {
                state.sync.mark_dirty(p);
            }
            a
        }
        None => Appended::error(
            ResponseError::UnknownTopicOrPartition.code(),
            "partition is closed",
        ),
    }
}

/// Waits until the partition's high watermark reaches `end_offset` (a sync covered it).
async fn wait_synced(p: &Partition, end_offset: i64, timeout: Duration) -> Result<(), i16> {
    let mut rx = p.subscribe();
    let wait = rx.wait_for(|s| s.high_watermark >= end_offset || s.failed || s.closed);
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(s)) if s.high_watermark >= end_offset => Ok(()),
        Ok(_) => Err(ResponseError::KafkaStorageError.code()),
        Err(_) => Err(ResponseError::RequestTimedOut.code()),
    }
}

/// Handles a decoded produce request (v3+). `None` for acks=0.
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: ProduceRequest,
) -> Option<ProduceResponse> {
    append(state, header, req).await.finish().await
}

/// (topic name, per partition: (index, outcome)) in request order.
type TopicResults = Vec<(kafka_protocol::messages::TopicName, Vec<(i32, Appended)>)>;

/// A produce request whose batches are appended but whose answer may still wait for a sync.
pub struct PendingProduce {
    acks: i16,
    timeout: Duration,
    wait_for_sync: bool,
    results: TopicResults,
    /// (topic slot, partition slot, partition, outcome) of every partition that was appended to.
    appended: Vec<(usize, usize, Arc<Partition>, Appended)>,
}

/// First phase of a produce: resolves topics and appends every batch. The connection runs this
/// phase inline, in arrival order, so requests pipelined on one connection are appended in the
/// order they were sent (idempotent producers pipeline up to 5 per partition); only the wait
/// for the sync ([`PendingProduce::finish`]) runs concurrently with later requests.
pub async fn append(
    state: &SharedState,
    _header: &RequestHeader,
    req: ProduceRequest,
) -> PendingProduce {
    let acks = req.acks;
    // (topic index, partition index, partition, records, max batch) for the blocking stage.
    let mut work = Vec::new();
    let mut results: TopicResults = Vec::new();
    for (ti, topic_data) in req.topic_data.into_iter().enumerate() {
        let name = topic_data.name.clone();
        let topic = topic_for_use(state, &name, true).await;
        let mut parts = Vec::new();
        for pd in topic_data.partition_data {
            let slot = parts.len();
            if !(-1..=1).contains(&acks) {
                parts.push((
                    pd.index,
                    Appended::error(
                        ResponseError::InvalidRequiredAcks.code(),
                        "acks must be 0, 1 or -1",
                    ),
                ));
                continue;
            }
            match &topic {
                Err(e) => parts.push((pd.index, Appended::error(e.code(), e.to_string()))),
                Ok(t) => match usize::try_from(pd.index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
                {
                    None => parts.push((
                        pd.index,
                        Appended::error(
                            ResponseError::UnknownTopicOrPartition.code(),
                            "no such partition",
                        ),
                    )),
                    Some(p) => {
                        parts.push((
                            pd.index,
                            Appended::error(
                                ResponseError::UnknownServerError.code(),
                                "append did not complete",
                            ),
                        ));
                        work.push((
                            ti,
                            slot,
                            p.clone(),
                            pd.records.unwrap_or_default(),
                            t.log_config.max_batch_bytes,
                        ));
                    }
                },
            }
        }
        results.push((name, parts));
    }

    let s = state.clone();
    let appended = tokio::task::spawn_blocking(move || {
        work.into_iter()
            .map(|(ti, slot, p, records, max)| {
                let a = append_partition(&s, &p, &records, max);
                (ti, slot, p, a)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let appended = match appended {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "produce append task failed");
            Vec::new()
        }
    };

    PendingProduce {
        acks,
        timeout: Duration::from_millis(if req.timeout_ms > 0 {
            req.timeout_ms
        } else {
            DEFAULT_SYNC_WAIT_MS
        } as u64),
        wait_for_sync: acks != 0 && state.config.fsync == FsyncPolicy::Always,
        results,
        appended,
    }
}

impl PendingProduce {
    /// Second phase: waits (for acks=1/-1 under [`FsyncPolicy::Always`]) until a sync covers
    /// every appended batch, then builds the response; `None` for acks=0.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let PendingProduce {
            acks,
            timeout,
            wait_for_sync,
            mut results,
            appended,
        } = self;
        let mut waits = Vec::new();
        for (ti, slot, p, mut a) in appended {
            if wait_for_sync && a.end_offset >= 0 {
                let end = a.end_offset;
                waits.push(async move {
                    if let Err(code) = wait_synced(&p, end, timeout).await
                        && a.error_code == 0
                    {
                        a.error_code = code;
                        a.error_message = Some("the append was not made durable in time".into());
                    }
                    (ti, slot, a)
                });
            } else {
                results[ti].1[slot].1 = a;
            }
        }
        for (ti, slot, a) in futures::future::join_all(waits).await {
            results[ti].1[slot].1 = a;
        }
        if acks == 0 {
            return None;
        }

        let mut resp = ProduceResponse::default();
        for (name, parts) in results {
            let mut t = TopicProduceResponse::default();
            t.name = name;
            for (index, a) in parts {
                let mut pr = PartitionProduceResponse::default();
                pr.index = index;
                pr.error_code = a.error_code;
                pr.base_offset = a.base_offset;
                pr.log_append_time_ms = -1;
                pr.log_start_offset = a.log_start_offset;
                if a.error_code != 0 {
                    pr.error_message = a.error_message.map(sb);
                }
                t.partition_responses.push(pr);
            }
            resp.responses.push(t);
        }
        Some(resp)
    }
}

/// Answers a Produce v0-2 request (advertised like Apache Kafka 4 does, but not served) with
/// UNSUPPORTED_VERSION for every partition, in the v0-2 response schema. `frame` is the whole
/// request frame. `Ok(None)` for acks=0 (no response); `Err` if the frame is malformed (the
/// caller closes the connection).
pub fn legacy_unsupported(frame: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    legacy_body(frame).ok_or("malformed produce v0-2 request")
}

fn legacy_body(frame: &[u8]) -> Option<Option<Vec<u8>>> {
    let mut b = frame;
    if b.remaining() < 10 {
        return None;
    }
    b.advance(2);
    let version = b.get_i16();
    b.advance(4);
    let client_id_len = b.get_i16();
    if client_id_len > 0 {
        let n = client_id_len as usize;
        if b.remaining() < n {
            return None;
        }
        b.advance(n);
    }
    if b.remaining() < 10 {
        return None;
    }
    let acks = b.get_i16();
    b.advance(4); // timeout
    let topics = b.get_i32();
    if topics < 0 || topics as usize > b.remaining() {
        return None;
    }
    let mut out = BytesMut::new();
    out.put_i32(topics);
    for _ in 0..topics {
        if b.remaining() < 2 {
            return None;
        }
        let len = b.get_i16();
        if len < 0 || b.remaining() < len as usize + 4 {
            return None;
        }
        out.put_i16(len);
        out.put_slice(&b[..len as usize]);
        b.advance(len as usize);
        let parts = b.get_i32();
        if parts < 0 || parts as usize > b.remaining() {
            return None;
        }
        out.put_i32(parts);
        for _ in 0..parts {
            if b.remaining() < 8 {
                return None;
            }
            let index = b.get_i32();
            let rec_len = b.get_i32();
            if rec_len > 0 {
                if b.remaining() < rec_len as usize {
                    return None;
                }
                b.advance(rec_len as usize);
            }
            out.put_i32(index);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1);
            if version >= 2 {
                out.put_i64(-1);
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle_time_ms
    }
    if acks == 0 {
        return Some(None);
    }
    Some(Some(out.to_vec()))
}

/// Whether a frame is an (unserved) Produce v0-2 request.
pub fn is_legacy(api_key: i16, version: i16) -> bool {
    api_key == 0 && (0..=2).contains(&version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_util::{self, batch, produce_req};
    use kafka_protocol::messages::ApiKey;

    fn part(r: &ProduceResponse) -> &PartitionProduceResponse {
        &r.responses[0].partition_responses[0]
    }

    #[tokio::test]
    async fn acks_all_is_answered_after_the_sync_and_offsets_advance() {
        let (state, _dir) = test_util::state();
        let h = test_util::header(ApiKey::Produce, 9);
        for expected in [0, 3, 6] {
            let r = handle(&state, &h, produce_req("p", 0, batch(3, 1, None), -1))
                .await
                .unwrap();
            assert_eq!((part(&r).error_code, part(&r).base_offset), (0, expected));
            let p = state.topics.partition("p", 0).unwrap();
            assert!(
                p.signal().high_watermark >= expected + 3,
                "durable before the answer"
            );
        }
    }

    #[tokio::test]
    async fn acks_zero_has_no_response_but_appends() {
        let (state, _dir) = test_util::state();
        let h = test_util::header(ApiKey::Produce, 9);
        assert!(
            handle(&state, &h, produce_req("z", 0, batch(2, 1, None), 0))
                .await
                .is_none()
        );
        let p = state.topics.partition("z", 0).unwrap();
        assert_eq!(p.with_log(|l| l.log_end_offset()), Some(2));
    }

    #[tokio::test]
    async fn errors_map_to_kafka_codes() {
        let (state, _dir) = test_util::state();
        let h = test_util::header(ApiKey::Produce, 9);
        let code = |r: Option<ProduceResponse>| part(&r.unwrap()).error_code;
        let r = handle(&state, &h, produce_req("e", 7, batch(1, 1, None), -1)).await;
        assert_eq!(code(r), 3, "unknown partition");
        let r = handle(&state, &h, produce_req("e", 0, batch(1, 1, None), 5)).await;
        assert_eq!(code(r), 21, "invalid acks");
        let r = handle(&state, &h, produce_req("e", 0, bytes::Bytes::new(), 1)).await;
        assert_eq!(code(r), 87, "no batches");
        let mut bad = batch(2, 1, None).to_vec();
        bad[30] ^= 1;
        let r = handle(&state, &h, produce_req("e", 0, bad.into(), 1)).await;
        assert_eq!(code(r), 2, "crc");
        let r = handle(
            &state,
            &h,
            produce_req("e", 0, batch(1, 1, Some((5, 0, 0))), 1),
        )
        .await;
        assert_eq!(code(r), 0);
        let r = handle(
            &state,
            &h,
            produce_req("e", 0, batch(1, 1, Some((5, 0, 3))), 1),
        )
        .await;
        assert_eq!(code(r), 45, "sequence gap");
        let r = handle(
            &state,
            &h,
            produce_req("e", 0, batch(1, 1, Some((5, 1, 0))), 1),
        )
        .await;
        assert_eq!(code(r), 0, "new epoch restarts sequences");
        let r = handle(
            &state,
            &h,
            produce_req("e", 0, batch(1, 1, Some((5, 0, 1))), 1),
        )
        .await;
        assert_eq!(code(r), 47, "old epoch is fenced");
        let small = [("max.message.bytes".to_string(), "128".to_string())].into();
        state.topics.create("small", 1, small, false, 0).unwrap();
        let r = handle(&state, &h, produce_req("small", 0, batch(10, 1, None), 1)).await;
        assert_eq!(code(r), 10, "MESSAGE_TOO_LARGE");
    }

    #[tokio::test]
    async fn failed_fsync_answers_storage_error_instead_of_hanging() {
        let (state, mem, _dir) = test_util::mem_state();
        let h = test_util::header(ApiKey::Produce, 9);
        let r = handle(&state, &h, produce_req("f", 0, batch(1, 1, None), -1)).await;
        assert_eq!(part(&r.unwrap()).error_code, 0);
        mem.fail_next_syncs(1_000);
        let start = std::time::Instant::now();
        let r = handle(&state, &h, produce_req("f", 0, batch(1, 1, None), -1)).await;
        assert_eq!(part(&r.unwrap()).error_code, 56, "KAFKA_STORAGE_ERROR");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "did not wait for the timeout"
        );
        // The log is poisoned: later appends are refused too.
        let r = handle(&state, &h, produce_req("f", 0, batch(1, 1, None), -1)).await;
        assert_ne!(part(&r.unwrap()).error_code, 0);
    }

    #[test]
    fn legacy_produce_is_parsed_defensively() {
        assert!(legacy_unsupported(&[0; 5]).is_err());
        let mut f = vec![0, 0, 0, 1, 0, 0, 0, 9, 255, 255, 0, 1, 0, 0, 0, 0];
        f.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(
            legacy_unsupported(&f).is_err(),
            "topic count beyond the frame"
        );
    }
}
