//! PDF text extraction: a document is loaded with `lopdf`, each page's content stream is
//! interpreted into positioned glyphs ([`interp`]), fonts turn codes into Unicode and widths
//! ([`font`]), and glyphs become words, lines and blocks ([`layout`]).
//!
//! Errors carry a [`ErrorKind`] that `swarm run` reports per document or per page.

pub mod bundle;
pub mod demo;
pub mod font;
pub mod fontfile;
pub mod interp;
pub mod job;
pub mod layout;
pub mod lexer;
pub mod stages;
pub mod tasks;

use interp::{FontCache, Interpreter, Limits, Resources};
use lopdf::ObjectId;
use lopdf::{Dictionary, Object};
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
    /// The text, lines separated by newlines and blocks by an empty line; a word
    /// hyphenated across two lines of a block is rejoined (`lines` keep what was printed).
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

    /// Interprets page `number` (1-based) into positioned glyphs: the Extractor's part.
    pub fn page_glyphs(&mut self, number: u32) -> PageGlyphs {
        let Some(&id) = self.pages.get(number.wrapping_sub(1) as usize) else {
            return PageGlyphs {
                number,
                width: 0.0,
                height: 0.0,
                glyphs: Vec::new(),
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
        let error = if it.truncated {
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
        PageGlyphs {
            number,
            width,
            height,
            glyphs: it.glyphs,
            error,
        }
    }

    /// Extracts page `number` (1-based): glyphs, then layout.
    pub fn page(&mut self, number: u32) -> Page {
        analyze(self.page_glyphs(number))
    }

    /// Page `number` (1-based) as a self-contained one-page PDF: the page, the page-tree
    /// nodes it inherits from, and the objects its content, resources and annotation
    /// appearances reach, with the same object numbers (the Parser's part). Left out: what
    /// extraction never reads (image samples, outlines, links to other pages, metadata), so
    /// a page ships only what its text needs.
    pub fn page_bundle(&self, number: u32) -> Result<Vec<u8>, PdfError> {
        bundle::page_pdf(
            &self.doc,
            self.pages.get(number.wrapping_sub(1) as usize).copied(),
        )
    }

    /// Exchanges the fonts read so far with `fonts`: an Extractor carries them from one
    /// page of a document to the next, since cut-out pages keep their object numbers.
    pub(crate) fn swap_fonts(&mut self, fonts: &mut FontCache) {
        std::mem::swap(&mut self.fonts, fonts);
    }
}

/// A page's glyphs before layout: what the Extractor hands the Analyzer.
#[derive(Debug, Clone)]
pub struct PageGlyphs {
    /// 1-based page number.
    pub number: u32,
    /// Page width in points.
    pub width: f64,
    /// Page height in points.
    pub height: f64,
    /// The glyphs in content order.
    pub glyphs: Vec<interp::Glyph>,
    /// Set when the page could not be (fully) interpreted.
    pub error: Option<PdfError>,
}

/// Words, lines, blocks and reading order from a page's glyphs: the Analyzer's part.
pub fn analyze(g: PageGlyphs) -> Page {
    let l = layout::layout(&g.glyphs);
    Page {
        number: g.number,
        text: l.text,
        width: g.width,
        height: g.height,
        lines: l.lines,
        blocks: l.blocks,
        error: g.error,
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

/// A document's result being put together from its ranges' replies (the Aggregator's
/// part, shared by the one-stage job and the aggregator role so both write the same line).
#[derive(Debug)]
pub struct Assembly {
    /// The path as given.
    pub path: String,
    /// Pages in the document, once known.
    pub page_count: u32,
    /// Replies, their pages as raw JSON.
    chunks: Vec<tasks::CheckedReply>,
    page_errors: u32,
    /// Why the document (or part of it) failed.
    pub error: Option<PdfError>,
}

impl Assembly {
    /// Nothing in yet.
    pub fn new(path: String) -> Self {
        Self {
            path,
            page_count: 0,
            chunks: Vec::new(),
            page_errors: 0,
            error: None,
        }
    }

    /// Takes in one range's reply.
    pub fn absorb(&mut self, mut reply: tasks::CheckedReply) {
        if let Some(e) = reply.error.take() {
            self.fail(e);
            return;
        }
        self.page_count = reply.page_count;
        self.page_errors += reply.page_errors;
        self.chunks.push(reply);
    }

    /// Records a failure (the first one wins).
    pub fn fail(&mut self, e: PdfError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// The output line, the number of pages in it, and whether the document is ok.
    ///
    /// Written by hand, as serde_json would write
    /// `{"path","status","page_count","pages":[…],"error"?}` (a test holds it to that),
    /// so that each page goes from its reply's bytes into the line in one copy.
    pub fn render(mut self) -> (Vec<u8>, u64, bool) {
        use std::io::Write;
        // Replies are contiguous page ranges: order them by their first page.
        self.chunks.sort_by_key(|r| r.first);
        let n: usize = self.chunks.iter().map(|r| r.pages().len()).sum();
        let status = if self.error.is_some() && n == 0 {
            "error"
        } else if self.error.is_some() || self.page_errors > 0 || (n as u32) < self.page_count {
            "partial"
        } else {
            "ok"
        };
        let partial_error = (status == "partial" && self.error.is_none()).then(|| {
            PdfError::new(
                ErrorKind::Malformed,
                format!("{} of {} pages failed", self.page_errors, self.page_count),
            )
        });
        let error = self.error.as_ref().or(partial_error.as_ref());
        let pages_len: usize = self.chunks.iter().map(|r| r.pages_len()).sum::<usize>() + n;
        let mut out = Vec::with_capacity(pages_len + 2 * self.path.len() + 256);
        out.extend_from_slice(b"{\"path\":");
        // Strings and the error record go through serde_json, escaping and all.
        let _ = serde_json::to_writer(&mut out, &self.path);
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\",\"page_count\":");
        let _ = write!(out, "{}", self.page_count);
        out.extend_from_slice(b",\"pages\":[");
        for (i, page) in self.chunks.iter().flat_map(|r| r.pages()).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(page);
        }
        out.push(b']');
        if let Some(e) = error {
            out.extend_from_slice(b",\"error\":");
            let _ = serde_json::to_writer(&mut out, e);
        }
        out.push(b'}');
        (out, n as u64, status == "ok")
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

/// `o`, or the object it refers to (a reference that resolves to nothing stays itself).
pub(crate) fn deref<'a>(doc: &'a lopdf::Document, o: &'a Object) -> &'a Object {
    doc.dereference(o).map(|(_, o)| o).unwrap_or(o)
}

/// `d[key]`, dereferenced.
pub(crate) fn dict_get<'a>(
    doc: &'a lopdf::Document,
    d: &'a Dictionary,
    key: &[u8],
) -> Option<&'a Object> {
    d.get(key).ok().map(|o| deref(doc, o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    /// The line as serde_json writes it: what `Assembly::render` must write by hand.
    #[derive(Serialize)]
    struct Line<'a> {
        path: &'a str,
        status: &'a str,
        page_count: u32,
        pages: Vec<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a PdfError>,
    }

    #[test]
    fn a_rendered_line_is_what_serde_json_writes() {
        let p = [
            r#"{"number":1,"text":"a \"quoted\" é\u2028"}"#,
            r#"{"number":2,"text":""}"#,
            r#"{"number":3,"text":"x","error":{"kind":"malformed","message":"m"}}"#,
        ];
        let path = "dir/naïve \"odd\"\\name\t.pdf";
        let late = PdfError::new(ErrorKind::Timeout, "late");
        let one_failed = PdfError::new(ErrorKind::Malformed, "1 of 3 pages failed");
        let none_failed = PdfError::new(ErrorKind::Malformed, "0 of 3 pages failed");
        // (replies as (first page, pages, page errors), a failure, status, pages out, error)
        type Case<'a> = (
            Vec<(u32, &'a [&'a str], u32)>,
            Option<&'a PdfError>,
            &'a str,
            Vec<&'a str>,
            Option<&'a PdfError>,
        );
        let cases: Vec<Case<'_>> = vec![
            // Ranges out of order, every page: ok.
            (
                vec![(3, &p[2..], 0), (1, &p[..2], 0)],
                None,
                "ok",
                p.to_vec(),
                None,
            ),
            // A page error: partial, with the summary.
            (
                vec![(1, &p[..], 1)],
                None,
                "partial",
                p.to_vec(),
                Some(&one_failed),
            ),
            // Missing pages: partial.
            (
                vec![(1, &p[..1], 0)],
                None,
                "partial",
                p[..1].to_vec(),
                Some(&none_failed),
            ),
            // Some pages, then a failure: partial, with the failure.
            (
                vec![(1, &p[..1], 0)],
                Some(&late),
                "partial",
                p[..1].to_vec(),
                Some(&late),
            ),
            // Nothing, and why: error.
            (vec![], Some(&late), "error", vec![], Some(&late)),
        ];
        for (replies, failure, status, pages, error) in cases {
            let mut asm = Assembly::new(path.to_string());
            for (first, pages, page_errors) in replies {
                let json = format!(
                    r#"{{"page_count":3,"first":{first},"pages":[{}],"page_errors":{page_errors}}}"#,
                    pages.join(",")
                );
                asm.absorb(tasks::CheckedReply::parse(json.into_bytes()).unwrap());
            }
            if let Some(e) = failure {
                asm.fail(e.clone());
            }
            let reference = Line {
                path,
                status,
                page_count: if status == "error" { 0 } else { 3 },
                pages: pages
                    .iter()
                    .map(|s| serde_json::from_str::<&RawValue>(s).unwrap())
                    .collect(),
                error,
            };
            let (line, n, ok) = asm.render();
            assert_eq!(
                String::from_utf8(line).unwrap(),
                serde_json::to_string(&reference).unwrap()
            );
            assert_eq!((n as usize, ok), (pages.len(), status == "ok"));
        }
    }
}
