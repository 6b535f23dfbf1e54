//! The one-stage PDF task kinds that generalist agents run, and the registration of every
//! PDF kind an agent serves.
//!
//! - [`PDF_DOC`]: payload `{"path", "pages": N}`. The agent opens the document and returns
//!   `{"page_count", "pages": [first N pages]}`, or `{"error": {...}}`.
//! - [`PDF_PAGES`]: payload `{"path", "first", "last"}`. The agent returns those pages. It
//!   keeps the last document it opened (`open.rs`), so consecutive ranges of one
//!   document are cheap.
//!
//! Requests and replies are [`super::wire::reply`]'s; results travel back as the
//! completion's payload (page buffers).

use super::document::Document;
use super::open::with_doc;
use super::wire::{PageReply, PageRequest};
use crate::runtime::agent::{Registry, TaskContext};
use crate::runtime::task::TaskKind;

/// Open a document and extract its first pages.
pub const PDF_DOC: TaskKind = TaskKind(100);
/// Extract a range of pages.
pub const PDF_PAGES: TaskKind = TaskKind(101);

fn extract(
    doc: &mut Document,
    first: u32,
    last: u32,
    ctx: &TaskContext<'_>,
) -> PageReply<super::document::Page> {
    let mut reply = PageReply {
        page_count: doc.page_count(),
        first,
        ..PageReply::default()
    };
    for n in first..=last.min(doc.page_count()) {
        ctx.beat();
        reply.push(doc.page(n));
    }
    reply
}

fn handle(ctx: &TaskContext<'_>, doc_task: bool) -> Result<Vec<u8>, String> {
    let req: PageRequest =
        serde_json::from_slice(ctx.input()).map_err(|e| format!("bad request: {e}"))?;
    let first = if doc_task { 1 } else { req.first.max(1) };
    let reply = with_doc(&req.path, |doc| extract(doc, first, req.last, ctx))
        .unwrap_or_else(PageReply::failed);
    reply.encode().map_err(|e| e.to_string())
}

/// Adds every PDF kind to an agent's registry: the one-stage kinds here and the
/// specialists' roles ([`super::stages::register`]).
pub fn register(registry: &mut Registry) -> Result<(), crate::runtime::agent::RegistryError> {
    registry.register(PDF_DOC, "pdf.doc", |ctx| handle(ctx, true))?;
    registry.register(PDF_PAGES, "pdf.pages", |ctx| handle(ctx, false))?;
    super::stages::register(registry)
}
