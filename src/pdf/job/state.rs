//! What the job knows while it runs: the documents in flight, what each task is to its
//! document, and how a task is submitted. Both strategies and the event loop work on this
//! state; it uses neither.

use super::checkers::Checkers;
use crate::pdf::stages::PDF_PARSE;
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
        let id = self.sup.submit_detached(TaskSpec {
            timeout: Some(self.timeout),
            ..spec
        })?;
        self.task_doc.insert(id, (d, stage));
        Ok(())
    }

    /// A task of `kind` on pages `first..=last` of `path`.
    pub(super) fn request(kind: TaskKind, path: &str, first: u32, last: u32) -> TaskSpec {
        let req = PageRequest {
            path: path.to_string(),
            first,
            last,
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
