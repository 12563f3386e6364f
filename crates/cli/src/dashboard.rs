//! The dashboard of `waterline serve --http-listen`: the exporter's page and history
//! ([`waterline_admin::dashboard`]), fed from the broker's own group and offset state instead
//! of polls over the Kafka protocol, so it needs no client credentials and reads no records.

use std::collections::BTreeMap;
use std::time::Duration;

use waterline_admin::dashboard::{GroupLook, Observer, PartitionLook, SharedDashboard};
use waterline_admin::lag::DEFAULT_WINDOW_COMMITS;
use waterline_broker::{BrokerState, SharedState};
use waterline_core::Position;

/// How often the broker looks at its own state for the dashboard. Each look walks every
/// partition and group like a scrape does (minus the text), so it is kept well above the
/// page's refresh; the charts keep an hour at this interval.
const LOOK_INTERVAL: Duration = Duration::from_secs(5);

/// One look: every partition's log start and end, every group's members (with their
/// assignments) and committed offsets. A group whose offsets cannot be read this time is
/// shown with its members only.
pub async fn look(state: &BrokerState) -> (BTreeMap<String, Vec<PartitionLook>>, Vec<GroupLook>) {
    let mut topics: BTreeMap<String, Vec<PartitionLook>> = BTreeMap::new();
    for p in state.topics.all_partitions() {
        let Some((log_start, log_end)) =
            p.with_log(|log| (log.log_start_offset(), log.high_watermark()))
        else {
            continue;
        };
        topics
            .entry(p.topic.to_string())
            .or_default()
            .push(PartitionLook {
                partition: p.index,
                log_start,
                log_end,
            });
    }
    let listed = state.groups.list(&[]);
    let ids: Vec<String> = listed.iter().map(|g| g.group_id.clone()).collect();
    let mut groups = Vec::with_capacity(ids.len());
    for g in state.groups.describe(&ids) {
        let committed = match state.groups.committed(&g.group_id).await {
            Ok(offsets) => offsets
                .into_iter()
                .filter_map(|(tp, om)| match om.position {
                    Position::Offset(o) => Some((tp, o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(group = %g.group_id, error = %e, "dashboard: offsets unreadable");
                BTreeMap::new()
            }
        };
        groups.push(GroupLook {
            state: g.state.name().to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| waterline_admin::client::decode_assignment(m.assignment))
                .collect(),
            committed,
            group: g.group_id,
        });
    }
    (topics, groups)
}

/// Feeds `dashboard` from the broker's state until the broker shuts down.
pub async fn feed(state: SharedState, dashboard: SharedDashboard) {
    let mut observer = Observer::new(DEFAULT_WINDOW_COMMITS);
    let mut tick = tokio::time::interval(LOOK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (topics, groups) = look(&state).await;
        let now = BrokerState::now_ms();
        dashboard.update(observer.observe(1, topics, groups, now), now);
    }
}
