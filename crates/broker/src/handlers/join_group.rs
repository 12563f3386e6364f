//! JoinGroup (11), v0-9: decoded into the coordinator's request, parked until the join round
//! completes, and encoded back in the request version's schema. v4+ first answers
//! MEMBER_ID_REQUIRED with a new member id; v9+ may tell a static leader to skip assignment.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use waterline_coordinator as wc;

use crate::handlers::sb;
use crate::state::SharedState;

/// Converts the wire request (any version) into the coordinator's.
pub(crate) fn to_coordinator(
    header: &RequestHeader,
    client_host: &str,
    req: JoinGroupRequest,
) -> wc::JoinGroupRequest {
    let version = header.request_api_version;
    wc::JoinGroupRequest {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        require_known_member_id: version >= 4,
        supports_skip_assignment: version >= 9,
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: client_host.to_owned(),
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        session_timeout_ms: req.session_timeout_ms,
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| wc::Protocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
    }
}

/// Encodes the coordinator's answer for `version`.
pub(crate) fn from_coordinator(r: wc::JoinGroupResponse, version: i16) -> JoinGroupResponse {
    let mut resp = JoinGroupResponse::default();
    resp.error_code = wc::GroupError::code_of(r.error);
    resp.generation_id = r.generation_id;
    resp.protocol_type = r.protocol_type.map(sb);
    // protocol_name is nullable only from v7; older versions carry an empty string instead.
    resp.protocol_name = match r.protocol_name {
        Some(n) => Some(sb(n)),
        None if version < 7 => Some(sb("")),
        None => None,
    };
    resp.leader = sb(r.leader);
    resp.skip_assignment = r.skip_assignment;
    resp.member_id = sb(r.member_id);
    resp.members = r
        .members
        .into_iter()
        .map(|m| {
            let mut jm = JoinGroupResponseMember::default();
            jm.member_id = sb(m.member_id);
            jm.group_instance_id = m.group_instance_id.map(sb);
            jm.metadata = m.metadata;
            jm
        })
        .collect();
    resp
}

/// Handles a decoded JoinGroup request from a client at `client_host` (Kafka's form,
/// `/127.0.0.1`): applied to the coordinator now; the future resolves when the join round
/// completes.
pub fn handle(
    state: &SharedState,
    header: &RequestHeader,
    client_host: &str,
    req: JoinGroupRequest,
) -> impl std::future::Future<Output = JoinGroupResponse> + Send + use<> {
    let version = header.request_api_version;
    let request = wc::Request::JoinGroup(to_coordinator(header, client_host, req));
    let answer = state.groups.call(request);
    async move {
        match answer.await {
            wc::Response::JoinGroup(r) => from_coordinator(r, version),
            other => {
                tracing::error!(
                    ?other,
                    "coordinator answered JoinGroup with another response"
                );
                let mut resp = JoinGroupResponse::default();
                resp.error_code = wc::GroupError::CoordinatorNotAvailable.code();
                resp.generation_id = -1;
                if version < 7 {
                    resp.protocol_name = Some(sb(""));
                }
                resp
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;

    use super::*;
    use crate::handlers::test_util;

    fn request(member: &str) -> JoinGroupRequest {
        let mut p = JoinGroupRequestProtocol::default();
        p.name = sb("range");
        p.metadata = bytes::Bytes::from_static(b"sub");
        let mut r = JoinGroupRequest::default();
        r.group_id = kafka_protocol::messages::GroupId(sb("g"));
        r.member_id = sb(member);
        r.session_timeout_ms = 10_000;
        r.rebalance_timeout_ms = 10_000;
        r.protocol_type = sb("consumer");
        r.protocols = vec![p];
        r
    }

    #[tokio::test]
    async fn v4_requires_a_member_id_then_joins() {
        let (state, _dir) = crate::groups::test_util::state(0);
        let h = test_util::header(ApiKey::JoinGroup, 5);
        let first = handle(&state, &h, "/127.0.0.1", request("")).await;
        assert_eq!(first.error_code, wc::GroupError::MemberIdRequired.code());
        assert!(!first.member_id.is_empty());
        // With a zero initial delay the round closes at the next timer tick.
        let joined = handle(&state, &h, "/127.0.0.1", request(first.member_id.as_str())).await;
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(joined.members.len(), 1);
        assert_eq!(joined.members[0].metadata.as_ref(), b"sub");
        assert_eq!(
            joined.protocol_name.as_ref().map(|s| s.as_str()),
            Some("range")
        );
    }

    #[test]
    fn old_versions_get_a_non_null_protocol_name() {
        let r = wc::JoinGroupResponse {
            error: Some(wc::GroupError::UnknownMemberId),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: "m".into(),
            members: vec![],
        };
        assert_eq!(from_coordinator(r.clone(), 6).protocol_name, Some(sb("")));
        assert_eq!(from_coordinator(r, 7).protocol_name, None);
    }
}
