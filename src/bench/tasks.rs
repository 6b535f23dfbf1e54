//! `swarm bench tasks`: tasks through the whole supervisor, in phases measured in one run.
//!
//! 1. Throughput: all `tasks` submitted as fast as backpressure allows, completions
//!    streamed back; tasks/s against the ideal `agents / run time` for timed kinds.
//! 2. Overhead: tasks sent one at a time into the otherwise idle swarm; per task,
//!    submit-to-result time minus the run time the agent measured. About five seconds of
//!    nominal run time at most, and it stops after three failures: a kind that fails
//!    (`panic`, an `alloc` over the memory limit) has no overhead to measure, and every
//!    phase ends in bounded time.
//! 3. Idle memory: resident set of each agent after the swarm has gone quiet.
//! 4. Respawn: an agent is SIGKILLed; time until its replacement is ready for work.

use super::pct;
use crate::runtime::cgroup::Limits;
use crate::runtime::sandbox::SandboxPolicy;
use crate::runtime::supervisor::RecvError;
use crate::runtime::supervisor::{Shutdown, Supervisor};
use crate::runtime::task::{Outcome, TaskId, TaskSpec};

/// Another submission of the benchmark's task (parsed from a string, so never with held
/// inputs).
fn again(spec: &TaskSpec) -> TaskSpec {
    spec.try_clone().expect("a parsed task has no held inputs")
}
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The longest any one wait of the benchmark may take before it reports a stall.
const WATCHDOG: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct TasksBenchConfig {
    /// Agents.
    pub agents: u32,
    /// Tasks in the throughput phase.
    pub tasks: u64,
    /// The task (`noop`, `spin:1ms`, ...).
    pub task: String,
    /// Per-agent limits.
    pub limits: Limits,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// Where to write one line per completed task.
    pub results: Option<PathBuf>,
    /// Tasks in the overhead phase (default: 10,000, fewer for long tasks).
    pub overhead_tasks: Option<u64>,
    /// Kill-to-ready samples.
    pub respawn_samples: u32,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct TasksBenchReport {
    /// Agents.
    pub agents: u32,
    /// The task.
    pub task: String,
    /// Tasks submitted in the throughput phase.
    pub tasks: u64,
    /// Of those, completed.
    pub completed: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Throughput phase wall time.
    pub wall_seconds: f64,
    /// Throughput.
    pub tasks_per_second: f64,
    /// `agents / run time` for timed kinds, else null.
    pub ideal_tasks_per_second: Option<f64>,
    /// `tasks_per_second / ideal_tasks_per_second`.
    pub efficiency: Option<f64>,
    /// Tasks in the overhead phase.
    pub overhead_tasks: u64,
    /// Of those, failed (the phase stops after three).
    pub overhead_failed: u64,
    /// Submit-to-result minus run time, median.
    pub overhead_us_p50: f64,
    /// Same, 99th percentile.
    pub overhead_us_p99: f64,
    /// Agents respawned during the task phases.
    pub agent_restarts: u64,
    /// Deaths during the task phases, by cause.
    pub deaths: BTreeMap<String, u64>,
    /// Largest resident set of an idle agent (KiB), shared pages of the segment included.
    pub agent_idle_rss_kib_max: u64,
    /// Largest private (anonymous) resident memory of an idle agent (KiB).
    pub agent_idle_anon_kib_max: u64,
    /// SIGKILL to replacement ready, median (ms).
    pub respawn_ms_p50: Option<f64>,
    /// Same, 99th percentile (ms).
    pub respawn_ms_p99: Option<f64>,
    /// `v1`, `v2` or null.
    pub cgroups: Option<&'static str>,
    /// The throughput phase with the agents' sandbox off, the best of three rounds.
    pub sandbox_off_tasks_per_second: f64,
    /// Throughput with the sandbox ÷ without, each the best of the rounds that alternate
    /// between the two (three each, plus the throughput phase itself with it; when a
    /// round takes half a second or more, one without against the phase itself).
    pub sandbox_throughput_ratio: f64,
    /// SIGKILL to replacement ready without the sandbox, median (ms; up to 20 samples).
    pub sandbox_off_respawn_ms_p50: Option<f64>,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum TasksBenchError {
    /// Bad task string.
    #[error(transparent)]
    Task(#[from] crate::runtime::task::ParseTaskError),
    /// Supervisor trouble.
    #[error(transparent)]
    Supervisor(#[from] crate::runtime::supervisor::Error),
    /// Writing results.
    #[error("results file: {0}")]
    Io(#[from] std::io::Error),
    /// Something did not finish.
    #[error("{0}")]
    Stalled(String),
}

struct Tally {
    completed: u64,
    failed: u64,
    results: Option<std::io::BufWriter<std::fs::File>>,
}

impl Tally {
    fn record(&mut self, id: TaskId, o: &Outcome) -> std::io::Result<()> {
        match o {
            Outcome::Completed {
                slot,
                attempts,
                run_time,
                ..
            } => {
                self.completed += 1;
                if let Some(w) = self.results.as_mut() {
                    writeln!(w, "{id}\t{slot}\t{attempts}\t{}", run_time.as_nanos())?;
                }
            }
            Outcome::Failed(_) => self.failed += 1,
        }
        Ok(())
    }
}

/// Runs all phases.
pub fn run(cfg: &TasksBenchConfig) -> Result<TasksBenchReport, TasksBenchError> {
    let spec: TaskSpec = cfg.task.parse()?;
    let sup = start(cfg, SandboxPolicy::default())?;

    // Phase 1: throughput.
    let mut results = cfg
        .results
        .as_ref()
        .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
        .transpose()?;
    let mut tally = Tally {
        completed: 0,
        failed: 0,
        results: results.take(),
    };
    let wall = throughput(&sup, &spec, cfg.tasks, &mut tally)?;
    if let Some(mut w) = tally.results.take() {
        w.flush()?;
    }
    let (completed, failed) = (tally.completed, tally.failed);
    let run = spec.nominal_run_time();
    let ideal = (!run.is_zero()).then(|| cfg.agents as f64 / run.as_secs_f64());

    // Phase 2: overhead, one task at a time.
    let overhead_tasks = cfg.overhead_tasks.unwrap_or_else(|| {
        if run <= Duration::from_micros(100) {
            10_000
        } else {
            (5.0 / run.as_secs_f64()).clamp(3.0, 10_000.0) as u64
        }
    });
    let mut overhead = Vec::with_capacity(overhead_tasks as usize);
    let mut overhead_failed = 0;
    let mut overhead_sent = 0;
    while overhead_sent < overhead_tasks && overhead_failed < 3 {
        overhead_sent += 1;
        let t = Instant::now();
        let h = sup.submit(again(&spec))?;
        let o = h
            .wait(Some(WATCHDOG))
            .ok_or_else(|| TasksBenchError::Stalled("overhead task timed out".into()))?;
        let total = t.elapsed();
        match o {
            Outcome::Completed { run_time, .. } => {
                overhead.push(total.saturating_sub(run_time).as_secs_f64() * 1e6)
            }
            Outcome::Failed(_) => overhead_failed += 1,
        }
    }
    overhead.sort_by(f64::total_cmp);
    let status = sup.status();
    let counters = status.counters.clone();

    // Phase 3: idle memory.
    std::thread::sleep(Duration::from_millis(300));
    let rss: Vec<(u64, u64)> = sup
        .status()
        .agents
        .iter()
        .filter(|a| a.pid != 0)
        .map(|a| crate::runtime::procfs::rss_kib(a.pid).unwrap_or((0, 0)))
        .collect();

    // Phase 4: respawn latency.
    let mut respawn = respawn_times(&sup, cfg.respawn_samples)?;
    respawn.sort_by(f64::total_cmp);
    let cgroups = status.isolation.cgroups;

    // The sandbox's cost: the throughput phase with it and without it, in alternating
    // rounds (the best of each counts), and respawns without it.
    let off = start(cfg, SandboxPolicy::off())?;
    // Three rounds each when a round is short, one when it takes seconds.
    let rounds = if wall < 0.5 { 3 } else { 1 };
    let (mut best_on, mut best_off) = (wall, f64::INFINITY);
    let round = |s: &Supervisor| {
        let mut t = Tally {
            completed: 0,
            failed: 0,
            results: None,
        };
        throughput(s, &spec, cfg.tasks, &mut t)
    };
    for _ in 0..rounds {
        best_off = best_off.min(round(&off)?);
        // A single round compares with the phase already run.
        if rounds > 1 {
            best_on = best_on.min(round(&sup)?);
        }
    }
    let mut off_respawn = respawn_times(&off, cfg.respawn_samples.min(20))?;
    off.shutdown(Shutdown::Drain)?;
    sup.shutdown(Shutdown::Drain)?;
    off_respawn.sort_by(f64::total_cmp);

    let mut deaths: BTreeMap<String, u64> = ["signal", "oom", "hang", "exit", "sandbox"]
        .iter()
        .map(|k| (k.to_string(), 0))
        .collect();
    for (k, v) in counters.deaths {
        deaths.insert(k.to_string(), v);
    }
    let tps = cfg.tasks as f64 / wall;
    let off_tps = cfg.tasks as f64 / best_off;
    Ok(TasksBenchReport {
        sandbox_off_tasks_per_second: off_tps,
        sandbox_throughput_ratio: best_off / best_on,
        sandbox_off_respawn_ms_p50: (!off_respawn.is_empty()).then(|| pct(&off_respawn, 0.5)),
        agents: cfg.agents,
        task: cfg.task.clone(),
        tasks: cfg.tasks,
        completed,
        failed,
        wall_seconds: wall,
        tasks_per_second: tps,
        ideal_tasks_per_second: ideal,
        efficiency: ideal.map(|i| tps / i),
        overhead_tasks: overhead_sent,
        overhead_failed,
        overhead_us_p50: pct(&overhead, 0.5),
        overhead_us_p99: pct(&overhead, 0.99),
        agent_restarts: counters.agent_restarts,
        deaths,
        agent_idle_rss_kib_max: rss.iter().map(|r| r.0).max().unwrap_or(0),
        agent_idle_anon_kib_max: rss.iter().map(|r| r.1).max().unwrap_or(0),
        respawn_ms_p50: (!respawn.is_empty()).then(|| pct(&respawn, 0.5)),
        respawn_ms_p99: (!respawn.is_empty()).then(|| pct(&respawn, 0.99)),
        cgroups,
    })
}

/// A supervisor for the benchmark, its agents all ready.
fn start(cfg: &TasksBenchConfig, sandbox: SandboxPolicy) -> Result<Supervisor, TasksBenchError> {
    let mut b = Supervisor::builder()
        .agents(cfg.agents)
        .limits(cfg.limits)
        .require_cgroups(cfg.require_cgroups)
        .sandbox(sandbox);
    if let Some(p) = &cfg.agent_bin {
        b = b.agent_bin(p);
    }
    let sup = b.build()?;
    // Every agent ready, so the phases measure work, not start-up.
    if !super::all_ready(&sup, WATCHDOG) {
        return Err(TasksBenchError::Stalled(
            "agents did not become ready".into(),
        ));
    }
    Ok(sup)
}

/// Submits `tasks` copies of `spec` as fast as they go and collects them; the wall time.
fn throughput(
    sup: &Supervisor,
    spec: &TaskSpec,
    tasks: u64,
    tally: &mut Tally,
) -> Result<f64, TasksBenchError> {
    let start = Instant::now();
    for _ in 0..tasks {
        sup.submit_detached(again(spec))?;
        while let Ok((id, o)) = sup.recv(Some(Duration::ZERO)) {
            tally.record(id, &o)?;
        }
    }
    let mut last = Instant::now();
    while tally.completed + tally.failed < tasks {
        match sup.recv(Some(Duration::from_millis(100))) {
            Ok((id, o)) => {
                tally.record(id, &o)?;
                last = Instant::now();
            }
            Err(RecvError::Timeout) if last.elapsed() <= WATCHDOG => {}
            Err(e) => {
                return Err(TasksBenchError::Stalled(format!(
                    "{e} ({} of {} done)",
                    tally.completed + tally.failed,
                    tasks
                )))
            }
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// SIGKILL of slot 0's agent to its replacement ready, `samples` times (ms, unsorted).
fn respawn_times(sup: &Supervisor, samples: u32) -> Result<Vec<f64>, TasksBenchError> {
    let mut respawn = Vec::new();
    for _ in 0..samples {
        let before = sup.status().agents[0].clone();
        if before.pid == 0 || before.phase != "ready" {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let t = Instant::now();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(before.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        loop {
            let a = sup.status().agents[0].clone();
            if a.epoch > before.epoch && a.phase == "ready" {
                respawn.push(t.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if t.elapsed() > WATCHDOG {
                return Err(TasksBenchError::Stalled(
                    "replacement agent never ready".into(),
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(respawn)
}

/// A human-readable summary.
pub fn render(r: &TasksBenchReport) -> String {
    let mut out = vec![
        format!(
            "{} × {} on {} agents (cgroups: {})",
            r.tasks,
            r.task,
            r.agents,
            r.cgroups.unwrap_or("none")
        ),
        format!(
            "  throughput     {:>12.0} tasks/s  ({} completed, {} failed, {:.2} s)",
            r.tasks_per_second, r.completed, r.failed, r.wall_seconds
        ),
    ];
    if let (Some(i), Some(e)) = (r.ideal_tasks_per_second, r.efficiency) {
        out.push(format!(
            "  ideal          {i:>12.0} tasks/s  (efficiency {:.1}%)",
            e * 100.0
        ));
    }
    out.push(format!(
        "  overhead       p50 {:.2} µs, p99 {:.2} µs  ({} tasks one at a time)",
        r.overhead_us_p50, r.overhead_us_p99, r.overhead_tasks
    ));
    out.push(format!(
        "  idle agent     {} KiB resident, {} KiB private",
        r.agent_idle_rss_kib_max, r.agent_idle_anon_kib_max
    ));
    if let (Some(a), Some(b)) = (r.respawn_ms_p50, r.respawn_ms_p99) {
        out.push(format!("  kill→ready     p50 {a:.2} ms, p99 {b:.2} ms"));
    }
    out.push(format!(
        "  no sandbox     {:>12.0} tasks/s  (with it: {:.3}×){}",
        r.sandbox_off_tasks_per_second,
        r.sandbox_throughput_ratio,
        r.sandbox_off_respawn_ms_p50
            .map(|p| format!(", kill→ready p50 {p:.2} ms"))
            .unwrap_or_default()
    ));
    out.push(format!(
        "  restarts {}, deaths {:?}",
        r.agent_restarts, r.deaths
    ));
    out.join("\n")
}
