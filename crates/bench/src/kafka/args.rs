//! The flags of `strata-bench kafka`, and the checked [`Plan`] they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail, ensure};
use clap::{Args, ValueEnum};
use strata_record::Compression;
use strata_storage::{EngineKind, Model};

use crate::size::parse_size;

/// Flags of one Kafka benchmark run against a running `strata serve`.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// The node's Kafka listener, HOST:PORT.
    #[arg(long)]
    pub bootstrap: String,

    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Produce)]
    pub mode: Mode,

    /// Storage engine of the benchmark topic (`storage.engine`).
    #[arg(long, value_enum, default_value_t = EngineArg::File)]
    pub engine: EngineArg,

    /// Physical model of the benchmark topic (`storage.model`).
    #[arg(long, value_enum, default_value_t = ModelArg::Dedicated)]
    pub model: ModelArg,

    /// os: acknowledged once written to the OS; fsync: topic config flush.messages=1.
    /// Ignored (reported as memory) for the memory engine, which refuses fsync.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Os)]
    pub durability: DurabilityArg,

    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,

    /// Size of every record value (e.g. 100, 1KiB).
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    pub record_bytes: u64,

    /// Messages to produce (for consume: to produce first, then consume).
    #[arg(long, conflicts_with = "duration_secs")]
    pub messages: Option<u64>,

    /// Seconds to produce for, instead of --messages (default 10).
    #[arg(long)]
    pub duration_secs: Option<f64>,

    /// Messages per second, for --mode latency and e2e.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Producer acks: 0, 1 or all.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    pub acks: Acks,

    /// Producer linger.ms: how long a batch waits for more messages.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u32,

    /// Producer batch.size: the largest batch the client forms, in bytes.
    #[arg(long, default_value = "1000000", value_parser = parse_size)]
    pub batch_size: u64,

    /// Producer compression.type.
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,

    /// Folder in which the engine reference creates its temporary data directory (default: the
    /// current folder). Put it on the disk the node writes to.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// Keep the benchmark topic on the node afterwards (default: delete it).
    #[arg(long)]
    pub keep_topic: bool,

    /// File that the JSON line is appended to, relative to the current folder.
    #[arg(long, default_value = "strata-bench.jsonl")]
    pub jsonl: PathBuf,

    /// Free-form label copied into the JSON line (for example the name of a matrix case).
    #[arg(long)]
    pub label: Option<String>,
}

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Produce flat out: throughput, and delivery latency under that load.
    Produce,
    /// Produce at --rate: delivery latency (enqueue to delivery report).
    Latency,
    /// Produce at --rate while a consumer reads: send to consume latency.
    E2e,
    /// Produce untimed, then consume everything with a fresh group: throughput.
    Consume,
}

/// Engines a topic can choose today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// Process memory.
    Memory,
    /// Local files.
    File,
}

/// Physical models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelArg {
    /// One log per partition.
    Dedicated,
    /// One journal for all partitions.
    Shared,
}

/// Durability of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Written to the OS page cache.
    Os,
    /// Fsynced before the acknowledgement.
    Fsync,
}

/// Producer acks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    /// No response.
    #[value(name = "0")]
    Zero,
    /// The leader's append.
    #[value(name = "1")]
    One,
    /// Every in-sync replica (one here).
    All,
}

/// Producer compression codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Codec {
    /// Uncompressed batches.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// zstd.
    Zstd,
}

macro_rules! label {
    ($ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name used on the command line, in client configs and in the JSON line.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
    };
}
label!(Mode { Produce = "produce", Latency = "latency", E2e = "e2e", Consume = "consume" });
label!(EngineArg { Memory = "memory", File = "file" });
label!(ModelArg { Dedicated = "dedicated", Shared = "shared" });
label!(Acks { Zero = "0", One = "1", All = "all" });
label!(Codec { None = "none", Gzip = "gzip", Snappy = "snappy", Lz4 = "lz4", Zstd = "zstd" });

impl Codec {
    /// The same codec in Strata's record encoder, for the engine reference's batches.
    pub fn record_compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// Seconds produced for when neither --messages nor --duration-secs is given.
pub const DEFAULT_SECS: f64 = 10.0;

/// How much a run produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// Exactly this many messages.
    Messages(u64),
    /// As many as fit in this time.
    For(Duration),
}

/// The run after defaults are filled in and combinations checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The flags as given.
    pub args: KafkaArgs,
    /// How much to produce; paced modes always resolve to a message count.
    pub amount: Amount,
    /// Messages per second for paced modes.
    pub rate: Option<f64>,
    /// The engine as the storage layer names it.
    pub engine: EngineKind,
    /// The model as the storage layer names it.
    pub model: Model,
}

impl Plan {
    /// Checks the flags and fills in defaults.
    pub fn new(args: KafkaArgs) -> Result<Plan> {
        let a = &args;
        let memory = a.engine == EngineArg::Memory;
        if memory && a.model == ModelArg::Shared {
            bail!("the memory engine has one model only: use --model dedicated");
        }
        if memory && a.durability == DurabilityArg::Fsync {
            bail!("the memory engine keeps no disk copy, so --durability fsync cannot apply");
        }
        ensure!(a.partitions >= 1, "--partitions must be at least 1");
        ensure!(a.record_bytes >= 1, "--record-bytes must be at least 1");
        ensure!(
            a.record_bytes <= 1 << 20,
            "--record-bytes must be at most 1MiB, the node's default max.message.bytes"
        );
        ensure!(a.batch_size >= 1, "--batch-size must be positive");
        let paced = matches!(a.mode, Mode::Latency | Mode::E2e);
        if a.mode == Mode::E2e {
            ensure!(
                a.record_bytes >= 8,
                "--mode e2e carries the send time in the first 8 bytes: --record-bytes must be at least 8"
            );
        }
        let rate = match (paced, a.rate) {
            (true, Some(r)) if r.is_finite() && r > 0.0 => Some(r),
            (true, Some(r)) => bail!("--rate must be a positive number of messages/s, not {r}"),
            (true, None) => bail!("--mode {} needs --rate MESSAGES_PER_SEC", a.mode.as_str()),
            (false, Some(_)) => bail!(
                "--rate applies to --mode latency and e2e; {} produces as fast as it can",
                a.mode.as_str()
            ),
            (false, None) => None,
        };
        let amount = match (a.messages, a.duration_secs) {
            (Some(0), _) => bail!("--messages must be positive"),
            (Some(n), _) => Amount::Messages(n),
            (None, Some(s)) if !(s.is_finite() && s > 0.0) => {
                bail!("--duration-secs must be a positive number of seconds, not {s}")
            }
            (None, s) => {
                let secs = s.unwrap_or(DEFAULT_SECS);
                match rate {
                    // A paced run knows its count up front: rate × duration.
                    Some(r) => Amount::Messages(((r * secs).round() as u64).max(1)),
                    None => Amount::For(Duration::from_secs_f64(secs)),
                }
            }
        };
        Ok(Plan {
            engine: if memory {
                EngineKind::Memory
            } else {
                EngineKind::File
            },
            model: match a.model {
                ModelArg::Dedicated => Model::Dedicated,
                ModelArg::Shared => Model::Shared,
            },
            amount,
            rate,
            args,
        })
    }

    /// The durability the topic should end up with, as the JSON line names it.
    pub fn durability_name(&self) -> &'static str {
        match (self.engine, self.args.durability) {
            (EngineKind::Memory, _) => "memory",
            (_, DurabilityArg::Os) => "os",
            (_, DurabilityArg::Fsync) => "fsync",
        }
    }

    /// Record bytes as a `usize`.
    pub fn record_len(&self) -> usize {
        self.args.record_bytes as usize
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: KafkaArgs,
    }

    fn plan(flags: &str) -> Result<Plan> {
        let argv = std::iter::once("bench").chain(flags.split_whitespace());
        Plan::new(Cli::try_parse_from(argv)?.args)
    }

    #[test]
    fn defaults_produce_for_ten_seconds() {
        let p = plan("--bootstrap h:1").unwrap();
        assert_eq!(p.args.mode, Mode::Produce);
        assert_eq!(p.amount, Amount::For(Duration::from_secs(10)));
        assert_eq!((p.engine, p.model), (EngineKind::File, Model::Dedicated));
        assert_eq!(p.durability_name(), "os");
        assert_eq!((p.args.record_bytes, p.args.partitions), (1024, 1));
        assert_eq!(p.args.acks.as_str(), "all");
        assert_eq!(p.args.compression.as_str(), "none");
        assert_eq!(p.rate, None);
    }

    #[test]
    fn flags_resolve() {
        let p = plan(
            "--bootstrap h:1 --mode e2e --rate 2500 --duration-secs 4 --engine memory \
             --record-bytes 100 --acks 0 --compression lz4 --batch-size 64KiB --partitions 3",
        )
        .unwrap();
        assert_eq!(p.amount, Amount::Messages(10_000), "rate × duration");
        assert_eq!(p.durability_name(), "memory");
        assert_eq!(p.args.acks, Acks::Zero);
        assert_eq!(p.args.batch_size, 64 << 10);
        assert_eq!(p.args.compression.record_compression(), Compression::Lz4);
        let p = plan("--bootstrap h:1 --durability fsync --model shared --messages 7").unwrap();
        assert_eq!(p.amount, Amount::Messages(7));
        assert_eq!((p.model, p.durability_name()), (Model::Shared, "fsync"));
    }

    #[test]
    fn bad_combinations_are_refused() {
        for flags in [
            "",
            "--bootstrap h:1 --mode latency",
            "--bootstrap h:1 --mode produce --rate 10",
            "--bootstrap h:1 --mode latency --rate 0",
            "--bootstrap h:1 --engine memory --durability fsync",
            "--bootstrap h:1 --engine memory --model shared",
            "--bootstrap h:1 --mode e2e --rate 10 --record-bytes 4",
            "--bootstrap h:1 --messages 0",
            "--bootstrap h:1 --messages 5 --duration-secs 5",
            "--bootstrap h:1 --duration-secs -1",
            "--bootstrap h:1 --acks 2",
            "--bootstrap h:1 --engine rocksdb",
        ] {
            assert!(plan(flags).is_err(), "{flags:?} accepted");
        }
    }
}
