//! The web dashboard at `/` of `waterline exporter` and of `waterline serve --http-listen`:
//! one static page built into the binary (HTML, CSS, JS, plain SVG charts; nothing fetched
//! from a CDN) that reads `/api/groups` and `/api/groups/{group}`, plus the in-memory lag
//! history its charts are drawn from.
//!
//! Both surfaces feed it the same [`Snapshot`], judged by the same rule engine: the exporter
//! from its polls of any cluster, the broker from its own state through [`Observer`] (which
//! takes plain values, so this crate does not depend on the broker's).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use waterline_core::TopicPartition;

use crate::cli::{LagTracker, PartitionState};
use crate::exporter::{GroupSnapshot, Snapshot, TopicOffsets};

/// What the dashboard shows: the last good snapshot and the lag history.
#[derive(Debug, Default)]
pub struct DashboardData {
    /// The last good snapshot.
    snapshot: Snapshot,
    /// Lag over time per group and partition, for the charts.
    history: History,
    /// When the last good snapshot was taken (ms since epoch).
    polled_ms: Option<i64>,
}

/// The dashboard's data, shared between the task that feeds it and the HTTP handlers.
#[derive(Debug, Clone, Default)]
pub struct SharedDashboard(Arc<Mutex<DashboardData>>);

impl SharedDashboard {
    /// Shows `snap`, taken at `now` (ms since epoch), and adds it to the history.
    pub fn update(&self, snap: Snapshot, now: i64) {
        if let Ok(mut d) = self.0.lock() {
            d.history.record(&snap, now);
            d.snapshot = snap;
            d.polled_ms = Some(now);
        }
    }
}

/// The dashboard's routes (`/`, `/api/groups`, `/api/groups/{group}`), to merge into a
/// listener's router.
pub fn router(data: SharedDashboard) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/groups", get(api_groups))
        .route("/api/groups/{group}", get(api_group))
        .with_state(data)
}

/// Points kept per partition for the dashboard's charts (an hour at a 5 s interval).
const HISTORY_POINTS: usize = 720;

/// One point of a partition's chart: (time ms, lag in records, time lag in ms).
type Point = (i64, Option<i64>, Option<i64>);

/// Lag over time per (group, topic, partition).
#[derive(Debug, Default)]
struct History {
    points: BTreeMap<(String, String, i32), std::collections::VecDeque<Point>>,
}

impl History {
    /// Appends the snapshot's values at `now`; forgets partitions no longer in it.
    fn record(&mut self, snap: &Snapshot, now: i64) {
        let mut seen = BTreeSet::new();
        for g in &snap.groups {
            for r in &g.rows {
                let key = (g.group.clone(), r.topic.clone(), r.partition);
                let points = self.points.entry(key.clone()).or_default();
                points.push_back((now, r.lag(), r.time_lag.ms()));
                while points.len() > HISTORY_POINTS {
                    points.pop_front();
                }
                seen.insert(key);
            }
        }
        self.points.retain(|k, _| seen.contains(k));
    }
}

/// `/api/groups`: every group with its state, members, total lag, worst time lag, status.
fn groups_json(s: &DashboardData) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = s
        .snapshot
        .groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "group": g.group,
                "state": g.state,
                "members": g.members,
                "partitions": g.rows.len(),
                "lag": g.rows.iter().filter_map(|r| r.lag()).sum::<i64>(),
                "time_lag_ms": g.rows.iter().filter_map(|r| r.time_lag.ms()).max(),
                "status": g.status,
                "reason": g.reason,
            })
        })
        .collect();
    serde_json::json!({ "time_ms": s.polled_ms, "groups": groups })
}

/// `/api/groups/{group}`: the group's partitions with their history.
fn group_json(s: &DashboardData, group: &str) -> Option<serde_json::Value> {
    let g = s.snapshot.groups.iter().find(|g| g.group == group)?;
    let partitions: Vec<serde_json::Value> = g
        .rows
        .iter()
        .map(|r| {
            let key = (g.group.clone(), r.topic.clone(), r.partition);
            let history: Vec<serde_json::Value> = s
                .history
                .points
                .get(&key)
                .map(|ps| {
                    ps.iter()
                        .map(|(t, lag, tl)| serde_json::json!([t, lag, tl]))
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "topic": r.topic,
                "partition": r.partition,
                "current_offset": r.current,
                "log_end_offset": r.log_end,
                "lag": r.lag(),
                "time_lag_ms": r.time_lag.ms(),
                "time_lag": r.time_lag.display(),
                "status": r.status.status,
                "reason": r.status.reason,
                "history": history,
            })
        })
        .collect();
    Some(serde_json::json!({
        "time_ms": s.polled_ms,
        "group": g.group,
        "state": g.state,
        "members": g.members,
        "status": g.status,
        "reason": g.reason,
        "partitions": partitions,
    }))
}

/// The dashboard: one static page (HTML, CSS, JS, SVG charts) built into the binary.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

async fn dashboard() -> impl IntoResponse {
    axum::response::Html(DASHBOARD_HTML)
}

async fn api_groups(State(s): State<SharedDashboard>) -> impl IntoResponse {
    let v = s.0.lock().map(|s| groups_json(&s)).unwrap_or_default();
    axum::Json(v)
}

async fn api_group(
    State(s): State<SharedDashboard>,
    axum::extract::Path(group): axum::extract::Path<String>,
) -> axum::response::Response {
    let found = s.0.lock().ok().and_then(|s| group_json(&s, &group));
    match found {
        Some(v) => axum::Json(v).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no group '{group}'\n")).into_response(),
    }
}

/// One partition of a topic as a broker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLook {
    /// Partition index.
    pub partition: i32,
    /// Log start offset.
    pub log_start: i64,
    /// Log end offset (high watermark).
    pub log_end: i64,
}

/// One group as a broker sees it.
#[derive(Debug, Clone, Default)]
pub struct GroupLook {
    /// Group id.
    pub group: String,
    /// State name (`Stable`, `Empty`, ...).
    pub state: String,
    /// Partitions assigned to each member, one list per member.
    pub members: Vec<Vec<TopicPartition>>,
    /// Committed offsets.
    pub committed: BTreeMap<TopicPartition, i64>,
}

/// Turns looks at a broker's own state into dashboard snapshots, judging lag statuses across
/// looks with the same rule engine as `waterline lag --watch` and the exporter.
#[derive(Debug)]
pub struct Observer {
    tracker: LagTracker,
}

impl Observer {
    /// An observer judging statuses over `window` commits.
    pub fn new(window: usize) -> Self {
        Observer {
            tracker: LagTracker::new(window),
        }
    }

    /// The snapshot of one look at `now` (ms since epoch): `topics` maps each topic to its
    /// partitions. Time lag is interpolated from the log ends seen across looks (a broker
    /// look reads no records).
    pub fn observe(
        &mut self,
        brokers: usize,
        topics: BTreeMap<String, Vec<PartitionLook>>,
        groups: Vec<GroupLook>,
        now: i64,
    ) -> Snapshot {
        let mut bounds: BTreeMap<TopicPartition, (i64, i64)> = BTreeMap::new();
        let mut snap = Snapshot {
            brokers,
            ..Snapshot::default()
        };
        for (topic, parts) in topics {
            let mut offsets = TopicOffsets::default();
            for p in parts {
                offsets
                    .partitions
                    .insert(p.partition, (Some(p.log_start), Some(p.log_end)));
                bounds.insert(
                    TopicPartition::new(topic.clone(), p.partition),
                    (p.log_start, p.log_end),
                );
            }
            snap.topics.insert(topic, offsets);
        }
        self.tracker.begin_round();
        for g in groups {
            let mut owners: BTreeMap<&TopicPartition, usize> = BTreeMap::new();
            for (i, assigned) in g.members.iter().enumerate() {
                for tp in assigned {
                    owners.insert(tp, i);
                }
            }
            let parts: BTreeSet<&TopicPartition> =
                g.committed.keys().chain(owners.keys().copied()).collect();
            if parts.is_empty() && g.members.is_empty() {
                // Neither offsets nor members: nothing to show, as in the exporter.
                continue;
            }
            let states: Vec<PartitionState> = parts
                .into_iter()
                .map(|tp| PartitionState {
                    current: g.committed.get(tp).copied(),
                    log_end: bounds
                        .get(tp)
                        .map(|b| b.1)
                        .ok_or(crate::codes::UNKNOWN_TOPIC_OR_PARTITION),
                    log_start: bounds.get(tp).map(|b| b.0),
                    next_record_ms: None,
                    owner: owners.get(tp).copied(),
                    tp: tp.clone(),
                })
                .collect();
            let view = self
                .tracker
                .observe(&g.group, !g.members.is_empty(), &states, now, false);
            snap.groups.push(GroupSnapshot {
                group: view.group,
                members: g.members.len(),
                state: g.state,
                status: view.status.status,
                reason: view.status.reason,
                rows: view.rows,
            });
        }
        self.tracker.end_round();
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_look_becomes_a_snapshot_with_lag_and_history() {
        let mut o = Observer::new(10);
        let tp = TopicPartition::new("t", 0);
        let topics: BTreeMap<String, Vec<PartitionLook>> = [(
            "t".to_string(),
            vec![PartitionLook {
                partition: 0,
                log_start: 0,
                log_end: 25,
            }],
        )]
        .into();
        let group = GroupLook {
            group: "g".into(),
            state: "Empty".into(),
            members: Vec::new(),
            committed: [(tp.clone(), 5)].into(),
        };
        let snap = o.observe(1, topics, vec![group], 1_000);
        assert_eq!(snap.groups.len(), 1);
        let g = &snap.groups[0];
        assert_eq!(
            (g.group.as_str(), g.state.as_str(), g.members),
            ("g", "Empty", 0)
        );
        assert_eq!(g.rows[0].lag(), Some(20));
        // No members while lagging: STOP at a look, as in the exporter.
        assert_eq!(g.status.as_str(), "STOP");

        let d = SharedDashboard::default();
        d.update(snap, 1_000);
        let data = d.0.lock().unwrap();
        let list = groups_json(&data);
        assert_eq!(list["groups"][0]["lag"], 20);
        let one = group_json(&data, "g").unwrap();
        assert_eq!(one["partitions"][0]["history"][0][1], 20);
        assert!(group_json(&data, "nope").is_none());
    }
}
