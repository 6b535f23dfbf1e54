//! `swarm serve`'s jobs: many at once through one engine (the PDF job's) on one warm swarm.
//!
//! A job is a list of documents with its own time budget per document and priority.
//! The engine thread owns the supervisor; the HTTP side only adds jobs, asks to cancel
//! them and reads them, through the [`Service`] they share. Documents are let into the
//! engine's window one job at a time in turn, so a job of many slow (or hostile) files
//! takes its share of the window and no more: another job's documents wait for at most
//! the next free place, and each runs under its own job's budget.
//!
//! A job's result lines are appended, in finish order, to a file of its own in the
//! service's results folder (so that memory holds a job's counts, not its text), read
//! from there by its streams, and removed with the job once it has been over for the
//! retention time. That folder is not among those agents may read.

use super::view::Tally;
use crate::pdf::job::{self, DocLimits, Engine, RunConfig, RunError};
use crate::supervisor::Supervisor;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// No document of it has started.
    Queued,
    /// Some have.
    Running,
    /// Every document has its line.
    Done,
    /// Cancelled before it was done: the lines so far stay, no more come.
    Cancelled,
}

impl JobState {
    /// Its name, as in the JSON.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether no more lines will come.
    pub fn is_over(self) -> bool {
        matches!(self, JobState::Done | JobState::Cancelled)
    }
}

/// What `GET /jobs/{id}` answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    /// Its id.
    pub id: String,
    /// Its state.
    pub state: JobState,
    /// Its tasks' priority.
    pub priority: i32,
    /// Its time budget per document, in seconds.
    pub timeout_per_doc_s: f64,
    /// Documents in it.
    pub documents: u64,
    /// Documents with their line.
    pub documents_done: u64,
    /// Of those, not `ok`.
    pub documents_failed: u64,
    /// Pages extracted.
    pub pages: u64,
    /// Lines that could not be kept for reading (their documents are done; the service's
    /// log says why).
    pub results_lost: u64,
    /// When it was submitted (ms since the Unix epoch).
    pub submitted_unix_ms: u64,
    /// Seconds from submission to its end (or to now).
    pub elapsed_s: f64,
}

/// One job.
struct Job {
    state: JobState,
    limits: DocLimits,
    submitted: SystemTime,
    started: Instant,
    ended: Option<Instant>,
    documents: u64,
    failed: u64,
    pages: u64,
    /// Its lines, in finish order, in its results file.
    results: Option<std::fs::File>,
    /// The file's name.
    results_path: PathBuf,
    /// Bytes and lines in it.
    bytes: u64,
    lines: u64,
    /// Lines that could not be written (the disk full, say).
    lost: u64,
    /// Documents not yet let into the engine.
    waiting: VecDeque<PathBuf>,
    /// Documents in the engine.
    open: usize,
    /// Woken at each new line and at the end.
    notify: Arc<tokio::sync::Notify>,
    /// The folder of its uploaded file, removed when it is over.
    upload: Option<PathBuf>,
}

impl Job {
    fn status(&self, id: u64) -> JobStatus {
        let end = self.ended.unwrap_or_else(Instant::now);
        JobStatus {
            id: id.to_string(),
            state: self.state,
            priority: self.limits.priority,
            timeout_per_doc_s: self.limits.timeout.as_secs_f64(),
            documents: self.documents,
            documents_done: self.lines + self.lost,
            results_lost: self.lost,
            documents_failed: self.failed,
            pages: self.pages,
            submitted_unix_ms: self
                .submitted
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            elapsed_s: end.duration_since(self.started).as_secs_f64(),
        }
    }

    /// Ends it in `state`: readers are woken, its upload removed, its results file
    /// closed (readers open it by name from now on: a service keeps many jobs over, and
    /// a descriptor each would run out).
    fn end(&mut self, state: JobState) {
        self.state = state;
        self.results = None;
        self.ended = Some(Instant::now());
        self.waiting.clear();
        if let Some(dir) = self.upload.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        self.notify.notify_waiters();
    }
}

/// What the engine thread is told.
enum Cmd {
    /// A job came in.
    Submitted,
    /// Cancel this job.
    Cancel(u64),
}

/// Why a job was refused or could not be found.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobError {
    /// No such job (or one forgotten after its retention).
    #[error("no job {0}")]
    NotFound(String),
    /// The service is draining: it takes no new jobs.
    #[error("the service is shutting down and takes no new jobs")]
    Draining,
    /// The job is over; it cannot be cancelled.
    #[error("job {0} is already {1}")]
    Over(String, &'static str),
    /// Its results could not be kept.
    #[error("cannot keep results: {0}")]
    Storage(String),
}

/// The jobs and how to reach the engine: shared by the HTTP side and the engine thread.
pub struct Service {
    table: Mutex<Table>,
    cmds: Sender<Cmd>,
    draining: AtomicBool,
    /// What the finished documents add up to.
    pub tally: Tally,
    /// Over jobs are forgotten this long after they end.
    retention: Duration,
    /// Where jobs' results files are.
    results_dir: PathBuf,
}

#[derive(Default)]
struct Table {
    jobs: BTreeMap<u64, Job>,
    next_id: u64,
    /// The job whose document goes into the engine next, in turn.
    turn: u64,
}

impl Service {
    /// A service whose over jobs are kept for `retention`, their results in files under
    /// `results_dir` (made if need be), and the engine thread's end of its commands.
    pub fn new(
        retention: Duration,
        results_dir: PathBuf,
    ) -> std::io::Result<(Arc<Service>, EngineSide)> {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&results_dir)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((
            Arc::new(Service {
                table: Mutex::new(Table {
                    next_id: 1,
                    ..Table::default()
                }),
                cmds: tx,
                draining: AtomicBool::new(false),
                tally: Tally::default(),
                retention,
                results_dir,
            }),
            EngineSide { cmds: rx },
        ))
    }

    /// Adds a job of `files` (already checked by the caller) under `limits`; `upload` is
    /// the folder of an uploaded file, removed when the job is over. Returns its id.
    pub fn submit(
        &self,
        files: Vec<PathBuf>,
        limits: DocLimits,
        upload: Option<PathBuf>,
    ) -> Result<String, JobError> {
        let mut t = self.table.lock();
        // Under the table's lock, as `drain` sets it: a job is either in before the
        // drain (and run, or cancelled at the end) or refused.
        // Acquire: pairs with the Release store in `drain`.
        if self.draining.load(Ordering::Acquire) {
            drop(t);
            if let Some(dir) = upload {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(JobError::Draining);
        }
        let id = t.next_id;
        // Named by this process too: two services on one spool do not meet.
        let results_path = self
            .results_dir
            .join(format!("job-{}-{id}.jsonl", std::process::id()));
        let results = match std::fs::File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&results_path)
        {
            Ok(f) => f,
            Err(e) => {
                drop(t);
                if let Some(dir) = upload {
                    let _ = std::fs::remove_dir_all(dir);
                }
                return Err(JobError::Storage(e.to_string()));
            }
        };
        t.next_id += 1;
        let mut job = Job {
            state: JobState::Queued,
            limits,
            submitted: SystemTime::now(),
            started: Instant::now(),
            ended: None,
            documents: files.len() as u64,
            failed: 0,
            pages: 0,
            results: Some(results),
            results_path,
            bytes: 0,
            lines: 0,
            lost: 0,
            waiting: files.into(),
            open: 0,
            notify: Arc::new(tokio::sync::Notify::new()),
            upload,
        };
        if job.waiting.is_empty() {
            job.end(JobState::Done);
        }
        t.jobs.insert(id, job);
        drop(t);
        let _ = self.cmds.send(Cmd::Submitted);
        Ok(id.to_string())
    }

    /// The status of job `id`.
    pub fn status(&self, id: &str) -> Result<JobStatus, JobError> {
        let t = self.table.lock();
        let (n, job) = Self::find(&t, id)?;
        Ok(job.status(n))
    }

    /// Every job's status, oldest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let t = self.table.lock();
        t.jobs.iter().map(|(&n, j)| j.status(n)).collect()
    }

    /// Jobs by state.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let t = self.table.lock();
        let mut m: BTreeMap<String, u64> = [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Cancelled,
        ]
        .iter()
        .map(|s| (s.name().to_string(), 0))
        .collect();
        for j in t.jobs.values() {
            *m.entry(j.state.name().to_string()).or_insert(0) += 1;
        }
        m
    }

    /// Asks for job `id` to be cancelled: its waiting documents are dropped now, those
    /// running are cancelled by the engine.
    pub fn cancel(&self, id: &str) -> Result<JobStatus, JobError> {
        let mut t = self.table.lock();
        let (n, job) = Self::find_mut(&mut t, id)?;
        if job.state.is_over() {
            return Err(JobError::Over(id.to_string(), job.state.name()));
        }
        job.waiting.clear();
        if job.open == 0 {
            job.end(JobState::Cancelled);
        }
        let status = job.status(n);
        drop(t);
        let _ = self.cmds.send(Cmd::Cancel(n));
        Ok(status)
    }

    /// What to wait on for more of job `id`'s lines: a [`tokio::sync::Notify`] woken at
    /// each new line and at the end. Get it before [`Service::lines_from`], so that a line
    /// that comes after the read wakes a waiter made from it.
    pub fn notify_of(&self, id: &str) -> Result<Arc<tokio::sync::Notify>, JobError> {
        let t = self.table.lock();
        Ok(Self::find(&t, id)?.1.notify.clone())
    }

    /// Job `id`'s lines from byte `from` of its results on (at most `max` bytes, whole
    /// lines), and whether the job is over (no more will come).
    pub fn lines_from(&self, id: &str, from: u64, max: usize) -> Result<(Vec<u8>, bool), JobError> {
        use std::os::unix::fs::FileExt;
        let (file, end, over) = {
            let t = self.table.lock();
            let (_, job) = Self::find(&t, id)?;
            let file = match &job.results {
                Some(f) => f.try_clone(),
                None => std::fs::File::open(&job.results_path),
            };
            (file, job.bytes, job.state.is_over())
        };
        let want = end.saturating_sub(from).min(max as u64) as usize;
        if want == 0 {
            return Ok((Vec::new(), over));
        }
        let file = file.map_err(|e| JobError::Storage(e.to_string()))?;
        let mut buf = vec![0; want];
        file.read_exact_at(&mut buf, from)
            .map_err(|e| JobError::Storage(e.to_string()))?;
        // Whole lines only: a long line past `max` comes whole, alone.
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(last) => buf.truncate(last + 1),
            None => {
                let mut line = Vec::new();
                let mut at = from;
                let mut chunk = vec![0; 64 * 1024];
                while at < end {
                    let n = (end - at).min(chunk.len() as u64) as usize;
                    file.read_exact_at(&mut chunk[..n], at)
                        .map_err(|e| JobError::Storage(e.to_string()))?;
                    match chunk[..n].iter().position(|&b| b == b'\n') {
                        Some(p) => {
                            line.extend_from_slice(&chunk[..=p]);
                            break;
                        }
                        None => line.extend_from_slice(&chunk[..n]),
                    }
                    at += n as u64;
                }
                buf = line;
            }
        }
        // More may be there past `max`: over only once all is read.
        let all_read = from + buf.len() as u64 >= end;
        Ok((buf, over && all_read))
    }

    /// Takes no new jobs from now on; the engine finishes those it has, then stops.
    pub fn drain(&self) {
        let t = self.table.lock();
        // Release: pairs with the Acquire loads in `submit` and the engine loop.
        self.draining.store(true, Ordering::Release);
        drop(t);
        let _ = self.cmds.send(Cmd::Submitted);
    }

    /// Whether it is draining.
    pub fn is_draining(&self) -> bool {
        // Acquire: pairs with the Release store in `drain`.
        self.draining.load(Ordering::Acquire)
    }

    fn find<'t>(t: &'t Table, id: &str) -> Result<(u64, &'t Job), JobError> {
        let n: u64 = id.parse().map_err(|_| JobError::NotFound(id.to_string()))?;
        t.jobs
            .get(&n)
            .map(|j| (n, j))
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    fn find_mut<'t>(t: &'t mut Table, id: &str) -> Result<(u64, &'t mut Job), JobError> {
        let n: u64 = id.parse().map_err(|_| JobError::NotFound(id.to_string()))?;
        t.jobs
            .get_mut(&n)
            .map(|j| (n, j))
            .ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// The next document to let in, from the job whose turn it is (the turn then passes
    /// on); with it its job, its limits, and whether any other waits after it.
    fn next_document(&self) -> Option<(u64, PathBuf, DocLimits, bool)> {
        let mut t = self.table.lock();
        let after = t.turn;
        let pick = t
            .jobs
            .range(after + 1..)
            .chain(t.jobs.range(..=after))
            .find(|(_, j)| !j.waiting.is_empty())
            .map(|(&n, _)| n)?;
        t.turn = pick;
        let job = t.jobs.get_mut(&pick).expect("found above");
        let path = job.waiting.pop_front().expect("not empty");
        job.open += 1;
        if job.state == JobState::Queued {
            job.state = JobState::Running;
        }
        let limits = job.limits;
        let more = t.jobs.values().any(|j| !j.waiting.is_empty());
        Some((pick, path, limits, more))
    }

    /// A document of job `n` finished with `line`.
    fn finished(&self, n: u64, line: Vec<u8>, pages: u64, ok: bool) {
        self.tally.finished(ok, pages);
        let mut t = self.table.lock();
        let Some(job) = t.jobs.get_mut(&n) else {
            return;
        };
        job.open -= 1;
        if job.state.is_over() {
            return;
        }
        use std::os::unix::fs::FileExt;
        // Written at its place: a reader never sees part of a line (it reads up to
        // `bytes`, which moves after the write), and a write that failed part way is
        // written over by the next line.
        let at = job.bytes;
        match job.results.as_ref().map(|f| f.write_all_at(&line, at)) {
            Some(Ok(())) => {
                job.bytes += line.len() as u64;
                job.lines += 1;
            }
            Some(Err(e)) => {
                tracing::error!(job = n, error = %e, "a result line could not be kept");
                job.lost += 1;
            }
            None => job.lost += 1,
        }
        job.pages += pages;
        if !ok {
            job.failed += 1;
        }
        if job.open == 0 && job.waiting.is_empty() {
            job.end(JobState::Done);
        } else {
            job.notify.notify_waiters();
        }
    }

    /// A document of job `n` was cancelled in the engine.
    fn dropped(&self, n: u64) {
        let mut t = self.table.lock();
        if let Some(job) = t.jobs.get_mut(&n) {
            job.open -= 1;
            if job.open == 0 && job.waiting.is_empty() && !job.state.is_over() {
                job.end(JobState::Cancelled);
            }
        }
    }

    /// Forgets the jobs over for longer than the retention, with their results.
    fn forget_old(&self) {
        let mut t = self.table.lock();
        let keep = self.retention;
        t.jobs.retain(|_, j| {
            let kept = j.ended.is_none_or(|e| e.elapsed() < keep);
            if !kept {
                let _ = std::fs::remove_file(&j.results_path);
            }
            kept
        });
    }

    /// Removes every job's results (the service is ending).
    pub fn remove_results(&self) {
        let mut t = self.table.lock();
        for j in t.jobs.values_mut() {
            j.results = None;
            let _ = std::fs::remove_file(&j.results_path);
        }
    }

    /// Whether any job has documents waiting.
    fn any_waiting(&self) -> bool {
        self.table
            .lock()
            .jobs
            .values()
            .any(|j| !j.waiting.is_empty())
    }

    /// Ends every job not over, as cancelled (the swarm stopped under them).
    fn cancel_all(&self) {
        let mut t = self.table.lock();
        for j in t.jobs.values_mut().filter(|j| !j.state.is_over()) {
            j.end(JobState::Cancelled);
        }
    }
}

/// The engine thread's end of the service.
pub struct EngineSide {
    cmds: Receiver<Cmd>,
}

/// How often over jobs are looked at for forgetting.
const SWEEP: Duration = Duration::from_secs(1);

impl EngineSide {
    /// Runs jobs of `service` on `sup` (from [`job::build_supervisor`] with `plan`) until
    /// the service drains and nothing is left, or `stop` is set; then every job not over
    /// ends as cancelled. The caller shuts the supervisor down.
    pub(crate) fn run(
        self,
        service: &Service,
        sup: &Supervisor,
        plan: job::Plan,
        cfg: &RunConfig,
        stop: &AtomicBool,
    ) -> Result<(), RunError> {
        /// Whatever ends the engine (its end, an error, a panic), the service takes no
        /// more jobs and ends those it has: no stream waits for ever.
        struct Closing<'a>(&'a Service);
        impl Drop for Closing<'_> {
            fn drop(&mut self) {
                self.0.drain();
                self.0.cancel_all();
            }
        }
        let _closing = Closing(service);
        self.drive(service, sup, plan, cfg, stop)
    }

    fn drive(
        &self,
        service: &Service,
        sup: &Supervisor,
        plan: job::Plan,
        cfg: &RunConfig,
        stop: &AtomicBool,
    ) -> Result<(), RunError> {
        let mut engine = Engine::new(sup, cfg, plan);
        let window = engine.window();
        // Documents in the engine: by number, their job.
        let mut doc_job: HashMap<usize, u64> = HashMap::new();
        let mut next_doc = 0usize;
        let mut last_sweep = Instant::now();
        // Acquire: pairs with the Release store of whoever stops the service.
        while !stop.load(Ordering::Acquire) {
            // Commands: block for them only when nothing runs.
            let first = if engine.open() == 0 {
                self.cmds.recv_timeout(Duration::from_millis(200)).ok()
            } else {
                self.cmds.try_recv().ok()
            };
            for cmd in first.into_iter().chain(self.cmds.try_iter()) {
                if let Cmd::Cancel(n) = cmd {
                    let docs: Vec<usize> = doc_job
                        .iter()
                        .filter(|(_, &j)| j == n)
                        .map(|(&d, _)| d)
                        .collect();
                    for d in docs {
                        engine.cancel(d);
                        doc_job.remove(&d);
                        service.dropped(n);
                    }
                }
            }
            while engine.open() < window {
                let Some((n, path, limits, more)) = service.next_document() else {
                    break;
                };
                engine.start(next_doc, path.display().to_string(), limits, !more)?;
                doc_job.insert(next_doc, n);
                next_doc += 1;
            }
            if engine.open() > 0 {
                for done in engine.step(Duration::from_millis(20))? {
                    if let Some(n) = doc_job.remove(&done.doc) {
                        service.finished(n, done.line, done.pages, done.ok);
                    }
                }
            } else if service.is_draining() && !service.any_waiting() {
                break;
            }
            if last_sweep.elapsed() >= SWEEP {
                service.forget_old();
                last_sweep = Instant::now();
            }
        }
        Ok(())
    }
}
