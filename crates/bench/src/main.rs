//! `strata-bench`: Strata's benchmarks as their own binary, so that the broker that people
//! deploy carries no load generator (and no C Kafka client).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Strata's benchmarks: each prints JSON lines with its figures beside a physical reference
/// measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "strata-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// One storage engine configuration against raw file I/O; prints one JSON line.
    Storage(Box<strata_bench::storage::StorageArgs>),
    /// A running node through a Kafka client, against its storage engine; prints one JSON line.
    Kafka(strata_bench::kafka::KafkaArgs),
    /// A running node over MQTT, and a mosquitto started for comparison; prints JSON lines.
    Mqtt(strata_bench::mqtt::MqttArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr so that stdout carries only results. RUST_LOG overrides the level.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.target {
        Target::Storage(args) => strata_bench::storage::run(*args).map(drop),
        Target::Kafka(args) => strata_bench::kafka::run(args).map(drop),
        Target::Mqtt(args) => strata_bench::mqtt::run(args).map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
