//! OffsetDelete (47), v0: deletes committed offsets of some partitions of a group, as Kafka
//! does: unknown group -> GROUP_ID_NOT_FOUND; an Empty group loses any of them; a group with
//! members keeps the offsets of topics its members subscribe to (GROUP_SUBSCRIBED_TO_TOPIC per
//! partition) and is refused outright (NON_EMPTY_GROUP) unless it uses the consumer protocol,
//! whose subscriptions can be read.

use std::collections::HashSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, RequestHeader};
use waterline_coordinator::GroupState;
use waterline_store::TopicPartition;

use crate::groups::store_error_code;
use crate::state::SharedState;

/// Topics named by a consumer-protocol subscription (any version: they all start with an INT16
/// version and an array of INT16-length strings). `None` if the bytes do not parse.
pub(crate) fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata;
    let mut take = |n: usize| -> Option<&[u8]> {
        if buf.len() < n {
            return None;
        }
        let (head, tail) = buf.split_at(n);
        buf = tail;
        Some(head)
    };
    let _version = take(2)?;
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let count = usize::try_from(count).ok()?;
    // Each topic needs at least its 2-byte length: bound the count by the bytes present.
    let mut topics = Vec::with_capacity(count.min(metadata.len() / 2));
    for _ in 0..count {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        topics.push(String::from_utf8(take(len)?.to_vec()).ok()?);
    }
    Some(topics)
}

/// What the group's state allows: `Err(code)` refuses the whole request; `Ok(None)` allows
/// every partition; `Ok(Some(topics))` protects the offsets of these subscribed topics.
fn protected_topics(state: &SharedState, group: &str) -> Result<Option<HashSet<String>>, i16> {
    let Some(view) = state.groups.group(group) else {
        return Err(ResponseError::GroupIdNotFound.code());
    };
    match view.state {
        GroupState::Dead => Err(ResponseError::GroupIdNotFound.code()),
        GroupState::Empty => Ok(None),
        _ if view.protocol_type.as_deref() != Some("consumer") => {
            Err(ResponseError::NonEmptyGroup.code())
        }
        GroupState::Stable => {
            let described = state.groups.describe(&[group.to_string()]);
            let mut topics = HashSet::new();
            for m in described.iter().flat_map(|g| &g.members) {
                // Unreadable subscriptions: protect everything rather than guess.
                let Some(ts) = subscribed_topics(&m.metadata) else {
                    return Err(ResponseError::GroupSubscribedToTopic.code());
                };
                topics.extend(ts);
            }
            Ok(Some(topics))
        }
        // Subscriptions are only reported once Stable; while rebalancing protect everything.
        _ => Err(ResponseError::GroupSubscribedToTopic.code()),
    }
}

/// Handles a decoded OffsetDelete request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = req.group_id.to_string();
    let mut resp = OffsetDeleteResponse::default();
    let protected = match protected_topics(state, &group) {
        Ok(p) => p,
        Err(code) if code == ResponseError::GroupSubscribedToTopic.code() => Some(
            HashSet::from_iter(req.topics.iter().map(|t| t.name.to_string())),
        ),
        Err(code) => {
            resp.error_code = code;
            return resp;
        }
    };
    let mut rows: Vec<Vec<(i32, Option<i16>)>> = Vec::with_capacity(req.topics.len());
    let mut to_delete = Vec::new();
    for t in &req.topics {
        let known = state.topics.get(t.name.as_str());
        let subscribed = protected
            .as_ref()
            .is_some_and(|p| p.contains(t.name.as_str()));
        rows.push(
            t.partitions
                .iter()
                .map(|p| {
                    let exists = known.as_ref().is_some_and(|topic| {
                        usize::try_from(p.partition_index).is_ok_and(|i| i < topic.partitions.len())
                    });
                    let code = if !exists {
                        Some(ResponseError::UnknownTopicOrPartition.code())
                    } else if subscribed {
                        Some(ResponseError::GroupSubscribedToTopic.code())
                    } else {
                        to_delete.push(TopicPartition::new(t.name.to_string(), p.partition_index));
                        None
                    };
                    (p.partition_index, code)
                })
                .collect(),
        );
    }
    let deleted = if to_delete.is_empty() {
        0
    } else {
        match state.groups.delete_offsets(&group, &to_delete).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(%group, error = %e, "deleting offsets failed");
                store_error_code(&e)
            }
        }
    };
    for (t, row) in req.topics.into_iter().zip(rows) {
        let mut rt = OffsetDeleteResponseTopic::default();
        rt.name = t.name;
        rt.partitions = row
            .into_iter()
            .map(|(index, code)| {
                let mut rp = OffsetDeleteResponsePartition::default();
                rp.partition_index = index;
                rp.error_code = code.unwrap_or(deleted);
                rp
            })
            .collect();
        resp.topics.push(rt);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consumer_subscriptions_and_refuses_garbage() {
        let mut m = vec![0, 1, 0, 0, 0, 2];
        for t in ["a", "bc"] {
            m.extend_from_slice(&(t.len() as i16).to_be_bytes());
            m.extend_from_slice(t.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 0, 0]); // user data etc. after the topics are ignored
        assert_eq!(subscribed_topics(&m), Some(vec!["a".into(), "bc".into()]));
        assert_eq!(subscribed_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(subscribed_topics(&[0, 1, 0, 0, 0, 1, 0, 5, b'x']), None);
        assert_eq!(subscribed_topics(&[]), None);
    }
}
