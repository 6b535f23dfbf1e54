//! Small helpers over `lopdf` objects that the extraction core shares: following a
//! reference, and reading a dictionary entry through it.

use lopdf::{Dictionary, Object};

/// `o`, or the object it refers to (a reference that resolves to nothing stays itself).
pub(crate) fn deref<'a>(doc: &'a lopdf::Document, o: &'a Object) -> &'a Object {
    doc.dereference(o).map(|(_, o)| o).unwrap_or(o)
}

/// `d[key]`, dereferenced.
pub(crate) fn dict_get<'a>(
    doc: &'a lopdf::Document,
    d: &'a Dictionary,
    key: &[u8],
) -> Option<&'a Object> {
    d.get(key).ok().map(|o| deref(doc, o))
}
