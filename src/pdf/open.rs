//! The document an agent keeps open between tasks: consecutive page ranges of one
//! document (a generalist's `pdf.pages`, a Parser's ranges) load it once.
//!
//! One per agent thread; agents are single-threaded, so that is one per agent.

use super::document::Document;
use super::error::{ErrorKind, PdfError};
use std::cell::RefCell;

thread_local! {
    static OPEN: RefCell<Option<(String, Document)>> = const { RefCell::new(None) };
}

/// Runs `f` on the document at `path`, loading it unless it is the one open.
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
