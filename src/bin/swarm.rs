//! `swarm`: the command-line front of the supervisor library. Parses flags, calls the
//! library, maps errors to exit codes (0 ok, 1 fatal error, 2 bad usage).

use clap::{Parser, Subcommand};
use neuralflow_swarm::bench::{self, RingBenchConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Process PDFs in parallel across agent processes on one host"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Microbenchmarks.
    #[command(subcommand)]
    Bench(Bench),
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// Cross-process message latency and throughput: our ring against crossbeam-channel,
    /// a Unix socket pair and a pipe, in one run.
    Ring {
        /// Round trips per latency measurement.
        #[arg(long, default_value_t = 50_000)]
        messages: u64,
        /// Messages per throughput stream (default: 100 × --messages).
        #[arg(long)]
        stream: Option<u64>,
        /// The agent executable (default: `agent-bin` beside this one).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// Print one JSON object as the last line of stdout.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(Bench::Ring {
            messages,
            stream,
            agent_bin,
            json,
        }) => bench_ring(messages, stream, agent_bin, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarm: {e}");
            ExitCode::from(1)
        }
    }
}

fn bench_ring(
    messages: u64,
    stream: Option<u64>,
    agent_bin: Option<PathBuf>,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = RingBenchConfig {
        messages: messages.max(1),
        stream: stream.unwrap_or(messages.saturating_mul(100)).max(1),
        agent_bin: agent_bin.unwrap_or_else(neuralflow_swarm::spawn::default_agent_bin),
    };
    let r = bench::ring(&cfg)?;
    println!("{}", bench::render_ring(&r));
    if json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
