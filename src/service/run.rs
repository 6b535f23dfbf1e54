//! `swarm run` watched from outside: the job of [`crate::pdf::job`] with the status
//! socket answering beside it and, when asked, `/metrics` on HTTP.

use super::control::{self, socket_path};
use super::http::{metrics_router, HttpError, Server};
use super::view::{Tally, View};
use crate::pdf::job::{self, RunConfig, RunError, RunSummary};
use crate::supervisor::Shutdown;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// How a run is watched.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// Serve `/metrics` here.
    pub metrics: Option<SocketAddr>,
    /// Answer on the status socket ([`control::socket_path`] of this process).
    pub status_socket: bool,
}

/// Why a watched run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchedRunError {
    /// The job.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The metrics endpoint.
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Runs the job as [`job::run`] does, watched as `watch` says; `progress` is called after
/// each document with (documents done, pages done).
pub fn run(
    cfg: &RunConfig,
    out: &mut dyn Write,
    watch: &Watch,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunSummary, WatchedRunError> {
    let started = Instant::now();
    let (sup, plan) = job::build_supervisor(cfg, job::read_roots(&cfg.files))?;
    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        let socket = watch.status_socket.then(|| socket_path(std::process::id()));
        let view = || {
            View::of(
                &sup.status(),
                &tally,
                "run",
                started.elapsed().as_secs_f64(),
            )
        };
        let (observer, views) = control::start(scope, &stop, socket, view);
        let http = match watch.metrics {
            Some(addr) => Some(Server::start(addr, metrics_router(views))?),
            None => None,
        };
        let result = job::run_on(&sup, plan, cfg, out, &mut |done, s| {
            tally.finished(done.ok, done.pages);
            progress(s.documents, s.pages)
        });
        drop(http);
        drop(observer);
        Ok::<_, WatchedRunError>(result?)
    });
    let stopping = Instant::now();
    let shutdown = sup.shutdown(Shutdown::Cancel);
    let mut summary = result?;
    shutdown.map_err(RunError::from)?;
    // As job::run counts it: from the first document to the swarm stopped.
    summary.wall_seconds += stopping.elapsed().as_secs_f64();
    summary.pages_per_second = summary.pages as f64 / summary.wall_seconds.max(1e-9);
    Ok(summary)
}
