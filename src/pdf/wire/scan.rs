//! Checking the JSON an agent writes without building it: the whole grammar of RFC 8259,
//! with the places of the values the job keeps, so that a reply's pages go out as the
//! agent's own bytes.
//!
//! It is what every reply passes through on the supervisor's side, so it is written for
//! speed (several times serde_json's `IgnoredAny` on real replies; see `benches/reply.rs`):
//!
//! 1. one pass over the whole input for UTF-8 (`std`'s, which runs over ASCII a word at a
//!    time) and one for control bytes (SSE2, 16 bytes a step);
//! 2. then the grammar, with no control byte or multi-byte character left to look for:
//!    strings are skipped with `memchr` to their next quote or backslash, and nesting is
//!    a stack of bits, not recursion.
//!
//! It is stricter than JSON in one way: no byte below 0x20 anywhere, so the only
//! whitespace taken is the space. Agents write compact JSON, and a raw line break between
//! tokens would split the JSON Lines output (see [`super::one_line`]); a tab or a line
//! break inside a string is not JSON anyway.

use std::ops::Range;

/// Deepest nesting taken (serde_json's limit too).
pub const MAX_DEPTH: usize = 128;

/// Why input was refused, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// A raw line feed or carriage return, at this byte.
    LineBreak(usize),
    /// Not JSON (or not of the shape asked for): what was wrong, at this byte.
    Bad(&'static str, usize),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::LineBreak(at) => write!(f, "a raw line break at byte {at}"),
            ScanError::Bad(what, at) => write!(f, "{what} at byte {at}"),
        }
    }
}

type Result<T> = std::result::Result<T, ScanError>;

/// The first byte below 0x20 in `b`, and whether any byte is not ASCII (checked in the
/// same pass, so that ASCII input, the common case, needs no UTF-8 pass).
fn first_control(b: &[u8]) -> (Option<usize>, bool) {
    let mut i = 0;
    let mut high = 0u8;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
        };
        // SAFETY: SSE2 is part of x86_64; every load reads the 16 bytes at `b[i..i + 16]`,
        // in bounds by the loop's condition, unaligned loads allowed.
        unsafe {
            let top = _mm_set1_epi8(0x1f);
            let mut any = _mm_setzero_si128();
            while i + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
                any = _mm_or_si128(any, v);
                // min(v, 0x1f) == v exactly where v <= 0x1f (unsigned).
                let m = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, top), v));
                if m != 0 {
                    return (Some(i + m.trailing_zeros() as usize), true);
                }
                i += 16;
            }
            // The top bit of any byte seen.
            high |= u8::from(_mm_movemask_epi8(any) != 0) << 7;
        }
    }
    for (k, &c) in b[i..].iter().enumerate() {
        if c < 0x20 {
            return (Some(i + k), true);
        }
        high |= c;
    }
    (None, high & 0x80 != 0)
}

/// The checks of the whole input that come before its grammar: UTF-8, and no control
/// byte (a line break said as such), whichever fault comes first.
pub fn check_bytes(b: &[u8]) -> Result<()> {
    let (control, maybe_non_ascii) = first_control(b);
    if maybe_non_ascii {
        if let Err(e) = std::str::from_utf8(b) {
            let at = e.valid_up_to();
            if control.is_none_or(|c| at < c) {
                return Err(ScanError::Bad("invalid UTF-8", at));
            }
        }
    }
    match control {
        Some(at) if matches!(b[at], b'\n' | b'\r') => Err(ScanError::LineBreak(at)),
        Some(at) => Err(ScanError::Bad("a control character", at)),
        None => Ok(()),
    }
}

/// The first `"` or `\` in `b` from `i` on.
#[inline(always)]
fn quote_or_backslash(b: &[u8], mut i: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of x86_64; every load reads the 16 bytes at `b[i..i + 16]`,
        // in bounds by the loop's condition, unaligned loads allowed.
        unsafe {
            let (q, bs) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8));
            while i + 16 <= b.len() {
                let v = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
                let m =
                    _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)));
                if m != 0 {
                    return Some(i + m.trailing_zeros() as usize);
                }
                i += 16;
            }
        }
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|k| i + k)
}

/// Past any spaces (the only whitespace [`check_bytes`] leaves) from `i`.
#[inline(always)]
fn spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// Past the string whose contents start at `i` (after its opening quote).
#[inline(always)]
fn string_end(b: &[u8], mut i: usize) -> Result<usize> {
    loop {
        let Some(k) = quote_or_backslash(b, i) else {
            return Err(ScanError::Bad("an unterminated string", b.len()));
        };
        if b[k] == b'"' {
            return Ok(k + 1);
        }
        i = match b.get(k + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => k + 2,
            Some(b'u')
                if b.get(k + 2..k + 6)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                k + 6
            }
            _ => return Err(ScanError::Bad("a bad escape", k)),
        };
    }
}

/// Past the digits from `i`. (Eight bytes a step, SWAR, measured slower on replies:
/// their runs of digits are short.)
#[inline(always)]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// Past the number at `i`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
#[inline(always)]
fn number_end(b: &[u8], at: usize) -> Result<usize> {
    let bad = Err(ScanError::Bad("a bad number", at));
    let mut i = at + usize::from(b[at] == b'-');
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(b, i + 1),
        _ => return bad,
    };
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return bad;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let end = digits(b, i);
        if end == i {
            return bad;
        }
        i = end;
    }
    Ok(i)
}

/// Past `{"bbox":[N,N,N,N],` at `i`, if that is what is there.
#[inline(always)]
fn bbox_head(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i..i + 9)? != b"{\"bbox\":[" {
        return None;
    }
    let mut j = i + 9;
    for close in [b',', b',', b',', b']'] {
        if !matches!(b.get(j), Some(b'-' | b'0'..=b'9')) {
            return None;
        }
        j = number_end(b, j).ok()?;
        if b.get(j) != Some(&close) {
            return None;
        }
        j += 1;
    }
    (b.get(j) == Some(&b',')).then_some(j + 1)
}

/// Past a layout line `{"bbox":[N,N,N,N],"text":"…"}` or block
/// `{"bbox":[N,N,N,N],"lines":[I,…]}` at `i`, byte for byte as agents write them, if one
/// is there. They are most of a reply's tokens, and here each is a few comparisons
/// instead of a dozen turns of the grammar's loop. Every input taken is JSON by
/// construction (fixed bytes, and numbers and strings through the grammar's own
/// functions); `None` leaves the object to the grammar, from its first byte.
#[inline(always)]
fn layout_object(b: &[u8], i: usize) -> Option<usize> {
    let j = bbox_head(b, i)?;
    let end = if b.get(j..j + 8)? == b"\"text\":\"" {
        string_end(b, j + 8).ok()?
    } else if b.get(j..j + 9)? == b"\"lines\":[" {
        let mut k = j + 9;
        if b.get(k) == Some(&b']') {
            k += 1;
        } else {
            loop {
                if !b.get(k).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
                k = number_end(b, k).ok()?;
                match b.get(k) {
                    Some(b',') => k += 1,
                    Some(b']') => break k += 1,
                    _ => return None,
                }
            }
        }
        k
    } else {
        return None;
    };
    (b.get(end) == Some(&b'}')).then_some(end + 1)
}

/// Past the key at `i` and its colon, at its value.
#[inline(always)]
fn key_end(b: &[u8], i: usize) -> Result<usize> {
    if b.get(i) != Some(&b'"') {
        return Err(ScanError::Bad("expected a key", i));
    }
    let i = spaces(b, string_end(b, i + 1)?);
    if b.get(i) != Some(&b':') {
        return Err(ScanError::Bad("expected ':'", i));
    }
    Ok(spaces(b, i + 1))
}

/// A cursor over input that [`check_bytes`] passed.
pub struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    /// Checks `b` ([`check_bytes`]) and starts at its first byte.
    pub fn new(b: &'a [u8]) -> Result<Self> {
        check_bytes(b)?;
        Ok(Self { b, i: 0 })
    }

    /// Where the cursor is.
    pub fn at(&self) -> usize {
        self.i
    }

    fn bad<T>(&self, what: &'static str) -> Result<T> {
        Err(ScanError::Bad(what, self.i))
    }

    /// The next byte after any spaces, not taken.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.i = spaces(self.b, self.i);
        self.b.get(self.i).copied()
    }

    /// Takes `c` (after spaces), or fails with `what`.
    #[inline]
    fn expect(&mut self, c: u8, what: &'static str) -> Result<()> {
        if self.peek() != Some(c) {
            return self.bad(what);
        }
        self.i += 1;
        Ok(())
    }

    /// Checks that nothing but spaces is left.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.bad("trailing characters"),
        }
    }

    /// Any one value after the cursor (and spaces before it): checked whole, nesting and
    /// all, and its place returned.
    pub fn value(&mut self) -> Result<Range<usize>> {
        let b = self.b;
        let mut i = spaces(b, self.i);
        let start = i;
        // What each open level is: true for an object.
        let mut objects = [false; MAX_DEPTH];
        let mut depth = 0usize;
        let bad = |what, at| Err(ScanError::Bad(what, at));
        loop {
            // A value starts at `i`.
            let layout = match b.get(i) {
                Some(b'{') => layout_object(b, i),
                _ => None,
            };
            if let Some(end) = layout {
                i = end;
            } else {
                match b.get(i) {
                    Some(&open @ (b'{' | b'[')) => {
                        if depth == MAX_DEPTH {
                            return bad("nesting too deep", i);
                        }
                        let object = open == b'{';
                        objects[depth] = object;
                        depth += 1;
                        i = spaces(b, i + 1);
                        if b.get(i) == Some(&(open + 2)) {
                            // `{}` or `[]` (`}` and `]` are two past their openers).
                            i += 1;
                            depth -= 1;
                        } else {
                            if object {
                                i = key_end(b, i)?;
                            }
                            continue;
                        }
                    }
                    Some(b'"') => i = string_end(b, i + 1)?,
                    Some(b'-' | b'0'..=b'9') => i = number_end(b, i)?,
                    Some(&c @ (b't' | b'f' | b'n')) => {
                        let word: &[u8] = match c {
                            b't' => b"true",
                            b'f' => b"false",
                            _ => b"null",
                        };
                        if !b[i..].starts_with(word) {
                            return bad("an unexpected character", i);
                        }
                        i += word.len();
                    }
                    Some(_) => return bad("an unexpected character", i),
                    None => return bad("an unexpected end", i),
                }
            }
            // A value ended: close what it ends, or go on to the next in its container.
            loop {
                if depth == 0 {
                    self.i = i;
                    return Ok(start..i);
                }
                let object = objects[depth - 1];
                i = spaces(b, i);
                match b.get(i) {
                    Some(b',') => {
                        i = spaces(b, i + 1);
                        if object {
                            i = key_end(b, i)?;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        i += 1;
                        depth -= 1;
                    }
                    Some(b']') if !object => {
                        i += 1;
                        depth -= 1;
                    }
                    _ => return bad("expected ',' or the end of the container", i),
                }
            }
        }
    }

    /// Walks an object at the cursor: `field` is called with each key (as written, without
    /// quotes; see [`key_is`]) and must take its value.
    pub fn object(&mut self, mut field: impl FnMut(&mut Self, &[u8]) -> Result<()>) -> Result<()> {
        self.expect(b'{', "expected an object")?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let b = self.b;
        loop {
            let k = self.i + 1;
            self.i = key_end(b, self.i)?;
            let quote = b[..self.i].iter().rposition(|&c| c == b'"').unwrap_or(k);
            field(self, &b[k..quote])?;
            match self.peek() {
                Some(b',') => self.i = spaces(b, self.i + 1),
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.bad("expected ',' or '}'"),
            }
        }
    }

    /// Walks an array at the cursor: `item` is called with each element's index, the
    /// cursor at it, and must take it.
    pub fn array(&mut self, mut item: impl FnMut(&mut Self, usize) -> Result<()>) -> Result<()> {
        self.expect(b'[', "expected an array")?;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        for n in 0.. {
            item(self, n)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => return self.bad("expected ',' or ']'"),
            }
        }
        Ok(())
    }

    /// Whether the next value is an object (not taken).
    pub fn at_object(&mut self) -> bool {
        self.peek() == Some(b'{')
    }

    /// A whole number from 0 to `u32::MAX`.
    pub fn u32(&mut self) -> Result<u32> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return self.bad("expected a whole number");
        }
        let (start, end) = (self.i, number_end(self.b, self.i)?);
        let digits = &self.b[start..end];
        if !digits.iter().all(u8::is_ascii_digit) {
            return self.bad("expected a whole number");
        }
        // At most ten digits (leading zeros are not JSON), so no u64 overflow.
        let n = (digits.len() <= 10)
            .then(|| {
                digits
                    .iter()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
            })
            .and_then(|n| u32::try_from(n).ok());
        match n {
            Some(n) => {
                self.i = end;
                Ok(n)
            }
            None => self.bad("a number out of range"),
        }
    }

    /// A string's bytes as written (escapes and all), without its quotes.
    pub fn raw_string(&mut self) -> Result<&'a [u8]> {
        if self.peek() != Some(b'"') {
            return self.bad("expected a string");
        }
        let start = self.i + 1;
        self.i = string_end(self.b, start)?;
        Ok(&self.b[start..self.i - 1])
    }
}

/// Whether a key as written (see [`Scan::object`]) is `name`; a key with escapes is
/// unescaped first, as a JSON reader would.
pub fn key_is(raw: &[u8], name: &str) -> bool {
    if raw == name.as_bytes() {
        return true;
    }
    raw.contains(&b'\\') && unescape(raw).is_some_and(|s| s == name)
}

/// Sets a field read at byte `at`, refusing it the second time: two readers of one line
/// may not keep the same one of two.
pub fn once<T>(slot: &mut Option<T>, v: T, at: usize) -> Result<()> {
    match slot.replace(v) {
        None => Ok(()),
        Some(_) => Err(ScanError::Bad("a field given twice", at)),
    }
}

/// A string as written, without quotes, unescaped (`None` if it is not a string JSON
/// reads, a lone surrogate say).
pub fn unescape(raw: &[u8]) -> Option<String> {
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw).ok().map(str::to_owned);
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(s: &[u8]) -> bool {
        Scan::new(s)
            .and_then(|mut sc| sc.value().and_then(|_| sc.end()))
            .is_ok()
    }

    /// As the reply was read before this scanner: raw (serde_json then checks the
    /// grammar, and UTF-8 as it makes the raw value a `str`, but not surrogates).
    fn serde_valid(s: &[u8]) -> bool {
        serde_json::from_slice::<&serde_json::value::RawValue>(s).is_ok()
    }

    #[test]
    fn the_grammar_as_serde_json_reads_it() {
        for ok in [
            &br#"{"a":[1,-0.5e+3,2E7,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{}}"#[..],
            b"[]",
            b"0",
            b"-0",
            b"\"\"",
            b" { \"a\" : [ 1 , 2 ] } ",
            "\"é ☃ 😀\"".as_bytes(),
            br#""\ud800""#,
        ] {
            assert!(valid(ok), "{}", String::from_utf8_lossy(ok));
            assert!(serde_valid(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"{"[..],
            b"[1,]",
            b"[,1]",
            b"{\"a\"}",
            b"{\"a\":1,}",
            b"{1:2}",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"-",
            b"+1",
            b"tru",
            b"nul",
            b"\"abc",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"[1 2]",
            b"{\"a\":1]",
            b"[1}",
            b"1 2",
            b"",
            b"\xff",
            b"\"\xc3\"",
        ] {
            assert!(!valid(bad), "{}", String::from_utf8_lossy(bad));
            assert!(!serde_valid(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    /// Control bytes are refused everywhere, line breaks by name; serde_json takes them as
    /// whitespace between tokens.
    #[test]
    fn control_bytes_are_refused_and_line_breaks_named() {
        assert_eq!(
            Scan::new(b"[1,\n2]").err(),
            Some(ScanError::LineBreak(3)),
            "between tokens"
        );
        assert_eq!(Scan::new(b"[1,\r2]").err(), Some(ScanError::LineBreak(3)));
        assert!(serde_valid(b"[1,\n2]"));
        assert!(matches!(
            Scan::new(b"[\"a\tb\"]").err(),
            Some(ScanError::Bad("a control character", 3))
        ));
        // Past the 16-byte steps, and in the tail.
        let mut long = vec![b' '; 40];
        long[33] = 0;
        assert_eq!(first_control(&long).0, Some(33));
        long[33] = b' ';
        long[20] = 0x1f;
        assert_eq!(first_control(&long).0, Some(20));
        long[20] = 0x20;
        assert_eq!(first_control(&long), (None, false));
        assert_eq!(first_control(&[0x80, 0xff, 0x7f]), (None, true));
        long[3] = 0xc3;
        assert_eq!(first_control(&long), (None, true), "in the 16-byte steps");
        // The first fault is named, UTF-8 or control.
        assert_eq!(
            check_bytes(b"\xff\n").err(),
            Some(ScanError::Bad("invalid UTF-8", 0))
        );
        assert_eq!(check_bytes(b"\n\xff").err(), Some(ScanError::LineBreak(0)));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
        assert!(valid(&deep(MAX_DEPTH)));
        assert!(!valid(&deep(MAX_DEPTH + 1)));
        // Objects and arrays interleaved past one 64-bit word of the stack.
        let mixed: Vec<u8> = (0..100)
            .map(|i| if i % 2 == 0 { &b"{\"k\":"[..] } else { b"[" })
            .chain(
                (0..100)
                    .rev()
                    .map(|i| if i % 2 == 0 { &b"}"[..] } else { b"]" }),
            )
            .flatten()
            .copied()
            .collect();
        assert!(valid(&mixed));
        assert!(serde_valid(&mixed));
    }

    #[test]
    fn digit_runs_of_every_length_and_neighbour() {
        for len in 0..20 {
            for after in [b'.', b',', b'/', b':', b'e', 0x80, 0xff, b' '] {
                let mut s = vec![b'7'; len];
                s.push(after);
                s.extend_from_slice(b"12345678");
                assert_eq!(digits(&s, 0), len, "{len} then {after:#x}");
                assert_eq!(digits(&s[..len], 0), len, "{len} at the end");
            }
        }
    }

    /// The layout objects' fast path takes lines and blocks as the agents' serializer
    /// writes them (were it to miss them, replies would still be checked, only slower),
    /// and leaves anything else to the grammar.
    #[test]
    fn layout_objects_as_agents_write_them_take_the_fast_path() {
        use crate::pdf::layout::{Block, Line};
        let line = Line {
            bbox: [72.0, -716.8, 234.74, 1e-7],
            text: "a \"quoted\" é\\ line".into(),
        };
        let block = Block {
            bbox: [0.5, 1.0, 2.0, 3.0],
            lines: vec![0, 1, 12],
        };
        let empty = Block {
            bbox: [0.0; 4],
            lines: vec![],
        };
        for json in [
            serde_json::to_vec(&line).unwrap(),
            serde_json::to_vec(&block).unwrap(),
            serde_json::to_vec(&empty).unwrap(),
        ] {
            assert_eq!(
                layout_object(&json, 0),
                Some(json.len()),
                "{}",
                String::from_utf8_lossy(&json)
            );
        }
        for other in [
            &br#"{"bbox":[1,2,3],"text":"x"}"#[..],
            br#"{"bbox":[1,2,3,4,5],"text":"x"}"#,
            br#"{"bbox":[1,2,3,4],"text":"x","more":1}"#,
            br#"{"bbox":[1,2,3,4],"lines":[-1]}"#,
            br#"{"bbox":[1,2,3,4],"lines":[1,]}"#,
            br#"{"bbox":[01,2,3,4],"text":"x"}"#,
            br#"{"bbox": [1,2,3,4],"text":"x"}"#,
            br#"{"bbox":[1,2,3,4],"text":"x\"}"#,
        ] {
            assert_eq!(
                layout_object(other, 0),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn whole_numbers_and_keys() {
        let num = |s: &str| Scan::new(s.as_bytes()).and_then(|mut sc| sc.u32());
        assert_eq!(num("4294967295"), Ok(u32::MAX));
        assert_eq!(num("0"), Ok(0));
        for bad in ["4294967296", "99999999999", "-1", "1.0", "1e2", "\"1\""] {
            assert!(num(bad).is_err(), "{bad}");
        }
        assert!(key_is(b"pages", "pages"));
        assert!(key_is(br"p\u0061ges", "pages"));
        assert!(!key_is(b"page", "pages"));
        assert_eq!(unescape(br#"a\"b"#).as_deref(), Some("a\"b"));
        let mut keys = Vec::new();
        let mut sc = Scan::new(br#"{"a":1,"b":[2,{"c":3}],"d":"e"}"#).unwrap();
        sc.object(|sc, k| {
            keys.push(String::from_utf8(k.to_vec()).unwrap());
            sc.value().map(drop)
        })
        .unwrap();
        assert_eq!(keys, ["a", "b", "d"]);
    }

    /// Random edits of real-looking replies: the scanner takes exactly what serde_json
    /// takes, but for control bytes (refused here, see the module's doc).
    #[test]
    fn agrees_with_serde_json_on_edited_input() {
        let base = br#"{"page_count":3,"first":1,"pages":[{"number":1,"text":"a\nb \"q\" \u00e9 \u00e9","width":612.0,"lines":[{"bbox":[72.0,-7.5e-3,1E+2,0],"text":"x"},{"bbox":[7.25,0,-1.5,10],"text":"y\"z"}],"blocks":[{"bbox":[1,2,3,4],"lines":[0,1]},{"bbox":[0,0,0,0],"lines":[]}]},{"e":[true,false,null,{}]}],"page_errors":0}"#;
        let alphabet = b"{}[],:\"\\ 0123456789-+.eEtrufalsn\x01\xc3\xa9";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..200_000 {
            let mut s = base.to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % (s.len() + 1);
                let c = alphabet[(next() as usize) % alphabet.len()];
                match next() % 3 {
                    0 if at < s.len() => s[at] = c,
                    1 if at < s.len() => {
                        s.remove(at);
                    }
                    _ => s.insert(at, c),
                }
            }
            let ours = valid(&s);
            let theirs = serde_valid(&s) && !s.iter().any(|&c| c < 0x20);
            assert_eq!(ours, theirs, "{}", String::from_utf8_lossy(&s));
            if ours {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(
            accepted > 10_000 && refused > 10_000,
            "{accepted} {refused}"
        );
    }
}
