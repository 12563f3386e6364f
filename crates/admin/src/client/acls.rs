//! ACLs through Kafka's own APIs (DescribeAcls, CreateAcls, DeleteAcls), so `waterline acls`
//! works against Kafka and `waterline serve` alike. Enums travel as Kafka's wire codes.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use super::AdminClient;
use crate::codes;
use crate::error::ClientError;

/// Kafka's ANY code, for filters.
pub const ANY: i8 = 1;
/// Kafka's MATCH pattern-type code, for filters.
pub const MATCH: i8 = 2;

/// Resource types: (name, wire code).
pub const RESOURCE_TYPES: [(&str, i8); 4] = [
    ("TOPIC", 2),
    ("GROUP", 3),
    ("CLUSTER", 4),
    ("TRANSACTIONAL_ID", 5),
];
/// Pattern types: (name, wire code).
pub const PATTERN_TYPES: [(&str, i8); 4] =
    [("ANY", 1), ("MATCH", 2), ("LITERAL", 3), ("PREFIXED", 4)];
/// Operations: (name, wire code).
pub const OPERATIONS: [(&str, i8); 11] = [
    ("ALL", 2),
    ("READ", 3),
    ("WRITE", 4),
    ("CREATE", 5),
    ("DELETE", 6),
    ("ALTER", 7),
    ("DESCRIBE", 8),
    ("CLUSTER_ACTION", 9),
    ("DESCRIBE_CONFIGS", 10),
    ("ALTER_CONFIGS", 11),
    ("IDEMPOTENT_WRITE", 12),
];
/// Permissions: (name, wire code).
pub const PERMISSIONS: [(&str, i8); 2] = [("DENY", 2), ("ALLOW", 3)];

/// The name of `code` in `table`, or `UNKNOWN(<code>)`.
pub fn name_of(table: &[(&'static str, i8)], code: i8) -> String {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| format!("UNKNOWN({code})"))
}

/// The code of `name` in `table`, ignoring case, `-` and `_` (Kafka's tools write `IdempotentWrite`).
pub fn code_of(table: &[(&'static str, i8)], name: &str) -> Option<i8> {
    // `idempotent-write`, `IDEMPOTENT_WRITE` and kafka-acls' `IdempotentWrite` are one name.
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let name = squash(name);
    table
        .iter()
        .find(|(n, _)| squash(n) == name)
        .map(|(_, c)| *c)
}

/// One ACL, in wire codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// Resource type code.
    pub resource_type: i8,
    /// Resource name (or prefix, or `*`).
    pub resource_name: String,
    /// Pattern type code (LITERAL or PREFIXED).
    pub pattern_type: i8,
    /// `User:<name>`.
    pub principal: String,
    /// `*` or an IP address.
    pub host: String,
    /// Operation code.
    pub operation: i8,
    /// Permission code.
    pub permission: i8,
}

/// A filter for describe and delete: `None` strings match anything; codes may be [`ANY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// Resource type code or ANY.
    pub resource_type: i8,
    /// Resource name, or any.
    pub resource_name: Option<String>,
    /// Pattern type code, ANY or MATCH.
    pub pattern_type: i8,
    /// Principal, or any.
    pub principal: Option<String>,
    /// Host, or any.
    pub host: Option<String>,
    /// Operation code or ANY.
    pub operation: i8,
    /// Permission code or ANY.
    pub permission: i8,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl AdminClient {
    /// The ACLs matching `filter`.
    pub async fn describe_acls(&mut self, filter: &AclFilter) -> Result<Vec<Acl>, ClientError> {
        let addr = self.any_addr();
        let (_, resp) = self
            .send(&addr, |_| {
                let mut r = DescribeAclsRequest::default();
                r.resource_type_filter = filter.resource_type;
                r.resource_name_filter = filter.resource_name.as_deref().map(sb);
                r.pattern_type_filter = filter.pattern_type;
                r.principal_filter = filter.principal.as_deref().map(sb);
                r.host_filter = filter.host.as_deref().map(sb);
                r.operation = filter.operation;
                r.permission_type = filter.permission;
                r
            })
            .await?;
        if resp.error_code != codes::NONE {
            return Err(ClientError::Kafka {
                api: "DescribeAcls",
                context: format!(
                    "broker {addr}{}",
                    resp.error_message
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                code: resp.error_code,
            });
        }
        let mut out = Vec::new();
        for res in resp.resources {
            for a in res.acls {
                out.push(Acl {
                    resource_type: res.resource_type,
                    resource_name: res.resource_name.to_string(),
                    pattern_type: res.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                });
            }
        }
        Ok(out)
    }

    /// Creates `acls`; returns (error code, message) per ACL, in order.
    pub async fn create_acls(
        &mut self,
        acls: &[Acl],
    ) -> Result<Vec<(i16, Option<String>)>, ClientError> {
        let addr = self.any_addr();
        let (_, resp) = self
            .send(&addr, |_| {
                let mut r = CreateAclsRequest::default();
                r.creations = acls
                    .iter()
                    .map(|a| {
                        let mut c = AclCreation::default();
                        c.resource_type = a.resource_type;
                        c.resource_name = sb(&a.resource_name);
                        c.resource_pattern_type = a.pattern_type;
                        c.principal = sb(&a.principal);
                        c.host = sb(&a.host);
                        c.operation = a.operation;
                        c.permission_type = a.permission;
                        c
                    })
                    .collect();
                r
            })
            .await?;
        Ok(resp
            .results
            .into_iter()
            .map(|r| (r.error_code, r.error_message.map(|m| m.to_string())))
            .collect())
    }

    /// Deletes the ACLs matching any of `filters`; per filter, the error code and message, and
    /// the ACLs it removed.
    pub async fn delete_acls(
        &mut self,
        filters: &[AclFilter],
    ) -> Result<Vec<(i16, Option<String>, Vec<Acl>)>, ClientError> {
        let addr = self.any_addr();
        let (_, resp) = self
            .send(&addr, |_| {
                let mut r = DeleteAclsRequest::default();
                r.filters = filters
                    .iter()
                    .map(|f| {
                        let mut d = DeleteAclsFilter::default();
                        d.resource_type_filter = f.resource_type;
                        d.resource_name_filter = f.resource_name.as_deref().map(sb);
                        d.pattern_type_filter = f.pattern_type;
                        d.principal_filter = f.principal.as_deref().map(sb);
                        d.host_filter = f.host.as_deref().map(sb);
                        d.operation = f.operation;
                        d.permission_type = f.permission;
                        d
                    })
                    .collect();
                r
            })
            .await?;
        Ok(resp
            .filter_results
            .into_iter()
            .map(|fr| {
                let removed = fr
                    .matching_acls
                    .into_iter()
                    .map(|m| Acl {
                        resource_type: m.resource_type,
                        resource_name: m.resource_name.to_string(),
                        pattern_type: m.pattern_type,
                        principal: m.principal.to_string(),
                        host: m.host.to_string(),
                        operation: m.operation,
                        permission: m.permission_type,
                    })
                    .collect();
                (
                    fr.error_code,
                    fr.error_message.map(|m| m.to_string()),
                    removed,
                )
            })
            .collect())
    }
}
