//! The binary frames that pass between the specialist roles through page buffers: a
//! Parser's [`Parsed`] frame (one-page PDFs) and an Extractor's [`Extracted`] frame
//! (positioned glyphs), each with its writer and its decoder side by side.
//!
//! Frames are little-endian with explicit lengths. They are written by one agent and
//! read by another (and a Parsed frame's head by the supervisor), so a decoder trusts
//! nothing in them: every read is bounds-checked, every count is checked against the
//! bytes left before anything is allocated for it, and bytes left over after the frame
//! are refused.
//!
//! ```text
//! Parsed:    "NFP1" page_count:u32 first:u32 n:u32 error
//!            n × { number:u32 pdf:bytes error }
//! Extracted: "NFG1" page_count:u32 first:u32 n:u32 error
//!            n × { number:u32 width:f64 height:f64 error glyphs:u32
//!                  glyphs × { x y adv size dx dy: f64, text:bytes } }
//! bytes = len:u32 then len bytes; error = bytes of a JSON PdfError, empty for none
//! ```

use crate::pdf::document::PageGlyphs;
use crate::pdf::error::{ErrorKind, PdfError};
use crate::pdf::interp::Glyph;

const PARSED: u32 = u32::from_le_bytes(*b"NFP1");
const EXTRACTED: u32 = u32::from_le_bytes(*b"NFG1");

/// Bytes of the fixed head of a [`Parsed`] frame: magic, page count, first page, pages.
pub const PARSED_HEAD: usize = 16;

/// Fewest bytes a page takes in a Parsed frame: number, empty PDF, no error.
const PARSED_PAGE_MIN: usize = 12;
/// Fewest bytes a page takes in an Extracted frame: number, size, no error, no glyph.
const EXTRACTED_PAGE_MIN: usize = 28;
/// Fewest bytes a glyph takes: six numbers and an empty text.
const GLYPH_MIN: usize = 52;
/// Where the page count sits in either frame (patched when the frame is finished).
const COUNT_AT: usize = 12;

/// Appends little-endian fields.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn error(&mut self, e: Option<&PdfError>) {
        let json = e.map(|e| serde_json::to_vec(e).unwrap_or_default());
        self.bytes(json.as_deref().unwrap_or(&[]));
    }
    /// A frame's head, its page count left at 0 until [`Self::finish`].
    fn head(magic: u32, page_count: u32, first: u32, error: Option<&PdfError>) -> Self {
        let mut w = Writer::default();
        w.u32(magic);
        w.u32(page_count);
        w.u32(first);
        w.u32(0);
        w.error(error);
        w
    }
    fn finish(mut self, pages: u32) -> Vec<u8> {
        self.0[COUNT_AT..COUNT_AT + 4].copy_from_slice(&pages.to_le_bytes());
        self.0
    }
}

/// Reads what [`Writer`] wrote, refusing to read past the end.
struct Reader<'a>(&'a [u8]);

fn short() -> PdfError {
    PdfError::new(ErrorKind::Malformed, "truncated pipeline frame")
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PdfError> {
        if self.0.len() < n {
            return Err(short());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, PdfError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn f64(&mut self) -> Result<f64, PdfError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(f64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], PdfError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn error(&mut self) -> Result<Option<PdfError>, PdfError> {
        let b = self.bytes()?;
        if b.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(b)
            .map(Some)
            .map_err(|e| PdfError::new(ErrorKind::Malformed, format!("bad error record: {e}")))
    }
    /// `n` items of at least `min` bytes each: refused when the bytes left cannot hold
    /// them, so that a count an agent lies about allocates nothing.
    fn count(&self, n: u32, min: usize) -> Result<usize, PdfError> {
        let n = n as usize;
        if n > self.0.len() / min {
            return Err(short());
        }
        Ok(n)
    }
    /// The frame's end: nothing may follow it.
    fn end(&self) -> Result<(), PdfError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(PdfError::new(
                ErrorKind::Malformed,
                format!("{} bytes after the pipeline frame", self.0.len()),
            ))
        }
    }
}

/// A Parser's output: a page range as one-page PDFs, or why the document did not open.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed<'a> {
    /// Pages in the document (0 when it did not open).
    pub page_count: u32,
    /// First page of the range.
    pub first: u32,
    /// Each page: its number, and its one-page PDF or why it could not be cut out.
    pub pages: Vec<(u32, Result<&'a [u8], PdfError>)>,
    /// Why the document did not open.
    pub error: Option<PdfError>,
}

impl<'a> Parsed<'a> {
    /// Reads the fixed head only: (page count, first page, pages in the range). The
    /// supervisor reads this much of a Parser's output to plan the document.
    pub fn head(b: &[u8]) -> Result<(u32, u32, u32), PdfError> {
        let mut r = Reader(b);
        if r.u32()? != PARSED {
            return Err(PdfError::new(ErrorKind::Malformed, "not a parser frame"));
        }
        Ok((r.u32()?, r.u32()?, r.u32()?))
    }

    /// Reads a whole frame.
    pub fn decode(b: &'a [u8]) -> Result<Self, PdfError> {
        let (page_count, first, n) = Self::head(b)?;
        let mut r = Reader(&b[PARSED_HEAD..]);
        let error = r.error()?;
        let n = r.count(n, PARSED_PAGE_MIN)?;
        let mut pages = Vec::with_capacity(n);
        for _ in 0..n {
            let number = r.u32()?;
            let pdf = r.bytes()?;
            let err = r.error()?;
            pages.push((number, err.map_or(Ok(pdf), Err)));
        }
        r.end()?;
        Ok(Self {
            page_count,
            first,
            pages,
            error,
        })
    }

    /// The frame of a document that did not open.
    pub fn failed(first: u32, error: &PdfError) -> Vec<u8> {
        Writer::head(PARSED, 0, first, Some(error)).finish(0)
    }
}

/// Writes a [`Parsed`] frame page by page, as the Parser cuts them out.
pub struct ParsedWriter {
    w: Writer,
    pages: u32,
}

impl ParsedWriter {
    /// A frame for a document of `page_count` pages, its range starting at `first`.
    pub fn new(page_count: u32, first: u32) -> Self {
        Self {
            w: Writer::head(PARSED, page_count, first, None),
            pages: 0,
        }
    }

    /// Adds page `number`: its one-page PDF, or why it could not be cut out.
    pub fn page(&mut self, number: u32, pdf: Result<&[u8], &PdfError>) {
        self.w.u32(number);
        self.w.bytes(pdf.unwrap_or(&[]));
        self.w.error(pdf.err());
        self.pages += 1;
    }

    /// The frame.
    pub fn finish(self) -> Vec<u8> {
        self.w.finish(self.pages)
    }
}

/// An Extractor's output: each page's glyphs.
#[derive(Debug, Default, Clone)]
pub struct Extracted {
    /// Pages in the document (0 when it did not open).
    pub page_count: u32,
    /// First page of the range.
    pub first: u32,
    /// The pages.
    pub pages: Vec<PageGlyphs>,
    /// Why the document did not open.
    pub error: Option<PdfError>,
}

impl Extracted {
    /// Reads a frame.
    pub fn decode(b: &[u8]) -> Result<Self, PdfError> {
        let mut r = Reader(b);
        if r.u32()? != EXTRACTED {
            return Err(PdfError::new(
                ErrorKind::Malformed,
                "not an extractor frame",
            ));
        }
        let (page_count, first, n) = (r.u32()?, r.u32()?, r.u32()?);
        let error = r.error()?;
        let n = r.count(n, EXTRACTED_PAGE_MIN)?;
        let mut pages = Vec::with_capacity(n);
        for _ in 0..n {
            let number = r.u32()?;
            let (width, height) = (r.f64()?, r.f64()?);
            let error = r.error()?;
            let count = r.u32()?;
            let count = r.count(count, GLYPH_MIN)?;
            let mut glyphs = Vec::with_capacity(count);
            for _ in 0..count {
                let (x, y, adv, size, dx, dy) =
                    (r.f64()?, r.f64()?, r.f64()?, r.f64()?, r.f64()?, r.f64()?);
                let text = smol_str::SmolStr::from(String::from_utf8_lossy(r.bytes()?));
                glyphs.push(Glyph {
                    text,
                    x,
                    y,
                    adv,
                    size,
                    dir: (dx, dy),
                });
            }
            pages.push(PageGlyphs {
                number,
                width,
                height,
                glyphs,
                error,
            });
        }
        r.end()?;
        Ok(Self {
            page_count,
            first,
            pages,
            error,
        })
    }
}

/// Writes an [`Extracted`] frame page by page, as the Extractor interprets them.
pub struct ExtractedWriter {
    w: Writer,
    pages: u32,
}

impl ExtractedWriter {
    /// A frame for a document of `page_count` pages (0 and `error` when it did not open),
    /// its range starting at `first`.
    pub fn new(page_count: u32, first: u32, error: Option<&PdfError>) -> Self {
        Self {
            w: Writer::head(EXTRACTED, page_count, first, error),
            pages: 0,
        }
    }

    /// Adds a page's glyphs.
    pub fn page(&mut self, g: &PageGlyphs) {
        let w = &mut self.w;
        w.u32(g.number);
        w.f64(g.width);
        w.f64(g.height);
        w.error(g.error.as_ref());
        w.u32(g.glyphs.len() as u32);
        for gl in &g.glyphs {
            for v in [gl.x, gl.y, gl.adv, gl.size, gl.dir.0, gl.dir.1] {
                w.f64(v);
            }
            w.bytes(gl.text.as_bytes());
        }
        self.pages += 1;
    }

    /// The frame.
    pub fn finish(self) -> Vec<u8> {
        self.w.finish(self.pages)
    }
}
