//! Specialists: each range goes Parser → Extractor → Analyzer as three tasks, each
//! stage's output kept in the supervisor's page buffers and lent to the next stage
//! without another copy, and an Aggregator task fans a document's ranges into its line.
//!
//! Kept outputs take the supervisor's page buffers (past half of them, its memory), so
//! the job bounds the ranges at each stage ([`Job::room`], [`Job::feed_extractors`]) and the analyzed ranges waiting for
//! their document ([`Job::analyzed`]); a document whose replies would not fit an agent's
//! output is assembled here instead of by an Aggregator.

use super::sizing::{buffers, ranges};
use super::state::{Doc, Job, Stage};
use super::validate::{bad_frame, bad_reply, check_line, check_reply, too_many_pages, MAX_PAGES};
use crate::pdf::frames::{Parsed, PARSED_HEAD};
use crate::pdf::stages::{PDF_AGGREGATE, PDF_ANALYZE, PDF_EXTRACT, PDF_PARSE};
use crate::pdf::wire::Assembly;
use crate::supervisor::{Error, Supervisor};
use crate::task::{Held, Output};

/// Specialists' page ranges at each stage.
#[derive(Debug, Default)]
struct InFlight {
    /// At a Parser, or parsed and parked.
    parsing: usize,
    extracting: usize,
    analyzing: usize,
}

impl Job<'_> {
    /// Starts document `d` with its first range at a Parser; the page count comes back
    /// with it.
    pub(super) fn start_specialist(&mut self, d: usize, path: String) -> Result<(), Error> {
        let spec = Self::request(PDF_PARSE, &path, 1, self.chunk);
        self.docs.insert(d, Doc::new(path));
        self.submit(d, Stage::Parse { first_range: true }, spec)
    }

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

    /// Whether a Parser may be given another range (always, for generalists). Without a
    /// bound on ranges in flight a Parser running ahead queues ranges whose extracted
    /// glyphs, ten times its output, are all kept at once.
    pub(super) fn room(&self) -> bool {
        !self.staged || self.room_to_parse(self.ranges_in_flight().parsing)
    }

    /// [`Self::room`], given the ranges at the Parser.
    fn room_to_parse(&self, parsing: usize) -> bool {
        parsing < self.max_ranges && self.staged_buffers() < self.held_budget
    }

    /// Parsed ranges go on to the Extractors while fewer than `max_ranges` are between
    /// the Extractor and the Analyzer; the rest wait, parked, in the order they came. A
    /// parked range counts as an open task of its document.
    pub(super) fn feed_extractors(&mut self) -> Result<(), Error> {
        // Ranges of documents that failed or ran out of time meanwhile are let go at once,
        // so their documents end now and their buffers come back.
        // A range let go is dropped, which frees it.
        let docs = &mut self.docs;
        self.parked.retain(|(d, _)| match docs.get_mut(d) {
            Some(doc) if doc.asm.error.is_none() => true,
            gone => {
                if let Some(doc) = gone {
                    doc.open_tasks -= 1;
                }
                false
            }
        });
        let n = self.ranges_in_flight();
        let mut later = n.extracting + n.analyzing;
        while later < self.max_ranges {
            let Some((d, h)) = self.parked.pop_front() else {
                break;
            };
            let spec = Self::forward(PDF_EXTRACT, vec![h], Output::Hold);
            self.submit(d, Stage::Extract, spec)?;
            later += 1;
        }
        Ok(())
    }

    /// Hands parsers the next ranges while page buffers have room.
    pub(super) fn feed_parsers(&mut self) -> Result<(), Error> {
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

    /// An Aggregator's line, checked before it is believed.
    pub(super) fn aggregated(&mut self, d: usize, output: Vec<u8>) {
        let doc = self.docs.get_mut(&d).expect("checked by the caller");
        match check_line(&doc.asm.path, output) {
            Ok(line) => doc.line = Some(line),
            Err(e) => doc.asm.fail(e),
        }
    }

    /// A parser's range, passed on to an extractor.
    pub(super) fn parsed(
        &mut self,
        d: usize,
        first_range: bool,
        held: Option<Held>,
    ) -> Result<(), Error> {
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
        if first_range {
            doc.asm.page_count = page_count;
            doc.todo = ranges(self.chunk + 1, page_count, self.chunk).collect();
            doc.ranges = 1 + doc.todo.len();
        }
        doc.open_tasks += 1;
        self.parked.push_back((d, h));
        self.feed_extractors()
    }

    /// An extracted range, passed on to an analyzer.
    pub(super) fn extracted(&mut self, d: usize, held: Option<Held>) -> Result<(), Error> {
        let doc = self.docs.get_mut(&d).expect("checked by the caller");
        let Some(h) = held else {
            doc.asm.fail(bad_frame("the extractor returned nothing"));
            return Ok(());
        };
        doc.open_tasks += 1;
        let spec = Self::forward(PDF_ANALYZE, vec![h], Output::Hold);
        self.submit(d, Stage::Analyze, spec)
    }

    /// A range analyzed; once all are, the aggregator gets them.
    pub(super) fn analyzed(&mut self, d: usize, held: Option<Held>) -> Result<(), Error> {
        let doc = self.docs.get_mut(&d).expect("checked by the caller");
        let Some(h) = held else {
            doc.asm.fail(bad_frame("the analyzer returned nothing"));
            return Ok(());
        };
        doc.arrived += 1;
        // Replies past the waiting budget (a document whose line would not fit an agent's
        // output, or many documents at once) are taken out of the page buffers now, and
        // their document is assembled here, from the same replies by the same code.
        let n = buffers(&h);
        if !doc.local && self.waiting_buffers + n > self.held_budget {
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
            doc.waiting += n;
            self.waiting_buffers += n;
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
            Self::forward(PDF_AGGREGATE, inputs, Output::Return),
        )
    }

    /// What a finished document leaves: its buffers' budget back, and its line if the
    /// Aggregator wrote it; otherwise its analyzed replies, taken into its assembly.
    pub(super) fn let_go(&mut self, doc: &mut Doc) -> Option<(Vec<u8>, u64, bool)> {
        self.waiting_buffers -= std::mem::take(&mut doc.waiting);
        if let Some(line) = doc.line.take() {
            return Some(line);
        }
        for h in doc.analyzed.drain(..) {
            take_reply(self.sup, &mut doc.asm, h);
        }
        None
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
