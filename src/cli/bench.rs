//! `swarm bench bus|cache|cluster|graph|pipeline|ring|sched|soak|state|tasks|watch`: the flags, the configurations built from them, and
//! the reports printed (text, then with `--json` one JSON object as the last line).

use super::args::cgroups_required;
use super::{Done, Error};
use crate::bench::pipeline::{self, PipelineBenchConfig};
use crate::bench::tasks::TasksBenchConfig;
use crate::bench::{self, RingBenchConfig};
use crate::cgroup::Limits;
use crate::pdf::job::{collect_inputs, Roles};
use std::path::PathBuf;

/// The benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// The shared cache in `swarm run`: a corpus a third of which are byte-identical
    /// copies, with the cache and without, in alternating rounds of one run.
    Cache(CacheArgs),
    /// The shared-memory bus: one-way time from the supervisor to 1 and 4 subscribers in
    /// agents, messages/s, a stopped subscriber, and iceoryx2 in the same run.
    Bus(BusArgs),
    /// Task graphs of noop tasks: a random DAG, a chain and a fan-in, nodes/s and the
    /// cost of a link, in one run.
    Graph(GraphArgs),
    /// PDF extraction: `swarm run` at each agent count against the same code on one
    /// thread in this process (scaling efficiency), specialists, and one long document on
    /// 1 and 2 agents, in one run. Without PATHs, on a generated corpus.
    Pipeline(PipelineArgs),
    /// Cross-process message latency and throughput: our ring against crossbeam-channel,
    /// a Unix socket pair and a pipe, in one run.
    Ring(RingArgs),
    /// The scheduler under contention: priorities under a flood, round-robin,
    /// least-loaded and adaptive on agents of unequal CPU quotas, and an elastic pool's
    /// growth and shrinking, in one run.
    Sched(SchedArgs),
    /// A steady mixed load on a `swarm serve` in this process (jobs over HTTP, synthetic
    /// tasks, an agent killed now and then), sampling the supervisor's and agents' memory
    /// and descriptors: what grows after the warm-up.
    Soak(SoakArgs),
    /// The shared state: reads in place, strong writes' round trip, eventual writes'
    /// visibility, and torn reads (none) under writers killed in a loop, in one run.
    State(StateArgs),
    /// Documents through NATS JetStream (`swarm submit` to 1 and 2 warm `swarm worker`s)
    /// against the same documents through `swarm run`, alternating.
    Cluster(ClusterArgs),
    /// What watching costs a swarm: `swarm run` alone and with a watcher reading its view
    /// (as `swarm top` does) and scraping `/metrics` every 100 ms, in alternating rounds.
    Watch(WatchArgs),
    /// Tasks through the supervisor: throughput, per-task overhead, idle agent memory,
    /// and SIGKILL-to-replacement time, in one run.
    Tasks(TasksArgs),
}

/// `swarm bench pipeline`'s flags.
#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// PDF files or directories (default: the corpus `swarm demo` generates).
    pub paths: Vec<PathBuf>,
    /// Agent counts, comma-separated (default: 1, 2, 4, ... up to the CPUs).
    #[arg(long, value_delimiter = ',')]
    pub agents: Vec<u32>,
    /// Also measure these specialists, e.g. `parser=1,extractor=2,analyzer=1,aggregator=1`.
    #[arg(long, value_parser = crate::pdf::job::Roles::parse)]
    pub roles: Option<Roles>,
    /// Documents of the generated corpus (without PATHs); more for many agents, so
    /// that each has work well beyond starting up.
    #[arg(long, default_value_t = 24)]
    pub documents: u32,
    /// Pages of the generated long document run on 1 and 2 agents (0 skips it).
    #[arg(long, default_value_t = 1000)]
    pub long_pages: u32,
    /// Runs per measurement; the best counts.
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Pages per task.
    #[arg(long, default_value_t = 16)]
    pub chunk_pages: u32,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench graph`'s flags.
#[derive(clap::Args, Debug)]
pub struct GraphArgs {
    /// One shape (default: all three): random (about three parents a node), chain (each
    /// node after the one before), fan (independent nodes, then one after them all).
    #[arg(long, value_parser = crate::bench::graph::Shape::parse)]
    pub shape: Option<crate::bench::graph::Shape>,
    /// Nodes per graph.
    #[arg(long, default_value_t = 100_000)]
    pub nodes: usize,
    /// Agent processes.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// Write a line per node, tab-separated: node id, attempts, the supervisor's
    /// monotonic ns at its last attempt's dispatch and at that attempt's completion, its
    /// parents' ids comma-separated. With several shapes, one file each: FILE.random, ...
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench cluster`'s flags.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// The NATS server (default: start `nats-server` from PATH on loopback).
    #[arg(long)]
    pub nats: Option<String>,
    /// Documents of the generated corpus.
    #[arg(long, default_value_t = 96)]
    pub documents: u32,
    /// Agents of each worker, and of the local run.
    #[arg(long, default_value_t = 1)]
    pub agents: u32,
    /// Rounds, alternating.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench watch`'s flags.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Documents of the generated corpus.
    #[arg(long, default_value_t = 96)]
    pub documents: u32,
    /// Agents.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// Rounds of each, alternating.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// How often the watcher looks.
    #[arg(long, default_value = "100ms", value_parser = crate::task::parse_duration)]
    pub every: std::time::Duration,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench soak`'s flags.
#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// How long, in minutes (fractions allowed: 0.5 is 30 s).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Agents.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// One agent SIGKILLed this often (0 kills none).
    #[arg(long, default_value = "5s", value_parser = crate::task::parse_duration)]
    pub kill_every: std::time::Duration,
    /// Documents of the generated corpus, one job.
    #[arg(long, default_value_t = 12)]
    pub documents: u32,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench cache`'s flags.
#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    /// Documents generated (a copy of every other one comes on top).
    #[arg(long, default_value_t = 96)]
    pub documents: u32,
    /// Agents.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// Rounds of each, alternating.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench bus`'s flags.
#[derive(clap::Args, Debug)]
pub struct BusArgs {
    /// Stamped messages per one-way measurement.
    #[arg(long, default_value_t = 20_000)]
    pub samples: u64,
    /// Time between stamped messages, e.g. 100us.
    #[arg(long, default_value = "100us", value_parser = crate::task::parse_duration)]
    pub gap: std::time::Duration,
    /// Messages of each throughput measurement.
    #[arg(long, default_value_t = 500_000)]
    pub messages: u64,
    /// The iceoryx2 peer program (default: `examples/iceoryx2_bus` beside this one).
    #[arg(long)]
    pub iceoryx2: Option<PathBuf>,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench state`'s flags.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// How long each reader reads, in ms.
    #[arg(long, default_value_t = 1000)]
    pub read_ms: u64,
    /// Strong writes of the write phase.
    #[arg(long, default_value_t = 5000)]
    pub writes: u64,
    /// How long writers are killed in a loop, in ms.
    #[arg(long, default_value_t = 2000)]
    pub kill_ms: u64,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench sched`'s flags.
#[derive(clap::Args, Debug)]
pub struct SchedArgs {
    /// Low-priority tasks in the flood.
    #[arg(long, default_value_t = 2000)]
    pub low_tasks: usize,
    /// High-priority tasks sent while it runs.
    #[arg(long, default_value_t = 200)]
    pub high_tasks: usize,
    /// Run time of a task of the priority phase (a spin), e.g. 1ms.
    #[arg(long, default_value = "1ms", value_parser = crate::task::parse_duration)]
    pub low_task: std::time::Duration,
    /// Tasks in each strategy's burst.
    #[arg(long, default_value_t = 1200)]
    pub burst: usize,
    /// Tasks (`spin:1ms`) in the elastic pool's burst.
    #[arg(long, default_value_t = 4000)]
    pub elastic_burst: usize,
    /// How long an agent of the elastic pool may idle before it retires, e.g. 1s.
    #[arg(long, default_value = "1s", value_parser = crate::task::parse_duration)]
    pub retire_after: std::time::Duration,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench ring`'s flags.
#[derive(clap::Args, Debug)]
pub struct RingArgs {
    /// Round trips per latency measurement.
    #[arg(long, default_value_t = 50_000)]
    pub messages: u64,
    /// Messages per throughput stream (default: 100 × --messages).
    #[arg(long)]
    pub stream: Option<u64>,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `swarm bench tasks`'s flags.
#[derive(clap::Args, Debug)]
pub struct TasksArgs {
    /// Agent processes.
    #[arg(long, default_value_t = 2)]
    pub agents: u32,
    /// Tasks in the throughput phase.
    #[arg(long, default_value_t = 100_000)]
    pub tasks: u64,
    /// The task: noop, spin:DURATION, busy:DURATION (never beats), sleep:DURATION,
    /// echo:BYTES, alloc:SIZE, crash, hang, panic.
    #[arg(long, default_value = "noop")]
    pub task: String,
    /// Per-agent memory limit (e.g. 256M).
    #[arg(long, value_parser = crate::task::parse_size)]
    pub memory_limit: Option<u64>,
    /// Per-agent CPU quota in cores (e.g. 0.5).
    #[arg(long)]
    pub cpu_limit: Option<f64>,
    /// Per-agent limit on processes and threads.
    #[arg(long)]
    pub pids_limit: Option<u64>,
    /// Fail instead of running unisolated when cgroups are unavailable.
    #[arg(long)]
    pub require_cgroups: bool,
    /// Write one line per completed task: id, slot, attempts, run time (ns), tab-separated.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Tasks in the one-at-a-time overhead phase (default 10,000; fewer for long tasks).
    #[arg(long)]
    pub overhead_tasks: Option<u64>,
    /// Kill-to-replacement samples.
    #[arg(long, default_value_t = 20)]
    pub respawn_samples: u32,
    /// The agent executable (default: `agent-bin` beside this one).
    #[arg(long)]
    pub agent_bin: Option<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// Prints a report: its text, then with `json` the report as one JSON object.
fn report<R: serde::Serialize>(text: &str, r: &R, json: bool) -> Result<Done, Error> {
    println!("{text}");
    if json {
        println!("{}", serde_json::to_string(r).map_err(Error::from_library)?);
    }
    Ok(Done::Ok)
}

/// Runs one benchmark.
pub fn run(command: BenchCommand) -> Result<Done, Error> {
    match command {
        BenchCommand::Graph(a) => {
            use crate::bench::graph::{self, GraphBenchConfig, Shape};
            let cfg = GraphBenchConfig {
                shapes: a.shape.map_or_else(
                    || vec![Shape::Random, Shape::Chain, Shape::Fan],
                    |s| vec![s],
                ),
                nodes: a.nodes,
                agents: a.agents.max(1),
                results: a.results,
                require_cgroups: cgroups_required(a.require_cgroups),
                agent_bin: a.agent_bin,
            };
            let r = graph::run(&cfg).map_err(Error::from_library)?;
            report(&graph::render(&r), &r, a.json)
        }
        BenchCommand::Cluster(a) => {
            use crate::bench::cluster::{self, ClusterBenchConfig};
            let cfg = ClusterBenchConfig {
                nats: a.nats,
                documents: a.documents.max(1),
                agents: a.agents.max(1),
                rounds: a.rounds.max(1),
                scratch: std::env::temp_dir()
                    .join(format!("swarm-bench-cluster-{}", std::process::id())),
                require_cgroups: cgroups_required(a.require_cgroups),
                agent_bin: a.agent_bin,
            };
            let r = cluster::run(&cfg).map_err(Error::from_library)?;
            report(&cluster::render(&r), &r, a.json)
        }
        BenchCommand::Watch(a) => {
            use crate::bench::watch::{self, WatchBenchConfig};
            let cfg = WatchBenchConfig {
                documents: a.documents.max(1),
                agents: a.agents.max(1),
                rounds: a.rounds.max(1),
                every: a.every.max(std::time::Duration::from_millis(1)),
                scratch: std::env::temp_dir()
                    .join(format!("swarm-bench-watch-{}", std::process::id())),
                require_cgroups: cgroups_required(a.require_cgroups),
                agent_bin: a.agent_bin,
            };
            let r = watch::run(&cfg).map_err(Error::from_library)?;
            report(&watch::render(&r), &r, a.json)
        }
        BenchCommand::Soak(a) => {
            use crate::bench::soak::{self, SoakConfig};
            if !(a.minutes.is_finite() && a.minutes > 0.0) {
                return Err(Error::usage(
                    "swarm bench soak: --minutes must be more than 0",
                ));
            }
            let cfg = SoakConfig {
                duration: std::time::Duration::from_secs_f64(a.minutes * 60.0),
                agents: a.agents.max(1),
                kill_every: a.kill_every,
                documents: a.documents.max(1),
                scratch: std::env::temp_dir()
                    .join(format!("swarm-bench-soak-{}", std::process::id())),
                require_cgroups: cgroups_required(a.require_cgroups),
                agent_bin: a.agent_bin,
            };
            let r = soak::run(&cfg).map_err(Error::from_library)?;
            report(&soak::render(&r), &r, a.json)
        }
        BenchCommand::Cache(a) => {
            use crate::bench::cache::{self, CacheBenchConfig};
            let cfg = CacheBenchConfig {
                documents: a.documents,
                agents: a.agents,
                rounds: a.rounds,
                scratch: std::env::temp_dir()
                    .join(format!("swarm-bench-cache-{}", std::process::id())),
                require_cgroups: cgroups_required(a.require_cgroups),
                agent_bin: a.agent_bin,
            };
            let r = cache::run(&cfg).map_err(Error::from_library)?;
            report(&cache::render(&r), &r, a.json)
        }
        BenchCommand::Bus(a) => {
            use crate::bench::bus::{self, BusBenchConfig};
            let cfg = BusBenchConfig {
                samples: a.samples.max(1),
                gap: a.gap,
                messages: a.messages.max(1),
                require_cgroups: cgroups_required(a.require_cgroups),
                agent_bin: a.agent_bin,
                iceoryx2: a.iceoryx2,
            };
            let r = bus::run(&cfg).map_err(Error::from_library)?;
            report(&bus::render(&r), &r, a.json)
        }
        BenchCommand::State(a) => {
            use crate::bench::state::{self, StateBenchConfig};
            let cfg = StateBenchConfig {
                read_ms: a.read_ms.max(1),
                writes: a.writes.max(1),
                kill_ms: a.kill_ms,
                require_cgroups: cgroups_required(a.require_cgroups),
                agent_bin: a.agent_bin,
            };
            let r = state::run(&cfg).map_err(Error::from_library)?;
            report(&state::render(&r), &r, a.json)
        }
        BenchCommand::Sched(a) => {
            use crate::bench::sched::{self, SchedBenchConfig};
            let cfg = SchedBenchConfig {
                low_tasks: a.low_tasks.max(1),
                high_tasks: a.high_tasks.max(1),
                low_task: a.low_task,
                burst: a.burst.max(1),
                elastic_burst: a.elastic_burst.max(1),
                retire_after: a.retire_after,
                require_cgroups: cgroups_required(a.require_cgroups),
                agent_bin: a.agent_bin,
            };
            let r = sched::run(&cfg).map_err(Error::from_library)?;
            report(&sched::render(&r), &r, a.json)
        }
        BenchCommand::Pipeline(a) => {
            let cfg = pipeline_config(a.paths.clone(), &a);
            let r = pipeline::run(&cfg).map_err(Error::from_library)?;
            report(&pipeline::render(&r), &r, a.json)
        }
        BenchCommand::Ring(a) => {
            let cfg = RingBenchConfig {
                messages: a.messages.max(1),
                stream: a.stream.unwrap_or(a.messages.saturating_mul(100)).max(1),
                agent_bin: a.agent_bin.unwrap_or_else(crate::spawn::default_agent_bin),
            };
            let r = bench::ring(&cfg).map_err(Error::from_library)?;
            report(&bench::render_ring(&r), &r, a.json)
        }
        BenchCommand::Tasks(a) => {
            let json = a.json;
            let cfg = TasksBenchConfig {
                agents: a.agents,
                tasks: a.tasks,
                task: a.task,
                limits: Limits {
                    memory_bytes: a.memory_limit,
                    cpu_cores: a.cpu_limit,
                    pids: a.pids_limit,
                },
                require_cgroups: cgroups_required(a.require_cgroups),
                results: a.results,
                overhead_tasks: a.overhead_tasks,
                respawn_samples: a.respawn_samples,
                agent_bin: a.agent_bin,
            };
            let r = bench::tasks::run(&cfg).map_err(Error::from_library)?;
            report(&bench::tasks::render(&r), &r, json)
        }
    }
}

/// The pipeline benchmark's configuration: agent counts default to 1, 2, 4, ... up to
/// the CPUs (and the CPUs themselves).
fn pipeline_config(paths: Vec<PathBuf>, a: &PipelineArgs) -> PipelineBenchConfig {
    let cpus = crate::spawn::available_cpus() as u32;
    let agents = if a.agents.is_empty() {
        let mut v: Vec<u32> = std::iter::successors(Some(1u32), |n| Some(n * 2))
            .take_while(|&n| n <= cpus)
            .collect();
        if v.last() != Some(&cpus) {
            v.push(cpus.max(1));
        }
        v
    } else {
        a.agents.iter().map(|&n| n.max(1)).collect()
    };
    PipelineBenchConfig {
        files: collect_inputs(&paths, None),
        agents,
        roles: a.roles,
        documents: a.documents,
        long_pages: a.long_pages,
        repeat: a.repeat,
        chunk_pages: a.chunk_pages,
        require_cgroups: cgroups_required(a.require_cgroups),
        agent_bin: a.agent_bin.clone(),
        scratch: std::env::temp_dir().join(format!("swarm-bench-pipeline-{}", std::process::id())),
    }
}
