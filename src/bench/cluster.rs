//! `swarm bench cluster`: documents through NATS JetStream (`swarm submit` to warm
//! `swarm worker`s) against the same documents through `swarm run`, in alternating
//! rounds of one run, with 1 and 2 workers.
//!
//! Workers run in this process (each its own supervisor and agents, as on its own host),
//! started before the timed part, as a cluster's are; the local run is timed whole
//! (starting its agents included, about 20 ms here). With no `--nats`, a `nats-server`
//! from `PATH` is started on loopback ([`LocalServer`]).

use crate::cluster::server::LocalServer;
use crate::cluster::submit::{run_submit, SubmitConfig};
use crate::cluster::worker::{run_worker, WorkerConfig};
use crate::cluster::ClusterError;
use crate::pdf::job;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct ClusterBenchConfig {
    /// The server; `None` starts one.
    pub nats: Option<String>,
    /// Documents of the generated corpus.
    pub documents: u32,
    /// Agents of each worker, and of the local run.
    pub agents: u32,
    /// Rounds, alternating.
    pub rounds: u32,
    /// Where the corpus (and a started server's store) go; removed after.
    pub scratch: PathBuf,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// One way through, its best round.
#[derive(Debug, Clone, Serialize)]
pub struct Way {
    /// Workers (0 for the local run).
    pub workers: u32,
    /// Best wall time, seconds.
    pub seconds: f64,
    /// Documents per second.
    pub documents_per_second: f64,
    /// Pages per second.
    pub pages_per_second: f64,
    /// (this way's time − the local run's) ÷ documents, ms: what going through NATS adds
    /// to each document (0 for the local run; negative when the workers' extra agents
    /// more than pay for it).
    pub overhead_ms_per_document: f64,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterBenchReport {
    /// Documents.
    pub documents: u64,
    /// Pages.
    pub pages: u64,
    /// Agents of each worker and of the local run.
    pub agents: u32,
    /// Rounds.
    pub rounds: u32,
    /// `swarm run`.
    pub local: Way,
    /// Through NATS, with 1 and with 2 workers.
    pub cluster: Vec<Way>,
}

/// Runs the bench.
pub fn run(cfg: &ClusterBenchConfig) -> Result<ClusterBenchReport, ClusterError> {
    let _ = std::fs::remove_dir_all(&cfg.scratch);
    std::fs::create_dir_all(&cfg.scratch).map_err(|e| ClusterError::Io(e.to_string()))?;
    let result = measure(cfg);
    let _ = std::fs::remove_dir_all(&cfg.scratch);
    result
}

fn measure(cfg: &ClusterBenchConfig) -> Result<ClusterBenchReport, ClusterError> {
    let files = super::demo_corpus(&cfg.scratch.join("corpus"), cfg.documents)
        .map_err(|e| ClusterError::Io(format!("the corpus: {e}")))?;
    let (_server, url) = match &cfg.nats {
        Some(u) => (None, u.clone()),
        None => {
            let s = LocalServer::start(&cfg.scratch.join("nats"))?;
            let url = s.url.clone();
            (Some(s), url)
        }
    };
    let run = super::run_config(
        files.clone(),
        cfg.agents,
        cfg.require_cgroups,
        cfg.agent_bin.clone(),
        false,
    );
    let worker = WorkerConfig {
        run: job::RunConfig {
            files: Vec::new(),
            ..run.clone()
        },
        nats: url.clone(),
        replicas: 1,
        spool: None,
        ack_wait: Duration::from_secs(30),
        max_deliver: 5,
        lease: Duration::from_secs(10),
    };
    let out = cfg.scratch.join("out.jsonl");
    let submit = SubmitConfig {
        nats: url,
        replicas: 1,
        files: files.clone(),
        output: Some(out),
        resume: None,
        job: None,
        timeout_per_doc: Duration::from_secs(300),
    };
    let (mut local, mut pages) = (f64::INFINITY, 0);
    let mut through = [f64::INFINITY; 2];
    for _ in 0..cfg.rounds.max(1) {
        let t = Instant::now();
        let s = job::run(&run, &mut std::io::sink(), &mut |_, _| {})?;
        local = local.min(t.elapsed().as_secs_f64());
        pages = s.pages;
        for (k, best) in through.iter_mut().enumerate() {
            *best = best.min(through_workers(&worker, &submit, k + 1)?);
        }
    }
    let docs = files.len() as u64;
    let way = |workers: u32, seconds: f64| Way {
        workers,
        seconds,
        documents_per_second: docs as f64 / seconds,
        pages_per_second: pages as f64 / seconds,
        overhead_ms_per_document: (seconds - local) / docs.max(1) as f64 * 1e3,
    };
    Ok(ClusterBenchReport {
        documents: docs,
        pages,
        agents: cfg.agents,
        rounds: cfg.rounds.max(1),
        local: way(0, local),
        cluster: vec![way(1, through[0]), way(2, through[1])],
    })
}

/// One submission through `n` warm workers: its wall time.
fn through_workers(
    worker: &WorkerConfig,
    submit: &SubmitConfig,
    n: usize,
) -> Result<f64, ClusterError> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .map(|_| s.spawn(|| run_worker(worker, &stop)))
            .collect();
        // Warm: their agents up before the clock starts (a cluster's workers wait).
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        let done = run_submit(submit, &mut |_| {});
        let seconds = t.elapsed().as_secs_f64();
        // Release: pairs with the workers' Acquire load.
        stop.store(true, Ordering::Release);
        for w in workers {
            w.join()
                .map_err(|_| ClusterError::Gateway("a worker panicked".into()))??;
        }
        done.map(|_| seconds)
    })
}

/// The human-readable table.
pub fn render(r: &ClusterBenchReport) -> String {
    let mut out = vec![format!(
        "{} documents, {} pages, {} agents a worker, best of {} rounds",
        r.documents, r.pages, r.agents, r.rounds
    )];
    for w in std::iter::once(&r.local).chain(&r.cluster) {
        let name = match w.workers {
            0 => "swarm run (local)".to_string(),
            n => format!("through NATS, {n} worker(s)"),
        };
        out.push(format!(
            "  {name:<28} {:>7.3} s {:>8.0} docs/s {:>8.0} pages/s {:>+8.2} ms/doc",
            w.seconds, w.documents_per_second, w.pages_per_second, w.overhead_ms_per_document
        ));
    }
    out.join("\n")
}
