//! DescribeUserScramCredentials (50): which SCRAM mechanisms (and iteration counts) each user
//! has; never a salt or a key.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, RequestHeader,
};

use crate::handlers::sb;
use crate::state::SharedState;

/// Describes the named users (all users for a null or empty list). An unknown user gets
/// RESOURCE_NOT_FOUND, a user named twice DUPLICATE_RESOURCE, as in Kafka.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let snapshot = state.credentials.snapshot();
    let mut r = DescribeUserScramCredentialsResponse::default();
    let describe = |user: &str| {
        let mut res = DescribeUserScramCredentialsResult::default();
        res.user = sb(user);
        match snapshot.get(user) {
            Some(ms) => {
                for c in ms.values() {
                    let mut info = CredentialInfo::default();
                    info.mechanism = c.mechanism.kafka_type();
                    info.iterations = c.iterations as i32;
                    res.credential_infos.push(info);
                }
            }
            None => {
                res.error_code = ResponseError::ResourceNotFound.code();
                res.error_message = Some(sb(format!(
                    "Attempt to describe a user credential that does not exist: {user}"
                )));
            }
        }
        res
    };
    match req.users {
        Some(users) if !users.is_empty() => {
            let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
            for (i, name) in names.iter().enumerate() {
                if names[..i].contains(name) {
                    continue;
                }
                if names[i + 1..].contains(name) {
                    let mut res = DescribeUserScramCredentialsResult::default();
                    res.user = sb(*name);
                    res.error_code = ResponseError::DuplicateResource.code();
                    res.error_message = Some(sb(format!(
                        "Cannot describe SCRAM credentials for the same user twice in a single request: {name}"
                    )));
                    r.results.push(res);
                } else {
                    r.results.push(describe(name));
                }
            }
        }
        _ => {
            for user in snapshot.keys() {
                r.results.push(describe(user));
            }
        }
    }
    r
}
