//! AddOffsetsToTxn (25), v0-4: makes a consumer group's transactional offsets part of the
//! producer's transaction, answered once the addition is durable.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, RequestHeader};
use waterline_txn::{AddOffsetsRequest, Request};

use crate::state::SharedState;

/// Applies the request to the coordinator now; the future yields the answer.
pub fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: AddOffsetsToTxnRequest,
) -> impl std::future::Future<Output = AddOffsetsToTxnResponse> + Send + use<> {
    let pending = state
        .transactions
        .call(Request::AddOffsets(AddOffsetsRequest {
            transactional_id: req.transactional_id.to_string(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            group_id: req.group_id.to_string(),
            api_version: header.request_api_version,
        }));
    async move {
        let mut resp = AddOffsetsToTxnResponse::default();
        resp.error_code = pending.await.error_code();
        resp
    }
}
