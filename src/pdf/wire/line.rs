//! A document's output line, and the one renderer that writes it.
//!
//! `{"path","status","page_count","pages":[…],"error"?}`, as serde_json would write it (a
//! test holds it to that). [`verdict`] decides the status and the error; one private
//! `render` writes the line. Both serve [`DocResult`] (a document extracted in this process:
//! `swarm extract`, the benchmark's reference) and [`Assembly`] (a document put together
//! from its agents' replies: `swarm run`, generalists and specialists alike), so the same
//! document gets the same line from every command.

use super::reply::CheckedReply;
#[cfg(test)]
use super::reply::PageReply;
use crate::pdf::document::Page;
use crate::pdf::error::{ErrorKind, PdfError};
use serde::{Deserialize, Serialize};
use std::io::Write;

/// A document's status in its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every page, none with an error.
    Ok,
    /// Some pages failed or are missing.
    Partial,
    /// No page at all, and why.
    Error,
}

impl Status {
    /// As written in the line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Partial => "partial",
            Status::Error => "error",
        }
    }
}

/// A document's status and error, from what came in: `page_count` pages in the document,
/// `pages_out` of them in the line, `page_errors` of those with an error (the first of
/// which has the kind `first_page_error` gives), and the failure that ended the document
/// early, if one did.
///
/// A failure with no page is an `error`; a failure, a page error or a missing page make
/// the document `partial`. A partial document without a failure says how many pages
/// failed, with the kind of the first page that did (`malformed` when pages are only
/// missing).
pub fn verdict(
    page_count: u32,
    pages_out: usize,
    page_errors: u32,
    first_page_error: impl FnOnce() -> Option<ErrorKind>,
    failure: Option<&PdfError>,
) -> (Status, Option<PdfError>) {
    let status = if failure.is_some() && pages_out == 0 {
        Status::Error
    } else if failure.is_some() || page_errors > 0 || (pages_out as u64) < u64::from(page_count) {
        Status::Partial
    } else {
        Status::Ok
    };
    let error = match failure {
        Some(e) => Some(e.clone()),
        None if status == Status::Partial => Some(PdfError::new(
            first_page_error().unwrap_or(ErrorKind::Malformed),
            format!("{page_errors} of {page_count} pages failed"),
        )),
        None => None,
    };
    (status, error)
}

/// A page as it goes into a line: JSON already checked, or a page to serialize.
trait PageJson {
    /// Appends the page's JSON.
    fn write_to(&self, out: &mut Vec<u8>);
    /// Bytes it will take, if known (to size the line).
    fn len_hint(&self) -> usize;
}

impl PageJson for &[u8] {
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn len_hint(&self) -> usize {
        self.len()
    }
}

impl PageJson for &Page {
    fn write_to(&self, out: &mut Vec<u8>) {
        let _ = serde_json::to_writer(out, self);
    }
    fn len_hint(&self) -> usize {
        0
    }
}

/// Writes a document's line (without its newline): the one renderer of a document's
/// result. Strings and the error record go through serde_json, escaping and all; pages go
/// in as they are.
fn render<P: PageJson>(
    path: &str,
    status: Status,
    page_count: u32,
    pages: &[P],
    error: Option<&PdfError>,
) -> Vec<u8> {
    let pages_len: usize = pages.iter().map(|p| p.len_hint() + 1).sum();
    let mut out = Vec::with_capacity(pages_len + 2 * path.len() + 256);
    out.extend_from_slice(b"{\"path\":");
    let _ = serde_json::to_writer(&mut out, path);
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(status.as_str().as_bytes());
    out.extend_from_slice(b"\",\"page_count\":");
    let _ = write!(out, "{page_count}");
    out.extend_from_slice(b",\"pages\":[");
    for (i, page) in pages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        page.write_to(&mut out);
    }
    out.push(b']');
    if let Some(e) = error {
        out.extend_from_slice(b",\"error\":");
        let _ = serde_json::to_writer(&mut out, e);
    }
    out.push(b'}');
    out
}

/// One document's result, extracted in this process.
#[derive(Debug, Clone)]
pub struct DocResult {
    /// The path as given.
    pub path: String,
    /// See [`verdict`].
    pub status: Status,
    /// Pages in the document (0 when it could not be opened).
    pub page_count: u32,
    /// The pages, in order.
    pub pages: Vec<Page>,
    /// Why the document failed, when it did.
    pub error: Option<PdfError>,
}

impl DocResult {
    /// A document that failed as a whole.
    pub fn failed(path: String, error: PdfError) -> Self {
        let (status, error) = verdict(0, 0, 0, || None, Some(&error));
        Self {
            path,
            status,
            page_count: 0,
            pages: Vec::new(),
            error,
        }
    }

    /// A document from its pages.
    pub fn from_pages(path: String, page_count: u32, pages: Vec<Page>) -> Self {
        let bad = pages.iter().filter(|p| p.error.is_some()).count() as u32;
        let (status, error) = verdict(
            page_count,
            pages.len(),
            bad,
            || pages.iter().find_map(|p| p.error.as_ref().map(|e| e.kind)),
            None,
        );
        Self {
            path,
            status,
            page_count,
            pages,
            error,
        }
    }

    /// The output line, without its newline.
    pub fn line(&self) -> Vec<u8> {
        let pages: Vec<&Page> = self.pages.iter().collect();
        render(
            &self.path,
            self.status,
            self.page_count,
            &pages,
            self.error.as_ref(),
        )
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
    chunks: Vec<CheckedReply>,
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
    pub fn absorb(&mut self, mut reply: CheckedReply) {
        if let Some(e) = reply.error.take() {
            self.fail(e);
            return;
        }
        self.page_count = reply.page_count;
        // The count is the agent's word: no more than the pages it sent, and no overflow
        // however many replies claim it.
        let claimed = reply.page_errors.min(reply.pages().len() as u32);
        self.page_errors = self.page_errors.saturating_add(claimed);
        self.chunks.push(reply);
    }

    /// Records a failure (the first one wins).
    pub fn fail(&mut self, e: PdfError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// The output line (without its newline), the number of pages in it, and whether the
    /// document is ok. Each page goes from its reply's bytes into the line in one copy.
    pub fn render(mut self) -> (Vec<u8>, u64, bool) {
        // Replies are contiguous page ranges: order them by their first page.
        self.chunks.sort_by_key(|r| r.first);
        let pages: Vec<&[u8]> = self.chunks.iter().flat_map(|r| r.pages()).collect();
        let chunks = &self.chunks;
        let (status, error) = verdict(
            self.page_count,
            pages.len(),
            self.page_errors,
            || chunks.iter().find_map(CheckedReply::first_page_error),
            self.error.as_ref(),
        );
        let line = render(&self.path, status, self.page_count, &pages, error.as_ref());
        (line, pages.len() as u64, status == Status::Ok)
    }
}

/// `line` (a document's JSON object, whose first field is its `path`, as every line is
/// rendered) with the path `path`, and a newline; the rest of it byte for byte.
pub fn with_path(line: &str, path: &str) -> Vec<u8> {
    const HEAD: &str = "{\"path\":";
    let rest = line.strip_prefix(HEAD).and_then(|rest| {
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<String>();
        values.next()?.ok()?;
        rest.get(values.byte_offset()..)
    });
    let mut out = Vec::with_capacity(line.len() + path.len() + 1);
    match rest {
        Some(rest) => {
            out.extend_from_slice(HEAD.as_bytes());
            out.extend_from_slice(&serde_json::to_vec(path).unwrap_or_default());
            out.extend_from_slice(rest.as_bytes());
        }
        None => {
            // Not as we render lines: the object with its path set (fields reordered).
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(line).unwrap_or_default();
            v.insert("path".into(), serde_json::Value::String(path.into()));
            out = serde_json::to_vec(&v).unwrap_or_default();
        }
    }
    out.push(b'\n');
    out
}

/// A rendered line's path, its page count and whether it is `ok` (`None` if it is not a
/// line).
pub fn head(line: &[u8]) -> Option<(String, u64, bool)> {
    #[derive(Deserialize)]
    struct Head<'a> {
        path: String,
        #[serde(borrow)]
        status: &'a str,
        #[serde(default)]
        pages: Vec<serde::de::IgnoredAny>,
    }
    let h = serde_json::from_slice::<Head>(line).ok()?;
    Some((h.path, h.pages.len() as u64, h.status == "ok"))
}

/// A rendered line's page count and whether it is `ok` (0 and not ok if it is not a
/// line).
pub fn pages_and_ok(line: &[u8]) -> (u64, bool) {
    head(line).map_or((0, false), |(_, pages, ok)| (pages, ok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    /// A reply's count of failed pages is the agent's word: it cannot claim more than the
    /// pages it sent, nor overflow the document's count.
    #[test]
    fn claimed_page_errors_are_bounded_by_the_pages_sent() {
        let mut asm = Assembly::new("a.pdf".into());
        for first in [1, 2] {
            let json = format!(
                r#"{{"page_count":2,"first":{first},"pages":[{{"number":{first}}}],"page_errors":4294967295}}"#
            );
            asm.absorb(CheckedReply::parse(json.into_bytes()).unwrap());
        }
        assert_eq!(asm.page_errors, 2);
    }

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
            r#"{"number":3,"text":"x","error":{"kind":"unsupported","message":"m"}}"#,
        ];
        let path = "dir/naïve \"odd\"\\name\t.pdf";
        let late = PdfError::new(ErrorKind::Timeout, "late");
        let one_failed = PdfError::new(ErrorKind::Malformed, "1 of 3 pages failed");
        let none_failed = PdfError::new(ErrorKind::Malformed, "0 of 3 pages failed");
        let unsupported = PdfError::new(ErrorKind::Unsupported, "1 of 3 pages failed");
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
                vec![(3, &p[2..3], 0), (1, &p[..2], 0)],
                None,
                "ok",
                p[..3].to_vec(),
                None,
            ),
            // A page error: partial, with the summary.
            (
                vec![(1, &p[..3], 1)],
                None,
                "partial",
                p[..3].to_vec(),
                Some(&one_failed),
            ),
            // The summary has the kind of the first page that failed.
            (
                vec![(3, &p[3..], 1), (1, &p[..2], 0)],
                None,
                "partial",
                vec![p[0], p[1], p[3]],
                Some(&unsupported),
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
                asm.absorb(CheckedReply::parse(json.into_bytes()).unwrap());
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

#[cfg(test)]
mod same_line {
    use super::*;

    fn page(number: u32, error: Option<PdfError>) -> Page {
        Page {
            number,
            text: format!("page {number}"),
            width: 612.0,
            height: 792.0,
            lines: Vec::new(),
            blocks: Vec::new(),
            error,
        }
    }

    /// A document extracted in this process and the same pages come back from agents in
    /// ranges give the same line, byte for byte: one renderer, one verdict.
    #[test]
    fn a_doc_result_and_an_assembly_of_the_same_pages_render_the_same_line() {
        let late = PdfError::new(ErrorKind::TooLarge, "over the limits");
        let cases: Vec<Vec<Page>> = vec![
            vec![page(1, None), page(2, None), page(3, None)],
            vec![page(1, None), page(2, Some(late.clone())), page(3, None)],
            vec![
                page(1, Some(PdfError::new(ErrorKind::Unsupported, "a filter"))),
                page(2, Some(late)),
            ],
        ];
        for pages in cases {
            let n = pages.len() as u32;
            let local = DocResult::from_pages("a.pdf".into(), n, pages.clone());
            let mut asm = Assembly::new("a.pdf".into());
            // Two ranges, the second first.
            for range in [&pages[1..], &pages[..1]] {
                let mut reply = PageReply {
                    page_count: n,
                    first: range[0].number,
                    ..PageReply::default()
                };
                for p in range {
                    reply.push(p.clone());
                }
                asm.absorb(CheckedReply::parse(reply.encode().unwrap()).unwrap());
            }
            let (line, count, ok) = asm.render();
            assert_eq!(
                String::from_utf8(local.line()).unwrap(),
                String::from_utf8(line).unwrap()
            );
            assert_eq!((count, ok), (u64::from(n), local.status == Status::Ok));
        }
        let failed = DocResult::failed("b.pdf".into(), PdfError::new(ErrorKind::Io, "gone"));
        let mut asm = Assembly::new("b.pdf".into());
        asm.fail(PdfError::new(ErrorKind::Io, "gone"));
        assert_eq!(failed.line(), asm.render().0);
    }
}
