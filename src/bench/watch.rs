//! `swarm bench watch`: what watching a swarm costs it. `swarm run` on the demo corpus,
//! in alternating rounds of one run: alone, and with a watcher that reads its view over
//! the status socket as `swarm top` does, ten times as often as `top`'s default refresh
//! (every 100 ms), and scrapes `/metrics` as often.

use crate::pdf::job::RunError;
use crate::service::control;
use crate::service::run::{run as watched_run, Watch, WatchedRunError};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What to run.
#[derive(Debug, Clone)]
pub struct WatchBenchConfig {
    /// Documents generated.
    pub documents: u32,
    /// Agents.
    pub agents: u32,
    /// Rounds of each.
    pub rounds: u32,
    /// How often the watcher looks.
    pub every: Duration,
    /// Where the corpus is written (removed after).
    pub scratch: PathBuf,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct WatchBenchReport {
    /// Pages in one run.
    pub pages: u64,
    /// Pages a second alone, the median of the rounds.
    pub alone_pages_per_s: f64,
    /// Pages a second watched.
    pub watched_pages_per_s: f64,
    /// The second over the first.
    pub watched_ratio: f64,
    /// Views read and scrapes made in one watched run (the last).
    pub views_read: u64,
    /// Scrapes of `/metrics` in it.
    pub scrapes: u64,
    /// The watcher's period, ms.
    pub every_ms: f64,
}

/// A GET of `/metrics` at `addr`, read whole.
fn scrape(addr: std::net::SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let req = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    let mut resp = Vec::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_end(&mut resp).is_ok()
        && resp.starts_with(b"HTTP/1.1 200")
}

/// Runs the benchmark.
pub fn run(cfg: &WatchBenchConfig) -> Result<WatchBenchReport, WatchedRunError> {
    let docs =
        super::demo_corpus(&cfg.scratch.join("corpus"), cfg.documents).map_err(RunError::from)?;
    // Each document ten times over (the cache off, each is extracted): runs of seconds,
    // so that a watcher every 100 ms looks many times in each.
    let files = (0..10).flat_map(|_| docs.iter().cloned()).collect();
    let rc = super::run_config(
        files,
        cfg.agents,
        cfg.require_cgroups,
        cfg.agent_bin.clone(),
        false,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(RunError::from)?;
    let (mut alone, mut watched) = (Vec::new(), Vec::new());
    let (mut pages, mut views, mut scrapes) = (0, 0, 0);
    for _ in 0..cfg.rounds.max(1) {
        let plain = Watch {
            metrics: None,
            status_socket: true,
        };
        let s = watched_run(&rc, &mut std::io::sink(), &plain, None, &mut |_, _| {})?;
        alone.push(s.pages_per_second);
        pages = s.pages;
        let watch = Watch {
            metrics: Some(port),
            status_socket: true,
        };
        let stop = AtomicBool::new(false);
        let (read, scraped) = (AtomicU64::new(0), AtomicU64::new(0));
        let socket = control::socket_path(std::process::id());
        let s = std::thread::scope(|scope| {
            scope.spawn(|| {
                // Acquire: pairs with the Release store after the run.
                while !stop.load(Ordering::Acquire) {
                    if control::fetch(&socket).is_ok() {
                        read.fetch_add(1, Ordering::Relaxed); // a count, read after
                    }
                    if scrape(port) {
                        scraped.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(cfg.every);
                }
            });
            let s = watched_run(&rc, &mut std::io::sink(), &watch, None, &mut |_, _| {});
            // Release: pairs with the watcher's Acquire load.
            stop.store(true, Ordering::Release);
            s
        })?;
        watched.push(s.pages_per_second);
        views = read.load(Ordering::Relaxed);
        scrapes = scraped.load(Ordering::Relaxed);
    }
    let _ = std::fs::remove_dir_all(&cfg.scratch);
    alone.sort_by(f64::total_cmp);
    watched.sort_by(f64::total_cmp);
    let (a, w) = (super::pct(&alone, 0.5), super::pct(&watched, 0.5));
    Ok(WatchBenchReport {
        pages,
        alone_pages_per_s: a,
        watched_pages_per_s: w,
        watched_ratio: w / a.max(1e-9),
        views_read: views,
        scrapes,
        every_ms: cfg.every.as_secs_f64() * 1e3,
    })
}

/// The report as text.
pub fn render(r: &WatchBenchReport) -> String {
    format!(
        "{} pages a run; alone {:.0} pages/s, watched every {:.0} ms ({} views, {} scrapes \
         in a run) {:.0} pages/s: {:.3}x",
        r.pages,
        r.alone_pages_per_s,
        r.every_ms,
        r.views_read,
        r.scrapes,
        r.watched_pages_per_s,
        r.watched_ratio
    )
}
