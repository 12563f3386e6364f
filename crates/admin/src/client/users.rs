//! SCRAM users through Kafka's own APIs (DescribeUserScramCredentials,
//! AlterUserScramCredentials), so `waterline users` works against Kafka and `waterline serve`
//! alike. Passwords never leave this process: the client salts and hashes them (RFC 5802
//! `Hi`) and sends the salted password, as Kafka's tools do.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use waterline_sasl::ScramMechanism;

use super::AdminClient;
use crate::codes;
use crate::error::ClientError;

/// One user's SCRAM credentials as the broker describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    /// The user name.
    pub name: String,
    /// Kafka error code for this user (0: described).
    pub error_code: i16,
    /// The broker's message with the error.
    pub error_message: Option<String>,
    /// (mechanism, iterations) of each credential.
    pub credentials: Vec<(ScramMechanism, i32)>,
}

/// One change to a user's credentials.
#[derive(Debug, Clone)]
pub enum ScramChange {
    /// Set the password for one mechanism.
    Set {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: ScramMechanism,
        /// PBKDF2 iterations (4096..=16384).
        iterations: u32,
        /// The password.
        password: String,
    },
    /// Remove one mechanism's credential.
    Delete {
        /// The user.
        user: String,
        /// The mechanism.
        mechanism: ScramMechanism,
    },
}

impl AdminClient {
    /// Describes `users` (every user for an empty list).
    pub async fn describe_scram_users(
        &mut self,
        users: &[String],
    ) -> Result<Vec<ScramUser>, ClientError> {
        let addr = self.any_addr();
        let (_, resp) = self
            .send(&addr, |_| {
                let mut r = DescribeUserScramCredentialsRequest::default();
                r.users = if users.is_empty() {
                    None
                } else {
                    Some(
                        users
                            .iter()
                            .map(|u| {
                                UserName::default().with_name(StrBytes::from_string(u.clone()))
                            })
                            .collect(),
                    )
                };
                r
            })
            .await?;
        if resp.error_code != codes::NONE {
            return Err(ClientError::Kafka {
                api: "DescribeUserScramCredentials",
                context: format!("broker {addr}"),
                code: resp.error_code,
            });
        }
        Ok(resp
            .results
            .into_iter()
            .map(|r| ScramUser {
                name: r.user.to_string(),
                error_code: r.error_code,
                error_message: r.error_message.map(|m| m.to_string()),
                credentials: r
                    .credential_infos
                    .iter()
                    .filter_map(|c| {
                        ScramMechanism::from_kafka_type(c.mechanism).map(|m| (m, c.iterations))
                    })
                    .collect(),
            })
            .collect())
    }

    /// Applies `changes`; returns (user, error code, message) per user, as the broker answers.
    pub async fn alter_scram_users(
        &mut self,
        changes: &[ScramChange],
    ) -> Result<Vec<(String, i16, Option<String>)>, ClientError> {
        let mut req = AlterUserScramCredentialsRequest::default();
        for c in changes {
            match c {
                ScramChange::Set {
                    user,
                    mechanism,
                    iterations,
                    password,
                } => {
                    let salt = waterline_sasl::random_salt()
                        .map_err(|e| ClientError::Config(e.to_string()))?;
                    let salted = mechanism.salted_password(password.as_bytes(), &salt, *iterations);
                    req.upsertions.push(
                        ScramCredentialUpsertion::default()
                            .with_name(StrBytes::from_string(user.clone()))
                            .with_mechanism(mechanism.kafka_type())
                            .with_iterations(*iterations as i32)
                            .with_salt(Bytes::from(salt))
                            .with_salted_password(Bytes::from(salted)),
                    );
                }
                ScramChange::Delete { user, mechanism } => req.deletions.push(
                    ScramCredentialDeletion::default()
                        .with_name(StrBytes::from_string(user.clone()))
                        .with_mechanism(mechanism.kafka_type()),
                ),
            }
        }
        let addr = self.any_addr();
        let (_, resp) = self.send(&addr, |_| req).await?;
        Ok(resp
            .results
            .into_iter()
            .map(|r| {
                (
                    r.user.to_string(),
                    r.error_code,
                    r.error_message.map(|m| m.to_string()),
                )
            })
            .collect())
    }
}
