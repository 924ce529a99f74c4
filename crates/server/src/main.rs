//! The `strata` binary: `strata serve` runs a node; `strata topic` manages topics on a running
//! node; `strata bench` measures Strata's parts.

mod admin;
mod cli;
mod client;
mod config;
mod serve;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Strata: one message platform over pluggable storage.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
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
    /// Measure Strata's parts on this machine.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Debug, Subcommand)]
enum MqttCommand {
    /// Read a password from standard input (one line) and print its argon2 hash for the
    /// `password` field of an MQTT auth file.
    Passwd,
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// One storage engine configuration against raw file I/O; prints one JSON line.
    Storage(Box<strata_bench::storage::StorageArgs>),
    /// A running node through a Kafka client, against its storage engine; prints one JSON line.
    Kafka(strata_bench::kafka::KafkaArgs),
    /// A running node over MQTT, and a mosquitto started for comparison; prints JSON lines.
    Mqtt(strata_bench::mqtt::MqttArgs),
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
        Command::Bench {
            target: BenchTarget::Storage(args),
        } => {
            init_logs("warn");
            strata_bench::storage::run(*args).map(drop)
        }
        Command::Bench {
            target: BenchTarget::Kafka(args),
        } => {
            init_logs("warn");
            strata_bench::kafka::run(args).map(drop)
        }
        Command::Bench {
            target: BenchTarget::Mqtt(args),
        } => {
            init_logs("warn");
            strata_bench::mqtt::run(args).map(drop)
        }
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
