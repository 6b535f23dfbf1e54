//! PDFs made for tests with lopdf.
#![allow(dead_code)]

use lopdf::{dictionary, Document, Object, Stream};

/// A document of `pages` pages whose every page costs an agent long CPU: each page draws
/// a form that draws the one below it ten times, seven levels deep, so that a page runs
/// into the interpreter's operator limit (millions of operators from a few hundred bytes).
/// A budget of a second or two per document ends it as a timeout.
pub fn slow_pdf(pages: u32) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
    });
    let mut below = None;
    for level in 0..7 {
        let ops = match below {
            None => b"BT /F1 1 Tf 0 0 Td (a) Tj ET".to_vec(),
            Some(_) => "q /X Do Q ".repeat(10).into_bytes(),
        };
        let mut resources = dictionary! { "Font" => dictionary! { "F1" => font } };
        if let Some(b) = below {
            resources.set("XObject", dictionary! { "X" => b });
        }
        let form = Stream::new(
            dictionary! {
                "Type" => "XObject",
                "Subtype" => "Form",
                "BBox" => vec![0.into(), 0.into(), 100.into(), 100.into()],
                "Resources" => resources,
                "Name" => Object::Name(format!("L{level}").into_bytes()),
            },
            ops,
        );
        below = Some(doc.add_object(form));
    }
    let top = below.expect("seven levels");
    let resources = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font },
        "XObject" => dictionary! { "X" => top },
    });
    let content = doc.add_object(Stream::new(dictionary! {}, b"/X Do".to_vec()));
    let kids: Vec<Object> = (0..pages)
        .map(|_| {
            Object::Reference(doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content,
            }))
        })
        .collect();
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => pages as i64,
            "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).expect("writing into memory");
    bytes
}
