//! Built-in encodings read from embedded font programs.
//!
//! A simple font whose `/Encoding` names no base encoding takes its codes from the font
//! program itself (PDF 32000-1, 9.6.6.1): TeX's fonts, for one, put `ff`, `fi`, `fl` at
//! codes 11 to 13. Two kinds of program carry such an encoding in a form worth reading:
//! Type 1 (`/FontFile`, an `/Encoding` array of `dup CODE /NAME put` in its clear-text
//! part) and CFF (`/FontFile3` of subtype `Type1C`, an encoding and a charset table).
//! Everything is read with bounds checks; a program that does not parse gives `None`.

use lopdf::{Dictionary, Document, Object};

/// Code → glyph name, from the font program the descriptor embeds.
pub fn builtin_encoding(doc: &Document, descriptor: &Dictionary) -> Option<Vec<(u8, String)>> {
    let stream = |key: &[u8]| {
        let o = descriptor.get(key).ok()?;
        let o = doc.dereference(o).map(|(_, o)| o).unwrap_or(o);
        match o {
            Object::Stream(s) => Some((
                s.dict
                    .get(b"Subtype")
                    .and_then(Object::as_name)
                    .ok()
                    .map(<[u8]>::to_vec),
                s.decompressed_content()
                    .unwrap_or_else(|_| s.content.clone()),
            )),
            _ => None,
        }
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

struct Cff<'a>(&'a [u8]);

impl<'a> Cff<'a> {
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
    let c = Cff(data);
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
            // A plausible header in front of the junk reaches the INDEX readers.
            let mut framed = vec![1, 0, 4, 2];
            framed.extend_from_slice(&data);
            let _ = cff(&framed);
        }
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
