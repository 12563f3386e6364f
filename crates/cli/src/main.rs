//! The `waterline` command: one binary for the broker and the operator tools.

mod serve;

use clap::{Parser, Subcommand};

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
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("waterline: error: {err:#}");
            std::process::ExitCode::from(1)
        }
    }
}
