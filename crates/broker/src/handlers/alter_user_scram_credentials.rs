//! AlterUserScramCredentials (51): creates, replaces and deletes SCRAM credentials. The client
//! sends the salted password (never the password); the broker stores StoredKey and ServerKey
//! and makes the change durable (see `auth::credentials`) before answering.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, RequestHeader,
};
use waterline_sasl::{ScramCredential, ScramMechanism};

use crate::auth::CredentialChange;
use crate::auth::credentials::valid_user_name;
use crate::handlers::sb;
use crate::state::SharedState;

/// Applies the request. Results are per user: a user with any invalid change (unknown
/// mechanism, iterations outside 4096..=16384, a salted password of the wrong length, the same
/// user and mechanism twice, a deletion of a credential that does not exist) gets that error
/// and none of its changes; the other users' changes are applied together.
pub async fn handle(
    state: &SharedState,
    _header: &RequestHeader,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // user -> first error, in order of first mention.
    let mut order: Vec<String> = Vec::new();
    let mut errors: BTreeMap<String, (ResponseError, String)> = BTreeMap::new();
    let mut seen: Vec<(String, i8)> = Vec::new();
    let mut changes: Vec<CredentialChange> = Vec::new();
    let snapshot = state.credentials.snapshot();
    let mut note = |user: &str| {
        if !order.iter().any(|u| u == user) {
            order.push(user.to_string());
        }
    };
    let fail = |errors: &mut BTreeMap<String, (ResponseError, String)>,
                user: &str,
                e: ResponseError,
                msg: String| {
        errors.entry(user.to_string()).or_insert((e, msg));
    };
    for d in &req.deletions {
        let user = d.name.as_str();
        note(user);
        if seen.iter().any(|(u, m)| u == user && *m == d.mechanism) {
            fail(
                &mut errors,
                user,
                ResponseError::DuplicateResource,
                "a user and mechanism named twice in one request".into(),
            );
            continue;
        }
        seen.push((user.to_string(), d.mechanism));
        let Some(m) = ScramMechanism::from_kafka_type(d.mechanism) else {
            fail(
                &mut errors,
                user,
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", d.mechanism),
            );
            continue;
        };
        if !snapshot.get(user).is_some_and(|ms| ms.contains_key(&m)) {
            fail(
                &mut errors,
                user,
                ResponseError::ResourceNotFound,
                format!("no {} credential to delete", m.name()),
            );
            continue;
        }
        changes.push(CredentialChange::Delete(user.to_string(), m));
    }
    for u in &req.upsertions {
        let user = u.name.as_str();
        note(user);
        if seen.iter().any(|(s, m)| s == user && *m == u.mechanism) {
            fail(
                &mut errors,
                user,
                ResponseError::DuplicateResource,
                "a user and mechanism named twice in one request".into(),
            );
            continue;
        }
        seen.push((user.to_string(), u.mechanism));
        if !valid_user_name(user) {
            fail(
                &mut errors,
                user,
                ResponseError::UnacceptableCredential,
                "user names are 1 to 255 characters without control characters".into(),
            );
            continue;
        }
        let Some(m) = ScramMechanism::from_kafka_type(u.mechanism) else {
            fail(
                &mut errors,
                user,
                ResponseError::UnsupportedSaslMechanism,
                format!("unknown SCRAM mechanism {}", u.mechanism),
            );
            continue;
        };
        let iterations = u32::try_from(u.iterations).unwrap_or(0);
        if let Err(e) = m.check_iterations(iterations) {
            fail(
                &mut errors,
                user,
                ResponseError::UnacceptableCredential,
                e.to_string(),
            );
            continue;
        }
        if u.salted_password.len() != m.hash_len() || u.salt.is_empty() {
            fail(
                &mut errors,
                user,
                ResponseError::UnacceptableCredential,
                format!(
                    "{} needs a {}-byte salted password and a salt",
                    m.name(),
                    m.hash_len()
                ),
            );
            continue;
        }
        changes.push(CredentialChange::Upsert(
            user.to_string(),
            ScramCredential::from_salted_password(
                m,
                &u.salted_password,
                u.salt.to_vec(),
                iterations,
            ),
        ));
    }
    let changes: Vec<CredentialChange> = changes
        .into_iter()
        .filter(|c| match c {
            CredentialChange::Upsert(u, _) | CredentialChange::Delete(u, _) => {
                !errors.contains_key(u)
            }
        })
        .collect();
    let mut storage_error = None;
    if !changes.is_empty() {
        let s = state.clone();
        let users: Vec<String> = changes
            .iter()
            .map(|c| match c {
                CredentialChange::Upsert(u, _) | CredentialChange::Delete(u, _) => u.clone(),
            })
            .collect();
        match tokio::task::spawn_blocking(move || s.credentials.apply(changes)).await {
            Ok(Ok(_)) => {
                tracing::info!(users = ?users, "SCRAM credentials altered");
            }
            Ok(Err(e)) => storage_error = Some(e.to_string()),
            Err(e) => storage_error = Some(e.to_string()),
        }
        if let Some(e) = &storage_error {
            tracing::error!(error = %e, "writing SCRAM credentials failed");
        }
    }
    let mut r = AlterUserScramCredentialsResponse::default();
    for user in order {
        let mut res = AlterUserScramCredentialsResult::default();
        res.user = sb(user.as_str());
        if let Some((e, msg)) = errors.get(&user) {
            res.error_code = e.code();
            res.error_message = Some(sb(msg.as_str()));
        } else if let Some(e) = &storage_error {
            res.error_code = ResponseError::KafkaStorageError.code();
            res.error_message = Some(sb(e.as_str()));
        }
        r.results.push(res);
    }
    r
}
