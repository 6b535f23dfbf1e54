//! Fonts as text extraction needs them: how bytes split into character codes, what Unicode
//! each code means, and how wide each glyph is.
//!
//! Sources of Unicode, best first: the font's `ToUnicode` CMap; for simple fonts, the
//! encoding (a base encoding plus `/Differences`, glyph names mapped through a compact
//! glyph list, `uniXXXX` and `uXXXX` names, `f_i`-style ligature names); failing both,
//! the code read as Latin-1. Widths come from `/Widths` (simple fonts), `/W` and `/DW` (CID
//! fonts), the `FontMatrix` (Type3), or built-in tables of the standard fonts when a PDF
//! relies on them without widths.

use super::hash::CodeMap;
use super::lexer::{Lexer, Operand};
use super::objects::{deref, dict_get};
use lopdf::{Dictionary, Document, Object};
use smol_str::SmolStr;
use std::collections::HashMap;

/// One decoded character.
#[derive(Debug, Clone)]
pub struct Char {
    /// Its Unicode text (may be empty for codes that map to nothing, or several characters
    /// for ligatures). Inline up to 23 bytes: decoding a glyph does not allocate.
    pub text: SmolStr,
    /// Advance width in text space units per unit of font size (1000 glyph units = 1.0).
    pub width: f64,
    /// Whether it is the single-byte code 32 (where `Tw` word spacing applies).
    pub is_space_code: bool,
}

/// A ToUnicode (or any) CMap: code space ranges and code-to-text mappings.
#[derive(Debug, Default, Clone)]
pub struct CMap {
    /// `(bytes, low, high)` code space ranges.
    ranges: Vec<(u8, u32, u32)>,
    map: CodeMap<(u8, u32), SmolStr>,
}

fn be(bytes: &[u8]) -> u32 {
    bytes.iter().take(4).fold(0u32, |a, &b| a << 8 | b as u32)
}

fn utf16(bytes: &[u8]) -> SmolStr {
    let units = bytes.chunks(2).map(|c| {
        if c.len() == 2 {
            (c[0] as u16) << 8 | c[1] as u16
        } else {
            c[0] as u16
        }
    });
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

/// A `bfrange` entry that can be read: its code length, its first and last codes (at most
/// 65,536 of them), and its destination.
fn bf_range<'o, 'a>(t: &'o [Operand<'a>]) -> Option<(u8, u32, u32, &'o Operand<'a>)> {
    let [Operand::Str(lo), Operand::Str(hi), dst] = t else {
        return None;
    };
    if lo.is_empty() || lo.len() > 4 || lo.len() != hi.len() {
        return None;
    }
    let (a, b) = (be(lo), be(hi));
    (b >= a && b - a <= 65_535).then_some((lo.len() as u8, a, b, dst))
}

impl CMap {
    /// Parses a CMap stream; whatever cannot be read is skipped.
    pub fn parse(data: &[u8]) -> CMap {
        let mut m = CMap::default();
        let mut lx = Lexer::with_max_operands(data, super::lexer::MAX_CMAP_OPERANDS);
        while let Some((op, args)) = lx.next() {
            let args: Vec<Operand> = args.collect();
            match op {
                b"endcodespacerange" => {
                    for pair in args.chunks(2) {
                        if let [Operand::Str(lo), Operand::Str(hi)] = pair {
                            if !lo.is_empty() && lo.len() <= 4 && lo.len() == hi.len() {
                                m.ranges.push((lo.len() as u8, be(lo), be(hi)));
                            }
                        }
                    }
                }
                b"endbfchar" => {
                    m.map.reserve(args.len() / 2);
                    for pair in args.chunks(2) {
                        if let [Operand::Str(src), Operand::Str(dst)] = pair {
                            if !src.is_empty() && src.len() <= 4 {
                                m.map.insert((src.len() as u8, be(src)), utf16(dst));
                            }
                        }
                    }
                }
                b"endbfrange" => {
                    let ranges: Vec<_> = args.chunks(3).filter_map(bf_range).collect();
                    // Room for the whole batch at once, instead of range by range.
                    let codes: usize = ranges
                        .iter()
                        .map(|&(_, a, b, _)| (b - a + 1) as usize)
                        .sum();
                    m.map.reserve(codes.min(1 << 20));
                    for (n, a, b, dst) in ranges {
                        match dst {
                            Operand::Str(d) if d.len() == 2 => {
                                // One UTF-16 unit, counted up: adding k to the last byte
                                // and carrying into the first is adding k to the unit,
                                // which is one character (a lone surrogate reads as
                                // U+FFFD, as the decoder has it).
                                let base = u16::from_be_bytes([d[0], d[1]]);
                                for (k, code) in (a..=b).enumerate() {
                                    let unit = base.wrapping_add(k as u16);
                                    let c = char::from_u32(u32::from(unit))
                                        .unwrap_or(char::REPLACEMENT_CHARACTER);
                                    m.map.insert((n, code), char_text(c));
                                }
                            }
                            Operand::Str(d) if !d.is_empty() => {
                                let mut buf = d.to_vec();
                                for (k, code) in (a..=b).enumerate() {
                                    buf.copy_from_slice(d);
                                    // Add k to the last byte(s), as the spec says.
                                    let last = buf.len() - 1;
                                    let v = buf[last] as u32 + k as u32;
                                    buf[last] = v as u8;
                                    if v > 0xFF && last > 0 {
                                        buf[last - 1] = buf[last - 1].wrapping_add((v >> 8) as u8);
                                    }
                                    m.map.insert((n, code), utf16(&buf));
                                }
                            }
                            Operand::Array(items) => {
                                for (code, item) in (a..=b).zip(items) {
                                    if let Operand::Str(d) = item {
                                        m.map.insert((n, code), utf16(d));
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        m
    }

    /// The length of the code starting `bytes`, from the code space ranges (or `fallback`).
    fn code_len(&self, bytes: &[u8], fallback: usize) -> usize {
        for &(n, lo, hi) in &self.ranges {
            let n = n as usize;
            if bytes.len() >= n {
                let c = be(&bytes[..n]);
                if c >= lo && c <= hi {
                    return n;
                }
            }
        }
        fallback.min(bytes.len()).max(1)
    }

    fn get(&self, len: usize, code: u32) -> Option<&SmolStr> {
        self.map.get(&(len as u8, code))
    }

    fn has_ranges(&self) -> bool {
        !self.ranges.is_empty()
    }
}

enum Widths {
    Simple {
        first: u32,
        widths: Vec<f64>,
        missing: f64,
    },
    Cid {
        map: CodeMap<u32, f64>,
        default: f64,
    },
}

/// A font, ready to decode strings.
pub struct Font {
    /// Codes are two bytes (Type0 with a two-byte or Identity CMap).
    two_byte: bool,
    /// The font writes vertically (`-V` CMaps).
    pub vertical: bool,
    to_unicode: Option<CMap>,
    /// Code → text for simple fonts.
    encoding: Option<Box<[Option<SmolStr>; 256]>>,
    widths: Widths,
    /// Multiplies widths into text space per unit of font size.
    scale: f64,
    /// Standard-font widths for codes 32..=126 when the PDF gives none.
    std_widths: Option<&'static [u16; 95]>,
    /// Glyph height per unit of font size (Type3 fonts can have odd matrices).
    pub size_factor: f64,
    /// The codes are UTF-16BE themselves (the predefined `Uni…-UTF16-`/`-UCS2-` CMaps).
    utf16: bool,
    /// CID → text from the embedded TrueType program's `cmap`, for a CID font that has
    /// no ToUnicode map.
    cid_text: Option<HashMap<u32, char>>,
    /// Simple fonts: each one-byte code's text and width, resolved once at load.
    simple: Option<Box<[(SmolStr, f64); 256]>>,
    /// The strings are GBK (code page 936) although the font says WinAnsi: see
    /// [`lies_about_gbk`].
    gbk: bool,
    /// CID → Unicode of the font's Adobe character collection (Japan1, GB1, CNS1,
    /// Korea1), for a CID font without ToUnicode.
    collection: Option<&'static hayro_cmap::CMap>,
    /// Code → CID: the predefined CMap the font is encoded with, when not Identity.
    code_cids: Option<&'static hayro_cmap::CMap>,
}

/// Chinese fonts that some PDF producers (S22PDF) mark `/WinAnsiEncoding` while writing
/// GBK bytes: SimSun, SimHei, KaiTi_GB2312, FangSong_GB2312 and LiSu, as their names
/// are spelled in GBK. MuPDF and pdf.js read these as GBK too.
const GBK_FONT_NAMES: [&[u8]; 5] = [
    b"\xCB\xCE\xCC\xE5",
    b"\xBA\xDA\xCC\xE5",
    b"\xBF\xAC\xCC\xE5_GB2312",
    b"\xB7\xC2\xCB\xCE_GB2312",
    b"\xC1\xA5\xCA\xE9",
];

/// A simple TrueType font without ToUnicode, named as one of [`GBK_FONT_NAMES`] and
/// claiming WinAnsi: its strings are GBK.
fn lies_about_gbk(d: &Dictionary, has_to_unicode: bool) -> bool {
    !has_to_unicode
        && d.get(b"Subtype").and_then(Object::as_name).ok() == Some(b"TrueType")
        && d.get(b"Encoding").and_then(Object::as_name).ok() == Some(b"WinAnsiEncoding")
        && d.get(b"BaseFont")
            .and_then(Object::as_name)
            .is_ok_and(|n| GBK_FONT_NAMES.contains(&n))
}

fn num(o: &Object) -> Option<f64> {
    match o {
        Object::Integer(i) => Some(*i as f64),
        Object::Real(r) => Some(*r as f64),
        _ => None,
    }
}

fn stream_bytes(o: &Object) -> Option<Vec<u8>> {
    let Object::Stream(s) = o else {
        return None;
    };
    // Some producers compress a stream and forget its /Filter: a zlib header says so.
    let c = &s.content;
    let zlib = s.dict.get(b"Filter").is_err()
        && c.len() > 2
        && c[0] == 0x78
        && (u16::from(c[0]) << 8 | u16::from(c[1])) % 31 == 0;
    if zlib {
        let mut flate = s.clone();
        flate.dict.set("Filter", "FlateDecode");
        if let Ok(b) = super::inflate::decoded(&flate) {
            return Some(b);
        }
    }
    Some(super::inflate::decoded(s).unwrap_or_else(|_| c.clone()))
}

impl Font {
    /// Builds the font from its dictionary.
    pub fn load(doc: &Document, d: &Dictionary) -> Font {
        let subtype = d.get(b"Subtype").and_then(Object::as_name).unwrap_or(b"");
        let base = d
            .get(b"BaseFont")
            .and_then(Object::as_name)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let to_unicode = dict_get(doc, d, b"ToUnicode")
            .and_then(stream_bytes)
            .map(|b| CMap::parse(&b));
        if subtype == b"Type0" {
            let enc_name = d
                .get(b"Encoding")
                .and_then(Object::as_name)
                .unwrap_or(b"Identity-H");
            let vertical = enc_name.ends_with(b"-V");
            let utf16 = enc_name.starts_with(b"Uni")
                && (enc_name.windows(5).any(|w| w == b"UTF16")
                    || enc_name.windows(4).any(|w| w == b"UCS2"));
            let desc = dict_get(doc, d, b"DescendantFonts")
                .and_then(|o| o.as_array().ok())
                .and_then(|a| a.first())
                .map(|o| deref(doc, o))
                .and_then(|o| o.as_dict().ok());
            let mut map = CodeMap::default();
            let mut default = 1000.0;
            if let Some(desc) = desc {
                if let Some(dw) = dict_get(doc, desc, b"DW").and_then(num) {
                    default = dw;
                }
                if let Some(Object::Array(w)) = dict_get(doc, desc, b"W") {
                    parse_cid_widths(doc, w, &mut map);
                }
            }
            // A predefined CJK CMap (`90ms-RKSJ-H`, `GBK-EUC-H`, ...) maps codes of one
            // to four bytes to CIDs; Identity makes the code the CID. The Unicode ones
            // (`UniJIS-UCS2-H`) give the text themselves, and the CIDs for widths.
            let identity = enc_name.starts_with(b"Identity-");
            let code_cids = if identity {
                None
            } else {
                predefined_cmap(enc_name)
            };
            // Without ToUnicode, a font of one of Adobe's CJK character collections has
            // CIDs that the collection's own table maps to Unicode (PDF 32000 9.10.2);
            // otherwise the embedded TrueType program's `cmap` may say.
            let collection = match (&to_unicode, desc) {
                (None, Some(desc)) if identity || (code_cids.is_some() && !utf16) => {
                    collection_ucs2(doc, desc)
                }
                _ => None,
            };
            let cid_text = match (&to_unicode, desc) {
                (None, Some(desc)) if !utf16 && collection.is_none() => {
                    cid_text_from_program(doc, desc)
                }
                _ => None,
            };
            return Font {
                simple: None,
                gbk: false,
                code_cids,
                collection,
                cid_text,
                utf16,
                two_byte: true,
                vertical,
                to_unicode,
                encoding: None,
                widths: Widths::Cid { map, default },
                scale: 0.001,
                std_widths: None,
                size_factor: 1.0,
            };
        }
        // Type3 widths are in glyph space, mapped to text space by the FontMatrix; one text
        // space unit times the font size is the nominal size, whatever the matrix.
        let (scale, size_factor) = if subtype == b"Type3" {
            let m: Vec<f64> = dict_get(doc, d, b"FontMatrix")
                .and_then(|o| o.as_array().ok())
                .map(|a| a.iter().filter_map(|o| num(deref(doc, o))).collect())
                .unwrap_or_default();
            let scale = m.first().copied().filter(|v| *v != 0.0).unwrap_or(0.001);
            (scale, type3_size_factor(doc, d, scale))
        } else {
            (0.001, 1.0)
        };
        let first = dict_get(doc, d, b"FirstChar")
            .and_then(num)
            .unwrap_or(0.0)
            .max(0.0) as u32;
        let widths: Vec<f64> = dict_get(doc, d, b"Widths")
            .and_then(|o| o.as_array().ok())
            .map(|a| {
                a.iter()
                    .map(|o| num(deref(doc, o)).unwrap_or(0.0))
                    .collect()
            })
            .unwrap_or_default();
        let missing = dict_get(doc, d, b"FontDescriptor")
            .and_then(|o| o.as_dict().ok())
            .and_then(|fd| dict_get(doc, fd, b"MissingWidth"))
            .and_then(num)
            .unwrap_or(0.0);
        let std_widths = if widths.is_empty() {
            standard_widths(&base)
        } else {
            None
        };
        let base_enc = if subtype == b"TrueType" || subtype == b"Type3" {
            BaseEncoding::WinAnsi
        } else {
            BaseEncoding::Standard
        };
        // The program's own encoding matters only when no base encoding is named, and
        // reading it means inflating the program: skip it when a ToUnicode map speaks.
        let names_base = match d.get(b"Encoding").map(|o| deref(doc, o)) {
            Ok(Object::Name(_)) => true,
            Ok(Object::Dictionary(e)) => e.has(b"BaseEncoding"),
            _ => false,
        };
        let builtin = (to_unicode.is_none() && !names_base)
            .then(|| dict_get(doc, d, b"FontDescriptor"))
            .flatten()
            .and_then(|o| o.as_dict().ok())
            .and_then(|fd| super::fontfile::builtin_encoding(doc, fd));
        let encoding = Some(build_encoding(
            doc,
            d.get(b"Encoding").ok(),
            base_enc,
            &base,
            builtin,
        ));
        let gbk = lies_about_gbk(d, to_unicode.is_some());
        let mut font = Font {
            simple: None,
            gbk,
            code_cids: None,
            collection: None,
            cid_text: None,
            utf16: false,
            two_byte: false,
            vertical: false,
            to_unicode,
            encoding,
            widths: Widths::Simple {
                first,
                widths,
                missing,
            },
            scale,
            std_widths,
            size_factor,
        };
        font.simple = Some(Box::new(std::array::from_fn(|c| {
            let code = [c as u8];
            (
                font.text(&code, 1, c as u32, c as u32),
                font.width(c as u32),
            )
        })));
        font
    }

    fn width(&self, code: u32) -> f64 {
        let w = match &self.widths {
            Widths::Simple {
                first,
                widths,
                missing,
            } => {
                match code
                    .checked_sub(*first)
                    .and_then(|i| widths.get(i as usize))
                {
                    Some(w) => *w,
                    None => match self.std_widths {
                        Some(t) if (32..=126).contains(&code) => t[(code - 32) as usize] as f64,
                        Some(_) => 500.0,
                        None if *missing > 0.0 => *missing,
                        None => 500.0,
                    },
                }
            }
            Widths::Cid { map, default } => *map.get(&code).unwrap_or(default),
        };
        w * self.scale
    }

    /// Splits a string operand into characters.
    pub fn decode(&self, bytes: &[u8], out: &mut Vec<Char>) {
        if self.gbk {
            return self.decode_gbk(bytes, out);
        }
        if let Some(cmap) = self.code_cids.filter(|_| !self.utf16) {
            return self.decode_predefined(cmap, bytes, out);
        }
        if let Some(t) = &self.simple {
            // A simple font: one byte a code, each resolved once for the font. What
            // follows is for composite fonts only.
            out.extend(bytes.iter().map(|&b| {
                let (text, width) = t[b as usize].clone();
                Char {
                    text,
                    width,
                    is_space_code: b == 32,
                }
            }));
            return;
        }
        let mut i = 0;
        while i < bytes.len() {
            // A composite font takes the code length from its ToUnicode's code space.
            let n = match &self.to_unicode {
                // A high surrogate takes its low one along.
                None if self.utf16 && bytes.len() - i >= 4 && (0xD8..0xDC).contains(&bytes[i]) => 4,
                Some(cm) if cm.has_ranges() => cm.code_len(&bytes[i..], 2),
                _ => 2.min(bytes.len() - i),
            };
            let code = be(&bytes[i..i + n]);
            i += n;
            // Unicode-encoded CID fonts: widths are the CIDs'.
            let cid = self
                .code_cids
                .map_or(code, |c| c.lookup_cid_code(code, n as u8).unwrap_or(0));
            let (text, width) = (self.text(&bytes[i - n..i], n, code, cid), self.width(cid));
            out.push(Char {
                text,
                width,
                is_space_code: n == 1 && code == 32,
            });
        }
    }

    /// A predefined CMap: each code is the shortest run of one to four bytes the CMap
    /// maps to a CID (as Acrobat reads them, whatever the code space says); a byte pair
    /// it does not know is CID 0. Widths are the CID's.
    fn decode_predefined(&self, cmap: &hayro_cmap::CMap, bytes: &[u8], out: &mut Vec<Char>) {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let (n, cid) = (1..=rest.len().min(4))
                .find_map(|n| {
                    cmap.lookup_cid_code(be(&rest[..n]), n as u8)
                        .map(|cid| (n, cid))
                })
                .unwrap_or((rest.len().min(2), 0));
            let code = be(&rest[..n]);
            out.push(Char {
                text: self.text(&rest[..n], n, code, cid),
                width: self.width(cid),
                is_space_code: n == 1 && code == 32,
            });
            i += n;
        }
    }

    /// GBK: a lead byte 0x81..=0xFE and the byte after it are one character, advancing
    /// by both bytes' widths (as the PDF positions them); other bytes are ASCII.
    fn decode_gbk(&self, bytes: &[u8], out: &mut Vec<Char>) {
        let mut i = 0;
        while i < bytes.len() {
            let n = if (0x81..=0xFE).contains(&bytes[i]) && i + 1 < bytes.len() {
                2
            } else {
                1
            };
            let raw = &bytes[i..i + n];
            i += n;
            let (text, _) = encoding_rs::GBK.decode_without_bom_handling(raw);
            let text: SmolStr = text.chars().filter(|c| !c.is_control()).collect();
            out.push(Char {
                text,
                width: raw.iter().map(|&b| self.width(u32::from(b))).sum(),
                is_space_code: raw == b" ",
            });
        }
    }

    /// The text of `code` (its `n` bytes are `raw`; `cid` its CID in a CID font):
    /// ToUnicode, then the encoding, then what the code itself says (UTF-16, the
    /// character collection's table, the program's `cmap`, Latin-1).
    fn text(&self, raw: &[u8], n: usize, code: u32, cid: u32) -> SmolStr {
        self.to_unicode
            .as_ref()
            .and_then(|cm| {
                cm.get(n, code)
                    .or_else(|| cm.get(if n == 1 { 2 } else { 1 }, code))
            })
            .cloned()
            .or_else(|| {
                self.encoding
                    .as_ref()
                    .and_then(|e| e.get(code as usize).cloned().flatten())
            })
            .unwrap_or_else(|| {
                if self.utf16 {
                    utf16(raw)
                } else if let Some(cmap) = self.collection {
                    match cmap.lookup_bf_string(cid) {
                        Some(hayro_cmap::BfString::Char(c)) if c != '\u{FFFD}' => char_text(c),
                        Some(hayro_cmap::BfString::String(s)) => SmolStr::from(s),
                        _ => SmolStr::default(),
                    }
                } else if self.two_byte {
                    self.cid_text
                        .as_ref()
                        .and_then(|m| m.get(&cid))
                        .map(|&c| char_text(c))
                        .unwrap_or_default()
                } else {
                    char::from_u32(code)
                        .filter(|c| !c.is_control())
                        .map(char_text)
                        .unwrap_or_default()
                }
            })
    }
}

/// One character as glyph text (inline, no allocation).
pub(crate) fn char_text(c: char) -> SmolStr {
    SmolStr::new(c.encode_utf8(&mut [0; 4]))
}

fn parse_cid_widths(doc: &Document, w: &[Object], map: &mut CodeMap<u32, f64>) {
    let mut i = 0;
    let mut total = 0usize;
    while i < w.len() && total < 200_000 {
        let Some(c) = num(deref(doc, &w[i])) else {
            break;
        };
        let c = c.max(0.0) as u32;
        match w.get(i + 1).map(|o| deref(doc, o)) {
            Some(Object::Array(list)) => {
                for (k, o) in list.iter().enumerate() {
                    if let Some(v) = num(deref(doc, o)) {
                        map.insert(c + k as u32, v);
                        total += 1;
                    }
                }
                i += 2;
            }
            Some(o) => {
                let (Some(last), Some(v)) = (num(o), w.get(i + 2).and_then(|o| num(deref(doc, o))))
                else {
                    break;
                };
                let last = (last.max(0.0) as u32).min(c.saturating_add(65_535));
                for code in c..=last {
                    map.insert(code, v);
                    total += 1;
                }
                i += 3;
            }
            None => break,
        }
    }
}

#[derive(Clone, Copy)]
enum BaseEncoding {
    Standard,
    WinAnsi,
    MacRoman,
}

fn build_encoding(
    doc: &Document,
    enc: Option<&Object>,
    default: BaseEncoding,
    base_font: &str,
    builtin: Option<Vec<(u8, String)>>,
) -> Box<[Option<SmolStr>; 256]> {
    let enc = enc.map(|o| deref(doc, o));
    let named = |n: &[u8]| match n {
        b"WinAnsiEncoding" => Some(BaseEncoding::WinAnsi),
        b"MacRomanEncoding" => Some(BaseEncoding::MacRoman),
        b"StandardEncoding" => Some(BaseEncoding::Standard),
        _ => None,
    };
    let symbolic = base_font.contains("Symbol") || base_font.contains("Dingbats");
    let (base, diffs) = match enc {
        Some(Object::Name(n)) => (named(n), None),
        Some(Object::Dictionary(d)) => (
            d.get(b"BaseEncoding")
                .ok()
                .and_then(|o| o.as_name().ok())
                .and_then(named),
            d.get(b"Differences")
                .ok()
                .map(|o| deref(doc, o))
                .and_then(|o| o.as_array().ok()),
        ),
        _ => (None, None),
    };
    let mut table: Box<[Option<SmolStr>; 256]> = match (base, builtin) {
        // No base encoding named: an embedded program's own encoding is the base.
        (None, Some(codes)) => {
            let mut t: Box<[Option<SmolStr>; 256]> = Box::new(std::array::from_fn(|_| None));
            for (code, name) in codes {
                // A name nobody knows has no text; it is not the code's ASCII letter.
                t[code as usize] = Some(glyph_to_unicode(&name).unwrap_or_default().into());
            }
            t
        }
        (base, _) => {
            let base = base.unwrap_or(default);
            Box::new(std::array::from_fn(|c| {
                if symbolic {
                    return None;
                }
                base_text(base, c as u8)
            }))
        }
    };
    if let Some(diffs) = diffs {
        let mut code = 0usize;
        for o in diffs {
            match deref(doc, o) {
                Object::Integer(i) => code = (*i).clamp(0, 255) as usize,
                Object::Name(n) => {
                    if code < 256 {
                        table[code] =
                            glyph_to_unicode(&String::from_utf8_lossy(n)).map(SmolStr::from);
                    }
                    code += 1;
                }
                _ => {}
            }
        }
    }
    table
}

const WIN_ANSI_80: [u16; 32] = [
    0x20AC, 0, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039,
    0x0152, 0, 0x017D, 0, 0, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC,
    0x2122, 0x0161, 0x203A, 0x0153, 0, 0x017E, 0x0178,
];

const MAC_ROMAN_80: &str = "ÄÅÇÉÑÖÜáàâäãåçéèêëíìîïñóòôöõúùûü†°¢£§•¶ß®©™´¨≠ÆØ∞±≤≥¥µ∂∑∏π∫ªºΩæø¿¡¬√ƒ≈∆«»…\u{a0}ÀÃÕŒœ–—“”‘’÷◊ÿŸ⁄€‹›ﬁﬂ‡·‚„‰ÂÊÁËÈÍÎÏÌÓÔ\u{f8ff}ÒÚÛÙıˆ˜¯˘˙˚¸˝˛ˇ";

fn base_text(base: BaseEncoding, c: u8) -> Option<SmolStr> {
    match (base, c) {
        (BaseEncoding::Standard, 0xA1..=0xFF) => standard_high(c).map(SmolStr::from),
        _ => base_char(base, c).map(char_text),
    }
}

fn base_char(base: BaseEncoding, c: u8) -> Option<char> {
    match (base, c) {
        (_, 0..=0x1F) => None,
        (BaseEncoding::Standard, 0x27) => Some('\u{2019}'),
        (BaseEncoding::Standard, 0x60) => Some('\u{2018}'),
        (_, 0x20..=0x7E) => Some(c as char),
        (BaseEncoding::WinAnsi, 0x80..=0x9F) => {
            char::from_u32(WIN_ANSI_80[(c - 0x80) as usize] as u32).filter(|c| *c != '\0')
        }
        (BaseEncoding::WinAnsi, 0xA0..=0xFF) => Some(c as char),
        (BaseEncoding::MacRoman, 0x80..=0xFF) => MAC_ROMAN_80.chars().nth((c - 0x80) as usize),
        _ => None,
    }
}

fn standard_high(c: u8) -> Option<String> {
    let name = match c {
        0xA1 => "exclamdown",
        0xA2 => "cent",
        0xA3 => "sterling",
        0xA4 => "fraction",
        0xA5 => "yen",
        0xA6 => "florin",
        0xA7 => "section",
        0xA8 => "currency",
        0xA9 => "quotesingle",
        0xAA => "quotedblleft",
        0xAB => "guillemotleft",
        0xAC => "guilsinglleft",
        0xAD => "guilsinglright",
        0xAE => "fi",
        0xAF => "fl",
        0xB1 => "endash",
        0xB2 => "dagger",
        0xB3 => "daggerdbl",
        0xB4 => "periodcentered",
        0xB6 => "paragraph",
        0xB7 => "bullet",
        0xB8 => "quotesinglbase",
        0xB9 => "quotedblbase",
        0xBA => "quotedblright",
        0xBB => "guillemotright",
        0xBC => "ellipsis",
        0xBD => "perthousand",
        0xBF => "questiondown",
        0xC1 => "grave",
        0xC2 => "acute",
        0xC3 => "circumflex",
        0xC4 => "tilde",
        0xC5 => "macron",
        0xC6 => "breve",
        0xC7 => "dotaccent",
        0xC8 => "dieresis",
        0xCA => "ring",
        0xCB => "cedilla",
        0xCD => "hungarumlaut",
        0xCE => "ogonek",
        0xCF => "caron",
        0xD0 => "emdash",
        0xE1 => "AE",
        0xE3 => "ordfeminine",
        0xE8 => "Lslash",
        0xE9 => "Oslash",
        0xEA => "OE",
        0xEB => "ordmasculine",
        0xF1 => "ae",
        0xF5 => "dotlessi",
        0xF8 => "lslash",
        0xF9 => "oslash",
        0xFA => "oe",
        0xFB => "germandbls",
        _ => return None,
    };
    glyph_to_unicode(name)
}

/// Maps a glyph name to Unicode: `uniXXXX…`, `uXXXX[XX]`, ligature names joined by `_`,
/// suffixes after `.` dropped, and a compact glyph list for the common names.
pub fn glyph_to_unicode(name: &str) -> Option<String> {
    let name = name.split('.').next().unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    if name.contains('_') {
        let parts: Option<String> = name.split('_').map(glyph_to_unicode).collect();
        return parts;
    }
    if let Some(hex) = name.strip_prefix("uni") {
        if hex.len() >= 4 && hex.len() % 4 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let units: Vec<u16> = (0..hex.len() / 4)
                .filter_map(|i| u16::from_str_radix(&hex[i * 4..i * 4 + 4], 16).ok())
                .collect();
            return Some(String::from_utf16_lossy(&units));
        }
    }
    if let Some(hex) = name.strip_prefix('u') {
        if (4..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return u32::from_str_radix(hex, 16)
                .ok()
                .and_then(char::from_u32)
                .map(String::from);
        }
    }
    if name.len() == 1 && name.as_bytes()[0].is_ascii_alphanumeric() {
        return Some(name.to_string());
    }
    if let Some(c) = glyph_list(name) {
        return Some(c.to_string());
    }
    if let Some(c) = adobe_glyph_list(name) {
        return Some(c.to_string());
    }
    if let Some(c) = accented(name) {
        return Some(c.to_string());
    }
    numeric_name(name)
}

/// Names that carry the character code as a number, as TeX bitmap fonts and some
/// converters write them: `a97`, `g65`, `c101` (decimal) and `G3A`/`g3a` (hex). The same
/// reading poppler applies.
fn numeric_name(name: &str) -> Option<String> {
    let letters = name.bytes().take_while(u8::is_ascii_alphabetic).count();
    if !(1..=2).contains(&letters) {
        return None;
    }
    let digits = &name[letters..];
    let code = if (2..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<u32>().ok()?
    } else if digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(digits, 16).ok()?
    } else {
        return None;
    };
    char::from_u32(code)
        .filter(|c| !c.is_control() && (c.is_ascii_graphic() || *c as u32 >= 0xA0))
        .map(String::from)
}

/// The Adobe Glyph List for New Fonts (about 600 names, math and arrows among them),
/// from the `glyph-names` crate, turned around once.
fn adobe_glyph_list(name: &str) -> Option<char> {
    static BY_NAME: std::sync::OnceLock<HashMap<&'static str, char>> = std::sync::OnceLock::new();
    BY_NAME
        .get_or_init(|| {
            glyph_names::GLYPH_NAME_PAIRS
                .iter()
                .map(|&(c, n)| (n, c))
                .collect()
        })
        .get(name)
        .copied()
}

fn glyph_list(name: &str) -> Option<&'static str> {
    Some(match name {
        // TeX's math fonts use some names the AGL for new fonts lacks.
        "owner" => "\u{220B}",
        "triangle" => "\u{25B3}",
        "negationslash" => "\u{0338}",
        "Rfractur" => "\u{211C}",
        "Ifractur" => "\u{2111}",
        "angbracketleft" => "\u{27E8}",
        "angbracketright" => "\u{27E9}",
        "prime" => "\u{2032}",
        "nabla" => "\u{2207}",
        "space" | "nbspace" | "nonbreakingspace" => " ",
        "exclam" => "!",
        "quotedbl" => "\"",
        "numbersign" => "#",
        "dollar" => "$",
        "percent" => "%",
        "ampersand" => "&",
        "quotesingle" => "'",
        "parenleft" => "(",
        "parenright" => ")",
        "asterisk" => "*",
        "plus" => "+",
        "comma" => ",",
        "hyphen" | "minus" | "sfthyphen" => "-",
        "period" => ".",
        "slash" => "/",
        "zero" => "0",
        "one" => "1",
        "two" => "2",
        "three" => "3",
        "four" => "4",
        "five" => "5",
        "six" => "6",
        "seven" => "7",
        "eight" => "8",
        "nine" => "9",
        "colon" => ":",
        "semicolon" => ";",
        "less" => "<",
        "equal" => "=",
        "greater" => ">",
        "question" => "?",
        "at" => "@",
        "bracketleft" => "[",
        "backslash" => "\\",
        "bracketright" => "]",
        "asciicircum" => "^",
        "underscore" => "_",
        "grave" => "`",
        "braceleft" => "{",
        "bar" => "|",
        "braceright" => "}",
        "asciitilde" => "~",
        "quoteleft" => "\u{2018}",
        "quoteright" => "\u{2019}",
        "quotedblleft" => "\u{201C}",
        "quotedblright" => "\u{201D}",
        "quotesinglbase" => "\u{201A}",
        "quotedblbase" => "\u{201E}",
        "endash" => "\u{2013}",
        "emdash" => "\u{2014}",
        "bullet" => "\u{2022}",
        "ellipsis" => "\u{2026}",
        "dagger" => "\u{2020}",
        "daggerdbl" => "\u{2021}",
        "fi" => "fi",
        "fl" => "fl",
        "ff" => "ff",
        "ffi" => "ffi",
        "ffl" => "ffl",
        "dotlessi" => "\u{131}",
        "germandbls" => "ß",
        "ae" => "æ",
        "AE" => "Æ",
        "oe" => "œ",
        "OE" => "Œ",
        "oslash" => "ø",
        "Oslash" => "Ø",
        "lslash" => "ł",
        "Lslash" => "Ł",
        "eth" => "ð",
        "Eth" => "Ð",
        "thorn" => "þ",
        "Thorn" => "Þ",
        "copyright" => "©",
        "registered" => "®",
        "trademark" => "™",
        "degree" => "°",
        "section" => "§",
        "paragraph" => "¶",
        "cent" => "¢",
        "sterling" => "£",
        "yen" => "¥",
        "Euro" | "euro" => "€",
        "currency" => "¤",
        "florin" => "ƒ",
        "exclamdown" => "¡",
        "questiondown" => "¿",
        "guillemotleft" => "«",
        "guillemotright" => "»",
        "guilsinglleft" => "‹",
        "guilsinglright" => "›",
        "periodcentered" => "·",
        "multiply" => "×",
        "divide" => "÷",
        "plusminus" => "±",
        "mu" => "µ",
        "fraction" => "⁄",
        "perthousand" => "‰",
        "ordfeminine" => "ª",
        "ordmasculine" => "º",
        "onehalf" => "½",
        "onequarter" => "¼",
        "threequarters" => "¾",
        "onesuperior" => "¹",
        "twosuperior" => "²",
        "threesuperior" => "³",
        "logicalnot" => "¬",
        "brokenbar" => "¦",
        "acute" => "´",
        "dieresis" => "¨",
        "macron" => "¯",
        "cedilla" => "¸",
        "circumflex" => "ˆ",
        "tilde" => "˜",
        "caron" => "ˇ",
        "breve" => "˘",
        "dotaccent" => "˙",
        "ring" => "˚",
        "ogonek" => "˛",
        "hungarumlaut" => "˝",
        "alpha" => "α",
        "beta" => "β",
        "gamma" => "γ",
        "delta" => "δ",
        "epsilon" => "ε",
        "pi" => "π",
        "sigma" => "σ",
        "lambda" => "λ",
        "theta" => "θ",
        "omega" => "ω",
        "Delta" => "∆",
        "Omega" => "Ω",
        "infinity" => "∞",
        "summation" => "∑",
        "product" => "∏",
        "integral" => "∫",
        "radical" => "√",
        "notequal" => "≠",
        "lessequal" => "≤",
        "greaterequal" => "≥",
        "approxequal" => "≈",
        "partialdiff" => "∂",
        "lozenge" => "◊",
        "arrowright" => "→",
        "arrowleft" => "←",
        "arrowup" => "↑",
        "arrowdown" => "↓",
        _ => return None,
    })
}

/// `eacute` → `é` and friends: a base letter followed by an accent name.
fn accented(name: &str) -> Option<char> {
    const ACCENTS: [(&str, &str, &str); 13] = [
        ("acute", "aeiouyAEIOUYcnszCNSZ", "áéíóúýÁÉÍÓÚÝćńśźĆŃŚŹ"),
        ("grave", "aeiouAEIOU", "àèìòùÀÈÌÒÙ"),
        ("circumflex", "aeiouAEIOU", "âêîôûÂÊÎÔÛ"),
        ("dieresis", "aeiouyAEIOUY", "äëïöüÿÄËÏÖÜŸ"),
        ("tilde", "anoANO", "ãñõÃÑÕ"),
        ("ring", "auAU", "åůÅŮ"),
        ("cedilla", "cstCST", "çşţÇŞŢ"),
        ("caron", "cdenrstzCDENRSTZ", "čďěňřšťžČĎĚŇŘŠŤŽ"),
        ("macron", "aeiouAEIOU", "āēīōūĀĒĪŌŪ"),
        ("breve", "agAG", "ăğĂĞ"),
        ("dotaccent", "ezgEZGI", "ėżġĖŻĠİ"),
        ("ogonek", "aeAE", "ąęĄĘ"),
        ("hungarumlaut", "ouOU", "őűŐŰ"),
    ];
    let mut chars = name.chars();
    let base = chars.next()?;
    let rest = chars.as_str();
    ACCENTS
        .iter()
        .find(|(a, _, _)| *a == rest)
        .and_then(|(_, bases, out)| {
            bases
                .chars()
                .position(|b| b == base)
                .and_then(|i| out.chars().nth(i))
        })
}

/// A predefined CMap by name (`90ms-RKSJ-H`, `UniGB-UCS2-H`, `Adobe-Japan1-UCS2`, ...),
/// as `hayro-cmap` embeds Adobe's (compressed); parsed once per process and name.
/// Unknown names are `None`.
fn predefined_cmap(name: &[u8]) -> Option<&'static hayro_cmap::CMap> {
    use hayro_cmap::{CMap, CMapName};
    use std::sync::OnceLock;
    type Loaded = parking_lot::Mutex<HashMap<Vec<u8>, Option<&'static CMap>>>;
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    let cmap_name = CMapName::from_bytes(name);
    if matches!(cmap_name, CMapName::Custom(_)) {
        return None; // only the predefined ones: a document cannot grow this table
    }
    *LOADED
        .get_or_init(Default::default)
        .lock()
        .entry(name.to_vec())
        .or_insert_with(|| {
            let data = hayro_cmap::load_embedded(cmap_name)?;
            // A few hundred predefined CMaps at most, each parsed once: kept for the
            // process's life.
            CMap::parse(data, hayro_cmap::load_embedded).map(|c| &*Box::leak(Box::new(c)))
        })
}

/// The CID → Unicode table of the CIDFont's character collection, when it is one of
/// Adobe's four CJK collections (Japan1, GB1, CNS1, Korea1): its `Adobe-*-UCS2` CMap.
fn collection_ucs2(doc: &Document, cid_font: &Dictionary) -> Option<&'static hayro_cmap::CMap> {
    let info = dict_get(doc, cid_font, b"CIDSystemInfo")?.as_dict().ok()?;
    let text = |key: &[u8]| match dict_get(doc, info, key) {
        Some(Object::String(s, _)) => Some(s.clone()),
        Some(Object::Name(n)) => Some(n.clone()),
        _ => None,
    };
    let family =
        hayro_cmap::CidFamily::from_registry_ordering(&text(b"Registry")?, &text(b"Ordering")?);
    predefined_cmap(family.ucs2_cmap()?.to_bytes())
}

/// CID → text through the CIDFont's `/CIDToGIDMap` (identity, or a stream of two-byte
/// glyph ids) and its embedded TrueType program's `cmap`.
fn cid_text_from_program(doc: &Document, cid_font: &Dictionary) -> Option<HashMap<u32, char>> {
    let fd = dict_get(doc, cid_font, b"FontDescriptor")?.as_dict().ok()?;
    let program = dict_get(doc, fd, b"FontFile2").and_then(stream_bytes)?;
    let by_gid = super::fontfile::truetype_glyph_text(&program)?;
    let map = match dict_get(doc, cid_font, b"CIDToGIDMap") {
        Some(o @ Object::Stream(_)) => {
            let table = stream_bytes(o)?;
            table
                .chunks_exact(2)
                .enumerate()
                .filter_map(|(cid, g)| {
                    let gid = u16::from_be_bytes([g[0], g[1]]);
                    by_gid.get(&gid).map(|&c| (cid as u32, c))
                })
                .collect()
        }
        _ => by_gid.into_iter().map(|(g, c)| (u32::from(g), c)).collect(),
    };
    Some(map)
}

/// How tall a Type3 font's em is in text space, per unit of font size. Its matrix can
/// be anything (`[0.0042 0 0 0.0042 0 0]` with glyphs 20 units wide is a 10 pt font at
/// `58 Tf`), so the size is inferred from the glyphs: average letters are about half an
/// em wide. Without widths, the matrix's nominal size stands.
fn type3_size_factor(doc: &Document, d: &Dictionary, scale: f64) -> f64 {
    let widths: Vec<f64> = dict_get(doc, d, b"Widths")
        .and_then(|o| o.as_array().ok())
        .map(|a| {
            a.iter()
                .filter_map(|o| num(deref(doc, o)))
                .filter(|w| *w > 0.0)
                .collect()
        })
        .unwrap_or_default();
    if widths.len() < 8 {
        return 1.0;
    }
    let mut sorted = widths;
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    (median * scale.abs() / 0.5).clamp(0.02, 50.0)
}

/// Widths of the standard fonts for codes 32..=126 (Adobe's AFM metrics).
pub(crate) fn standard_widths(base: &str) -> Option<&'static [u16; 95]> {
    let name = base.rsplit('+').next().unwrap_or(base);
    if name.starts_with("Courier") {
        Some(&COURIER)
    } else if name.starts_with("Helvetica") || name.starts_with("Arial") {
        Some(&HELVETICA)
    } else if name.starts_with("Times") {
        Some(&TIMES)
    } else {
        None
    }
}

static COURIER: [u16; 95] = [600; 95];

static HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
    278, // space../
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, // 0..?
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, // @..O
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, // P.._
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, // `..o
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // p..~
];

static TIMES: [u16; 95] = [
    250, 333, 408, 500, 500, 833, 778, 180, 333, 333, 500, 564, 250, 333, 250,
    278, // space../
    500, 500, 500, 500, 500, 500, 500, 500, 500, 500, 278, 278, 564, 564, 564, 444, // 0..?
    921, 722, 667, 667, 722, 611, 556, 722, 722, 333, 389, 722, 611, 889, 722, 722, // @..O
    556, 722, 667, 556, 611, 722, 722, 944, 722, 722, 611, 333, 278, 333, 469, 500, // P.._
    333, 444, 500, 444, 500, 444, 333, 500, 500, 278, 278, 500, 278, 778, 500, 500, // `..o
    500, 500, 333, 389, 278, 500, 500, 722, 500, 500, 444, 480, 200, 480, 541, // p..~
];

#[cfg(test)]
mod tests {

    /// A two-byte range destination counted up unit by unit reads as the general rule
    /// (add to the last byte, carry into the one before, decode as UTF-16) has it, at
    /// the edges too: the last unit, surrogates, wrapping past 0xFFFF.
    #[test]
    fn two_byte_range_destinations_count_up_as_the_spec_says() {
        for (base, hi) in [
            (0x0041u16, 0x0045u32),
            (0x00F0, 0x0120),
            (0xD7F0, 0xD810),
            (0xDFF0, 0xE010),
            (0xFFF0, 0x0010_0010),
        ] {
            let d = base.to_be_bytes();
            let cmap = CMap::parse(
                format!(
                    "1 beginbfrange <0000> <{:04X}> <{:04X}> endbfrange",
                    (hi - 0x10).min(0xFFFF),
                    base
                )
                .as_bytes(),
            );
            for k in 0..=(hi - 0x10).min(0xFFFF) {
                let mut buf = d.to_vec();
                let v = buf[1] as u32 + k;
                buf[1] = v as u8;
                if v > 0xFF {
                    buf[0] = buf[0].wrapping_add((v >> 8) as u8);
                }
                assert_eq!(
                    cmap.map.get(&(2, k)),
                    Some(&utf16(&buf)),
                    "base {base:04X} k {k}"
                );
            }
        }
    }

    use super::*;

    #[test]
    fn glyph_names() {
        assert_eq!(glyph_to_unicode("eacute").as_deref(), Some("é"));
        assert_eq!(glyph_to_unicode("uni00410042").as_deref(), Some("AB"));
        assert_eq!(glyph_to_unicode("u1F600").as_deref(), Some("😀"));
        assert_eq!(glyph_to_unicode("f_f_i").as_deref(), Some("ffi"));
        assert_eq!(glyph_to_unicode("a.sc").as_deref(), Some("a"));
        assert_eq!(glyph_to_unicode("quoteright").as_deref(), Some("\u{2019}"));
        assert_eq!(glyph_to_unicode("a97").as_deref(), Some("a"));
        assert_eq!(glyph_to_unicode("G3A").as_deref(), Some(":"));
        assert_eq!(glyph_to_unicode("abc"), None);
    }

    #[test]
    fn tounicode_cmap() {
        let cm = CMap::parse(
            b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
              1 begincodespacerange <0000> <FFFF> endcodespacerange\n\
              2 beginbfchar <0003> <0020> <0011> <00660069> endbfchar\n\
              1 beginbfrange <0024> <0026> <0041> endbfrange\n\
              1 beginbfrange <0030> <0031> [<0078> <0079>] endbfrange\n\
              endcmap CMapName currentdict /CMap defineresource pop end end",
        );
        assert_eq!(cm.get(2, 3).map(SmolStr::as_str), Some(" "));
        assert_eq!(cm.get(2, 0x11).map(SmolStr::as_str), Some("fi"));
        assert_eq!(cm.get(2, 0x26).map(SmolStr::as_str), Some("C"));
        assert_eq!(cm.get(2, 0x31).map(SmolStr::as_str), Some("y"));
        assert_eq!(cm.code_len(&[0, 3, 0, 4], 1), 2);
    }

    /// Regression: a bfchar block of 49 pairs (98 operands) lost its first 17 entries to the
    /// content-stream operand limit (the Bitcoin paper in the corpus).
    #[test]
    fn long_bfchar_blocks_keep_every_entry() {
        let mut src =
            String::from("1 begincodespacerange <00> <FF> endcodespacerange 100 beginbfchar\n");
        for c in 0..100u32 {
            src.push_str(&format!("<{c:02X}> <{:04X}>\n", 0x4E00 + c));
        }
        src.push_str("endbfchar");
        let cm = CMap::parse(src.as_bytes());
        for c in 0..100u32 {
            assert_eq!(
                cm.get(1, c).and_then(|s| s.chars().next()),
                char::from_u32(0x4E00 + c)
            );
        }
    }

    #[test]
    fn gbk_fonts_that_claim_win_ansi() {
        let font = |name: &[u8]| {
            let mut d = Dictionary::new();
            d.set("Type", Object::Name(b"Font".to_vec()));
            d.set("Subtype", Object::Name(b"TrueType".to_vec()));
            d.set("BaseFont", Object::Name(name.to_vec()));
            d.set("Encoding", Object::Name(b"WinAnsiEncoding".to_vec()));
            d.set("FirstChar", Object::Integer(0));
            d.set(
                "Widths",
                Object::Array((0..256).map(|_| Object::Integer(500)).collect()),
            );
            Font::load(&Document::with_version("1.5"), &d)
        };
        let text = |f: &Font, bytes: &[u8]| {
            let mut out = Vec::new();
            f.decode(bytes, &mut out);
            out.iter()
                .map(|c| (c.text.to_string(), c.width))
                .collect::<Vec<_>>()
        };
        // SimSun, as its name is spelled in GBK: "红军 1", each character both bytes wide.
        let simsun = font(b"\xCB\xCE\xCC\xE5");
        assert_eq!(
            text(&simsun, b"\xBA\xEC\xBE\xFC 1"),
            [("红", 1.0), ("军", 1.0), (" ", 0.5), ("1", 0.5)].map(|(t, w)| (t.to_string(), w))
        );
        // Any other name keeps WinAnsi, and a lone lead byte at the end stays one code.
        let arial = font(b"Arial");
        assert_eq!(text(&arial, b"\xBA").first().unwrap().0, "\u{BA}");
        assert_eq!(text(&simsun, b"\xBA").len(), 1);
    }

    /// A Type0 font on a predefined Shift-JIS CMap with a non-embedded Adobe-Japan1
    /// CIDFont and no ToUnicode: codes of one and two bytes, CIDs through the CMap,
    /// text through the collection's table, widths by CID.
    #[test]
    fn predefined_cjk_cmaps() {
        let mut info = Dictionary::new();
        info.set("Registry", Object::string_literal("Adobe"));
        info.set("Ordering", Object::string_literal("Japan1"));
        info.set("Supplement", Object::Integer(2));
        let mut cid_font = Dictionary::new();
        cid_font.set("Type", Object::Name(b"Font".to_vec()));
        cid_font.set("Subtype", Object::Name(b"CIDFontType0".to_vec()));
        cid_font.set("BaseFont", Object::Name(b"Ryumin-Light".to_vec()));
        cid_font.set("CIDSystemInfo", Object::Dictionary(info));
        cid_font.set("DW", Object::Integer(1000));
        // 90ms-RKSJ-H puts one-byte codes 0x20..=0x7E at CIDs 231.. (half-width
        // Roman): 'A' is CID 264.
        cid_font.set(
            "W",
            Object::Array(vec![
                Object::Integer(264),
                Object::Array(vec![Object::Integer(500)]),
            ]),
        );
        let mut d = Dictionary::new();
        d.set("Type", Object::Name(b"Font".to_vec()));
        d.set("Subtype", Object::Name(b"Type0".to_vec()));
        d.set(
            "BaseFont",
            Object::Name(b"Ryumin-Light-90ms-RKSJ-H".to_vec()),
        );
        d.set("Encoding", Object::Name(b"90ms-RKSJ-H".to_vec()));
        d.set(
            "DescendantFonts",
            Object::Array(vec![Object::Dictionary(cid_font)]),
        );
        let font = Font::load(&Document::with_version("1.5"), &d);
        let mut out = Vec::new();
        // 日本語 in Shift-JIS, then 'A' as one byte.
        font.decode(b"\x93\xFA\x96\x7B\x8C\xEAA", &mut out);
        let text: String = out.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(text, "日本語A");
        let widths: Vec<f64> = out.iter().map(|c| c.width).collect();
        assert_eq!(widths, [1.0, 1.0, 1.0, 0.5]);
    }

    #[test]
    fn encodings() {
        assert_eq!(base_char(BaseEncoding::WinAnsi, 0x93), Some('\u{201C}'));
        assert_eq!(base_char(BaseEncoding::Standard, 0x27), Some('\u{2019}'));
        assert_eq!(base_char(BaseEncoding::MacRoman, 0x8E), Some('é'));
        assert_eq!(
            base_text(BaseEncoding::Standard, 0xAE).as_deref(),
            Some("fi")
        );
    }
}
