//! `swarm bench sched`: what the scheduler does with contended agents, in one run.
//!
//! 1. Priorities: a flood of low-priority tasks (`spin`, `--low-task` long) submitted at
//!    once, then high-priority ones every few milliseconds while the flood runs. A task's
//!    wait is from its submission to its dispatch, by the supervisor's clock. Agents hold
//!    one task at a time here (`queue_depth` 1): a priority orders the tasks waiting for
//!    an agent, not those an agent has queued already.
//! 2. Strategies: the same burst of mixed kinds (`busy:500us` and `spin:2ms`) on three
//!    agents held to 0.25, 0.5 and 1 core by their cgroups, under round-robin,
//!    least-loaded and adaptive, queues 64 deep (deep enough for the choice to matter:
//!    with a shallow queue every strategy comes close to sending work wherever room
//!    opens). Tasks/s of each.
//! 3. The elastic pool: a burst of `spin:1ms` tasks onto a pool of `1..8` agents: the time
//!    from the burst to all eight ready, from the last task's end to one agent again (it
//!    retires agents idle for `--retire-after`), and the tasks lost or doubled.

use super::pct;
use crate::runtime::cgroup::Limits;
use crate::runtime::supervisor::{
    AgentClass, GraphNode, NodeEnd, Scheduling, Shutdown, Supervisor, SupervisorBuilder,
};
use crate::runtime::task::{kinds, TaskSpec};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The longest the benchmark waits for any one task.
const WATCHDOG: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone)]
pub struct SchedBenchConfig {
    /// Low-priority tasks in the flood.
    pub low_tasks: usize,
    /// High-priority tasks sent while it runs.
    pub high_tasks: usize,
    /// Run time of each task of the priority phase.
    pub low_task: Duration,
    /// Tasks in each strategy's burst.
    pub burst: usize,
    /// Tasks in the elastic pool's burst.
    pub elastic_burst: usize,
    /// How long an agent of the pool may idle before it retires.
    pub retire_after: Duration,
    /// Fail without cgroups (the strategies phase needs them to make agents unequal).
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SchedBenchReport {
    /// Run time of a task of the priority phase (µs).
    pub low_task_us: f64,
    /// High-priority tasks' wait, median (µs).
    pub priority_high_wait_us_p50: f64,
    /// High-priority tasks' wait, 99th percentile (µs).
    pub priority_high_wait_us_p99: f64,
    /// Low-priority tasks' wait, 99th percentile (µs).
    pub priority_low_wait_us_p99: f64,
    /// Round-robin on the unequal pool (tasks/s).
    pub round_robin_tasks_per_s: f64,
    /// Least-loaded on it.
    pub least_loaded_tasks_per_s: f64,
    /// Adaptive on it.
    pub adaptive_tasks_per_s: f64,
    /// `adaptive_tasks_per_s / round_robin_tasks_per_s`.
    pub adaptive_vs_round_robin: f64,
    /// Whether the agents' CPU quotas were in force (cgroups); without them the pool is
    /// not unequal and the strategies' figures say little.
    pub quotas_in_force: bool,
    /// From the burst's first submission to all 8 agents ready (ms).
    pub scale_up_ms: f64,
    /// From the last task's end to one agent running again (s).
    pub scale_down_s: f64,
    /// Tasks of the burst that did not complete (a run ends each task once).
    pub scale_lost_tasks: u64,
    /// The idle time after which the pool retires an agent (s).
    pub retire_after_s: f64,
}

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedBenchError {
    /// The supervisor refused.
    #[error(transparent)]
    Supervisor(#[from] crate::runtime::supervisor::Error),
    /// A task failed or never ended.
    #[error("{0}")]
    Failed(String),
}

fn base(cfg: &SchedBenchConfig) -> SupervisorBuilder {
    let mut b = Supervisor::builder().require_cgroups(cfg.require_cgroups);
    if let Some(p) = &cfg.agent_bin {
        b = b.agent_bin(p);
    }
    b
}

fn ready(sup: &Supervisor) -> Result<(), SchedBenchError> {
    super::all_ready(sup, WATCHDOG)
        .then_some(())
        .ok_or_else(|| SchedBenchError::Failed("agents did not become ready".into()))
}

/// Every end of a run, or the reason one failed.
fn ends(run: crate::runtime::supervisor::GraphRun<'_>) -> Result<Vec<NodeEnd>, SchedBenchError> {
    super::all_completed(run.wait_all(Some(WATCHDOG))).map_err(SchedBenchError::Failed)
}

fn waits_us(ends: &[NodeEnd]) -> Vec<f64> {
    let mut w: Vec<f64> = ends
        .iter()
        .map(|e| e.timing.dispatched_ns.saturating_sub(e.timing.submitted_ns) as f64 / 1e3)
        .collect();
    w.sort_by(f64::total_cmp);
    w
}

/// Runs the three phases.
pub fn run(cfg: &SchedBenchConfig) -> Result<SchedBenchReport, SchedBenchError> {
    // Phase 1: priorities.
    let sup = base(cfg).agents(2).queue_depth(1).build()?;
    ready(&sup)?;
    let spin = |priority: i32| {
        GraphNode::new(
            TaskSpec::new(kinds::SPIN, cfg.low_task.as_nanos() as u64).with_priority(priority),
            Vec::new(),
        )
    };
    let flood = sup.submit_graph((0..cfg.low_tasks).map(|_| spin(0)).collect())?;
    // High ones spread over the first half of the flood's expected run.
    let span = cfg.low_task.mul_f64(cfg.low_tasks as f64 / 2.0 / 2.0);
    let gap = span.div_f64(cfg.high_tasks.max(1) as f64);
    let mut highs = Vec::with_capacity(cfg.high_tasks);
    for _ in 0..cfg.high_tasks {
        std::thread::sleep(gap);
        highs.push(sup.submit_graph(vec![spin(10)])?);
    }
    let mut high_ends = Vec::new();
    for run in highs {
        high_ends.extend(ends(run)?);
    }
    let low_ends = ends(flood)?;
    let (high, low) = (waits_us(&high_ends), waits_us(&low_ends));
    sup.shutdown(Shutdown::Drain)?;

    // Phase 2: strategies on an unequal pool.
    let mut rates = Vec::new();
    let mut quotas = false;
    for scheduling in [
        Scheduling::RoundRobin,
        Scheduling::LeastLoaded,
        Scheduling::Adaptive,
    ] {
        let class = |name: &str, cores: f64| {
            AgentClass::new(name, 1, None).with_limits(Limits {
                cpu_cores: Some(cores),
                ..Limits::default()
            })
        };
        let sup = base(cfg)
            .agent_classes(vec![
                class("quarter", 0.25),
                class("half", 0.5),
                class("whole", 1.0),
            ])
            .queue_depth(64)
            .scheduling(scheduling)
            .build()?;
        ready(&sup)?;
        quotas = sup.status().isolation.cgroups.is_some();
        let burst: Vec<GraphNode> = (0..cfg.burst)
            .map(|i| {
                let spec = if i % 2 == 0 {
                    TaskSpec::new(kinds::BUSY, 500_000)
                } else {
                    TaskSpec::new(kinds::SPIN, 2_000_000)
                };
                GraphNode::new(spec, Vec::new())
            })
            .collect();
        let t = Instant::now();
        ends(sup.submit_graph(burst)?)?;
        rates.push(cfg.burst as f64 / t.elapsed().as_secs_f64());
        sup.shutdown(Shutdown::Drain)?;
    }

    // Phase 3: the elastic pool.
    let (scale_up, scale_down, lost) = elastic(cfg)?;
    Ok(SchedBenchReport {
        low_task_us: cfg.low_task.as_secs_f64() * 1e6,
        priority_high_wait_us_p50: pct(&high, 0.5),
        priority_high_wait_us_p99: pct(&high, 0.99),
        priority_low_wait_us_p99: pct(&low, 0.99),
        round_robin_tasks_per_s: rates[0],
        least_loaded_tasks_per_s: rates[1],
        adaptive_tasks_per_s: rates[2],
        adaptive_vs_round_robin: rates[2] / rates[0],
        quotas_in_force: quotas,
        scale_up_ms: scale_up.as_secs_f64() * 1e3,
        scale_down_s: scale_down.as_secs_f64(),
        scale_lost_tasks: lost,
        retire_after_s: cfg.retire_after.as_secs_f64(),
    })
}

/// Agents of the pool running (not parked) and ready.
fn pool(sup: &Supervisor) -> (usize, usize) {
    let agents = sup.status().agents;
    let running = agents
        .iter()
        .filter(|a| !matches!(a.phase, "parked" | "stopped"))
        .count();
    let ready = agents.iter().filter(|a| a.phase == "ready").count();
    (running, ready)
}

/// The burst onto `1..8`: time to all ready, time back to one, tasks lost.
fn elastic(cfg: &SchedBenchConfig) -> Result<(Duration, Duration, u64), SchedBenchError> {
    const MAX: usize = 8;
    let sup = base(cfg)
        .elastic(1, MAX as u32)
        .retire_after(cfg.retire_after)
        .build()?;
    let deadline = Instant::now() + WATCHDOG;
    while pool(&sup) != (1, 1) {
        if Instant::now() > deadline {
            return Err(SchedBenchError::Failed(
                "the pool never settled at one".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let burst: Vec<GraphNode> = (0..cfg.elastic_burst)
        .map(|_| GraphNode::new(TaskSpec::new(kinds::SPIN, 1_000_000), Vec::new()))
        .collect();
    let t = Instant::now();
    let mut run = sup.submit_graph(burst)?;
    let mut scale_up = None;
    // A run yields each task once: what is lost is what did not complete.
    let mut completed = 0u64;
    while run.open() > 0 {
        if scale_up.is_none() && pool(&sup).1 == MAX {
            scale_up = Some(t.elapsed());
        }
        if let Some(end) = run.join_next(Some(Duration::from_millis(1))) {
            completed += u64::from(end.outcome.is_completed());
        } else if Instant::now() > deadline {
            return Err(SchedBenchError::Failed("the burst never ended".into()));
        }
    }
    drop(run);
    let last = Instant::now();
    let scale_up = scale_up.ok_or_else(|| {
        SchedBenchError::Failed(format!(
            "the pool never had all {MAX} agents ready: a burst of {} was too small to need them",
            cfg.elastic_burst
        ))
    })?;
    while pool(&sup).0 > 1 {
        if last.elapsed() > WATCHDOG {
            return Err(SchedBenchError::Failed("the pool never shrank".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let scale_down = last.elapsed();
    let lost = cfg.elastic_burst as u64 - completed;
    sup.shutdown(Shutdown::Drain)?;
    Ok((scale_up, scale_down, lost))
}

/// The report as text.
pub fn render(r: &SchedBenchReport) -> String {
    format!(
        "priorities, low tasks of {:.0} µs under a flood: high-priority wait {:.0} µs p50, \
         {:.0} µs p99; low-priority wait {:.0} µs p99\n\
         strategies on agents of 0.25, 0.5 and 1 core{}: round-robin {:.0} tasks/s, \
         least-loaded {:.0}, adaptive {:.0} ({:.2}x round-robin)\n\
         elastic pool 1..8: all 8 ready {:.1} ms after a burst, back to 1 {:.2} s after it \
         ended (retiring agents idle {:.1} s), {} tasks lost\n",
        r.low_task_us,
        r.priority_high_wait_us_p50,
        r.priority_high_wait_us_p99,
        r.priority_low_wait_us_p99,
        if r.quotas_in_force {
            ""
        } else {
            " (quotas NOT in force: no cgroups)"
        },
        r.round_robin_tasks_per_s,
        r.least_loaded_tasks_per_s,
        r.adaptive_tasks_per_s,
        r.adaptive_vs_round_robin,
        r.scale_up_ms,
        r.scale_down_s,
        r.retire_after_s,
        r.scale_lost_tasks
    )
}
