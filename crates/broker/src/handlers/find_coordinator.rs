//! FindCoordinator (10), v0-4: this single node coordinates every consumer group and every
//! transactional id (key type 1). v4 batches the keys.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use crate::handlers::sb;
use crate::state::{NODE_ID, SharedState};

/// Key type of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// Key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The answer for one key: (error code, message, node id, host, port).
fn lookup(
    state: &SharedState,
    key_type: i8,
    key: &str,
) -> (i16, Option<&'static str>, i32, String, i32) {
    let error = |e: ResponseError, msg| (e.code(), Some(msg), -1, String::new(), -1);
    match key_type {
        KEY_TYPE_GROUP if key.is_empty() => {
            error(ResponseError::InvalidRequest, "the group id is empty")
        }
        KEY_TYPE_TRANSACTION if key.is_empty() => error(
            ResponseError::InvalidRequest,
            "the transactional id is empty",
        ),
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => (
            0,
            None,
            NODE_ID,
            state.advertised_host.clone(),
            state.advertised_port,
        ),
        _ => error(
            ResponseError::InvalidRequest,
            "unknown coordinator key type",
        ),
    }
}

/// Handles a decoded FindCoordinator request.
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let mut resp = FindCoordinatorResponse::default();
    if header.request_api_version >= 4 {
        for key in &req.coordinator_keys {
            let (code, msg, node, host, port) = lookup(state, req.key_type, key.as_str());
            let mut c = Coordinator::default();
            c.key = key.clone();
            c.error_code = code;
            c.error_message = msg.map(StrBytes::from_static_str);
            c.node_id = BrokerId(node);
            c.host = sb(host);
            c.port = port;
            resp.coordinators.push(c);
        }
    } else {
        let (code, msg, node, host, port) = lookup(state, req.key_type, req.key.as_str());
        resp.error_code = code;
        resp.error_message = msg.map(StrBytes::from_static_str);
        resp.node_id = BrokerId(node);
        resp.host = sb(host);
        resp.port = port;
    }
    resp
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;

    use super::*;
    use crate::handlers::test_util;

    #[tokio::test]
    async fn groups_and_transactions_are_coordinated_here() {
        let (state, _dir) = test_util::state();
        let mut req = FindCoordinatorRequest::default();
        req.key = sb("g");
        let r = handle(&state, &test_util::header(ApiKey::FindCoordinator, 2), req).await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.node_id, BrokerId(NODE_ID));
        assert_eq!(r.port, 9092);
        assert_eq!(r.host.as_str(), "127.0.0.1");

        let mut req = FindCoordinatorRequest::default();
        req.key_type = KEY_TYPE_TRANSACTION;
        req.coordinator_keys = vec![sb("txn")];
        let r = handle(&state, &test_util::header(ApiKey::FindCoordinator, 4), req).await;
        assert_eq!(r.coordinators.len(), 1);
        assert_eq!(r.coordinators[0].error_code, 0);
        assert_eq!(r.coordinators[0].node_id, BrokerId(NODE_ID));

        let mut req = FindCoordinatorRequest::default();
        req.coordinator_keys = vec![sb("a"), sb(""), sb("b")];
        let r = handle(&state, &test_util::header(ApiKey::FindCoordinator, 4), req).await;
        let codes: Vec<i16> = r.coordinators.iter().map(|c| c.error_code).collect();
        assert_eq!(codes, vec![0, ResponseError::InvalidRequest.code(), 0]);
        assert_eq!(r.coordinators[2].key.as_str(), "b");
    }
}
