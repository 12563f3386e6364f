//! The `waterline` command: one binary for the broker and the operator tools.

mod dashboard;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use waterline_admin::cli::{AclsArgs, GroupsArgs, LagArgs, OffsetsArgs, TopicsArgs, UsersArgs};
use waterline_admin::exporter::ExporterArgs;

/// Kafka offset management and checkpointing: a Kafka-protocol broker and the tools to inspect
/// and move consumer group offsets safely.
#[derive(Debug, Parser)]
#[command(name = "waterline", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a single-node broker that speaks the Kafka wire protocol.
    #[command(after_long_help = serve::config_help())]
    Serve(Box<serve::ServeArgs>),
    /// List, describe and delete consumer groups (kafka-consumer-groups parity, with time lag).
    Groups(GroupsArgs),
    /// Reset (also from a file or backup: reset --from-file), export and delete groups'
    /// committed offsets, with dry runs, backups and plans.
    Offsets(OffsetsArgs),
    /// Lag in records and time per group and partition, with a health status.
    Lag(LagArgs),
    /// List, describe, create, delete and alter topics (kafka-topics / kafka-configs parity).
    Topics(TopicsArgs),
    /// Poll a Kafka cluster and serve Prometheus metrics with kafka_exporter's names, plus
    /// time lag and lag status (/metrics, /healthz, /readyz).
    Exporter(ExporterArgs),
    /// List, set and delete SCRAM users (Describe/AlterUserScramCredentials).
    Users(UsersArgs),
    /// List, add and remove ACLs (kafka-acls parity: Describe/Create/DeleteAcls).
    Acls(AclsArgs),
    /// Print a shell completion script: `source <(waterline completions bash)`, or save it
    /// where your shell loads completions from.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return argument_error(err),
    };
    match cli.command {
        Command::Serve(args) => match serve::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("waterline: error: {}", chain_text(&err));
                ExitCode::from(1)
            }
        },
        Command::Groups(args) => tool(waterline_admin::cli::run_groups(args)),
        Command::Offsets(args) => tool(waterline_admin::cli::run_offsets(args)),
        Command::Lag(args) => tool(waterline_admin::cli::run_lag(args)),
        Command::Topics(args) => tool(waterline_admin::cli::run_topics(args)),
        Command::Exporter(args) => tool(waterline_admin::exporter::run(args)),
        Command::Users(args) => tool(waterline_admin::cli::run_users(args)),
        Command::Acls(args) => tool(waterline_admin::cli::run_acls(args)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "waterline", &mut script);
            match std::io::stdout().write_all(&script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("waterline: error: writing the completion script: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The error and its causes on one line, `a: b: c`. A cause whose text the line already holds
/// is left out: error types that print their source in their own message (`"{path}:
/// {source}"`) and also return it as `source()` would otherwise show it twice.
fn chain_text(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Help and version go to stdout as clap prints them (exit 0). A usage error is one line on
/// stderr naming the problem (clap's rendering adds a blank line and a hint), exit code 2.
fn argument_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = err.render().to_string();
    eprintln!("waterline: error: {} (see --help)", one_line(&rendered));
    ExitCode::from(2)
}

/// The first line of a clap error; a line ending in `:` (e.g. "the following required
/// arguments were not provided:") takes the indented lines that follow it, so the missing
/// flags are named.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().filter(|l| !l.trim().is_empty());
    let mut line = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    if line.ends_with(':') {
        let items: Vec<&str> = lines
            .take_while(|l| l.starts_with(' '))
            .map(str::trim)
            .collect();
        line = format!("{line} {}", items.join(", "));
    }
    line
}

/// Runs one operator command on a small single-threaded runtime: these commands make a handful
/// of requests and exit, so start-up cost matters more than parallelism.
fn tool(command: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(command),
        Err(err) => {
            eprintln!("waterline: error: starting the async runtime: {err}");
            ExitCode::from(1)
        }
    }
}
