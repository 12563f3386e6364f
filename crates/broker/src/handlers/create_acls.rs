//! CreateAcls (30): adds ACL bindings, durably (see `auth::acls`) before answering.
//! Authorization (ALTER on the cluster) is checked before this runs (`handlers::authorize`).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse, RequestHeader};

use crate::auth::acl::AclBinding;
use crate::handlers::sb;
use crate::state::SharedState;

/// Most creations one request may carry: bounds the work and the file one request can cause.
pub const MAX_CREATIONS: usize = 10_000;

/// Creates the request's ACLs. Each creation gets its own result, in order: an invalid one
/// gets INVALID_REQUEST with the reason, the valid ones are written together (creating an ACL
/// that exists already succeeds, as in Kafka).
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: CreateAclsRequest,
) -> CreateAclsResponse {
    let mut r = CreateAclsResponse::default();
    if req.creations.len() > MAX_CREATIONS {
        for _ in &req.creations {
            r.results.push(result(
                ResponseError::InvalidRequest,
                format!("more than {MAX_CREATIONS} ACLs in one request"),
            ));
        }
        return r;
    }
    let parsed: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            AclBinding::from_wire(
                c.resource_type,
                c.resource_name.as_str(),
                c.resource_pattern_type,
                c.principal.as_str(),
                c.host.as_str(),
                c.operation,
                c.permission_type,
            )
            .map_err(|e| e.to_string())
        })
        .collect();
    let valid: Vec<AclBinding> = parsed
        .iter()
        .filter_map(|p| p.as_ref().ok())
        .cloned()
        .collect();
    let mut storage_error = None;
    if !valid.is_empty() {
        let s = state.clone();
        let logged = valid.clone();
        let written = tokio::task::spawn_blocking(move || s.acls.update(|set| set.extend(valid)))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        match written {
            Ok(()) => tracing::info!(acls = ?logged, "ACLs created"),
            Err(e) => {
                tracing::error!(error = %e, "writing ACLs failed");
                storage_error = Some(e);
            }
        }
    }
    for p in parsed {
        r.results.push(match (p, &storage_error) {
            (Err(why), _) => result(ResponseError::InvalidRequest, why),
            (Ok(_), Some(e)) => result(ResponseError::KafkaStorageError, e.clone()),
            (Ok(_), None) => {
                let mut ok = AclCreationResult::default();
                ok.error_message = None;
                ok
            }
        });
    }
    r
}

fn result(e: ResponseError, message: String) -> AclCreationResult {
    let mut res = AclCreationResult::default();
    res.error_code = e.code();
    res.error_message = Some(sb(message));
    res
}
