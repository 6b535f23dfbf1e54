//! Specialists: a document is a task graph on the coordination layer. Its first range
//! goes to a Parser alone, which tells its page count; then the rest of the document is
//! one graph:
//!
//! ```text
//! Extract(range 1's parse) → Analyze ─┐
//! Parse(range k) → Extract → Analyze ─┼→ Aggregate(path, replies in range order) → line
//!              …                      ┘
//! ```
//!
//! Every stage's output stays in the supervisor's keeping and goes to the next stage as
//! its input without another copy; the supervisor frees each once its stage is done.
//! How far the Parsers run ahead is the supervisor's graph flow control
//! ([`GraphFlow`](crate::supervisor::GraphFlow), set by the event loop), not the job's.
//! A document too long for its line to be sure to fit an agent's output has no Aggregator:
//! its Analyzers' replies come back here and are assembled by the same code.

use super::sizing::ranges;
use super::state::{Doc, DocLimits, Job, Stage};
use super::validate::{bad_frame, bad_reply, check_line, check_reply, too_many_pages, MAX_PAGES};
use crate::pdf::frames::{Parsed, PARSED_HEAD};
use crate::pdf::stages::{PDF_AGGREGATE, PDF_ANALYZE, PDF_EXTRACT, PDF_PARSE};
use crate::pdf::wire::Assembly;
use crate::supervisor::{Error, GraphNode, Supervisor};
use crate::task::{Held, Output, TaskSpec};

impl Job<'_> {
    /// Starts document `d` with its first range at a Parser; the page count comes back
    /// with it.
    pub(super) fn start_specialist(
        &mut self,
        d: usize,
        path: String,
        limits: DocLimits,
    ) -> Result<(), Error> {
        let spec = Self::request(PDF_PARSE, &path, 1, self.chunk);
        self.docs.insert(d, Doc::new(path, limits));
        self.submit(d, Stage::Parse { first_range: true }, spec)
    }

    /// The first range parsed: its frame's head tells the page count, and the document's
    /// graph goes in.
    pub(super) fn parsed(&mut self, d: usize, held: Option<Held>) -> Result<(), Error> {
        let doc = self.docs.get_mut(&d).expect("checked by the caller");
        let Some(h) = held else {
            doc.asm.fail(bad_frame("the parser returned nothing"));
            return Ok(());
        };
        // The agent wrote the head: read it, check it, believe nothing else.
        let head = self
            .sup
            .peek_held(&h, PARSED_HEAD)
            .ok()
            .and_then(|b| Parsed::head(&b).ok());
        let Some((page_count, _, _)) = head else {
            drop(h); // frees it
            doc.asm.fail(bad_frame("unreadable parser frame"));
            return Ok(());
        };
        if page_count > MAX_PAGES {
            drop(h); // frees it
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
        doc.asm.page_count = page_count;
        doc.local = page_count > self.aggregated_pages_max;
        let aggregate = if doc.local {
            None
        } else {
            Some(self.sup.hold(doc.asm.path.as_bytes())?)
        };
        let path = doc.asm.path.clone();
        self.submit_document(d, &path, page_count, h, aggregate)
    }

    /// The graph of document `d` past its first parse (`first`): each range's stages,
    /// and the Aggregator over the document's path held for it (`path_held`), if it has
    /// one.
    fn submit_document(
        &mut self,
        d: usize,
        path: &str,
        page_count: u32,
        first: Held,
        path_held: Option<Held>,
    ) -> Result<(), Error> {
        // Analyzers' replies come back here when there is no Aggregator.
        let reply = if path_held.is_some() {
            Output::Return
        } else {
            Output::Hold
        };
        let mut nodes = Vec::new();
        let mut stages = Vec::new();
        let limited = |spec: TaskSpec| self.limited(d, spec);
        let mut node = |nodes: &mut Vec<GraphNode>, stage: Stage, spec: TaskSpec, after| {
            nodes.push(GraphNode::new(limited(spec), after));
            stages.push(stage);
            nodes.len() - 1
        };
        let mut analyzed = Vec::new();
        let extract = TaskSpec::new(PDF_EXTRACT, 0).with_held(vec![first]);
        let e = node(&mut nodes, Stage::Extract, extract, vec![]);
        let analyze = TaskSpec::new(PDF_ANALYZE, 0).with_output(reply);
        analyzed.push(node(&mut nodes, Stage::Analyze, analyze, vec![e]));
        for (from, to) in ranges(self.chunk + 1, page_count, self.chunk) {
            let parse = Self::request(PDF_PARSE, path, from, to);
            let p = node(
                &mut nodes,
                Stage::Parse { first_range: false },
                parse,
                vec![],
            );
            let extract = TaskSpec::new(PDF_EXTRACT, 0);
            let e = node(&mut nodes, Stage::Extract, extract, vec![p]);
            let analyze = TaskSpec::new(PDF_ANALYZE, 0).with_output(reply);
            analyzed.push(node(&mut nodes, Stage::Analyze, analyze, vec![e]));
        }
        if let Some(path) = path_held {
            let aggregate = TaskSpec::new(PDF_AGGREGATE, 0).with_held(vec![path]);
            node(&mut nodes, Stage::Aggregate, aggregate, analyzed);
        }
        let ids = self.sup.submit_graph_detached(nodes)?;
        self.docs.get_mut(&d).expect("present").open_tasks += ids.len();
        for (id, stage) in ids.into_iter().zip(stages) {
            self.task_doc.insert(id, (d, stage));
        }
        Ok(())
    }

    /// A node of a document's graph ended well: the Aggregator's line, or without one an
    /// Analyzer's reply; the other nodes handed their outputs on.
    pub(super) fn staged(&mut self, d: usize, stage: Stage, output: Vec<u8>, held: Option<Held>) {
        let doc = self.docs.get_mut(&d).expect("checked by the caller");
        match stage {
            Stage::Aggregate => match check_line(&doc.asm.path, output) {
                Ok(line) => doc.line = Some(line),
                Err(e) => doc.asm.fail(e),
            },
            Stage::Analyze if doc.local => match held {
                Some(h) => take_reply(self.sup, &mut doc.asm, h),
                None => doc.asm.fail(bad_frame("the analyzer returned nothing")),
            },
            _ => {}
        }
    }
}

/// Takes an Analyzer's reply out of the page buffers into its document. The bytes are an
/// agent's: a reply that is not one fails the document.
fn take_reply(sup: &Supervisor, asm: &mut Assembly, h: Held) {
    match sup.take_held(h) {
        Ok(b) => match check_reply(b) {
            Ok(reply) => asm.absorb(reply),
            Err(e) => asm.fail(bad_reply(&e)),
        },
        Err(e) => asm.fail(bad_frame(&format!("an analyzed range is gone: {e}"))),
    }
}
