//! `swarm`: the command-line front of the supervisor library. Parses flags, calls the
//! library, maps errors to exit codes (0 ok, 1 fatal error, 2 bad usage).

use clap::{Parser, Subcommand};
use neuralflow_swarm::bench::tasks::TasksBenchConfig;
use neuralflow_swarm::bench::{self, RingBenchConfig};
use neuralflow_swarm::cgroup::Limits;
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
    /// Extract text from PDFs across agent processes: one JSON line per document.
    Run(RunArgs),
    /// Generate a corpus of PDFs (several hundred pages: standard fonts, kerning, justified
    /// and two-column text), run it through the swarm, and check every page against the
    /// text it was generated from. Prints pages/s.
    Demo(DemoArgs),
    /// Extract text in this process, one document after another (a reference for the swarm
    /// and a debugging aid). Writes JSON Lines to stdout.
    Extract {
        /// PDF files.
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum Bench {
    /// PDF extraction: `swarm run` at each agent count against the same code on one
    /// thread in this process (scaling efficiency), specialists, and one long document on
    /// 1 and 2 agents, in one run. Without PATHs, on a generated corpus.
    Pipeline {
        /// PDF files or directories (default: the corpus `swarm demo` generates).
        paths: Vec<PathBuf>,
        /// Agent counts, comma-separated (default: 1, 2, 4, ... up to the CPUs).
        #[arg(long, value_delimiter = ',')]
        agents: Vec<u32>,
        /// Also measure these specialists, e.g. `parser=1,extractor=2,analyzer=1,aggregator=1`.
        #[arg(long, value_parser = parse_roles)]
        roles: Option<neuralflow_swarm::pdf::job::Roles>,
        /// Documents of the generated corpus (without PATHs); more for many agents, so
        /// that each has work well beyond starting up.
        #[arg(long, default_value_t = 24)]
        documents: u32,
        /// Pages of the generated long document run on 1 and 2 agents (0 skips it).
        #[arg(long, default_value_t = 1000)]
        long_pages: u32,
        /// Runs per measurement; the best counts.
        #[arg(long, default_value_t = 3)]
        repeat: u32,
        /// Pages per task.
        #[arg(long, default_value_t = 16)]
        chunk_pages: u32,
        /// Fail instead of running unisolated when cgroups are unavailable.
        #[arg(long)]
        require_cgroups: bool,
        /// The agent executable (default: `agent-bin` beside this one).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// Print one JSON object as the last line of stdout.
        #[arg(long)]
        json: bool,
    },
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
    /// Tasks through the supervisor: throughput, per-task overhead, idle agent memory,
    /// and SIGKILL-to-replacement time, in one run.
    Tasks {
        /// Agent processes.
        #[arg(long, default_value_t = 2)]
        agents: u32,
        /// Tasks in the throughput phase.
        #[arg(long, default_value_t = 100_000)]
        tasks: u64,
        /// The task: noop, spin:DURATION, sleep:DURATION, echo:BYTES, alloc:SIZE, crash, hang.
        #[arg(long, default_value = "noop")]
        task: String,
        /// Per-agent memory limit (e.g. 256M).
        #[arg(long, value_parser = parse_size)]
        memory_limit: Option<u64>,
        /// Per-agent CPU quota in cores (e.g. 0.5).
        #[arg(long)]
        cpu_limit: Option<f64>,
        /// Per-agent limit on processes and threads.
        #[arg(long)]
        pids_limit: Option<u64>,
        /// Fail instead of running unisolated when cgroups are unavailable.
        #[arg(long)]
        require_cgroups: bool,
        /// Write one line per completed task: id, slot, attempts, run time (ns), tab-separated.
        #[arg(long)]
        results: Option<PathBuf>,
        /// Tasks in the one-at-a-time overhead phase (default 10,000; fewer for long tasks).
        #[arg(long)]
        overhead_tasks: Option<u64>,
        /// Kill-to-replacement samples.
        #[arg(long, default_value_t = 20)]
        respawn_samples: u32,
        /// The agent executable (default: `agent-bin` beside this one).
        #[arg(long)]
        agent_bin: Option<PathBuf>,
        /// Print one JSON object as the last line of stdout.
        #[arg(long)]
        json: bool,
    },
}

/// `SWARM_REQUIRE_CGROUPS=1` makes missing cgroups an error, as `--require-cgroups` does.
fn cgroups_required_by_env() -> bool {
    std::env::var("SWARM_REQUIRE_CGROUPS").is_ok_and(|v| v == "1")
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    neuralflow_swarm::task::parse_duration(s)
}

fn parse_roles(s: &str) -> Result<neuralflow_swarm::pdf::job::Roles, String> {
    neuralflow_swarm::pdf::job::Roles::parse(s).map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> Result<u64, String> {
    neuralflow_swarm::task::parse_size(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, filtered by RUST_LOG: by default our warnings and errors, and
    // nothing from lopdf (a malformed file is reported in the output, not as log noise).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lopdf=off")),
        )
        .init();
    let result = match cli.command {
        Command::Run(args) => return run(args),
        Command::Demo(args) => demo(args),
        Command::Extract { paths } => extract(&paths),
        Command::Bench(Bench::Pipeline {
            paths,
            agents,
            roles,
            documents,
            long_pages,
            repeat,
            chunk_pages,
            require_cgroups,
            agent_bin,
            json,
        }) => {
            let cpus = neuralflow_swarm::spawn::available_cpus() as u32;
            let agents = if agents.is_empty() {
                let mut v: Vec<u32> = std::iter::successors(Some(1u32), |n| Some(n * 2))
                    .take_while(|&n| n <= cpus)
                    .collect();
                if v.last() != Some(&cpus) {
                    v.push(cpus.max(1));
                }
                v
            } else {
                agents.into_iter().map(|n| n.max(1)).collect()
            };
            let cfg = neuralflow_swarm::bench::pipeline::PipelineBenchConfig {
                files: neuralflow_swarm::pdf::job::collect_inputs(&paths, None),
                agents,
                roles,
                documents,
                long_pages,
                repeat,
                chunk_pages,
                require_cgroups: require_cgroups || cgroups_required_by_env(),
                agent_bin,
                scratch: std::env::temp_dir()
                    .join(format!("swarm-bench-pipeline-{}", std::process::id())),
            };
            bench_pipeline(&cfg, json)
        }
        Command::Bench(Bench::Ring {
            messages,
            stream,
            agent_bin,
            json,
        }) => bench_ring(messages, stream, agent_bin, json),
        Command::Bench(Bench::Tasks {
            agents,
            tasks,
            task,
            memory_limit,
            cpu_limit,
            pids_limit,
            require_cgroups,
            results,
            overhead_tasks,
            respawn_samples,
            agent_bin,
            json,
        }) => {
            let cfg = TasksBenchConfig {
                agents,
                tasks,
                task,
                limits: Limits {
                    memory_bytes: memory_limit,
                    cpu_cores: cpu_limit,
                    pids: pids_limit,
                },
                require_cgroups: require_cgroups || cgroups_required_by_env(),
                results,
                overhead_tasks,
                respawn_samples,
                agent_bin,
            };
            bench_tasks(&cfg, json)
        }
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

fn bench_pipeline(
    cfg: &neuralflow_swarm::bench::pipeline::PipelineBenchConfig,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    use neuralflow_swarm::bench::pipeline;
    let r = pipeline::run(cfg)?;
    println!("{}", pipeline::render(&r));
    if json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

fn bench_tasks(cfg: &TasksBenchConfig, json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let r = bench::tasks::run(cfg)?;
    println!("{}", bench::tasks::render(&r));
    if json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}

fn extract(paths: &[PathBuf]) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for p in paths {
        let mut line = neuralflow_swarm::pdf::extract_file(p).line();
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

/// The agents of a swarm, as `run` and `demo` take them.
#[derive(clap::Args, Debug)]
struct SwarmArgs {
    /// Agent processes (default: the number of CPUs).
    #[arg(long)]
    agents: Option<u32>,
    /// Specialist agents per role, e.g. `parser=1,extractor=4,analyzer=1,aggregator=1`:
    /// pages move Parser → Extractor → Analyzer → Aggregator through page buffers.
    /// Default: generalists (`--agents` of them), each taking a page range end to end.
    #[arg(long, value_parser = parse_roles)]
    roles: Option<neuralflow_swarm::pdf::job::Roles>,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
}

impl SwarmArgs {
    /// A run of `files` with these agents and the defaults for the rest.
    fn config(self, files: Vec<PathBuf>) -> neuralflow_swarm::pdf::job::RunConfig {
        neuralflow_swarm::pdf::job::RunConfig {
            agents: self
                .agents
                .unwrap_or_else(|| neuralflow_swarm::spawn::available_cpus() as u32)
                .max(1),
            files,
            memory_limit: None,
            timeout_per_doc: std::time::Duration::from_secs(30),
            chunk_pages: 16,
            require_cgroups: self.require_cgroups || cgroups_required_by_env(),
            agent_bin: self.agent_bin,
            roles: self.roles,
        }
    }
}

#[derive(clap::Args, Debug)]
struct DemoArgs {
    #[command(flatten)]
    swarm: SwarmArgs,
    /// Documents to generate.
    #[arg(long, default_value_t = 24)]
    documents: u32,
    /// Pages of the shortest document (lengths vary up to three times this).
    #[arg(long, default_value_t = 8)]
    min_pages: u32,
    /// Keep the corpus and the output here (default: a temporary directory, removed).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn demo(a: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    use neuralflow_swarm::pdf::demo;
    let (dir, keep) = match a.dir {
        Some(d) => (d, true),
        None => (
            std::env::temp_dir().join(format!("swarm-demo-{}", std::process::id())),
            false,
        ),
    };
    let cfg = a.swarm.config(Vec::new());
    let spec = demo::DemoSpec {
        documents: a.documents.max(1),
        min_pages: a.min_pages.max(1),
        max_pages: a.min_pages.max(1) * 3,
        ..demo::DemoSpec::default()
    };
    let report = demo::run(&dir, spec, cfg);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let r = report?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        let s = &r.run;
        println!(
            "{} documents, {} pages through {} agents in {:.2} s: {:.0} pages/s",
            s.documents, s.pages, s.agents, s.wall_seconds, s.pages_per_second
        );
        println!(
            "text check against the generated words: {:.1}% of pages exact, word F1 {:.4}",
            r.pages_exact * 100.0,
            r.word_f1
        );
        if keep {
            println!("corpus and output.jsonl in {}", r.dir.display());
        }
    }
    if r.run.failed_documents > 0 || r.pages_exact < 1.0 {
        return Err("the demo did not extract every page exactly".into());
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// PDF files or directories (searched recursively for *.pdf).
    paths: Vec<PathBuf>,
    #[command(flatten)]
    swarm: SwarmArgs,
    /// Where to write the JSON Lines (default: stdout).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write a JSON summary of the run here.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Read more paths from this file, one per line (`-` for stdin).
    #[arg(long)]
    files_from: Option<PathBuf>,
    /// Per-agent memory limit (e.g. 1G).
    #[arg(long, value_parser = parse_size)]
    memory_limit: Option<u64>,
    /// Time budget of one document (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout_per_doc: std::time::Duration,
    /// Pages per task when a document is spread across agents.
    #[arg(long, default_value_t = 16)]
    chunk_pages: u32,
}

/// `swarm run`: 0 every document ok, 3 some failed, 1 fatal error, 2 bad usage.
fn run(a: RunArgs) -> ExitCode {
    use neuralflow_swarm::pdf::job::{self, RunConfig};
    use std::io::{BufRead, IsTerminal, Write};
    let from: Option<Vec<String>> = match &a.files_from {
        None => None,
        Some(p) if p.as_os_str() == "-" => Some(
            std::io::stdin()
                .lock()
                .lines()
                .map_while(Result::ok)
                .collect(),
        ),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(s) => Some(s.lines().map(String::from).collect()),
            Err(e) => {
                eprintln!("swarm: --files-from {}: {e}", p.display());
                return ExitCode::from(2);
            }
        },
    };
    if a.paths.is_empty() && from.is_none() {
        eprintln!("swarm run: no input: give PDF files or directories, or --files-from");
        return ExitCode::from(2);
    }
    if let Some(missing) = a.paths.iter().find(|p| !p.exists()) {
        eprintln!(
            "swarm run: {}: no such file or directory",
            missing.display()
        );
        return ExitCode::from(2);
    }
    let files = job::collect_inputs(&a.paths, from.as_deref());
    let cfg = RunConfig {
        memory_limit: a.memory_limit,
        timeout_per_doc: a.timeout_per_doc,
        chunk_pages: a.chunk_pages,
        ..a.swarm.config(files)
    };
    let mut out: Box<dyn Write> = match &a.output {
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("swarm: --output {}: {e}", p.display());
                return ExitCode::from(1);
            }
        },
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(cfg.files.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} documents, {msg} [{elapsed_precise}, ETA {eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let started = std::time::Instant::now();
    let mut progress = |docs: u64, pages: u64| {
        if let Some(b) = &bar {
            b.set_position(docs);
            let rate = pages as f64 / started.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!("{pages} pages, {rate:.0} pages/s"));
        }
    };
    let result = job::run(&cfg, &mut out, &mut progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("swarm: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(p) = &a.summary {
        let written = serde_json::to_vec_pretty(&summary)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(p, b));
        if let Err(e) = written {
            eprintln!("swarm: --summary {}: {e}", p.display());
            return ExitCode::from(1);
        }
    }
    if summary.failed_documents > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
