//! Authentication: which listener a connection came in on, its SASL exchange, its principal.
//!
//! A connection on a SASL listener starts unauthenticated: only ApiVersions, SaslHandshake and
//! SaslAuthenticate are served, anything else closes the connection with a log line (as Kafka
//! does). The exchange is SaslHandshake (v1: the mechanism), then SaslAuthenticate once for
//! PLAIN or twice for SCRAM. A failure is answered after `failed_authentication_delay_ms` with
//! SASL_AUTHENTICATION_FAILED, logged with the peer address, and the connection is closed.
//! Re-authentication (KIP-368) is never requested: SaslAuthenticate answers a session lifetime
//! of 0, so clients never send a second handshake; one that does is refused.
//!
//! On SSL listeners with mutual TLS the principal is `User:<certificate subject>`; on SASL
//! listeners it is `User:<name>`; otherwise `User:ANONYMOUS`.

pub mod credentials;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiKey;
use waterline_sasl::{Mechanism, SaslError, ScramServerAwaitingFinal};

use crate::listener::{ListenerInfo, SecurityProtocol};

pub use credentials::{CredentialChange, Credentials};

/// The principal of unauthenticated connections (Kafka's).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Where a connection's SASL exchange is.
enum AuthState {
    /// Not a SASL listener: nothing to do.
    Open,
    /// Waiting for SaslHandshake.
    AwaitHandshake,
    /// Handshake done; waiting for the first SaslAuthenticate.
    Mechanism(Mechanism),
    /// SCRAM server-first sent; waiting for the client's proof.
    ScramFinal(Box<ScramServerAwaitingFinal>, Mechanism),
    /// Authenticated.
    Done,
    /// Refused; the connection closes once the answer is written.
    Failed,
}

/// One connection's authentication state.
pub struct Session {
    peer: SocketAddr,
    listener: Option<Arc<ListenerInfo>>,
    state: AuthState,
    principal: String,
}

/// The outcome of one SaslAuthenticate.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthStep {
    /// Send these bytes and wait for the next SaslAuthenticate (SCRAM server-first).
    Continue(Vec<u8>),
    /// Authenticated; send these bytes (SCRAM server-final, or nothing for PLAIN).
    Done(Vec<u8>),
    /// Not part of an exchange (a non-SASL listener, or one already authenticated): answer
    /// with this code at once; the connection stays as it was.
    Illegal {
        /// Kafka error code.
        code: i16,
        /// Message for the client.
        message: String,
    },
    /// Refused: answer with this code and message after the failure delay, then close.
    Failed {
        /// Kafka error code.
        code: i16,
        /// Message for the client (no detail an attacker could use).
        message: String,
    },
}

impl Session {
    /// A connection on no particular listener (handler tests): open, anonymous.
    pub fn open(peer: SocketAddr) -> Session {
        Session {
            peer,
            listener: None,
            state: AuthState::Open,
            principal: ANONYMOUS.to_string(),
        }
    }

    /// A connection on `listener`; `tls_subject` is the client certificate's subject under
    /// mutual TLS.
    pub fn on(
        peer: SocketAddr,
        listener: Arc<ListenerInfo>,
        tls_subject: Option<String>,
    ) -> Session {
        let state = if listener.protocol.sasl() {
            AuthState::AwaitHandshake
        } else {
            AuthState::Open
        };
        let principal = match (listener.protocol, tls_subject) {
            (SecurityProtocol::Ssl, Some(dn)) => format!("User:{dn}"),
            _ => ANONYMOUS.to_string(),
        };
        Session {
            peer,
            listener: Some(listener),
            state,
            principal,
        }
    }

    /// The peer address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The listener the connection came in on (`None` in handler tests).
    pub fn listener(&self) -> Option<&ListenerInfo> {
        self.listener.as_deref()
    }

    /// The Kafka principal (`User:...`).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Whether requests other than the SASL ones may be served.
    pub fn authenticated(&self) -> bool {
        matches!(self.state, AuthState::Open | AuthState::Done)
    }

    /// Whether the connection must close once its queued answers are written.
    pub fn closing(&self) -> bool {
        matches!(self.state, AuthState::Failed)
    }

    /// Why a request of `key` must close the connection now, if it must.
    pub fn refuses(&self, key: ApiKey) -> Option<String> {
        if self.authenticated() || self.closing() {
            return None;
        }
        match key {
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => None,
            other => Some(format!(
                "{other:?} before SASL authentication completed on a {} listener",
                self.listener.as_ref().map_or("SASL", |l| l.protocol.name())
            )),
        }
    }

    /// SaslHandshake: picks `mechanism` if it is enabled. Errors are (code, why).
    pub fn handshake(
        &mut self,
        mechanism: &str,
        enabled: &[Mechanism],
    ) -> Result<Mechanism, (i16, String)> {
        match self.state {
            AuthState::AwaitHandshake => {}
            AuthState::Open => {
                return Err((
                    ResponseError::IllegalSaslState.code(),
                    "SASL is not enabled on this listener".into(),
                ));
            }
            _ => {
                self.state = AuthState::Failed;
                return Err((
                    ResponseError::IllegalSaslState.code(),
                    "a second SaslHandshake (re-authentication is not offered)".into(),
                ));
            }
        }
        match Mechanism::parse(mechanism).filter(|m| enabled.contains(m)) {
            Some(m) => {
                self.state = AuthState::Mechanism(m);
                Ok(m)
            }
            None => {
                self.state = AuthState::Failed;
                Err((
                    ResponseError::UnsupportedSaslMechanism.code(),
                    format!("mechanism `{}` is not enabled", clip(mechanism)),
                ))
            }
        }
    }

    /// SaslAuthenticate: one step of the exchange. `server_nonce` is a fresh nonce for SCRAM's
    /// first step. Failures are logged here, once, with the peer and the reason.
    pub fn authenticate(
        &mut self,
        credentials: &Credentials,
        auth_bytes: &[u8],
        server_nonce: impl FnOnce() -> Result<String, SaslError>,
    ) -> AuthStep {
        if matches!(self.state, AuthState::Open | AuthState::Done) {
            return AuthStep::Illegal {
                code: ResponseError::IllegalSaslState.code(),
                message: "no SASL exchange is in progress on this connection".into(),
            };
        }
        let state = std::mem::replace(&mut self.state, AuthState::Failed);
        let failed = |code: ResponseError, message: &str, user: Option<&str>, why: &str| {
            tracing::warn!(peer = %self.peer, user, reason = why, "authentication failed");
            AuthStep::Failed {
                code: code.code(),
                message: message.to_string(),
            }
        };
        let invalid = "Authentication failed: invalid credentials";
        match state {
            AuthState::Mechanism(Mechanism::Plain) => {
                let auth = match waterline_sasl::parse_plain(auth_bytes) {
                    Ok(a) => a,
                    Err(e) => {
                        return failed(
                            ResponseError::SaslAuthenticationFailed,
                            invalid,
                            None,
                            &e.to_string(),
                        );
                    }
                };
                // PLAIN checks against the SHA-256 credential, else the SHA-512 one.
                let cred = waterline_sasl::ScramMechanism::ALL
                    .into_iter()
                    .find_map(|m| credentials.get(&auth.username, m));
                match cred {
                    Some(c) if c.verify_password(&auth.password) => {
                        self.succeed(auth.username, Mechanism::Plain);
                        AuthStep::Done(Vec::new())
                    }
                    Some(_) => failed(
                        ResponseError::SaslAuthenticationFailed,
                        invalid,
                        Some(&auth.username),
                        "wrong password (PLAIN)",
                    ),
                    None => failed(
                        ResponseError::SaslAuthenticationFailed,
                        invalid,
                        Some(&auth.username),
                        "unknown user (PLAIN)",
                    ),
                }
            }
            AuthState::Mechanism(m) => {
                let Some(scram) = m.scram() else {
                    return failed(
                        ResponseError::IllegalSaslState,
                        "no exchange",
                        None,
                        "no mechanism",
                    );
                };
                let first = match waterline_sasl::parse_client_first(auth_bytes) {
                    Ok(f) => f,
                    Err(e) => {
                        return failed(
                            ResponseError::SaslAuthenticationFailed,
                            invalid,
                            None,
                            &e.to_string(),
                        );
                    }
                };
                let Some(cred) = credentials.get(first.username(), scram) else {
                    let user = first.username().to_string();
                    return failed(
                        ResponseError::SaslAuthenticationFailed,
                        invalid,
                        Some(&user),
                        &format!("unknown user ({m})"),
                    );
                };
                let nonce = match server_nonce() {
                    Ok(n) => n,
                    Err(e) => {
                        return failed(
                            ResponseError::SaslAuthenticationFailed,
                            "server error",
                            None,
                            &e.to_string(),
                        );
                    }
                };
                let (server, msg) = first.server_first(cred, &nonce);
                self.state = AuthState::ScramFinal(Box::new(server), m);
                AuthStep::Continue(msg)
            }
            AuthState::ScramFinal(server, m) => {
                let user = server.username().to_string();
                match server.client_final(auth_bytes) {
                    Ok(done) => {
                        self.succeed(done.username, m);
                        AuthStep::Done(done.message)
                    }
                    Err(e) => failed(
                        ResponseError::SaslAuthenticationFailed,
                        invalid,
                        Some(&user),
                        &e.to_string(),
                    ),
                }
            }
            AuthState::AwaitHandshake => failed(
                ResponseError::IllegalSaslState,
                "SaslAuthenticate before SaslHandshake",
                None,
                "SaslAuthenticate before SaslHandshake",
            ),
            AuthState::Open | AuthState::Done | AuthState::Failed => failed(
                ResponseError::IllegalSaslState,
                "SaslAuthenticate after the exchange ended",
                None,
                "SaslAuthenticate after the exchange ended",
            ),
        }
    }

    fn succeed(&mut self, user: String, mechanism: Mechanism) {
        tracing::info!(peer = %self.peer, %user, mechanism = mechanism.name(), "authenticated");
        self.principal = format!("User:{user}");
        self.state = AuthState::Done;
    }
}

/// At most 40 characters of client input, for messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use waterline_sasl::{ScramClient, ScramCredential, ScramMechanism};

    use super::*;

    fn sasl_session() -> Session {
        Session::on(
            "127.0.0.1:1".parse().unwrap(),
            Arc::new(ListenerInfo {
                protocol: SecurityProtocol::SaslPlaintext,
                advertised_host: "h".into(),
                advertised_port: 1,
            }),
            None,
        )
    }

    fn creds() -> (Credentials, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let c = Credentials::open(dir.path()).unwrap();
        let mut changes = Vec::new();
        for m in ScramMechanism::ALL {
            changes.push(CredentialChange::Upsert(
                "alice".into(),
                ScramCredential::generate(m, b"secret", 4096).unwrap(),
            ));
        }
        c.apply(changes).unwrap();
        (c, dir)
    }

    fn nonce() -> Result<String, SaslError> {
        Ok("srv".into())
    }

    const ALL: &[Mechanism] = &Mechanism::ALL;

    #[test]
    fn scram_exchange_authenticates_and_sets_the_principal() {
        let (c, _d) = creds();
        for m in ScramMechanism::ALL {
            let mut s = sasl_session();
            assert!(s.refuses(ApiKey::Metadata).is_some());
            assert!(s.refuses(ApiKey::ApiVersions).is_none());
            s.handshake(m.name(), ALL).unwrap();
            let (client, first) = ScramClient::new(m, "alice", "secret", "cli");
            let AuthStep::Continue(sf) = s.authenticate(&c, &first, nonce) else {
                panic!()
            };
            let (client, cf) = client.server_first(&sf).unwrap();
            let AuthStep::Done(fin) = s.authenticate(&c, &cf, nonce) else {
                panic!()
            };
            client.server_final(&fin).unwrap();
            assert_eq!(s.principal(), "User:alice");
            assert!(s.refuses(ApiKey::Metadata).is_none());
            // A second handshake is refused and closes.
            assert!(s.handshake(m.name(), ALL).is_err());
            assert!(s.closing());
        }
    }

    #[test]
    fn refusals_fail_and_close() {
        let (c, _d) = creds();
        let failed = |step: AuthStep| matches!(step, AuthStep::Failed { .. });
        // Wrong password, PLAIN and SCRAM.
        let mut s = sasl_session();
        s.handshake("PLAIN", ALL).unwrap();
        assert!(failed(s.authenticate(&c, b"\0alice\0wrong", nonce)));
        assert!(s.closing() && !s.authenticated());
        let mut s = sasl_session();
        s.handshake("PLAIN", ALL).unwrap();
        assert_eq!(
            s.authenticate(&c, b"\0alice\0secret", nonce),
            AuthStep::Done(vec![])
        );
        let mut s = sasl_session();
        s.handshake("SCRAM-SHA-512", ALL).unwrap();
        let (client, first) = ScramClient::new(ScramMechanism::Sha512, "alice", "nope", "c");
        let AuthStep::Continue(sf) = s.authenticate(&c, &first, nonce) else {
            panic!()
        };
        let (_, cf) = client.server_first(&sf).unwrap();
        assert!(failed(s.authenticate(&c, &cf, nonce)));
        // Unknown user.
        let mut s = sasl_session();
        s.handshake("SCRAM-SHA-256", ALL).unwrap();
        let (_, first) = ScramClient::new(ScramMechanism::Sha256, "mallory", "x", "c");
        assert!(failed(s.authenticate(&c, &first, nonce)));
        // On a connection that needs no exchange: an error, and nothing else changes.
        let mut open = Session::open("127.0.0.1:1".parse().unwrap());
        assert!(matches!(
            open.authenticate(&c, b"x", nonce),
            AuthStep::Illegal { .. }
        ));
        assert!(open.authenticated() && !open.closing());
        // Authenticate before handshake; disabled mechanism; garbage.
        let mut s = sasl_session();
        assert!(failed(s.authenticate(&c, b"n,,n=alice,r=x", nonce)));
        let mut s = sasl_session();
        assert!(s.handshake("PLAIN", &[Mechanism::ScramSha256]).is_err());
        assert!(s.closing());
        let mut s = sasl_session();
        s.handshake("SCRAM-SHA-256", ALL).unwrap();
        assert!(failed(s.authenticate(&c, &[0xff; 64], nonce)));
    }

    #[test]
    fn tls_subject_is_the_principal_on_ssl_listeners() {
        let l = Arc::new(ListenerInfo {
            protocol: SecurityProtocol::Ssl,
            advertised_host: "h".into(),
            advertised_port: 1,
        });
        let s = Session::on("127.0.0.1:1".parse().unwrap(), l, Some("CN=c".into()));
        assert_eq!(s.principal(), "User:CN=c");
        assert!(s.authenticated());
    }
}
