//! The `strata` binary. Today it runs benchmarks; `strata serve` (the Kafka and MQTT front ends
//! over one storage layer) will join it as another subcommand.

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
    /// Measure Strata's parts on this machine.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// One storage engine configuration against raw file I/O; prints one JSON line.
    Storage(strata_bench::storage::StorageArgs),
}

fn main() -> ExitCode {
    // Logs go to stderr so that stdout carries only results. RUST_LOG overrides the level.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench {
            target: BenchTarget::Storage(args),
        } => strata_bench::storage::run(args).map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}
