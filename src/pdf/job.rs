//! `swarm run`: many PDFs through the swarm, one JSON line per document.
//!
//! Two ways through, with the same output line by line:
//! - **Generalists** (the default): each document starts as one [`PDF_DOC`] task (open,
//!   count pages, extract the first chunk); a document longer than a chunk is spread over
//!   agents as [`PDF_PAGES`] range tasks, and its line is assembled here once every range
//!   is in.
//! - **Specialists** (`--roles`): each range goes Parser → Extractor → Analyzer as three
//!   tasks, each stage's output held in page buffers and handed to the next stage by the
//!   supervisor without a copy, and an Aggregator task fans a document's ranges into its
//!   line (see [`super::stages`]). Agents wait for room when the slab is full, so the
//!   job bounds the ranges at each stage (`Job::room`, `Job::feed_extractors`) and
//!   the analyzed ranges waiting for their document (`Job::analyzed`).
//!
//! A document that exceeds its time budget, or whose tasks keep killing their agents, ends
//! as an error line; nothing else is held up by it.
//!
//! Nothing an agent writes is trusted: every generalist reply is parsed as JSON before a
//! byte of it reaches the output. That check is most of the job's CPU per page, so it
//! runs on a few checker threads (`Checkers`) and the job thread only routes tasks and
//! writes lines.

use super::error::{ErrorKind, PdfError};
use super::frames::{Parsed, PARSED_HEAD};
use super::stages::{PDF_AGGREGATE, PDF_ANALYZE, PDF_EXTRACT, PDF_PARSE};
use super::tasks::{PDF_DOC, PDF_PAGES};
use super::wire::{one_line, Assembly, CheckedReply, PageRequest};
use crate::cgroup::Limits;
use crate::supervisor::{AgentClass, Shutdown, Supervisor};
use crate::task::{DeathCause, Failure, Held, Outcome, TaskSpec};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Agents.
    pub agents: u32,
    /// The PDF files.
    pub files: Vec<PathBuf>,
    /// Per-agent memory limit.
    pub memory_limit: Option<u64>,
    /// Time budget of one document.
    pub timeout_per_doc: Duration,
    /// Pages per task.
    pub chunk_pages: u32,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
    /// Specialist agents per role; `None` runs generalists (`agents` of them).
    pub roles: Option<Roles>,
}

/// How many agents take each role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles {
    /// Parsers: load documents, cut pages out.
    pub parser: u32,
    /// Extractors: pages to glyphs.
    pub extractor: u32,
    /// Analyzers: glyphs to layout and text.
    pub analyzer: u32,
    /// Aggregators: ranges to a document's line.
    pub aggregator: u32,
}

impl Roles {
    /// Parses `parser=1,extractor=4,analyzer=1,aggregator=1` (roles left out get none;
    /// every role needs at least one agent).
    pub fn parse(s: &str) -> Result<Roles, String> {
        let mut r = Roles::default();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, n) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected ROLE=N"))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: not a count"))?;
            match name.trim() {
                "parser" => r.parser = n,
                "extractor" => r.extractor = n,
                "analyzer" => r.analyzer = n,
                "aggregator" => r.aggregator = n,
                other => return Err(format!("unknown role {other:?}")),
            }
        }
        if r.parser == 0 || r.extractor == 0 || r.analyzer == 0 || r.aggregator == 0 {
            return Err(
                "every role (parser, extractor, analyzer, aggregator) needs an agent".into(),
            );
        }
        Ok(r)
    }

    /// Agents in all.
    pub fn total(&self) -> u32 {
        self.parser + self.extractor + self.analyzer + self.aggregator
    }

    fn classes(&self) -> Vec<AgentClass> {
        [
            ("parser", self.parser, PDF_PARSE),
            ("extractor", self.extractor, PDF_EXTRACT),
            ("analyzer", self.analyzer, PDF_ANALYZE),
            ("aggregator", self.aggregator, PDF_AGGREGATE),
        ]
        .into_iter()
        .map(|(name, count, kind)| AgentClass {
            name: name.into(),
            count,
            kinds: Some(vec![kind]),
        })
        .collect()
    }
}

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
}

struct Doc {
    asm: Assembly,
    started: Instant,
    open_tasks: usize,
    /// Specialists: page ranges not yet given to a parser.
    todo: VecDeque<(u32, u32)>,
    /// Specialists: ranges in all (known after the first parse), ranges analyzed, and
    /// the Analyzer's replies held in page buffers for the Aggregator.
    ranges: usize,
    arrived: usize,
    analyzed: Vec<Held>,
    /// Page buffers its analyzed replies take, until the document ends (also while the
    /// Aggregator reads them).
    waiting: usize,
    /// Specialists: the document is assembled here, not by an Aggregator; its replies are
    /// taken out of the page buffers as they come.
    local: bool,
    /// Specialists: the Aggregator's line, checked.
    line: Option<(Vec<u8>, u64, bool)>,
    /// Generalists: the last page asked for before the page count was known.
    speculated: u32,
    /// Generalists: replies with the checkers.
    checking: usize,
}

impl Doc {
    fn new(path: String) -> Self {
        Self {
            asm: Assembly::new(path),
            started: Instant::now(),
            open_tasks: 1,
            todo: VecDeque::new(),
            ranges: 0,
            arrived: 0,
            analyzed: Vec::new(),
            waiting: 0,
            local: false,
            line: None,
            speculated: 0,
            checking: 0,
        }
    }
}

/// What a task is to its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Generalists: open and first chunk, or a later range.
    Doc,
    Pages,
    /// Specialists.
    Parse {
        first_range: bool,
    },
    Extract,
    Analyze,
    Aggregate,
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
}

fn failure_kind(f: &Failure) -> ErrorKind {
    match f {
        Failure::Quarantined(causes) => match causes.last() {
            Some(DeathCause::Oom) => ErrorKind::TooLarge,
            Some(DeathCause::Timeout) | Some(DeathCause::Hang) => ErrorKind::Timeout,
            _ => ErrorKind::AgentCrashed,
        },
        Failure::Task(_) => ErrorKind::Malformed,
        Failure::UnknownKind(_) => ErrorKind::Unsupported,
        _ => ErrorKind::AgentCrashed,
    }
}

/// Runs the job, writing one line per document to `out`; `progress` is called after each
/// document with (documents done, pages done).
pub fn run(
    cfg: &RunConfig,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunSummary, RunError> {
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
        // Two tasks queued per agent keep it busy while the supervisor refills (a range
        // takes milliseconds, a refill microseconds). A deeper queue binds work to an
        // agent early, so at the end of a run one agent still has several ranges while
        // another is idle: with 16, a 1,000-page document on 2 agents finished its last
        // ranges on one agent, 50 ms after the other.
        .queue_depth(2);
    // Page buffers (64 KiB): room for every agent's queued replies. Specialists hold
    // stage outputs in the slab too, so they get more. Smaller is faster to set up and
    // tear down: the segment is reserved (fallocate) before the first agent starts.
    let agents_asked = cfg.roles.map_or(cfg.agents, |r| r.total());
    let buffers = if cfg.roles.is_some() {
        (agents_asked * 128).max(1024)
    } else {
        (agents_asked * 64).max(256)
    };
    b = b.buffers(BUFFER_SIZE as u32, buffers);
    if let Some(r) = &cfg.roles {
        b = b.agent_classes(r.classes());
    }
    if let Some(p) = &cfg.agent_bin {
        b = b.agent_bin(p);
    }
    let sup = b.build()?;
    let agents = sup.status().agents.len() as u32;
    let mut job = Job {
        sup: &sup,
        chunk: cfg.chunk_pages.max(1),
        timeout: cfg.timeout_per_doc,
        staged: cfg.roles.is_some(),
        // Analyzed ranges waiting for their document stay under a quarter of the slab,
        // and a Parser gets a new range only while stage outputs take less than another
        // quarter. Those outputs then grow (an Extractor writes ten times what its Parser
        // did), which the counts of ranges in flight bound; should they still fill the
        // slab, Analyzers write into the reserve that held outputs leave (`drains`).
        held_budget: sup.segment().slab(0).count() as usize / 4,
        // Two ranges per agent at each stage keep every stage busy.
        max_ranges: (agents as usize * 2).max(4),
        parked: VecDeque::new(),
        waiting_buffers: 0,
        docs: HashMap::new(),
        task_doc: HashMap::new(),
        agents: agents as usize,
        checkers: Checkers::start(agents as usize),
    };
    let start = Instant::now();
    let mut summary = RunSummary {
        agents,
        ..RunSummary::default()
    };
    let mut next = 0usize;
    let window = (agents as usize * 4).max(8);
    loop {
        // Keep a window of documents in flight.
        while next < cfg.files.len() && job.docs.len() < window && job.room() {
            let last = next + 1 == cfg.files.len();
            job.start(next, cfg.files[next].display().to_string(), last)?;
            next += 1;
        }
        if job.staged {
            job.feed_extractors()?;
            job.feed_parsers()?;
        }
        if job.docs.is_empty() {
            break;
        }
        // While replies are with the checkers, come back soon for them.
        let wait = if job.checkers.outstanding > 0 {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(50)
        };
        if let Some((id, outcome)) = sup.recv(Some(wait)) {
            job.on_outcome(id, outcome)?;
        }
        while let Some(checked) = job.checkers.try_take() {
            job.absorb(checked)?;
        }
        // Deadlines: a document past its budget ends now as a timeout, and its tasks are
        // cancelled, so they stop taking agents' time (and retries) from other documents.
        let now = Instant::now();
        let mut expired = Vec::new();
        for (&k, doc) in job.docs.iter_mut() {
            if doc.open_tasks > 0 && now.duration_since(doc.started) > cfg.timeout_per_doc {
                doc.asm.fail(PdfError::new(
                    ErrorKind::Timeout,
                    format!("not finished within {:?}", cfg.timeout_per_doc),
                ));
                doc.open_tasks = 0;
                doc.line = None;
                expired.push(k);
            }
        }
        if !expired.is_empty() {
            let ids: Vec<u64> = job
                .task_doc
                .iter()
                .filter(|(_, (d, _))| expired.contains(d))
                .map(|(&id, _)| id)
                .collect();
            for id in ids {
                job.task_doc.remove(&id);
                sup.cancel(id);
            }
        }
        let finished: Vec<usize> = job
            .docs
            .iter()
            .filter(|(_, d)| {
                // Ranges still to feed keep a document open while others fill the pipeline.
                d.open_tasks == 0 && d.checking == 0 && (d.todo.is_empty() || d.asm.error.is_some())
            })
            .map(|(k, _)| *k)
            .collect();
        for k in finished {
            let doc = job.docs.remove(&k).expect("listed above");
            job.task_doc.retain(|_, (d, _)| *d != k);
            let (mut line, pages, ok) = job.finish(doc);
            // One write with its newline: stdout's line buffering then finds the newline
            // at the end instead of scanning a whole line that has none.
            line.push(b'\n');
            out.write_all(&line)?;
            summary.documents += 1;
            summary.pages += pages;
            if !ok {
                summary.failed_documents += 1;
            }
            progress(summary.documents, summary.pages);
        }
    }
    out.flush()?;
    let counters = sup.status().counters;
    summary.agent_restarts = counters.agent_restarts;
    summary.tasks_retried = counters.tasks_retried;
    sup.shutdown(Shutdown::Cancel)?;
    summary.wall_seconds = start.elapsed().as_secs_f64();
    summary.pages_per_second = summary.pages as f64 / summary.wall_seconds.max(1e-9);
    Ok(summary)
}

struct Job<'s> {
    sup: &'s Supervisor,
    chunk: u32,
    timeout: Duration,
    staged: bool,
    held_budget: usize,
    /// Specialists: most page ranges at the Parser (queued, or parsed and waiting for an
    /// Extractor), and most between the Extractor and the Analyzer.
    max_ranges: usize,
    /// Specialists: parsed ranges waiting for room at the Extractors.
    parked: VecDeque<(usize, Held)>,
    /// Buffers of analyzed ranges waiting for the rest of their document or for its
    /// Aggregator: not counted against the stage budget, which would otherwise stop the
    /// very parses they wait for, but kept under a budget of their own.
    waiting_buffers: usize,
    docs: HashMap<usize, Doc>,
    task_doc: HashMap<u64, (usize, Stage)>,
    /// Agents in the swarm.
    agents: usize,
    /// Generalists' replies are checked here, off the job thread.
    checkers: Checkers,
}

/// A reply to check: its document, its stage and its bytes.
type CheckJob = (usize, Stage, Vec<u8>);
/// A checked reply.
type Checked = (usize, Stage, Result<CheckedReply, String>);

/// Threads that parse generalists' replies (JSON with the pages kept raw), so that the
/// job thread, which every reply passes through, is not the ceiling on pages/s.
struct Checkers {
    tx: Option<crossbeam_channel::Sender<CheckJob>>,
    rx: crossbeam_channel::Receiver<Checked>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Replies sent and not yet back.
    outstanding: usize,
}

impl Checkers {
    /// One thread per 8 agents, 1 to 4. With no thread (none could be started), replies
    /// are checked on the calling thread.
    fn start(agents: usize) -> Self {
        let (tx, jobs) = crossbeam_channel::unbounded::<CheckJob>();
        let (done, rx) = crossbeam_channel::unbounded::<Checked>();
        let threads = (0..agents.div_ceil(8).clamp(1, 4))
            .filter_map(|i| {
                let (jobs, done) = (jobs.clone(), done.clone());
                std::thread::Builder::new()
                    .name(format!("swarm-check-{i}"))
                    .spawn(move || {
                        for (d, stage, bytes) in jobs {
                            if done.send((d, stage, check_reply(bytes))).is_err() {
                                break;
                            }
                        }
                    })
                    .ok()
            })
            .collect::<Vec<_>>();
        Self {
            tx: (!threads.is_empty()).then_some(tx),
            rx,
            threads,
            outstanding: 0,
        }
    }

    /// Hands a reply over, or checks it here when there are no threads.
    fn check(&mut self, d: usize, stage: Stage, bytes: Vec<u8>) -> Option<Checked> {
        let mut job = (d, stage, bytes);
        if let Some(tx) = &self.tx {
            match tx.send(job) {
                Ok(()) => {
                    self.outstanding += 1;
                    return None;
                }
                Err(crossbeam_channel::SendError(back)) => job = back,
            }
        }
        let (d, stage, bytes) = job;
        Some((d, stage, check_reply(bytes)))
    }

    /// A checked reply, if one is back.
    fn try_take(&mut self) -> Option<Checked> {
        let c = self.rx.try_recv().ok()?;
        self.outstanding -= 1;
        Some(c)
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        self.tx = None; // ends the threads' loops
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Checks an agent's reply (a generalist's, or an Analyzer's): see [`CheckedReply::parse`].
fn check_reply(bytes: Vec<u8>) -> Result<CheckedReply, String> {
    CheckedReply::parse(bytes).map_err(|e| format!("bad reply: {e}"))
}

impl Job<'_> {
    /// Specialists' ranges in flight.
    fn ranges_in_flight(&self) -> InFlight {
        let mut n = InFlight {
            parsing: self.parked.len(),
            ..InFlight::default()
        };
        for (_, stage) in self.task_doc.values() {
            match stage {
                Stage::Parse { .. } => n.parsing += 1,
                Stage::Extract => n.extracting += 1,
                Stage::Analyze => n.analyzing += 1,
                _ => {}
            }
        }
        n
    }

    /// Stage outputs in the slab: all held buffers but the analyzed replies waiting for
    /// their document.
    fn staged_buffers(&self) -> usize {
        self.sup.held_buffers().saturating_sub(self.waiting_buffers)
    }

    /// Whether a Parser may be given another range. Without a bound on ranges in flight
    /// a Parser running ahead queues ranges whose extracted glyphs then fill the slab, and
    /// the Extractor and the Analyzer both wait for room that only they could make.
    fn room(&self) -> bool {
        !self.staged || self.room_to_parse(self.ranges_in_flight().parsing)
    }

    /// [`Self::room`], given the ranges at the Parser.
    fn room_to_parse(&self, parsing: usize) -> bool {
        parsing < self.max_ranges && self.staged_buffers() < self.held_budget
    }

    /// Specialists: parsed ranges go on to the Extractors while fewer than `max_ranges`
    /// are between the Extractor and the Analyzer; the rest wait, parked, in the order
    /// they came. A parked range counts as an open task of its document.
    fn feed_extractors(&mut self) -> Result<(), RunError> {
        // Ranges of documents that failed or ran out of time meanwhile are let go at once,
        // so their documents end now and their buffers come back.
        let (sup, docs) = (self.sup, &mut self.docs);
        self.parked.retain(|&(d, h)| match docs.get_mut(&d) {
            Some(doc) if doc.asm.error.is_none() => true,
            gone => {
                if let Some(doc) = gone {
                    doc.open_tasks -= 1;
                }
                let _ = sup.release_held(h);
                false
            }
        });
        let n = self.ranges_in_flight();
        let mut later = n.extracting + n.analyzing;
        while later < self.max_ranges {
            let Some((d, h)) = self.parked.pop_front() else {
                break;
            };
            self.submit(d, Stage::Extract, Self::forward(PDF_EXTRACT, vec![h], true))?;
            later += 1;
        }
        Ok(())
    }

    fn submit(&mut self, d: usize, stage: Stage, spec: TaskSpec) -> Result<(), RunError> {
        let id = self.sup.submit_detached(TaskSpec {
            timeout: Some(self.timeout),
            ..spec
        })?;
        self.task_doc.insert(id, (d, stage));
        Ok(())
    }

    fn request(kind: u32, path: &str, first: u32, last: u32) -> TaskSpec {
        let req = PageRequest {
            path: path.to_string(),
            first,
            last,
        };
        TaskSpec {
            payload: serde_json::to_vec(&req).unwrap_or_default(),
            keep_output: kind == PDF_PARSE,
            ..TaskSpec::new(kind, 0)
        }
    }

    fn forward(kind: u32, inputs: Vec<Held>, keep_output: bool) -> TaskSpec {
        TaskSpec {
            inputs,
            keep_output,
            ..TaskSpec::new(kind, 0)
        }
    }

    /// Starts document `d`. The page count comes back with its first range; for the
    /// run's `last` document, agents that would idle until then are given the ranges that
    /// follow at once (generalists), so a long document is not opened by one agent while
    /// the others wait. A range past the end comes back empty.
    fn start(&mut self, d: usize, path: String, last: bool) -> Result<(), RunError> {
        let (kind, stage) = if self.staged {
            (PDF_PARSE, Stage::Parse { first_range: true })
        } else {
            (PDF_DOC, Stage::Doc)
        };
        let spec = Self::request(kind, &path, 1, self.chunk);
        let busy: usize = self.docs.values().map(|doc| doc.open_tasks).sum();
        let spare = if last && !self.staged {
            self.agents.saturating_sub(busy + 1)
        } else {
            0
        };
        let mut doc = Doc::new(path);
        let ahead: Vec<(u32, u32)> = ranges(self.chunk + 1, u32::MAX, self.chunk)
            .take(spare)
            .collect();
        doc.speculated = ahead.last().map_or(0, |r| r.1);
        doc.open_tasks += ahead.len();
        let path = doc.asm.path.clone();
        self.docs.insert(d, doc);
        self.submit(d, stage, spec)?;
        for (first, last) in ahead {
            self.submit(
                d,
                Stage::Pages,
                Self::request(PDF_PAGES, &path, first, last),
            )?;
        }
        Ok(())
    }

    /// Specialists: hands parsers the next ranges while page buffers have room.
    fn feed_parsers(&mut self) -> Result<(), RunError> {
        let mut waiting: Vec<usize> = self
            .docs
            .iter()
            .filter(|(_, doc)| !doc.todo.is_empty() && doc.asm.error.is_none())
            .map(|(k, _)| *k)
            .collect();
        waiting.sort_unstable();
        let mut parsing = self.ranges_in_flight().parsing;
        for d in waiting {
            while self.room_to_parse(parsing) {
                let doc = self.docs.get_mut(&d).expect("listed above");
                let Some((first, last)) = doc.todo.pop_front() else {
                    break;
                };
                doc.open_tasks += 1;
                let spec = Self::request(PDF_PARSE, &doc.asm.path, first, last);
                self.submit(d, Stage::Parse { first_range: false }, spec)?;
                parsing += 1;
            }
        }
        Ok(())
    }

    fn on_outcome(&mut self, id: u64, outcome: Outcome) -> Result<(), RunError> {
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
                doc.asm.fail(PdfError::new(failure_kind(&f), f.to_string()));
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
            Stage::Doc | Stage::Pages => {
                doc.checking += 1;
                match self.checkers.check(d, stage, output) {
                    Some(checked) => self.absorb(checked),
                    None => Ok(()),
                }
            }
            Stage::Parse { first_range } => self.parsed(d, first_range, held),
            Stage::Extract => self.extracted(d, held),
            Stage::Analyze => self.analyzed(d, held),
            Stage::Aggregate => {
                let checked = check_line(&doc.asm.path, &output);
                match checked {
                    Ok(line) => doc.line = Some(line),
                    Err(e) => doc.asm.fail(e),
                }
                Ok(())
            }
        }
    }

    /// Generalists: a range's reply, checked.
    fn absorb(&mut self, (d, stage, checked): Checked) -> Result<(), RunError> {
        let Some(doc) = self.docs.get_mut(&d) else {
            return Ok(());
        };
        doc.checking -= 1;
        if doc.asm.error.is_some() {
            return Ok(()); // it ended meanwhile (its deadline, a failed range)
        }
        let reply = match checked {
            Ok(r) => r,
            Err(e) => {
                doc.asm.fail(PdfError::new(ErrorKind::AgentCrashed, e));
                return Ok(());
            }
        };
        let opened = reply.error.is_none();
        let page_count = reply.page_count;
        if page_count > MAX_PAGES {
            doc.asm.fail(too_many_pages(page_count));
            return Ok(());
        }
        doc.asm.absorb(reply);
        let asked = self.chunk.max(doc.speculated);
        if stage == Stage::Doc && opened && page_count > asked {
            let path = doc.asm.path.clone();
            for (first, last) in ranges(asked + 1, page_count, self.chunk) {
                self.docs.get_mut(&d).expect("present").open_tasks += 1;
                self.submit(
                    d,
                    Stage::Pages,
                    Self::request(PDF_PAGES, &path, first, last),
                )?;
            }
        }
        Ok(())
    }

    /// Specialists: a parser's range, passed on to an extractor.
    fn parsed(&mut self, d: usize, first_range: bool, held: Option<Held>) -> Result<(), RunError> {
        let doc = self.docs.get_mut(&d).expect("checked by the caller");
        let Some(h) = held else {
            doc.asm.fail(bad_frame("the parser returned nothing"));
            return Ok(());
        };
        // The agent wrote the head: read it, check it, believe nothing else.
        let head = self
            .sup
            .peek_held(h, PARSED_HEAD)
            .ok()
            .and_then(|b| Parsed::head(&b).ok());
        let Some((page_count, _, _)) = head else {
            let _ = self.sup.release_held(h);
            doc.asm.fail(bad_frame("unreadable parser frame"));
            return Ok(());
        };
        if page_count > MAX_PAGES {
            let _ = self.sup.release_held(h);
            doc.asm.fail(too_many_pages(page_count));
            return Ok(());
        }
        if page_count == 0 {
            // The document did not open: the frame says why.
            let e = self
                .sup
                .take_held(h)
                .ok()
                .and_then(|b| Parsed::decode(&b).ok().and_then(|p| p.error))
                .unwrap_or_else(|| bad_frame("no pages and no error"));
            doc.asm.fail(e);
            return Ok(());
        }
        if first_range {
            doc.asm.page_count = page_count;
            doc.todo = ranges(self.chunk + 1, page_count, self.chunk).collect();
            doc.ranges = 1 + doc.todo.len();
        }
        doc.open_tasks += 1;
        self.parked.push_back((d, h));
        self.feed_extractors()
    }

    /// Specialists: an extracted range, passed on to an analyzer.
    fn extracted(&mut self, d: usize, held: Option<Held>) -> Result<(), RunError> {
        let doc = self.docs.get_mut(&d).expect("checked by the caller");
        let Some(h) = held else {
            doc.asm.fail(bad_frame("the extractor returned nothing"));
            return Ok(());
        };
        doc.open_tasks += 1;
        self.submit(
            d,
            Stage::Analyze,
            TaskSpec {
                // An Analyzer's page JSON is a tenth of the glyphs it reads.
                drains: true,
                ..Self::forward(PDF_ANALYZE, vec![h], true)
            },
        )
    }

    /// Specialists: a range analyzed; once all are, the aggregator gets them.
    fn analyzed(&mut self, d: usize, held: Option<Held>) -> Result<(), RunError> {
        let doc = self.docs.get_mut(&d).expect("checked by the caller");
        let Some(h) = held else {
            doc.asm.fail(bad_frame("the analyzer returned nothing"));
            return Ok(());
        };
        doc.arrived += 1;
        // Replies past the waiting budget (a document whose line would not fit an agent's
        // output, or many documents at once) are taken out of the page buffers now, and
        // their document is assembled here, from the same replies by the same code.
        if !doc.local && self.waiting_buffers + buffers(h) > self.held_budget {
            doc.local = true;
            self.waiting_buffers -= std::mem::take(&mut doc.waiting);
            for h in std::mem::take(&mut doc.analyzed) {
                take_reply(self.sup, &mut doc.asm, h);
            }
        }
        if doc.local {
            take_reply(self.sup, &mut doc.asm, h);
        } else {
            doc.analyzed.push(h);
            doc.waiting += buffers(h);
            self.waiting_buffers += buffers(h);
        }
        if doc.arrived < doc.ranges || doc.local {
            return Ok(());
        }
        // The replies stay counted as waiting while the Aggregator reads them: they are
        // in the slab until the document ends.
        let Ok(path) = self.sup.hold(doc.asm.path.as_bytes()) else {
            return Ok(()); // no room for even the path: assembled here
        };
        let mut inputs = vec![path];
        inputs.append(&mut doc.analyzed);
        doc.open_tasks += 1;
        self.submit(
            d,
            Stage::Aggregate,
            Self::forward(PDF_AGGREGATE, inputs, false),
        )
    }

    /// The line of a finished document: the Aggregator's, or assembled here from what came
    /// in (generalists, documents that failed part way, and documents too big for one
    /// agent output).
    fn finish(&mut self, mut doc: Doc) -> (Vec<u8>, u64, bool) {
        self.waiting_buffers -= std::mem::take(&mut doc.waiting);
        if let Some(line) = doc.line.take() {
            return line;
        }
        for h in doc.analyzed.drain(..) {
            take_reply(self.sup, &mut doc.asm, h);
        }
        doc.asm.render()
    }
}

/// Takes an Analyzer's reply out of the page buffers into its document. The bytes are an
/// agent's: a reply that is not one fails the document.
fn take_reply(sup: &Supervisor, asm: &mut Assembly, h: Held) {
    match sup.take_held(h) {
        Ok(b) => match check_reply(b) {
            Ok(reply) => asm.absorb(reply),
            Err(e) => asm.fail(PdfError::new(ErrorKind::AgentCrashed, e)),
        },
        Err(e) => asm.fail(bad_frame(&format!("an analyzed range is gone: {e}"))),
    }
}

/// Specialists' page ranges at each stage.
#[derive(Debug, Default)]
struct InFlight {
    /// At a Parser, or parsed and parked.
    parsing: usize,
    extracting: usize,
    analyzing: usize,
}

/// The page-buffer size `swarm run` asks for.
const BUFFER_SIZE: usize = 64 * 1024;

/// Page buffers a held output takes.
fn buffers(h: Held) -> usize {
    (h.len().div_ceil(BUFFER_SIZE as u64) as usize).max(1)
}

/// Most pages a document may claim. The count comes from an agent, and the job plans a
/// task per range from it: a lie must not make it plan billions.
const MAX_PAGES: u32 = 1 << 20;

fn too_many_pages(n: u32) -> PdfError {
    PdfError::new(
        ErrorKind::TooLarge,
        format!("{n} pages reported; more than {MAX_PAGES} are not run"),
    )
}

fn bad_frame(what: &str) -> PdfError {
    PdfError::new(ErrorKind::AgentCrashed, what)
}

/// Page ranges of `chunk` pages from `first` to `last`.
fn ranges(first: u32, last: u32, chunk: u32) -> impl Iterator<Item = (u32, u32)> {
    (first..=last)
        .step_by(chunk as usize)
        .map(move |f| (f, f.saturating_add(chunk - 1).min(last)))
}

/// Checks an Aggregator's line before it goes out: JSON of the expected shape, for the
/// expected document. Returns it with its page count and whether the document is ok.
fn check_line(path: &str, line: &[u8]) -> Result<(Vec<u8>, u64, bool), PdfError> {
    #[derive(serde::Deserialize)]
    struct Check<'a> {
        path: String,
        status: String,
        // Read to check its type; its value is the document's own.
        #[serde(rename = "page_count")]
        _page_count: u32,
        #[serde(borrow)]
        pages: Vec<&'a serde_json::value::RawValue>,
    }
    one_line(line).map_err(|e| bad_frame(&format!("bad aggregator line: {e}")))?;
    // An object: serde would also take the fields as an array.
    if line.first() != Some(&b'{') {
        return Err(bad_frame("bad aggregator line: not an object"));
    }
    let c: Check<'_> = serde_json::from_slice(line)
        .map_err(|e| bad_frame(&format!("bad aggregator line: {e}")))?;
    if c.path != path || !matches!(c.status.as_str(), "ok" | "partial" | "error") {
        return Err(bad_frame("the aggregator answered for another document"));
    }
    if c.pages.iter().any(|p| !p.get().starts_with('{')) {
        return Err(bad_frame("bad aggregator line: a page is not an object"));
    }
    Ok((line.to_vec(), c.pages.len() as u64, c.status == "ok"))
}

/// The PDF files under `paths` (directories searched recursively), and from `files_from`
/// (one path per line). Sorted within each directory.
pub fn collect_inputs(paths: &[PathBuf], files_from: Option<&[String]>) -> Vec<PathBuf> {
    fn walk(p: &std::path::Path, out: &mut Vec<PathBuf>, depth: usize) {
        if p.is_dir() {
            if depth > 64 {
                return;
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            entries.sort();
            for e in entries {
                if e.is_dir() {
                    walk(&e, out, depth + 1);
                } else if e.extension().is_some_and(|x| x.eq_ignore_ascii_case("pdf")) {
                    out.push(e);
                }
            }
        } else {
            out.push(p.to_path_buf());
        }
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out, 0);
    }
    for line in files_from.unwrap_or(&[]) {
        let l = line.trim();
        if !l.is_empty() {
            walk(std::path::Path::new(l), &mut out, 0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies come back from the checker threads with their document and stage, parsed
    /// or refused, and the count of those still out goes back to zero.
    #[test]
    fn checkers_parse_replies_off_the_job_thread() {
        let mut c = Checkers::start(16);
        assert_eq!(c.threads.len(), 2);
        let good = br#"{"page_count":2,"first":1,"pages":[{"number":1},{"number":2}]}"#;
        assert!(c.check(7, Stage::Doc, good.to_vec()).is_none());
        assert!(c
            .check(8, Stage::Pages, b"{\"page_count\":".to_vec())
            .is_none());
        let mut back = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while back.len() < 2 && Instant::now() < deadline {
            match c.try_take() {
                Some(x) => back.push(x),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(c.outstanding, 0);
        back.sort_by_key(|(d, _, _)| *d);
        let (d, stage, ok) = &back[0];
        assert_eq!((*d, *stage), (7, Stage::Doc));
        let reply = ok.as_ref().expect("a valid reply");
        assert_eq!(reply.page_count, 2);
        assert_eq!(reply.pages().nth(1), Some(&br#"{"number":2}"#[..]));
        let (d, stage, bad) = &back[1];
        assert_eq!((*d, *stage), (8, Stage::Pages));
        assert!(bad.as_ref().unwrap_err().starts_with("bad reply"));
    }

    /// An agent cannot split its output line to forge another document's: a raw line
    /// break (valid JSON whitespace) is refused in replies and in Aggregator lines, and so
    /// are pages and lines that are not objects.
    #[test]
    fn replies_that_would_break_the_json_lines_framing_are_refused() {
        let forged = r#"{"path":"/other.pdf","status":"ok","page_count":1,"pages":[]}"#;
        let reply = format!(r#"{{"page_count":1,"first":1,"pages":[{{"a":{forged}}}]}}"#);
        assert!(
            check_reply(reply.clone().into_bytes()).is_ok(),
            "the same on one line"
        );
        for brk in ["\n", "\r"] {
            let split = reply.replace(":{\"path", &format!(":{brk}{{\"path"));
            assert!(serde_json::from_str::<serde_json::Value>(&split).is_ok());
            let e = check_reply(split.into_bytes()).unwrap_err();
            assert!(e.contains("line break"), "{e}");
        }
        let not_object = br#"{"page_count":1,"first":1,"pages":[{"number":1},"text"]}"#;
        let e = check_reply(not_object.to_vec()).unwrap_err();
        assert!(e.contains("page 1 of the range is not an object"), "{e}");

        let line = r#"{"path":"/a.pdf","status":"ok","page_count":1,"pages":[{"number":1}]}"#;
        assert!(check_line("/a.pdf", line.as_bytes()).is_ok());
        assert!(
            check_line("/b.pdf", line.as_bytes()).is_err(),
            "another document"
        );
        let split = line.replace(r#","pages""#, "\n,\"pages\"");
        assert!(serde_json::from_str::<serde_json::Value>(&split).is_ok());
        assert!(check_line("/a.pdf", split.as_bytes()).is_err());
        let array = r#"["/a.pdf","ok",1,[{"number":1}]]"#;
        assert!(check_line("/a.pdf", array.as_bytes()).is_err());
        let page = line.replace(r#"{"number":1}"#, "7");
        assert!(check_line("/a.pdf", page.as_bytes()).is_err());
    }
}
