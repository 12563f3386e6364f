//! ApiVersions (18): the APIs and versions this broker serves.

use bytes::{BufMut, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, RequestHeader};

use crate::handlers::advertised_versions;
use crate::state::SharedState;

/// Answers with the advertised API list.
pub async fn handle(
    _state: &SharedState,
    _header: &RequestHeader,
    _req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = 0;
    r.api_keys = api_keys();
    r
}

fn api_keys() -> Vec<ApiVersion> {
    advertised_versions()
        .into_iter()
        .map(|(k, v)| {
            let mut a = ApiVersion::default();
            a.api_key = k as i16;
            a.min_version = v.min;
            a.max_version = v.max;
            a
        })
        .collect()
}

/// Body of the answer to an ApiVersions request newer than this broker knows: a v0 body with
/// UNSUPPORTED_VERSION and the key list, so the client can retry with a version we speak.
pub fn unsupported_version_body() -> Vec<u8> {
    let keys = api_keys();
    let mut b = BytesMut::with_capacity(6 + keys.len() * 6);
    b.put_i16(ResponseError::UnsupportedVersion.code());
    b.put_i32(keys.len() as i32);
    for k in keys {
        b.put_i16(k.api_key);
        b.put_i16(k.min_version);
        b.put_i16(k.max_version);
    }
    b.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_util;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Decodable;

    #[tokio::test]
    async fn advertises_what_is_decoded() {
        let (state, _dir) = test_util::state();
        let r = handle(
            &state,
            &test_util::header(ApiKey::ApiVersions, 3),
            ApiVersionsRequest::default(),
        )
        .await;
        let fetch = r.api_keys.iter().find(|k| k.api_key == 1).unwrap();
        assert_eq!((fetch.min_version, fetch.max_version), (4, 12));
        let produce = r.api_keys.iter().find(|k| k.api_key == 0).unwrap();
        assert_eq!((produce.min_version, produce.max_version), (0, 12));
        assert!(r.api_keys.iter().all(|k| k.api_key != 68), "no KIP-848");
    }

    #[test]
    fn unsupported_body_is_a_valid_v0_response() {
        let body = unsupported_version_body();
        let r = ApiVersionsResponse::decode(&mut bytes::Bytes::from(body), 0).unwrap();
        assert_eq!(r.error_code, 35);
        assert!(r.api_keys.iter().any(|k| k.api_key == 18));
    }
}
