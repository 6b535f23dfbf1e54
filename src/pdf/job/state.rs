//! What the job knows while it runs: the documents in flight, what each task is to its
//! document, and how a task is submitted. Both strategies and the event loop work on this
//! state; it uses neither.

use super::checkers::Checkers;
use crate::pdf::stages::PDF_PARSE;
use crate::pdf::tasks::{FILL_CACHE, PDF_DOC, PDF_PAGES, USE_CACHE};
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
    /// Generalists: replies with the checkers.
    pub(super) checking: usize,
    /// Its content hash once taken (`Some(None)`: the file could not be read).
    pub(super) hash: Option<Option<[u8; 32]>>,
}

impl Doc {
    pub(super) fn new(path: String) -> Self {
        Self {
            asm: Assembly::new(path),
            started: Instant::now(),
            open_tasks: 1,
            local: false,
            line: None,
            speculated: 0,
            checking: 0,
            hash: None,
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
    pub(super) timeout: Duration,
    pub(super) staged: bool,
    /// Generalists' replies go through the shared cache.
    pub(super) cache: bool,
    /// Content hashes met in this run, and the first document that had each.
    pub(super) seen: HashMap<[u8; 32], usize>,
    /// The run's files by size: how many have each.
    pub(super) sizes: HashMap<u64, u32>,
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
    /// Submits a task of document `d` at `stage`, with the document's time budget.
    pub(super) fn submit(
        &mut self,
        d: usize,
        stage: Stage,
        spec: TaskSpec,
    ) -> Result<(), crate::supervisor::Error> {
        let spec = match spec.kind {
            PDF_DOC | PDF_PAGES if self.cache => self.cached(d, spec),
            _ => spec,
        };
        let id = self.sup.submit_detached(TaskSpec {
            timeout: Some(self.timeout),
            ..spec
        })?;
        self.task_doc.insert(id, (d, stage));
        Ok(())
    }

    /// A generalist's range through the shared cache: its key (the document's content
    /// hash, taken here once a document, and the range) in the request and declared with
    /// the task, which may then use no other. A document that cannot be read here goes
    /// uncached (its agent reports why).
    fn cached(&mut self, d: usize, spec: TaskSpec) -> TaskSpec {
        let Some(doc) = self.docs.get_mut(&d) else {
            return spec;
        };
        // Byte-identical files have one size: a file whose size no other file of the run
        // has cannot have a copy, and is neither hashed nor cached.
        let size = std::fs::metadata(&doc.asm.path).map(|m| m.len()).ok();
        if size.is_none_or(|s| self.sizes.get(&s).copied().unwrap_or(0) < 2) {
            return spec;
        }
        if doc.hash.is_none() {
            doc.hash = Some(
                std::fs::read(&doc.asm.path)
                    .ok()
                    .map(|b| <sha2::Sha256 as sha2::Digest>::digest(&b).into()),
            );
        }
        let (Some(Some(hash)), crate::task::Input::Bytes(b)) = (doc.hash, &spec.input) else {
            return spec;
        };
        let Ok(mut req) = serde_json::from_slice::<PageRequest>(b) else {
            return spec;
        };
        let first = if spec.kind == PDF_DOC {
            1
        } else {
            req.first.max(1)
        };
        let key = crate::pdf::tasks::cache_key(&hash, first, req.last);
        req.cache_key = Some(crate::pdf::tasks::to_hex(&key));
        // The first document of these bytes fills the cache without asking it (so it
        // waits for nothing); a later one asks, and usually finds its ranges there.
        let repeat = self.seen.get(&hash).is_some_and(|&first| first != d);
        self.seen.entry(hash).or_insert(d);
        let flag = if repeat { USE_CACHE } else { FILL_CACHE };
        TaskSpec {
            arg: spec.arg | flag,
            ..spec.with_bytes(serde_json::to_vec(&req).unwrap_or_default())
        }
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
