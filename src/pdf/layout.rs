//! From positioned glyphs to words, lines and blocks.
//!
//! Glyphs are taken in content order (which producers almost always write in reading
//! order). A glyph joins the current line when it sits on the same baseline (measured
//! across the baseline's direction, so rotated text works) and does not jump far back;
//! a space goes in where the gap along the baseline exceeds a fraction of the font size or
//! where the PDF drew a space character. Lines group into blocks by vertical distance.

use super::interp::Glyph;
use serde::Serialize;

/// Gap along the baseline, in font sizes, above which two glyphs are separate words.
const WORD_GAP: f64 = 0.15;
/// Distance across the baseline, in font sizes, above which a glyph starts a new line.
const LINE_SHIFT: f64 = 0.5;
/// Baseline distance, in font sizes, above which a line starts a new block.
const BLOCK_GAP: f64 = 1.8;

/// A line of text with its bounding box `[x0, y0, x1, y1]` (PDF user space, origin
/// bottom-left).
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Bounding box.
    pub bbox: [f64; 4],
    /// The text, words separated by single spaces.
    pub text: String,
}

/// A block of consecutive lines.
#[derive(Debug, Clone, Serialize)]
pub struct Block {
    /// Bounding box.
    pub bbox: [f64; 4],
    /// Indices into the page's lines, in reading order.
    pub lines: Vec<usize>,
}

/// The text of a page and its layout.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Lines joined with newlines, blocks separated by an empty line.
    pub text: String,
    /// Lines in reading order.
    pub lines: Vec<Line>,
    /// Blocks in reading order.
    pub blocks: Vec<Block>,
}

fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            '\u{00A0}' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

struct Open<'g> {
    text: String,
    bbox: [f64; 4],
    /// End of the last glyph along the baseline.
    end: (f64, f64),
    dir: (f64, f64),
    size: f64,
    origin: (f64, f64),
    pending_space: bool,
    /// The previous glyph of the line (to drop overprinted duplicates).
    last: Option<&'g Glyph>,
}

fn extend(b: &mut [f64; 4], g: &Glyph) {
    let (ex, ey) = (g.x + g.dir.0 * g.adv, g.y + g.dir.1 * g.adv);
    // Up from the baseline, perpendicular to it.
    let (ux, uy) = (-g.dir.1 * g.size, g.dir.0 * g.size);
    for (x, y) in [
        (g.x - ux * 0.2, g.y - uy * 0.2),
        (ex - ux * 0.2, ey - uy * 0.2),
        (g.x + ux * 0.8, g.y + uy * 0.8),
        (ex + ux * 0.8, ey + uy * 0.8),
    ] {
        b[0] = b[0].min(x);
        b[1] = b[1].min(y);
        b[2] = b[2].max(x);
        b[3] = b[3].max(y);
    }
}

/// Where a line starts, which way it runs, and its font size.
#[derive(Clone, Copy)]
struct Geometry {
    origin: (f64, f64),
    dir: (f64, f64),
    size: f64,
}

/// A finished line with the geometry the block pass needs.
struct Placed {
    line: Line,
    origin: (f64, f64),
    dir: (f64, f64),
    size: f64,
}

/// Whether `text` ends with a line broken by a hyphen after a letter (`com-`, newline).
fn ends_hyphenated(text: &str) -> bool {
    let mut end = text.chars().rev();
    end.next() == Some('\n')
        && matches!(end.next(), Some('-' | '\u{00AD}' | '\u{2010}'))
        && end.next().is_some_and(char::is_alphabetic)
}

/// Builds the layout of a page from its glyphs.
pub fn layout(glyphs: &[Glyph]) -> Layout {
    let mut lines: Vec<Placed> = Vec::new();
    let mut open: Option<Open> = None;
    let close = |open: &mut Option<Open>, lines: &mut Vec<Placed>| {
        if let Some(o) = open.take() {
            // The line's own buffer, cut to its text: no copy.
            let mut text = o.text;
            text.truncate(text.trim_end().len());
            if !text.is_empty() {
                lines.push(Placed {
                    line: Line { bbox: o.bbox, text },
                    origin: o.origin,
                    dir: o.dir,
                    size: o.size,
                });
            }
        }
    };
    for g in glyphs {
        if !(g.x.is_finite() && g.y.is_finite() && g.adv.is_finite() && g.size.is_finite()) {
            continue;
        }
        let blank = g.text.chars().all(char::is_whitespace);
        let size = g.size.max(0.1);
        let same_line = open.as_ref().is_some_and(|o| {
            let dx = g.x - o.end.0;
            let dy = g.y - o.end.1;
            let along = dx * o.dir.0 + dy * o.dir.1;
            let across = -dx * o.dir.1 + dy * o.dir.0;
            let aligned = o.dir.0 * g.dir.0 + o.dir.1 * g.dir.1 > 0.99;
            aligned
                && across.abs() < LINE_SHIFT * o.size.max(size)
                && along > -2.0 * o.size.max(size)
        });
        if !same_line {
            close(&mut open, &mut lines);
            if blank {
                continue;
            }
            open = Some(Open {
                // Most lines are a few dozen characters: one allocation, rarely grown.
                text: String::with_capacity(64),
                bbox: [f64::MAX, f64::MAX, f64::MIN, f64::MIN],
                end: (g.x, g.y),
                dir: g.dir,
                size,
                origin: (g.x, g.y),
                pending_space: false,
                last: None,
            });
        }
        let o = open.as_mut().expect("opened above");
        let end = (g.x + g.dir.0 * g.adv, g.y + g.dir.1 * g.adv);
        if blank {
            o.pending_space = true;
            o.end = end;
            continue;
        }
        // Overprinted duplicates (fake bold): same text at (almost) the same place.
        if let Some(l) = o.last {
            if l.text == g.text && (g.x - l.x).abs() < 0.1 * size && (g.y - l.y).abs() < 0.1 * size
            {
                continue;
            }
        }
        if !o.text.is_empty() {
            let along = (g.x - o.end.0) * o.dir.0 + (g.y - o.end.1) * o.dir.1;
            if (o.pending_space || along > WORD_GAP * o.size.max(size)) && !o.text.ends_with(' ') {
                o.text.push(' ');
            }
        }
        o.pending_space = false;
        push_text(&mut o.text, &g.text);
        extend(&mut o.bbox, g);
        o.end = end;
        o.size = size;
        o.last = Some(g);
    }
    close(&mut open, &mut lines);

    let mut out = Layout {
        // The page text is the lines' text with a separator after each.
        text: String::with_capacity(lines.iter().map(|l| l.line.text.len() + 2).sum()),
        lines: Vec::with_capacity(lines.len()),
        blocks: Vec::new(),
    };
    // The previous line's origin, direction and size.
    let mut prev: Option<Geometry> = None;
    for (i, placed) in lines.into_iter().enumerate() {
        let (origin, dir, size) = (placed.origin, placed.dir, placed.size);
        let new_block = match prev {
            None => true,
            Some(Geometry {
                origin: po,
                dir: pd,
                size: ps,
            }) => {
                let dx = origin.0 - po.0;
                let dy = origin.1 - po.1;
                let across = (-dx * pd.1 + dy * pd.0).abs();
                let aligned = pd.0 * dir.0 + pd.1 * dir.1 > 0.99;
                !aligned || across > BLOCK_GAP * ps.max(size)
            }
        };
        // Whether the text so far ends with a word broken by a hyphen.
        let hyphenated = ends_hyphenated(&out.text);
        if new_block {
            if !out.text.is_empty() {
                out.text.push('\n');
            }
            out.blocks.push(Block {
                bbox: placed.line.bbox,
                lines: Vec::new(),
            });
        }
        let line = placed.line;
        // A word hyphenated across lines is put back together in the text (the lines keep
        // what was printed), also when it continues in the next block (the next column
        // of a paragraph): the rest of the word goes up to where the word began.
        let mut rest = line.text.as_str();
        if hyphenated && rest.chars().next().is_some_and(char::is_lowercase) {
            let cut = rest.find(' ').unwrap_or(rest.len());
            let gap = if new_block { "\n\n" } else { "\n" };
            out.text.truncate(out.text.len() - gap.len()); // the line (and block) break
            let hyphen = out.text.pop().map_or(0, char::len_utf8);
            debug_assert!(hyphen > 0);
            out.text.push_str(&rest[..cut]);
            out.text.push_str(gap);
            rest = rest[cut..].trim_start();
        }
        let b = out.blocks.last_mut().expect("pushed above");
        b.bbox = [
            b.bbox[0].min(line.bbox[0]),
            b.bbox[1].min(line.bbox[1]),
            b.bbox[2].max(line.bbox[2]),
            b.bbox[3].max(line.bbox[3]),
        ];
        b.lines.push(i);
        if !rest.is_empty() {
            out.text.push_str(rest);
            out.text.push('\n');
        }
        out.lines.push(line);
        prev = Some(Geometry { origin, dir, size });
    }
    for l in &mut out.lines {
        l.bbox = l.bbox.map(|v| (v * 100.0).round() / 100.0);
    }
    for b in &mut out.blocks {
        b.bbox = b.bbox.map(|v| (v * 100.0).round() / 100.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(text: &str, x: f64, y: f64, adv: f64) -> Glyph {
        Glyph {
            text: text.into(),
            x,
            y,
            adv,
            size: 10.0,
            dir: (1.0, 0.0),
        }
    }

    #[test]
    fn words_from_gaps_lines_from_baselines() {
        let glyphs = [
            g("H", 0.0, 100.0, 6.0),
            g("i", 6.2, 100.0, 3.0),  // kerning-sized gap: same word
            g("y", 12.0, 100.0, 5.0), // 2.8 gap > 1.5: new word
            g("o", 17.0, 100.0, 5.0),
            g("u", 22.0, 100.0, 5.0),
            g("n", 0.0, 88.0, 5.0), // next baseline: new line
            g("e", 5.0, 88.0, 5.0),
            g("w", 10.0, 88.0, 5.0),
            g("x", 0.0, 40.0, 5.0), // far below: new block
        ];
        let l = layout(&glyphs);
        assert_eq!(l.text, "Hi you\nnew\n\nx\n");
        assert_eq!(l.lines.len(), 3);
        assert_eq!(l.blocks.len(), 2);
        assert_eq!(l.blocks[0].lines, [0, 1]);
    }

    fn word(w: &str, x: f64, y: f64) -> Vec<Glyph> {
        w.chars()
            .enumerate()
            .map(|(i, c)| g(&c.to_string(), x + 5.0 * i as f64, y, 5.0))
            .collect()
    }

    #[test]
    fn words_hyphenated_across_lines_are_rejoined_in_the_text_only() {
        let mut glyphs = Vec::new();
        glyphs.extend(word("we", 0.0, 100.0));
        glyphs.extend(word("com-", 15.0, 100.0));
        glyphs.extend(word("pile", 0.0, 88.0));
        glyphs.extend(word("it", 25.0, 88.0));
        glyphs.extend(word("non-", 0.0, 76.0));
        glyphs.extend(word("Blocking", 0.0, 64.0)); // capital: a real compound, kept
        let l = layout(&glyphs);
        assert_eq!(l.text, "we compile\nit\nnon-\nBlocking\n");
        let lines: Vec<&str> = l.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(lines, ["we com-", "pile it", "non-", "Blocking"]);
    }

    #[test]
    fn a_word_hyphenated_into_the_next_block_is_rejoined_there() {
        let mut glyphs = Vec::new();
        glyphs.extend(word("the", 0.0, 100.0));
        glyphs.extend(word("rela-", 20.0, 100.0));
        glyphs.extend(word("tionship", 0.0, 40.0)); // far below: a new block
        glyphs.extend(word("of", 45.0, 40.0));
        let l = layout(&glyphs);
        assert_eq!(l.blocks.len(), 2);
        assert_eq!(l.text, "the relationship\n\nof\n");
        let lines: Vec<&str> = l.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(lines, ["the rela-", "tionship of"]);
    }

    #[test]
    fn explicit_spaces_and_ligatures() {
        let glyphs = [
            g("a", 0.0, 0.0, 5.0),
            g(" ", 5.0, 0.0, 2.5),
            g("\u{FB01}", 7.5, 0.0, 5.0),
        ];
        assert_eq!(layout(&glyphs).text, "a fi\n");
    }
}
