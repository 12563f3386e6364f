//! What `groups describe` and `lag` both read about a group: its description, committed
//! offsets, the partitions it commits or is assigned, their log end offsets and the time of
//! the next record to consume. One place, so both commands agree, and one bad partition (a
//! deleted topic, a partition without a leader) shows as unknown instead of failing the
//! command for every group.

use std::collections::{BTreeMap, BTreeSet};

use waterline_core::TopicPartition;

use super::{CliError, group_exists, next_record_times};
use crate::client::{AdminClient, Committed, GroupInfo, OffsetSpec};
use crate::codes;

/// One partition of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionState {
    /// The partition.
    pub tp: TopicPartition,
    /// The group's committed offset.
    pub current: Option<i64>,
    /// The log end offset, or the error code the cluster gave instead (e.g.
    /// UNKNOWN_TOPIC_OR_PARTITION once the topic is deleted).
    pub log_end: Result<i64, i16>,
    /// The log start offset, when the cluster gave it.
    pub log_start: Option<i64>,
    /// Timestamp of the next record the group will read, when it is behind and it was read.
    pub next_record_ms: Option<i64>,
    /// Index into the group's members of the member assigned this partition.
    pub owner: Option<usize>,
}

impl PartitionState {
    /// The log end offset, when known.
    pub fn log_end(&self) -> Option<i64> {
        self.log_end.ok()
    }
}

/// One group, as the broker describes it, with its partitions (when asked for).
#[derive(Debug, Clone)]
pub(crate) struct GroupState {
    /// DescribeGroups' answer.
    pub info: GroupInfo,
    /// Whether the group exists (see [`group_exists`]).
    pub exists: bool,
    /// Committed or assigned partitions, sorted; empty unless offsets were asked for.
    pub partitions: Vec<PartitionState>,
}

/// Describes `groups` and, with `with_offsets`, reads the state of every partition they
/// commit or are assigned, in a few batched requests.
pub(crate) async fn read_groups(
    client: &mut AdminClient,
    groups: &[String],
    with_offsets: bool,
) -> Result<Vec<GroupState>, CliError> {
    let described = client.describe_groups(groups).await?;
    let mut out = Vec::with_capacity(described.len());
    for g in described {
        if g.error_code != codes::NONE && g.error_code != codes::GROUP_ID_NOT_FOUND {
            return Err(CliError::Failed(format!(
                "DescribeGroups failed for group {}: {}",
                g.group_id,
                codes::describe(g.error_code)
            )));
        }
        let committed = client.offset_fetch(&g.group_id, None).await?;
        let exists = group_exists(
            g.error_code,
            &g.state,
            !g.members.is_empty(),
            !committed.is_empty(),
        );
        let partitions = if with_offsets && exists {
            partition_states(client, &g, &committed).await?
        } else {
            Vec::new()
        };
        out.push(GroupState {
            info: g,
            exists,
            partitions,
        });
    }
    Ok(out)
}

async fn partition_states(
    client: &mut AdminClient,
    g: &GroupInfo,
    committed: &BTreeMap<TopicPartition, Committed>,
) -> Result<Vec<PartitionState>, CliError> {
    let mut owners: BTreeMap<TopicPartition, usize> = BTreeMap::new();
    for (i, m) in g.members.iter().enumerate() {
        for tp in &m.assignment {
            owners.insert(tp.clone(), i);
        }
    }
    let partitions: BTreeSet<TopicPartition> =
        committed.keys().chain(owners.keys()).cloned().collect();
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let specs: Vec<(TopicPartition, OffsetSpec)> = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let answers = client.list_offsets_each(&specs).await?;
    let earliest: Vec<(TopicPartition, OffsetSpec)> = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Earliest))
        .collect();
    let starts = client.list_offsets_each(&earliest).await?;
    let ends: BTreeMap<TopicPartition, Option<i64>> = answers
        .iter()
        .map(|(tp, a)| (tp.clone(), a.ok().flatten()))
        .collect();
    let committed_at: BTreeMap<TopicPartition, i64> = committed
        .iter()
        .map(|(tp, c)| (tp.clone(), c.offset))
        .collect();
    let next_ts = next_record_times(client, &committed_at, &ends).await;
    Ok(partitions
        .into_iter()
        .map(|tp| PartitionState {
            current: committed_at.get(&tp).copied(),
            log_end: match answers.get(&tp) {
                Some(Ok(end)) => Ok(end.unwrap_or(0)),
                Some(Err(code)) => Err(*code),
                None => Err(codes::UNKNOWN_TOPIC_OR_PARTITION),
            },
            log_start: match starts.get(&tp) {
                Some(Ok(start)) => *start,
                _ => None,
            },
            next_record_ms: next_ts.get(&tp).copied(),
            owner: owners.get(&tp).copied(),
            tp,
        })
        .collect())
}
