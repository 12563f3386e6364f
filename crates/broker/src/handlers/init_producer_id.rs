//! InitProducerId (22): issues durable, never-reused producer ids for idempotent producers.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};

use crate::state::SharedState;

/// Issues a new producer id with epoch 0, or bumps the epoch of the id the client already has
/// (KIP-360, v3+). Transactional ids are accepted but only give idempotence: this broker does
/// not advertise the transaction APIs.
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
