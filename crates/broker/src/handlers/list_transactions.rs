//! ListTransactions (66), v0-1: transactional ids filtered by state, producer id and (v1,
//! KIP-994) how long an ongoing transaction has run. v2's id pattern is not advertised.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, RequestHeader, TransactionalId,
};
use waterline_txn::ListTransactionsFilter;

use crate::handlers::sb;
use crate::state::SharedState;

/// Handles a decoded ListTransactions request.
pub async fn handle(
    state: &SharedState,
    header: &RequestHeader,
    req: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let filter = ListTransactionsFilter {
        states: req.state_filters.iter().map(|s| s.to_string()).collect(),
        producer_ids: req.producer_id_filters.iter().map(|p| p.0).collect(),
        min_duration_ms: (header.request_api_version >= 1 && req.duration_filter >= 0)
            .then_some(req.duration_filter),
    };
    let listed = state.transactions.list(&filter);
    let mut resp = ListTransactionsResponse::default();
    if let Some(e) = listed.error {
        resp.error_code = e.code();
        return resp;
    }
    resp.unknown_state_filters = listed.unknown_state_filters.into_iter().map(sb).collect();
    for t in listed.transactions {
        let mut s = TransactionState::default();
        s.transactional_id = TransactionalId(sb(t.transactional_id));
        s.producer_id = ProducerId(t.producer_id);
        s.transaction_state = sb(t.state.name());
        resp.transaction_states.push(s);
    }
    resp
}
