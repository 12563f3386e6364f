//! SyncGroup (14), v0-5: the leader's assignment is distributed to every member; a follower's
//! SyncGroup is parked until it arrives. Assignments are opaque bytes.

use kafka_protocol::messages::{RequestHeader, SyncGroupRequest, SyncGroupResponse};
use waterline_coordinator as wc;

use crate::handlers::sb;
use crate::state::SharedState;

/// Handles a decoded SyncGroup request: applied to the coordinator now; the future resolves
/// when the assignment is there (a follower parks until the leader's arrives).
pub fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: SyncGroupRequest,
) -> impl std::future::Future<Output = SyncGroupResponse> + Send + use<> {
    let version = header.request_api_version;
    let request = wc::Request::SyncGroup(wc::SyncGroupRequest {
        group_id: req.group_id.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        protocol_type: req.protocol_type.map(|s| s.to_string()),
        protocol_name: req.protocol_name.map(|s| s.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    });
    let answer = state.groups.call(request);
    async move {
        let mut resp = SyncGroupResponse::default();
        match answer.await {
            wc::Response::SyncGroup(r) => {
                resp.error_code = wc::GroupError::code_of(r.error);
                resp.assignment = r.assignment;
                if version >= 5 {
                    resp.protocol_type = r.protocol_type.map(sb);
                    resp.protocol_name = r.protocol_name.map(sb);
                }
            }
            other => {
                tracing::error!(
                    ?other,
                    "coordinator answered SyncGroup with another response"
                );
                resp.error_code = wc::GroupError::CoordinatorNotAvailable.code();
            }
        }
        resp
    }
}
