//! The PDF task kinds agents run, and the wire format of their results.
//!
//! - [`PDF_DOC`]: payload `{"path", "pages": N}`. The agent opens the document and returns
//!   `{"page_count", "pages": [first N pages]}`, or `{"error": {...}}`.
//! - [`PDF_PAGES`]: payload `{"path", "first", "last"}`. The agent returns those pages. It
//!   keeps the last document it opened, so consecutive ranges of one document are cheap.
//!
//! Results travel back as the completion's payload (page buffers), JSON-encoded.

use super::{Document, ErrorKind, Page, PdfError};
use crate::agent::{Registry, TaskContext};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::cell::RefCell;

/// Open a document and extract its first pages.
pub const PDF_DOC: u32 = 100;
/// Extract a range of pages.
pub const PDF_PAGES: u32 = 101;

/// A task's input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageRequest {
    /// The file.
    pub path: String,
    /// First page (1-based) for `PDF_PAGES`, unused for `PDF_DOC`.
    #[serde(default)]
    pub first: u32,
    /// Last page (inclusive) for `PDF_PAGES`; for `PDF_DOC`, how many leading pages to
    /// extract.
    pub last: u32,
}

/// A task's output. Agents write it with [`Page`]s, serialized once; readers take the
/// pages as raw JSON (`P` = `Box<RawValue>`, the default) and pass them through to the
/// output without parsing them again.
#[derive(Debug, Serialize, Deserialize)]
pub struct PageReply<P = Box<RawValue>> {
    /// Pages in the document.
    pub page_count: u32,
    /// Number of the first page in `pages`.
    #[serde(default)]
    pub first: u32,
    /// The pages extracted, in order.
    pub pages: Vec<P>,
    /// How many of `pages` carry an error.
    #[serde(default)]
    pub page_errors: u32,
    /// Set when the document could not be opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<PdfError>,
}

impl<P> Default for PageReply<P> {
    fn default() -> Self {
        PageReply {
            page_count: 0,
            first: 0,
            pages: Vec::new(),
            page_errors: 0,
            error: None,
        }
    }
}

thread_local! {
    static OPEN: RefCell<Option<(String, Document)>> = const { RefCell::new(None) };
}

pub(crate) fn with_doc<R>(path: &str, f: impl FnOnce(&mut Document) -> R) -> Result<R, PdfError> {
    OPEN.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(p, _)| p != path) {
            *slot = None;
            let bytes =
                std::fs::read(path).map_err(|e| PdfError::new(ErrorKind::Io, e.to_string()))?;
            *slot = Some((path.to_string(), Document::load(&bytes)?));
        }
        let (_, doc) = slot.as_mut().expect("opened above");
        Ok(f(doc))
    })
}

fn extract(doc: &mut Document, first: u32, last: u32, ctx: &TaskContext<'_>) -> PageReply<Page> {
    let mut reply = PageReply {
        page_count: doc.page_count(),
        first,
        ..PageReply::default()
    };
    for n in first..=last.min(doc.page_count()) {
        ctx.beat();
        let p: Page = doc.page(n);
        reply.page_errors += u32::from(p.error.is_some());
        reply.pages.push(p);
    }
    reply
}

fn handle(ctx: &TaskContext<'_>, doc_task: bool) -> Result<Vec<u8>, String> {
    let req: PageRequest =
        serde_json::from_slice(ctx.input()).map_err(|e| format!("bad request: {e}"))?;
    let first = if doc_task { 1 } else { req.first.max(1) };
    let reply = with_doc(&req.path, |doc| extract(doc, first, req.last, ctx)).unwrap_or_else(|e| {
        PageReply {
            error: Some(e),
            ..PageReply::default()
        }
    });
    serde_json::to_vec(&reply).map_err(|e| e.to_string())
}

/// Adds the PDF kinds to an agent's registry.
pub fn register(registry: &mut Registry) {
    registry.register(PDF_DOC, "pdf.doc", |ctx| handle(ctx, true));
    registry.register(PDF_PAGES, "pdf.pages", |ctx| handle(ctx, false));
    super::stages::register(registry);
}
