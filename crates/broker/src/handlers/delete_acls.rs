//! DeleteAcls (31): removes every ACL matching any of the filters, durably before answering.
//! Authorization (ALTER on the cluster) is checked before this runs.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse, RequestHeader};

use crate::auth::acl::{AclBinding, AclFilter};
use crate::handlers::sb;
use crate::state::SharedState;

/// Most filters one request may carry.
pub const MAX_FILTERS: usize = 10_000;

/// One result per filter, in order, listing the ACLs it removed (an ACL matching two filters
/// is listed under both, as Kafka does). A filter with an unknown code gets INVALID_REQUEST and
/// removes nothing; the others are applied together in one write.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let mut r = DeleteAclsResponse::default();
    let filters: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .take(MAX_FILTERS + 1)
        .map(|f| {
            if req.filters.len() > MAX_FILTERS {
                return Err(format!("more than {MAX_FILTERS} filters in one request"));
            }
            AclFilter::from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_ref().map(|s| s.as_str()),
                f.pattern_type_filter,
                f.principal_filter.as_ref().map(|s| s.as_str()),
                f.host_filter.as_ref().map(|s| s.as_str()),
                f.operation,
                f.permission_type,
            )
            .map_err(|e| e.to_string())
        })
        .collect();
    let valid: Vec<AclFilter> = filters
        .iter()
        .filter_map(|f| f.as_ref().ok())
        .cloned()
        .collect();
    let s = state.clone();
    // Per valid filter, the ACLs it removed.
    let removed = tokio::task::spawn_blocking(move || {
        s.acls.update(|set| {
            let per_filter: Vec<Vec<AclBinding>> = valid
                .iter()
                .map(|f| set.iter().filter(|b| f.matches(b)).cloned().collect())
                .collect();
            set.retain(|b| !valid.iter().any(|f| f.matches(b)));
            per_filter
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let mut removed = match removed {
        Ok(per_filter) => {
            let n: usize = per_filter.iter().map(Vec::len).sum();
            if n > 0 {
                tracing::info!(acls = n, "ACLs deleted");
            }
            Ok(per_filter.into_iter())
        }
        Err(e) => {
            tracing::error!(error = %e, "writing ACLs failed");
            Err(e)
        }
    };
    for f in filters {
        let mut fr = DeleteAclsFilterResult::default();
        fr.error_message = None;
        match (f, &mut removed) {
            (Err(why), _) => {
                fr.error_code = ResponseError::InvalidRequest.code();
                fr.error_message = Some(sb(why));
            }
            (Ok(_), Err(e)) => {
                fr.error_code = ResponseError::KafkaStorageError.code();
                fr.error_message = Some(sb(e.as_str()));
            }
            (Ok(_), Ok(per_filter)) => {
                for b in per_filter.next().unwrap_or_default() {
                    let mut m = DeleteAclsMatchingAcl::default();
                    m.error_message = None;
                    m.resource_type = b.resource_type.code();
                    m.resource_name = sb(b.resource_name);
                    m.pattern_type = b.pattern_type.code();
                    m.principal = sb(b.principal);
                    m.host = sb(b.host);
                    m.operation = b.operation.code();
                    m.permission_type = b.permission.code();
                    fr.matching_acls.push(m);
                }
            }
        }
        r.filter_results.push(fr);
    }
    r
}
