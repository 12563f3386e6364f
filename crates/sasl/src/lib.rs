//! SASL for Waterline: the PLAIN mechanism (RFC 4616) and SCRAM-SHA-256 / SCRAM-SHA-512
//! (RFC 5802, RFC 7677) as the Kafka protocol uses them, on both sides, plus the salted
//! credential a server stores instead of a password.
//!
//! *Invariant:* no I/O, no clock, no randomness of its own beyond [`random_nonce`] and
//! [`random_salt`]: the state machines take the peer's message and hand back the next one or
//! an error, so every exchange is tested deterministically (nonces are arguments).
//!
//! Every parser here works on a message the caller has already bounded (the broker caps a
//! SaslAuthenticate body); none allocates more than the input's own length.
#![deny(missing_docs)]

use ring::{digest, hmac, pbkdf2};

mod scram;
pub use scram::{
    ClientFirst, ScramClient, ScramClientFinal, ScramServerAwaitingFinal, ServerFinal,
    parse_client_first,
};

/// Why an exchange or a credential failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SaslError {
    /// The peer's message does not follow the mechanism's grammar.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The proof (or PLAIN password) does not match the stored credential.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The peer asked for something this implementation does not do (channel binding, token
    /// authentication, an authorization id other than the user).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The server's signature does not match: it does not know the password (client side).
    #[error("server signature does not match: the server does not hold this password")]
    BadServerSignature,
    /// The server answered with a SCRAM error (`e=...`).
    #[error("server refused: {0}")]
    ServerError(String),
    /// An iteration count outside what the mechanism allows.
    #[error("iterations {got} outside {min}..={max}")]
    Iterations {
        /// The count given.
        got: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// The system random generator failed.
    #[error("system random generator failed")]
    Random,
}

/// A SASL mechanism Waterline speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// Username and password in the clear (use over TLS only); checked against the SCRAM
    /// credential.
    Plain,
    /// SCRAM with SHA-256.
    ScramSha256,
    /// SCRAM with SHA-512.
    ScramSha512,
}

impl Mechanism {
    /// Every mechanism, in the order Waterline offers them.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
        Mechanism::Plain,
    ];

    /// The IANA name (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Parses an IANA name (case-sensitive, as Kafka does).
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash, for the SCRAM mechanisms.
    pub fn scram(self) -> Option<ScramMechanism> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(ScramMechanism::Sha256),
            Mechanism::ScramSha512 => Some(ScramMechanism::Sha512),
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramMechanism {
    /// Both, in Kafka's type-code order.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];
    /// Fewest iterations Kafka accepts for a credential (and Waterline's default).
    pub const MIN_ITERATIONS: u32 = 4096;
    /// Most iterations Kafka accepts for a credential.
    pub const MAX_ITERATIONS: u32 = 16384;

    /// The SASL mechanism.
    pub fn mechanism(self) -> Mechanism {
        match self {
            ScramMechanism::Sha256 => Mechanism::ScramSha256,
            ScramMechanism::Sha512 => Mechanism::ScramSha512,
        }
    }

    /// The IANA name.
    pub fn name(self) -> &'static str {
        self.mechanism().name()
    }

    /// Kafka's `ScramMechanism` type code (DescribeUserScramCredentials and friends).
    pub fn kafka_type(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// From Kafka's type code.
    pub fn from_kafka_type(t: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL
            .into_iter()
            .find(|m| m.kafka_type() == t)
    }

    /// Output length of the hash in bytes.
    pub fn hash_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2_alg(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest_alg(self) -> &'static digest::Algorithm {
        match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        }
    }

    /// `HMAC(key, data)`.
    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_alg(), key), data)
            .as_ref()
            .to_vec()
    }

    /// `H(data)`.
    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest_alg(), data).as_ref().to_vec()
    }

    /// Checks an iteration count against Kafka's bounds.
    pub fn check_iterations(self, iterations: u32) -> Result<(), SaslError> {
        if (Self::MIN_ITERATIONS..=Self::MAX_ITERATIONS).contains(&iterations) {
            Ok(())
        } else {
            Err(SaslError::Iterations {
                got: iterations,
                min: Self::MIN_ITERATIONS,
                max: Self::MAX_ITERATIONS,
            })
        }
    }

    /// RFC 5802's `Hi(password, salt, i)`: PBKDF2 with this mechanism's HMAC, one block.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        // Zero iterations is refused by `check_iterations`; 1 keeps this total anyway.
        let n = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(self.pbkdf2_alg(), n, salt, password, &mut out);
        out
    }
}

/// What a server stores for one user and mechanism (RFC 5802 section 3): enough to verify a
/// client's proof, not enough to compute one; the password itself is only reachable by a
/// dictionary attack on the salted, iterated hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The mechanism it is for.
    pub mechanism: ScramMechanism,
    /// Random salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            mechanism,
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// The credential for a password, with the given salt.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<ScramCredential, SaslError> {
        mechanism.check_iterations(iterations)?;
        let salted = mechanism.salted_password(password, &salt, iterations);
        Ok(Self::from_salted_password(
            mechanism, &salted, salt, iterations,
        ))
    }

    /// The credential for a password, with a fresh random salt.
    pub fn generate(
        mechanism: ScramMechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<ScramCredential, SaslError> {
        Self::from_password(mechanism, password, random_salt()?, iterations)
    }

    /// Whether `password` is the one this credential was made from (PLAIN checks this way).
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let salted = self
            .mechanism
            .salted_password(password, &self.salt, self.iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        constant_time_eq(&self.mechanism.hash(&client_key), &self.stored_key)
    }
}

/// Equality that takes the same time wherever the first difference is.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_bytes(n: usize) -> Result<Vec<u8>, SaslError> {
    use ring::rand::SecureRandom;
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| SaslError::Random)?;
    Ok(buf)
}

/// A fresh 32-byte salt.
pub fn random_salt() -> Result<Vec<u8>, SaslError> {
    random_bytes(32)
}

/// A fresh nonce: 32 random letters and digits (about 190 bits). Letters and digits only,
/// not base64: librdkafka 2.0 mangles a server nonce holding `+`, `/` or `=`.
pub fn random_nonce() -> Result<String, SaslError> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    // Rejection sampling keeps every character equally likely (248 = 4 * 62).
    while out.len() < 32 {
        for b in random_bytes(48)? {
            if b < 248 && out.len() < 32 {
                out.push(ALPHABET[usize::from(b % 62)] as char);
            }
        }
    }
    Ok(out)
}

/// A PLAIN message (RFC 4616): `[authzid] NUL authcid NUL passwd`.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainAuth {
    /// The user to authenticate as.
    pub username: String,
    /// The password, as sent.
    pub password: Vec<u8>,
}

/// Parses a PLAIN message. An authorization id other than empty or the user itself is refused
/// (Kafka does the same).
pub fn parse_plain(msg: &[u8]) -> Result<PlainAuth, SaslError> {
    let bad = |why: &str| SaslError::Malformed {
        what: "PLAIN message",
        why: why.to_string(),
    };
    let mut parts = msg.splitn(3, |b| *b == 0);
    let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected authzid NUL username NUL password"));
    };
    let username = std::str::from_utf8(user)
        .map_err(|_| bad("username is not UTF-8"))?
        .to_string();
    if username.is_empty() {
        return Err(bad("empty username"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::Unsupported(
            "an authorization id different from the username".into(),
        ));
    }
    if password.is_empty() {
        return Err(bad("empty password"));
    }
    Ok(PlainAuth {
        username,
        password: password.to_vec(),
    })
}

/// Builds a PLAIN message for `username` and `password` (client side).
pub fn plain_message(username: &str, password: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(username.len() + password.len() + 2);
    m.push(0);
    m.extend_from_slice(username.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    m
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    use super::*;

    #[test]
    fn plain_parses_and_refuses() {
        assert_eq!(
            parse_plain(b"\0alice\0secret").unwrap(),
            PlainAuth {
                username: "alice".into(),
                password: b"secret".to_vec()
            }
        );
        assert!(parse_plain(b"alice\0alice\0pw").is_ok());
        for bad in [
            &b""[..],
            b"\0alice",
            b"\0\0pw",
            b"\0alice\0",
            b"bob\0alice\0pw",
            b"\0\xff\0pw",
        ] {
            assert!(parse_plain(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_plain(&plain_message("u", "p:w\0x")).unwrap().password,
            b"p:w\0x"
        );
    }

    /// RFC 7677's SCRAM-SHA-256 test vector: user "user", password "pencil", salt
    /// W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    #[test]
    fn rfc7677_credential_verifies_its_password_only() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c =
            ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", salt, 4096).unwrap();
        assert_eq!(
            B64.encode(&c.server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        assert!(c.verify_password(b"pencil"));
        assert!(!c.verify_password(b"pencil "));
        assert!(!c.verify_password(b""));
    }

    #[test]
    fn nonces_are_letters_and_digits() {
        let a = random_nonce().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, random_nonce().unwrap());
    }

    #[test]
    fn iteration_bounds_follow_kafka() {
        for (n, ok) in [(4095, false), (4096, true), (16384, true), (16385, false)] {
            assert_eq!(
                ScramMechanism::Sha512.check_iterations(n).is_ok(),
                ok,
                "{n}"
            );
        }
    }

    #[test]
    fn names_and_type_codes_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::parse(m.name()), Some(m));
        }
        assert_eq!(Mechanism::parse("scram-sha-256"), None);
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_kafka_type(m.kafka_type()), Some(m));
        }
        assert_eq!(ScramMechanism::from_kafka_type(0), None);
    }
}
