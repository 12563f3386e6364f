//! InitProducerId (22): issues durable, never-reused producer ids for idempotent producers;
//! with a transactional id, the transaction coordinator answers (see [`transactional`]).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};

use crate::state::SharedState;

/// Whether the request names a transactional id (and so goes to the transaction coordinator).
pub fn is_transactional(req: &InitProducerIdRequest) -> bool {
    req.transactional_id.as_ref().is_some_and(|t| !t.is_empty())
}

/// InitProducerId with a transactional id: applied to the transaction coordinator now
/// (fencing the id's previous producer, aborting its open transaction); the future yields the
/// answer once the new epoch is durable.
pub fn transactional(
    state: &SharedState,
    header: &RequestHeader,
    req: InitProducerIdRequest,
) -> impl std::future::Future<Output = InitProducerIdResponse> + Send + use<> {
    let pending = state
        .transactions
        .call(waterline_txn::Request::InitProducerId(
            waterline_txn::InitProducerIdRequest {
                transactional_id: req
                    .transactional_id
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                transaction_timeout_ms: req.transaction_timeout_ms,
                producer_id: req.producer_id.0,
                producer_epoch: req.producer_epoch,
                api_version: header.request_api_version,
            },
        ));
    async move {
        let mut resp = InitProducerIdResponse::default();
        match pending.await {
            waterline_txn::Response::InitProducerId(r) => {
                resp.error_code = waterline_txn::TxnError::code_of(r.error);
                resp.producer_id = ProducerId(r.producer_id);
                resp.producer_epoch = r.producer_epoch;
            }
            other => {
                resp.error_code = other.error_code();
                resp.producer_id = ProducerId(-1);
                resp.producer_epoch = -1;
            }
        }
        resp
    }
}

/// Issues a new producer id with epoch 0, or bumps the epoch of the id the client already has
/// (KIP-360, v3+), for an idempotent producer without a transactional id.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return resp;
    }
    let s = state.clone();
    match tokio::task::spawn_blocking(move || s.producer_ids.allocate()).await {
        Ok(Ok(id)) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "allocating a producer id");
            resp.error_code = ResponseError::KafkaStorageError.code();
        }
        Err(e) => {
            tracing::error!(error = %e, "producer id task failed");
            resp.error_code = ResponseError::UnknownServerError.code();
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_util;
    use kafka_protocol::messages::ApiKey;

    #[tokio::test]
    async fn issues_distinct_ids_and_bumps_epochs() {
        let (state, _dir) = test_util::state();
        let h = test_util::header(ApiKey::InitProducerId, 4);
        let a = handle(&state, &h, InitProducerIdRequest::default()).await;
        let b = handle(&state, &h, InitProducerIdRequest::default()).await;
        assert_eq!((a.error_code, a.producer_epoch), (0, 0));
        assert_ne!(a.producer_id, b.producer_id);
        let mut bump = InitProducerIdRequest::default();
        bump.producer_id = a.producer_id;
        bump.producer_epoch = 0;
        let c = handle(&state, &h, bump).await;
        assert_eq!((c.producer_id, c.producer_epoch), (a.producer_id, 1));
    }
}
