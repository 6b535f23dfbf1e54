//! `swarm status`: one look at a running swarm (the view `swarm top` draws), as text or
//! as JSON.

use super::{Done, Error};
use crate::service::control::{self, FindError};
use crate::service::View;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Which swarm: by pid, by socket, or the only one running.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The swarm's supervisor pid.
    #[arg(long, conflicts_with = "socket")]
    pub pid: Option<u32>,
    /// Its status socket.
    #[arg(long)]
    pub socket: Option<PathBuf>,
}

/// `swarm status`'s flags.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Which swarm.
    #[command(flatten)]
    pub target: Target,
    /// Print the view as one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl Target {
    /// The view of the swarm named. None running, or several without `--pid`, is bad
    /// usage; one that does not answer is fatal.
    pub fn fetch(&self) -> Result<View, Error> {
        let map = |e: FindError| match e {
            FindError::NoneRunning(_) | FindError::Several(_) | FindError::NotFound(_) => {
                Error::usage(format!("swarm: {e}"))
            }
            other => Error::fatal(format!("swarm: {other}")),
        };
        let socket = control::find(self.pid, self.socket.as_deref()).map_err(map)?;
        control::fetch(&socket).map_err(map)
    }
}

/// Runs `swarm status`.
pub fn run(a: StatusArgs) -> Result<Done, Error> {
    let v = a.target.fetch()?;
    if a.json {
        let json = serde_json::to_string_pretty(&v).map_err(Error::from_library)?;
        println!("{json}");
    } else {
        print!("{}", render(&v));
    }
    Ok(Done::Ok)
}

/// The view as text, a table of agents below a summary.
pub fn render(v: &View) -> String {
    let mut s = String::new();
    let docs = v.documents_ok + v.documents_failed;
    let _ = writeln!(
        s,
        "swarm {} pid {}  up {:.0}s  documents {} ({} failed)  pages {}",
        v.command, v.pid, v.uptime_s, docs, v.documents_failed, v.pages
    );
    let _ = writeln!(
        s,
        "queue {}  in flight {}  restarts {}  slab {}/{} in use  supervisor cpu {:.2}s rss {} KiB",
        v.queue_depth,
        v.in_flight,
        v.agent_restarts,
        v.slab_in_use,
        v.slab_buffers,
        v.supervisor_cpu_seconds,
        v.supervisor_rss_kib
    );
    if !v.deaths.is_empty() {
        let deaths: Vec<String> = v.deaths.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "deaths: {}", deaths.join(", "));
    }
    if !v.jobs.is_empty() {
        let jobs: Vec<String> = v.jobs.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "jobs: {}", jobs.join(", "));
    }
    let _ = writeln!(
        s,
        "{:>4} {:>8} {:<9} {:<16} {:>9} {:>8} {:>8}  current task",
        "slot", "pid", "phase", "reported", "rss KiB", "done", "hb ms"
    );
    for a in &v.agents {
        let current = a
            .current_task
            .map(|(id, kind, ms)| format!("#{id} kind {kind} {ms} ms"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:>4} {:>8} {:<9} {:<16} {:>9} {:>8} {:>8}  {}",
            a.slot,
            a.pid,
            a.phase,
            a.reported,
            a.rss_kib,
            a.tasks_done,
            a.heartbeat_age_ms,
            current
        );
    }
    s
}
