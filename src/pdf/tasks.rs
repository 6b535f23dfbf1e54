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

/// A task's output. Agents write it with [`Page`]s, serialized once; the supervisor reads
/// it as a [`CheckedReply`], whose pages stay raw JSON in the reply's own bytes and go to
/// the output without being parsed again or copied one by one.
#[derive(Debug, Serialize, Deserialize)]
pub struct PageReply<P> {
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

/// An agent's [`PageReply`], checked: valid JSON of the expected shape, on one line, each
/// page an object. The pages are spans of the reply's bytes.
#[derive(Debug)]
pub struct CheckedReply {
    /// Pages in the document.
    pub page_count: u32,
    /// Number of the first page.
    pub first: u32,
    /// How many pages carry an error.
    pub page_errors: u32,
    /// Set when the document could not be opened.
    pub error: Option<PdfError>,
    bytes: Vec<u8>,
    pages: Vec<std::ops::Range<usize>>,
}

impl CheckedReply {
    /// Checks an agent's reply. Nothing in it is trusted: it must parse, hold no raw line
    /// break (`one_line`), and give objects as pages.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, String> {
        one_line(&bytes)?;
        let r: PageReply<&RawValue> = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let base = bytes.as_ptr() as usize;
        let mut pages = Vec::with_capacity(r.pages.len());
        for (i, p) in r.pages.iter().enumerate() {
            let s = p.get();
            if !s.starts_with('{') {
                return Err(format!("page {i} of the range is not an object"));
            }
            // A borrowed RawValue is a slice of the input: its place in it.
            let at = s.as_ptr() as usize - base;
            pages.push(at..at + s.len());
        }
        let (page_count, first, page_errors, error) =
            (r.page_count, r.first, r.page_errors, r.error);
        Ok(Self {
            page_count,
            first,
            page_errors,
            error,
            bytes,
            pages,
        })
    }

    /// The pages' raw JSON, in order.
    pub fn pages(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.pages.iter().map(|r| &self.bytes[r.clone()])
    }

    /// Bytes of the pages' JSON together.
    pub fn pages_len(&self) -> usize {
        self.pages.iter().map(|r| r.len()).sum()
    }
}

/// Output is JSON Lines, and an agent's page bytes go into a line as they are. Valid JSON
/// holds a raw line break only as whitespace between tokens, and there it would split the
/// line: a page written as `{"a":⏎{"path":"other.pdf",…}⏎}` would put a forged line for
/// another document in the output. Our agents write compact JSON, so no line break is
/// taken.
pub(crate) fn one_line(bytes: &[u8]) -> Result<(), String> {
    match memchr::memchr2(b'\n', b'\r', bytes) {
        Some(at) => Err(format!("a raw line break at byte {at}")),
        None => Ok(()),
    }
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
pub fn register(registry: &mut Registry) -> Result<(), crate::runtime::agent::RegistryError> {
    registry.register(PDF_DOC, "pdf.doc", |ctx| handle(ctx, true))?;
    registry.register(PDF_PAGES, "pdf.pages", |ctx| handle(ctx, false))?;
    super::stages::register(registry)
}
