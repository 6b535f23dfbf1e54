//! `swarm`: the command-line front of the supervisor library. Parses flags, makes one
//! library call per subcommand ([`neuralflow_swarm::cli`]), and maps its result to an
//! exit code (0 ok, 1 fatal error, 2 bad usage, 3 `swarm run` with failed documents).

use clap::{Parser, Subcommand};
use neuralflow_swarm::cli::{
    self, bench::BenchCommand, demo::DemoArgs, run::RunArgs, serve::ServeArgs, status::StatusArgs,
    submit::SubmitArgs, top::TopArgs, worker::WorkerArgs,
};
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
    /// How log lines (stderr, filtered by `RUST_LOG`) are written.
    #[arg(long, global = true, value_enum, default_value_t = cli::LogFormat::Text)]
    log_format: cli::LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Microbenchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Extract text from PDFs across agent processes: one JSON line per document.
    #[command(after_help = cli::run::EXIT_STATUS)]
    Run(RunArgs),
    /// Generate a corpus of PDFs (several hundred pages: standard fonts, kerning, justified
    /// and two-column text), run it through the swarm, and check every page against the
    /// text it was generated from. Prints pages/s.
    Demo(DemoArgs),
    /// A long-running swarm with warm agents and an HTTP API for jobs (POST /jobs,
    /// GET /jobs/{id}, GET /jobs/{id}/results, DELETE /jobs/{id}, GET /health, GET
    /// /metrics). SIGTERM drains it: no new jobs, those accepted finish, then it exits.
    Serve(ServeArgs),
    /// One look at a running `swarm run` or `swarm serve` of this user: its agents,
    /// queues, counters (found by --pid, --socket, or as the only one running).
    Status(StatusArgs),
    /// A live dashboard of a running `swarm run` or `swarm serve` of this user: agents,
    /// throughput, queue, deaths, slab (q quits).
    Top(TopArgs),
    /// This host's swarm as a worker of a NATS JetStream cluster: pulls documents from the
    /// jobs' work queue, runs them, publishes each line. SIGTERM drains it: no new
    /// documents, those it has finish.
    Worker(WorkerArgs),
    /// Submit PDFs to a NATS JetStream cluster of `swarm worker`s and write their lines as
    /// `swarm run` does (the same objects, summary and exit status). `--resume JOB`
    /// attaches to a job again and writes what is still missing.
    #[command(after_help = cli::run::EXIT_STATUS)]
    Submit(SubmitArgs),
    /// Extract text in this process, one document after another (a reference for the swarm
    /// and a debugging aid). Writes JSON Lines to stdout.
    Extract {
        /// PDF files.
        paths: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    cli::tune_allocator();
    let args = Cli::parse();
    cli::init_logging(args.log_format);
    let result = match args.command {
        Command::Run(a) => cli::run::run(a),
        Command::Demo(a) => cli::demo::run(a),
        Command::Extract { paths } => cli::extract::run(&paths),
        Command::Bench(b) => cli::bench::run(b),
        Command::Status(a) => cli::status::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Top(a) => cli::top::run(a),
        Command::Worker(a) => cli::worker::run(a),
        Command::Submit(a) => cli::submit::run(a),
    };
    match result {
        Ok(done) => ExitCode::from(done.exit_code()),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
