//! Built-in encodings read from embedded font programs.
//!
//! A simple font whose `/Encoding` names no base encoding takes its codes from the font
//! program itself (PDF 32000-1, 9.6.6.1): TeX's fonts, for one, put `ff`, `fi`, `fl` at
//! codes 11 to 13. Two kinds of program carry such an encoding in a form worth reading:
//! Type 1 (`/FontFile`, an `/Encoding` array of `dup CODE /NAME put` in its clear-text
//! part) and CFF (`/FontFile3` of subtype `Type1C`, an encoding and a charset table).
//! Everything is read with bounds checks; a program that does not parse gives `None`.

use lopdf::{Dictionary, Document, Object};
use std::collections::HashMap;

/// Code → glyph name, from the font program the descriptor embeds.
pub fn builtin_encoding(doc: &Document, descriptor: &Dictionary) -> Option<Vec<(u8, String)>> {
    let stream = |key: &[u8]| match super::objects::dict_get(doc, descriptor, key)? {
        Object::Stream(s) => Some((
            s.dict
                .get(b"Subtype")
                .and_then(Object::as_name)
                .ok()
                .map(<[u8]>::to_vec),
            super::inflate::decoded(s).unwrap_or_else(|_| s.content.clone()),
        )),
        _ => None,
    };
    if let Some((_, data)) = stream(b"FontFile") {
        return type1(&data);
    }
    match stream(b"FontFile3") {
        Some((Some(sub), data)) if sub == b"Type1C" => cff(&data),
        _ => None,
    }
}

/// The clear-text part of a Type 1 program: `/Encoding StandardEncoding def` (None: the
/// standard encoding applies) or `dup CODE /NAME put` entries.
fn type1(data: &[u8]) -> Option<Vec<(u8, String)>> {
    let head = &data[..data.len().min(64 * 1024)];
    let at = head.windows(9).position(|w| w == b"/Encoding")?;
    let rest = &head[at + 9..];
    let find = |pat: &[u8]| rest.windows(pat.len()).position(|w| w == pat);
    let end = [find(b"readonly"), find(b"eexec")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    // `dup 11/ff put` is as good as `dup 11 /ff put`.
    let text = String::from_utf8_lossy(&rest[..end]).replace('/', " /");
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    for w in tokens.windows(4) {
        if let ["dup", code, name, "put"] = w {
            if let (Ok(c), Some(n)) = (code.parse::<u8>(), name.strip_prefix('/')) {
                out.push((c, n.to_string()));
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Big-endian reads with bounds checks, over a CFF or TrueType program.
struct BigEndian<'a>(&'a [u8]);

impl<'a> BigEndian<'a> {
    fn u8(&self, at: usize) -> Option<usize> {
        self.0.get(at).map(|&b| b as usize)
    }
    fn u16(&self, at: usize) -> Option<usize> {
        Some(self.u8(at)? << 8 | self.u8(at + 1)?)
    }
    fn offset(&self, at: usize, size: usize) -> Option<usize> {
        (0..size).try_fold(0usize, |acc, k| Some(acc << 8 | self.u8(at + k)?))
    }
    /// An INDEX at `at`: its items' ranges and where it ends.
    fn index(&self, at: usize) -> Option<(Vec<(usize, usize)>, usize)> {
        let count = self.u16(at)?;
        if count == 0 {
            return Some((Vec::new(), at + 2));
        }
        let size = self.u8(at + 2)?;
        if !(1..=4).contains(&size) || count > 65_535 {
            return None;
        }
        let offsets = at + 3;
        let data = offsets + (count + 1) * size - 1;
        let mut items = Vec::with_capacity(count);
        let mut prev = self.offset(offsets, size)?;
        for i in 1..=count {
            let next = self.offset(offsets + i * size, size)?;
            if next < prev || data + next > self.0.len() {
                return None;
            }
            items.push((data + prev, data + next));
            prev = next;
        }
        Some((items, data + prev))
    }
}

/// Operands and operators of a DICT: (operator, last operand) pairs.
fn dict(data: &[u8]) -> Vec<(u16, i64)> {
    let mut out = Vec::new();
    let mut operand = 0i64;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        match b {
            0..=21 => {
                let op = if b == 12 {
                    i += 1;
                    1200 + u16::from(*data.get(i).unwrap_or(&0))
                } else {
                    u16::from(b)
                };
                out.push((op, operand));
                i += 1;
            }
            28 if i + 2 < data.len() => {
                operand = i64::from(i16::from_be_bytes([data[i + 1], data[i + 2]]));
                i += 3;
            }
            29 if i + 4 < data.len() => {
                operand = i64::from(i32::from_be_bytes([
                    data[i + 1],
                    data[i + 2],
                    data[i + 3],
                    data[i + 4],
                ]));
                i += 5;
            }
            30 => {
                // A real: nibbles up to an 0xf; its value does not matter here.
                i += 1;
                while i < data.len() && data[i] & 0x0f != 0x0f && data[i] >> 4 != 0x0f {
                    i += 1;
                }
                i += 1;
            }
            32..=246 => {
                operand = i64::from(b) - 139;
                i += 1;
            }
            247..=250 if i + 1 < data.len() => {
                operand = (i64::from(b) - 247) * 256 + i64::from(data[i + 1]) + 108;
                i += 2;
            }
            251..=254 if i + 1 < data.len() => {
                operand = -(i64::from(b) - 251) * 256 - i64::from(data[i + 1]) - 108;
                i += 2;
            }
            _ => i += 1,
        }
    }
    out
}

/// A CFF program's encoding: codes of its glyphs, named through its charset.
fn cff(data: &[u8]) -> Option<Vec<(u8, String)>> {
    let c = BigEndian(data);
    let header = c.u8(2)?;
    let (_, after_names) = c.index(header)?;
    let (tops, after_tops) = c.index(after_names)?;
    let (strings, _) = c.index(after_tops)?;
    let &(t0, t1) = tops.first()?;
    let top = dict(&data[t0..t1]);
    let get = |op: u16| top.iter().rev().find(|(o, _)| *o == op).map(|(_, v)| *v);
    if get(1230).is_some() {
        return None; // CID-keyed (ROS): no simple encoding
    }
    let encoding = get(16).unwrap_or(0);
    if encoding <= 1 {
        return None; // the standard (or expert) encoding: nothing of its own
    }
    let charstrings = usize::try_from(get(17)?).ok()?;
    let (glyphs, _) = c.index(charstrings)?;
    let n = glyphs.len();
    let name = |sid: usize| -> Option<String> {
        match STANDARD_STRINGS.get(sid) {
            Some(s) => Some((*s).to_string()),
            None => {
                let &(a, b) = strings.get(sid - STANDARD_STRINGS.len())?;
                Some(String::from_utf8_lossy(&data[a..b]).into_owned())
            }
        }
    };
    // Charset: the SID of each glyph (glyph 0 is .notdef).
    let charset = usize::try_from(get(15).unwrap_or(0)).ok()?;
    let mut sids = vec![0usize; n];
    if charset > 2 {
        let format = c.u8(charset)?;
        let mut gid = 1;
        let mut at = charset + 1;
        match format {
            0 => {
                while gid < n {
                    sids[gid] = c.u16(at)?;
                    gid += 1;
                    at += 2;
                }
            }
            1 | 2 => {
                while gid < n {
                    let first = c.u16(at)?;
                    let left = if format == 1 {
                        c.u8(at + 2)?
                    } else {
                        c.u16(at + 2)?
                    };
                    at += if format == 1 { 3 } else { 4 };
                    for k in 0..=left {
                        if gid >= n {
                            break;
                        }
                        sids[gid] = first + k;
                        gid += 1;
                    }
                }
            }
            _ => return None,
        }
    } else if charset == 0 {
        // ISOAdobe: glyph i is SID i.
        for (gid, sid) in sids.iter_mut().enumerate() {
            *sid = gid;
        }
    } else {
        return None;
    }
    let at = usize::try_from(encoding).ok()?;
    let format = c.u8(at)?;
    let mut out = Vec::new();
    let mut gid = 1;
    match format & 0x7f {
        0 => {
            let count = c.u8(at + 1)?;
            for k in 0..count {
                let code = c.u8(at + 2 + k)?;
                if gid < n {
                    out.push((code as u8, name(sids[gid])?));
                }
                gid += 1;
            }
        }
        1 => {
            let ranges = c.u8(at + 1)?;
            for r in 0..ranges {
                let first = c.u8(at + 2 + r * 2)?;
                let left = c.u8(at + 3 + r * 2)?;
                for k in 0..=left {
                    if gid < n && first + k < 256 {
                        out.push(((first + k) as u8, name(sids[gid])?));
                    }
                    gid += 1;
                }
            }
        }
        _ => return None,
    }
    (!out.is_empty()).then_some(out)
}

/// Glyph id → Unicode from an embedded TrueType/OpenType program's `cmap` table (its
/// Unicode subtable, format 4 or 12, turned around): the text of a CID font that comes
/// without a ToUnicode map. Glyphs several characters share keep the lowest.
pub fn truetype_glyph_text(data: &[u8]) -> Option<HashMap<u16, char>> {
    let c = BigEndian(data);
    let u32_at = |at: usize| Some(c.u16(at)? << 16 | c.u16(at + 2)?);
    let tables = c.u16(4)?;
    let cmap = (0..tables.min(64)).find_map(|k| {
        let rec = 12 + 16 * k;
        (data.get(rec..rec + 4)? == b"cmap").then(|| u32_at(rec + 8))?
    })?;
    let subtables = c.u16(cmap + 2)?;
    // Unicode subtables, best first: full repertoire (3,10), BMP (3,1), then platform 0.
    let mut best: Option<(u8, usize)> = None;
    for k in 0..subtables.min(64) {
        let rec = cmap + 4 + 8 * k;
        let rank = match (c.u16(rec)?, c.u16(rec + 2)?) {
            (3, 10) => 0,
            (0, 4) | (0, 6) => 1,
            (3, 1) => 2,
            (0, _) => 3,
            _ => continue,
        };
        let at = cmap + u32_at(rec + 4)?;
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, at));
        }
    }
    let (_, at) = best?;
    let mut map: HashMap<u16, char> = HashMap::new();
    let mut add = |code: u32, gid: usize| {
        if gid != 0 && gid <= 0xFFFF {
            if let Some(ch) = char::from_u32(code).filter(|ch| !ch.is_control()) {
                map.entry(gid as u16).or_insert(ch);
            }
        }
    };
    match c.u16(at)? {
        4 => {
            let segs = c.u16(at + 6)? / 2;
            let ends = at + 14;
            let starts = ends + 2 * segs + 2;
            let deltas = starts + 2 * segs;
            let ranges = deltas + 2 * segs;
            for k in 0..segs {
                let (end, start) = (c.u16(ends + 2 * k)?, c.u16(starts + 2 * k)?);
                let delta = c.u16(deltas + 2 * k)?;
                let range = c.u16(ranges + 2 * k)?;
                if start > end || end == 0xFFFF && start == 0xFFFF {
                    continue;
                }
                for code in start..=end.min(0xFFFE) {
                    let gid = if range == 0 {
                        (code + delta) & 0xFFFF
                    } else {
                        let addr = ranges + 2 * k + range + 2 * (code - start);
                        match c.u16(addr) {
                            Some(0) | None => continue,
                            Some(g) => (g + delta) & 0xFFFF,
                        }
                    };
                    add(code as u32, gid);
                }
            }
        }
        12 => {
            let groups = u32_at(at + 12)?;
            for k in 0..groups.min(100_000) {
                let g = at + 16 + 12 * k;
                let (first, last, gid) = (u32_at(g)?, u32_at(g + 4)?, u32_at(g + 8)?);
                if last < first || last - first > 0x10_000 {
                    continue;
                }
                for (n, code) in (first..=last).enumerate() {
                    add(code as u32, gid + n);
                }
            }
        }
        _ => return None,
    }
    (!map.is_empty()).then_some(map)
}

/// CFF's predefined strings (SIDs 0 to 390), from the CFF specification's Appendix A.
#[rustfmt::skip]
static STANDARD_STRINGS: [&str; 391] = [
    ".notdef", "space", "exclam", "quotedbl", "numbersign", "dollar", "percent",
    "ampersand", "quoteright", "parenleft", "parenright", "asterisk", "plus", "comma",
    "hyphen", "period", "slash", "zero", "one", "two", "three", "four", "five", "six",
    "seven", "eight", "nine", "colon", "semicolon", "less", "equal", "greater", "question",
    "at", "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P",
    "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z", "bracketleft", "backslash",
    "bracketright", "asciicircum", "underscore", "quoteleft", "a", "b", "c", "d", "e", "f",
    "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w",
    "x", "y", "z", "braceleft", "bar", "braceright", "asciitilde", "exclamdown", "cent",
    "sterling", "fraction", "yen", "florin", "section", "currency", "quotesingle",
    "quotedblleft", "guillemotleft", "guilsinglleft", "guilsinglright", "fi", "fl",
    "endash", "dagger", "daggerdbl", "periodcentered", "paragraph", "bullet",
    "quotesinglbase", "quotedblbase", "quotedblright", "guillemotright", "ellipsis",
    "perthousand", "questiondown", "grave", "acute", "circumflex", "tilde", "macron",
    "breve", "dotaccent", "dieresis", "ring", "cedilla", "hungarumlaut", "ogonek", "caron",
    "emdash", "AE", "ordfeminine", "Lslash", "Oslash", "OE", "ordmasculine", "ae",
    "dotlessi", "lslash", "oslash", "oe", "germandbls", "onesuperior", "logicalnot", "mu",
    "trademark", "Eth", "onehalf", "plusminus", "Thorn", "onequarter", "divide",
    "brokenbar", "degree", "thorn", "threequarters", "twosuperior", "registered", "minus",
    "eth", "multiply", "threesuperior", "copyright", "Aacute", "Acircumflex", "Adieresis",
    "Agrave", "Aring", "Atilde", "Ccedilla", "Eacute", "Ecircumflex", "Edieresis", "Egrave",
    "Iacute", "Icircumflex", "Idieresis", "Igrave", "Ntilde", "Oacute", "Ocircumflex",
    "Odieresis", "Ograve", "Otilde", "Scaron", "Uacute", "Ucircumflex", "Udieresis",
    "Ugrave", "Yacute", "Ydieresis", "Zcaron", "aacute", "acircumflex", "adieresis",
    "agrave", "aring", "atilde", "ccedilla", "eacute", "ecircumflex", "edieresis", "egrave",
    "iacute", "icircumflex", "idieresis", "igrave", "ntilde", "oacute", "ocircumflex",
    "odieresis", "ograve", "otilde", "scaron", "uacute", "ucircumflex", "udieresis",
    "ugrave", "yacute", "ydieresis", "zcaron", "exclamsmall", "Hungarumlautsmall",
    "dollaroldstyle", "dollarsuperior", "ampersandsmall", "Acutesmall", "parenleftsuperior",
    "parenrightsuperior", "twodotenleader", "onedotenleader", "zerooldstyle", "oneoldstyle",
    "twooldstyle", "threeoldstyle", "fouroldstyle", "fiveoldstyle", "sixoldstyle",
    "sevenoldstyle", "eightoldstyle", "nineoldstyle", "commasuperior",
    "threequartersemdash", "periodsuperior", "questionsmall", "asuperior", "bsuperior",
    "centsuperior", "dsuperior", "esuperior", "isuperior", "lsuperior", "msuperior",
    "nsuperior", "osuperior", "rsuperior", "ssuperior", "tsuperior", "ff", "ffi", "ffl",
    "parenleftinferior", "parenrightinferior", "Circumflexsmall", "hyphensuperior",
    "Gravesmall", "Asmall", "Bsmall", "Csmall", "Dsmall", "Esmall", "Fsmall", "Gsmall",
    "Hsmall", "Ismall", "Jsmall", "Ksmall", "Lsmall", "Msmall", "Nsmall", "Osmall",
    "Psmall", "Qsmall", "Rsmall", "Ssmall", "Tsmall", "Usmall", "Vsmall", "Wsmall",
    "Xsmall", "Ysmall", "Zsmall", "colonmonetary", "onefitted", "rupiah", "Tildesmall",
    "exclamdownsmall", "centoldstyle", "Lslashsmall", "Scaronsmall", "Zcaronsmall",
    "Dieresissmall", "Brevesmall", "Caronsmall", "Dotaccentsmall", "Macronsmall",
    "figuredash", "hypheninferior", "Ogoneksmall", "Ringsmall", "Cedillasmall",
    "questiondownsmall", "oneeighth", "threeeighths", "fiveeighths", "seveneighths",
    "onethird", "twothirds", "zerosuperior", "foursuperior", "fivesuperior", "sixsuperior",
    "sevensuperior", "eightsuperior", "ninesuperior", "zeroinferior", "oneinferior",
    "twoinferior", "threeinferior", "fourinferior", "fiveinferior", "sixinferior",
    "seveninferior", "eightinferior", "nineinferior", "centinferior", "dollarinferior",
    "periodinferior", "commainferior", "Agravesmall", "Aacutesmall", "Acircumflexsmall",
    "Atildesmall", "Adieresissmall", "Aringsmall", "AEsmall", "Ccedillasmall",
    "Egravesmall", "Eacutesmall", "Ecircumflexsmall", "Edieresissmall", "Igravesmall",
    "Iacutesmall", "Icircumflexsmall", "Idieresissmall", "Ethsmall", "Ntildesmall",
    "Ogravesmall", "Oacutesmall", "Ocircumflexsmall", "Otildesmall", "Odieresissmall",
    "OEsmall", "Oslashsmall", "Ugravesmall", "Uacutesmall", "Ucircumflexsmall",
    "Udieresissmall", "Yacutesmall", "Thornsmall", "Ydieresissmall", "001.000", "001.001",
    "001.002", "001.003", "Black", "Bold", "Book", "Light", "Medium", "Regular", "Roman",
    "Semibold",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type1_clear_text_encoding() {
        let prog = b"%!PS-AdobeFont-1.0: CMR10\n/Encoding 256 array\n0 1 255 {1 index exch /.notdef put} for\ndup 11 /ff put\ndup 12 /fi put\ndup 65 /A put\nreadonly def\ncurrentfile eexec";
        let enc = type1(prog).unwrap();
        assert_eq!(
            enc,
            vec![(11, "ff".into()), (12, "fi".into()), (65, "A".into())]
        );
        assert!(type1(b"/Encoding StandardEncoding def currentfile eexec").is_none());
    }

    proptest::proptest! {
        /// Font programs come from untrusted files: any bytes parse or give None.
        #[test]
        fn any_bytes_are_safe(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = cff(&data);
            let _ = type1(&data);
            let _ = truetype_glyph_text(&data);
            // A plausible header in front of the junk reaches the INDEX readers.
            let mut framed = vec![1, 0, 4, 2];
            framed.extend_from_slice(&data);
            let _ = cff(&framed);
        }
    }

    /// A program with one `cmap` subtable (3,1) of format 4: 'A'..'C' → glyphs 1..3 by a
    /// delta, 'x' → glyph 7 through the glyph id array.
    #[test]
    fn truetype_cmap_format4_turned_around() {
        let be = |v: u16| v.to_be_bytes();
        let mut sub = Vec::new();
        let segs: [(u16, u16, u16, u16); 3] = [
            // (start, end, delta, range offset)
            (0x41, 0x43, 0u16.wrapping_sub(0x40), 0),
            (0x78, 0x78, 0, 4), // reads glyphIdArray[0]
            (0xFFFF, 0xFFFF, 1, 0),
        ];
        sub.extend(be(4));
        sub.extend(be(0)); // length, unused here
        sub.extend(be(0));
        sub.extend(be(6)); // segCountX2
        sub.extend([0; 6]);
        segs.iter().for_each(|s| sub.extend(be(s.1)));
        sub.extend(be(0));
        segs.iter().for_each(|s| sub.extend(be(s.0)));
        segs.iter().for_each(|s| sub.extend(be(s.2)));
        segs.iter().for_each(|s| sub.extend(be(s.3)));
        sub.extend(be(7)); // glyphIdArray[0]
        let mut cmap = vec![0, 0, 0, 1, 0, 3, 0, 1, 0, 0, 0, 12];
        cmap.extend(sub);
        let mut font = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        font.extend(b"cmap");
        font.extend([0; 4]);
        font.extend(28u32.to_be_bytes());
        font.extend((cmap.len() as u32).to_be_bytes());
        font.extend(cmap);
        let m = truetype_glyph_text(&font).unwrap();
        assert_eq!(m.get(&1), Some(&'A'));
        assert_eq!(m.get(&3), Some(&'C'));
        assert_eq!(m.get(&7), Some(&'x'));
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn cff_garbage_gives_none_not_a_panic() {
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = cff(&junk);
        }
        assert!(cff(&[1, 0, 4, 1, 0, 0]).is_none());
    }
}
