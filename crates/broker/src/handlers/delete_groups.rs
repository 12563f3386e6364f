//! DeleteGroups (42), v0-2: only groups without members (NON_EMPTY_GROUP otherwise); their
//! committed offsets are deleted durably before the response.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId, RequestHeader};

use crate::handlers::sb;
use crate::state::SharedState;

/// Handles a decoded DeleteGroups request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let ids: Vec<String> = req.groups_names.iter().map(|g| g.to_string()).collect();
    let mut resp = DeleteGroupsResponse::default();
    resp.results = state
        .groups
        .delete_groups(&ids)
        .await
        .into_iter()
        .map(|(group, outcome)| {
            let mut r = DeletableGroupResult::default();
            r.group_id = GroupId(sb(group));
            r.error_code = outcome.err().unwrap_or(0);
            r
        })
        .collect();
    resp
}
