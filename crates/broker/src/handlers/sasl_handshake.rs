//! SaslHandshake (17), v1 only: picks the connection's SASL mechanism. v0 (raw SASL tokens
//! after the handshake, without SaslAuthenticate) is not served; every maintained client uses
//! v1 when the broker advertises it.

use kafka_protocol::messages::{RequestHeader, SaslHandshakeRequest, SaslHandshakeResponse};

use crate::auth::Session;
use crate::handlers::sb;
use crate::state::SharedState;

/// Answers with the enabled mechanisms; an unknown or disabled mechanism, or a handshake on a
/// listener without SASL or after one already happened, gets its error code (and, except on a
/// non-SASL listener, the connection closes after the answer).
pub fn handle(
    state: &SharedState,
    session: &mut Session,
    _header: &RequestHeader,
    req: SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let mut r = SaslHandshakeResponse::default();
    r.mechanisms = state.mechanisms.iter().map(|m| sb(m.name())).collect();
    if let Err((code, why)) = session.handshake(req.mechanism.as_str(), &state.mechanisms) {
        tracing::warn!(peer = %session.peer(), reason = %why, "SaslHandshake refused");
        r.error_code = code;
    }
    r
}
