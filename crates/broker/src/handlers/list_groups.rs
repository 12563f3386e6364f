//! ListGroups (16), v0-5: every group this node coordinates (including groups known only from
//! committed offsets, as Empty), optionally filtered by state (v4+) and type (v5+; every group
//! here is a "classic" group).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse, RequestHeader};
use waterline_coordinator::GroupState;

use crate::handlers::sb;
use crate::state::SharedState;

/// The group type of every group here (KIP-848 names the old protocol "classic").
const CLASSIC: &str = "classic";

/// Handles a decoded ListGroups request.
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    if !req.types_filter.is_empty()
        && !req
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case(CLASSIC))
    {
        return resp;
    }
    let states: Vec<GroupState> = req
        .states_filter
        .iter()
        .filter_map(|s| GroupState::from_name(s.as_str()))
        .collect();
    // A filter naming only unknown states matches nothing (an empty list would mean "all").
    if !req.states_filter.is_empty() && states.is_empty() {
        return resp;
    }
    let v = header.request_api_version;
    resp.groups = state
        .groups
        .list(&states)
        .into_iter()
        .map(|g| {
            let mut lg = ListedGroup::default();
            lg.group_id = GroupId(sb(g.group_id));
            lg.protocol_type = sb(g.protocol_type);
            if v >= 4 {
                lg.group_state = sb(g.state.name());
            }
            if v >= 5 {
                lg.group_type = sb(CLASSIC);
            }
            lg
        })
        .collect();
    resp
}
