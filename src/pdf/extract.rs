//! Extraction of whole files in this process, one after another: what `swarm extract`
//! writes, and the benchmark's single-thread reference. The line is rendered by the same
//! code as `swarm run`'s ([`super::wire::line`]).

use super::document::Document;
use super::error::{ErrorKind, PdfError};
use super::wire::DocResult;

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
