//! The one-stage PDF task kinds that generalist agents run, and the registration of every
//! PDF kind an agent serves.
//!
//! - [`PDF_DOC`]: payload `{"path", "pages": N}`. The agent opens the document and returns
//!   `{"page_count", "pages": [first N pages]}`, or `{"error": {...}}`.
//! - [`PDF_PAGES`]: payload `{"path", "first", "last"}`. The agent returns those pages. It
//!   keeps the last document it opened (`open.rs`), so consecutive ranges of one
//!   document are cheap.
//!
//! Requests and replies are [`super::wire::reply`]'s; results travel back as the
//! completion's payload (page buffers).
//!
//! With [`USE_CACHE`] in the task's argument, a range's reply goes through the shared cache
//! ([`crate::runtime::agent::Cache`]) under the key the job put in the request (the
//! document's content hash, taken by the job, and the range; the supervisor lets the task
//! use no other): a byte-identical document (another path, the same bytes) is extracted
//! once, and each of its copies gets the reply, which names no path (the job puts each
//! copy's path in its own line). A file the job could not read is not cached.

use super::document::Document;
use super::open::with_doc;
use super::wire::{PageReply, PageRequest};
use crate::runtime::agent::{Registry, TaskContext};
use crate::runtime::task::TaskKind;

/// Open a document and extract its first pages.
pub const PDF_DOC: TaskKind = TaskKind(100);
/// Extract a range of pages.
pub const PDF_PAGES: TaskKind = TaskKind(101);
/// In a task's argument: take the reply from the shared cache when a byte-identical
/// document's same range is there.
pub const USE_CACHE: u64 = 1;
/// In a task's argument: extract the range, and hand its reply to the shared cache
/// without asking first (the first copy of a document: nothing to wait for).
pub const FILL_CACHE: u64 = 2;

fn extract(
    doc: &mut Document,
    first: u32,
    last: u32,
    ctx: &TaskContext<'_>,
) -> PageReply<super::document::Page> {
    let mut reply = PageReply {
        page_count: doc.page_count(),
        first,
        ..PageReply::default()
    };
    for n in first..=last.min(doc.page_count()) {
        ctx.beat();
        reply.push(doc.page(n));
    }
    reply
}

fn handle(ctx: &TaskContext<'_>, doc_task: bool) -> Result<Vec<u8>, String> {
    let req: PageRequest =
        serde_json::from_slice(ctx.input()).map_err(|e| format!("bad request: {e}"))?;
    let first = if doc_task { 1 } else { req.first.max(1) };
    let compute = || {
        with_doc(&req.path, |doc| extract(doc, first, req.last, ctx))
            .unwrap_or_else(PageReply::failed)
            .encode()
            .map_err(|e| e.to_string())
    };
    let key = req.cache_key.as_deref().and_then(from_hex);
    let Some(key) = key.filter(|_| ctx.arg() & (USE_CACHE | FILL_CACHE) != 0) else {
        return compute();
    };
    if ctx.arg() & USE_CACHE == 0 {
        let reply = compute()?;
        // Kept for a later copy if the cache takes it; the reply is ours either way.
        let _ = ctx.cache().fill(&key, &reply);
        return Ok(reply);
    }
    match ctx.cache().get_or_compute(&key, compute) {
        Ok((reply, _)) => Ok(reply),
        Err(crate::runtime::agent::CacheError::Compute(e)) => Err(e),
        // The cache could not be asked: extract it here.
        Err(crate::runtime::agent::CacheError::State(_)) => compute(),
    }
}

/// A range's shared-cache key: the document's content hash (SHA-256) and the range.
pub fn cache_key(content_hash: &[u8], first: u32, last: u32) -> Vec<u8> {
    let mut key = b"pdf.range:".to_vec();
    key.extend_from_slice(content_hash);
    key.extend_from_slice(&first.to_le_bytes());
    key.extend_from_slice(&last.to_le_bytes());
    key
}

/// Lowercase hex (built in one string: it names every range of a cached document).
pub fn to_hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 15)] as char);
    }
    s
}

/// Bytes from lowercase or uppercase hex; `None` unless it is hex.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Adds every PDF kind to an agent's registry: the one-stage kinds here and the
/// specialists' roles ([`super::stages::register`]).
pub fn register(registry: &mut Registry) -> Result<(), crate::runtime::agent::RegistryError> {
    registry.register(PDF_DOC, "pdf.doc", |ctx| handle(ctx, true))?;
    registry.register(PDF_PAGES, "pdf.pages", |ctx| handle(ctx, false))?;
    super::stages::register(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_goes_there_and_back() {
        let bytes: Vec<u8> = (0..=255).collect();
        let hex = to_hex(&bytes);
        assert_eq!(&hex[..8], "00010203");
        assert_eq!(&hex[hex.len() - 4..], "feff");
        assert_eq!(from_hex(&hex), Some(bytes));
        assert_eq!(from_hex(&hex.to_uppercase()).map(|b| b.len()), Some(256));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
