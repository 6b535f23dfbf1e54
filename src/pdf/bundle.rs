//! One page cut out of a document as a self-contained PDF: what the Parser puts in page
//! buffers for an Extractor. Its content streams, forms and CMaps are stored decoded.
//!
//! Object numbers are kept, so the Extractor sees the very objects (and font cache keys)
//! a whole-document extraction sees, and the output is the same byte for byte. The page's
//! `/Parent` chain is kept too, each node cut down to the one kid on the way to this page:
//! inherited resources, media boxes and rotation resolve as they did in the whole
//! document.

use super::error::{ErrorKind, PdfError};
use lopdf::{dictionary, Dictionary, Document, Object, ObjectId, Stream};
use std::collections::HashSet;

/// Keys whose values extraction never follows: links to other pages and to the rest of
/// the document, and metadata. (`/Parent` is followed: a form field inherits its type and
/// value from its parents; the page's own chain is set up apart. Font programs go along:
/// built-in encodings and TrueType `cmap`s are read, see [`super::fontfile`].)
const SKIP: &[&[u8]] = &[
    b"Kids",
    b"P",
    b"Dest",
    b"A",
    b"AA",
    b"Next",
    b"Prev",
    b"First",
    b"Last",
    b"StructParent",
    b"StructParents",
    b"Thumb",
    b"B",
    b"Metadata",
    b"PieceInfo",
    b"Popup",
    b"IRT",
];

/// Most page-tree levels followed up from a page.
const MAX_DEPTH: usize = 64;
/// Most objects one page may pull in.
const MAX_OBJECTS: usize = 100_000;

fn refs(o: &Object, out: &mut Vec<ObjectId>) {
    match o {
        Object::Reference(id) => out.push(*id),
        Object::Array(a) => a.iter().for_each(|x| refs(x, out)),
        Object::Dictionary(d) => dict_refs(d, out),
        Object::Stream(s) => dict_refs(&s.dict, out),
        _ => {}
    }
}

fn dict_refs(d: &Dictionary, out: &mut Vec<ObjectId>) {
    for (k, v) in d.iter() {
        if !SKIP.contains(&k.as_slice()) {
            refs(v, out);
        }
    }
}

fn is_image(o: &Object) -> bool {
    matches!(o, Object::Stream(s)
        if s.dict.get(b"Subtype").and_then(Object::as_name).ok() == Some(b"Image".as_slice()))
}

/// An image's samples are never read: keep its dictionary (so `Do` still sees an image),
/// drop the data.
/// Whether a stream holds an embedded font program (kept as stored: it is large, and
/// only its encoding tables are read).
fn is_font_program(s: &Stream) -> bool {
    [b"Length1".as_slice(), b"Length2", b"Length3"]
        .iter()
        .any(|k| s.dict.has(k))
        || matches!(
            s.dict.get(b"Subtype").and_then(Object::as_name),
            Ok(b"Type1C" | b"CIDFontType0C" | b"OpenType")
        )
}

fn copy(o: &Object) -> Object {
    let Object::Stream(s) = o else {
        return o.clone();
    };
    if !is_image(o) {
        // Content, forms and CMaps travel decoded, so the Extractor does not inflate
        // them again. A stream that does not decode goes as it is, and fails there the
        // same way it fails in a whole-document extraction.
        if s.dict.has(b"Filter") && !is_font_program(s) {
            if let Ok(decoded) = super::inflate::decoded(s) {
                let mut dict = s.dict.clone();
                dict.remove(b"Filter");
                dict.remove(b"DecodeParms");
                return Object::Stream(Stream::new(dict, decoded));
            }
        }
        return o.clone();
    }
    let mut dict = dictionary! {};
    for key in [b"Type".as_slice(), b"Subtype", b"Width", b"Height"] {
        if let Ok(v) = s.dict.get(key) {
            dict.set(key, v.clone());
        }
    }
    Object::Stream(Stream::new(dict, Vec::new()))
}

/// The page `page` of `src` as a one-page PDF.
pub fn page_pdf(src: &Document, page: Option<ObjectId>) -> Result<Vec<u8>, PdfError> {
    let page = page.ok_or_else(|| PdfError::new(ErrorKind::Malformed, "no such page"))?;
    let mut out = Document::with_version("1.7");
    // The page and its ancestors, nearest first.
    let mut chain = vec![page];
    let mut seen: HashSet<ObjectId> = HashSet::from([page]);
    while chain.len() < MAX_DEPTH {
        let up = src
            .get_dictionary(*chain.last().expect("not empty"))
            .ok()
            .and_then(|d| d.get(b"Parent").ok())
            .and_then(|p| p.as_reference().ok());
        match up {
            Some(p) if seen.insert(p) && src.get_dictionary(p).is_ok() => chain.push(p),
            _ => break,
        }
    }
    let mut next = src.max_id + 1;
    let mut fresh = || {
        next += 1;
        (next - 1, 0)
    };
    let root_pages = fresh();
    let catalog = fresh();
    let mut queue = Vec::new();
    for (k, &id) in chain.iter().enumerate() {
        // A page the tree lists but the file lacks reads as an empty page, as it does in
        // the whole document.
        let mut d = src
            .get_dictionary(id)
            .cloned()
            .unwrap_or_else(|_| dictionary! { "Type" => "Page" });
        if k > 0 {
            d.set("Kids", vec![Object::Reference(chain[k - 1])]);
            d.set("Count", 1);
        }
        let parent = chain.get(k + 1).copied().unwrap_or(root_pages);
        d.set("Parent", parent);
        dict_refs(&d, &mut queue);
        out.objects.insert(id, Object::Dictionary(d));
    }
    let top = *chain.last().expect("not empty");
    out.objects.insert(
        root_pages,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![Object::Reference(top)],
            "Count" => 1,
        }),
    );
    out.objects.insert(
        catalog,
        Object::Dictionary(dictionary! { "Type" => "Catalog", "Pages" => root_pages }),
    );
    while let Some(id) = queue.pop() {
        if out.objects.contains_key(&id) {
            continue;
        }
        if out.objects.len() > MAX_OBJECTS {
            return Err(PdfError::new(
                ErrorKind::TooLarge,
                "the page reaches too many objects",
            ));
        }
        let Ok(o) = src.get_object(id) else { continue };
        let o = copy(o);
        if !is_image(&o) {
            refs(&o, &mut queue);
        }
        out.objects.insert(id, o);
    }
    out.max_id = next;
    out.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    out.save_to(&mut bytes)
        .map_err(|e| PdfError::new(ErrorKind::Malformed, e.to_string()))?;
    Ok(bytes)
}
