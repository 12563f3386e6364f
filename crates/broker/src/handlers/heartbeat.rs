//! Heartbeat (12), v0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
//! rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, RequestHeader};
use waterline_coordinator as wc;

use crate::state::SharedState;

/// Handles a decoded Heartbeat request: applied to the coordinator now, answered by the future.
pub fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: HeartbeatRequest,
) -> impl std::future::Future<Output = HeartbeatResponse> + Send + use<> {
    let request = wc::Request::Heartbeat(wc::HeartbeatRequest {
        group_id: req.group_id.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
    });
    let answer = state.groups.call(request);
    async move {
        let mut resp = HeartbeatResponse::default();
        resp.error_code = match answer.await {
            wc::Response::Heartbeat(r) => wc::GroupError::code_of(r.error),
            other => {
                tracing::error!(
                    ?other,
                    "coordinator answered Heartbeat with another response"
                );
                wc::GroupError::CoordinatorNotAvailable.code()
            }
        };
        resp
    }
}
