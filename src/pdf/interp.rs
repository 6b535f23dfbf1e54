//! The content-stream interpreter: runs a page's operators over the graphics and text
//! state and emits positioned glyphs.
//!
//! Handled: `cm`, `q`/`Q`; `BT`/`ET`; `Tc`, `Tw`, `Tz`, `TL`, `Tf`, `Ts`, `Tr`; `Td`, `TD`,
//! `Tm`, `T*`; `Tj`, `TJ` (with kerning), `'`, `"`; `Do` of Form XObjects (with their own
//! resources, falling back to the caller's, depth-limited and cycle-safe). Glyph positions
//! follow the PDF text rendering formula: `Trm = [Tfs·Th 0 0 Tfs 0 Ts] × Tm × CTM`, and each
//! glyph advances `Tm` by `((w0·Tfs) + Tc + Tw) · Th`.

use super::font::{Char, Font};
use super::lexer::{Lexer, Operand};
use super::objects::{deref, dict_get};
use lopdf::{Dictionary, Document, Object, ObjectId};
use std::collections::HashMap;
use std::rc::Rc;

/// A glyph placed on the page (PDF user space, origin bottom-left).
#[derive(Debug, Clone, PartialEq)]
pub struct Glyph {
    /// Its Unicode text.
    pub text: smol_str::SmolStr,
    /// Origin.
    pub x: f64,
    /// Origin.
    pub y: f64,
    /// Advance along the baseline, in user space.
    pub adv: f64,
    /// Font size in user space.
    pub size: f64,
    /// Unit vector along the baseline.
    pub dir: (f64, f64),
}

type Matrix = [f64; 6];

fn mul(a: &Matrix, b: &Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

#[derive(Clone)]
struct TextState {
    char_spacing: f64,
    word_spacing: f64,
    hscale: f64,
    leading: f64,
    rise: f64,
    font: Option<Rc<Font>>,
    size: f64,
}

#[derive(Clone)]
struct GState {
    ctm: Matrix,
    text: TextState,
}

/// Limits that keep a hostile page bounded.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Operators interpreted per page, Form XObjects included.
    pub max_ops: usize,
    /// Glyphs emitted per page.
    pub max_glyphs: usize,
    /// Form XObject nesting.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_ops: 5_000_000,
            max_glyphs: 2_000_000,
            max_depth: 12,
        }
    }
}

/// Fonts shared by the pages of one document, by object id (or by the resource dictionary
/// entry for inline font dictionaries).
#[derive(Default)]
pub struct FontCache {
    fonts: HashMap<ObjectId, Rc<Font>>,
}

/// Interprets one page. `truncated` is set when a limit cut it short.
pub struct Interpreter<'d> {
    doc: &'d Document,
    cache: &'d mut FontCache,
    limits: Limits,
    ops: usize,
    /// Glyphs so far.
    pub glyphs: Vec<Glyph>,
    /// Whether a limit stopped the page early.
    pub truncated: bool,
    chars: Vec<Char>,
}

/// A resource lookup chain: the innermost dictionaries first.
#[derive(Clone)]
pub struct Resources<'d> {
    dicts: Vec<&'d Dictionary>,
}

impl<'d> Resources<'d> {
    /// The resources of a page, inherited ones included.
    pub fn of_page(doc: &'d Document, page: ObjectId) -> Resources<'d> {
        let mut dicts = Vec::new();
        if let Ok((inline, ids)) = doc.get_page_resources(page) {
            dicts.extend(inline);
            for id in ids {
                if let Ok(d) = doc.get_dictionary(id) {
                    dicts.push(d);
                }
            }
        }
        Resources { dicts }
    }

    fn lookup(
        &self,
        doc: &'d Document,
        category: &[u8],
        name: &[u8],
    ) -> Option<(Option<ObjectId>, &'d Object)> {
        for d in &self.dicts {
            let Some(cat) = dict_get(doc, d, category).and_then(|o| o.as_dict().ok()) else {
                continue;
            };
            if let Ok(o) = cat.get(name) {
                return Some(match o {
                    Object::Reference(id) => (Some(*id), doc.get_object(*id).ok()?),
                    other => (None, other),
                });
            }
        }
        None
    }
}

impl<'d> Interpreter<'d> {
    /// A fresh interpreter for one page.
    pub fn new(doc: &'d Document, cache: &'d mut FontCache, limits: Limits) -> Self {
        Self {
            doc,
            cache,
            limits,
            ops: 0,
            glyphs: Vec::new(),
            truncated: false,
            chars: Vec::new(),
        }
    }

    fn font(&mut self, res: &Resources<'d>, name: &[u8]) -> Option<Rc<Font>> {
        let (id, obj) = res.lookup(self.doc, b"Font", name)?;
        let dict = obj.as_dict().ok()?;
        if let Some(id) = id {
            if let Some(f) = self.cache.fonts.get(&id) {
                return Some(f.clone());
            }
            let f = Rc::new(Font::load(self.doc, dict));
            self.cache.fonts.insert(id, f.clone());
            return Some(f);
        }
        Some(Rc::new(Font::load(self.doc, dict)))
    }

    /// Runs a content stream with `res` under `ctm`. `seen` holds the Form XObjects being
    /// run, to break cycles.
    pub fn run(
        &mut self,
        content: &[u8],
        res: &Resources<'d>,
        ctm: Matrix,
        seen: &mut Vec<ObjectId>,
    ) {
        let mut gs = GState {
            ctm,
            text: TextState {
                char_spacing: 0.0,
                word_spacing: 0.0,
                hscale: 1.0,
                leading: 0.0,
                rise: 0.0,
                font: None,
                size: 0.0,
            },
        };
        let mut stack: Vec<GState> = Vec::new();
        let mut tm = IDENTITY;
        let mut tlm = IDENTITY;
        let mut lx = Lexer::new(content);
        let mut args: Vec<Operand> = Vec::with_capacity(8);
        while let Some((op, a)) = lx.next() {
            args.clear();
            args.extend(a);
            self.ops += 1;
            if self.ops > self.limits.max_ops || self.glyphs.len() > self.limits.max_glyphs {
                self.truncated = true;
                return;
            }
            let n = |i: usize| args.get(i).and_then(Operand::num).unwrap_or(0.0);
            match op {
                b"q" if stack.len() < 256 => stack.push(gs.clone()),
                b"Q" => {
                    if let Some(s) = stack.pop() {
                        gs = s;
                    }
                }
                b"cm" if args.len() >= 6 => {
                    gs.ctm = mul(&[n(0), n(1), n(2), n(3), n(4), n(5)], &gs.ctm);
                }
                b"BT" => {
                    tm = IDENTITY;
                    tlm = IDENTITY;
                }
                b"Tc" => gs.text.char_spacing = n(0),
                b"Tw" => gs.text.word_spacing = n(0),
                b"Tz" => gs.text.hscale = n(0) / 100.0,
                b"TL" => gs.text.leading = n(0),
                b"Ts" => gs.text.rise = n(0),
                b"Tf" => {
                    if let Some(Operand::Name(name)) = args.first() {
                        gs.text.font = self.font(res, name);
                    }
                    gs.text.size = n(1);
                }
                b"Td" => {
                    tlm = mul(&[1.0, 0.0, 0.0, 1.0, n(0), n(1)], &tlm);
                    tm = tlm;
                }
                b"TD" => {
                    gs.text.leading = -n(1);
                    tlm = mul(&[1.0, 0.0, 0.0, 1.0, n(0), n(1)], &tlm);
                    tm = tlm;
                }
                b"Tm" if args.len() >= 6 => {
                    tlm = [n(0), n(1), n(2), n(3), n(4), n(5)];
                    tm = tlm;
                }
                b"T*" => {
                    tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -gs.text.leading], &tlm);
                    tm = tlm;
                }
                b"Tj" => {
                    if let Some(Operand::Str(s)) = args.first() {
                        self.show(&gs, &mut tm, s);
                    }
                }
                b"'" | b"\"" => {
                    if op == b"\"" {
                        gs.text.word_spacing = n(0);
                        gs.text.char_spacing = n(1);
                    }
                    tlm = mul(&[1.0, 0.0, 0.0, 1.0, 0.0, -gs.text.leading], &tlm);
                    tm = tlm;
                    if let Some(Operand::Str(s)) = args.last() {
                        self.show(&gs, &mut tm, s);
                    }
                }
                b"TJ" => {
                    if let Some(Operand::Array(items)) = args.first() {
                        for item in items {
                            match item {
                                Operand::Str(s) => self.show(&gs, &mut tm, s),
                                Operand::Number(k) => {
                                    let tx = -k / 1000.0 * gs.text.size * gs.text.hscale;
                                    let vertical =
                                        gs.text.font.as_ref().is_some_and(|f| f.vertical);
                                    tm = if vertical {
                                        mul(
                                            &[1.0, 0.0, 0.0, 1.0, 0.0, -k / 1000.0 * gs.text.size],
                                            &tm,
                                        )
                                    } else {
                                        mul(&[1.0, 0.0, 0.0, 1.0, tx, 0.0], &tm)
                                    };
                                }
                                _ => {}
                            }
                        }
                    }
                }
                b"Do" => {
                    if let Some(Operand::Name(name)) = args.first() {
                        let name = name.clone();
                        self.form(res, &name, &gs.ctm, seen);
                    }
                }
                _ => {}
            }
        }
    }

    fn form(&mut self, res: &Resources<'d>, name: &[u8], ctm: &Matrix, seen: &mut Vec<ObjectId>) {
        let Some((id, Object::Stream(stream))) = res.lookup(self.doc, b"XObject", name) else {
            return;
        };
        if stream.dict.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Form") {
            return;
        }
        self.run_form(id, stream, res, ctm, seen);
    }

    /// Runs a Form XObject (or an annotation's appearance stream) under `ctm`, with its own
    /// resources in front of `res`.
    pub fn run_form(
        &mut self,
        id: Option<ObjectId>,
        stream: &'d lopdf::Stream,
        res: &Resources<'d>,
        ctm: &Matrix,
        seen: &mut Vec<ObjectId>,
    ) {
        if seen.len() >= self.limits.max_depth {
            return;
        }
        if let Some(id) = id {
            if seen.contains(&id) {
                return;
            }
            seen.push(id);
        }
        let doc = self.doc;
        let m = form_matrix(doc, &stream.dict);
        let mut inner = res.clone();
        if let Some(d) = dict_get(doc, &stream.dict, b"Resources").and_then(|o| o.as_dict().ok()) {
            inner.dicts.insert(0, d);
        }
        let content = super::inflate::decoded(stream).unwrap_or_else(|_| stream.content.clone());
        self.run(&content, &inner, mul(&m, ctm), seen);
        if id.is_some() {
            seen.pop();
        }
    }

    fn show(&mut self, gs: &GState, tm: &mut Matrix, bytes: &[u8]) {
        let Some(font) = gs.text.font.clone() else {
            return;
        };
        let t = &gs.text;
        let mut chars = std::mem::take(&mut self.chars);
        font.decode(bytes, &mut chars);
        let ctm = &gs.ctm;
        let scale = [t.size * t.hscale, 0.0, 0.0, t.size, 0.0, t.rise];
        // Glyphs only move the text matrix along (a translation), so what depends on its
        // linear part (direction, size, the user-space length of a unit) is the same for
        // every glyph of the string: worked out once, and again only if that part changes.
        // The per-glyph arithmetic is `mul`'s own, term for term, so positions come out
        // bit for bit as from whole matrix products.
        let mut lin: Option<([u64; 4], Fixed)> = None;
        for c in chars.drain(..) {
            let key = [tm[0], tm[1], tm[2], tm[3]].map(f64::to_bits);
            let fixed = match lin {
                Some((k, f)) if k == key => f,
                _ => {
                    let f = Fixed::of(tm, ctm, &scale, font.vertical, font.size_factor);
                    lin = Some((key, f));
                    f
                }
            };
            // m = tm × ctm and trm = scale × m, their translations as `mul` computes them.
            let m4 = tm[4] * ctm[0] + tm[5] * ctm[2] + ctm[4];
            let m5 = tm[4] * ctm[1] + tm[5] * ctm[3] + ctm[5];
            let x = scale[4] * fixed.m[0] + scale[5] * fixed.m[2] + m4;
            let y = scale[4] * fixed.m[1] + scale[5] * fixed.m[3] + m5;
            let spacing = t.char_spacing + if c.is_space_code { t.word_spacing } else { 0.0 };
            let (advance, step) = if font.vertical {
                let ty = -(t.size + spacing); // vertical: one em down per glyph, approximately
                (ty.abs(), [1.0, 0.0, 0.0, 1.0, 0.0, ty])
            } else {
                let tx = (c.width * t.size + spacing) * t.hscale;
                (tx, [1.0, 0.0, 0.0, 1.0, tx, 0.0])
            };
            self.glyphs.push(Glyph {
                text: c.text,
                x,
                y,
                adv: advance * fixed.len,
                size: fixed.size,
                dir: fixed.dir,
            });
            *tm = mul(&step, tm);
        }
        self.chars = chars;
    }
}

/// What a string's glyphs share while the text matrix's linear part stays the same.
#[derive(Clone, Copy)]
struct Fixed {
    /// `tm × ctm`'s linear part (its translation is per glyph).
    m: [f64; 4],
    /// The writing direction in user space, a unit vector.
    dir: (f64, f64),
    /// The user-space length of a unit along it.
    len: f64,
    /// The font size in user space.
    size: f64,
}

impl Fixed {
    fn of(tm: &Matrix, ctm: &Matrix, scale: &Matrix, vertical: bool, size_factor: f64) -> Fixed {
        let m = mul(tm, ctm);
        let trm = mul(scale, &m);
        // The writing direction in user space: along text space x, or down text space y
        // for vertical fonts (columns read top to bottom).
        let (vx, vy) = if vertical {
            (-m[2], -m[3])
        } else {
            (m[0], m[1])
        };
        let len = (vx * vx + vy * vy).sqrt();
        let dir = if len > 1e-9 {
            (vx / len, vy / len)
        } else {
            (1.0, 0.0)
        };
        Fixed {
            m: [m[0], m[1], m[2], m[3]],
            dir,
            len,
            size: (trm[2] * trm[2] + trm[3] * trm[3]).sqrt() * size_factor,
        }
    }
}

fn numbers(doc: &Document, o: Option<&Object>) -> Vec<f64> {
    o.map(|o| deref(doc, o))
        .and_then(|o| o.as_array().ok())
        .map(|a| {
            a.iter()
                .filter_map(|o| match deref(doc, o) {
                    Object::Integer(i) => Some(*i as f64),
                    Object::Real(r) => Some(*r as f64),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn form_matrix(doc: &Document, d: &Dictionary) -> Matrix {
    let v = numbers(doc, d.get(b"Matrix").ok());
    if v.len() == 6 {
        [v[0], v[1], v[2], v[3], v[4], v[5]]
    } else {
        IDENTITY
    }
}

/// Runs the normal appearance of every visible annotation of a page (form fields, free
/// text, stamps), placed on its rectangle as the PDF specification (12.5.5) says.
pub fn run_annotations<'d>(
    it: &mut Interpreter<'d>,
    doc: &'d Document,
    page: ObjectId,
    res: &Resources<'d>,
) {
    let Ok(page_dict) = doc.get_dictionary(page) else {
        return;
    };
    let Some(annots) = dict_get(doc, page_dict, b"Annots").and_then(|o| o.as_array().ok()) else {
        return;
    };
    for a in annots.iter().take(10_000) {
        let Some(annot) = deref(doc, a).as_dict().ok() else {
            continue;
        };
        let flags = annot
            .get(b"F")
            .ok()
            .and_then(|o| o.as_i64().ok())
            .unwrap_or(0);
        if flags & (2 | 32) != 0 {
            continue; // Hidden or NoView
        }
        let before = it.glyphs.len();
        run_appearance(it, doc, annot, res);
        if it.glyphs.len() == before {
            field_value(it, doc, annot);
        }
    }
}

/// A form field's value drawn where the widget is, when its appearance shows no text (no
/// appearance stream, or an empty one, as some producers leave for viewers to fill in).
fn field_value(it: &mut Interpreter<'_>, doc: &Document, annot: &Dictionary) {
    if annot.get(b"Subtype").and_then(Object::as_name).ok() != Some(b"Widget".as_slice()) {
        return;
    }
    // Field attributes are inherited from parent fields.
    let inherited = |key: &[u8]| -> Option<&Object> {
        let mut d = annot;
        for _ in 0..16 {
            if let Ok(v) = d.get(key) {
                return Some(deref(doc, v));
            }
            d = deref(doc, d.get(b"Parent").ok()?).as_dict().ok()?;
        }
        None
    };
    let kind = inherited(b"FT").and_then(|o| o.as_name().ok());
    if !matches!(kind, Some(b"Tx" | b"Ch")) {
        return;
    }
    let text = match inherited(b"V") {
        Some(Object::String(b, _)) => text_string(b),
        Some(Object::Array(items)) => items
            .iter()
            .filter_map(|o| match deref(doc, o) {
                Object::String(b, _) => Some(text_string(b)),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => return,
    };
    let rect = numbers(doc, annot.get(b"Rect").ok());
    if text.trim().is_empty() || rect.len() != 4 {
        return;
    }
    let (x0, y0) = (rect[0].min(rect[2]), rect[1].min(rect[3]));
    let height = (rect[1] - rect[3]).abs();
    // The size from the default appearance (`/F1 11 Tf`); 0 means auto-size.
    let da = inherited(b"DA")
        .and_then(|o| o.as_str().ok())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let tokens: Vec<&str> = da.split_whitespace().collect();
    let size = tokens
        .windows(2)
        .rev()
        .find(|w| w[1] == "Tf")
        .and_then(|w| w[0].parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or((height * 0.7).max(1.0));
    let mut x = x0 + 2.0;
    let mut y = y0 + ((height - size) / 2.0).max(0.0) + size * 0.2;
    for c in text.chars().take(10_000) {
        if c == '\n' || c == '\r' {
            // A multi-line value: next line down.
            x = x0 + 2.0;
            y -= size * 1.15;
            continue;
        }
        let adv = size * if c == ' ' { 0.28 } else { 0.5 };
        it.glyphs.push(Glyph {
            text: super::font::char_text(c),
            x,
            y,
            adv,
            size,
            dir: (1.0, 0.0),
        });
        x += adv;
    }
}

/// A PDF text string: UTF-16BE or UTF-8 with a byte-order mark, else PDFDocEncoding
/// (read as Latin-1, which it matches for letters).
fn text_string(b: &[u8]) -> String {
    if let Some(u) = b.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = u
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else if let Some(u) = b.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        String::from_utf8_lossy(u).into_owned()
    } else {
        b.iter().map(|&c| c as char).collect()
    }
}

/// Runs an annotation's normal appearance stream, placed on its rectangle.
fn run_appearance<'d>(
    it: &mut Interpreter<'d>,
    doc: &'d Document,
    annot: &'d Dictionary,
    res: &Resources<'d>,
) {
    let Some(ap) = dict_get(doc, annot, b"AP").and_then(|o| o.as_dict().ok()) else {
        return;
    };
    let Ok(normal) = ap.get(b"N") else { return };
    // Either one appearance, or one per state chosen by /AS (check boxes, radios).
    let found = stream_of(doc, normal).or_else(|| {
        let states = deref(doc, normal).as_dict().ok()?;
        let state = annot.get(b"AS").ok()?.as_name().ok()?;
        stream_of(doc, states.get(state).ok()?)
    });
    let Some((id, stream)) = found else { return };
    let rect = numbers(doc, annot.get(b"Rect").ok());
    let bbox = numbers(doc, stream.dict.get(b"BBox").ok());
    if rect.len() != 4 || bbox.len() != 4 {
        return;
    }
    let m = form_matrix(doc, &stream.dict);
    // The bounding box transformed by the form matrix, mapped onto the rectangle.
    let pts = [
        (bbox[0], bbox[1]),
        (bbox[2], bbox[1]),
        (bbox[0], bbox[3]),
        (bbox[2], bbox[3]),
    ]
    .map(|(x, y)| (x * m[0] + y * m[2] + m[4], x * m[1] + y * m[3] + m[5]));
    let (tx0, tx1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (ty0, ty1) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (rx0, rx1) = (rect[0].min(rect[2]), rect[0].max(rect[2]));
    let (ry0, ry1) = (rect[1].min(rect[3]), rect[1].max(rect[3]));
    let sx = if tx1 - tx0 > 1e-9 {
        (rx1 - rx0) / (tx1 - tx0)
    } else {
        1.0
    };
    let sy = if ty1 - ty0 > 1e-9 {
        (ry1 - ry0) / (ty1 - ty0)
    } else {
        1.0
    };
    let a = [sx, 0.0, 0.0, sy, rx0 - sx * tx0, ry0 - sy * ty0];
    it.run_form(id, stream, res, &a, &mut Vec::new());
}

/// A stream given inline or by reference, with its object id when it has one.
fn stream_of<'d>(
    doc: &'d Document,
    o: &'d Object,
) -> Option<(Option<ObjectId>, &'d lopdf::Stream)> {
    match o {
        Object::Reference(r) => match doc.get_object(*r).ok()? {
            Object::Stream(s) => Some((Some(*r), s)),
            _ => None,
        },
        Object::Stream(s) => Some((None, s)),
        _ => None,
    }
}

/// The concatenated, decoded content streams of a page. Streams that fail to decode are
/// skipped and counted.
pub fn page_content(doc: &Document, page: ObjectId) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for id in doc.get_page_contents(page) {
        match doc.get_object(id) {
            Ok(Object::Stream(s)) => match super::inflate::decoded(s) {
                // Most pages have one stream: its bytes are the content, not copied.
                Ok(c) if out.is_empty() => {
                    out = c;
                    out.push(b'\n');
                }
                Ok(c) => {
                    out.extend_from_slice(&c);
                    out.push(b'\n');
                }
                Err(_) if s.dict.get(b"Filter").is_err() => {
                    out.extend_from_slice(&s.content);
                    out.push(b'\n');
                }
                Err(_) => bad += 1,
            },
            _ => bad += 1,
        }
    }
    (out, bad)
}
