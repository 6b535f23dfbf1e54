//! `swarm run` watched from outside, and resumable: the job of [`crate::pdf::job`] with
//! the status socket answering beside it, when asked `/metrics` on HTTP, and with a
//! journal, only the documents it has not recorded.

use super::control::{self, socket_path};
use super::http::{metrics_router, HttpError, Server};
use super::view::{Tally, View};
use crate::pdf::job::{self, Journal, RunConfig, RunError, RunSummary};
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

/// Runs the job as [`job::run`] does, watched as `watch` says, and with `journal`, only
/// for the documents it has not recorded (copies of recorded ones are written from it);
/// `progress` is called after each document with (documents done, pages done).
pub fn run(
    cfg: &RunConfig,
    out: &mut dyn Write,
    watch: &Watch,
    mut journal: Option<&mut Journal>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunSummary, WatchedRunError> {
    let started = Instant::now();
    let mut cfg = cfg.clone();
    let mut before = RunSummary::default();
    // By file of `cfg.files`, its content hash, for its journal record.
    let mut hashes: Vec<String> = Vec::new();
    if let Some(j) = journal.as_deref_mut() {
        let plan = j.plan(&cfg.files);
        before.journaled = plan.done as u64;
        for (path, hash, line) in plan.copies {
            out.write_all(&line).map_err(RunError::from)?;
            out.flush().map_err(RunError::from)?;
            j.record(&path.display().to_string(), &hash, &line)
                .map_err(RunError::from)?;
            let (pages, ok) = crate::pdf::wire::line::pages_and_ok(&line);
            before.documents += 1;
            before.from_journal += 1;
            before.pages += pages;
            before.failed_documents += u64::from(!ok);
            progress(before.documents, before.pages);
        }
        (cfg.files, hashes) = plan.extract.into_iter().unzip();
    }
    if cfg.files.is_empty() {
        if let Some(j) = journal {
            j.sync().map_err(RunError::from)?;
        }
        before.wall_seconds = started.elapsed().as_secs_f64();
        return Ok(before);
    }
    let cfg = &cfg;
    let (sup, plan) = job::build_supervisor(cfg, job::read_roots(&cfg.files))?;
    // What the journal hashed, the cache need not hash again.
    let known = hashes
        .iter()
        .map(|h| crate::pdf::tasks::from_hex(h).and_then(|v| v.try_into().ok()))
        .collect();
    let plan = plan.knowing(known);
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
            progress(before.documents + s.documents, before.pages + s.pages);
            match (journal.as_deref_mut(), hashes.get(done.doc)) {
                (Some(j), Some(hash)) => {
                    let path = cfg.files[done.doc].display().to_string();
                    Ok(j.record(&path, hash, &done.line)?)
                }
                _ => Ok(()),
            }
        });
        drop(http);
        drop(observer);
        Ok::<_, WatchedRunError>(result?)
    });
    let stopping = Instant::now();
    let shutdown = sup.shutdown(Shutdown::Cancel);
    let mut summary = result?;
    shutdown.map_err(RunError::from)?;
    if let Some(j) = journal {
        j.sync().map_err(RunError::from)?;
    }
    // As job::run counts it: from the first document to the swarm stopped.
    summary.wall_seconds += stopping.elapsed().as_secs_f64();
    summary.documents += before.documents;
    summary.pages += before.pages;
    summary.failed_documents += before.failed_documents;
    summary.journaled = before.journaled;
    summary.from_journal = before.from_journal;
    summary.pages_per_second = summary.pages as f64 / summary.wall_seconds.max(1e-9);
    Ok(summary)
}
