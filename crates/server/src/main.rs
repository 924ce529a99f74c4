//! The `strata` binary: `strata serve` runs a node; `strata topic` manages topics on a running
//! node; `strata mqtt passwd` hashes MQTT passwords. The benchmarks are the separate
//! `strata-bench` binary, so that a deployed broker carries no load generator.

mod admin;
mod cli;
mod client;
mod config;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// The version and the git commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("STRATA_GIT_COMMIT"),
    ")"
);

/// Strata: one message platform over pluggable storage.
#[derive(Debug, Parser)]
#[command(name = "strata", version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node: Kafka and MQTT listeners and the admin API, embedded storage, no external
    /// service.
    Serve(Box<config::ServeArgs>),
    /// Create, list, describe, delete and alter topics on a running node.
    Topic(cli::TopicArgs),
    /// MQTT tools.
    Mqtt {
        #[command(subcommand)]
        command: MqttCommand,
    },
}

#[derive(Debug, Subcommand)]
enum MqttCommand {
    /// Read a password from standard input (one line) and print its argon2 hash for the
    /// `password` field of an MQTT auth file.
    Passwd,
}

fn init_logs(filter: &str) {
    // Logs go to stderr so that stdout carries only results. RUST_LOG overrides the level.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => config::ServeConfig::resolve(&args).and_then(|config| {
            init_logs(&config.log_level);
            runtime()?.block_on(serve::run(config))
        }),
        Command::Topic(args) => {
            init_logs("warn");
            runtime().and_then(|rt| rt.block_on(cli::run(args)))
        }
        Command::Mqtt {
            command: MqttCommand::Passwd,
        } => passwd(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn passwd() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        anyhow::bail!("empty password on standard input");
    }
    println!("{}", strata_mqtt::hash_password(password)?);
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
