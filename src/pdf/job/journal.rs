//! The journal of `swarm run --journal FILE`: each finished document recorded durably, so
//! that the same command after a crash writes only what is missing.
//!
//! The file is JSON Lines, one record a document, appended after the document's line is
//! written to the output:
//!
//! ```text
//! {"hash":"<sha256 hex>","options":"<what changes output>","path":"a.pdf","out":"/o.jsonl","out_end":1234,"line":{...}}
//! {"hash":"<same>","options":"...","path":"copy-of-a.pdf","out":"/o.jsonl","out_end":2345}
//! ```
//!
//! - `hash` is the content's SHA-256; byte-identical files share one entry: the first
//!   record of a hash carries the line, later ones only name their path.
//! - `options` says what else the line depends on (this build, the time budget, the
//!   memory limit); records made under other options are not used.
//! - `out` and `out_end` name the output file and its length just after the line, when
//!   the output is a file: a resumed run with that output cuts it back to the last
//!   record's `out_end`, so a line written but not yet recorded is written again once,
//!   not twice.
//! - A last record cut short (no newline, or not JSON) was torn by the crash: it is
//!   ignored and cut off before the next record is appended.
//!
//! Records are written with one `write` each (the kernel has them when the supervisor is
//! killed) and `fdatasync`ed at most every [`SYNC_EVERY`] and at the end, an output file
//! first (a power loss costs at most that much, and no record outlives its line).

use crate::pdf::wire::line::with_path;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often records are flushed to the disk at most.
pub const SYNC_EVERY: Duration = Duration::from_millis(50);

/// A content hash, hex.
type Hash = String;

/// What a file that could not be read is recorded under instead of its hash: it is done
/// (its error line was written), and it is never a copy of anything nor the original of
/// a copy (its line names its own path and error).
pub const UNREADABLE: &str = "unreadable";

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    hash: String,
    options: String,
    path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    out: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    out_end: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    line: Option<&'a RawValue>,
}

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// Reading, writing or syncing it.
    #[error("journal {path}: {source}")]
    Io {
        /// The journal.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// What becomes of each input, given the journal.
#[derive(Debug, Default)]
pub struct Plan {
    /// Inputs to extract, with their content hash ([`UNREADABLE`] for a file that could
    /// not be read here: its agent says why).
    pub extract: Vec<(PathBuf, Hash)>,
    /// Copies of documents already recorded: their line (with the copy's path) is written
    /// from the journal, without extraction.
    pub copies: Vec<(PathBuf, Hash, Vec<u8>)>,
    /// Inputs recorded by an earlier run: nothing to do.
    pub done: usize,
}

/// What a run's lines depend on besides the documents, as a journal records it: this
/// build, the time budget per document and the memory limit (a document may end as a
/// timeout or too large under one and not another). Pages per task, the agents and the
/// cache change nothing in a line.
pub fn options_of(cfg: &super::RunConfig) -> String {
    format!(
        "swarm {} timeout_ms={} memory_limit={}",
        env!("CARGO_PKG_VERSION"),
        cfg.timeout_per_doc.as_millis(),
        cfg.memory_limit
            .map_or("none".to_string(), |m| m.to_string())
    )
}

/// An open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    options: String,
    /// Lines by content hash, for these options, as the journal held them when opened
    /// (what [`Journal::plan`] writes copies from).
    lines: HashMap<Hash, Box<RawValue>>,
    /// The hashes whose line the journal holds (those above and those recorded since):
    /// a run's own lines are not kept in memory, only that they are recorded.
    with_line: HashSet<Hash>,
    /// (path, hash) recorded for these options.
    recorded: HashSet<(String, Hash)>,
    /// The last record's output and `out_end`.
    out_end: Option<(String, u64)>,
    /// The output, if a file, and where its next line starts.
    out_pos: Option<(String, u64)>,
    /// The output file, synced before the journal is: a record on the disk never names a
    /// line that is not.
    out_file: Option<File>,
    unsynced: bool,
    last_sync: Instant,
    /// Records ignored: torn at the end, or made under other options.
    pub ignored: usize,
}

impl Journal {
    /// Opens (or creates) the journal at `path` for runs whose output depends on
    /// `options`; a torn last record is cut off.
    pub fn open(path: &Path, options: String) -> Result<Journal, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut j = Journal {
            path: path.to_path_buf(),
            file: file.try_clone().map_err(io)?,
            options,
            lines: HashMap::new(),
            with_line: HashSet::new(),
            recorded: HashSet::new(),
            out_end: None,
            out_pos: None,
            out_file: None,
            unsynced: false,
            last_sync: Instant::now(),
            ignored: 0,
        };
        file.rewind().map_err(io)?;
        let mut reader = BufReader::new(&file);
        let mut good = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            let complete = buf.last() == Some(&b'\n');
            match (complete, serde_json::from_slice::<Record>(&buf)) {
                (true, Ok(r)) => {
                    good += n as u64;
                    j.take(r);
                }
                _ => {
                    // Torn (the crash cut it) or unreadable: this and anything after it
                    // is dropped, and the next record goes where it began.
                    tracing::warn!(journal = %path.display(), at = good, "journal record torn; ignored");
                    j.ignored += 1;
                    break;
                }
            }
        }
        drop(reader);
        if good < file.metadata().map_err(io)?.len() {
            file.set_len(good).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(j)
    }

    fn take(&mut self, r: Record) {
        if r.options != self.options {
            self.ignored += 1;
            return;
        }
        if let Some(line) = r.line {
            if self.with_line.insert(r.hash.clone()) {
                self.lines.insert(r.hash.clone(), line.to_owned());
            }
        }
        if let (Some(out), Some(end)) = (r.out, r.out_end) {
            self.out_end = Some((out, end));
        }
        self.recorded.insert((r.path, r.hash));
    }

    /// Documents recorded (under these options).
    pub fn len(&self) -> usize {
        self.recorded.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.recorded.is_empty()
    }

    /// The length of the output file `out` (canonical) after the last line recorded, if
    /// the last record wrote there (else 0): a resumed run's output is cut back to it.
    pub fn output_end(&self, out: &str) -> u64 {
        match &self.out_end {
            Some((o, end)) if o == out => *end,
            _ => 0,
        }
    }

    /// Says the output is the file `out` (canonical), now `len` bytes long, open as
    /// `file`: records name where each line ends, and the file is synced before them.
    pub fn output_at(&mut self, out: &str, len: u64, file: Option<File>) {
        self.out_pos = Some((out.to_string(), len));
        self.out_file = file;
    }

    /// What to do with `files`: hashed here (each read once), each is done already, a
    /// copy of a recorded document, or to extract.
    pub fn plan(&self, files: &[PathBuf]) -> Plan {
        let mut plan = Plan::default();
        for f in files {
            let hash = super::inputs::content_hash(f)
                .map_or_else(|| UNREADABLE.to_string(), |h| crate::pdf::tasks::to_hex(&h));
            let path = f.display().to_string();
            if self.recorded.contains(&(path.clone(), hash.clone())) {
                plan.done += 1;
            } else if let Some(line) = self.lines.get(&hash) {
                plan.copies
                    .push((f.clone(), hash, with_path(line.get(), &path)));
            } else {
                plan.extract.push((f.clone(), hash));
            }
        }
        plan
    }

    /// Records that the document at `path`, of content `hash`, got `line` (its newline
    /// included), just written to the output. A hash recorded before gets no second copy
    /// of its line.
    pub fn record(&mut self, path: &str, hash: &str, line: &[u8]) -> Result<(), JournalError> {
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some((_, pos)) = &mut self.out_pos {
            *pos += line.len() as u64;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let raw: Option<&RawValue> = if self.with_line.contains(hash) || hash == UNREADABLE {
            None
        } else {
            // Our own line, checked when it was made: JSON. If it somehow is not, it is
            // not recorded as a line (the document is then extracted again on resume).
            std::str::from_utf8(body)
                .ok()
                .and_then(|s| serde_json::from_str(s).ok())
        };
        let rec = Record {
            hash: hash.to_string(),
            options: self.options.clone(),
            path: path.to_string(),
            out: self.out_pos.as_ref().map(|(o, _)| o.clone()),
            out_end: self.out_pos.as_ref().map(|(_, end)| *end),
            line: raw,
        };
        let mut bytes = serde_json::to_vec(&rec).map_err(|e| io(std::io::Error::other(e)))?;
        bytes.push(b'\n');
        // One write: a record is in the kernel whole, or (cut by a crash) torn at the end.
        self.file.write_all(&bytes).map_err(io)?;
        if raw.is_some() {
            self.with_line.insert(hash.to_string());
        }
        self.recorded.insert((path.to_string(), hash.to_string()));
        self.unsynced = true;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes what was recorded to the disk.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.unsynced {
            let io = |source| JournalError::Io {
                path: self.path.clone(),
                source,
            };
            if let Some(out) = &self.out_file {
                out.sync_data().map_err(io)?;
            }
            self.file.sync_data().map_err(io)?;
            self.unsynced = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nfswarm-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_copy_gets_the_line_with_its_own_path_byte_for_byte() {
        let line = r#"{"path":"a \"b\".pdf","status":"ok","pages":[{"text":"path"}]}"#;
        assert_eq!(
            with_path(line, "c/d.pdf"),
            b"{\"path\":\"c/d.pdf\",\"status\":\"ok\",\"pages\":[{\"text\":\"path\"}]}\n"
        );
    }

    #[test]
    fn records_are_read_back_and_a_torn_last_one_is_cut_off() {
        let dir = tmp("torn");
        let (a, b, c) = (dir.join("a.pdf"), dir.join("b.pdf"), dir.join("c.pdf"));
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"one").unwrap(); // a copy of a
        std::fs::write(&c, b"two").unwrap();
        let jpath = dir.join("journal");
        let files = vec![a.clone(), b.clone(), c.clone()];
        {
            let mut j = Journal::open(&jpath, "o1".into()).unwrap();
            j.output_at("/out", 0, None);
            let plan = j.plan(&files);
            assert_eq!(
                (plan.extract.len(), plan.copies.len(), plan.done),
                (3, 0, 0)
            );
            let (_, ha) = &plan.extract[0];
            let line = format!("{{\"path\":\"{}\",\"status\":\"ok\"}}\n", a.display());
            j.record(&a.display().to_string(), ha, line.as_bytes())
                .unwrap();
        }
        // A crash in the middle of the next record.
        let mut f = OpenOptions::new().append(true).open(&jpath).unwrap();
        f.write_all(b"{\"hash\":\"ab").unwrap();
        drop(f);
        let before = std::fs::metadata(&jpath).unwrap().len();
        let j = Journal::open(&jpath, "o1".into()).unwrap();
        assert_eq!(j.ignored, 1);
        assert!(std::fs::metadata(&jpath).unwrap().len() < before);
        assert_eq!(j.len(), 1);
        assert!(j.output_end("/out") > 0);
        assert_eq!(j.output_end("/elsewhere"), 0);
        let plan = j.plan(&files);
        assert_eq!(plan.done, 1);
        assert_eq!(plan.copies.len(), 1);
        assert_eq!(plan.copies[0].0, b);
        assert!(String::from_utf8_lossy(&plan.copies[0].2).contains("b.pdf"));
        assert_eq!(plan.extract.len(), 1);
        assert_eq!(plan.extract[0].0, c);
        // A file that cannot be read is recorded as such: done next time, and never the
        // original of another unreadable file's line.
        let gone = dir.join("gone.pdf");
        let mut j = j;
        let plan = j.plan(std::slice::from_ref(&gone));
        assert_eq!(plan.extract, vec![(gone.clone(), UNREADABLE.to_string())]);
        j.record(
            &gone.display().to_string(),
            UNREADABLE,
            b"{\"path\":\"gone\"}\n",
        )
        .unwrap();
        let also = dir.join("also-gone.pdf");
        let plan = j.plan(&[gone.clone(), also.clone()]);
        assert_eq!(plan.done, 1);
        assert!(plan.copies.is_empty());
        assert_eq!(plan.extract, vec![(also, UNREADABLE.to_string())]);
        drop(j);
        // Other options: nothing of it is used.
        let j = Journal::open(&jpath, "o2".into()).unwrap();
        assert_eq!((j.len(), j.ignored), (0, 2));
        assert_eq!(j.plan(&files).extract.len(), 3);
    }
}
