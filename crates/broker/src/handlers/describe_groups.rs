//! DescribeGroups (15), v0-6: state, protocol and members of each group. Groups known only from
//! committed offsets are Empty; unknown ones are Dead (v6+: with GROUP_ID_NOT_FOUND, as Kafka 4).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, RequestHeader,
};
use waterline_coordinator::{GroupError, GroupState};

use crate::handlers::sb;
use crate::state::SharedState;

/// `authorized_operations` when the client did not ask for them (Kafka's INT32_MIN).
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// Handles a decoded DescribeGroups request.
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let version = header.request_api_version;
    let ids: Vec<String> = req.groups.iter().map(|g| g.to_string()).collect();
    let mut resp = DescribeGroupsResponse::default();
    for g in state.groups.describe(&ids) {
        let mut dg = DescribedGroup::default();
        dg.error_code = match g.error {
            Some(e) => e.code(),
            None if version >= 6 && g.state == GroupState::Dead => {
                GroupError::GroupIdNotFound.code()
            }
            None => 0,
        };
        if version >= 6 && dg.error_code == ResponseError::GroupIdNotFound.code() {
            dg.error_message = Some(sb(format!("group {} not found", g.group_id)));
        }
        dg.group_id = GroupId(sb(g.group_id));
        dg.group_state = sb(g.state.name());
        dg.protocol_type = sb(g.protocol_type);
        dg.protocol_data = sb(g.protocol_name);
        dg.authorized_operations = OPERATIONS_NOT_REQUESTED;
        dg.members = g
            .members
            .into_iter()
            .map(|m| {
                let mut dm = DescribedGroupMember::default();
                dm.member_id = sb(m.member_id);
                dm.group_instance_id = m.group_instance_id.map(sb);
                dm.client_id = sb(m.client_id);
                dm.client_host = sb(m.client_host);
                dm.member_metadata = m.metadata;
                dm.member_assignment = m.assignment;
                dm
            })
            .collect();
        resp.groups.push(dg);
    }
    resp
}
