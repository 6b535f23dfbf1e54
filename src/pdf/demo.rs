//! A generated corpus for `swarm demo`: real PDF files, written with `lopdf`, that exercise
//! what real documents do (standard fonts with their metrics, justified text with word
//! spacing, LaTeX-style TJ arrays with kerning and positioned word gaps, two-column
//! pages, headings in other fonts, footers), together with the words each page holds, so
//! a run can be checked against the truth and not only timed.

use super::font::standard_widths;
use lopdf::{dictionary, Document, Object, Stream};
use std::path::{Path, PathBuf};

/// One generated document and what its pages say.
#[derive(Debug, Clone)]
pub struct DemoDoc {
    /// Where it was written.
    pub path: PathBuf,
    /// Each page's words, in reading order.
    pub pages: Vec<Vec<String>>,
}

/// How many documents and pages to generate.
#[derive(Debug, Clone, Copy)]
pub struct DemoSpec {
    /// Documents.
    pub documents: u32,
    /// Pages of the shortest document.
    pub min_pages: u32,
    /// Pages of the longest document.
    pub max_pages: u32,
    /// Seed of the text.
    pub seed: u64,
}

impl Default for DemoSpec {
    fn default() -> Self {
        // 24 documents of 8 to 24 pages: about 380 pages.
        Self {
            documents: 24,
            min_pages: 8,
            max_pages: 24,
            seed: 0x5eed,
        }
    }
}

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "agent", "buffer", "ring", "segment", "supervisor", "page", "document", "layout",
    "glyph", "kerning", "column", "stream", "heartbeat", "ledger", "parallel", "memory",
    "process", "throughput", "latency", "fidelity", "extraction", "quarantine", "signal",
    "the", "of", "and", "to", "in", "is", "that", "for", "with", "as", "on", "by", "at",
    "from", "which", "this", "are", "be", "was", "an", "or", "not", "it", "its", "each",
    "every", "while", "when", "between", "through", "across", "under", "after", "before",
    "shared", "mapped", "fixed", "lock-free", "zero-copy", "reader", "writer", "producer",
    "consumer", "order", "release", "acquire", "atomic", "word", "count", "table", "index",
    "value", "offset", "handle", "owner", "chain", "slot", "epoch", "attempt", "task",
    "result", "error", "timeout", "budget", "limit", "cgroup", "controller", "kernel",
    "host", "core", "thread", "queue", "batch", "window", "range", "chunk", "merge", "sort",
    "split", "scatter", "gather", "consensus", "leader", "election", "vote", "quorum",
    "replica", "journal", "checkpoint", "recovery", "failure", "crash", "retry", "backoff",
    "jitter", "metric", "histogram", "percentile", "median", "sample", "trace", "span",
    "event", "field", "record", "format", "schema", "version", "header", "footer", "margin",
    "baseline", "matrix", "transform", "scale", "rotation", "origin", "width", "height",
    "advance", "spacing", "encoding", "unicode", "character", "ligature", "accent",
    "symbol", "numeral", "fraction", "paragraph", "section", "chapter", "figure", "caption",
    "reference", "citation", "appendix", "summary", "abstract", "quickly", "slowly",
    "carefully", "exactly", "rarely", "always", "never", "often", "measured", "verified",
    "tested", "proven", "observed", "reported", "expected", "large", "small", "fast",
    "slow", "hostile", "broken", "valid", "honest", "stable", "Newton", "Lovelace",
    "Turing", "Hopper", "Dijkstra", "Lamport", "Knuth", "Ritchie", "1024", "4096", "65536",
    "2.5", "99.9", "0.95", "1.8", "2026",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len() as u64) as usize]
    }
}

/// How a document writes its word gaps.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// `(words with spaces) Tj`, justified with `Tw`.
    Justified,
    /// `[(wo) 15 (rd) -333 (next)] TJ`, as TeX writes: no space characters at all.
    TexKerned,
}

struct Face {
    resource: &'static str,
    base: &'static str,
}

const BODY: [Face; 3] = [
    Face {
        resource: "F1",
        base: "Times-Roman",
    },
    Face {
        resource: "F1",
        base: "Helvetica",
    },
    Face {
        resource: "F1",
        base: "Courier",
    },
];
const HEADING: Face = Face {
    resource: "F2",
    base: "Helvetica-Bold",
};

fn width_of(word: &str, base: &str, size: f64) -> f64 {
    let w = standard_widths(base).expect("a standard font");
    word.bytes()
        .map(|b| f64::from(w[(b.clamp(32, 126) - 32) as usize]))
        .sum::<f64>()
        * size
        / 1000.0
}

/// A PDF string literal (the demo's words are ASCII without parentheses).
fn lit(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('(');
    for c in s.chars() {
        if matches!(c, '(' | ')' | '\\') {
            o.push('\\');
        }
        o.push(c);
    }
    o.push(')');
    o
}

struct PageWriter<'a> {
    ops: String,
    words: Vec<String>,
    body: &'a Face,
    style: Style,
    size: f64,
    rng: &'a mut Rng,
}

impl PageWriter<'_> {
    /// Fills one column (left edge `x`, from `top` down to `bottom`) with paragraphs.
    fn column(&mut self, x: f64, top: f64, bottom: f64, width: f64) {
        let lead = self.size * 1.25;
        let mut y = top;
        while y - lead > bottom {
            // A paragraph of 25 to 90 words, broken into lines that fit.
            let n = 25 + self.rng.below(65) as usize;
            let para: Vec<&str> = (0..n).map(|_| self.rng.word()).collect();
            let space = width_of(" ", self.body.base, self.size);
            let mut i = 0;
            while i < para.len() && y - lead > bottom {
                let mut j = i;
                let mut w = 0.0;
                while j < para.len() {
                    let add = width_of(para[j], self.body.base, self.size)
                        + if j > i { space } else { 0.0 };
                    if w + add > width && j > i {
                        break;
                    }
                    w += add;
                    j += 1;
                }
                let last = j == para.len();
                self.line(x, y, &para[i..j], width - w, last);
                y -= lead;
                i = j;
            }
            y -= lead * 0.6;
        }
    }

    fn line(&mut self, x: f64, y: f64, words: &[&str], slack: f64, last: bool) {
        use std::fmt::Write;
        let f = self.body.resource;
        let s = self.size;
        let _ = write!(self.ops, "BT /{f} {s} Tf 1 0 0 1 {x:.2} {y:.2} Tm ");
        match self.style {
            Style::Justified => {
                let gaps = words.len().saturating_sub(1).max(1) as f64;
                let tw = if last { 0.0 } else { slack / gaps };
                let _ = writeln!(self.ops, "{tw:.3} Tw {} Tj ET", lit(&words.join(" ")));
            }
            Style::TexKerned => {
                self.ops.push('[');
                for (k, w) in words.iter().enumerate() {
                    if k > 0 {
                        // A word gap: a third of an em, give or take.
                        let gap = 300 + self.rng.below(80);
                        let _ = write!(self.ops, " -{gap} ");
                    }
                    // Kern inside longer words, as TeX does between some letter pairs.
                    if w.len() > 5 {
                        let cut = 2 + self.rng.below(w.len() as u64 - 4) as usize;
                        let kern = self.rng.below(60) as i64 - 30;
                        let _ = write!(self.ops, "{} {kern} {}", lit(&w[..cut]), lit(&w[cut..]));
                    } else {
                        self.ops.push_str(&lit(w));
                    }
                }
                self.ops.push_str("] TJ ET\n");
            }
        }
        self.words.extend(words.iter().map(|w| w.to_string()));
    }

    fn heading(&mut self, x: f64, y: f64, text: &str) {
        use std::fmt::Write;
        let _ = writeln!(
            self.ops,
            "BT /{} 16 Tf {x:.2} {y:.2} Td {} Tj ET",
            HEADING.resource,
            lit(text)
        );
        self.words
            .extend(text.split_whitespace().map(str::to_string));
    }
}

/// Writes the corpus under `dir` and returns what each page says.
pub fn write_corpus(dir: &Path, spec: DemoSpec) -> std::io::Result<Vec<DemoDoc>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng(spec.seed | 1);
    let mut out = Vec::new();
    for d in 0..spec.documents {
        let body = &BODY[d as usize % BODY.len()];
        let style = if d % 2 == 0 {
            Style::TexKerned
        } else {
            Style::Justified
        };
        let columns = if d % 4 < 2 { 2 } else { 1 };
        let spread = spec.max_pages.saturating_sub(spec.min_pages);
        let pages = spec.min_pages + rng.below(u64::from(spread) + 1) as u32;
        let (bytes, texts) = document(d, pages, body, style, columns, &mut rng);
        let path = dir.join(format!("demo-{d:03}.pdf"));
        std::fs::write(&path, bytes)?;
        out.push(DemoDoc { path, pages: texts });
    }
    Ok(out)
}

fn document(
    d: u32,
    pages: u32,
    body: &Face,
    style: Style,
    columns: u32,
    rng: &mut Rng,
) -> (Vec<u8>, Vec<Vec<String>>) {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = |base: &str| {
        dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => Object::Name(base.as_bytes().to_vec()),
            "Encoding" => "WinAnsiEncoding",
        }
    };
    let f1 = doc.add_object(font(body.base));
    let f2 = doc.add_object(font(HEADING.base));
    let resources = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => f1, "F2" => f2 },
    });
    let (w, h) = (612.0, 792.0);
    let (margin, gutter) = (72.0, 24.0);
    let col_w = (w - 2.0 * margin - gutter * f64::from(columns - 1)) / f64::from(columns);
    let size = if columns == 2 { 9.5 } else { 10.5 };
    let mut kids = Vec::new();
    let mut texts = Vec::new();
    for p in 1..=pages {
        let mut pw = PageWriter {
            ops: String::new(),
            words: Vec::new(),
            body,
            style,
            size,
            rng,
        };
        let mut top = h - margin;
        if p == 1 || pw.rng.below(3) == 0 {
            let title = if p == 1 {
                format!("Report {d} on {} {}", pw.rng.word(), pw.rng.word())
            } else {
                format!("Section {p} {}", pw.rng.word())
            };
            pw.heading(margin, top, &title);
            top -= 30.0;
        }
        for c in 0..columns {
            let x = margin + f64::from(c) * (col_w + gutter);
            pw.column(x, top, margin + 20.0, col_w);
        }
        pw.heading(w / 2.0 - 20.0, margin - 20.0, &format!("{p} / {pages}"));
        let mut stream = Stream::new(dictionary! {}, pw.ops.into_bytes());
        let _ = stream.compress();
        let content = doc.add_object(stream);
        kids.push(Object::Reference(doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "Contents" => content,
        })));
        texts.push(pw.words);
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => pages as i64,
            "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), w.into(), h.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes)
        .expect("writing a PDF into memory does not fail");
    (bytes, texts)
}

/// Word-level agreement between what a page says and what was extracted: the share of
/// pages whose words came out exactly, and the word F1 over all pages (multiset overlap).
pub fn score(truth: &[Vec<String>], got: &[Vec<String>]) -> (f64, f64) {
    use std::collections::HashMap;
    let (mut exact, mut tp, mut nt, mut ng) = (0usize, 0usize, 0usize, 0usize);
    for (i, t) in truth.iter().enumerate() {
        let g = got.get(i).map(Vec::as_slice).unwrap_or(&[]);
        exact += usize::from(t.as_slice() == g);
        let mut bag: HashMap<&str, i64> = HashMap::new();
        for w in t {
            *bag.entry(w).or_default() += 1;
        }
        for w in g {
            if let Some(c) = bag.get_mut(w.as_str()) {
                if *c > 0 {
                    *c -= 1;
                    tp += 1;
                }
            }
        }
        nt += t.len();
        ng += g.len();
    }
    let pages = truth.len().max(1) as f64;
    let f1 = if nt + ng == 0 {
        1.0
    } else {
        2.0 * tp as f64 / (nt + ng) as f64
    };
    (exact as f64 / pages, f1)
}

/// What `swarm demo` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoReport {
    /// The run's summary.
    pub run: super::job::RunSummary,
    /// Share of pages whose words came out exactly as generated.
    pub pages_exact: f64,
    /// Word F1 against the generated text, over all pages.
    pub word_f1: f64,
    /// Where the corpus and the output are.
    pub dir: PathBuf,
}

/// `swarm demo`: writes the corpus under `dir`, runs it through the swarm with `cfg` (its
/// `files` are replaced by the corpus), writes the JSON Lines to `dir/output.jsonl`, and
/// checks every page against the text it was generated from.
pub fn run(
    dir: &Path,
    spec: DemoSpec,
    mut cfg: super::job::RunConfig,
) -> Result<DemoReport, super::job::RunError> {
    let docs = write_corpus(&dir.join("corpus"), spec)?;
    cfg.files = docs.iter().map(|d| d.path.clone()).collect();
    let out_path = dir.join("output.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&out_path)?);
    let summary = super::job::run(&cfg, &mut out, &mut |_, _| {})?;
    drop(out);
    #[derive(serde::Deserialize)]
    struct Line {
        path: String,
        pages: Vec<PageText>,
    }
    #[derive(serde::Deserialize)]
    struct PageText {
        text: String,
    }
    let mut got: std::collections::HashMap<String, Vec<Vec<String>>> = Default::default();
    for line in std::fs::read_to_string(&out_path)?.lines() {
        let l: Line = serde_json::from_str(line).map_err(std::io::Error::other)?;
        let words = l
            .pages
            .iter()
            .map(|p| p.text.split_whitespace().map(str::to_string).collect())
            .collect();
        got.insert(l.path, words);
    }
    let truth: Vec<Vec<String>> = docs.iter().flat_map(|d| d.pages.clone()).collect();
    let extracted: Vec<Vec<String>> = docs
        .iter()
        .flat_map(|d| {
            let mut g = got
                .remove(&d.path.display().to_string())
                .unwrap_or_default();
            g.resize(d.pages.len(), Vec::new());
            g
        })
        .collect();
    let (pages_exact, word_f1) = score(&truth, &extracted);
    Ok(DemoReport {
        run: summary,
        pages_exact,
        word_f1,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pages_extract_to_their_words() {
        let dir = std::env::temp_dir().join(format!("swarm-demo-test-{}", std::process::id()));
        let docs = write_corpus(
            &dir,
            DemoSpec {
                documents: 4,
                min_pages: 2,
                max_pages: 6,
                seed: 7,
            },
        )
        .unwrap();
        for d in &docs {
            let r = super::super::extract_file(&d.path);
            assert_eq!(r.status, super::super::Status::Ok, "{}", d.path.display());
            assert_eq!(r.page_count as usize, d.pages.len());
            let got: Vec<Vec<String>> = r
                .pages
                .iter()
                .map(|p| p.text.split_whitespace().map(str::to_string).collect())
                .collect();
            let (exact, f1) = score(&d.pages, &got);
            assert_eq!(exact, 1.0, "{}: word F1 {f1}", d.path.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn score_counts_missing_and_extra_words() {
        let t = vec![vec!["a".to_string(), "b".to_string()]];
        assert_eq!(score(&t, &t), (1.0, 1.0));
        let g = vec![vec!["a".to_string(), "c".to_string()]];
        assert_eq!(score(&t, &g), (0.0, 0.5));
    }
}
