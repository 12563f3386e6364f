//! One TCP connection to one broker: framing, correlation ids and API version negotiation.
//!
//! Requests on a connection are strictly sequential (one in flight), so a response always
//! answers the last request sent; the correlation id check catches a desynchronised stream.
//! Any I/O, framing or decoding failure leaves the stream in an unknown position, so the caller
//! must drop the connection after an error (see [`Connection::request`]).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes, VersionRange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::security::{SaslLogin, Security, Stream, tls_connect};
use crate::codes;
use crate::error::ClientError;

/// Settings shared by every connection of a client.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    /// Client id sent in every request header.
    pub client_id: String,
    /// How long to wait for connect, and for each request's response.
    pub request_timeout: Duration,
    /// Largest response frame accepted; larger announced sizes are refused before allocating.
    pub max_frame_bytes: usize,
    /// TLS and SASL (default: neither).
    pub security: std::sync::Arc<Security>,
}

/// The ApiVersions version this client asks for first (v3 adds client software name/version).
const API_VERSIONS_PREFERRED: i16 = 3;

/// A connection to one broker, with the API version ranges the broker advertised.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: Stream,
    settings: ConnSettings,
    next_correlation_id: i32,
    /// api key -> (min, max) advertised by the broker.
    broker_versions: HashMap<i16, (i16, i16)>,
}

/// Human name of an API for messages, e.g. `OffsetCommit`.
pub(crate) fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Fetch => "Fetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        _ => "request",
    }
}

/// Picks the highest version both sides support, or explains why there is none.
pub fn negotiate(
    api: ApiKey,
    client: VersionRange,
    broker: Option<(i16, i16)>,
) -> Result<i16, ClientError> {
    let no_common = |broker: String| ClientError::NoCommonVersion {
        api: api_name(api),
        client_min: client.min,
        client_max: client.max,
        broker,
    };
    let Some((bmin, bmax)) = broker else {
        return Err(no_common("does not advertise it".to_string()));
    };
    let common = client.intersect(&VersionRange {
        min: bmin,
        max: bmax,
    });
    if common.is_empty() {
        return Err(no_common(format!("supports {bmin}..={bmax}")));
    }
    Ok(common.max)
}

impl Connection {
    /// Connects to `addr` and negotiates API versions.
    pub async fn connect(addr: &str, settings: ConnSettings) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(settings.request_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Connect {
                addr: addr.to_string(),
                cause: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
            })?
            .map_err(|cause| ClientError::Connect {
                addr: addr.to_string(),
                cause,
            })?;
        // Admin requests are small and latency-bound.
        let _ = stream.set_nodelay(true);
        let stream = match &settings.security.tls {
            Some(tls) => {
                let handshake = tls_connect(tls.clone(), addr, stream);
                tokio::time::timeout(settings.request_timeout, handshake)
                    .await
                    .map_err(|_| ClientError::Tls {
                        addr: addr.to_string(),
                        message: "TLS handshake timed out (is this a TLS listener?)".into(),
                    })??
            }
            None => Stream::Plain(stream),
        };
        let sasl = settings.security.sasl.clone();
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            settings,
            next_correlation_id: 0,
            broker_versions: HashMap::new(),
        };
        conn.negotiate_api_versions().await?;
        if let Some(login) = sasl {
            conn.authenticate(&login).await?;
        }
        Ok(conn)
    }

    /// SASL: SaslHandshake v1, then SaslAuthenticate once (PLAIN) or twice (SCRAM, checking
    /// the server's signature).
    async fn authenticate(&mut self, login: &SaslLogin) -> Result<(), ClientError> {
        let auth_err = |addr: &str, message: String| ClientError::Authentication {
            addr: addr.to_string(),
            mechanism: login.mechanism.name(),
            message,
        };
        let v = self.version_for::<SaslHandshakeRequest>(1)?;
        let hs: SaslHandshakeResponse = self
            .request(
                v,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(login.mechanism.name())),
            )
            .await?;
        if hs.error_code != codes::NONE {
            let offered: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(auth_err(
                &self.addr,
                format!(
                    "the broker refused the mechanism (error {}; it offers {})",
                    hs.error_code,
                    offered.join(", ")
                ),
            ));
        }
        let v = self.version_for::<SaslAuthenticateRequest>(i16::MAX)?;
        let step = async |conn: &mut Connection, bytes: Vec<u8>| {
            let resp: SaslAuthenticateResponse = conn
                .request(
                    v,
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                )
                .await?;
            if resp.error_code != codes::NONE {
                return Err(auth_err(
                    &conn.addr,
                    resp.error_message
                        .map_or_else(|| format!("error {}", resp.error_code), |m| m.to_string()),
                ));
            }
            Ok(resp.auth_bytes)
        };
        match login.mechanism.scram() {
            None => {
                step(
                    self,
                    waterline_sasl::plain_message(&login.username, &login.password),
                )
                .await?;
            }
            Some(m) => {
                let nonce = waterline_sasl::random_nonce()
                    .map_err(|e| auth_err(&self.addr, e.to_string()))?;
                let (client, first) =
                    waterline_sasl::ScramClient::new(m, &login.username, &login.password, &nonce);
                let server_first = step(self, first).await?;
                let (client, last) = client
                    .server_first(&server_first)
                    .map_err(|e| auth_err(&self.addr, e.to_string()))?;
                let server_final = step(self, last).await?;
                client
                    .server_final(&server_final)
                    .map_err(|e| auth_err(&self.addr, e.to_string()))?;
            }
        }
        tracing::debug!(addr = %self.addr, user = %login.username, mechanism = login.mechanism.name(), "authenticated");
        Ok(())
    }

    /// The broker address this connection talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The version range the broker advertised for `api`, if any.
    pub fn broker_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.broker_versions.get(&(api as i16)).copied()
    }

    /// The version to use for request type `R`, capped at `client_max` by this client.
    pub fn version_for<R: Request>(&self, client_max: i16) -> Result<i16, ClientError> {
        let api = api_key::<R>()?;
        let client = VersionRange {
            min: R::VERSIONS.min,
            max: R::VERSIONS.max.min(client_max),
        };
        negotiate(api, client, self.broker_range(api))
    }

    async fn negotiate_api_versions(&mut self) -> Result<(), ClientError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("waterline-admin"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let body = self
            .round_trip(ApiKey::ApiVersions, API_VERSIONS_PREFERRED, &request)
            .await
            .map_err(|e| not_kafka(&self.addr, e))?;
        // The error code is the first body field in every version. A broker that does not know
        // the version asked for answers UNSUPPORTED_VERSION with a v0 body listing its APIs.
        let code = body.clone().try_get_i16().unwrap_or(codes::NONE);
        let version = if code == codes::UNSUPPORTED_VERSION {
            0
        } else {
            API_VERSIONS_PREFERRED
        };
        let response: ApiVersionsResponse = self.decode_body(ApiKey::ApiVersions, version, body)?;
        if response.error_code != codes::NONE && response.error_code != codes::UNSUPPORTED_VERSION {
            return Err(ClientError::Kafka {
                api: "ApiVersions",
                context: format!("broker {}", self.addr),
                code: response.error_code,
            });
        }
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        tracing::debug!(
            addr = %self.addr,
            api_versions_version = version,
            apis = self.broker_versions.len(),
            "connected and negotiated API versions"
        );
        Ok(())
    }

    /// Sends `request` at `version` and decodes the response.
    ///
    /// After an `Err`, the stream position is unknown: drop this connection.
    pub async fn request<R: Request>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response, ClientError> {
        let api = api_key::<R>()?;
        let body = self.round_trip(api, version, request).await?;
        self.decode_body(api, version, body)
    }

    fn decode_body<T: Decodable>(
        &self,
        api: ApiKey,
        version: i16,
        mut body: Bytes,
    ) -> Result<T, ClientError> {
        // Refuse element counts the body cannot hold before kafka-protocol allocates them.
        waterline_wire::check_response(api as i16, version, &body).map_err(|e| {
            ClientError::Decode {
                api: api_name(api),
                version,
                addr: self.addr.clone(),
                message: e.to_string(),
            }
        })?;
        T::decode(&mut body, version).map_err(|e| ClientError::Decode {
            api: api_name(api),
            version,
            addr: self.addr.clone(),
            message: format!("{e:#}"),
        })
    }

    /// Writes one framed request and reads its framed response; returns the body after the
    /// response header.
    async fn round_trip<T: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &T,
    ) -> Result<Bytes, ClientError> {
        let name = api_name(api);
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_frame(
            api,
            version,
            correlation_id,
            &self.settings.client_id,
            request,
        )?;
        let timeout = self.settings.request_timeout;
        let addr = self.addr.clone();
        let max = self.settings.max_frame_bytes;
        let io = async {
            self.stream.write_all(&frame).await?;
            let size = self.stream.read_i32().await?;
            Ok::<_, std::io::Error>(size)
        };
        let size = tokio::time::timeout(timeout, io)
            .await
            .map_err(|_| ClientError::Timeout {
                api: name,
                addr: addr.clone(),
                timeout_ms: timeout.as_millis() as u64,
            })?
            .map_err(|cause| ClientError::Io {
                api: name,
                addr: addr.clone(),
                cause,
            })?;
        // Bound the announced length before allocating: it comes straight from the wire.
        let len = usize::try_from(size)
            .ok()
            .filter(|len| (4..=max).contains(len))
            .ok_or(ClientError::FrameSize {
                api: name,
                addr: addr.clone(),
                size: i64::from(size),
                limit: max,
            })?;
        let mut buf = vec![0u8; len];
        tokio::time::timeout(timeout, self.stream.read_exact(&mut buf))
            .await
            .map_err(|_| ClientError::Timeout {
                api: name,
                addr: addr.clone(),
                timeout_ms: timeout.as_millis() as u64,
            })?
            .map_err(|cause| ClientError::Io {
                api: name,
                addr: addr.clone(),
                cause,
            })?;
        let mut bytes = Bytes::from(buf);
        let header_version = api.response_header_version(version);
        let header = ResponseHeader::decode(&mut bytes, header_version).map_err(|e| {
            ClientError::Decode {
                api: name,
                version,
                addr: addr.clone(),
                message: format!("response header: {e:#}"),
            }
        })?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Correlation {
                api: name,
                addr,
                expected: correlation_id,
                got: header.correlation_id,
            });
        }
        Ok(bytes)
    }
}

/// The first answer on a connection (ApiVersions) that is not a Kafka frame means the address
/// is not a Kafka listener (an HTTP server, TLS, another protocol): say so instead of
/// reporting an absurd frame size.
fn not_kafka(addr: &str, e: ClientError) -> ClientError {
    match e {
        ClientError::FrameSize { size, .. } => ClientError::NotKafka {
            addr: addr.to_string(),
            starts_with: preview(size),
        },
        other => other,
    }
}

/// The first four bytes of an answer, as text when they are printable (e.g. `"HTTP"`),
/// else in hex.
fn preview(first: i64) -> String {
    let bytes = (first as i32).to_be_bytes();
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("\"{}\"", String::from_utf8_lossy(&bytes))
    } else {
        format!(
            "0x{}",
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }
}

/// The [`ApiKey`] of request type `R`.
fn api_key<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY).map_err(|_| ClientError::Encode {
        api: "request",
        version: 0,
        message: format!("unknown API key {}", R::KEY),
    })
}

/// Size prefix, request header and body of one request.
fn encode_frame<T: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    request: &T,
) -> Result<BytesMut, ClientError> {
    let encode_err = |message: String| ClientError::Encode {
        api: api_name(api),
        version,
        message,
    };
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::new();
    buf.put_i32(0); // size placeholder, patched below
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(|e| encode_err(format!("{e:#}")))?;
    request
        .encode(&mut buf, version)
        .map_err(|e| encode_err(format!("{e:#}")))?;
    let size = i32::try_from(buf.len() - 4)
        .map_err(|_| encode_err(format!("request of {} bytes is too large", buf.len())))?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(
            negotiate(ApiKey::Metadata, range(1, 12), Some((0, 9))).unwrap(),
            9
        );
        assert_eq!(
            negotiate(ApiKey::Metadata, range(1, 12), Some((0, 13))).unwrap(),
            12
        );
        assert_eq!(
            negotiate(ApiKey::Metadata, range(1, 12), Some((12, 13))).unwrap(),
            12
        );
    }

    #[test]
    fn negotiation_fails_clearly_without_overlap_or_advertisement() {
        let err = negotiate(ApiKey::OffsetCommit, range(2, 8), Some((0, 1))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OffsetCommit: no common version (client supports 2..=8, broker supports 0..=1)"
        );
        let err = negotiate(ApiKey::OffsetDelete, range(0, 0), None).unwrap_err();
        assert!(err.to_string().contains("does not advertise it"), "{err}");
    }

    #[test]
    fn a_non_kafka_answer_is_named_as_such() {
        // "HTTP" read as a big-endian frame size.
        let e = not_kafka(
            "h:80",
            ClientError::FrameSize {
                api: "ApiVersions",
                addr: "h:80".into(),
                size: 1_213_486_160,
                limit: 100 << 20,
            },
        );
        assert_eq!(
            e.to_string(),
            "h:80 does not answer like a Kafka broker (its reply starts with \"HTTP\"): is this a Kafka listener?"
        );
        assert_eq!(preview(-1), "0xffffffff");
    }

    #[test]
    fn frames_carry_size_header_and_body() {
        let req = ApiVersionsRequest::default();
        let frame = encode_frame(ApiKey::ApiVersions, 0, 7, "c", &req).unwrap();
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(size as usize, frame.len() - 4);
        // api key 18, version 0, correlation 7
        assert_eq!(&frame[4..12], &[0, 18, 0, 0, 0, 0, 0, 7]);
    }
}
