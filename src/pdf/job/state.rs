//! What the job knows while it runs: the documents in flight, what each task is to its
//! document, and how a task is submitted. Both strategies and the event loop work on this
//! state; it uses neither.

use super::checkers::Checkers;
use crate::pdf::stages::PDF_PARSE;
use crate::pdf::tasks::{FILL_CACHE, USE_CACHE};
use crate::pdf::wire::{Assembly, PageRequest};
use crate::supervisor::Supervisor;
use crate::task::{Output, TaskId, TaskKind, TaskSpec};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A document in flight.
pub(super) struct Doc {
    pub(super) asm: Assembly,
    pub(super) started: Instant,
    pub(super) open_tasks: usize,
    /// Specialists: the document is assembled here, not by an Aggregator; its Analyzers'
    /// replies are taken out of the page buffers as they come.
    pub(super) local: bool,
    /// Specialists: the Aggregator's line, checked.
    pub(super) line: Option<(Vec<u8>, u64, bool)>,
    /// Generalists: the last page asked for before the page count was known.
    pub(super) speculated: u32,
    /// Generalists: the run's last document, whose end is the run's end: its last ranges
    /// are cut smaller, so that no agent finishes long before the others.
    pub(super) last: bool,
    /// Generalists: replies with the checkers.
    pub(super) checking: usize,
    /// Generalists: its content hash and how its ranges use the shared cache
    /// ([`crate::pdf::tasks::FILL_CACHE`] or [`crate::pdf::tasks::USE_CACHE`]), if they do.
    pub(super) cache: Option<([u8; 32], u64)>,
    /// Its time budget and its tasks' priority.
    pub(super) limits: DocLimits,
}

/// A document's time budget and its tasks' priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocLimits {
    /// The document ends as a timeout if it is not done within this.
    pub timeout: Duration,
    /// Its tasks' priority ([`TaskSpec::priority`]): higher goes first.
    pub priority: i32,
}

impl Doc {
    pub(super) fn new(path: String, limits: DocLimits) -> Self {
        Self {
            limits,
            asm: Assembly::new(path),
            started: Instant::now(),
            open_tasks: 1,
            local: false,
            line: None,
            speculated: 0,
            last: false,
            checking: 0,
            cache: None,
        }
    }
}

/// What a task is to its document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
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

/// The job: its supervisor, its documents and their tasks.
pub(super) struct Job<'s> {
    pub(super) sup: &'s Supervisor,
    pub(super) chunk: u32,
    pub(super) staged: bool,
    /// Content hashes met in this run, and the first document that had each.
    pub(super) seen: HashMap<[u8; 32], usize>,
    /// By file: whether another file of the run has its size (so that it may be a copy).
    pub(super) twins: Vec<bool>,
    /// By file: its content hash, if the caller knew it already (the journal hashed it).
    pub(super) known: Vec<Option<[u8; 32]>>,
    /// Specialists: documents longer than this are assembled here, not by an Aggregator
    /// (their line might not fit an agent's output).
    pub(super) aggregated_pages_max: u32,
    pub(super) docs: HashMap<usize, Doc>,
    pub(super) task_doc: HashMap<TaskId, (usize, Stage)>,
    /// Agents in the swarm.
    pub(super) agents: usize,
    /// Generalists' replies are checked here, off the job thread.
    pub(super) checkers: Checkers<(usize, Stage)>,
}

impl Job<'_> {
    /// Submits a task of document `d` at `stage`, with the document's limits.
    pub(super) fn submit(
        &mut self,
        d: usize,
        stage: Stage,
        spec: TaskSpec,
    ) -> Result<(), crate::supervisor::Error> {
        let id = self.sup.submit_detached(self.limited(d, spec))?;
        self.task_doc.insert(id, (d, stage));
        Ok(())
    }

    /// `spec` with document `d`'s time budget and priority.
    pub(super) fn limited(&self, d: usize, spec: TaskSpec) -> TaskSpec {
        let limits = self.docs.get(&d).map(|doc| doc.limits);
        TaskSpec {
            timeout: limits.map(|l| l.timeout),
            priority: limits.map_or(0, |l| l.priority),
            ..spec
        }
    }

    /// Decides once, when document `d` starts, whether its ranges go through the shared
    /// cache: only a file that shares its size with another file of the run can have a
    /// byte-identical copy, and only such a file is hashed (a file that cannot be read
    /// here goes uncached; its agent reports why). The first document of some bytes fills
    /// the cache without asking it (it waits for nothing); a later one asks.
    pub(super) fn plan_cache(&mut self, d: usize) {
        if !self.twins.get(d).copied().unwrap_or(false) {
            return;
        }
        let Some(doc) = self.docs.get_mut(&d) else {
            return;
        };
        let known = self.known.get(d).copied().flatten();
        let Some(hash) = known.or_else(|| super::inputs::content_hash(doc.asm.path.as_ref()))
        else {
            return;
        };
        let first = *self.seen.entry(hash).or_insert(d);
        doc.cache = Some((hash, if first == d { FILL_CACHE } else { USE_CACHE }));
    }

    /// A generalist's task of `kind` on pages `first..=last` of document `d`: through the
    /// shared cache if [`Job::plan_cache`] said so, its key (the content hash and the
    /// range) in the request and declared with the task, which may then use no other.
    pub(super) fn range(&self, d: usize, kind: TaskKind, first: u32, last: u32) -> TaskSpec {
        let doc = &self.docs[&d];
        let Some((hash, flag)) = doc.cache else {
            return Self::request(kind, &doc.asm.path, first, last);
        };
        let key = crate::pdf::tasks::cache_key(&hash, first.max(1), last);
        let req = PageRequest {
            path: doc.asm.path.clone(),
            first,
            last,
            cache_key: Some(crate::pdf::tasks::to_hex(&key)),
        };
        TaskSpec::new(kind, flag)
            .with_bytes(serde_json::to_vec(&req).unwrap_or_default())
            .with_cache_key(key)
    }

    /// A task of `kind` on pages `first..=last` of `path`.
    pub(super) fn request(kind: TaskKind, path: &str, first: u32, last: u32) -> TaskSpec {
        let req = PageRequest {
            path: path.to_string(),
            first,
            last,
            cache_key: None,
        };
        let output = if kind == PDF_PARSE {
            Output::Hold
        } else {
            Output::Return
        };
        TaskSpec::new(kind, 0)
            .with_bytes(serde_json::to_vec(&req).unwrap_or_default())
            .with_output(output)
    }
}
