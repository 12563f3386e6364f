//! OffsetFetch (9), v1-9: committed offset and metadata per partition (-1 and empty metadata
//! where nothing is committed), or every committed partition of a group when topics is null.
//! The committed leader epoch is returned (-1 if none was committed); consumers validate it with
//! OffsetForLeaderEpoch.
//! v8+ batch groups. Offsets committed inside a transaction (TxnOffsetCommit) are invisible
//! until the transaction commits; with `require_stable` (v7+) a partition that has such a
//! pending offset answers UNSTABLE_OFFSET_COMMIT (the client retries), as in Kafka.

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName};

use crate::groups::store_error_code;
use crate::handlers::sb;
use crate::state::SharedState;

/// One partition's answer: (index, offset, metadata, error code, committed leader epoch).
type Part = (i32, i64, String, i16, i32);

/// Answers one group: `topics` `None` means every committed partition. On a group-level error
/// (store failure, empty group id) returns the error code and the requested partitions with it.
async fn fetch_group(
    state: &SharedState,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
    require_stable: bool,
) -> (i16, Vec<(TopicName, Vec<Part>)>) {
    let (code, mut parts) = fetch_committed(state, group, topics).await;
    if require_stable && code == 0 {
        for (name, ps) in &mut parts {
            for p in ps.iter_mut() {
                let tp = waterline_store::TopicPartition::new(name.to_string(), p.0);
                if state.groups.has_pending_txn_offset(group, &tp) {
                    *p = (
                        p.0,
                        -1,
                        String::new(),
                        ResponseError::UnstableOffsetCommit.code(),
                        -1,
                    );
                }
            }
        }
    }
    (code, parts)
}

async fn fetch_committed(
    state: &SharedState,
    group: &str,
    topics: Option<Vec<(TopicName, Vec<i32>)>>,
) -> (i16, Vec<(TopicName, Vec<Part>)>) {
    let committed = if group.is_empty() {
        Err(ResponseError::InvalidGroupId.code())
    } else {
        state.groups.committed(group).await.map_err(|e| {
            tracing::error!(%group, error = %e, "reading committed offsets failed");
            store_error_code(&e)
        })
    };
    let committed = match committed {
        Ok(c) => c,
        Err(code) => {
            let parts = topics
                .unwrap_or_default()
                .into_iter()
                .map(|(name, ps)| {
                    (
                        name,
                        ps.into_iter()
                            .map(|p| (p, -1, String::new(), code, -1))
                            .collect(),
                    )
                })
                .collect();
            return (code, parts);
        }
    };
    let Some(topics) = topics else {
        // Every committed partition, grouped by topic (the store sorts by topic, partition).
        let mut out: Vec<(TopicName, Vec<Part>)> = Vec::new();
        for (tp, om) in committed {
            let epoch = om.leader_epoch.unwrap_or(-1);
            let part = (
                tp.partition,
                om.offset().unwrap_or(-1),
                om.metadata,
                0,
                epoch,
            );
            match out.last_mut() {
                Some((name, parts)) if name.as_str() == tp.topic => parts.push(part),
                _ => out.push((TopicName(sb(tp.topic)), vec![part])),
            }
        }
        return (0, out);
    };
    let by_tp: HashMap<(String, i32), (i64, String, i32)> = committed
        .into_iter()
        .map(|(tp, om)| {
            (
                (tp.topic, tp.partition),
                (
                    om.offset().unwrap_or(-1),
                    om.metadata,
                    om.leader_epoch.unwrap_or(-1),
                ),
            )
        })
        .collect();
    let out = topics
        .into_iter()
        .map(|(name, ps)| {
            let parts = ps
                .into_iter()
                .map(|p| {
                    let (offset, metadata, epoch) = by_tp
                        .get(&(name.to_string(), p))
                        .cloned()
                        .unwrap_or((-1, String::new(), -1));
                    (p, offset, metadata, 0, epoch)
                })
                .collect();
            (name, parts)
        })
        .collect();
    (0, out)
}

/// Handles a decoded OffsetFetch request.
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let version = header.request_api_version;
    let mut resp = OffsetFetchResponse::default();
    if version >= 8 {
        for g in req.groups {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect::<Vec<_>>()
            });
            let (code, parts) =
                fetch_group(state, g.group_id.as_str(), topics, req.require_stable).await;
            let mut rg = OffsetFetchResponseGroup::default();
            rg.group_id = g.group_id;
            rg.error_code = code;
            rg.topics = parts
                .into_iter()
                .map(|(name, ps)| {
                    let mut rt = OffsetFetchResponseTopics::default();
                    rt.name = name;
                    rt.partitions = ps
                        .into_iter()
                        .map(|(index, offset, metadata, error, epoch)| {
                            let mut rp = OffsetFetchResponsePartitions::default();
                            rp.partition_index = index;
                            rp.committed_offset = offset;
                            rp.committed_leader_epoch = epoch;
                            rp.metadata = Some(sb(metadata));
                            rp.error_code = error;
                            rp
                        })
                        .collect();
                    rt
                })
                .collect();
            resp.groups.push(rg);
        }
        return resp;
    }
    let topics = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let (code, parts) = fetch_group(state, req.group_id.as_str(), topics, req.require_stable).await;
    // v1 has no top-level error; its partitions carry it.
    if version >= 2 {
        resp.error_code = code;
    }
    resp.topics = parts
        .into_iter()
        .map(|(name, ps)| {
            let mut rt = OffsetFetchResponseTopic::default();
            rt.name = name;
            rt.partitions = ps
                .into_iter()
                .map(|(index, offset, metadata, error, epoch)| {
                    let mut rp = OffsetFetchResponsePartition::default();
                    rp.partition_index = index;
                    rp.committed_offset = offset;
                    rp.committed_leader_epoch = epoch;
                    rp.metadata = Some(sb(metadata));
                    rp.error_code = error;
                    rp
                })
                .collect();
            rt
        })
        .collect();
    resp
}
