//! The pipeline as four agent roles, each a task kind, with page data moving between
//! them in page buffers (held outputs forwarded by the supervisor, never copied through
//! it):
//!
//! - **Parser** ([`PDF_PARSE`]): `{"path", "first", "last"}` in; the document is loaded
//!   (and kept for the next range) and each page of the range cut out as a one-page PDF
//!   ([`Document::page_bundle`]). Out: a [`Parsed`] frame.
//! - **Extractor** ([`PDF_EXTRACT`]): a [`Parsed`] frame in, each page interpreted into
//!   positioned glyphs. Out: an [`Extracted`] frame.
//! - **Analyzer** ([`PDF_ANALYZE`]): glyphs in, words, lines, blocks and reading order out,
//!   as a [`PageReply`] (the same JSON the one-stage kinds return).
//! - **Aggregator** ([`PDF_AGGREGATE`]): every range's [`PageReply`] of a document in
//!   (several inputs), the document's output line out.
//!
//! The frames and their decoders are in [`super::frames`]; every input here is another
//! agent's bytes and is decoded as untrusted.

use super::document::{analyze, Document, Page, PageGlyphs};
use super::error::{ErrorKind, PdfError};
use super::frames::{Extracted, ExtractedWriter, Parsed, ParsedWriter};
use super::interp::FontCache;
use super::open::with_doc;
use super::wire::{Assembly, CheckedReply, PageReply, PageRequest};
use crate::runtime::agent::{Registry, TaskContext};
use crate::runtime::task::{TaskError, TaskKind};

/// Parser: load, split a page range into one-page PDFs.
pub const PDF_PARSE: TaskKind = TaskKind(110);
/// Extractor: one-page PDFs to glyphs.
pub const PDF_EXTRACT: TaskKind = TaskKind(111);
/// Analyzer: glyphs to layout and text.
pub const PDF_ANALYZE: TaskKind = TaskKind(112);
/// Aggregator: a document's ranges to its output line.
pub const PDF_AGGREGATE: TaskKind = TaskKind(113);

/// Parser: the pages `first..=last` of the document at `path`, as a [`Parsed`] frame.
pub fn parse(path: &str, first: u32, last: u32, beat: &dyn Fn()) -> Vec<u8> {
    let result = with_doc(path, |doc: &mut Document| {
        let n = doc.page_count();
        let mut frame = ParsedWriter::new(n, first.max(1));
        for number in first.max(1)..=last.min(n) {
            beat();
            let cut = doc.page_bundle(number);
            frame.page(number, cut.as_deref());
        }
        frame.finish()
    });
    result.unwrap_or_else(|e| Parsed::failed(first, &e))
}

/// Extractor: a [`Parsed`] frame to an [`Extracted`] frame.
pub fn extract(input: &[u8], beat: &dyn Fn()) -> Result<Vec<u8>, PdfError> {
    let parsed = Parsed::decode(input)?;
    let mut frame = ExtractedWriter::new(parsed.page_count, parsed.first, parsed.error.as_ref());
    // The pages of a range are one document's, cut out with their object numbers: a font
    // read for one page serves the next, as in a whole-document extraction.
    let mut fonts = FontCache::default();
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
        frame.page(&g);
    }
    Ok(frame.finish())
}

/// Analyzer: an [`Extracted`] frame to a [`PageReply`].
pub fn analyze_frame(input: &[u8], beat: &dyn Fn()) -> Result<PageReply<Page>, PdfError> {
    let ex = Extracted::decode(input)?;
    let mut reply = PageReply {
        page_count: ex.page_count,
        first: ex.first,
        error: ex.error,
        ..PageReply::default()
    };
    for g in ex.pages {
        beat();
        reply.push(analyze(g));
    }
    Ok(reply)
}

/// Aggregator: the document's path comes as the task's first input, its ranges' replies
/// as the rest; out comes the document's line.
pub fn aggregate(inputs: &[&[u8]]) -> Result<Vec<u8>, PdfError> {
    let (path, replies) = inputs
        .split_first()
        .ok_or_else(|| PdfError::new(ErrorKind::Malformed, "no inputs"))?;
    let path = std::str::from_utf8(path)
        .map_err(|_| PdfError::new(ErrorKind::Malformed, "path is not UTF-8"))?;
    let mut doc = Assembly::new(path.to_string());
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
        extract(ctx.input(), &|| ctx.beat()).map_err(TaskError::from)
    })?;
    registry.register(PDF_ANALYZE, "pdf.analyze", |ctx| {
        let reply = analyze_frame(ctx.input(), &|| ctx.beat())?;
        reply
            .encode()
            .map_err(|e| TaskError::new("bad_output", e.to_string()))
    })?;
    registry.register(PDF_AGGREGATE, "pdf.aggregate", |ctx| {
        let inputs: Vec<&[u8]> = ctx.inputs().iter().map(|c| &**c).collect();
        aggregate(&inputs).map_err(TaskError::from)
    })
}
