//! `swarm bench soak`: a steady mixed load on a `swarm serve` in this process, with
//! agents SIGKILLed now and then, sampling the supervisor's and the agents' resident
//! memory and open descriptors once a second. What grows after the warm-up is what
//! leaks.
//!
//! The load: jobs of the demo's documents submitted over HTTP and their results streamed
//! back (each connection opened and closed, as clients do), and beside them synthetic
//! tasks submitted to the supervisor (no-ops, echoes through page buffers, short spins,
//! handler panics). Every few seconds one agent is killed; the supervisor replaces it and
//! retries what it had.
//!
//! Growth is the median of the last three samples less the median of the first three
//! after the warm-up (a fifth of the time, at least 5 s), so that one noisy sample does
//! not decide it.

use crate::pdf::job;
use crate::runtime::procfs;
use crate::service::api::{self, Api};
use crate::service::http::Server;
use crate::service::jobs::Service;
use crate::supervisor::Shutdown;
use crate::task::{kinds, TaskSpec};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long.
    pub duration: Duration,
    /// Agents.
    pub agents: u32,
    /// One agent SIGKILLed this often.
    pub kill_every: Duration,
    /// Documents of the generated corpus (one job is all of them).
    pub documents: u32,
    /// Where the corpus is written (removed after).
    pub scratch: PathBuf,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// One sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SoakSample {
    /// Seconds since the start.
    pub at_s: f64,
    /// The supervisor's resident memory, KiB.
    pub supervisor_rss_kib: u64,
    /// Its open descriptors.
    pub supervisor_fds: usize,
    /// The agents' resident memory, summed, KiB.
    pub agents_rss_kib: u64,
    /// The most descriptors one agent has open.
    pub agent_fds_max: usize,
    /// Documents done by then.
    pub documents: u64,
    /// Synthetic tasks done by then.
    pub tasks: u64,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Seconds it ran.
    pub seconds: f64,
    /// Seconds of warm-up not counted in the growth.
    pub warmup_seconds: f64,
    /// Jobs submitted over HTTP and read back whole.
    pub jobs: u64,
    /// Documents done.
    pub documents: u64,
    /// Pages done.
    pub pages: u64,
    /// Synthetic tasks ended (completed or failed as they should).
    pub tasks: u64,
    /// Agents killed.
    pub agents_killed: u64,
    /// Agents the supervisor started to replace them.
    pub agent_restarts: u64,
    /// The supervisor's resident memory after the warm-up and at the end (medians of
    /// three samples), KiB.
    pub supervisor_rss_kib_start: u64,
    /// At the end.
    pub supervisor_rss_kib_end: u64,
    /// The end less the start: the supervisor's growth after the warm-up, KiB.
    pub rss_growth_kib: i64,
    /// The supervisor's open descriptors after the warm-up and at the end.
    pub fd_start: usize,
    /// At the end.
    pub fd_end: usize,
    /// The end less the start.
    pub fd_growth: i64,
    /// The agents' summed resident memory, growth after the warm-up, KiB (agents are
    /// replaced as they are killed, so this says whether new ones start larger).
    pub agents_rss_growth_kib: i64,
    /// The most descriptors an agent had open, at any sample.
    pub agent_fds_max: usize,
    /// Every sample.
    pub samples: Vec<SoakSample>,
}

/// Why the soak failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SoakError {
    /// The swarm or the job.
    #[error(transparent)]
    Run(#[from] job::RunError),
    /// The HTTP side.
    #[error(transparent)]
    Http(#[from] crate::service::http::HttpError),
    /// Something under load went wrong (a job not read back whole, a task lost).
    #[error("{0}")]
    Load(String),
}

/// One HTTP/1.1 request on a fresh connection, answered whole: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    // Results come chunked: the lines are what is left once the chunk sizes are dropped.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, body))
}

/// A chunked body's bytes.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Runs the soak.
pub fn run(cfg: &SoakConfig) -> Result<SoakReport, SoakError> {
    let dir = cfg.scratch.join("corpus");
    let docs = super::demo_corpus(&dir, cfg.documents).map_err(job::RunError::from)?;
    let dir = std::fs::canonicalize(&dir).map_err(job::RunError::from)?;
    let mut rc = super::run_config(
        Vec::new(),
        cfg.agents,
        cfg.require_cgroups,
        cfg.agent_bin.clone(),
        false,
    );
    rc.timeout_per_doc = Duration::from_secs(60);
    let (sup, plan) = job::build_supervisor(&rc, vec![dir.clone()])?;
    if !crate::bench::all_ready(&sup, Duration::from_secs(60)) {
        let _ = sup.shutdown(Shutdown::Cancel);
        return Err(SoakError::Load(
            "the agents did not start within 60 s".into(),
        ));
    }
    let (service, engine) = Service::new(Duration::from_secs(2), cfg.scratch.join("results"))
        .map_err(job::RunError::from)?;
    let (_, views) = crate::service::control::Observer::new();
    let defaults = rc.doc_limits();
    let api = Api::new(
        service.clone(),
        vec![dir.clone()],
        cfg.scratch.join("uploads"),
        vec![cfg.scratch.join("uploads"), cfg.scratch.join("results")],
        defaults,
        1 << 20,
        views,
    );
    let server = Server::start(
        "127.0.0.1:0".parse().expect("an address"),
        api::router(Arc::new(api)),
    )?;
    let addr = server.addr();
    let stop = AtomicBool::new(false);
    // The engine ends when the service drains; nothing stops it otherwise.
    let engine_stop = AtomicBool::new(false);
    let (jobs, tasks, killed) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let me = std::process::id();
    let started = Instant::now();
    let body = format!(
        "{{\"paths\": [{}]}}",
        serde_json::to_string(&dir.display().to_string()).unwrap_or_default()
    );
    let mut samples = Vec::new();
    let result = std::thread::scope(|s| -> Result<(), SoakError> {
        let engine_thread = s.spawn(|| engine.run(&service, &sup, plan, &rc, &engine_stop));
        // Jobs over HTTP, one after another, each read back whole.
        let client = s.spawn(|| -> Result<(), String> {
            // Acquire: pairs with the Release store that ends the soak (below).
            while !stop.load(Ordering::Acquire) {
                let (code, answer) = http(addr, "POST", "/jobs", &body)?;
                if code != 201 {
                    return Err(format!("POST /jobs: {code} {answer}"));
                }
                let v: serde_json::Value =
                    serde_json::from_str(&answer).map_err(|e| e.to_string())?;
                let id = v["id"].as_str().ok_or("no id")?.to_string();
                let (code, lines) = http(addr, "GET", &format!("/jobs/{id}/results"), "")?;
                let n = lines.lines().count();
                if code != 200 || n != docs.len() {
                    return Err(format!("job {id}: {code}, {n} of {} lines", docs.len()));
                }
                jobs.fetch_add(1, Ordering::Relaxed); // a count, read at the end
            }
            Ok(())
        });
        // Synthetic tasks beside them.
        let synthetic = s.spawn(|| -> Result<(), String> {
            let mut i = 0u64;
            // Acquire: pairs with the Release store that ends the soak (below).
            while !stop.load(Ordering::Acquire) {
                let spec = match i % 4 {
                    0 => TaskSpec::new(kinds::NOOP, 0),
                    1 => TaskSpec::new(kinds::ECHO, 0).with_bytes(vec![7u8; 100_000]),
                    2 => TaskSpec::new(kinds::SPIN, 200_000),
                    _ => TaskSpec::new(kinds::PANIC, 0),
                };
                let h = sup.submit(spec).map_err(|e| e.to_string())?;
                let outcome = h
                    .wait(Some(Duration::from_secs(60)))
                    .ok_or_else(|| format!("synthetic task {i} did not end within 60 s"))?;
                // Panics fail as they should; the rest complete (retried if their agent
                // was killed).
                if (i % 4 == 3) == outcome.is_completed() {
                    return Err(format!("synthetic task {i}: {outcome:?}"));
                }
                tasks.fetch_add(1, Ordering::Relaxed); // a count, read at the end
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        });
        let mut next_kill = Instant::now() + cfg.kill_every;
        let mut next_sample = Instant::now();
        let mut slot = 0usize;
        while started.elapsed() < cfg.duration {
            if client.is_finished() || synthetic.is_finished() {
                break;
            }
            let now = Instant::now();
            if now >= next_sample {
                let st = sup.status();
                let pids: Vec<u32> = st
                    .agents
                    .iter()
                    .map(|a| a.pid)
                    .filter(|&p| p != 0)
                    .collect();
                samples.push(SoakSample {
                    at_s: started.elapsed().as_secs_f64(),
                    supervisor_rss_kib: procfs::rss_kib(me).map_or(0, |r| r.0),
                    supervisor_fds: procfs::open_fds(me).unwrap_or(0),
                    agents_rss_kib: pids
                        .iter()
                        .filter_map(|&p| procfs::rss_kib(p))
                        .map(|r| r.0)
                        .sum(),
                    agent_fds_max: pids
                        .iter()
                        .filter_map(|&p| procfs::open_fds(p))
                        .max()
                        .unwrap_or(0),
                    documents: service.tally.documents_ok.load(Ordering::Relaxed)
                        + service.tally.documents_failed.load(Ordering::Relaxed),
                    tasks: tasks.load(Ordering::Relaxed),
                });
                next_sample += Duration::from_secs(1);
            }
            if now >= next_kill && !cfg.kill_every.is_zero() {
                let st = sup.status();
                let n = st.agents.len().max(1);
                if let Some(a) = st
                    .agents
                    .get(slot % n)
                    .filter(|a| a.pid != 0 && a.phase == "ready")
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(a.pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    killed.fetch_add(1, Ordering::Relaxed);
                }
                slot += 1;
                next_kill = now + cfg.kill_every;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Release: pairs with the load threads' Acquire loads.
        stop.store(true, Ordering::Release);
        // The engine ends with the jobs it has, whatever the load threads did.
        service.drain();
        let c = client.join();
        let t = synthetic.join();
        let e = engine_thread.join();
        c.map_err(|_| SoakError::Load("the client panicked".into()))?
            .map_err(SoakError::Load)?;
        t.map_err(|_| SoakError::Load("the synthetic load panicked".into()))?
            .map_err(SoakError::Load)?;
        e.map_err(|_| SoakError::Load("the engine panicked".into()))??;
        Ok(())
    });
    drop(server);
    let counters = sup.status().counters;
    let _ = sup.shutdown(Shutdown::Cancel);
    let _ = std::fs::remove_dir_all(&cfg.scratch);
    result?;
    let seconds = started.elapsed().as_secs_f64();
    let warmup = (seconds / 5.0).max(5.0).min(seconds / 2.0);
    let after: Vec<&SoakSample> = samples.iter().filter(|s| s.at_s >= warmup).collect();
    let first: Vec<&SoakSample> = after.iter().take(3).copied().collect();
    let last: Vec<&SoakSample> = after.iter().rev().take(3).copied().collect();
    let med = |v: &[&SoakSample], f: fn(&SoakSample) -> u64| {
        let mut v: Vec<f64> = v.iter().map(|s| f(s) as f64).collect();
        v.sort_by(f64::total_cmp);
        crate::bench::pct(&v, 0.5) as u64
    };
    let rss = |s: &SoakSample| s.supervisor_rss_kib;
    let fds = |s: &SoakSample| s.supervisor_fds as u64;
    let agents = |s: &SoakSample| s.agents_rss_kib;
    let (r0, r1) = (med(&first, rss), med(&last, rss));
    let (f0, f1) = (med(&first, fds), med(&last, fds));
    let (a0, a1) = (med(&first, agents), med(&last, agents));
    Ok(SoakReport {
        seconds,
        warmup_seconds: warmup,
        jobs: jobs.load(Ordering::Relaxed),
        documents: service.tally.documents_ok.load(Ordering::Relaxed)
            + service.tally.documents_failed.load(Ordering::Relaxed),
        pages: service.tally.pages.load(Ordering::Relaxed),
        tasks: tasks.load(Ordering::Relaxed),
        agents_killed: killed.load(Ordering::Relaxed),
        agent_restarts: counters.agent_restarts,
        supervisor_rss_kib_start: r0,
        supervisor_rss_kib_end: r1,
        rss_growth_kib: r1 as i64 - r0 as i64,
        fd_start: f0 as usize,
        fd_end: f1 as usize,
        fd_growth: f1 as i64 - f0 as i64,
        agents_rss_growth_kib: a1 as i64 - a0 as i64,
        agent_fds_max: samples.iter().map(|s| s.agent_fds_max).max().unwrap_or(0),
        samples,
    })
}

/// The report as text.
pub fn render(r: &SoakReport) -> String {
    format!(
        "{:.0} s ({:.0} s warm-up): {} jobs, {} documents, {} pages, {} synthetic tasks; \
         {} agents killed, {} restarted\n\
         supervisor RSS {} -> {} KiB ({:+} KiB), descriptors {} -> {} ({:+}); \
         agents' RSS {:+} KiB; most descriptors in an agent {}",
        r.seconds,
        r.warmup_seconds,
        r.jobs,
        r.documents,
        r.pages,
        r.tasks,
        r.agents_killed,
        r.agent_restarts,
        r.supervisor_rss_kib_start,
        r.supervisor_rss_kib_end,
        r.rss_growth_kib,
        r.fd_start,
        r.fd_end,
        r.fd_growth,
        r.agents_rss_growth_kib,
        r.agent_fds_max
    )
}
