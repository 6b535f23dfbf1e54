//! A tolerant tokenizer for PDF content streams.
//!
//! Real content streams are often slightly broken (a stray `)`, an unterminated array, binary
//! junk after the last operator). Instead of rejecting the whole page like a strict parser,
//! this lexer skips what it cannot read and keeps going, so one bad byte costs at most one
//! operator. Inline images (`BI … ID <binary> EI`) are skipped whole.

use std::borrow::Cow;

/// An operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand<'a> {
    /// A number (integers and reals alike).
    Number(f64),
    /// A name, without the slash: borrowed from the stream unless it had `#xx` escapes.
    Name(Cow<'a, [u8]>),
    /// A string's bytes (literal or hex, escapes resolved): borrowed from the stream when
    /// a literal string has no escapes, which is most of them.
    Str(Cow<'a, [u8]>),
    /// An array.
    Array(Vec<Operand<'a>>),
    /// A dictionary (kept only as a placeholder: text extraction never needs its contents).
    Dict,
    /// `true`, `false`, `null` and anything else that is not an operator we know.
    Other,
}

impl Operand<'_> {
    /// The number, if this is one.
    pub fn num(&self) -> Option<f64> {
        match self {
            Operand::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// Most operands kept before a content-stream operator (more is junk; the oldest are
/// dropped). CMaps need more: a `bfrange` block holds up to 100 entries of three operands.
const MAX_OPERANDS: usize = 64;
/// The limit for CMaps.
pub const MAX_CMAP_OPERANDS: usize = 1024;
/// Deepest array nesting followed.
const MAX_DEPTH: usize = 32;

/// Iterates over `(operator, operands)` of a content stream.
pub struct Lexer<'a> {
    data: &'a [u8],
    pos: usize,
    operands: Vec<Operand<'a>>,
    max_operands: usize,
}

fn is_white(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | b'\0')
}

fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

impl<'a> Lexer<'a> {
    /// A lexer over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            operands: Vec::new(),
            max_operands: MAX_OPERANDS,
        }
    }

    /// The same, keeping up to `n` operands per operator.
    pub fn with_max_operands(data: &'a [u8], n: usize) -> Self {
        Self {
            max_operands: n.max(1),
            ..Self::new(data)
        }
    }

    fn skip_white(&mut self) {
        while self.pos < self.data.len() {
            let b = self.data[self.pos];
            if is_white(b) {
                self.pos += 1;
            } else if b == b'%' {
                while self.pos < self.data.len() && !matches!(self.data[self.pos], b'\r' | b'\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn regular(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.pos < self.data.len() {
            let b = self.data[self.pos];
            if is_white(b) || is_delim(b) {
                break;
            }
            self.pos += 1;
        }
        &self.data[start..self.pos]
    }

    fn literal_string(&mut self) -> Cow<'a, [u8]> {
        // At '('. Without a backslash the string's bytes are the stream's, balanced
        // parentheses included: borrowed, no copy.
        self.pos += 1;
        let start = self.pos;
        let mut depth = 1;
        let mut i = start;
        while let Some(&b) = self.data.get(i) {
            match b {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos = i + 1;
                        return Cow::Borrowed(&self.data[start..i]);
                    }
                }
                b'\\' => return Cow::Owned(self.escaped_string()),
                _ => {}
            }
            i += 1;
        }
        // Unterminated: everything to the end.
        self.pos = self.data.len();
        Cow::Borrowed(&self.data[start..])
    }

    /// A literal string with escapes, from just after its `(`.
    fn escaped_string(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut depth = 1;
        while self.pos < self.data.len() {
            let b = self.data[self.pos];
            self.pos += 1;
            match b {
                b'(' => {
                    depth += 1;
                    out.push(b);
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    out.push(b);
                }
                b'\\' => {
                    let Some(&e) = self.data.get(self.pos) else {
                        break;
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'\r' => {
                            if self.data.get(self.pos) == Some(&b'\n') {
                                self.pos += 1;
                            }
                        }
                        b'\n' => {}
                        b'0'..=b'7' => {
                            let mut v = (e - b'0') as u32;
                            for _ in 0..2 {
                                match self.data.get(self.pos) {
                                    Some(&d @ b'0'..=b'7') => {
                                        v = v * 8 + (d - b'0') as u32;
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(v as u8);
                        }
                        other => out.push(other),
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }

    fn hex_string(&mut self) -> Cow<'a, [u8]> {
        // At '<' (not '<<').
        self.pos += 1;
        let mut out = Vec::new();
        let mut hi: Option<u8> = None;
        while self.pos < self.data.len() {
            let b = self.data[self.pos];
            self.pos += 1;
            let v = match b {
                b'>' => break,
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => continue,
            };
            match hi.take() {
                None => hi = Some(v),
                Some(h) => out.push(h << 4 | v),
            }
        }
        if let Some(h) = hi {
            out.push(h << 4);
        }
        Cow::Owned(out)
    }

    fn skip_dict(&mut self) {
        // At '<<': skip to the matching '>>', minding strings.
        let mut depth = 0usize;
        while self.pos < self.data.len() {
            match self.data[self.pos] {
                b'<' if self.data.get(self.pos + 1) == Some(&b'<') => {
                    depth += 1;
                    self.pos += 2;
                }
                b'>' if self.data.get(self.pos + 1) == Some(&b'>') => {
                    self.pos += 2;
                    depth -= 1;
                    if depth == 0 {
                        return;
                    }
                }
                b'(' => {
                    self.literal_string();
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Reads one object; `None` at an operator or the end (the position is left there).
    fn object(&mut self, depth: usize) -> Option<Operand<'a>> {
        self.skip_white();
        let b = *self.data.get(self.pos)?;
        Some(match b {
            b'(' => Operand::Str(self.literal_string()),
            b'<' if self.data.get(self.pos + 1) == Some(&b'<') => {
                self.skip_dict();
                Operand::Dict
            }
            b'<' => Operand::Str(self.hex_string()),
            b'/' => {
                self.pos += 1;
                Operand::Name(decode_name(self.regular()))
            }
            b'[' => {
                self.pos += 1;
                // TJ arrays of a dozen strings and kerning numbers are common.
                let mut items = Vec::with_capacity(16);
                loop {
                    self.skip_white();
                    match self.data.get(self.pos) {
                        None => break,
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        _ => {}
                    }
                    if depth >= MAX_DEPTH {
                        self.pos += 1;
                        continue;
                    }
                    match self.object(depth + 1) {
                        Some(o) => items.push(o),
                        None => {
                            // An operator inside an array (seen in the wild): skip its word.
                            let before = self.pos;
                            self.regular();
                            if self.pos == before {
                                self.pos += 1;
                            }
                        }
                    }
                }
                Operand::Array(items)
            }
            b']' | b')' | b'>' | b'{' | b'}' => {
                self.pos += 1;
                Operand::Other
            }
            b'+' | b'-' | b'.' | b'0'..=b'9' => {
                let word = self.regular();
                match parse_number(word) {
                    Some(n) => Operand::Number(n),
                    None => Operand::Other,
                }
            }
            _ => {
                let save = self.pos;
                let word = self.regular();
                match word {
                    b"true" | b"false" | b"null" => Operand::Other,
                    _ => {
                        self.pos = save;
                        return None;
                    }
                }
            }
        })
    }

    fn skip_inline_image(&mut self) {
        // After `BI`: skip the dictionary up to `ID`, then the data up to `EI` standing alone.
        while self.pos + 1 < self.data.len() {
            if &self.data[self.pos..self.pos + 2] == b"ID"
                && self.data.get(self.pos + 2).is_none_or(|&b| is_white(b))
            {
                self.pos += 3;
                break;
            }
            self.pos += 1;
        }
        while self.pos + 1 < self.data.len() {
            if &self.data[self.pos..self.pos + 2] == b"EI"
                && self.pos > 0
                && is_white(self.data[self.pos - 1])
                && self
                    .data
                    .get(self.pos + 2)
                    .is_none_or(|&b| is_white(b) || is_delim(b))
            {
                self.pos += 2;
                return;
            }
            self.pos += 1;
        }
        self.pos = self.data.len();
    }

    /// The next operator and its operands.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(&'a [u8], std::vec::Drain<'_, Operand<'a>>)> {
        loop {
            while let Some(o) = self.object(0) {
                if self.operands.len() >= self.max_operands {
                    self.operands.remove(0);
                }
                self.operands.push(o);
            }
            if self.pos >= self.data.len() {
                return None;
            }
            let op = self.regular();
            if op.is_empty() {
                self.pos += 1;
                continue;
            }
            if op == b"BI" {
                self.skip_inline_image();
                self.operands.clear();
                continue;
            }
            return Some((op, self.operands.drain(..)));
        }
    }
}

/// The usual number, `[+-]digits[.digits]` with at most 15 digits, without the general
/// parser: the digits as an integer divided by a power of ten is two exact operands and
/// one correctly rounded division, so the value equals what `str::parse` gives.
fn fast_number(w: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (neg, digits) = match w.first()? {
        b'-' => (true, &w[1..]),
        b'+' => (false, &w[1..]),
        _ => (false, w),
    };
    let (mut mantissa, mut count, mut frac, mut dot) = (0u64, 0usize, 0usize, false);
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                count += 1;
                if count > 15 {
                    return None; // before the mantissa could overflow
                }
                mantissa = mantissa * 10 + u64::from(b - b'0');
                frac += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    if count == 0 {
        return None;
    }
    let v = mantissa as f64 / POW10[frac];
    Some(if neg { -v } else { v })
}

fn parse_number(w: &[u8]) -> Option<f64> {
    if let Some(v) = fast_number(w) {
        return Some(v);
    }
    let s = std::str::from_utf8(w).ok()?;
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    // Forms like "--5" or "5-" seen in the wild: keep the leading sign and digits.
    let t: String = s
        .chars()
        .skip_while(|c| *c == '-' || *c == '+')
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v: f64 = t.parse().ok()?;
    Some(if s.starts_with('-') { -v } else { v })
}

/// Resolves `#xx` escapes in a name.
pub fn decode_name(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'#') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'#' && i + 2 < raw.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&raw[i + 1..i + 3]).unwrap_or("zz"), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        /// The fast path agrees with the general parser bit for bit.
        #[test]
        fn fast_numbers_equal_parsed_ones(int in 0u64..10_000_000, frac in 0u64..100_000_000, digits in 0usize..9, neg: bool) {
            let f = format!("{:0width$}", frac % 10u64.pow(digits as u32), width = digits);
            let text = format!("{}{int}{}{f}", if neg { "-" } else { "" }, if digits > 0 { "." } else { "" });
            let fast = super::fast_number(text.as_bytes());
            let general: f64 = text.parse().unwrap();
            if let Some(v) = fast {
                proptest::prop_assert_eq!(v.to_bits(), general.to_bits(), "{}", text);
            }
        }

        /// Numbers with more digits than the fast path takes (even more than a u64
        /// holds) go to the general parser instead of overflowing.
        #[test]
        fn long_numbers_leave_the_fast_path(digits in "[0-9]{16,40}") {
            proptest::prop_assert_eq!(super::fast_number(digits.as_bytes()), None);
        }
    }

    use super::*;

    fn ops(s: &[u8]) -> Vec<(String, Vec<Operand<'_>>)> {
        let mut l = Lexer::new(s);
        let mut v = Vec::new();
        while let Some((op, args)) = l.next() {
            v.push((String::from_utf8_lossy(op).into_owned(), args.collect()));
        }
        v
    }

    #[test]
    fn reads_text_operators() {
        let v = ops(b"BT /F1 12 Tf 72 700 Td [(Hel) -20 (lo\\051)] TJ (a\\(b) Tj <48 69> Tj ET");
        assert_eq!(v[1].0, "Tf");
        assert_eq!(
            v[1].1,
            [Operand::Name(b"F1".to_vec().into()), Operand::Number(12.0)]
        );
        assert_eq!(
            v[3].1,
            [Operand::Array(vec![
                Operand::Str(b"Hel".to_vec().into()),
                Operand::Number(-20.0),
                Operand::Str(b"lo)".to_vec().into())
            ])]
        );
        assert_eq!(v[4].1, [Operand::Str(b"a(b".to_vec().into())]);
        assert_eq!(v[5].1, [Operand::Str(b"Hi".to_vec().into())]);
    }

    #[test]
    fn survives_junk_and_inline_images() {
        let v = ops(
            b"q BI /W 2 /H 2 ID \x00\xffEI\x01 EI Q ) ] 1 0 0 1 5 5 cm (x) Tj <<\x01/A (b>>)>> BDC",
        );
        let names: Vec<&str> = v.iter().map(|(o, _)| o.as_str()).collect();
        assert_eq!(names, ["q", "Q", "cm", "Tj", "BDC"]);
    }

    #[test]
    fn unterminated_things_end() {
        assert!(ops(b"(abc").is_empty());
        assert!(ops(b"[ (a) 1").is_empty());
        assert_eq!(ops(b"<4142").len(), 0);
    }
}
