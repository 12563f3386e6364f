//! DescribeLogDirs (35), v1-4 (what kafka-protocol decodes; Kafka 4 dropped v0): the broker's
//! one log directory (the data dir) with the size on disk of every partition asked for.
//!
//! As Kafka: `topics` null means every partition; partitions and topics that do not exist are
//! left out of the answer (Kafka reports no error for them, the caller sees them missing); a
//! topic with no partition left is left out. Each partition reports its size (the bytes of its
//! segment files, as Kafka's `Log.size`), offset lag 0 (no replica is moving between
//! directories) and `is_future_key` false. v4 adds the file system's total and usable bytes
//! (`statvfs`: blocks and blocks available to unprivileged users, times the fragment size); if
//! they cannot be read the directory answers KAFKA_STORAGE_ERROR, as Kafka does for a log
//! directory it cannot stat.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, RequestHeader, TopicName,
};

use crate::handlers::sb;
use crate::state::SharedState;

/// Handles a decoded DescribeLogDirs request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let dir = &state.config.data_dir;
    let path = std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.clone());
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = sb(path.to_string_lossy());
    result.total_bytes = -1;
    result.usable_bytes = -1;
    match nix::sys::statvfs::statvfs(&path) {
        Ok(st) => {
            let frag = st.fragment_size() as i64;
            result.total_bytes = (st.blocks() as i64).saturating_mul(frag);
            result.usable_bytes = (st.blocks_available() as i64).saturating_mul(frag);
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "DescribeLogDirs: statvfs failed");
            result.error_code = ResponseError::KafkaStorageError.code();
        }
    }
    if result.error_code == 0 {
        result.topics = describe_topics(state, req.topics.as_deref());
    }
    let mut resp = DescribeLogDirsResponse::default();
    resp.results = vec![result];
    resp
}

/// The partitions asked for (`None`: all) that exist, grouped by topic in request order (all:
/// by topic name).
fn describe_topics(
    state: &SharedState,
    wanted: Option<&[kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic]>,
) -> Vec<DescribeLogDirsTopic> {
    let mut out: Vec<DescribeLogDirsTopic> = Vec::new();
    let mut push = |name: &str, parts: Vec<DescribeLogDirsPartition>| {
        if parts.is_empty() {
            return;
        }
        match out.iter_mut().find(|t| &*t.name.0 == name) {
            // A topic named twice in the request: one entry, each partition once.
            Some(t) => {
                for p in parts {
                    if !t
                        .partitions
                        .iter()
                        .any(|q| q.partition_index == p.partition_index)
                    {
                        t.partitions.push(p);
                    }
                }
            }
            None => {
                let mut t = DescribeLogDirsTopic::default();
                t.name = TopicName(sb(name));
                t.partitions = parts;
                out.push(t);
            }
        }
    };
    match wanted {
        None => {
            let mut topics = state.topics.list();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            for t in topics {
                let parts = t.partitions.iter().filter_map(|p| describe(p)).collect();
                push(&t.name, parts);
            }
        }
        Some(wanted) => {
            for w in wanted {
                let Some(t) = state.topics.get(&w.topic) else {
                    continue;
                };
                let mut seen = Vec::new();
                let parts = w
                    .partitions
                    .iter()
                    .filter(|&&i| {
                        let first = !seen.contains(&i);
                        seen.push(i);
                        first
                    })
                    .filter_map(|&i| {
                        let p = usize::try_from(i).ok().and_then(|i| t.partitions.get(i))?;
                        describe(p)
                    })
                    .collect();
                push(&t.name, parts);
            }
        }
    }
    out
}

/// One partition's entry, `None` if its log is closed (being deleted).
fn describe(p: &crate::partition::Partition) -> Option<DescribeLogDirsPartition> {
    let size = p.with_log(|log| log.size_bytes())?;
    let mut d = DescribeLogDirsPartition::default();
    d.partition_index = p.index;
    d.partition_size = i64::try_from(size).unwrap_or(i64::MAX);
    d.offset_lag = 0;
    d.is_future_key = false;
    Some(d)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;

    use super::*;
    use crate::handlers::test_util::{self, batch, produce_req};
    use crate::handlers::{produce, sb};

    fn wanted(parts: &[(&str, &[i32])]) -> DescribeLogDirsRequest {
        let mut r = DescribeLogDirsRequest::default();
        r.topics = Some(
            parts
                .iter()
                .map(|(t, ps)| {
                    let mut d = DescribableLogDirTopic::default();
                    d.topic = TopicName(sb(*t));
                    d.partitions = ps.to_vec();
                    d
                })
                .collect(),
        );
        r
    }

    fn sizes(r: &DescribeLogDirsResponse) -> Vec<(String, i32, i64)> {
        r.results[0]
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index, p.partition_size))
            })
            .collect()
    }

    #[tokio::test]
    async fn reports_sizes_of_existing_partitions_and_leaves_unknown_ones_out() {
        let (state, dir) = test_util::state();
        state
            .topics
            .create("a", 2, Default::default(), false, 0)
            .unwrap();
        state
            .topics
            .create("b", 1, Default::default(), false, 0)
            .unwrap();
        let ph = test_util::header(ApiKey::Produce, 9);
        let one = batch(4, 1, None);
        let len = one.len() as i64;
        for _ in 0..3 {
            let r = produce::handle(&state, &ph, produce_req("a", 1, one.clone(), -1))
                .await
                .unwrap();
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
        let h = test_util::header(ApiKey::DescribeLogDirs, 4);

        // Every partition.
        let r = handle(
            &state,
            &h,
            DescribeLogDirsRequest::default().with_topics(None),
        )
        .await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.results.len(), 1);
        let res = &r.results[0];
        assert_eq!(res.error_code, 0);
        let canon = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(res.log_dir.to_string(), canon.to_string_lossy());
        assert!(res.total_bytes > 0 && res.usable_bytes >= 0);
        assert!(res.usable_bytes <= res.total_bytes);
        assert_eq!(
            sizes(&r),
            vec![
                ("a".to_string(), 0, 0),
                ("a".to_string(), 1, 3 * len),
                ("b".to_string(), 0, 0)
            ]
        );
        let p = &res.topics[0].partitions[1];
        assert_eq!((p.offset_lag, p.is_future_key), (0, false));

        // Some partitions: unknown topics and partitions are left out, duplicates answered once,
        // a topic with nothing left is left out.
        let r = handle(
            &state,
            &h,
            wanted(&[("a", &[1, 7, 1]), ("nope", &[0]), ("b", &[3])]),
        )
        .await;
        assert_eq!(r.results[0].error_code, 0);
        assert_eq!(sizes(&r), vec![("a".to_string(), 1, 3 * len)]);

        // An empty list asks for nothing.
        let r = handle(&state, &h, wanted(&[])).await;
        assert!(r.results[0].topics.is_empty());
    }
}
