//! A task's request and its reply: the JSON an agent reads and writes.
//!
//! Agents write a [`PageReply`] of typed [`Page`]s, serialized once ([`PageReply::encode`]);
//! the supervisor reads it as a [`CheckedReply`] ([`CheckedReply::parse`]), whose pages
//! stay raw JSON in the reply's own bytes and go to the output without being parsed again
//! or copied one by one.

use super::scan::{key_is, once, Scan, ScanError};
use crate::pdf::document::Page;
use crate::pdf::error::{ErrorKind, PdfError};
use serde::{Deserialize, Serialize};

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
    /// The shared-cache key of this range (hex), when the job asks for the cache: the
    /// document's content hash and the range, taken by the job, not the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
}

/// A task's output. Agents write it with [`Page`]s; the supervisor reads it as a
/// [`CheckedReply`].
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

impl PageReply<Page> {
    /// A reply that says only why the document did not open.
    pub fn failed(error: PdfError) -> Self {
        PageReply {
            error: Some(error),
            ..PageReply::default()
        }
    }

    /// Adds a page, counting it when it carries an error.
    pub fn push(&mut self, page: Page) {
        self.page_errors += u32::from(page.error.is_some());
        self.pages.push(page);
    }

    /// The reply as an agent sends it: compact JSON, on one line.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Why an agent's reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A raw line break, which would split the output line (see [`one_line`]).
    #[error("a raw line break at byte {0}")]
    LineBreak(usize),
    /// Not JSON of the expected shape.
    #[error("{0}")]
    Json(String),
    /// A page (by its index in the reply) that is not a JSON object.
    #[error("page {0} of the range is not an object")]
    PageNotObject(usize),
}

impl From<ScanError> for ReplyError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::LineBreak(at) => ReplyError::LineBreak(at),
            e => ReplyError::Json(e.to_string()),
        }
    }
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
    /// Checks an agent's reply. Nothing in it is trusted: it must be JSON of the expected
    /// shape ([`scan`](super::scan): the whole grammar, with no raw line break, see
    /// [`one_line`]) and give objects as pages. Fields it does not know are checked and
    /// left; a field given twice is refused.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, ReplyError> {
        let mut sc = Scan::new(&bytes)?;
        let (mut page_count, mut first, mut page_errors) = (None, None, None);
        let (mut error, mut pages) = (None, None);
        sc.object(|sc, key| {
            let at = sc.at();
            if key_is(key, "page_count") {
                once(&mut page_count, sc.u32()?, at)
            } else if key_is(key, "first") {
                once(&mut first, sc.u32()?, at)
            } else if key_is(key, "page_errors") {
                once(&mut page_errors, sc.u32()?, at)
            } else if key_is(key, "error") {
                once(&mut error, sc.value()?, at)
            } else if key_is(key, "pages") {
                let mut spans = Vec::new();
                sc.array(|sc, n| {
                    if !sc.at_object() {
                        return Err(ScanError::Bad("page", n));
                    }
                    spans.push(sc.value()?);
                    Ok(())
                })?;
                once(&mut pages, spans, at)
            } else {
                sc.value().map(drop)
            }
        })
        .and_then(|()| sc.end())
        .map_err(|e| match e {
            ScanError::Bad("page", n) => ReplyError::PageNotObject(n),
            e => e.into(),
        })?;
        let missing = |name| ReplyError::Json(format!("missing field `{name}`"));
        let error = match error {
            Some(r) if &bytes[r.clone()] != b"null" => Some(
                serde_json::from_slice::<PdfError>(&bytes[r])
                    .map_err(|e| ReplyError::Json(format!("error: {e}")))?,
            ),
            _ => None,
        };
        Ok(Self {
            page_count: page_count.ok_or_else(|| missing("page_count"))?,
            first: first.unwrap_or(0),
            page_errors: page_errors.unwrap_or(0),
            error,
            pages: pages.ok_or_else(|| missing("pages"))?,
            bytes,
        })
    }

    /// The pages' raw JSON, in order.
    pub fn pages(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.pages.iter().map(|r| &self.bytes[r.clone()])
    }

    /// The kind of the first page error in this reply, read from the pages' own `error`
    /// records (only when the reply says some page has one). A record that does not read
    /// as one counts as none.
    pub fn first_page_error(&self) -> Option<ErrorKind> {
        #[derive(Deserialize)]
        struct PageHead {
            #[serde(default)]
            error: Option<KindOnly>,
        }
        #[derive(Deserialize)]
        struct KindOnly {
            kind: ErrorKind,
        }
        if self.page_errors == 0 {
            return None;
        }
        self.pages().find_map(|p| {
            serde_json::from_slice::<PageHead>(p)
                .ok()
                .and_then(|h| h.error)
                .map(|e| e.kind)
        })
    }
}

/// Output is JSON Lines, and an agent's page bytes go into a line as they are. Valid JSON
/// holds a raw line break only as whitespace between tokens, and there it would split the
/// line: a page written as `{"a":⏎{"path":"other.pdf",…}⏎}` would put a forged line for
/// another document in the output. Our agents write compact JSON, so no line break is
/// taken.
pub fn one_line(bytes: &[u8]) -> Result<(), ReplyError> {
    match memchr::memchr2(b'\n', b'\r', bytes) {
        Some(at) => Err(ReplyError::LineBreak(at)),
        None => Ok(()),
    }
}
