//! `swarm serve`: a long-running swarm with warm agents, taking jobs over HTTP.
//!
//! Threads: the engine (the caller's: it owns the supervisor and runs every job's
//! documents), the observer (status socket, `/metrics`), the HTTP server (axum on its
//! own runtime) and a signal thread. The first SIGTERM or SIGINT drains: no new jobs,
//! those accepted run to their end, then the service exits. A second stops at once,
//! cancelling what runs.

use super::api::{self, Api};
use super::control::{self, socket_path};
use super::http::{HttpError, Server};
use super::jobs::Service;
use super::view::View;
use crate::pdf::job::{self, RunConfig, RunError};
use crate::supervisor::Shutdown;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `swarm serve` is to do.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The swarm and the job's defaults (`files` is not used).
    pub run: RunConfig,
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// Folders whose files jobs may name (and all that agents may read, with the spool).
    pub roots: Vec<PathBuf>,
    /// Where uploads (`uploads/`, which agents may read) and jobs' results (`results/`,
    /// which they may not) are kept; a private folder under the temporary directory,
    /// removed at exit, if `None`.
    pub spool: Option<PathBuf>,
    /// How long over jobs are kept.
    pub retention: Duration,
    /// The largest upload, bytes.
    pub max_upload: usize,
    /// Answer on the status socket.
    pub status_socket: bool,
}

/// Why the service failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The swarm.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The HTTP side.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A root or the spool.
    #[error("{0}")]
    Setup(String),
}

/// Runs the service until it is drained (by a signal) and empty. `listening` is called
/// once it takes requests, with its address.
pub fn serve(cfg: &ServeConfig, listening: &mut dyn FnMut(SocketAddr)) -> Result<(), ServeError> {
    let started = Instant::now();
    let mut roots = Vec::new();
    for r in &cfg.roots {
        let c = std::fs::canonicalize(r)
            .map_err(|e| ServeError::Setup(format!("--root {}: {e}", r.display())))?;
        roots.push(c);
    }
    let (spool, own_spool) = match &cfg.spool {
        Some(s) => (s.clone(), false),
        None => (
            std::env::temp_dir().join(format!("swarm-serve-{}", std::process::id())),
            true,
        ),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&spool)
        .map_err(|e| ServeError::Setup(format!("spool {}: {e}", spool.display())))?;
    let spool = std::fs::canonicalize(&spool)
        .map_err(|e| ServeError::Setup(format!("spool {}: {e}", spool.display())))?;
    // Agents may read uploads, not other jobs' results.
    let (uploads, results) = (spool.join("uploads"), spool.join("results"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&uploads)
        .map_err(|e| ServeError::Setup(format!("spool {}: {e}", uploads.display())))?;
    let mut readable = roots.clone();
    readable.push(uploads.clone());
    let result = run(cfg, roots, readable, uploads, results, started, listening);
    if own_spool {
        let _ = std::fs::remove_dir_all(&spool);
    }
    result
}

fn run(
    cfg: &ServeConfig,
    roots: Vec<PathBuf>,
    readable: Vec<PathBuf>,
    uploads: PathBuf,
    results: PathBuf,
    started: Instant,
    listening: &mut dyn FnMut(SocketAddr),
) -> Result<(), ServeError> {
    let (sup, plan) = job::build_supervisor(&cfg.run, readable)?;
    let (service, engine) = Service::new(cfg.retention, results.clone())
        .map_err(|e| ServeError::Setup(format!("results {}: {e}", results.display())))?;
    let observing = AtomicBool::new(false);
    let stop = Arc::new(AtomicBool::new(false));
    let result = std::thread::scope(|scope| {
        let socket = cfg.status_socket.then(|| socket_path(std::process::id()));
        let view = || {
            let mut v = View::of(
                &sup.status(),
                &service.tally,
                "serve",
                started.elapsed().as_secs_f64(),
            );
            v.jobs = service.counts();
            v
        };
        let (observer, views) = control::start(scope, &observing, socket, view);
        let defaults = cfg.run.doc_limits();
        let api = Api::new(
            service.clone(),
            roots,
            uploads.clone(),
            vec![uploads, results.clone()],
            defaults,
            cfg.max_upload,
            views,
        );
        let server = Server::start(cfg.listen, api::router(Arc::new(api)))?;
        let _signals = watch_signals(service.clone(), stop.clone())?;
        listening(server.addr());
        let result = engine.run(&service, &sup, plan, &cfg.run, &stop);
        // Streams of results end with their jobs (all over now); the server waits for
        // them, then stops.
        drop(server);
        drop(observer);
        Ok::<_, ServeError>(result?)
    });
    // Nobody can ask for them any more.
    service.remove_results();
    sup.shutdown(Shutdown::Cancel).map_err(RunError::from)?;
    result
}

/// A thread that drains `service` at the first SIGTERM or SIGINT and sets `stop` at the
/// second.
fn watch_signals(
    service: Arc<Service>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ServeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HttpError::Runtime)?;
    // Registered here, before the service says it listens: a signal from then on is ours.
    let (term, int) = rt
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })
        .map_err(HttpError::Runtime)?;
    std::thread::Builder::new()
        .name("swarm-signals".into())
        .spawn(move || {
            rt.block_on(async move {
                let (mut term, mut int) = (term, int);
                let mut seen = 0;
                loop {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    seen += 1;
                    if seen == 1 {
                        tracing::info!(
                            "draining: no new jobs; exiting once those accepted are done"
                        );
                        service.drain();
                    } else {
                        tracing::warn!("stopping now: cancelling what runs");
                        // Release: pairs with the engine loop's Acquire load.
                        stop.store(true, Ordering::Release);
                        service.drain();
                        return;
                    }
                }
            })
        })
        .map_err(|e| ServeError::Setup(format!("signal thread: {e}")))
}
