//! Kafka's ACL model and the authorizer's decision, with no I/O.
//!
//! An [`AclBinding`] says: `principal` from `host` is ALLOWed or DENYed `operation` on the
//! resources of `resource_type` whose name equals `resource_name` (LITERAL; `*` matches every
//! name) or starts with it (PREFIXED). [`Authorizer::allowed`] decides one request the way
//! Kafka's `AclAuthorizer`/`StandardAuthorizer` does:
//!
//! 1. a super user is allowed everything;
//! 2. a matching DENY for the operation (or for ALL) refuses, whatever else matches;
//! 3. a matching ALLOW for the operation, for ALL, or for an operation that implies it allows:
//!    READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS;
//! 4. nothing matching refuses (Kafka's `allow.everyone.if.no.acl.found=false`).
//!
//! Implications apply to ALLOW only: a DENY of READ does not deny DESCRIBE (as in Kafka).
//! The wire codes below are Kafka's (`ResourceType`, `PatternType`, `AclOperation`,
//! `AclPermissionType`).

/// The resources an ACL can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// The cluster (name `kafka-cluster`).
    Cluster,
    /// A transactional id.
    TransactionalId,
}

/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal resource name that matches every name.
pub const WILDCARD: &str = "*";
/// The principal that matches every principal.
pub const ANY_PRINCIPAL: &str = "User:*";

impl ResourceType {
    /// Every resource type, in wire order.
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
    ];

    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    /// From Kafka's wire code (UNKNOWN, ANY and unsupported types are `None`).
    pub fn from_code(c: i8) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|t| t.code() == c)
    }

    /// Kafka's name (`TOPIC`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "TOPIC",
            ResourceType::Group => "GROUP",
            ResourceType::Cluster => "CLUSTER",
            ResourceType::TransactionalId => "TRANSACTIONAL_ID",
        }
    }

    /// From Kafka's name, case-insensitively.
    pub fn parse(s: &str) -> Option<ResourceType> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
    }
}

/// How an ACL's resource name is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternType {
    /// The name equals the resource's (or is `*`).
    Literal,
    /// The resource's name starts with the name.
    Prefixed,
}

impl PatternType {
    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    /// From Kafka's wire code (UNKNOWN, ANY and MATCH are `None`: they are filters only).
    pub fn from_code(c: i8) -> Option<PatternType> {
        [PatternType::Literal, PatternType::Prefixed]
            .into_iter()
            .find(|p| p.code() == c)
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            PatternType::Literal => "LITERAL",
            PatternType::Prefixed => "PREFIXED",
        }
    }

    /// From Kafka's name, case-insensitively.
    pub fn parse(s: &str) -> Option<PatternType> {
        [PatternType::Literal, PatternType::Prefixed]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }
}

/// What a request does to a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Every operation.
    All,
    /// Read records or a group's offsets.
    Read,
    /// Write records.
    Write,
    /// Create topics.
    Create,
    /// Delete topics, records or groups.
    Delete,
    /// Change partitions or ACLs.
    Alter,
    /// See that the resource exists.
    Describe,
    /// Broker-to-broker actions.
    ClusterAction,
    /// Read configuration.
    DescribeConfigs,
    /// Change configuration.
    AlterConfigs,
    /// Idempotent produce.
    IdempotentWrite,
}

impl Operation {
    /// Every operation, in wire order.
    pub const ALL_OPS: [Operation; 11] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];

    /// Kafka's wire code (ALL is 2, ..., IDEMPOTENT_WRITE is 12).
    pub fn code(self) -> i8 {
        Self::ALL_OPS.iter().position(|o| *o == self).unwrap_or(0) as i8 + 2
    }

    /// From Kafka's wire code (UNKNOWN, ANY and token operations are `None`).
    pub fn from_code(c: i8) -> Option<Operation> {
        usize::try_from(c - 2)
            .ok()
            .and_then(|i| Self::ALL_OPS.get(i).copied())
    }

    /// Kafka's name (`READ`, `DESCRIBE_CONFIGS`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Operation::All => "ALL",
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Delete => "DELETE",
            Operation::Alter => "ALTER",
            Operation::Describe => "DESCRIBE",
            Operation::ClusterAction => "CLUSTER_ACTION",
            Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
            Operation::AlterConfigs => "ALTER_CONFIGS",
            Operation::IdempotentWrite => "IDEMPOTENT_WRITE",
        }
    }

    /// From Kafka's name, case-insensitively; `-` and `_` are the same (`describe-configs`).
    pub fn parse(s: &str) -> Option<Operation> {
        let s = s.replace('-', "_");
        Self::ALL_OPS
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(&s))
    }

    /// Whether an ALLOW of `self` allows `op`.
    pub fn allows(self, op: Operation) -> bool {
        use Operation::*;
        self == op
            || self == All
            || (op == Describe && matches!(self, Read | Write | Delete | Alter))
            || (op == DescribeConfigs && self == AlterConfigs)
    }
}

/// ALLOW or DENY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Refuses, whatever ALLOWs match.
    Deny,
    /// Allows, unless a DENY matches.
    Allow,
}

impl Permission {
    /// Kafka's wire code.
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    /// From Kafka's wire code.
    pub fn from_code(c: i8) -> Option<Permission> {
        match c {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Deny => "DENY",
            Permission::Allow => "ALLOW",
        }
    }

    /// From Kafka's name, case-insensitively.
    pub fn parse(s: &str) -> Option<Permission> {
        [Permission::Deny, Permission::Allow]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
    }
}

/// One ACL. Field order is the store's sort order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    /// What kind of resource.
    pub resource_type: ResourceType,
    /// The resource name, a prefix of names, or `*`.
    pub resource_name: String,
    /// How `resource_name` is matched.
    pub pattern_type: PatternType,
    /// `User:<name>`, or `User:*` for everyone.
    pub principal: String,
    /// The client's IP address, or `*` for any.
    pub host: String,
    /// The operation allowed or denied.
    pub operation: Operation,
    /// ALLOW or DENY.
    pub permission: Permission,
}

/// Why an ACL cannot be created (answered as INVALID_REQUEST with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAcl {
    /// The resource type code is UNKNOWN, ANY or a type this broker does not serve.
    #[error("unsupported resource type {0}")]
    ResourceType(i8),
    /// The pattern type code is not LITERAL or PREFIXED.
    #[error("pattern type must be LITERAL or PREFIXED, not {0}")]
    PatternType(i8),
    /// The operation code is UNKNOWN, ANY or unsupported.
    #[error("unsupported operation {0}")]
    Operation(i8),
    /// The permission code is not ALLOW or DENY.
    #[error("permission must be ALLOW or DENY, not {0}")]
    Permission(i8),
    /// The resource name is empty or longer than 1024 bytes.
    #[error("the resource name must be 1 to 1024 bytes")]
    ResourceName,
    /// A CLUSTER ACL names something other than `kafka-cluster`.
    #[error("a CLUSTER resource is named `kafka-cluster`")]
    ClusterName,
    /// The principal is not `User:<name>` (1 to 255 characters, no control characters).
    #[error("the principal must be `User:<name>` or `User:*`")]
    Principal,
    /// The host is neither `*` nor an IP address.
    #[error("the host must be `*` or an IP address")]
    Host,
}

/// The longest resource name an ACL may hold (topic names stop at 249; group and transactional
/// ids have no limit in Kafka, so this only bounds what one request can make us store).
pub const MAX_RESOURCE_NAME: usize = 1024;

impl AclBinding {
    /// Builds a binding from wire codes, checking every field.
    pub fn from_wire(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, InvalidAcl> {
        let resource_type = ResourceType::from_code(resource_type)
            .ok_or(InvalidAcl::ResourceType(resource_type))?;
        let pattern_type =
            PatternType::from_code(pattern_type).ok_or(InvalidAcl::PatternType(pattern_type))?;
        let operation = Operation::from_code(operation).ok_or(InvalidAcl::Operation(operation))?;
        let permission =
            Permission::from_code(permission).ok_or(InvalidAcl::Permission(permission))?;
        let b = AclBinding {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern_type,
            principal: principal.to_string(),
            host: host.to_string(),
            operation,
            permission,
        };
        b.validate()?;
        Ok(b)
    }

    /// Checks the free-text fields.
    pub fn validate(&self) -> Result<(), InvalidAcl> {
        if self.resource_name.is_empty() || self.resource_name.len() > MAX_RESOURCE_NAME {
            return Err(InvalidAcl::ResourceName);
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(InvalidAcl::ClusterName);
        }
        match self.principal.strip_prefix("User:") {
            Some(name) if super::credentials::valid_user_name(name) => {}
            _ => return Err(InvalidAcl::Principal),
        }
        if self.host != WILDCARD && self.host.parse::<std::net::IpAddr>().is_err() {
            return Err(InvalidAcl::Host);
        }
        Ok(())
    }

    /// Whether this ACL's resource pattern covers the resource `name` of type `rt`.
    pub fn covers(&self, rt: ResourceType, name: &str) -> bool {
        self.resource_type == rt
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    /// Whether this ACL applies to `principal` connecting from `host`.
    pub fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == ANY_PRINCIPAL)
            && (self.host == WILDCARD || self.host == host)
    }
}

/// A DescribeAcls / DeleteAcls filter, from wire codes. `None` fields match anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    /// `None`: ANY.
    pub resource_type: Option<ResourceType>,
    /// `None`: any name.
    pub resource_name: Option<String>,
    /// How names are compared.
    pub pattern: PatternFilter,
    /// `None`: any principal.
    pub principal: Option<String>,
    /// `None`: any host.
    pub host: Option<String>,
    /// `None`: ANY.
    pub operation: Option<Operation>,
    /// `None`: ANY.
    pub permission: Option<Permission>,
}

/// A filter's pattern type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternFilter {
    /// ACLs of any pattern type whose name equals the filter's.
    Any,
    /// ACLs that would apply to a resource of the filter's name: literal equal or `*`, or a
    /// prefix of it.
    Match,
    /// ACLs of exactly this pattern type and name.
    Exact(PatternType),
}

/// Why a filter is refused (INVALID_REQUEST).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFilter {
    /// A code is UNKNOWN (0) or out of range.
    #[error("the filter's {0} is unknown")]
    Unknown(&'static str),
}

const ANY_CODE: i8 = 1;
const MATCH_CODE: i8 = 2;

impl AclFilter {
    /// Builds a filter from wire codes: ANY (1) is "any", MATCH (2) for the pattern type.
    pub fn from_wire(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, InvalidFilter> {
        let any = |c: i8| c == ANY_CODE;
        Ok(AclFilter {
            resource_type: if any(resource_type) {
                None
            } else {
                Some(
                    ResourceType::from_code(resource_type)
                        .ok_or(InvalidFilter::Unknown("resource type"))?,
                )
            },
            resource_name: resource_name.map(str::to_string),
            pattern: match pattern_type {
                ANY_CODE => PatternFilter::Any,
                MATCH_CODE => PatternFilter::Match,
                c => PatternFilter::Exact(
                    PatternType::from_code(c).ok_or(InvalidFilter::Unknown("pattern type"))?,
                ),
            },
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: if any(operation) {
                None
            } else {
                Some(Operation::from_code(operation).ok_or(InvalidFilter::Unknown("operation"))?)
            },
            permission: if any(permission) {
                None
            } else {
                Some(
                    Permission::from_code(permission)
                        .ok_or(InvalidFilter::Unknown("permission"))?,
                )
            },
        })
    }

    /// A filter matching every ACL.
    pub fn any() -> AclFilter {
        AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// Whether `b` passes the filter.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let name_ok = match (&self.resource_name, self.pattern) {
            (None, PatternFilter::Exact(p)) => b.pattern_type == p,
            (None, _) => true,
            (Some(n), PatternFilter::Any) => &b.resource_name == n,
            (Some(n), PatternFilter::Exact(p)) => b.pattern_type == p && &b.resource_name == n,
            (Some(n), PatternFilter::Match) => match b.pattern_type {
                PatternType::Literal => &b.resource_name == n || b.resource_name == WILDCARD,
                PatternType::Prefixed => n.starts_with(&b.resource_name),
            },
        };
        name_ok
            && self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.principal.as_ref().is_none_or(|p| p == &b.principal)
            && self.host.as_ref().is_none_or(|h| h == &b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// The decision procedure over one snapshot of ACLs.
#[derive(Clone, Copy)]
pub struct Authorizer<'a> {
    /// The ACLs.
    pub acls: &'a [AclBinding],
    /// Principals allowed everything.
    pub super_users: &'a [String],
}

impl Authorizer<'_> {
    /// Whether `principal` from `host` may do `op` on the resource `name` of type `rt`.
    pub fn allowed(
        &self,
        principal: &str,
        host: &str,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> bool {
        if self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let mut allowed = false;
        for b in self.acls {
            if !b.covers(rt, name) || !b.applies_to(principal, host) {
                continue;
            }
            match b.permission {
                Permission::Deny if b.operation == op || b.operation == Operation::All => {
                    return false;
                }
                Permission::Deny => {}
                Permission::Allow => allowed |= b.operation.allows(op),
            }
        }
        allowed
    }

    /// Whether `principal` may do `op` on at least one resource of type `rt` (Kafka's
    /// `authorizeByResourceType`, used for idempotent produce without IDEMPOTENT_WRITE): some
    /// ALLOW names a resource that no DENY covers.
    pub fn allowed_any(
        &self,
        principal: &str,
        host: &str,
        op: Operation,
        rt: ResourceType,
    ) -> bool {
        if self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let denies: Vec<&AclBinding> = self
            .acls
            .iter()
            .filter(|b| {
                b.permission == Permission::Deny
                    && b.resource_type == rt
                    && b.applies_to(principal, host)
                    && (b.operation == op || b.operation == Operation::All)
            })
            .collect();
        self.acls.iter().any(|a| {
            a.permission == Permission::Allow
                && a.resource_type == rt
                && a.applies_to(principal, host)
                && a.operation.allows(op)
                && !denies
                    .iter()
                    .any(|d| match (d.pattern_type, a.pattern_type) {
                        // A DENY of `*` or a prefix of everything the ALLOW names covers it all.
                        (PatternType::Literal, _) if d.resource_name == WILDCARD => true,
                        (PatternType::Prefixed, _) => a.resource_name.starts_with(&d.resource_name),
                        (PatternType::Literal, PatternType::Literal) => {
                            d.resource_name == a.resource_name
                        }
                        (PatternType::Literal, PatternType::Prefixed) => false,
                    })
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        principal: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    use Operation as O;
    use PatternType::{Literal as L, Prefixed as P};
    use Permission::{Allow as A, Deny as D};
    use ResourceType::{Cluster, Group, Topic};

    /// One row: ACLs, then (principal, op, resource type, name) -> expected decision.
    fn check(acls: &[AclBinding], cases: &[(&str, Operation, ResourceType, &str, bool)]) {
        let supers = vec!["User:root".to_string()];
        let az = Authorizer {
            acls,
            super_users: &supers,
        };
        for (i, (p, op, rt, name, want)) in cases.iter().enumerate() {
            assert_eq!(
                az.allowed(p, "10.0.0.1", *op, *rt, name),
                *want,
                "case {i}: {p} {op:?} {rt:?} {name}"
            );
        }
    }

    #[test]
    fn decisions() {
        let acls = [
            acl(Topic, "orders", L, "User:alice", O::Read, A),
            acl(Topic, "pay-", P, "User:alice", O::Write, A),
            acl(Topic, "pay-secret", L, "User:alice", O::All, D),
            acl(Group, "*", L, "User:*", O::Read, A),
            acl(Topic, "logs", L, "User:bob", O::AlterConfigs, A),
            acl(Topic, "logs", L, "User:bob", O::Read, D),
            acl(Cluster, CLUSTER_NAME, L, "User:ops", O::Alter, A),
        ];
        check(
            &acls,
            &[
                ("User:alice", O::Read, Topic, "orders", true),
                ("User:alice", O::Describe, Topic, "orders", true),
                ("User:alice", O::Write, Topic, "orders", false),
                ("User:alice", O::Write, Topic, "pay-in", true),
                ("User:alice", O::Describe, Topic, "pay-in", true),
                ("User:alice", O::Write, Topic, "pay", false),
                ("User:alice", O::Write, Topic, "pay-secret", false),
                ("User:alice", O::Describe, Topic, "pay-secret", false),
                ("User:carol", O::Read, Group, "g1", true),
                ("User:carol", O::Describe, Group, "g1", true),
                ("User:carol", O::Delete, Group, "g1", false),
                ("User:carol", O::Read, Topic, "orders", false),
                // DENY READ does not deny DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS.
                ("User:bob", O::Read, Topic, "logs", false),
                ("User:bob", O::DescribeConfigs, Topic, "logs", true),
                ("User:bob", O::Describe, Topic, "logs", false),
                ("User:ops", O::Describe, Cluster, CLUSTER_NAME, true),
                ("User:ops", O::Create, Cluster, CLUSTER_NAME, false),
                ("User:root", O::Delete, Topic, "anything", true),
            ],
        );
    }

    #[test]
    fn hosts_and_any_resource() {
        let mut a = acl(Topic, "t", L, "User:u", O::Write, A);
        a.host = "10.0.0.2".into();
        let az = Authorizer {
            acls: std::slice::from_ref(&a),
            super_users: &[],
        };
        assert!(!az.allowed("User:u", "10.0.0.1", O::Write, Topic, "t"));
        assert!(az.allowed("User:u", "10.0.0.2", O::Write, Topic, "t"));
        assert!(az.allowed_any("User:u", "10.0.0.2", O::Write, Topic));
        let acls = [
            acl(Topic, "t", L, "User:u", O::Write, A),
            acl(Topic, "*", L, "User:u", O::Write, D),
        ];
        let az = Authorizer {
            acls: &acls,
            super_users: &[],
        };
        assert!(!az.allowed_any("User:u", "h", O::Write, Topic));
        assert!(!az.allowed_any("User:v", "h", O::Write, Topic));
    }

    #[test]
    fn filters() {
        let acls = [
            acl(Topic, "orders", L, "User:a", O::Read, A),
            acl(Topic, "*", L, "User:a", O::Read, A),
            acl(Topic, "ord", P, "User:a", O::Read, A),
            acl(Group, "orders", L, "User:b", O::Read, D),
        ];
        let count = |f: AclFilter| acls.iter().filter(|b| f.matches(b)).count();
        assert_eq!(count(AclFilter::any()), 4);
        let named = |p| AclFilter {
            resource_name: Some("orders".into()),
            pattern: p,
            ..AclFilter::any()
        };
        assert_eq!(count(named(PatternFilter::Any)), 2);
        assert_eq!(count(named(PatternFilter::Match)), 4);
        assert_eq!(count(named(PatternFilter::Exact(L))), 2);
        assert_eq!(count(named(PatternFilter::Exact(P))), 0);
        assert_eq!(
            count(AclFilter {
                resource_type: Some(Topic),
                permission: Some(A),
                ..named(PatternFilter::Match)
            }),
            3
        );
        let f = AclFilter::from_wire(1, None, 4, None, None, 1, 1).unwrap();
        assert_eq!(f.pattern, PatternFilter::Exact(P));
        assert!(AclFilter::from_wire(0, None, 1, None, None, 1, 1).is_err());
    }

    #[test]
    fn codes_and_validation() {
        for o in Operation::ALL_OPS {
            assert_eq!(Operation::from_code(o.code()), Some(o));
            assert_eq!(Operation::parse(o.name()), Some(o));
        }
        assert_eq!(Operation::IdempotentWrite.code(), 12);
        assert_eq!(Operation::from_code(1), None);
        assert_eq!(
            Operation::parse("describe-configs"),
            Some(O::DescribeConfigs)
        );
        let ok = AclBinding::from_wire(2, "t", 3, "User:a", "*", 3, 3).unwrap();
        assert_eq!(ok.operation, O::Read);
        let bad = |rt, name: &str, pt, principal: &str, host: &str, op, perm| {
            AclBinding::from_wire(rt, name, pt, principal, host, op, perm).unwrap_err()
        };
        assert_eq!(
            bad(1, "t", 3, "User:a", "*", 3, 3),
            InvalidAcl::ResourceType(1)
        );
        assert_eq!(
            bad(2, "t", 2, "User:a", "*", 3, 3),
            InvalidAcl::PatternType(2)
        );
        assert_eq!(
            bad(2, "t", 3, "User:a", "*", 1, 3),
            InvalidAcl::Operation(1)
        );
        assert_eq!(
            bad(2, "t", 3, "User:a", "*", 3, 1),
            InvalidAcl::Permission(1)
        );
        assert_eq!(bad(2, "", 3, "User:a", "*", 3, 3), InvalidAcl::ResourceName);
        assert_eq!(bad(4, "c", 3, "User:a", "*", 3, 3), InvalidAcl::ClusterName);
        assert_eq!(bad(2, "t", 3, "Group:a", "*", 3, 3), InvalidAcl::Principal);
        assert_eq!(bad(2, "t", 3, "User:a", "host", 3, 3), InvalidAcl::Host);
    }

    fn arb_acl() -> impl Strategy<Value = AclBinding> {
        (
            prop::sample::select(vec![Topic, Group, Cluster]),
            prop::sample::select(vec!["a", "ab", "abc", "b", "*"]),
            prop::bool::ANY,
            prop::sample::select(vec!["User:u", "User:v", "User:*"]),
            prop::sample::select(vec!["*", "10.0.0.1", "10.0.0.2"]),
            prop::sample::select(Operation::ALL_OPS.to_vec()),
            prop::bool::ANY,
        )
            .prop_map(|(rt, name, prefixed, p, h, op, allow)| AclBinding {
                resource_type: rt,
                resource_name: name.into(),
                pattern_type: if prefixed { P } else { L },
                principal: p.into(),
                host: h.into(),
                operation: op,
                permission: if allow { A } else { D },
            })
    }

    fn arb_request() -> impl Strategy<Value = (&'static str, Operation, ResourceType, &'static str)>
    {
        (
            prop::sample::select(vec!["User:u", "User:v", "User:w"]),
            prop::sample::select(Operation::ALL_OPS[1..].to_vec()),
            prop::sample::select(vec![Topic, Group, Cluster]),
            prop::sample::select(vec!["a", "ab", "abc", "b", "c"]),
        )
    }

    proptest! {
        #[test]
        fn deny_wins_allow_only_adds_supers_always(
            acls in prop::collection::vec(arb_acl(), 0..12),
            extra in arb_acl(),
            (p, op, rt, name) in arb_request(),
        ) {
            let host = "10.0.0.1";
            let az = Authorizer { acls: &acls, super_users: &[] };
            let before = az.allowed(p, host, op, rt, name);
            // A matching DENY of the operation refuses whatever else is there.
            let mut deny = acls.clone();
            deny.push(AclBinding { resource_type: rt, resource_name: name.into(),
                pattern_type: L, principal: p.into(), host: "*".into(), operation: op,
                permission: D });
            let az_deny = Authorizer { acls: &deny, super_users: &[] };
            prop_assert!(!az_deny.allowed(p, host, op, rt, name));
            // Adding an ALLOW never removes access; adding a DENY never grants it.
            let mut more = acls.clone();
            more.push(extra.clone());
            let az_more = Authorizer { acls: &more, super_users: &[] };
            let after = az_more.allowed(p, host, op, rt, name);
            if extra.permission == A {
                prop_assert!(!before || after);
            } else {
                prop_assert!(before || !after);
            }
            // Super users are allowed whatever the ACLs say.
            let supers = vec![p.to_string()];
            let az_super = Authorizer { acls: &deny, super_users: &supers };
            prop_assert!(az_super.allowed(p, host, op, rt, name));
            // Allowed on a resource implies allowed on some resource of that type.
            if before {
                prop_assert!(az.allowed_any(p, host, op, rt));
            }
        }
    }
}
