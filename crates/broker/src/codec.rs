//! Request decoding and response encoding, independent of sockets.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::ProtocolError;
use crate::guard;
use crate::handlers;

/// Smallest request header: api key, api version, correlation id (header v0).
pub const MIN_HEADER_BYTES: usize = 8;

/// The fixed first fields of every request header, readable before full decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderPrefix {
    /// API key as sent.
    pub api_key: i16,
    /// API version as sent.
    pub api_version: i16,
    /// Correlation id as sent.
    pub correlation_id: i32,
}

/// Reads the api key, version and correlation id, or `None` if the frame is too short.
pub fn header_prefix(frame: &[u8]) -> Option<HeaderPrefix> {
    if frame.len() < MIN_HEADER_BYTES {
        return None;
    }
    Some(HeaderPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes one request frame (without its 4-byte length prefix). Never panics on any input: the
/// frame is bounded by its length, the API/version must be one the broker serves, and the body
/// is walked by [`guard::check`] before kafka-protocol sees it.
pub fn decode_request(frame: &[u8]) -> Result<(RequestHeader, RequestKind), ProtocolError> {
    decode_request_bytes(Bytes::copy_from_slice(frame))
}

/// Like [`decode_request`], without copying the frame.
pub fn decode_request_bytes(frame: Bytes) -> Result<(RequestHeader, RequestKind), ProtocolError> {
    let prefix = header_prefix(&frame).ok_or(ProtocolError::FrameTooShort(frame.len()))?;
    let key = ApiKey::try_from(prefix.api_key).map_err(|_| ProtocolError::UnknownApiKey {
        api_key: prefix.api_key,
        correlation_id: prefix.correlation_id,
    })?;
    let supported = handlers::supported_versions(key).ok_or(ProtocolError::UnsupportedVersion {
        api_key: prefix.api_key,
        version: prefix.api_version,
        correlation_id: prefix.correlation_id,
    })?;
    if !(supported.min..=supported.max).contains(&prefix.api_version) {
        return Err(ProtocolError::UnsupportedVersion {
            api_key: prefix.api_key,
            version: prefix.api_version,
            correlation_id: prefix.correlation_id,
        });
    }
    decode_checked(frame, key, prefix)
}

/// Decodes a request of a served API at a version above what the broker serves but within what
/// kafka-protocol decodes (e.g. Fetch 13+), so it can be refused in its own schema. `None` if
/// the frame is not such a request or does not decode.
pub fn decode_beyond_served(frame: Bytes) -> Option<(RequestHeader, RequestKind)> {
    let prefix = header_prefix(&frame)?;
    let key = ApiKey::try_from(prefix.api_key).ok()?;
    if prefix.api_version <= handlers::supported_versions(key)?.max {
        return None;
    }
    decode_checked(frame, key, prefix).ok()
}

/// Header decode, guard walk and body decode; kafka-protocol refuses versions it does not know.
fn decode_checked(
    frame: Bytes,
    key: ApiKey,
    prefix: HeaderPrefix,
) -> Result<(RequestHeader, RequestKind), ProtocolError> {
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, key.request_header_version(prefix.api_version))
        .map_err(|e| ProtocolError::BadHeader(e.to_string()))?;
    guard::check(prefix.api_key, prefix.api_version, &buf)
        .map_err(|e| ProtocolError::BadBody(e.to_string()))?;
    let request = RequestKind::decode(key, &mut buf, prefix.api_version)
        .map_err(|e| ProtocolError::BadBody(format!("{key:?} v{}: {e}", prefix.api_version)))?;
    if !buf.is_empty() {
        tracing::debug!(api = ?key, trailing = buf.len(), "ignoring trailing bytes after request body");
    }
    Ok((header, request))
}

/// Encodes a response as a full frame (length prefix, response header, body).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, ProtocolError> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0); // length, patched below
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| ProtocolError::Encode(e.to_string()))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| ProtocolError::Encode(format!("{api_key:?} v{version}: {e}")))?;
    patch_length(buf)
}

/// Encodes a hand-built body (for schemas kafka-protocol cannot encode) behind a v0 response
/// header (correlation id only).
pub fn encode_raw_response(correlation_id: i32, body: &[u8]) -> Result<Bytes, ProtocolError> {
    let mut buf = BytesMut::with_capacity(8 + body.len());
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    buf.put_slice(body);
    patch_length(buf)
}

fn patch_length(mut buf: BytesMut) -> Result<Bytes, ProtocolError> {
    let len = i32::try_from(buf.len() - 4)
        .map_err(|_| ProtocolError::Encode("response larger than 2 GiB".into()))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn frame<R: Encodable>(key: ApiKey, version: i16, body: &R) -> Vec<u8> {
        let mut buf = BytesMut::new();
        let mut h = RequestHeader::default();
        h.request_api_key = key as i16;
        h.request_api_version = version;
        h.correlation_id = 7;
        h.client_id = Some(StrBytes::from_static_str("t"));
        h.encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    #[test]
    fn decodes_a_valid_request() {
        let f = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let (h, r) = decode_request(&f).unwrap();
        assert_eq!(h.correlation_id, 7);
        assert!(matches!(r, RequestKind::ApiVersions(_)));
    }

    #[test]
    fn short_unknown_and_unsupported_frames_are_errors() {
        for n in 0..MIN_HEADER_BYTES {
            assert!(matches!(
                decode_request(&vec![0; n]),
                Err(ProtocolError::FrameTooShort(_))
            ));
        }
        let mut f = frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        f[0..2].copy_from_slice(&9999i16.to_be_bytes());
        assert!(matches!(
            decode_request(&f),
            Err(ProtocolError::UnknownApiKey {
                api_key: 9999,
                correlation_id: 7
            })
        ));
        let f = frame(ApiKey::Metadata, 4, &MetadataRequest::default());
        let mut g = f.clone();
        g[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(&g),
            Err(ProtocolError::UnsupportedVersion { version: 99, .. })
        ));
    }

    #[test]
    fn huge_array_count_is_refused_before_decoding() {
        // Metadata v4: topics array count right after the header.
        let mut f = frame(ApiKey::Metadata, 4, &MetadataRequest::default());
        let body_at = f.len() - 5; // topics (i32) + allow_auto_topic_creation (bool)
        f[body_at..body_at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode_request(&f), Err(ProtocolError::BadBody(_))));
    }
}
