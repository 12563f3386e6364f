//! Listeners: `PROTOCOL://HOST:PORT` as Kafka writes them, and what a connection needs to know
//! about the listener it came in on (its security protocol and the address to advertise).

use crate::error::ConfigError;

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    /// TCP, no authentication.
    Plaintext,
    /// TLS; the principal is the client certificate's subject with mutual TLS.
    Ssl,
    /// SASL over TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Kafka's name (`SASL_SSL`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Parses Kafka's name (case-insensitive, as Kafka's own config parsing is).
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(s))
    }

    /// Whether connections are wrapped in TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL before any other request.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One `PROTOCOL://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The security protocol.
    pub protocol: SecurityProtocol,
    /// Host or IP (IPv6 without brackets).
    pub host: String,
    /// Port (0 picks a free one when binding).
    pub port: u16,
}

impl ListenerSpec {
    /// Parses `PROTOCOL://HOST:PORT` (IPv6 hosts in brackets); `what` names the setting in
    /// errors.
    pub fn parse(what: &str, s: &str) -> Result<ListenerSpec, ConfigError> {
        let bad = |why: &str| ConfigError::Invalid(format!("{what}: `{s}`: {why}"));
        let (proto, addr) = s
            .split_once("://")
            .ok_or_else(|| bad("expected PROTOCOL://HOST:PORT"))?;
        let protocol = SecurityProtocol::parse(proto)
            .ok_or_else(|| bad("protocol must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?;
        let (host, port) = split_host_port(addr).ok_or_else(|| bad("expected HOST:PORT"))?;
        Ok(ListenerSpec {
            protocol,
            host,
            port,
        })
    }

    /// `host:port` for binding or display (IPv6 in brackets).
    pub fn addr(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

impl std::fmt::Display for ListenerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.protocol, self.addr())
    }
}

/// Splits `host:port` / `[v6]:port`; `None` when malformed.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port))
}

/// `host:port`, bracketing an IPv6 host.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A bound listener as connections see it.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// The security protocol of its connections.
    pub protocol: SecurityProtocol,
    /// The host Metadata and FindCoordinator name for connections on this listener.
    pub advertised_host: String,
    /// The port advertised with it.
    pub advertised_port: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_listener_strings() {
        let l = ListenerSpec::parse("listeners", "SASL_SSL://0.0.0.0:9093").unwrap();
        assert_eq!(l.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l.addr(), "0.0.0.0:9093");
        assert_eq!(l.to_string(), "SASL_SSL://0.0.0.0:9093");
        let l = ListenerSpec::parse("listeners", "ssl://[::1]:0").unwrap();
        assert_eq!(
            (l.protocol, l.host.as_str(), l.port),
            (SecurityProtocol::Ssl, "::1", 0)
        );
        assert_eq!(l.addr(), "[::1]:0");
        for bad in [
            "127.0.0.1:9092",
            "TLS://h:1",
            "PLAINTEXT://h",
            "PLAINTEXT://:1",
            "PLAINTEXT://h:70000",
        ] {
            let e = ListenerSpec::parse("listeners", bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(bad) && !e.contains('\n'), "{e}");
        }
    }
}
