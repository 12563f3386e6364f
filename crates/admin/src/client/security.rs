//! How the admin client secures its connections: Kafka's `security.protocol` (PLAINTEXT, SSL,
//! SASL_PLAINTEXT, SASL_SSL), TLS through rustls, and SASL PLAIN / SCRAM-SHA-256 / SCRAM-SHA-512
//! after ApiVersions, all read from the client properties Kafka's own tools take
//! (`--command-config FILE`).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use waterline_sasl::Mechanism;

use crate::error::ClientError;

/// Where the system keeps its CA bundle on Debian-like systems; used when `ssl.ca.location`
/// is not given, as librdkafka uses the system store.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// SASL user and mechanism.
#[derive(Clone)]
pub struct SaslLogin {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The user.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    // The password stays out of debug output and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A connection's security: TLS configuration and SASL login, each when the protocol has it.
#[derive(Clone, Default)]
pub struct Security {
    /// TLS (SSL, SASL_SSL).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// SASL (SASL_PLAINTEXT, SASL_SSL).
    pub sasl: Option<SaslLogin>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

fn config_err(msg: impl Into<String>) -> ClientError {
    ClientError::Config(msg.into())
}

/// Parses Java-style properties: `key=value` or `key: value` lines, `#` and `!` comments,
/// surrounding whitespace trimmed. (Line continuations and escapes are not needed by the keys
/// read here.)
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ClientError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(i) = line.find(['=', ':']) else {
            return Err(config_err(format!(
                "line {}: expected key=value, got `{line}`",
                n + 1
            )));
        };
        out.push((
            line[..i].trim().to_string(),
            line[i + 1..].trim().to_string(),
        ));
    }
    Ok(out)
}

/// `username="..."` and `password="..."` from a JAAS line as Kafka's tools take it
/// (`sasl.jaas.config=...ScramLoginModule required username="u" password="p";`).
fn jaas_option(jaas: &str, key: &str) -> Option<String> {
    let start = jaas.find(&format!("{key}=\""))? + key.len() + 2;
    let end = jaas[start..].find('"')? + start;
    Some(jaas[start..end].to_string())
}

impl Security {
    /// No TLS, no SASL.
    pub fn plaintext() -> Security {
        Security::default()
    }

    /// Builds the security of Kafka client properties; paths are taken as given (relative to
    /// the working directory, as Kafka's tools do). Unknown keys are ignored, as Kafka's tools
    /// ignore them; Java keystore settings are refused with a hint.
    pub fn from_properties(props: &[(String, String)]) -> Result<Security, ClientError> {
        let get = |k: &str| {
            props
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        for jks in ["ssl.truststore.location", "ssl.keystore.location"] {
            if get(jks).is_some() {
                return Err(config_err(format!(
                    "{jks}: Java keystores are not supported; give PEM files with ssl.ca.location, ssl.certificate.location and ssl.key.location"
                )));
            }
        }
        let protocol = get("security.protocol").unwrap_or("PLAINTEXT");
        let (tls, sasl) = match protocol.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(config_err(format!(
                    "security.protocol: `{other}`: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                )));
            }
        };
        let tls = if tls {
            Some(tls_config(
                get("ssl.ca.location").map(Path::new),
                get("ssl.certificate.location").map(Path::new),
                get("ssl.key.location").map(Path::new),
            )?)
        } else {
            None
        };
        let sasl = if sasl {
            let name = get("sasl.mechanism")
                .or_else(|| get("sasl.mechanisms"))
                .unwrap_or("PLAIN");
            let mechanism = Mechanism::parse(name).ok_or_else(|| {
                config_err(format!(
                    "sasl.mechanism: `{name}`: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                ))
            })?;
            let jaas = get("sasl.jaas.config").unwrap_or("");
            let username = get("sasl.username")
                .map(str::to_string)
                .or_else(|| jaas_option(jaas, "username"))
                .ok_or_else(|| config_err("SASL needs sasl.username (or sasl.jaas.config)"))?;
            let password = get("sasl.password")
                .map(str::to_string)
                .or_else(|| jaas_option(jaas, "password"))
                .ok_or_else(|| config_err("SASL needs sasl.password (or sasl.jaas.config)"))?;
            Some(SaslLogin {
                mechanism,
                username,
                password,
            })
        } else {
            None
        };
        Ok(Security { tls, sasl })
    }
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| config_err(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_err(format!(
            "{what} {}: no CERTIFICATE block",
            path.display()
        )));
    }
    Ok(certs)
}

/// A rustls client configuration: trust `ca` (else the system bundle), present `cert`/`key`
/// when both are given (mutual TLS).
pub fn tls_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let (what, ca): (&str, PathBuf) = match ca {
        Some(p) => ("ssl.ca.location", p.to_path_buf()),
        None => ("system CA bundle", PathBuf::from(SYSTEM_CA_BUNDLE)),
    };
    for c in read_certs(what, &ca)? {
        roots
            .add(c)
            .map_err(|e| config_err(format!("{what} {}: {e}", ca.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| config_err(e.to_string()))?
    .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("ssl.certificate.location", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| config_err(format!("ssl.key.location {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_err(format!("client certificate: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(config_err(
                "ssl.certificate.location and ssl.key.location go together",
            ));
        }
    };
    Ok(Arc::new(config))
}

/// A TCP stream, TLS-wrapped or not.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Wraps `tcp` in TLS for `addr`'s host (an IP address or a DNS name, checked against the
/// certificate).
pub(crate) async fn tls_connect(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    tcp: TcpStream,
) -> Result<Stream, ClientError> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        ClientError::Tls {
            addr: addr.to_string(),
            message: format!("`{host}` is not a valid server name: {e}"),
        }
    })?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
    Ok(Stream::Tls(Box::new(tls)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(text: &str) -> Vec<(String, String)> {
        parse_properties(text).unwrap()
    }

    #[test]
    fn properties_parse_like_java() {
        let p = props(
            "# c\n! c\n a = b \nc:d\nsasl.jaas.config=x required username=\"u\" password=\"p=w\";\n",
        );
        assert_eq!(p[0], ("a".into(), "b".into()));
        assert_eq!(p[1], ("c".into(), "d".into()));
        assert!(
            parse_properties("novalue")
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
    }

    #[test]
    fn sasl_login_from_keys_or_jaas() {
        let s = Security::from_properties(&props(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=a\nsasl.password=b",
        ))
        .unwrap();
        let l = s.sasl.unwrap();
        assert_eq!(
            (l.mechanism, l.username.as_str(), l.password.as_str()),
            (Mechanism::ScramSha512, "a", "b")
        );
        assert!(s.tls.is_none());
        let s = Security::from_properties(&props(
            "security.protocol=sasl_plaintext\nsasl.mechanism=PLAIN\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p w\";",
        ))
        .unwrap();
        let l = s.sasl.unwrap();
        assert_eq!((l.username.as_str(), l.password.as_str()), ("u", "p w"));
        assert!(!format!("{l:?}").contains("p w"));
    }

    #[test]
    fn bad_properties_name_the_key() {
        for (text, words) in [
            ("security.protocol=TLS", "security.protocol"),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI",
                "sasl.mechanism",
            ),
            (
                "security.protocol=SASL_PLAINTEXT\nsasl.username=u",
                "sasl.password",
            ),
            (
                "security.protocol=SSL\nssl.truststore.location=x.jks",
                "Java keystores",
            ),
            (
                "security.protocol=SSL\nssl.ca.location=/nonexistent.pem",
                "/nonexistent.pem",
            ),
            (
                "security.protocol=SSL\nssl.ca.location=/etc/hostname",
                "no CERTIFICATE",
            ),
        ] {
            let e = Security::from_properties(&props(text))
                .unwrap_err()
                .to_string();
            assert!(e.contains(words), "{text}: {e}");
        }
    }
}
