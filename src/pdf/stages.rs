//! The pipeline as four agent roles, each a task kind, with page data moving between
//! them in page buffers (held outputs forwarded by the supervisor, never copied through
//! it):
//!
//! - **Parser** ([`PDF_PARSE`]): `{"path", "first", "last"}` in; the document is loaded
//!   (and kept for the next range) and each page of the range cut out as a one-page PDF
//!   ([`super::Document::page_bundle`]). Out: a [`Parsed`] frame.
//! - **Extractor** ([`PDF_EXTRACT`]): a [`Parsed`] frame in, each page interpreted into
//!   positioned glyphs. Out: a [`Extracted`] frame.
//! - **Analyzer** ([`PDF_ANALYZE`]): glyphs in, words, lines, blocks and reading order out,
//!   as a [`PageReply`] (the same JSON the one-stage kinds return).
//! - **Aggregator** ([`PDF_AGGREGATE`]): every range's [`PageReply`] of a document in
//!   (several inputs), the document's output line out.
//!
//! Frames are little-endian with explicit lengths; every read is bounds-checked, since the
//! bytes come from another process.

use super::interp::Glyph;
use super::tasks::{with_doc, CheckedReply, PageReply, PageRequest};
use super::{analyze, Document, ErrorKind, PageGlyphs, PdfError};
use crate::agent::{Registry, TaskContext};

/// Parser: load, split a page range into one-page PDFs.
pub const PDF_PARSE: u32 = 110;
/// Extractor: one-page PDFs to glyphs.
pub const PDF_EXTRACT: u32 = 111;
/// Analyzer: glyphs to layout and text.
pub const PDF_ANALYZE: u32 = 112;
/// Aggregator: a document's ranges to its output line.
pub const PDF_AGGREGATE: u32 = 113;

const PARSED: u32 = u32::from_le_bytes(*b"NFP1");
const EXTRACTED: u32 = u32::from_le_bytes(*b"NFG1");

/// Bytes of the fixed head of a [`Parsed`] frame: magic, page count, first page, pages.
pub const PARSED_HEAD: usize = 16;

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
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn f64(&mut self) -> Result<f64, PdfError> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
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
}

/// A Parser's output: a page range as one-page PDFs, or why the document did not open.
#[derive(Debug, Default)]
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
    /// Reads the fixed head only: (page count, first page, pages in the range).
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
        let mut pages = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            let number = r.u32()?;
            let pdf = r.bytes()?;
            let err = r.error()?;
            pages.push((number, err.map_or(Ok(pdf), Err)));
        }
        Ok(Self {
            page_count,
            first,
            pages,
            error,
        })
    }
}

/// Parser: the pages `first..=last` of the document at `path`.
pub fn parse(path: &str, first: u32, last: u32, beat: &dyn Fn()) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(PARSED);
    let result = with_doc(path, |doc: &mut Document| {
        let n = doc.page_count();
        let last = last.min(n);
        let mut pages = Writer::default();
        let mut count = 0;
        for number in first.max(1)..=last {
            beat();
            let cut = doc.page_bundle(number);
            pages.u32(number);
            pages.bytes(cut.as_deref().unwrap_or(&[]));
            pages.error(cut.as_ref().err());
            count += 1;
        }
        (n, count, pages.0)
    });
    match result {
        Ok((n, count, pages)) => {
            w.u32(n);
            w.u32(first.max(1));
            w.u32(count);
            w.error(None);
            w.0.extend_from_slice(&pages);
        }
        Err(e) => {
            w.u32(0);
            w.u32(first);
            w.u32(0);
            w.error(Some(&e));
        }
    }
    w.0
}

/// An Extractor's output: each page's glyphs.
#[derive(Debug, Default)]
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

/// Extractor: a [`Parsed`] frame to an [`Extracted`] frame.
pub fn extract(input: &[u8], beat: &dyn Fn()) -> Result<Vec<u8>, PdfError> {
    let parsed = Parsed::decode(input)?;
    let mut w = Writer::default();
    w.u32(EXTRACTED);
    w.u32(parsed.page_count);
    w.u32(parsed.first);
    w.u32(parsed.pages.len() as u32);
    w.error(parsed.error.as_ref());
    // The pages of a range are one document's, cut out with their object numbers: a font
    // read for one page serves the next, as in a whole-document extraction.
    let mut fonts = super::interp::FontCache::default();
    for (number, pdf) in parsed.pages {
        beat();
        let mut g = match pdf.and_then(Document::load) {
            Ok(mut one) => {
                one.swap_fonts(&mut fonts);
                let g = one.page_glyphs(1);
                one.swap_fonts(&mut fonts);
                g
            }
            Err(e) => PageGlyphs {
                number,
                width: 0.0,
                height: 0.0,
                glyphs: Vec::new(),
                error: Some(e),
            },
        };
        g.number = number;
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
    }
    Ok(w.0)
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
        let mut pages = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            let number = r.u32()?;
            let (width, height) = (r.f64()?, r.f64()?);
            let error = r.error()?;
            let count = r.u32()? as usize;
            // Each glyph takes at least 52 bytes: a count past that is a lie.
            if count > r.0.len() / 52 {
                return Err(short());
            }
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
        Ok(Self {
            page_count,
            first,
            pages,
            error,
        })
    }
}

/// Analyzer: an [`Extracted`] frame to a [`PageReply`].
pub fn analyze_frame(input: &[u8], beat: &dyn Fn()) -> Result<PageReply<super::Page>, PdfError> {
    let ex = Extracted::decode(input)?;
    let mut reply = PageReply {
        page_count: ex.page_count,
        first: ex.first,
        error: ex.error,
        ..PageReply::default()
    };
    for g in ex.pages {
        beat();
        let p = analyze(g);
        reply.page_errors += u32::from(p.error.is_some());
        reply.pages.push(p);
    }
    Ok(reply)
}

/// A request for [`PDF_AGGREGATE`]: the document's path comes as the task's first input,
/// its ranges' replies as the rest.
pub fn aggregate(inputs: &[&[u8]]) -> Result<Vec<u8>, PdfError> {
    let (path, replies) = inputs
        .split_first()
        .ok_or_else(|| PdfError::new(ErrorKind::Malformed, "no inputs"))?;
    let path = std::str::from_utf8(path)
        .map_err(|_| PdfError::new(ErrorKind::Malformed, "path is not UTF-8"))?;
    let mut doc = super::Assembly::new(path.to_string());
    for r in replies {
        let reply = CheckedReply::parse(r.to_vec())
            .map_err(|e| PdfError::new(ErrorKind::Malformed, format!("bad reply: {e}")))?;
        doc.absorb(reply);
    }
    Ok(doc.render().0)
}

fn request(ctx: &TaskContext<'_>) -> Result<PageRequest, String> {
    serde_json::from_slice(ctx.input()).map_err(|e| format!("bad request: {e}"))
}

/// Adds the four roles' kinds to an agent's registry.
pub fn register(registry: &mut Registry) -> Result<(), crate::runtime::agent::RegistryError> {
    registry.register(PDF_PARSE, "pdf.parse", |ctx| {
        let req = request(ctx)?;
        Ok::<_, String>(parse(&req.path, req.first, req.last, &|| ctx.beat()))
    })?;
    registry.register(PDF_EXTRACT, "pdf.extract", |ctx| {
        extract(ctx.input(), &|| ctx.beat()).map_err(|e| e.to_string())
    })?;
    registry.register(PDF_ANALYZE, "pdf.analyze", |ctx| {
        let reply = analyze_frame(ctx.input(), &|| ctx.beat()).map_err(|e| e.to_string())?;
        serde_json::to_vec(&reply).map_err(|e| e.to_string())
    })?;
    registry.register(PDF_AGGREGATE, "pdf.aggregate", |ctx| {
        let inputs: Vec<&[u8]> = ctx.inputs().iter().map(|c| &**c).collect();
        aggregate(&inputs).map_err(|e| e.to_string())
    })
}
