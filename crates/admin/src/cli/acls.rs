//! `waterline acls list | add | remove`: ACLs through Kafka's DescribeAcls, CreateAcls and
//! DeleteAcls, with the options of Kafka's `kafka-acls.sh` (`--allow-principal`,
//! `--deny-principal`, `--operation`, `--topic`, `--group`, `--cluster`, `--transactional-id`,
//! `--resource-pattern-type`, `--host`).

use super::{CliError, ConnectionArgs, Out, finish};
use crate::client::acls::{
    ANY, Acl, AclFilter, MATCH, OPERATIONS, PATTERN_TYPES, PERMISSIONS, RESOURCE_TYPES, code_of,
    name_of,
};
use crate::codes;

/// `waterline acls ...`.
#[derive(Debug, clap::Args)]
pub struct AclsArgs {
    /// The acls subcommand.
    #[command(subcommand)]
    pub command: AclsCommand,
}

/// The resources an ACL command names.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ResourceArgs {
    /// Topic (or topic prefix); repeatable. `*` is every topic.
    #[arg(long, value_name = "NAME")]
    pub topic: Vec<String>,
    /// Consumer group (or prefix); repeatable. `*` is every group.
    #[arg(long, value_name = "NAME")]
    pub group: Vec<String>,
    /// The cluster (CREATE topics, ALTER ACLs and users, IDEMPOTENT_WRITE, ...).
    #[arg(long)]
    pub cluster: bool,
    /// Transactional id (or prefix); repeatable.
    #[arg(long, value_name = "ID")]
    pub transactional_id: Vec<String>,
    /// How resource names match: literal or prefixed (add, remove), also any or match (list,
    /// remove) [default: literal for add, any otherwise]
    #[arg(long, value_name = "TYPE", value_parser = parse_pattern)]
    pub resource_pattern_type: Option<i8>,
}

/// Principals, operations and host of an add or remove.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BindingArgs {
    /// Principal allowed (`User:<name>`, `User:*` for everyone); repeatable.
    #[arg(long, value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub allow_principal: Vec<String>,
    /// Principal denied; repeatable. A DENY wins over any ALLOW.
    #[arg(long, value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub deny_principal: Vec<String>,
    /// Operation: all, read, write, create, delete, alter, describe, cluster-action,
    /// describe-configs, alter-configs, idempotent-write; repeatable.
    #[arg(long, value_name = "OP", value_parser = parse_operation)]
    pub operation: Vec<i8>,
    /// Client IP address the ACLs apply to [default: * (any host)]. kafka-acls' `--allow-host`
    /// and `--deny-host` are accepted as its aliases (one host for every ACL of the command).
    #[arg(long, value_name = "HOST", visible_aliases = ["allow-host", "deny-host"])]
    pub host: Option<String>,
}

/// Acls subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AclsCommand {
    /// List ACLs (all, or those of the named resources and principal).
    List {
        /// Connection options.
        #[command(flatten)]
        conn: ConnectionArgs,
        /// Resources to list (none: every resource).
        #[command(flatten)]
        resource: ResourceArgs,
        /// Only ACLs of this principal.
        #[arg(long, value_name = "PRINCIPAL", value_parser = parse_principal)]
        principal: Option<String>,
    },
    /// Add ACLs: every principal x operation x resource given.
    Add {
        /// Connection options.
        #[command(flatten)]
        conn: ConnectionArgs,
        /// Resources.
        #[command(flatten)]
        resource: ResourceArgs,
        /// Principals, operations, host.
        #[command(flatten)]
        binding: BindingArgs,
    },
    /// Remove ACLs of the named resources (only those of the principals, operations and host
    /// given, if any).
    Remove {
        /// Connection options.
        #[command(flatten)]
        conn: ConnectionArgs,
        /// Resources.
        #[command(flatten)]
        resource: ResourceArgs,
        /// Principals, operations, host.
        #[command(flatten)]
        binding: BindingArgs,
    },
}

fn parse_pattern(s: &str) -> Result<i8, String> {
    code_of(&PATTERN_TYPES, s)
        .ok_or_else(|| format!("`{s}`: expected literal, prefixed, any or match"))
}

fn parse_operation(s: &str) -> Result<i8, String> {
    code_of(&OPERATIONS, s).ok_or_else(|| {
        let names: Vec<String> = OPERATIONS
            .iter()
            .map(|(n, _)| n.to_lowercase().replace('_', "-"))
            .collect();
        format!("`{s}`: expected one of {}", names.join(", "))
    })
}

fn parse_principal(s: &str) -> Result<String, String> {
    match s.strip_prefix("User:") {
        Some(name) if !name.is_empty() => Ok(s.to_string()),
        _ => Err(format!("`{s}`: expected User:<name> or User:*")),
    }
}

/// (type code, name) of every resource named.
fn resources(r: &ResourceArgs) -> Vec<(i8, String)> {
    let code = |n: &str| code_of(&RESOURCE_TYPES, n).unwrap_or(ANY);
    let mut out = Vec::new();
    out.extend(r.topic.iter().map(|t| (code("TOPIC"), t.clone())));
    out.extend(r.group.iter().map(|g| (code("GROUP"), g.clone())));
    if r.cluster {
        out.push((code("CLUSTER"), "kafka-cluster".to_string()));
    }
    out.extend(
        r.transactional_id
            .iter()
            .map(|t| (code("TRANSACTIONAL_ID"), t.clone())),
    );
    out
}

/// (principal, permission code) of every principal given.
fn principals(b: &BindingArgs) -> Vec<(String, i8)> {
    let allow = code_of(&PERMISSIONS, "ALLOW").unwrap_or(ANY);
    let deny = code_of(&PERMISSIONS, "DENY").unwrap_or(ANY);
    b.allow_principal
        .iter()
        .map(|p| (p.clone(), allow))
        .chain(b.deny_principal.iter().map(|p| (p.clone(), deny)))
        .collect()
}

fn check_host(host: &Option<String>) -> Result<(), CliError> {
    match host.as_deref() {
        None | Some("*") => Ok(()),
        Some(h) if h.parse::<std::net::IpAddr>().is_ok() => Ok(()),
        Some(h) => Err(CliError::Usage(format!(
            "--host `{h}`: expected * or an IP address"
        ))),
    }
}

/// Runs an acls command; returns the exit code.
pub async fn run_acls_with(args: AclsArgs, out: Out<'_>, err: Out<'_>) -> u8 {
    let result = run(args, out).await;
    finish("acls", result, err)
}

fn print(out: Out<'_>, acls: &[Acl]) -> Result<(), CliError> {
    writeln!(
        out,
        "{:<40} {:<9} {:<24} {:<15} {:<16} PERMISSION",
        "RESOURCE", "PATTERN", "PRINCIPAL", "HOST", "OPERATION"
    )
    .map_err(io)?;
    for a in acls {
        writeln!(
            out,
            "{:<40} {:<9} {:<24} {:<15} {:<16} {}",
            format!(
                "{}:{}",
                name_of(&RESOURCE_TYPES, a.resource_type),
                a.resource_name
            ),
            name_of(&PATTERN_TYPES, a.pattern_type),
            a.principal,
            a.host,
            name_of(&OPERATIONS, a.operation),
            name_of(&PERMISSIONS, a.permission)
        )
        .map_err(io)?;
    }
    Ok(())
}

async fn run(args: AclsArgs, out: Out<'_>) -> Result<(), CliError> {
    match args.command {
        AclsCommand::List {
            conn,
            resource,
            principal,
        } => {
            let pattern = resource.resource_pattern_type.unwrap_or(ANY);
            let mut filters: Vec<AclFilter> = resources(&resource)
                .into_iter()
                .map(|(rt, name)| AclFilter {
                    resource_type: rt,
                    resource_name: Some(name),
                    pattern_type: pattern,
                    principal: principal.clone(),
                    host: None,
                    operation: ANY,
                    permission: ANY,
                })
                .collect();
            if filters.is_empty() {
                filters.push(AclFilter {
                    resource_type: ANY,
                    resource_name: None,
                    pattern_type: pattern,
                    principal,
                    host: None,
                    operation: ANY,
                    permission: ANY,
                });
            }
            let mut client = conn.connect().await?;
            let mut all = Vec::new();
            for f in &filters {
                for a in client.describe_acls(f).await? {
                    if !all.contains(&a) {
                        all.push(a);
                    }
                }
            }
            print(out, &all)
        }
        AclsCommand::Add {
            conn,
            resource,
            binding,
        } => {
            let pattern = resource
                .resource_pattern_type
                .unwrap_or(code_of(&PATTERN_TYPES, "LITERAL").unwrap_or(ANY));
            if pattern == ANY || pattern == MATCH {
                return Err(CliError::Usage(
                    "add: --resource-pattern-type must be literal or prefixed".into(),
                ));
            }
            let res = resources(&resource);
            if res.is_empty() {
                return Err(CliError::Usage(
                    "add: name a resource (--topic, --group, --cluster or --transactional-id)"
                        .into(),
                ));
            }
            let who = principals(&binding);
            if who.is_empty() {
                return Err(CliError::Usage(
                    "add: give --allow-principal or --deny-principal".into(),
                ));
            }
            if binding.operation.is_empty() {
                return Err(CliError::Usage("add: give at least one --operation".into()));
            }
            check_host(&binding.host)?;
            let host = binding.host.clone().unwrap_or_else(|| "*".into());
            let mut acls = Vec::new();
            for (rt, name) in &res {
                for (p, perm) in &who {
                    for op in &binding.operation {
                        acls.push(Acl {
                            resource_type: *rt,
                            resource_name: name.clone(),
                            pattern_type: pattern,
                            principal: p.clone(),
                            host: host.clone(),
                            operation: *op,
                            permission: *perm,
                        });
                    }
                }
            }
            let mut client = conn.connect().await?;
            let results = client.create_acls(&acls).await?;
            let failed: Vec<String> = acls
                .iter()
                .zip(&results)
                .filter(|(_, (code, _))| *code != codes::NONE)
                .map(|(a, (code, msg))| {
                    format!(
                        "{}:{} {} {}: {}{}",
                        name_of(&RESOURCE_TYPES, a.resource_type),
                        a.resource_name,
                        a.principal,
                        name_of(&OPERATIONS, a.operation),
                        codes::describe(*code),
                        msg.as_ref().map(|m| format!(" ({m})")).unwrap_or_default()
                    )
                })
                .collect();
            if !failed.is_empty() {
                return Err(CliError::Failed(failed.join("; ")));
            }
            writeln!(out, "added {} ACL(s)", acls.len()).map_err(io)?;
            print(out, &acls)
        }
        AclsCommand::Remove {
            conn,
            resource,
            binding,
        } => {
            let pattern = resource
                .resource_pattern_type
                .unwrap_or(code_of(&PATTERN_TYPES, "LITERAL").unwrap_or(ANY));
            let res = resources(&resource);
            if res.is_empty() {
                return Err(CliError::Usage(
                    "remove: name a resource (--topic, --group, --cluster or --transactional-id)"
                        .into(),
                ));
            }
            check_host(&binding.host)?;
            // No principal: every principal's ACLs; no operation: every operation.
            let who: Vec<(Option<String>, i8)> = {
                let p = principals(&binding);
                if p.is_empty() {
                    vec![(None, ANY)]
                } else {
                    p.into_iter().map(|(p, perm)| (Some(p), perm)).collect()
                }
            };
            let ops = if binding.operation.is_empty() {
                vec![ANY]
            } else {
                binding.operation.clone()
            };
            let mut filters = Vec::new();
            for (rt, name) in &res {
                for (p, perm) in &who {
                    for op in &ops {
                        filters.push(AclFilter {
                            resource_type: *rt,
                            resource_name: Some(name.clone()),
                            pattern_type: pattern,
                            principal: p.clone(),
                            host: binding.host.clone(),
                            operation: *op,
                            permission: *perm,
                        });
                    }
                }
            }
            let mut client = conn.connect().await?;
            let results = client.delete_acls(&filters).await?;
            let mut removed = Vec::new();
            let mut failed = Vec::new();
            for (code, msg, acls) in results {
                if code != codes::NONE {
                    failed.push(format!(
                        "{}{}",
                        codes::describe(code),
                        msg.map(|m| format!(" ({m})")).unwrap_or_default()
                    ));
                }
                for a in acls {
                    if !removed.contains(&a) {
                        removed.push(a);
                    }
                }
            }
            if !failed.is_empty() {
                return Err(CliError::Failed(failed.join("; ")));
            }
            writeln!(out, "removed {} ACL(s)", removed.len()).map_err(io)?;
            print(out, &removed)
        }
    }
}

fn io(e: std::io::Error) -> CliError {
    CliError::Failed(format!("writing output: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_parsing() {
        assert_eq!(parse_operation("describe-configs"), Ok(10));
        assert_eq!(parse_operation("READ"), Ok(3));
        // kafka-acls' spellings.
        assert_eq!(parse_operation("All"), parse_operation("all"));
        assert_eq!(parse_operation("IdempotentWrite"), Ok(12));
        assert_eq!(parse_operation("DescribeConfigs"), Ok(10));
        assert!(
            parse_operation("fly")
                .unwrap_err()
                .contains("idempotent-write")
        );
        assert_eq!(parse_pattern("prefixed"), Ok(4));
        assert!(parse_pattern("regex").is_err());
        assert!(parse_principal("alice").is_err());
        assert!(parse_principal("User:").is_err());
        assert_eq!(parse_principal("User:*").unwrap(), "User:*");
        assert!(check_host(&Some("example.com".into())).is_err());
        assert!(check_host(&Some("10.1.2.3".into())).is_ok());
        let r = ResourceArgs {
            topic: vec!["t".into()],
            cluster: true,
            ..Default::default()
        };
        assert_eq!(
            resources(&r),
            vec![(2, "t".to_string()), (4, "kafka-cluster".to_string())]
        );
    }
}
