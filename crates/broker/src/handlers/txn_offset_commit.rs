//! TxnOffsetCommit (28), v0-5: offsets committed inside a transaction. They are stored durably
//! as *pending* for (group, producer id) and become the group's committed offsets only when
//! the transaction's COMMIT settles them (an ABORT drops them); until then OffsetFetch does not
//! show them and `require_stable` answers UNSTABLE_OFFSET_COMMIT.
//!
//! Order of checks: unknown topic or partition (UNKNOWN_TOPIC_OR_PARTITION per partition);
//! the group's generation and member (v3+, through the group coordinator; KIP-447: generation
//! -1 with an empty member id skips the check, which is what producers without the consumer's
//! group metadata send); the transaction (through the transaction coordinator: the group must
//! be in the producer's ongoing transaction); metadata size. An error answers every remaining
//! partition.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{RequestHeader, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use waterline_coordinator::OffsetCommitCheck;
use waterline_store::{OffsetAndMetadata, TopicPartition};
use waterline_txn::TxnOffsetCommitCheck;

use crate::groups::store_error_code;
use crate::state::{BrokerState, SharedState};

/// Handles a decoded TxnOffsetCommit request (to completion: it is answered once the pending
/// offsets are durable).
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let version = header.request_api_version;
    let group = req.group_id.to_string();
    let max_metadata = state.groups.config().offset_metadata_max_bytes;
    let now = BrokerState::now_ms();
    let mut codes: Vec<Vec<Option<i16>>> = req
        .topics
        .iter()
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| {
                    state
                        .topics
                        .partition(t.name.as_str(), p.partition_index)
                        .is_none()
                        .then_some(ResponseError::UnknownTopicOrPartition.code())
                })
                .collect()
        })
        .collect();

    let group_error = if group.is_empty() {
        Some(ResponseError::InvalidGroupId.code())
    } else if version >= 3 && !(req.generation_id < 0 && req.member_id.is_empty()) {
        let check = OffsetCommitCheck {
            group_id: group.clone(),
            generation_id: req.generation_id,
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            // The classic OffsetCommit rules of the version that carries these fields.
            api_version: 7,
        };
        state.groups.validate_commit(&check).err().map(|e| e.code())
    } else {
        None
    };

    let mut batch = Vec::new();
    for (t, row) in req.topics.iter().zip(codes.iter_mut()) {
        for (p, slot) in t.partitions.iter().zip(row.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            if let Some(code) = group_error {
                *slot = Some(code);
                continue;
            }
            let metadata = p.committed_metadata.as_ref().map_or("", |m| m.as_str());
            if metadata.len() > max_metadata {
                *slot = Some(ResponseError::OffsetMetadataTooLarge.code());
                continue;
            }
            let mut om =
                OffsetAndMetadata::new(p.committed_offset, now).with_metadata(metadata.to_string());
            om.leader_epoch =
                (version >= 2 && p.committed_leader_epoch >= 0).then_some(p.committed_leader_epoch);
            batch.push((
                TopicPartition::new(t.name.to_string(), p.partition_index),
                om,
            ));
        }
    }

    if !batch.is_empty() {
        let check = TxnOffsetCommitCheck {
            transactional_id: req.transactional_id.to_string(),
            group_id: group.clone(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            api_version: version,
        };
        let pid = req.producer_id.0;
        let staged = state.transactions.check_offset_commit(&check, || {
            state.groups.stage_txn_offsets(pid, &group, batch)
        });
        let code = match staged {
            Err(e) => e.code(),
            Ok(durable) => match durable.await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(%group, error = %e, "storing transactional offsets failed");
                    store_error_code(&e)
                }
            },
        };
        for row in &mut codes {
            for slot in row.iter_mut() {
                slot.get_or_insert(code);
            }
        }
    }

    let mut resp = TxnOffsetCommitResponse::default();
    for (t, row) in req.topics.into_iter().zip(codes) {
        let mut rt = TxnOffsetCommitResponseTopic::default();
        rt.name = t.name;
        for (p, code) in t.partitions.into_iter().zip(row) {
            let mut rp = TxnOffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = code.unwrap_or(0);
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
}
