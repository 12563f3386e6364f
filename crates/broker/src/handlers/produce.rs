//! Produce (0): validates record batches, appends them, and answers acks=1/-1 only once a sync
//! covers them (group commit, see sync.rs). acks=0 gets no response.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};
use waterline_log::{
    BatchError, BatchHeader, LogError, ProducedBatch, keyless_records, split_produced,
};

use crate::config::FsyncPolicy;
use crate::handlers::{sb, topic_for_use};
use crate::partition::Partition;
use crate::state::{BrokerState, SharedState};
use crate::topics::TopicSettings;

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
    /// The append time stamped on the batches (LogAppendTime topics), else -1.
    log_append_time_ms: i64,
    /// (index of the record in its batch, why) for records that made the batch be dropped.
    record_errors: Vec<(i32, String)>,
}

impl Appended {
    fn error(code: i16, message: impl Into<String>) -> Self {
        Appended {
            error_code: code,
            error_message: Some(message.into()),
            base_offset: -1,
            end_offset: -1,
            log_start_offset: -1,
            log_append_time_ms: -1,
            record_errors: Vec::new(),
        }
    }
}

/// Refuses null-key records on a compacted topic, as Kafka does: INVALID_RECORD for the
/// partition, with one record error per keyless record (its index in its batch).
fn refuse_null_keys(p: &Partition, records: &[u8], batches: &[ProducedBatch]) -> Option<Appended> {
    if batches.iter().all(|b| b.null_keys == 0) {
        return None;
    }
    let message = format!(
        "Compacted topic cannot accept message without key in topic partition {}-{}.",
        p.topic, p.index
    );
    let mut a = Appended::error(ResponseError::InvalidRecord.code(), message.clone());
    for b in batches.iter().filter(|b| b.null_keys > 0) {
        match keyless_records(&records[b.range.clone()]) {
            Ok(indexes) => a
                .record_errors
                .extend(indexes.into_iter().map(|i| (i, message.clone()))),
            Err(e) => return Some(Appended::error(batch_error_code(&e), e.to_string())),
        }
    }
    Some(a)
}

/// Stamps each batch with the append time (LogAppendTime): sets the timestamp-type attribute
/// bit, writes `now` as the maximum timestamp and recomputes the CRC, which covers both.
/// Readers take every record's timestamp from the maximum timestamp then.
fn stamp_log_append_time(records: &[u8], batches: &[ProducedBatch], now: i64) -> Vec<u8> {
    const CRC: std::ops::Range<usize> = 17..21;
    const ATTRIBUTES: std::ops::Range<usize> = 21..23;
    const MAX_TIMESTAMP: std::ops::Range<usize> = 35..43;
    const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
    let mut out = records.to_vec();
    for b in batches {
        let batch = &mut out[b.range.clone()];
        let attributes = i16::from_be_bytes([batch[21], batch[22]]) | TIMESTAMP_TYPE_BIT;
        batch[ATTRIBUTES].copy_from_slice(&attributes.to_be_bytes());
        batch[MAX_TIMESTAMP].copy_from_slice(&now.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES.start..]);
        batch[CRC].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// Validates and appends every batch of one partition's `records` under its topic's
/// `settings`. Blocking (file writes).
fn append_partition(
    state: &BrokerState,
    p: &Arc<Partition>,
    records: &[u8],
    max_batch: usize,
    settings: TopicSettings,
    txn: &TxnContext,
) -> Appended {
    let batches = match split_produced(records, max_batch) {
        Ok(r) if r.is_empty() => {
            return Appended::error(ResponseError::InvalidRecord.code(), "no record batches");
        }
        Ok(r) => r,
        Err(e) => return Appended::error(batch_error_code(&e), e.to_string()),
    };
    let mut verified = false;
    for b in &batches {
        match BatchHeader::parse(&records[b.range.clone()]) {
            Ok(h) if h.is_control() => {
                return Appended::error(
                    ResponseError::InvalidRecord.code(),
                    "control batches are written by the transaction coordinator only",
                );
            }
            Ok(h) if h.is_transactional() && !verified => {
                if let Err(refused) = verify_transactional(state, p, &h, txn) {
                    return refused;
                }
                verified = true;
            }
            Ok(_) => {}
            Err(e) => return Appended::error(batch_error_code(&e), e.to_string()),
        }
    }
    if settings.compact
        && let Some(refused) = refuse_null_keys(p, records, &batches)
    {
        return refused;
    }
    let now = BrokerState::now_ms();
    let stamped;
    let (records, append_time) = if settings.log_append_time {
        stamped = stamp_log_append_time(records, &batches, now);
        (&stamped[..], now)
    } else {
        (records, -1)
    };
    let result = p.with_log(|log| {
        let mut first: Option<i64> = None;
        let mut end = -1;
        let mut start = log.log_start_offset();
        for b in &batches {
            // Validation above decoded the records once; the hint spares the log a second pass.
            // Stamped batches have every record at the maximum timestamp: the first one.
            let hint = if append_time >= 0 {
                Some(0)
            } else {
                b.max_timestamp_delta
            };
            match log.append_produced(&records[b.range.clone()], hint, now) {
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
            log_append_time_ms: append_time,
            record_errors: Vec::new(),
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

/// The transactional id and version of a produce request, for KIP-890 verification.
struct TxnContext {
    transactional_id: Option<String>,
    api_version: i16,
}

/// Checks a transactional batch's producer against the transaction coordinator: the partition
/// must be (durably) part of the producer's ongoing transaction, so a zombie or a batch sent
/// outside AddPartitionsToTxn cannot leave a transaction open in the log (KIP-890 part 1).
fn verify_transactional(
    state: &BrokerState,
    p: &Partition,
    h: &BatchHeader,
    txn: &TxnContext,
) -> Result<(), Appended> {
    let Some(id) = txn.transactional_id.as_deref().filter(|t| !t.is_empty()) else {
        return Err(Appended::error(
            ResponseError::InvalidRecord.code(),
            "transactional batches need the request's transactional id",
        ));
    };
    let tp = waterline_txn::TopicPartition::new(p.topic.to_string(), p.index);
    let verdict = state.transactions.verify(
        id,
        h.producer_id,
        h.producer_epoch,
        std::slice::from_ref(&tp),
    );
    match verdict.into_iter().next().and_then(|(_, e)| e) {
        None => Ok(()),
        Some(e) => {
            use waterline_txn::TxnError;
            let code = match e {
                TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch.code(),
                // Clients before KIP-890 (Produce < 12) know only INVALID_TXN_STATE.
                TxnError::TransactionAbortable if txn.api_version < 12 => {
                    ResponseError::InvalidTxnState.code()
                }
                other => other.code(),
            };
            Err(Appended::error(
                code,
                format!("transaction check failed: {}", e.name()),
            ))
        }
    }
}

/// Waits until the partition's high watermark reaches `end_offset` (a sync covered it).
pub(crate) async fn wait_synced(
    p: &Partition,
    end_offset: i64,
    timeout: Duration,
) -> Result<(), i16> {
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
    header: &RequestHeader,
    req: ProduceRequest,
) -> PendingProduce {
    let acks = req.acks;
    let txn = TxnContext {
        transactional_id: req.transactional_id.as_ref().map(|t| t.to_string()),
        api_version: header.request_api_version,
    };
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
                            t.settings,
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
            .map(|(ti, slot, p, records, max, settings)| {
                let a = append_partition(&s, &p, &records, max, settings, &txn);
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
                pr.log_append_time_ms = a.log_append_time_ms;
                pr.log_start_offset = a.log_start_offset;
                if a.error_code != 0 {
                    pr.error_message = a.error_message.map(sb);
                    pr.record_errors = a
                        .record_errors
                        .into_iter()
                        .map(|(index, message)| {
                            let mut e = BatchIndexAndErrorMessage::default();
                            e.batch_index = index;
                            e.batch_index_error_message = Some(sb(message));
                            e
                        })
                        .collect();
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

    /// One v2 batch whose records have these keys (`None`: null key).
    fn keyed_batch(
        keys: &[Option<&str>],
        compression: kafka_protocol::records::Compression,
    ) -> bytes::Bytes {
        use kafka_protocol::records::{
            Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let recs: Vec<Record> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // offset - sequence must be constant for the encoder to keep one batch.
                sequence: i as i32,
                timestamp: 1_000 + i as i64,
                key: k.map(|k| bytes::Bytes::from(k.to_owned())),
                value: Some(bytes::Bytes::from(format!("v{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[tokio::test]
    async fn compacted_topics_refuse_null_keys_with_record_errors() {
        use kafka_protocol::records::Compression;
        let (state, _dir) = test_util::state();
        let overrides = [("cleanup.policy".to_string(), "compact".to_string())].into();
        state.topics.create("c", 1, overrides, false, 0).unwrap();
        let h = test_util::header(ApiKey::Produce, 9);
        for compression in [Compression::None, Compression::Gzip] {
            let keys = [Some("a"), None, Some("b"), None];
            let r = handle(
                &state,
                &h,
                produce_req("c", 0, keyed_batch(&keys, compression), -1),
            )
            .await
            .unwrap();
            let p = part(&r);
            assert_eq!(p.error_code, ResponseError::InvalidRecord.code(), "{p:?}");
            let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(indexes, vec![1, 3]);
            assert!(
                p.error_message
                    .as_deref()
                    .is_some_and(|m| m.contains("without key"))
            );
            let ok = handle(
                &state,
                &h,
                produce_req(
                    "c",
                    0,
                    keyed_batch(&[Some("a"), Some("b")], compression),
                    -1,
                ),
            )
            .await
            .unwrap();
            assert_eq!(part(&ok).error_code, 0);
        }
        // The refused batches were not appended.
        let hw = state
            .topics
            .partition("c", 0)
            .unwrap()
            .with_log(|l| l.log_end_offset());
        assert_eq!(hw, Some(4));
        // Keyless records are fine on a plain topic.
        state
            .topics
            .create("plain", 1, Default::default(), false, 0)
            .unwrap();
        let r = handle(
            &state,
            &h,
            produce_req("plain", 0, keyed_batch(&[None], Compression::None), -1),
        )
        .await
        .unwrap();
        assert_eq!(part(&r).error_code, 0);
    }

    #[tokio::test]
    async fn log_append_time_topics_stamp_batches_with_a_valid_crc() {
        use kafka_protocol::records::Compression;
        let (state, _dir) = test_util::state();
        let overrides = [(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        )]
        .into();
        state.topics.create("lat", 1, overrides, false, 0).unwrap();
        let h = test_util::header(ApiKey::Produce, 9);
        let before = BrokerState::now_ms();
        let r = handle(
            &state,
            &h,
            produce_req(
                "lat",
                0,
                keyed_batch(&[Some("k"), None], Compression::Lz4),
                -1,
            ),
        )
        .await
        .unwrap();
        let p = part(&r);
        assert_eq!(p.error_code, 0);
        assert!(p.log_append_time_ms >= before, "{p:?}");
        let stored = state
            .topics
            .partition("lat", 0)
            .unwrap()
            .with_log(|l| l.read(0, 1 << 20, i64::MAX))
            .unwrap()
            .unwrap();
        let header = BatchHeader::parse(&stored).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, p.log_append_time_ms);
        // Whole and valid: the CRC covers the rewritten fields.
        assert_eq!(split_produced(&stored, 1 << 20).unwrap().len(), 1);
        let t = state.topics.partition("lat", 0).unwrap();
        assert_eq!(
            t.with_log(|l| l.max_timestamp())
                .flatten()
                .map(|(ts, _)| ts),
            Some(p.log_append_time_ms)
        );
    }
}
