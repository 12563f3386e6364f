//! DescribeTransactions (65), v0: the coordinator's view of each transactional id.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, RequestHeader,
    TopicName, TransactionalId,
};

use crate::handlers::sb;
use crate::state::SharedState;

/// Handles a decoded DescribeTransactions request.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let ids: Vec<String> = req
        .transactional_ids
        .iter()
        .map(|i| i.to_string())
        .collect();
    let mut resp = DescribeTransactionsResponse::default();
    for d in state.transactions.describe(&ids) {
        let mut t = TransactionState::default();
        t.error_code = waterline_txn::TxnError::code_of(d.error);
        t.transactional_id = TransactionalId(sb(d.transactional_id));
        t.transaction_state = sb(d.state.name());
        t.transaction_timeout_ms = d.transaction_timeout_ms;
        t.transaction_start_time_ms = d.transaction_start_ms;
        t.producer_id = ProducerId(d.producer_id);
        t.producer_epoch = d.producer_epoch;
        for tp in d.partitions {
            match t.topics.last_mut() {
                Some(last) if last.topic.as_str() == tp.topic => last.partitions.push(tp.partition),
                _ => {
                    let mut td = TopicData::default();
                    td.topic = TopicName(sb(tp.topic));
                    td.partitions = vec![tp.partition];
                    t.topics.push(td);
                }
            }
        }
        resp.transaction_states.push(t);
    }
    resp
}
