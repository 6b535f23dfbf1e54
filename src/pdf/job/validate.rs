//! What an agent's output must be before the job believes it: replies (generalists' and
//! Analyzers'), Aggregators' lines, and the page counts they claim. Every check fails the
//! document, never the run.

use crate::pdf::error::{ErrorKind, PdfError};
use crate::pdf::wire::scan::{key_is, once, unescape, Scan, ScanError};
use crate::pdf::wire::{CheckedReply, ReplyError, Status};

/// Most pages a document may claim. The count comes from an agent, and the job plans a
/// task per range from it: a lie must not make it plan billions.
pub(super) const MAX_PAGES: u32 = 1 << 20;

/// The failure of a document that claims more than [`MAX_PAGES`].
pub(super) fn too_many_pages(n: u32) -> PdfError {
    PdfError::new(
        ErrorKind::TooLarge,
        format!("{n} pages reported; more than {MAX_PAGES} are not run"),
    )
}

/// The failure of a document whose agent wrote something that is not what its stage
/// writes.
pub(super) fn bad_frame(what: &str) -> PdfError {
    PdfError::new(ErrorKind::AgentCrashed, what)
}

/// Checks an agent's reply (a generalist's, or an Analyzer's): see [`CheckedReply::parse`].
pub(super) fn check_reply(bytes: Vec<u8>) -> Result<CheckedReply, ReplyError> {
    CheckedReply::parse(bytes)
}

/// The failure of a document whose reply was refused.
pub(super) fn bad_reply(e: &ReplyError) -> PdfError {
    PdfError::new(ErrorKind::AgentCrashed, format!("bad reply: {e}"))
}

/// Checks an Aggregator's line before it goes out: JSON of the expected shape (an object
/// with `path`, `status`, `page_count` and `pages`, each page an object, on one line), for
/// the expected document. Returns it (the same bytes, not a copy) with its page count and
/// whether the document is ok.
pub(super) fn check_line(path: &str, line: Vec<u8>) -> Result<(Vec<u8>, u64, bool), PdfError> {
    let bad = |e: ScanError| bad_frame(&format!("bad aggregator line: {e}"));
    let mut sc = Scan::new(&line).map_err(bad)?;
    let (mut for_path, mut status, mut page_count, mut pages) = (None, None, None, None);
    sc.object(|sc, key| {
        let at = sc.at();
        if key_is(key, "path") {
            let p = unescape(sc.raw_string()?).ok_or(ScanError::Bad("a bad path", at))?;
            once(&mut for_path, p, at)?;
        } else if key_is(key, "status") {
            let s = sc.raw_string()?;
            let known = [Status::Ok, Status::Partial, Status::Error];
            let st = known.into_iter().find(|k| k.as_str().as_bytes() == s);
            once(
                &mut status,
                st.ok_or(ScanError::Bad("an unknown status", at))?,
                at,
            )?;
        } else if key_is(key, "page_count") {
            once(&mut page_count, sc.u32()?, at)?;
        } else if key_is(key, "pages") {
            let mut n = 0u64;
            sc.array(|sc, _| {
                if !sc.at_object() {
                    return Err(ScanError::Bad("a page that is not an object", sc.at()));
                }
                n += 1;
                sc.value().map(drop)
            })?;
            once(&mut pages, n, at)?;
        } else {
            sc.value()?;
        }
        Ok(())
    })
    .and_then(|()| sc.end())
    .map_err(bad)?;
    let (Some(for_path), Some(status), Some(_), Some(pages)) =
        (for_path, status, page_count, pages)
    else {
        return Err(bad_frame("bad aggregator line: a field is missing"));
    };
    if for_path != path {
        return Err(bad_frame("the aggregator answered for another document"));
    }
    Ok((line, pages, status == Status::Ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent cannot split its output line to forge another document's: a raw line
    /// break (valid JSON whitespace) is refused in replies and in Aggregator lines, and so
    /// are pages and lines that are not objects.
    #[test]
    fn replies_that_would_break_the_json_lines_framing_are_refused() {
        let forged = r#"{"path":"/other.pdf","status":"ok","page_count":1,"pages":[]}"#;
        let reply = format!(r#"{{"page_count":1,"first":1,"pages":[{{"a":{forged}}}]}}"#);
        assert!(
            check_reply(reply.clone().into_bytes()).is_ok(),
            "the same on one line"
        );
        for brk in ["\n", "\r"] {
            let split = reply.replace(":{\"path", &format!(":{brk}{{\"path"));
            assert!(serde_json::from_str::<serde_json::Value>(&split).is_ok());
            let e = check_reply(split.into_bytes()).unwrap_err();
            assert!(matches!(e, ReplyError::LineBreak(_)), "{e}");
            assert!(bad_reply(&e).message.contains("line break"), "{e}");
        }
        let not_object = br#"{"page_count":1,"first":1,"pages":[{"number":1},"text"]}"#;
        let e = check_reply(not_object.to_vec()).unwrap_err();
        assert_eq!(e, ReplyError::PageNotObject(1));
        assert!(
            e.to_string()
                .contains("page 1 of the range is not an object"),
            "{e}"
        );

        let line = r#"{"path":"/a.pdf","status":"ok","page_count":1,"pages":[{"number":1}]}"#;
        assert!(check_line("/a.pdf", line.as_bytes().to_vec()).is_ok());
        assert!(
            check_line("/b.pdf", line.as_bytes().to_vec()).is_err(),
            "another document"
        );
        let split = line.replace(r#","pages""#, "\n,\"pages\"");
        assert!(serde_json::from_str::<serde_json::Value>(&split).is_ok());
        assert!(check_line("/a.pdf", split.as_bytes().to_vec()).is_err());
        let array = r#"["/a.pdf","ok",1,[{"number":1}]]"#;
        assert!(check_line("/a.pdf", array.as_bytes().to_vec()).is_err());
        let page = line.replace(r#"{"number":1}"#, "7");
        assert!(check_line("/a.pdf", page.as_bytes().to_vec()).is_err());
        let status = line.replace(r#""ok""#, r#""fine""#);
        assert!(check_line("/a.pdf", status.as_bytes().to_vec()).is_err());
    }
}
