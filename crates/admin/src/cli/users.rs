//! `waterline users list | set | delete`: SCRAM users through Kafka's
//! DescribeUserScramCredentials and AlterUserScramCredentials (as `kafka-configs
//! --entity-type users --alter --add-config 'SCRAM-SHA-256=[password=...]'` does).
//!
//! The password of `set` is read from the `WATERLINE_USER_PASSWORD` environment variable, else
//! from the first line of standard input, never from a flag (flags show in `ps`).

use waterline_sasl::ScramMechanism;

use super::{CliError, ConnectionArgs, Out, finish};
use crate::client::ScramChange;
use crate::codes;

/// `waterline users ...`.
#[derive(Debug, clap::Args)]
pub struct UsersArgs {
    /// The users subcommand.
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// Users subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// List users and their SCRAM mechanisms (all users, or those named).
    List {
        /// Connection options.
        #[command(flatten)]
        conn: ConnectionArgs,
        /// User to show; repeatable. Without it, every user.
        #[arg(long, value_name = "NAME")]
        user: Vec<String>,
    },
    /// Create a user or change its password (password from WATERLINE_USER_PASSWORD, else the
    /// first line of standard input).
    Set {
        /// Connection options.
        #[command(flatten)]
        conn: ConnectionArgs,
        /// The user.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Mechanisms to set, comma-separated.
        #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "SCRAM-SHA-256,SCRAM-SHA-512", value_parser = parse_mechanism)]
        mechanism: Vec<ScramMechanism>,
        /// PBKDF2 iterations (4096..=16384).
        #[arg(long, default_value_t = 4096, value_parser = parse_iterations)]
        iterations: u32,
    },
    /// Delete a user's credentials (every mechanism it has, or those named).
    Delete {
        /// Connection options.
        #[command(flatten)]
        conn: ConnectionArgs,
        /// The user.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Mechanisms to delete, comma-separated [default: every one the user has]
        #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = parse_mechanism)]
        mechanism: Vec<ScramMechanism>,
    },
}

fn parse_mechanism(s: &str) -> Result<ScramMechanism, String> {
    waterline_sasl::Mechanism::parse(s)
        .and_then(|m| m.scram())
        .ok_or_else(|| format!("`{s}`: expected SCRAM-SHA-256 or SCRAM-SHA-512"))
}

fn parse_iterations(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("`{s}`: expected a whole number"))?;
    ScramMechanism::Sha256
        .check_iterations(n)
        .map(|()| n)
        .map_err(|e| e.to_string())
}

fn password() -> Result<String, CliError> {
    if let Ok(p) = std::env::var("WATERLINE_USER_PASSWORD")
        && !p.is_empty()
    {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::Usage(format!("reading the password from standard input: {e}")))?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        return Err(CliError::Usage(
            "no password: set WATERLINE_USER_PASSWORD or give it on standard input".into(),
        ));
    }
    Ok(p)
}

/// Runs a users command; returns the exit code.
pub async fn run_users_with(args: UsersArgs, out: Out<'_>, err: Out<'_>) -> u8 {
    let result = run(args, out).await;
    finish("users", result, err)
}

fn check_results(results: Vec<(String, i16, Option<String>)>) -> Result<(), CliError> {
    let failed: Vec<String> = results
        .into_iter()
        .filter(|(_, code, _)| *code != codes::NONE)
        .map(|(user, code, msg)| {
            format!(
                "{user}: {}{}",
                codes::describe(code),
                msg.map(|m| format!(" ({m})")).unwrap_or_default()
            )
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(failed.join("; ")))
    }
}

async fn run(args: UsersArgs, out: Out<'_>) -> Result<(), CliError> {
    match args.command {
        UsersCommand::List { conn, user } => {
            let mut client = conn.connect().await?;
            let users = client.describe_scram_users(&user).await?;
            writeln!(out, "{:<32} MECHANISMS", "USER").map_err(io)?;
            let mut missing = Vec::new();
            for u in users {
                if u.error_code != codes::NONE {
                    missing.push(format!("{}: {}", u.name, codes::describe(u.error_code)));
                    continue;
                }
                let ms: Vec<String> = u
                    .credentials
                    .iter()
                    .map(|(m, i)| format!("{}(iterations={i})", m.name()))
                    .collect();
                writeln!(out, "{:<32} {}", u.name, ms.join(",")).map_err(io)?;
            }
            if !missing.is_empty() {
                return Err(CliError::Failed(missing.join("; ")));
            }
            Ok(())
        }
        UsersCommand::Set {
            conn,
            user,
            mechanism,
            iterations,
        } => {
            let password = password()?;
            let mut client = conn.connect().await?;
            let changes: Vec<ScramChange> = mechanism
                .iter()
                .map(|m| ScramChange::Set {
                    user: user.clone(),
                    mechanism: *m,
                    iterations,
                    password: password.clone(),
                })
                .collect();
            check_results(client.alter_scram_users(&changes).await?)?;
            let names: Vec<&str> = mechanism.iter().map(|m| m.name()).collect();
            writeln!(out, "set {} for user {user}", names.join(", ")).map_err(io)
        }
        UsersCommand::Delete {
            conn,
            user,
            mechanism,
        } => {
            let mut client = conn.connect().await?;
            let mechanisms = if mechanism.is_empty() {
                let described = client
                    .describe_scram_users(std::slice::from_ref(&user))
                    .await?;
                let u = described.into_iter().find(|u| u.name == user);
                match u {
                    Some(u) if u.error_code == codes::NONE => {
                        u.credentials.iter().map(|(m, _)| *m).collect()
                    }
                    _ => return Err(CliError::Failed(format!("user '{user}' does not exist"))),
                }
            } else {
                mechanism
            };
            let changes: Vec<ScramChange> = mechanisms
                .iter()
                .map(|m| ScramChange::Delete {
                    user: user.clone(),
                    mechanism: *m,
                })
                .collect();
            check_results(client.alter_scram_users(&changes).await?)?;
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            writeln!(out, "deleted {} for user {user}", names.join(", ")).map_err(io)
        }
    }
}

fn io(e: std::io::Error) -> CliError {
    CliError::Failed(format!("writing output: {e}"))
}
