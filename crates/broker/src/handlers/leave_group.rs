//! LeaveGroup (13), v0-5: v0-2 name one member and report its error at top level; v3+ carry a
//! batch of members (dynamic by member id, static by group.instance.id) with per-member errors.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, RequestHeader};
use waterline_coordinator as wc;

use crate::handlers::sb;
use crate::state::SharedState;

/// Handles a decoded LeaveGroup request: applied to the coordinator now, answered by the future.
pub fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: LeaveGroupRequest,
) -> impl std::future::Future<Output = LeaveGroupResponse> + Send + use<> {
    let batch = header.request_api_version >= 3;
    let members = if batch {
        req.members
            .into_iter()
            .map(|m| wc::LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.map(|s| s.to_string()),
            })
            .collect()
    } else {
        vec![wc::LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
        }]
    };
    let request = wc::Request::LeaveGroup(wc::LeaveGroupRequest {
        group_id: req.group_id.to_string(),
        members,
    });
    let answer = state.groups.call(request);
    async move {
        let mut resp = LeaveGroupResponse::default();
        match answer.await {
            wc::Response::LeaveGroup(r) => {
                if batch {
                    resp.error_code = wc::GroupError::code_of(r.error);
                    resp.members = r
                        .members
                        .into_iter()
                        .map(|m| {
                            let mut mr = MemberResponse::default();
                            mr.member_id = sb(m.member_id);
                            mr.group_instance_id = m.group_instance_id.map(sb);
                            mr.error_code = wc::GroupError::code_of(m.error);
                            mr
                        })
                        .collect();
                } else {
                    // A single member: its own error is the request's.
                    let member_error = r.members.first().and_then(|m| m.error);
                    resp.error_code = wc::GroupError::code_of(r.error.or(member_error));
                }
            }
            other => {
                tracing::error!(
                    ?other,
                    "coordinator answered LeaveGroup with another response"
                );
                resp.error_code = wc::GroupError::CoordinatorNotAvailable.code();
            }
        }
        resp
    }
}
