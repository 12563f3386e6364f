//! SaslAuthenticate (36): one step of the connection's SASL exchange (PLAIN: one step; SCRAM:
//! client-first then client-final). A failure is answered only after
//! `failed_authentication_delay_ms`, so a password cannot be guessed at wire speed, and the
//! connection is closed after the answer.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse};

use crate::auth::{AuthStep, Session};
use crate::handlers::sb;
use crate::state::SharedState;

/// Runs one step; `Err` holds the failure answer and how long to hold it back.
pub fn handle(
    state: &SharedState,
    session: &mut Session,
    _header: &RequestHeader,
    req: SaslAuthenticateRequest,
) -> Result<SaslAuthenticateResponse, (SaslAuthenticateResponse, Duration)> {
    let mut r = SaslAuthenticateResponse::default();
    match session.authenticate(
        &state.credentials,
        &req.auth_bytes,
        waterline_sasl::random_nonce,
    ) {
        AuthStep::Continue(bytes) | AuthStep::Done(bytes) => {
            r.auth_bytes = Bytes::from(bytes);
            // 0: the broker never asks for re-authentication (KIP-368).
            r.session_lifetime_ms = 0;
            Ok(r)
        }
        AuthStep::Illegal { code, message } => {
            r.error_code = code;
            r.error_message = Some(sb(message));
            Ok(r)
        }
        AuthStep::Failed { code, message } => {
            r.error_code = code;
            r.error_message = Some(sb(message));
            Err((
                r,
                Duration::from_millis(state.config.failed_authentication_delay_ms),
            ))
        }
    }
}
