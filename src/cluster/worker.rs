//! `swarm worker`: this host's swarm, fed from the jobs' work queue.

use super::gateway::Gateway;
use super::nats::{self, DocJob, Nats};
use super::ClusterError;
use crate::pdf::job::{self, DocLimits, RunConfig};
use crate::pdf::wire::line::with_path;
use async_nats::jetstream::{consumer, AckKind, Message};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker runs with.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The local swarm (`files` is not used).
    pub run: RunConfig,
    /// The NATS servers, comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub nats: String,
    /// Copies of each stream, when this worker creates them (3 on a cluster).
    pub replicas: usize,
    /// Where documents are kept while they run (default: a private folder under the
    /// temporary directory, removed at exit).
    pub spool: Option<PathBuf>,
    /// The ack deadline of the workers' consumer, when this worker makes it.
    pub ack_wait: Duration,
    /// Deliveries of a document at most, when this worker makes the consumer.
    pub max_deliver: i64,
    /// How long the lease of the poison reporter lasts unrenewed, when this worker makes
    /// its bucket.
    pub lease: Duration,
}

/// What a worker did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkerSummary {
    /// Documents whose line this worker stored.
    pub stored: u64,
    /// Documents it ran whose line another worker had stored first.
    pub duplicates: u64,
    /// Pages in the lines it stored.
    pub pages: u64,
    /// Documents out of deliveries it gave an error line, while it held the lease.
    pub poison_reported: u64,
    /// Documents it ran whose line it could not store (cut off from the servers): they
    /// were left unacked, to run again elsewhere.
    pub unstored: u64,
}

/// A document this worker runs.
struct Running {
    msg: Message,
    job: DocJob,
    file: PathBuf,
}

/// Runs until `stop` is set (Release by whoever stops it), then finishes the documents
/// it has and returns.
pub fn run_worker(cfg: &WorkerConfig, stop: &AtomicBool) -> Result<WorkerSummary, ClusterError> {
    let gw = Gateway::start()?;
    let nats = gw.call(nats::connect(cfg.nats.clone(), cfg.replicas))??;
    let (ack_wait, max_deliver) = (cfg.ack_wait, cfg.max_deliver);
    let n = nats.clone();
    let workers = gw.call(async move { n.workers(ack_wait, max_deliver).await })??;
    // The deadline and deliveries in force are the consumer's, whoever made it.
    let (ack_wait, max_deliver) = {
        let mut c = workers.clone();
        gw.call(async move {
            c.info()
                .await
                .map(|i| (i.config.ack_wait, i.config.max_deliver))
        })?
        .unwrap_or((ack_wait, max_deliver))
    };
    let spool = Spool::new(cfg.spool.clone())?;
    let (sup, plan) = job::build_supervisor(&cfg.run, vec![spool.dir.clone()])?;
    // The poison reporter, on the gateway while this worker runs; it gives its lease up
    // when told to stop.
    let (leading, reported) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let (left, gone) = std::sync::mpsc::sync_channel::<()>(1);
    let holder = format!("{}-{}", hostname(), std::process::id());
    let (n, l, r, ttl) = (nats.clone(), leading.clone(), reported.clone(), cfg.lease);
    gw.spawn(async move {
        super::poison::reporter(n, holder, ttl, l, r).await;
        let _ = left.send(());
    });
    let consumer = Consumer {
        workers,
        ack_wait,
        max_deliver,
    };
    let result = drive(&gw, &nats, &consumer, &sup, plan, cfg, &spool, stop);
    // Release: pairs with the reporter's Acquire load.
    leading.store(true, Ordering::Release);
    let _ = gone.recv_timeout(Duration::from_secs(5));
    let down = sup.shutdown(crate::supervisor::Shutdown::Cancel);
    let mut summary = result?;
    down.map_err(job::RunError::from)?;
    // Relaxed: a count; the reporter has ended (its channel above orders its adds first).
    summary.poison_reported = reported.load(Ordering::Relaxed);
    Ok(summary)
}

/// The workers' consumer and the settings in force on it.
struct Consumer {
    workers: consumer::Consumer<consumer::pull::Config>,
    ack_wait: Duration,
    max_deliver: i64,
}

/// How long a worker keeps trying to store a line before it leaves the document to run
/// again elsewhere.
const STORE_PATIENCE: Duration = Duration::from_secs(30);

#[allow(clippy::too_many_arguments)]
fn drive(
    gw: &Gateway,
    nats: &Nats,
    consumer: &Consumer,
    sup: &crate::supervisor::Supervisor,
    plan: job::Plan,
    cfg: &WorkerConfig,
    spool: &Spool,
    stop: &AtomicBool,
) -> Result<WorkerSummary, ClusterError> {
    let mut engine = job::Engine::new(sup, &cfg.run, plan);
    let window = engine.window();
    let mut running: HashMap<usize, Running> = HashMap::new();
    let mut next = 0usize;
    let mut summary = WorkerSummary::default();
    // Every document taken in and not yet acked or left, kept alive by in-progress acks
    // from a task of its own on the gateway, every third of the deadline, whatever this
    // loop is waiting for meanwhile (a store tried again, a large PDF read).
    let held = Held::default();
    held.keep_alive(gw, (consumer.ack_wait / 3).max(Duration::from_millis(100)));
    // Since when fetching has failed (the servers gone or cut off), if it has.
    let mut outage: Option<Instant> = None;
    loop {
        // Acquire: pairs with the Release store of whoever stops the worker.
        let stopping = stop.load(Ordering::Acquire);
        if stopping && running.is_empty() {
            break;
        }
        let room = window.saturating_sub(engine.open());
        if !stopping && room > 0 {
            // Wait for work only when there is nothing to run.
            let wait = if running.is_empty() {
                Some(Duration::from_millis(500))
            } else {
                None
            };
            let c = consumer.workers.clone();
            let batch = match gw.call(async move { fetch(c, room, wait).await })? {
                Ok(b) => {
                    if let Some(t) = outage.take() {
                        tracing::info!(after_ms = t.elapsed().as_millis() as u64, "fetching again");
                    }
                    b
                }
                Err(e) => {
                    if outage.is_none() {
                        tracing::warn!(error = %e, "cannot fetch documents: trying again");
                        outage = Some(Instant::now());
                    }
                    if engine.open() == 0 {
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Vec::new()
                }
            };
            let last = batch.len() < room;
            let count = batch.len();
            for (k, msg) in batch.into_iter().enumerate() {
                if let Some(r) = take_in(gw, nats, spool, consumer, msg)? {
                    let limits = DocLimits {
                        timeout: Duration::from_millis(r.job.timeout_ms.max(1)),
                        priority: 0,
                    };
                    let path = r.file.display().to_string();
                    engine.start(next, path, limits, last && k + 1 == count)?;
                    held.0.lock().insert(next, r.msg.clone());
                    running.insert(next, r);
                    next += 1;
                }
            }
        }
        if engine.open() > 0 {
            for done in engine.step(Duration::from_millis(20))? {
                let Some(r) = running.remove(&done.doc) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&done.line);
                let line = with_path(text.trim_end_matches('\n'), &r.job.path);
                let (job, doc) = (r.job.job.clone(), r.job.doc);
                let (n, msg) = (nats.clone(), r.msg.clone());
                // The line stored, then the document acked: a worker that dies between
                // the two leaves a document that runs again, and its line is refused.
                let stored = gw.call(async move {
                    let stored = nats::persist("storing a line", STORE_PATIENCE, || {
                        n.store_result(&job, doc, line.clone())
                    })
                    .await;
                    match &stored {
                        // A document delivered again elsewhere while this worker was
                        // stopped or cut off may be gone already: its ack is then refused
                        // or lost, which changes nothing (its line is stored; a
                        // redelivery's is refused).
                        Ok(_) => match timeout(msg.double_ack()).await {
                            Some(Ok(())) => {}
                            Some(Err(e)) => {
                                tracing::warn!(job, doc, error = %e, "ack not confirmed")
                            }
                            None => tracing::warn!(job, doc, "ack not confirmed in time"),
                        },
                        Err(e) => tracing::warn!(
                            job, doc, error = %e,
                            "line not stored: the document is left to run again"
                        ),
                    }
                    stored
                })?;
                match stored {
                    Ok(true) => {
                        summary.stored += 1;
                        summary.pages += done.pages;
                    }
                    Ok(false) => summary.duplicates += 1,
                    Err(_) => summary.unstored += 1,
                }
                held.0.lock().remove(&done.doc);
                spool.release(&r.file, running.values().any(|o| o.file == r.file));
            }
        }
    }
    Ok(summary)
}

/// The documents a worker holds, by their number in its engine.
#[derive(Default)]
struct Held(Arc<parking_lot::Mutex<HashMap<usize, Message>>>);

impl Held {
    /// Starts the task that sends every held document an in-progress ack each `every`,
    /// for as long as this is there (it holds a weak reference only).
    fn keep_alive(&self, gw: &Gateway, every: Duration) {
        let held = Arc::downgrade(&self.0);
        gw.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(held) = held.upgrade() else {
                    return;
                };
                let msgs: Vec<Message> = held.lock().values().cloned().collect();
                drop(held);
                for m in msgs {
                    let _ = timeout(m.ack_with(AckKind::Progress)).await;
                }
            }
        });
    }
}

/// A call on the server that is not worth waiting for long: `None` after 5 s.
async fn timeout<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(5), f).await.ok()
}

/// Up to `n` documents: those waiting now, or, with `wait`, the first to come within it.
/// A pull the server does not answer in time ends with what came (none: an error).
async fn fetch(
    c: consumer::Consumer<consumer::pull::Config>,
    n: usize,
    wait: Option<Duration>,
) -> Result<Vec<Message>, ClusterError> {
    let bad = |e: String| ClusterError::Nats(format!("fetching documents: {e}"));
    let mut out = Vec::new();
    let pull = async {
        let mut batch = match wait {
            Some(w) => c.batch().max_messages(n).expires(w).messages().await,
            None => c.fetch().max_messages(n).messages().await,
        }
        .map_err(|e| bad(e.to_string()))?;
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => out.push(m),
                // A pull that timed out or was cut short: what came is kept.
                Err(e) => {
                    tracing::debug!(error = %e, "fetch ended");
                    break;
                }
            }
        }
        Ok::<_, ClusterError>(())
    };
    let limit = wait.unwrap_or_default() + Duration::from_secs(5);
    match tokio::time::timeout(limit, pull).await {
        Ok(Err(e)) if out.is_empty() => Err(e),
        Err(_) if out.is_empty() => Err(bad(format!("no answer within {limit:?}"))),
        _ => Ok(out),
    }
}

/// A fetched document made ready to run: its PDF in the spool. A message that is not a
/// document is terminated. A document whose PDF cannot be read from the store is given
/// back to run again (a moment later, perhaps elsewhere) while it has deliveries left,
/// and on its last one gets an error line; it is not run.
fn take_in(
    gw: &Gateway,
    nats: &Nats,
    spool: &Spool,
    consumer: &Consumer,
    msg: Message,
) -> Result<Option<Running>, ClusterError> {
    let job = match serde_json::from_slice::<DocJob>(&msg.payload) {
        Ok(j) if nats::valid_job(&j.job) && is_hash(&j.hash) => j,
        _ => {
            tracing::warn!(subject = %msg.subject, "not a document: terminated");
            gw.call(async move {
                let _ = timeout(msg.ack_with(AckKind::Term)).await;
            })?;
            return Ok(None);
        }
    };
    let file = spool.dir.join(format!("{}.pdf", job.hash));
    if !file.exists() {
        let (n, hash) = (nats.clone(), job.hash.clone());
        // Each try may take its time over a large file.
        let got = gw.call(async move {
            let (patience, limit) = (Duration::from_secs(10), Duration::from_secs(120));
            nats::persist_with("reading a document", patience, limit, || {
                n.get_blob(hash.clone())
            })
            .await
        })?;
        match got {
            Ok(bytes) if hash_hex(&bytes) == job.hash => {
                spool.write(&file, &bytes)?;
            }
            got => {
                let why = match got {
                    Ok(_) => "its stored bytes do not match their hash".to_string(),
                    Err(e) => e.to_string(),
                };
                let delivered = msg.info().map_or(i64::MAX, |i| i.delivered);
                if consumer.max_deliver < 0 || delivered < consumer.max_deliver {
                    tracing::warn!(job = job.job, doc = job.doc, error = why, "given back");
                    // Later each time: the store may be out for a while, and each
                    // delivery is one of the document's last few.
                    let times = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
                    let delay =
                        (consumer.ack_wait.saturating_mul(times)).min(Duration::from_secs(300));
                    gw.call(async move {
                        let later = AckKind::Nak(Some(delay));
                        let _ = timeout(msg.ack_with(later)).await;
                    })?;
                    return Ok(None);
                }
                let err = crate::pdf::PdfError::new(crate::pdf::ErrorKind::Io, why);
                let mut line = crate::pdf::DocResult::failed(job.path.clone(), err).line();
                line.push(b'\n');
                let n = nats.clone();
                gw.call(async move {
                    if n.store_result(&job.job, job.doc, line).await.is_ok() {
                        let _ = timeout(msg.double_ack()).await;
                    }
                })?;
                return Ok(None);
            }
        }
    }
    Ok(Some(Running { msg, job, file }))
}

/// This host's name, for the lease's entry.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "host".into())
}

fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// The hex content hash of `bytes`, as documents and blobs are named and checked.
pub(crate) fn hash_hex(bytes: &[u8]) -> String {
    crate::pdf::tasks::to_hex(&job::content_hash_of(bytes))
}

/// The folder documents wait in while they run: agents may read it and nothing else.
struct Spool {
    dir: PathBuf,
    owned: bool,
}

impl Spool {
    fn new(dir: Option<PathBuf>) -> Result<Self, ClusterError> {
        use std::os::unix::fs::DirBuilderExt;
        let (dir, owned) = match dir {
            Some(d) => (d, false),
            None => (
                std::env::temp_dir()
                    .join(format!("neuralflow-swarm-worker-{}", std::process::id())),
                true,
            ),
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ClusterError::Io(format!("spool {}: {e}", dir.display())))?;
        Ok(Self { dir, owned })
    }

    fn write(&self, file: &std::path::Path, bytes: &[u8]) -> Result<(), ClusterError> {
        // Written aside and renamed: a file in the spool is always whole.
        let part = file.with_extension("part");
        std::fs::write(&part, bytes)
            .and_then(|()| std::fs::rename(&part, file))
            .map_err(|e| ClusterError::Io(format!("spool {}: {e}", file.display())))
    }

    /// A document is done with `file`; removed unless another uses it.
    fn release(&self, file: &std::path::Path, in_use: bool) {
        if !in_use {
            let _ = std::fs::remove_file(file);
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
