//! Property tests for the decoders of what one agent writes for another: the specialists'
//! binary frames (a Parser's `Parsed`, an Extractor's `Extracted`), the JSON replies the
//! supervisor and the Aggregator check, and the stages that read them.
//!
//! Their input is untrusted, so on random bytes and on mutated valid frames they must
//! never panic, allocate no more than a small multiple of their input (a count that lies
//! allocates nothing), and refuse what is malformed (a cut-short frame, bytes after one);
//! valid frames round-trip.

use neuralflow_swarm::pdf::frames::{
    Extracted, ExtractedWriter, Parsed, ParsedWriter, PARSED_HEAD,
};
use neuralflow_swarm::pdf::interp::Glyph;
use neuralflow_swarm::pdf::stages::{aggregate, analyze_frame};
use neuralflow_swarm::pdf::wire::CheckedReply;
use neuralflow_swarm::pdf::{ErrorKind, PageGlyphs, PdfError};
use proptest::collection::vec;
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the bytes live on each thread and their peak, so that
/// a test can say what one call allocated at most.
struct Counting;

thread_local! {
    // Const-initialized and without destructors: the allocator can touch them at any
    // time without allocating itself.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments, so `System`'s
// guarantees hold; the bookkeeping beside it neither allocates nor touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (so by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`; the caller upholds the
        // rest of `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `f`'s result, and the most bytes it had allocated at once on this thread (the result
/// included).
fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (r, (peak - base).max(0) as usize)
}

/// What a decoder may allocate for `input`: a small multiple of it, and a constant for
/// error messages and the like.
fn bounded(input: &[u8], factor: usize) -> usize {
    factor * input.len() + 64 * 1024
}

fn error() -> impl Strategy<Value = PdfError> {
    let kind = prop_oneof![
        Just(ErrorKind::Malformed),
        Just(ErrorKind::Encrypted),
        Just(ErrorKind::Unsupported),
        Just(ErrorKind::Timeout),
        Just(ErrorKind::AgentCrashed),
        Just(ErrorKind::TooLarge),
        Just(ErrorKind::Io),
    ];
    (kind, vec(any::<char>(), 0..12))
        .prop_map(|(kind, m)| PdfError::new(kind, m.into_iter().collect::<String>()))
}

/// A valid Parsed frame: its fields, and its bytes as the Parser writes them.
#[derive(Debug, Clone)]
struct ParsedCase {
    page_count: u32,
    first: u32,
    pages: Vec<(u32, Result<Vec<u8>, PdfError>)>,
    failure: Option<PdfError>,
}

impl ParsedCase {
    fn encode(&self) -> Vec<u8> {
        if let Some(e) = &self.failure {
            return Parsed::failed(self.first, e);
        }
        let mut w = ParsedWriter::new(self.page_count, self.first);
        for (n, pdf) in &self.pages {
            w.page(*n, pdf.as_deref());
        }
        w.finish()
    }
}

fn parsed_case() -> impl Strategy<Value = ParsedCase> {
    let page = (
        any::<u32>(),
        prop_oneof![vec(any::<u8>(), 0..64).prop_map(Ok), error().prop_map(Err)],
    );
    (
        any::<u32>(),
        any::<u32>(),
        vec(page, 0..6),
        proptest::option::weighted(0.2, error()),
    )
        .prop_map(|(page_count, first, pages, failure)| ParsedCase {
            page_count,
            first,
            pages: if failure.is_some() { Vec::new() } else { pages },
            failure,
        })
}

fn glyph() -> impl Strategy<Value = Glyph> {
    let n = || -1.0e6..1.0e6f64;
    (n(), n(), n(), n(), n(), n(), vec(any::<char>(), 0..30)).prop_map(
        |(x, y, adv, size, dx, dy, text)| Glyph {
            text: text.into_iter().collect::<String>().into(),
            x,
            y,
            adv,
            size,
            dir: (dx, dy),
        },
    )
}

fn page_glyphs() -> impl Strategy<Value = PageGlyphs> {
    (
        any::<u32>(),
        0.0..2000.0f64,
        0.0..2000.0f64,
        vec(glyph(), 0..12),
        proptest::option::weighted(0.2, error()),
    )
        .prop_map(|(number, width, height, glyphs, error)| PageGlyphs {
            number,
            width,
            height,
            glyphs,
            error,
        })
}

/// A valid Extracted frame: its fields, and its bytes as the Extractor writes them.
fn extracted_case() -> impl Strategy<Value = (Extracted, Vec<u8>)> {
    (
        any::<u32>(),
        any::<u32>(),
        vec(page_glyphs(), 0..4),
        proptest::option::weighted(0.2, error()),
    )
        .prop_map(|(page_count, first, pages, error)| {
            let mut w = ExtractedWriter::new(page_count, first, error.as_ref());
            for p in &pages {
                w.page(p);
            }
            let ex = Extracted {
                page_count,
                first,
                pages,
                error,
            };
            (ex, w.finish())
        })
}

/// A change an agent (or a fault) could make to a frame.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit.
    Flip(usize, u8),
    /// Overwrite four bytes with a count or a length (often a lie).
    SetU32(usize, u32),
    /// Cut the frame short, to this share of its length (in 1/256ths).
    Truncate(u8),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Add bytes after the frame.
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![any::<u32>(), Just(u32::MAX), Just(1 << 30), 0..64u32]
        )
            .prop_map(|(i, v)| Mutation::SetU32(i, v)),
        any::<u8>().prop_map(Mutation::Truncate),
        (any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
    ]
}

impl Mutation {
    /// Applies the change; says whether the result is surely malformed (cut short, or
    /// with bytes after the frame).
    fn apply(&self, b: &mut Vec<u8>) -> bool {
        match self {
            Mutation::Flip(i, bit) => {
                if !b.is_empty() {
                    let i = i % b.len();
                    b[i] ^= 1 << bit;
                }
                false
            }
            Mutation::SetU32(i, v) => {
                if b.len() >= 4 {
                    let i = i % (b.len() - 3);
                    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
                false
            }
            Mutation::Truncate(share) => {
                let keep = b.len() * *share as usize / 256;
                let cut = keep < b.len();
                b.truncate(keep);
                cut
            }
            Mutation::Insert(i, bytes) => {
                let i = i % (b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
                false
            }
            Mutation::Append(bytes) => {
                b.extend_from_slice(bytes);
                true
            }
        }
    }
}

/// A reply as an agent writes it, its pages raw JSON objects.
fn reply_json() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u32>(),
        any::<u32>(),
        vec(vec(any::<char>(), 0..10), 0..5),
    )
        .prop_map(|(page_count, first, texts)| {
            let pages: Vec<String> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let text: String = t.iter().collect();
                    serde_json::json!({"number": i + 1, "text": text}).to_string()
                })
                .collect();
            format!(
                r#"{{"page_count":{page_count},"first":{first},"pages":[{}],"page_errors":0}}"#,
                pages.join(",")
            )
            .into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes: every decoder returns, and allocates in proportion to its input.
    #[test]
    fn random_bytes_never_panic_nor_allocate_unboundedly(
        mut bytes in vec(any::<u8>(), 0..512),
        magic in prop_oneof![Just(*b"NFP1"), Just(*b"NFG1"), any::<[u8; 4]>()],
    ) {
        // Half the time, behind a valid magic, so the decoders get past the first check.
        if bytes.len() >= 4 && bytes[0] & 1 == 0 {
            bytes[..4].copy_from_slice(&magic);
        }
        let (_, peak) = peak_of(|| Parsed::head(&bytes));
        prop_assert!(peak <= bounded(&bytes, 16), "head: {peak}");
        let (_, peak) = peak_of(|| Parsed::decode(&bytes));
        prop_assert!(peak <= bounded(&bytes, 16), "parsed: {peak}");
        let (_, peak) = peak_of(|| Extracted::decode(&bytes));
        prop_assert!(peak <= bounded(&bytes, 16), "extracted: {peak}");
        let (_, peak) = peak_of(|| CheckedReply::parse(bytes.clone()));
        prop_assert!(peak <= bounded(&bytes, 48), "reply: {peak}");
        let _ = analyze_frame(&bytes, &|| {});
        let _ = aggregate(&[b"a.pdf", &bytes]);
    }

    /// A Parser's frame reads back as written, head and all.
    #[test]
    fn parsed_frames_round_trip(case in parsed_case()) {
        let bytes = case.encode();
        let (n, ok) = (case.pages.len() as u32, case.failure.is_none());
        let head = Parsed::head(&bytes).unwrap();
        let page_count = if ok { case.page_count } else { 0 };
        prop_assert_eq!(head, (page_count, case.first, n));
        prop_assert!(bytes.len() >= PARSED_HEAD);
        let got = Parsed::decode(&bytes).unwrap();
        let want = Parsed {
            page_count,
            first: case.first,
            pages: case
                .pages
                .iter()
                .map(|(n, p)| (*n, p.as_deref().map_err(Clone::clone)))
                .collect(),
            error: case.failure.clone(),
        };
        prop_assert_eq!(got, want);
    }

    /// An Extractor's frame reads back as written.
    #[test]
    fn extracted_frames_round_trip((want, bytes) in extracted_case()) {
        let got = Extracted::decode(&bytes).unwrap();
        prop_assert_eq!(
            (got.page_count, got.first, &got.error, &got.pages),
            (want.page_count, want.first, &want.error, &want.pages)
        );
    }

    /// A Parser's frame, changed: no panic, bounded allocation, and an error when it was
    /// cut short or has bytes after it.
    #[test]
    fn mutated_parsed_frames_are_refused_or_read_safely(
        case in parsed_case(),
        changes in vec(mutation(), 1..4),
    ) {
        let mut bytes = case.encode();
        let mut malformed = false;
        for m in &changes {
            // A later change can mend an earlier one only by chance; judge the last.
            malformed = m.apply(&mut bytes);
        }
        let (got, peak) = peak_of(|| Parsed::decode(&bytes).map(|p| p.pages.len()));
        prop_assert!(peak <= bounded(&bytes, 16), "{peak} bytes for {}", bytes.len());
        if malformed && changes.len() == 1 {
            prop_assert!(got.is_err(), "{:?} read as a frame", changes);
        }
        let _ = Parsed::head(&bytes);
    }

    /// An Extractor's frame, changed: no panic (the Analyzer's layout included), bounded
    /// allocation, and an error when it was cut short or has bytes after it.
    #[test]
    fn mutated_extracted_frames_are_refused_or_read_safely(
        (_, valid) in extracted_case(),
        changes in vec(mutation(), 1..4),
    ) {
        let mut bytes = valid;
        let mut malformed = false;
        for m in &changes {
            malformed = m.apply(&mut bytes);
        }
        let (got, peak) = peak_of(|| Extracted::decode(&bytes).map(|e| e.pages.len()));
        prop_assert!(peak <= bounded(&bytes, 16), "{peak} bytes for {}", bytes.len());
        if malformed && changes.len() == 1 {
            prop_assert!(got.is_err(), "{:?} read as a frame", changes);
        }
        let analyzed = analyze_frame(&bytes, &|| {});
        prop_assert_eq!(analyzed.is_ok(), got.is_ok());
    }

    /// An agent's JSON reply, changed: the supervisor's check and the Aggregator refuse
    /// it or read it, never panic, and a valid one goes through both.
    #[test]
    fn mutated_replies_are_refused_or_read_safely(
        valid in reply_json(),
        changes in vec(mutation(), 0..3),
    ) {
        prop_assert!(CheckedReply::parse(valid.clone()).is_ok());
        prop_assert!(aggregate(&[b"a.pdf", &valid]).is_ok());
        let mut bytes = valid;
        for m in &changes {
            m.apply(&mut bytes);
        }
        let (_, peak) = peak_of(|| CheckedReply::parse(bytes.clone()));
        prop_assert!(peak <= bounded(&bytes, 48), "{peak} bytes for {}", bytes.len());
        if let Ok(line) = aggregate(&[b"a.pdf", &bytes]) {
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            prop_assert_eq!(&v["path"], "a.pdf");
        }
    }
}

/// Counts that claim more than the bytes can hold are refused before anything is
/// allocated for them.
#[test]
fn lying_counts_are_refused_without_allocating_for_them() {
    for magic in [*b"NFP1", *b"NFG1"] {
        let mut b = Vec::new();
        b.extend_from_slice(&magic);
        b.extend_from_slice(&7u32.to_le_bytes()); // page count
        b.extend_from_slice(&1u32.to_le_bytes()); // first
        b.extend_from_slice(&u32::MAX.to_le_bytes()); // pages in the frame
        b.extend_from_slice(&0u32.to_le_bytes()); // no error
        let (r, peak) = peak_of(|| {
            if magic == *b"NFP1" {
                Parsed::decode(&b).map(|_| ())
            } else {
                Extracted::decode(&b).map(|_| ())
            }
        });
        assert!(r.is_err());
        assert!(peak < 4096, "{peak} bytes allocated");
    }
    // A page that claims 2^32 - 1 glyphs.
    let page = PageGlyphs {
        number: 1,
        width: 1.0,
        height: 1.0,
        glyphs: Vec::new(),
        error: None,
    };
    let mut w = ExtractedWriter::new(1, 1, None);
    w.page(&page);
    let mut b = w.finish();
    let at = b.len() - 4;
    b[at..].copy_from_slice(&u32::MAX.to_le_bytes());
    let (r, peak) = peak_of(|| Extracted::decode(&b).map(|_| ()));
    assert!(r.is_err());
    assert!(peak < 4096, "{peak} bytes allocated");
}
