//! The file walk: which PDF files a `swarm run` is given.

use std::path::{Path, PathBuf};

/// The PDF files under `paths` (directories searched recursively, to a depth of 64), and
/// from `files_from` (one path per line). Sorted within each directory; a path that is
/// not a directory is taken as it is, whatever its name (so a missing one ends as an `io`
/// error line).
pub fn collect_inputs(paths: &[PathBuf], files_from: Option<&[String]>) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>, depth: usize) {
        if p.is_dir() {
            if depth > 64 {
                return;
            }
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            entries.sort();
            for e in entries {
                if e.is_dir() {
                    walk(&e, out, depth + 1);
                } else if e.extension().is_some_and(|x| x.eq_ignore_ascii_case("pdf")) {
                    out.push(e);
                }
            }
        } else {
            out.push(p.to_path_buf());
        }
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out, 0);
    }
    for line in files_from.unwrap_or(&[]) {
        let l = line.trim();
        if !l.is_empty() {
            walk(Path::new(l), &mut out, 0);
        }
    }
    out
}
