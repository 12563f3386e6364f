//! DescribeAcls (29): the ACLs matching one filter, grouped by resource pattern.
//! Authorization (DESCRIBE on the cluster) is checked before this runs.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse, RequestHeader};

use crate::auth::acl::AclFilter;
use crate::handlers::sb;
use crate::state::SharedState;

/// Answers the filter (Kafka's ANY / MATCH semantics, see `AclFilter::matches`); a filter with
/// an unknown code gets INVALID_REQUEST.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DescribeAclsRequest,
) -> DescribeAclsResponse {
    let mut r = DescribeAclsResponse::default();
    // Kafka answers null, not an empty string, when there is no error.
    r.error_message = None;
    let filter = match AclFilter::from_wire(
        req.resource_type_filter,
        req.resource_name_filter.as_ref().map(|s| s.as_str()),
        req.pattern_type_filter,
        req.principal_filter.as_ref().map(|s| s.as_str()),
        req.host_filter.as_ref().map(|s| s.as_str()),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(e) => {
            r.error_code = ResponseError::InvalidRequest.code();
            r.error_message = Some(sb(e.to_string()));
            return r;
        }
    };
    // The snapshot is sorted by resource first, so one resource's ACLs are adjacent.
    for b in state.acls.snapshot().iter().filter(|b| filter.matches(b)) {
        let same = r
            .resources
            .last()
            .is_some_and(|res: &DescribeAclsResource| {
                res.resource_type == b.resource_type.code()
                    && res.resource_name.as_str() == b.resource_name
                    && res.pattern_type == b.pattern_type.code()
            });
        if !same {
            let mut res = DescribeAclsResource::default();
            res.resource_type = b.resource_type.code();
            res.resource_name = sb(b.resource_name.as_str());
            res.pattern_type = b.pattern_type.code();
            r.resources.push(res);
        }
        let mut d = AclDescription::default();
        d.principal = sb(b.principal.as_str());
        d.host = sb(b.host.as_str());
        d.operation = b.operation.code();
        d.permission_type = b.permission.code();
        if let Some(res) = r.resources.last_mut() {
            res.acls.push(d);
        }
    }
    r
}
