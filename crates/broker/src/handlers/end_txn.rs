//! EndTxn (26), v0-4: commits or aborts the producer's transaction. Answered once the
//! PrepareCommit/PrepareAbort record is durable (the markers are written after, and a new
//! request for the same transactional id waits for them). v5 (transaction version 2, an epoch
//! bump per transaction) is not advertised.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, RequestHeader};
use waterline_txn::{Request, TxnResult};

use crate::state::SharedState;

/// Applies the request to the coordinator now; the future yields the answer.
pub fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: EndTxnRequest,
) -> impl std::future::Future<Output = EndTxnResponse> + Send + use<> {
    let pending = state
        .transactions
        .call(Request::EndTxn(waterline_txn::EndTxnRequest {
            transactional_id: req.transactional_id.to_string(),
            producer_id: req.producer_id.0,
            producer_epoch: req.producer_epoch,
            result: if req.committed {
                TxnResult::Commit
            } else {
                TxnResult::Abort
            },
            api_version: header.request_api_version,
        }));
    async move {
        let mut resp = EndTxnResponse::default();
        resp.error_code = pending.await.error_code();
        resp
    }
}
