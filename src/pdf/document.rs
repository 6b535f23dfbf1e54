//! A loaded document and its pages: the extraction core's entry point.
//!
//! [`Document::load`] parses a file with `lopdf`; [`Document::page_glyphs`] interprets a
//! page's content into positioned glyphs (the Extractor's part, [`super::interp`]);
//! [`analyze`] turns glyphs into words, lines and blocks (the Analyzer's part,
//! [`super::layout`]); [`Document::page_bundle`] cuts a page out as a one-page PDF (the
//! Parser's part, [`super::bundle`]).

use super::error::{ErrorKind, PdfError};
use super::interp::{self, FontCache, Interpreter, Limits, Resources};
use super::{bundle, layout};
use lopdf::ObjectId;
use serde::Serialize;

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
        // About one glyph for every six bytes of content is usual (`(Hel)-20(lo)` is
        // fewer): room for them at once instead of growing, and copying, the glyphs as
        // they come; at most 65,536 ahead (4.5 MB), so that a hostile stream reserves
        // little it does not use.
        it.glyphs.reserve((content.len() / 6).min(1 << 16));
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
#[derive(Debug, Clone, PartialEq)]
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
