//! PDF text extraction: a document is loaded with `lopdf`, each page's content stream is
//! interpreted into positioned glyphs ([`interp`]), fonts turn codes into Unicode and widths
//! ([`font`]), and glyphs become words, lines and blocks ([`layout`]).
//!
//! Errors carry a [`ErrorKind`] that `swarm run` reports per document or per page.

pub mod demo;
pub mod font;
pub mod interp;
pub mod job;
pub mod layout;
pub mod lexer;
pub mod tasks;

use interp::{FontCache, Interpreter, Limits, Resources};
use lopdf::ObjectId;
use serde::Serialize;

/// What kind of failure, as reported in `swarm run` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not a readable PDF.
    Malformed,
    /// Encrypted with a password we do not have.
    Encrypted,
    /// Uses something we do not handle.
    Unsupported,
    /// Ran past its time limit.
    Timeout,
    /// Its agent kept dying on it.
    AgentCrashed,
    /// Needs more memory than allowed.
    TooLarge,
    /// Could not be read from disk.
    Io,
}

/// A failure with its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct PdfError {
    /// The kind.
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl PdfError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// One page's result.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// 1-based page number.
    pub number: u32,
    /// The text, lines separated by newlines and blocks by an empty line.
    pub text: String,
    /// Page width in points (from the media box).
    pub width: f64,
    /// Page height in points.
    pub height: f64,
    /// Lines with bounding boxes `[x0, y0, x1, y1]` (PDF user space, origin bottom-left).
    pub lines: Vec<layout::Line>,
    /// Blocks of lines, in reading order.
    pub blocks: Vec<layout::Block>,
    /// Set when the page could not be (fully) extracted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<PdfError>,
}

/// A loaded document.
pub struct Document {
    doc: lopdf::Document,
    pages: Vec<ObjectId>,
    fonts: FontCache,
}

impl Document {
    /// Parses a document from memory.
    pub fn load(bytes: &[u8]) -> Result<Document, PdfError> {
        if !bytes.windows(5).take(1024).any(|w| w == b"%PDF-") {
            return Err(PdfError::new(ErrorKind::Malformed, "no %PDF- header"));
        }
        // lopdf (0.47) rebuilds a broken cross-reference table itself, by scanning.
        let mut doc = lopdf::Document::load_mem(bytes)
            .map_err(|e| PdfError::new(ErrorKind::Malformed, e.to_string()))?;
        if doc.is_encrypted() && doc.decrypt("").is_err() {
            return Err(PdfError::new(
                ErrorKind::Encrypted,
                "encrypted, and the empty user password does not open it",
            ));
        }
        let pages: Vec<ObjectId> = doc.get_pages().into_values().collect();
        if pages.is_empty() {
            let kind = if doc.is_encrypted() {
                ErrorKind::Encrypted
            } else {
                ErrorKind::Malformed
            };
            return Err(PdfError::new(kind, "no pages found"));
        }
        Ok(Document {
            doc,
            pages,
            fonts: FontCache::default(),
        })
    }

    /// Number of pages.
    pub fn page_count(&self) -> u32 {
        self.pages.len() as u32
    }

    fn media_box(&self, page: ObjectId) -> (f64, f64) {
        let mut id = Some(page);
        for _ in 0..32 {
            let Some(d) = id.and_then(|i| self.doc.get_dictionary(i).ok()) else {
                break;
            };
            if let Ok(a) = d
                .get(b"MediaBox")
                .and_then(|o| self.doc.dereference(o))
                .and_then(|(_, o)| o.as_array())
            {
                let v: Vec<f64> = a
                    .iter()
                    .filter_map(|o| match o {
                        lopdf::Object::Integer(i) => Some(*i as f64),
                        lopdf::Object::Real(r) => Some(*r as f64),
                        _ => None,
                    })
                    .collect();
                if v.len() == 4 {
                    return ((v[2] - v[0]).abs(), (v[3] - v[1]).abs());
                }
            }
            id = d.get(b"Parent").and_then(|o| o.as_reference()).ok();
        }
        (612.0, 792.0)
    }

    /// Extracts page `number` (1-based).
    pub fn page(&mut self, number: u32) -> Page {
        let Some(&id) = self.pages.get(number.wrapping_sub(1) as usize) else {
            return Page {
                number,
                text: String::new(),
                width: 0.0,
                height: 0.0,
                lines: Vec::new(),
                blocks: Vec::new(),
                error: Some(PdfError::new(ErrorKind::Malformed, "no such page")),
            };
        };
        let (width, height) = self.media_box(id);
        let (content, bad_streams) = interp::page_content(&self.doc, id);
        let res = Resources::of_page(&self.doc, id);
        let mut it = Interpreter::new(&self.doc, &mut self.fonts, Limits::default());
        it.run(
            &content,
            &res,
            [1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            &mut Vec::new(),
        );
        interp::run_annotations(&mut it, &self.doc, id, &res);
        let truncated = it.truncated;
        let l = layout::layout(&it.glyphs);
        let error = if truncated {
            Some(PdfError::new(
                ErrorKind::TooLarge,
                "page content exceeds the interpreter's limits",
            ))
        } else if bad_streams > 0 {
            Some(PdfError::new(
                ErrorKind::Unsupported,
                format!("{bad_streams} content stream(s) could not be decoded"),
            ))
        } else {
            None
        };
        Page {
            number,
            text: l.text,
            width,
            height,
            lines: l.lines,
            blocks: l.blocks,
            error,
        }
    }
}

/// One document's result, as a line of `swarm run` output.
#[derive(Debug, Clone, Serialize)]
pub struct DocResult {
    /// The path as given.
    pub path: String,
    /// `ok`, `partial` (some pages failed) or `error`.
    pub status: &'static str,
    /// Pages in the document (0 when it could not be opened).
    pub page_count: u32,
    /// The pages, in order.
    pub pages: Vec<Page>,
    /// Why the document failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<PdfError>,
}

impl DocResult {
    /// A document that failed as a whole.
    pub fn failed(path: String, error: PdfError) -> Self {
        Self {
            path,
            status: "error",
            page_count: 0,
            pages: Vec::new(),
            error: Some(error),
        }
    }

    /// A document from its pages.
    pub fn from_pages(path: String, page_count: u32, pages: Vec<Page>) -> Self {
        let bad = pages.iter().filter(|p| p.error.is_some()).count();
        let status = if bad == 0 && pages.len() as u32 == page_count {
            "ok"
        } else {
            "partial"
        };
        let error = (status == "partial").then(|| {
            PdfError::new(
                pages
                    .iter()
                    .find_map(|p| p.error.as_ref().map(|e| e.kind))
                    .unwrap_or(ErrorKind::Malformed),
                format!("{bad} of {page_count} pages failed"),
            )
        });
        Self {
            path,
            status,
            page_count,
            pages,
            error,
        }
    }
}

/// Extracts a whole file in this process.
pub fn extract_file(path: &std::path::Path) -> DocResult {
    let name = path.display().to_string();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return DocResult::failed(name, PdfError::new(ErrorKind::Io, e.to_string())),
    };
    match Document::load(&bytes) {
        Err(e) => DocResult::failed(name, e),
        Ok(mut doc) => {
            let n = doc.page_count();
            let pages = (1..=n).map(|i| doc.page(i)).collect();
            DocResult::from_pages(name, n, pages)
        }
    }
}
