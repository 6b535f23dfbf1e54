//! `swarm bench pipeline`: `swarm run` against the same extraction code run in this
//! process on one thread, in one run, so the ratios survive a noisy machine.
//!
//! 1. In-process: every document extracted one after another on one thread
//!    ([`crate::pdf::extract_file`]) and serialized to its JSON line, as `swarm extract`
//!    does: the single-thread rate.
//! 2. Swarm: the same documents through `swarm run` with each agent count asked for;
//!    efficiency = pages/s ÷ (agents × the single-thread rate).
//! 3. Specialists, when `--roles` is given: the same documents through the four roles.
//! 4. One long document (generated, `--long-pages`) with 1 agent and with 2: the speed-up
//!    from spreading one document's page ranges over agents.
//!
//! The configurations are measured in `repeat` rounds, each running every one once, and
//! the best time of each counts. Swarm times include starting and stopping the agents.
//!
//! To say where a shortfall comes from, each swarm row also reports:
//! - the agents' CPU seconds (reaped children) against the in-process CPU: extra work
//!   in the agents (process start, request and reply encoding, a cold heap);
//! - this process's CPU seconds: the supervisor and the job, which share the host's
//!   cores with the agents;
//! - the same configuration run with no documents: the fixed cost of starting and
//!   stopping the swarm, and the efficiency once that cost is taken out (what a long run
//!   tends to).
//! - the job thread's CPU per page (every reply passes through it): the most pages/s one
//!   supervisor can take, however many agents it has.

use crate::pdf::demo::{write_corpus, DemoSpec};
use crate::pdf::job::{self, Roles, RunConfig, RunError};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct PipelineBenchConfig {
    /// The documents; empty means a generated corpus (as `swarm demo` writes).
    pub files: Vec<PathBuf>,
    /// Agent counts to measure.
    pub agents: Vec<u32>,
    /// Also measure these specialists.
    pub roles: Option<Roles>,
    /// Documents of the generated corpus, when `files` is empty.
    pub documents: u32,
    /// Pages of the long document (0 skips that phase).
    pub long_pages: u32,
    /// Runs per measurement; the best counts.
    pub repeat: u32,
    /// Pages per task.
    pub chunk_pages: u32,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
    /// Where generated documents go (removed afterwards).
    pub scratch: PathBuf,
}

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Agents (0 = in process, one thread).
    pub agents: u32,
    /// Best wall time.
    pub seconds: f64,
    /// Pages per second.
    pub pages_per_second: f64,
    /// Pages/s ÷ (agents × the single-thread rate); 1 for the in-process row.
    pub efficiency: f64,
    /// CPU seconds (user + system) the agents used in the best run; for the in-process
    /// row, this process's.
    pub worker_cpu_seconds: f64,
    /// CPU seconds this process (supervisor and job) used in the best run; 0 in process.
    pub supervisor_cpu_seconds: f64,
    /// CPU seconds of the job's own thread (routing every reply and writing every
    /// line) in the best run, less what it used in the empty run (starting and stopping
    /// the swarm); 0 in process. Pages ÷ this is the most pages/s one supervisor can
    /// take, however many agents it has.
    pub job_thread_cpu_seconds: f64,
    /// Best wall time of the same configuration with no documents: starting and stopping
    /// the agents. 0 in process.
    pub empty_run_seconds: f64,
    /// Efficiency over the time left after the empty run's: the rate a long run tends to.
    pub steady_efficiency: f64,
    /// CPU per page, all of it (agents and supervisor; this process's in process), µs.
    pub cpu_per_page_us: f64,
    /// The agents' CPU per page, µs; null in process.
    pub agent_cpu_per_page_us: Option<f64>,
    /// The agents' CPU per page ÷ the in-process CPU per page; null in process.
    pub agent_cpu_ratio: Option<f64>,
    /// This process's CPU (supervisor and job) per page, µs, start and stop included;
    /// null in process.
    pub supervisor_cpu_per_page_us: Option<f64>,
    /// The same less the empty run's CPU (the fixed cost of starting and stopping the
    /// swarm), per page, µs: what each more page costs the supervisor.
    pub supervisor_steady_cpu_per_page_us: Option<f64>,
    /// This process's CPU in the empty run, seconds.
    pub supervisor_fixed_cpu_seconds: Option<f64>,
    /// `supervisor_steady_cpu_per_page_us ÷ agent_cpu_per_page_us`: the supervisor's
    /// cores per agent core.
    pub supervisor_share: Option<f64>,
}

/// One timed run.
#[derive(Debug, Clone, Copy)]
struct Measured {
    seconds: f64,
    pages: u64,
    worker_cpu: f64,
    own_cpu: f64,
    thread_cpu: f64,
}

impl Measured {
    const NONE: Measured = Measured {
        seconds: f64::INFINITY,
        pages: 0,
        worker_cpu: 0.0,
        own_cpu: 0.0,
        thread_cpu: 0.0,
    };

    fn keep_best(&mut self, m: Measured) {
        if m.seconds < self.seconds {
            *self = m;
        }
    }
}

/// CPU seconds (user + system) of this process, or of its reaped children.
fn cpu_seconds(who: nix::sys::resource::UsageWho) -> f64 {
    let Ok(u) = nix::sys::resource::getrusage(who) else {
        return 0.0;
    };
    let t = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 * 1e-6;
    t(u.user_time()) + t(u.system_time())
}

/// Times `f`, with the CPU it and this process's children used meanwhile.
fn timed(f: impl FnOnce() -> Result<u64, RunError>) -> Result<Measured, RunError> {
    use nix::sys::resource::UsageWho::{RUSAGE_CHILDREN, RUSAGE_SELF, RUSAGE_THREAD};
    let (children, own) = (cpu_seconds(RUSAGE_CHILDREN), cpu_seconds(RUSAGE_SELF));
    let thread = cpu_seconds(RUSAGE_THREAD);
    let start = Instant::now();
    let pages = f()?;
    Ok(Measured {
        seconds: start.elapsed().as_secs_f64(),
        pages,
        worker_cpu: cpu_seconds(RUSAGE_CHILDREN) - children,
        own_cpu: cpu_seconds(RUSAGE_SELF) - own,
        thread_cpu: cpu_seconds(RUSAGE_THREAD) - thread,
    })
}

/// The long-document phase.
#[derive(Debug, Clone, Serialize)]
pub struct LongDoc {
    /// Its pages.
    pub pages: u32,
    /// Best time with one agent.
    pub one_agent_seconds: f64,
    /// Best time with two agents.
    pub two_agents_seconds: f64,
    /// One agent's time ÷ two agents' time.
    pub speedup: f64,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineBenchReport {
    /// Documents.
    pub documents: usize,
    /// Pages in them.
    pub pages: u64,
    /// CPUs this process may use.
    pub cpus: usize,
    /// The single-thread in-process rate.
    pub in_process: Row,
    /// `swarm run` with generalists, per agent count.
    pub swarm: Vec<Row>,
    /// `swarm run` with specialists.
    pub specialists: Option<Row>,
    /// Agents per role of the specialists' row.
    pub roles: Option<String>,
    /// The long document.
    pub long_document: Option<LongDoc>,
    /// Pages/s projected for many agents from the largest measured agent count (see
    /// [`Projection`]).
    pub projected: Vec<Projection>,
    /// What the agents' sandbox costs: the largest agent count with it and without it,
    /// in the same rounds.
    pub sandbox: Option<SandboxCost>,
    /// CPU per page of checking the agents' replies (`CheckedReply::parse`), µs: the same
    /// pages encoded as agents send them, a reply per range, checked on this thread (the
    /// best of the rounds). Up to 8 agents the job thread does it; above, checker threads.
    pub reply_check_cpu_per_page_us: f64,
}

/// `swarm run` with the agents' sandbox on and off ([`crate::runtime::sandbox`]), each
/// the best of the same rounds.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxCost {
    /// Agents.
    pub agents: u32,
    /// Pages/s with every measure the kernel allows (the default).
    pub on_pages_per_second: f64,
    /// Pages/s with none.
    pub off_pages_per_second: f64,
    /// On ÷ off.
    pub ratio: f64,
}

/// Pages/s projected for `agents` agents, each on a core of its own, with the cores the
/// supervisor needs beside them: each agent takes `agent_cpu_per_page_us` of CPU a page,
/// so `agents` of them take `agents × 1e6 ÷ agent_cpu_per_page_us` pages/s; the
/// supervisor spends `supervisor_steady_cpu_per_page_us` on each, so it needs that rate
/// times its CPU per page in cores; and its job thread, which every reply passes through,
/// caps the rate at `1e6 ÷ job_thread_cpu_per_page_us` whatever the cores. Above 8 agents
/// the replies' checks leave the job thread for checker threads (still the supervisor's
/// cores), so there the ceiling is taken without `reply_check_cpu_per_page_us`. Measured on
/// this host's cores, it assumes the per-page costs stay as they are with more agents
/// (no memory-bandwidth or cache contention); a lent many-core host measures instead.
#[derive(Debug, Clone, Serialize)]
pub struct Projection {
    /// Agents (and their cores).
    pub agents: u32,
    /// Pages/s.
    pub pages_per_second: f64,
    /// Cores the supervisor needs beside the agents'.
    pub supervisor_cores: f64,
    /// Whether the job thread's ceiling, not the agents, sets the rate.
    pub job_thread_bound: bool,
}

/// Projects `row`'s per-page costs to `agents` agents.
fn project(row: &Row, pages: u64, check: f64, agents: u32) -> Option<Projection> {
    let agent = row.agent_cpu_per_page_us?;
    let sup = row.supervisor_steady_cpu_per_page_us?;
    let mut job = row.job_thread_cpu_seconds / pages.max(1) as f64 * 1e6;
    let inline = |n: u32| n as usize <= crate::pdf::job::INLINE_CHECK_AGENTS;
    if inline(row.agents) && !inline(agents) {
        job = (job - check).max(0.0);
    }
    let by_agents = f64::from(agents) * 1e6 / agent.max(1e-9);
    let ceiling = if job > 0.0 { 1e6 / job } else { f64::INFINITY };
    let rate = by_agents.min(ceiling);
    Some(Projection {
        agents,
        pages_per_second: rate,
        supervisor_cores: rate * sup / 1e6,
        job_thread_bound: ceiling < by_agents,
    })
}

/// The documents' pages encoded as agents reply: one reply per range of `chunk` pages.
fn encoded_replies(files: &[PathBuf], chunk: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for f in files {
        let doc = crate::pdf::extract_file(f);
        let mut pages = doc.pages.into_iter().peekable();
        let mut first = 1;
        while pages.peek().is_some() {
            let mut reply = crate::pdf::wire::PageReply {
                page_count: doc.page_count,
                first,
                ..Default::default()
            };
            for p in pages.by_ref().take(chunk.max(1) as usize) {
                reply.push(p);
            }
            first += chunk.max(1);
            out.extend(reply.encode().ok());
        }
    }
    out
}

fn swarm_seconds(
    cfg: &PipelineBenchConfig,
    files: &[PathBuf],
    agents: u32,
    roles: Option<Roles>,
    sandbox: bool,
) -> Result<Measured, RunError> {
    let run = RunConfig {
        agents,
        min_agents: None,
        files: files.to_vec(),
        memory_limit: None,
        timeout_per_doc: Duration::from_secs(300),
        chunk_pages: cfg.chunk_pages,
        require_cgroups: cfg.require_cgroups,
        agent_bin: cfg.agent_bin.clone(),
        roles,
        sandbox: if sandbox {
            crate::runtime::sandbox::SandboxPolicy::default()
        } else {
            crate::runtime::sandbox::SandboxPolicy::off()
        },
        // The corpus has no duplicates: the extraction alone is measured.
        cache: false,
    };
    timed(|| Ok(job::run(&run, &mut std::io::sink(), &mut |_, _| {})?.pages))
}

/// Runs the benchmark.
pub fn run(cfg: &PipelineBenchConfig) -> Result<PipelineBenchReport, RunError> {
    let generated = cfg.files.is_empty();
    let files = if generated {
        let spec = DemoSpec {
            documents: cfg.documents.max(1),
            ..DemoSpec::default()
        };
        write_corpus(&cfg.scratch.join("corpus"), spec)?
            .into_iter()
            .map(|d| d.path)
            .collect()
    } else {
        cfg.files.clone()
    };
    let result = measure(cfg, &files);
    if generated || cfg.long_pages > 0 {
        let _ = std::fs::remove_dir_all(&cfg.scratch);
    }
    result
}

fn measure(cfg: &PipelineBenchConfig, files: &[PathBuf]) -> Result<PipelineBenchReport, RunError> {
    let long = if cfg.long_pages == 0 {
        Vec::new()
    } else {
        let d = write_corpus(
            &cfg.scratch.join("long"),
            DemoSpec {
                documents: 1,
                min_pages: cfg.long_pages,
                max_pages: cfg.long_pages,
                seed: 0x10_000,
            },
        )?;
        vec![d[0].path.clone()]
    };
    // Rounds, each measuring every configuration once: drift on a shared machine hits
    // them all alike, and the best of each counts.
    let mut local = Measured::NONE;
    let mut swarm = vec![(Measured::NONE, Measured::NONE); cfg.agents.len()];
    let mut special = (Measured::NONE, Measured::NONE);
    let mut unsandboxed = Measured::NONE;
    let (mut one, mut two) = (f64::INFINITY, f64::INFINITY);
    let replies = encoded_replies(files, cfg.chunk_pages);
    let mut checks = Measured::NONE;
    for _ in 0..cfg.repeat.max(1) {
        checks.keep_best(timed(|| {
            Ok(replies
                .iter()
                .map(|r| {
                    let c = crate::pdf::wire::CheckedReply::parse(r.clone());
                    c.map_or(0, |c| c.pages().len() as u64)
                })
                .sum())
        })?);
        // In process, one thread, as `swarm extract` does: the product is a JSON line per
        // document.
        local.keep_best(timed(|| {
            Ok(files
                .iter()
                .map(|f| {
                    let r = crate::pdf::extract_file(f);
                    std::hint::black_box(r.line());
                    r.pages.len() as u64
                })
                .sum())
        })?);
        for (k, &n) in cfg.agents.iter().enumerate() {
            swarm[k]
                .0
                .keep_best(swarm_seconds(cfg, files, n, None, true)?);
            swarm[k]
                .1
                .keep_best(swarm_seconds(cfg, &[], n, None, true)?);
        }
        if let Some(&n) = cfg.agents.iter().max() {
            unsandboxed.keep_best(swarm_seconds(cfg, files, n, None, false)?);
        }
        if let Some(r) = cfg.roles {
            special
                .0
                .keep_best(swarm_seconds(cfg, files, r.total(), Some(r), true)?);
            special
                .1
                .keep_best(swarm_seconds(cfg, &[], r.total(), Some(r), true)?);
        }
        if !long.is_empty() {
            one = one.min(swarm_seconds(cfg, &long, 1, None, true)?.seconds);
            two = two.min(swarm_seconds(cfg, &long, 2, None, true)?.seconds);
        }
    }
    let pages = local.pages;
    let single = pages as f64 / local.seconds;
    let local_per_page = local.own_cpu / pages.max(1) as f64 * 1e6;
    // The clone each check takes is an agent's reply copied out of the slab, which the
    // job pays too.
    let check = checks.thread_cpu / checks.pages.max(1) as f64 * 1e6;
    let row = |agents: u32, (m, empty): (Measured, Measured)| {
        let rate = m.pages as f64 / m.seconds;
        let ideal = f64::from(agents.max(1)) * single;
        let steady = m.pages as f64 / (m.seconds - empty.seconds).max(1e-9);
        let per_page = |cpu: f64| cpu / m.pages.max(1) as f64 * 1e6;
        let agent = per_page(m.worker_cpu);
        let sup_steady = per_page((m.own_cpu - empty.own_cpu).max(0.0));
        Row {
            cpu_per_page_us: per_page(m.worker_cpu + m.own_cpu),
            agent_cpu_per_page_us: Some(agent),
            agent_cpu_ratio: Some(agent / local_per_page.max(1e-9)),
            supervisor_cpu_per_page_us: Some(per_page(m.own_cpu)),
            supervisor_steady_cpu_per_page_us: Some(sup_steady),
            supervisor_fixed_cpu_seconds: Some(empty.own_cpu),
            supervisor_share: Some(sup_steady / agent.max(1e-9)),
            agents,
            seconds: m.seconds,
            pages_per_second: rate,
            efficiency: rate / ideal,
            worker_cpu_seconds: m.worker_cpu,
            supervisor_cpu_seconds: m.own_cpu,
            job_thread_cpu_seconds: (m.thread_cpu - empty.thread_cpu).max(0.0),
            empty_run_seconds: empty.seconds,
            steady_efficiency: steady / ideal,
        }
    };
    let swarm_rows: Vec<Row> = cfg
        .agents
        .iter()
        .zip(&swarm)
        .map(|(&n, &m)| row(n, m))
        .collect();
    let largest = swarm_rows.iter().max_by_key(|r| r.agents);
    let projected = largest
        .map(|r| {
            [16, 64]
                .into_iter()
                .filter_map(|n| project(r, pages, check, n))
                .collect()
        })
        .unwrap_or_default();
    let sandbox = largest.map(|r| {
        let off = unsandboxed.pages as f64 / unsandboxed.seconds;
        SandboxCost {
            agents: r.agents,
            on_pages_per_second: r.pages_per_second,
            off_pages_per_second: off,
            ratio: r.pages_per_second / off,
        }
    });
    Ok(PipelineBenchReport {
        sandbox,
        documents: files.len(),
        pages,
        cpus: crate::runtime::spawn::available_cpus(),
        reply_check_cpu_per_page_us: check,
        in_process: Row {
            agents: 0,
            seconds: local.seconds,
            pages_per_second: single,
            efficiency: 1.0,
            worker_cpu_seconds: local.own_cpu,
            supervisor_cpu_seconds: 0.0,
            job_thread_cpu_seconds: 0.0,
            empty_run_seconds: 0.0,
            steady_efficiency: 1.0,
            cpu_per_page_us: local_per_page,
            agent_cpu_per_page_us: None,
            agent_cpu_ratio: None,
            supervisor_cpu_per_page_us: None,
            supervisor_steady_cpu_per_page_us: None,
            supervisor_fixed_cpu_seconds: None,
            supervisor_share: None,
        },
        swarm: swarm_rows,
        projected,
        specialists: cfg.roles.map(|r| row(r.total(), special)),
        roles: cfg.roles.map(|r| {
            format!(
                "parser={},extractor={},analyzer={},aggregator={}",
                r.parser, r.extractor, r.analyzer, r.aggregator
            )
        }),
        long_document: (!long.is_empty()).then(|| LongDoc {
            pages: cfg.long_pages,
            one_agent_seconds: one,
            two_agents_seconds: two,
            speedup: one / two,
        }),
    })
}

/// The human-readable table.
pub fn render(r: &PipelineBenchReport) -> String {
    let mut out = vec![
        format!(
            "{} documents, {} pages, {} CPUs",
            r.documents, r.pages, r.cpus
        ),
        format!(
            "  {:<28} {:>8} {:>8} {:>11} {:>10} {:>10} {:>10} {:>8}",
            "", "seconds", "pages/s", "efficiency", "work CPU", "sup. CPU", "empty run", "steady"
        ),
    ];
    let line = |name: String, row: &Row| {
        format!(
            "  {:<28} {:>8.3} {:>8.0} {:>10.1}% {:>9.3}s {:>9.3}s {:>9.3}s {:>7.1}%",
            name,
            row.seconds,
            row.pages_per_second,
            row.efficiency * 100.0,
            row.worker_cpu_seconds,
            row.supervisor_cpu_seconds,
            row.empty_run_seconds,
            row.steady_efficiency * 100.0
        )
    };
    out.push(line("in process, 1 thread".into(), &r.in_process));
    for row in &r.swarm {
        out.push(line(format!("swarm, {} agents", row.agents), row));
    }
    if let (Some(row), Some(roles)) = (&r.specialists, &r.roles) {
        out.push(line(format!("specialists {roles}"), row));
    }
    if let Some(row) = r
        .swarm
        .last()
        .filter(|row| row.job_thread_cpu_seconds > 0.0)
    {
        let per_page = row.job_thread_cpu_seconds / r.pages.max(1) as f64;
        out.push(format!(
            "  job thread ({} agents): {:.1} us of CPU per page, so one supervisor takes at most about {:.0} pages/s",
            row.agents,
            per_page * 1e6,
            1.0 / per_page.max(1e-12)
        ));
    }
    out.push(format!(
        "  checking replies: {:.1} us of CPU per page (on the job thread up to {} agents)",
        r.reply_check_cpu_per_page_us,
        crate::pdf::job::INLINE_CHECK_AGENTS
    ));
    for row in &r.swarm {
        if let (Some(a), Some(ratio), Some(s), Some(share)) = (
            row.agent_cpu_per_page_us,
            row.agent_cpu_ratio,
            row.supervisor_steady_cpu_per_page_us,
            row.supervisor_share,
        ) {
            out.push(format!(
                "  per page, {} agents: agents {a:.1} us ({ratio:.3}x in process), supervisor {s:.1} us past its fixed {:.3} s ({:.1}% of an agent's)",
                row.agents,
                row.supervisor_fixed_cpu_seconds.unwrap_or(0.0),
                share * 100.0
            ));
        }
    }
    for p in &r.projected {
        out.push(format!(
            "  projected, {} agents on as many cores: {:.0} pages/s, the supervisor needing {:.2} cores{}",
            p.agents,
            p.pages_per_second,
            p.supervisor_cores,
            if p.job_thread_bound { " (bound by the job thread)" } else { "" }
        ));
    }
    if let Some(c) = &r.sandbox {
        out.push(format!(
            "  sandbox, {} agents: on {:.0} pages/s, off {:.0} pages/s, on/off {:.3}",
            c.agents, c.on_pages_per_second, c.off_pages_per_second, c.ratio
        ));
    }
    if let Some(l) = &r.long_document {
        out.push(format!(
            "  one {}-page document: 1 agent {:.3} s, 2 agents {:.3} s, speed-up {:.2}x",
            l.pages, l.one_agent_seconds, l.two_agents_seconds, l.speedup
        ));
    }
    out.join("\n")
}
