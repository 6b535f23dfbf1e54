//! Generalists: each document starts as one [`PDF_DOC`] task (open, count pages, extract
//! the first chunk); a document longer than a chunk is spread over agents as
//! [`PDF_PAGES`] range tasks. Replies go through the checkers and into the document's
//! [`Assembly`](crate::pdf::wire::Assembly).

use super::checkers::Checked;
use super::sizing::{ranges, tapered, QUEUE_DEPTH};
use super::state::{Doc, DocLimits, Job, Stage};
use super::validate::{bad_reply, too_many_pages, MAX_PAGES};
use crate::pdf::tasks::{PDF_DOC, PDF_PAGES};
use crate::supervisor::Error;

impl Job<'_> {
    /// Starts document `d`. The page count comes back with its first range; for the
    /// run's `last` document, agents that would idle until then are given the ranges that
    /// follow at once, so a long document is not opened by one agent while the others
    /// wait. A range past the end comes back empty.
    pub(super) fn start_generalist(
        &mut self,
        d: usize,
        path: String,
        limits: DocLimits,
        last: bool,
    ) -> Result<(), Error> {
        let busy: usize = self.docs.values().map(|doc| doc.open_tasks).sum();
        let spare = if last {
            self.agents.saturating_sub(busy + 1)
        } else {
            0
        };
        let mut doc = Doc::new(path, limits);
        let ahead: Vec<(u32, u32)> = ranges(self.chunk + 1, u32::MAX, self.chunk)
            .take(spare)
            .collect();
        doc.speculated = ahead.last().map_or(0, |r| r.1);
        doc.last = last;
        doc.open_tasks += ahead.len();
        self.docs.insert(d, doc);
        self.plan_cache(d);
        self.submit(d, Stage::Doc, self.range(d, PDF_DOC, 1, self.chunk))?;
        for (first, last) in ahead {
            self.submit(d, Stage::Pages, self.range(d, PDF_PAGES, first, last))?;
        }
        Ok(())
    }

    /// A generalist's reply came in: to the checkers, or checked here when they have no
    /// thread.
    pub(super) fn replied(&mut self, d: usize, stage: Stage, output: Vec<u8>) -> Result<(), Error> {
        if let Some(doc) = self.docs.get_mut(&d) {
            doc.checking += 1;
        }
        match self.checkers.check((d, stage), output) {
            Some(checked) => self.absorb(checked),
            None => Ok(()),
        }
    }

    /// A range's reply, checked: into its document, and for the first, the ranges that
    /// follow.
    pub(super) fn absorb(
        &mut self,
        ((d, stage), checked): Checked<(usize, Stage)>,
    ) -> Result<(), Error> {
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
                doc.asm.fail(bad_reply(&e));
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
        // The run's last document: its last ranges, as many as the agents hold at a
        // time, in smaller pieces.
        let tail = if doc.last {
            (self.agents as u32)
                .saturating_mul(QUEUE_DEPTH)
                .saturating_mul(self.chunk)
        } else {
            0
        };
        if stage == Stage::Doc && opened && page_count > asked {
            for (first, last) in tapered(asked + 1, page_count, self.chunk, tail) {
                self.docs.get_mut(&d).expect("present").open_tasks += 1;
                self.submit(d, Stage::Pages, self.range(d, PDF_PAGES, first, last))?;
            }
        }
        Ok(())
    }
}
