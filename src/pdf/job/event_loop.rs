//! The job's event loop: documents in (a window of them open at once), outcomes routed
//! to their strategy, deadlines enforced, finished documents' lines out.

use super::checkers::Checkers;
use super::config::RunConfig;
use super::sizing::{self, BUFFER_SIZE, QUEUE_DEPTH};
use super::state::{Doc, DocLimits, Job, Stage};
use crate::cgroup::Limits;
use crate::pdf::error::{ErrorKind, PdfError};
use crate::runtime::sandbox::{SandboxPolicy, SandboxReport};
use crate::supervisor::{RecvError, Shutdown, Supervisor};
use crate::task::{DeathCause, Failure, Outcome, TaskId};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// The `--summary` object.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunSummary {
    /// Documents processed.
    pub documents: u64,
    /// Pages extracted.
    pub pages: u64,
    /// Documents whose status is not `ok`.
    pub failed_documents: u64,
    /// Wall time.
    pub wall_seconds: f64,
    /// Pages per second.
    pub pages_per_second: f64,
    /// Agents.
    pub agents: u32,
    /// Agents replaced during the run.
    pub agent_restarts: u64,
    /// Task attempts retried after agent deaths.
    pub tasks_retried: u64,
    /// Page ranges whose reply came from the shared cache (a byte-identical document's).
    pub cache_hits: u64,
    /// With `--journal`: documents recorded by an earlier run, not written again.
    pub journaled: u64,
    /// With `--journal`: copies of recorded documents, written from the journal without
    /// extraction (counted in `documents`).
    pub from_journal: u64,
    /// Each measure of the agents' sandbox and how it stood.
    pub sandbox: SandboxReport,
}

/// Errors that stop the whole run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Supervisor trouble.
    #[error(transparent)]
    Supervisor(#[from] crate::supervisor::Error),
    /// Writing the output.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Reading or writing the journal.
    #[error(transparent)]
    Journal(#[from] super::journal::JournalError),
}

/// By file: whether another file of `files` has its size (byte-identical files have one,
/// so only those may be copies).
fn twins(files: &[std::path::PathBuf]) -> Vec<bool> {
    let sizes: Vec<Option<u64>> = files
        .iter()
        .map(|f| std::fs::metadata(f).ok().map(|m| m.len()))
        .collect();
    let mut count: HashMap<u64, u32> = HashMap::new();
    for s in sizes.iter().flatten() {
        *count.entry(*s).or_insert(0) += 1;
    }
    sizes
        .iter()
        .map(|s| s.is_some_and(|s| count[&s] > 1))
        .collect()
}

/// What a failed task means for its document.
fn failure_kind(f: &Failure) -> ErrorKind {
    match f {
        Failure::Quarantined(causes) => match causes.last() {
            Some(DeathCause::Oom) => ErrorKind::TooLarge,
            Some(DeathCause::Timeout) | Some(DeathCause::Hang) => ErrorKind::Timeout,
            _ => ErrorKind::AgentCrashed,
        },
        Failure::Task(e) => ErrorKind::of_task_error(e),
        Failure::UnknownKind(_) => ErrorKind::Unsupported,
        _ => ErrorKind::AgentCrashed,
    }
}

/// What [`build_supervisor`] decided, for the [`Engine`] on it.
pub(crate) struct Plan {
    /// By file of the config's `files`, whether it may have a byte-identical copy among
    /// them (see [`twins`]; all `false` without the cache).
    twins: Vec<bool>,
    /// The supervisor's page buffers.
    buffers: u32,
    /// By file, its content hash where the caller knows it ([`Plan::knowing`]).
    known: Vec<Option<[u8; 32]>>,
}

impl Plan {
    /// The plan, with the files' content hashes known already (by file of the config's
    /// `files`; `None` where not): the job then does not read and hash them again.
    pub(crate) fn knowing(self, known: Vec<Option<[u8; 32]>>) -> Plan {
        Plan { known, ..self }
    }
}

/// The supervisor for `cfg`, its agents allowed to read `read_paths`. With a copy
/// possible among `cfg.files`, the shared cache is set up.
pub(crate) fn build_supervisor(
    cfg: &RunConfig,
    read_paths: Vec<std::path::PathBuf>,
) -> Result<(Supervisor, Plan), RunError> {
    let agents_asked = cfg.roles.map_or(cfg.agents, |r| r.total());
    // The run's files by size: byte-identical files have one, so only a run with two files
    // of a size can have copies, and only then is the cache set up (its page buffers cost
    // their reservation at start).
    let twins = if cfg.cache && cfg.roles.is_none() {
        twins(&cfg.files)
    } else {
        vec![false; cfg.files.len()]
    };
    let cache = twins.contains(&true);
    let buffers = sizing::buffer_count_cached(agents_asked, cfg.roles.is_some(), cache);
    let mut b = Supervisor::builder()
        .agents(cfg.agents)
        .limits(Limits {
            memory_bytes: cfg.memory_limit,
            ..Limits::default()
        })
        .require_cgroups(cfg.require_cgroups)
        // Extraction beats per page; a page that takes longer than this is stuck.
        .hang_timeout(cfg.timeout_per_doc.max(Duration::from_secs(1)))
        // Page ranges take milliseconds: waiting for them need not poll.
        .wait_spin(Duration::ZERO)
        .queue_depth(QUEUE_DEPTH)
        .buffers(BUFFER_SIZE as u32, buffers);
    if cache {
        b = b.cache(sizing::CACHE_ENTRIES, sizing::CACHE_BYTES);
    }
    if let Some(r) = &cfg.roles {
        b = b
            .agent_classes(r.classes())
            .graph_flow(sizing::graph_flow(agents_asked, buffers));
    } else if let Some(min) = cfg.min_agents {
        b = b.elastic(min, cfg.agents);
    }
    b = b.sandbox(SandboxPolicy {
        read_paths,
        ..cfg.sandbox.clone()
    });
    if let Some(p) = &cfg.agent_bin {
        b = b.agent_bin(p);
    }
    Ok((
        b.build()?,
        Plan {
            twins,
            buffers,
            known: Vec::new(),
        },
    ))
}

/// A document the engine finished.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    /// The number it was started with.
    pub(crate) doc: usize,
    /// Its JSON line, with its newline.
    pub(crate) line: Vec<u8>,
    /// Pages extracted.
    pub(crate) pages: u64,
    /// Whether its status is `ok`.
    pub(crate) ok: bool,
}

/// Documents through a supervisor: started one at a time by the caller, each ending as a
/// [`Finished`] line out of [`Engine::step`]. `swarm run` feeds it a list of files;
/// `swarm serve` the documents of many jobs.
pub(crate) struct Engine<'s> {
    job: Job<'s>,
}

impl<'s> Engine<'s> {
    /// An engine on `sup`, built by [`build_supervisor`] for `cfg` with `plan`.
    pub(crate) fn new(sup: &'s Supervisor, cfg: &RunConfig, plan: Plan) -> Self {
        let agents = sup.status().agents.len();
        Self {
            job: Job {
                sup,
                chunk: cfg.chunk_pages.max(1),
                staged: cfg.roles.is_some(),
                seen: HashMap::new(),
                twins: plan.twins,
                known: plan.known,
                aggregated_pages_max: sizing::aggregated_pages_max(plan.buffers),
                docs: HashMap::new(),
                task_doc: HashMap::new(),
                agents,
                checkers: Checkers::start(agents),
            },
        }
    }

    /// How many documents to keep open at once for the agents to be busy.
    pub(crate) fn window(&self) -> usize {
        sizing::window(self.job.agents)
    }

    /// Documents open (started, not yet finished).
    pub(crate) fn open(&self) -> usize {
        self.job.docs.len()
    }

    /// Starts document `d` (a number the caller gives, unique among those open; a file of
    /// the `twins` given at [`Engine::new`] by its index there) at `path`. `last`: no
    /// other document follows it soon, so idle agents may take its later ranges at once.
    pub(crate) fn start(
        &mut self,
        d: usize,
        path: String,
        limits: DocLimits,
        last: bool,
    ) -> Result<(), RunError> {
        if self.job.staged {
            self.job.start_specialist(d, path, limits)?;
        } else {
            self.job.start_generalist(d, path, limits, last)?;
        }
        Ok(())
    }

    /// Ends document `d` now, without a line: its tasks are cancelled.
    pub(crate) fn cancel(&mut self, d: usize) {
        if self.job.docs.remove(&d).is_some() {
            self.job.cancel_tasks(&[d]);
        }
    }

    /// Waits up to `wait` for what agents did, routes it, enforces deadlines, and returns
    /// the documents that finished.
    pub(crate) fn step(&mut self, wait: Duration) -> Result<Vec<Finished>, RunError> {
        let job = &mut self.job;
        // While replies are with the checkers, come back soon for them.
        let wait = if job.checkers.outstanding > 0 {
            wait.min(Duration::from_millis(1))
        } else {
            wait
        };
        match job.sup.recv(Some(wait)) {
            Ok((id, outcome)) => job.on_outcome(id, outcome)?,
            // Every task delivered and the supervisor stopped: nothing more will come.
            Err(RecvError::Stopped) => return Err(crate::supervisor::Error::Stopped.into()),
            Err(RecvError::Timeout | RecvError::Empty) => {}
        }
        while let Some(checked) = job.checkers.try_take() {
            job.absorb(checked)?;
        }
        job.expire();
        let finished: Vec<usize> = job
            .docs
            .iter()
            .filter(|(_, d)| d.open_tasks == 0 && d.checking == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::with_capacity(finished.len());
        for k in finished {
            let doc = job.docs.remove(&k).expect("listed above");
            job.task_doc.retain(|_, (d, _)| *d != k);
            let (mut line, pages, ok) = job.finish(doc);
            line.push(b'\n');
            out.push(Finished {
                doc: k,
                line,
                pages,
                ok,
            });
        }
        Ok(out)
    }
}

/// Runs the job, writing one line per document to `out`; `progress` is called after each
/// document with (documents done, pages done).
pub fn run(
    cfg: &RunConfig,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunSummary, RunError> {
    let (sup, plan) = build_supervisor(cfg, super::inputs::read_roots(&cfg.files))?;
    let mut summary = run_on(&sup, plan, cfg, out, &mut |_, s| {
        progress(s.documents, s.pages);
        Ok(())
    })?;
    let started = Instant::now();
    sup.shutdown(Shutdown::Cancel)?;
    summary.wall_seconds += started.elapsed().as_secs_f64();
    summary.pages_per_second = summary.pages as f64 / summary.wall_seconds.max(1e-9);
    Ok(summary)
}

/// Runs the job on `sup` (from [`build_supervisor`] with `plan`), writing one line per
/// document to `out`; `finished` is called after each document is written (and flushed),
/// with it and the summary so far, and its error ends the run. The supervisor is left
/// running.
pub(crate) fn run_on(
    sup: &Supervisor,
    plan: Plan,
    cfg: &RunConfig,
    out: &mut dyn Write,
    finished: &mut dyn FnMut(&Finished, &RunSummary) -> Result<(), RunError>,
) -> Result<RunSummary, RunError> {
    let status = sup.status();
    let mut engine = Engine::new(sup, cfg, plan);
    let start = Instant::now();
    let mut summary = RunSummary {
        agents: status.agents.len() as u32,
        sandbox: status.isolation.sandbox,
        ..RunSummary::default()
    };
    let limits = cfg.doc_limits();
    let mut next = 0usize;
    let window = engine.window();
    loop {
        // Keep a window of documents in flight.
        while next < cfg.files.len() && engine.open() < window {
            let last = next + 1 == cfg.files.len();
            engine.start(next, cfg.files[next].display().to_string(), limits, last)?;
            next += 1;
        }
        if engine.open() == 0 {
            break;
        }
        let batch = engine.step(Duration::from_millis(50))?;
        if batch.is_empty() {
            continue;
        }
        for done in &batch {
            // One write with its newline: stdout's line buffering then finds the newline
            // at the end instead of scanning a whole line that has none.
            out.write_all(&done.line)?;
        }
        // Out of our buffer before anyone is told: a document counted (by the metrics, in
        // the journal) is one whose line the kernel has, so a kill loses none of them.
        out.flush()?;
        for done in &batch {
            summary.documents += 1;
            summary.pages += done.pages;
            if !done.ok {
                summary.failed_documents += 1;
            }
            finished(done, &summary)?;
        }
    }
    drop(engine);
    let counters = sup.status().counters;
    summary.agent_restarts = counters.agent_restarts;
    summary.tasks_retried = counters.tasks_retried;
    summary.cache_hits = counters.cache_hits;
    summary.wall_seconds = start.elapsed().as_secs_f64();
    summary.pages_per_second = summary.pages as f64 / summary.wall_seconds.max(1e-9);
    Ok(summary)
}

impl Job<'_> {
    /// Routes a task's outcome to its document's strategy.
    fn on_outcome(&mut self, id: TaskId, outcome: Outcome) -> Result<(), RunError> {
        let Some((d, stage)) = self.task_doc.remove(&id) else {
            // A task of a document that already ended (its deadline passed): free what it
            // left in page buffers.
            if let Outcome::Completed { held: Some(h), .. } = outcome {
                let _ = self.sup.release_held(h);
            }
            return Ok(());
        };
        let Some(doc) = self.docs.get_mut(&d) else {
            return Ok(());
        };
        doc.open_tasks -= 1;
        let (output, held) = match outcome {
            Outcome::Completed { output, held, .. } => (output, held),
            Outcome::Failed(f) => {
                // The first failure is the document's; the rest of it is let go.
                if doc.asm.error.is_none() {
                    doc.asm.fail(PdfError::new(failure_kind(&f), f.to_string()));
                    self.let_go_queued(d);
                }
                return Ok(());
            }
        };
        if doc.asm.error.is_some() {
            if let Some(h) = held {
                let _ = self.sup.release_held(h);
            }
            return Ok(());
        }
        match stage {
            Stage::Doc | Stage::Pages => self.replied(d, stage, output)?,
            Stage::Parse { first_range: true } => self.parsed(d, held)?,
            _ => self.staged(d, stage, output, held),
        }
        Ok(())
    }

    /// A failed document's tasks that have not started: cancelled, so they take no agent's
    /// time; those running end by themselves.
    fn let_go_queued(&mut self, d: usize) {
        for (&id, _) in self.task_doc.iter().filter(|(_, (doc, _))| *doc == d) {
            self.sup.cancel_queued(id);
        }
    }

    /// Deadlines: a document past its budget ends now as a timeout, and its tasks are
    /// cancelled, so they stop taking agents' time (and retries) from other documents.
    fn expire(&mut self) {
        let now = Instant::now();
        let mut expired = Vec::new();
        for (&k, doc) in self.docs.iter_mut() {
            let budget = doc.limits.timeout;
            if doc.open_tasks > 0 && now.duration_since(doc.started) > budget {
                doc.asm.fail(PdfError::new(
                    ErrorKind::Timeout,
                    format!("not finished within {budget:?}"),
                ));
                doc.open_tasks = 0;
                doc.line = None;
                expired.push(k);
            }
        }
        if !expired.is_empty() {
            self.cancel_tasks(&expired);
        }
    }

    /// Cancels every task of the documents `docs` and forgets them (their documents end
    /// without them).
    fn cancel_tasks(&mut self, docs: &[usize]) {
        let ids: Vec<TaskId> = self
            .task_doc
            .iter()
            .filter(|(_, (d, _))| docs.contains(d))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.task_doc.remove(&id);
            self.sup.cancel(id);
        }
    }

    /// The line of a finished document: the Aggregator's, or assembled here from what came
    /// in (generalists, documents that failed part way, and documents too big for one
    /// agent output).
    fn finish(&mut self, mut doc: Doc) -> (Vec<u8>, u64, bool) {
        match doc.line.take() {
            Some(line) if doc.asm.error.is_none() => line,
            _ => doc.asm.render(),
        }
    }
}
