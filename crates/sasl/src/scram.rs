//! The SCRAM exchange (RFC 5802) as Kafka uses it: no channel binding, an optional
//! authorization id that must equal the user, extensions after the nonce (Kafka's
//! `tokenauth=true` is refused: delegation tokens are not implemented).
//!
//! Server: [`parse_client_first`] → [`ClientFirst::server_first`] (with the user's stored
//! credential) → [`ScramServerAwaitingFinal::client_final`] → server-final message.
//! Client: [`ScramClient::new`] → [`ScramClient::server_first`] → [`ScramClientFinal::server_final`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::{SaslError, ScramCredential, ScramMechanism, constant_time_eq};

fn malformed(what: &'static str, why: impl Into<String>) -> SaslError {
    SaslError::Malformed {
        what,
        why: why.into(),
    }
}

/// Splits `k=v` attributes; a value may contain `=`.
fn attrs<'a>(
    what: &'static str,
    s: &'a str,
) -> impl Iterator<Item = Result<(char, &'a str), SaslError>> {
    s.split(',').map(move |a| {
        let mut chars = a.chars();
        match (chars.next(), chars.next()) {
            (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &a[2..])),
            _ => Err(malformed(what, format!("bad attribute `{}`", clip(a)))),
        }
    })
}

/// At most 40 characters of peer input, for error messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(what: &'static str, s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(malformed(what, "bad `=` escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// A parsed client-first message, waiting for the user's credential.
#[derive(Debug)]
pub struct ClientFirst {
    username: String,
    client_nonce: String,
    gs2_header: String,
    client_first_bare: String,
}

/// Parses a client-first message (server side).
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, SaslError> {
    const WHAT: &str = "SCRAM client-first message";
    let s = std::str::from_utf8(msg).map_err(|_| malformed(WHAT, "not UTF-8"))?;
    // gs2-header: cbind-flag "," [authzid] ","
    let (flag, rest) = s
        .split_once(',')
        .ok_or_else(|| malformed(WHAT, "no GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(SaslError::Unsupported("channel binding".into()));
        }
        _ => return Err(malformed(WHAT, "bad channel-binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed(WHAT, "no GS2 header"))?;
    let gs2_header = s[..flag.len() + authzid.len() + 2].to_string();
    let mut parts = bare.split(',');
    let user_attr = parts.next().unwrap_or_default();
    if user_attr.starts_with("m=") {
        return Err(SaslError::Unsupported("mandatory extension".into()));
    }
    let (Some(username), Some(nonce)) = (
        user_attr.strip_prefix("n="),
        parts.next().and_then(|r| r.strip_prefix("r=")),
    ) else {
        return Err(malformed(WHAT, "expected n=user,r=nonce"));
    };
    let username = decode_saslname(WHAT, username)?;
    // Kafka's extensions follow the nonce (`key=value`); only token authentication changes
    // the meaning of the exchange.
    for ext in parts {
        if !ext.contains('=') {
            return Err(malformed(WHAT, format!("bad extension `{}`", clip(ext))));
        }
        if ext == "tokenauth=true" {
            return Err(SaslError::Unsupported("delegation tokens".into()));
        }
    }
    if username.is_empty() || nonce.is_empty() {
        return Err(malformed(WHAT, "empty user name or nonce"));
    }
    if !nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed(
            WHAT,
            "nonce has characters outside printable ASCII",
        ));
    }
    if let Some(authzid) = authzid.strip_prefix("a=") {
        if decode_saslname(WHAT, authzid)? != username {
            return Err(SaslError::Unsupported(
                "an authorization id different from the user name".into(),
            ));
        }
    } else if !authzid.is_empty() {
        return Err(malformed(WHAT, "bad authorization id"));
    }
    Ok(ClientFirst {
        client_nonce: nonce.to_string(),
        username,
        gs2_header,
        client_first_bare: bare.to_string(),
    })
}

impl ClientFirst {
    /// The user the client names.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Answers with the server-first message, given the user's credential and a fresh nonce
    /// suffix (see [`crate::random_nonce`]).
    pub fn server_first(
        self,
        credential: ScramCredential,
        server_nonce: &str,
    ) -> (ScramServerAwaitingFinal, Vec<u8>) {
        let nonce = format!("{}{}", self.client_nonce, server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let msg = server_first.clone().into_bytes();
        (
            ScramServerAwaitingFinal {
                first: self,
                credential,
                nonce,
                server_first,
            },
            msg,
        )
    }
}

/// The server after its first message, waiting for the client's proof.
#[derive(Debug)]
pub struct ScramServerAwaitingFinal {
    first: ClientFirst,
    credential: ScramCredential,
    nonce: String,
    server_first: String,
}

/// A successful exchange's outcome (server side).
#[derive(Debug)]
pub struct ServerFinal {
    /// The authenticated user.
    pub username: String,
    /// The server-final message to send (`v=signature`).
    pub message: Vec<u8>,
}

impl ScramServerAwaitingFinal {
    /// The user being authenticated.
    pub fn username(&self) -> &str {
        &self.first.username
    }

    /// Checks the client-final message's proof; on success hands back the server-final message.
    pub fn client_final(self, msg: &[u8]) -> Result<ServerFinal, SaslError> {
        const WHAT: &str = "SCRAM client-final message";
        let s = std::str::from_utf8(msg).map_err(|_| malformed(WHAT, "not UTF-8"))?;
        let (without_proof, proof) = s
            .rsplit_once(",p=")
            .ok_or_else(|| malformed(WHAT, "no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for (i, a) in attrs(WHAT, without_proof).enumerate() {
            match (i, a?) {
                (0, ('c', v)) => binding = Some(v),
                (1, ('r', v)) => nonce = Some(v),
                (0 | 1, _) => return Err(malformed(WHAT, "expected c=...,r=...")),
                _ => {}
            }
        }
        let (Some(binding), Some(nonce)) = (binding, nonce) else {
            return Err(malformed(WHAT, "expected c=...,r=..."));
        };
        let binding = B64
            .decode(binding)
            .map_err(|_| malformed(WHAT, "channel binding is not base64"))?;
        if binding != self.first.gs2_header.as_bytes() {
            return Err(malformed(
                WHAT,
                "channel binding does not match the GS2 header",
            ));
        }
        // librdkafka before 2.6.1 prepends its own nonce once more (librdkafka PR 4895); that
        // exact form still carries the whole server nonce, so it is accepted as Kafka 3.8.1+
        // does; anything else is refused as RFC 5802 asks.
        let doubled = nonce
            .strip_prefix(self.first.client_nonce.as_str())
            .is_some_and(|rest| rest == self.nonce);
        if nonce != self.nonce && !doubled {
            return Err(malformed(WHAT, "nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| malformed(WHAT, "proof is not base64"))?;
        let m = self.credential.mechanism;
        if proof.len() != m.hash_len() {
            return Err(SaslError::InvalidCredentials);
        }
        let auth_message = format!(
            "{},{},{}",
            self.first.client_first_bare, self.server_first, without_proof
        );
        let client_signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !constant_time_eq(&m.hash(&client_key), &self.credential.stored_key) {
            return Err(SaslError::InvalidCredentials);
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(ServerFinal {
            username: self.first.username,
            message: format!("v={}", B64.encode(server_signature)).into_bytes(),
        })
    }
}

/// The client before the server's first message.
#[derive(Debug)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: Vec<u8>,
    client_nonce: String,
    client_first_bare: String,
}

/// The client after sending its proof, waiting for the server's signature.
#[derive(Debug)]
pub struct ScramClientFinal {
    mechanism: ScramMechanism,
    server_key: Vec<u8>,
    auth_message: String,
}

const GS2_HEADER: &str = "n,,";

impl ScramClient {
    /// Starts an exchange; returns the client and its client-first message.
    pub fn new(
        mechanism: ScramMechanism,
        username: &str,
        password: &str,
        client_nonce: &str,
    ) -> (ScramClient, Vec<u8>) {
        let bare = format!("n={},r={client_nonce}", encode_saslname(username));
        let msg = format!("{GS2_HEADER}{bare}").into_bytes();
        (
            ScramClient {
                mechanism,
                password: password.as_bytes().to_vec(),
                client_nonce: client_nonce.to_string(),
                client_first_bare: bare,
            },
            msg,
        )
    }

    /// Reads the server-first message; returns the client-final message (with the proof).
    pub fn server_first(self, msg: &[u8]) -> Result<(ScramClientFinal, Vec<u8>), SaslError> {
        const WHAT: &str = "SCRAM server-first message";
        let s = std::str::from_utf8(msg).map_err(|_| malformed(WHAT, "not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for a in attrs(WHAT, s) {
            match a? {
                ('e', v) => return Err(SaslError::ServerError(clip(v).to_string())),
                ('r', v) => nonce = Some(v),
                ('s', v) => salt = Some(v),
                ('i', v) => iterations = Some(v),
                ('m', _) => return Err(SaslError::Unsupported("mandatory extension".into())),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(malformed(WHAT, "expected r=,s=,i="));
        };
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(malformed(WHAT, "server nonce does not extend the client's"));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| malformed(WHAT, "salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| malformed(WHAT, "bad iteration count"))?;
        // A server asking for an absurd count could pin the client's CPU.
        self.mechanism.check_iterations(iterations)?;
        let m = self.mechanism;
        let salted = m.salted_password(&self.password, &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(GS2_HEADER));
        let auth_message = format!("{},{s},{without_proof}", self.client_first_bare);
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let msg = format!("{without_proof},p={}", B64.encode(proof)).into_bytes();
        Ok((
            ScramClientFinal {
                mechanism: m,
                server_key: m.hmac(&salted, b"Server Key"),
                auth_message,
            },
            msg,
        ))
    }
}

impl ScramClientFinal {
    /// Checks the server-final message: the server proves it holds the credential.
    pub fn server_final(self, msg: &[u8]) -> Result<(), SaslError> {
        const WHAT: &str = "SCRAM server-final message";
        let s = std::str::from_utf8(msg).map_err(|_| malformed(WHAT, "not UTF-8"))?;
        for a in attrs(WHAT, s) {
            match a? {
                ('e', v) => return Err(SaslError::ServerError(clip(v).to_string())),
                ('v', v) => {
                    let got = B64
                        .decode(v)
                        .map_err(|_| malformed(WHAT, "signature is not base64"))?;
                    let want = self
                        .mechanism
                        .hmac(&self.server_key, self.auth_message.as_bytes());
                    return if constant_time_eq(&got, &want) {
                        Ok(())
                    } else {
                        Err(SaslError::BadServerSignature)
                    };
                }
                _ => {}
            }
        }
        Err(malformed(WHAT, "no signature"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        B64.decode(s).unwrap()
    }

    /// RFC 7677 section 3, both sides, byte for byte.
    #[test]
    fn rfc7677_exchange() {
        let cred = ScramCredential::from_password(
            ScramMechanism::Sha256,
            b"pencil",
            b64("W22ZaJ0SNY7soEsUEjb6gQ=="),
            4096,
        )
        .unwrap();
        let (client, first) = ScramClient::new(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO",
        );
        assert_eq!(first, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let parsed = parse_client_first(&first).unwrap();
        assert_eq!(parsed.username(), "user");
        let (server, server_first) = parsed.server_first(cred, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            &b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"[..]
        );
        let (client, client_final) = client.server_first(&server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final.clone()).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let done = server.client_final(&client_final).unwrap();
        assert_eq!(
            done.message,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(done.username, "user");
        client.server_final(&done.message).unwrap();
    }

    fn exchange(
        m: ScramMechanism,
        user: &str,
        stored_pw: &str,
        client_pw: &str,
    ) -> Result<(), SaslError> {
        let cred = ScramCredential::from_password(m, stored_pw.as_bytes(), b"salt".to_vec(), 4096)?;
        let (client, first) = ScramClient::new(m, user, client_pw, "cnonce");
        let parsed = parse_client_first(&first)?;
        assert_eq!(parsed.username(), user);
        let (server, sf) = parsed.server_first(cred, "snonce");
        let (client, cf) = client.server_first(&sf)?;
        let done = server.client_final(&cf)?;
        client.server_final(&done.message)
    }

    #[test]
    fn wrong_password_is_refused_on_both_mechanisms_and_names_escape() {
        for m in ScramMechanism::ALL {
            exchange(m, "a,b=c", "pw", "pw").unwrap();
            assert_eq!(
                exchange(m, "alice", "pw", "pW"),
                Err(SaslError::InvalidCredentials)
            );
        }
    }

    #[test]
    fn client_first_refusals() {
        for (msg, unsupported) in [
            (&b"p=tls-unique,,n=u,r=x"[..], true),
            (b"n,a=other,n=u,r=x", true),
            (b"n,,m=ext,n=u,r=x", true),
            (b"n,,n=u,r=x,tokenauth=true", true),
            (b"n,,n=u", false),
            (b"n,,r=x,n=u", false),
            (b"x,,n=u,r=x", false),
            (b"n,,n=u=ZZ,r=x", false),
            (b"n,,n=,r=x", false),
            (b"n,,n=u,r=a\x01", false),
            (b"n,,n=u,r=", false),
            (b"\xff", false),
            (b"", false),
            (b"n", false),
        ] {
            match parse_client_first(msg) {
                Err(SaslError::Unsupported(_)) if unsupported => {}
                Err(SaslError::Malformed { .. }) if !unsupported => {}
                other => panic!("{msg:?}: {other:?}"),
            }
        }
        assert!(parse_client_first(b"n,a=u,n=u,r=x,ext=1").is_ok());
    }

    /// librdkafka < 2.6.1 sends `client nonce + server's r=` in its final message, and
    /// computes its proof over that message: accepted, and only that exact form.
    #[test]
    fn librdkafka_doubled_client_nonce_is_accepted() {
        let m = ScramMechanism::Sha256;
        let cred = ScramCredential::from_password(m, b"pw", b"salt".to_vec(), 4096).unwrap();
        for (prefix, ok) in [("cn", true), ("c", false), ("cncn", false), ("xx", false)] {
            let (server, _) = parse_client_first(b"n,,n=u,r=cn")
                .unwrap()
                .server_first(cred.clone(), "sn");
            let salted = m.salted_password(b"pw", b"salt", 4096);
            let client_key = m.hmac(&salted, b"Client Key");
            let without_proof = format!("c=biws,r={prefix}cnsn");
            let auth = format!(
                "n=u,r=cn,r=cnsn,s={},i=4096,{without_proof}",
                B64.encode(b"salt")
            );
            let sig = m.hmac(&m.hash(&client_key), auth.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            let msg = format!("{without_proof},p={}", B64.encode(proof));
            assert_eq!(server.client_final(msg.as_bytes()).is_ok(), ok, "{prefix}");
        }
    }

    #[test]
    fn client_final_refusals() {
        let cred =
            ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt".to_vec(), 4096)
                .unwrap();
        for bad in [
            &b"c=biws,r=cnoncesnonce"[..],
            b"c=biws,r=other,p=AAAA",
            b"c=eSws,r=cnoncesnonce,p=AAAA",
            b"r=cnoncesnonce,c=biws,p=AAAA",
            b"c=biws,r=cnoncesnonce,p=!!",
            b"c=biws,r=cnoncesnonce,p=AAAA",
        ] {
            let (server, _) = parse_client_first(b"n,,n=u,r=cnonce")
                .unwrap()
                .server_first(cred.clone(), "snonce");
            assert!(server.client_final(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_refuses_a_server_without_the_password_or_with_absurd_iterations() {
        let (c, _) = ScramClient::new(ScramMechanism::Sha256, "u", "pw", "cn");
        assert!(matches!(
            c.server_first(b"r=cnX,s=c2FsdA==,i=100000000"),
            Err(SaslError::Iterations { .. })
        ));
        let (c, _) = ScramClient::new(ScramMechanism::Sha256, "u", "pw", "cn");
        assert!(c.server_first(b"r=other,s=c2FsdA==,i=4096").is_err());
        let (c, _) = ScramClient::new(ScramMechanism::Sha256, "u", "pw", "cn");
        let (c, _) = c.server_first(b"r=cnX,s=c2FsdA==,i=4096").unwrap();
        assert_eq!(
            c.server_final(b"v=AAAA"),
            Err(SaslError::BadServerSignature)
        );
    }

    proptest! {
        /// Arbitrary bytes never panic any parser.
        #[test]
        fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_client_first(&bytes);
            let _ = crate::parse_plain(&bytes);
            let cred = ScramCredential::from_salted_password(
                ScramMechanism::Sha256, &[0; 32], b"s".to_vec(), 4096);
            if let Ok(first) = parse_client_first(b"n,,n=u,r=c") {
                let (server, _) = first.server_first(cred, "s");
                let _ = server.client_final(&bytes);
            }
            let (c, _) = ScramClient::new(ScramMechanism::Sha256, "u", "p", "c");
            let _ = c.server_first(&bytes);
        }
    }
}
