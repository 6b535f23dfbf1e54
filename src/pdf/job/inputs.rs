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

/// Most files given to agents' Landlock rules one by one; beyond it, their directories.
const MAX_FILE_RULES: usize = 1024;

/// What agents may read to open `files`: the files themselves, or, for many, the
/// directories that hold them (none beneath another).
pub fn read_roots(files: &[PathBuf]) -> Vec<PathBuf> {
    if files.len() <= MAX_FILE_RULES {
        return files.to_vec();
    }
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut roots: Vec<PathBuf> = Vec::new();
    for d in dirs {
        // Sorted, so a directory comes right after any root it is beneath.
        if !roots.last().is_some_and(|r| d.starts_with(r)) {
            roots.push(d);
        }
    }
    roots
}

/// The SHA-256 of the file at `p` (what the shared cache and the journal know a document's
/// content by); `None` if it cannot be read.
pub(crate) fn content_hash(p: &Path) -> Option<[u8; 32]> {
    std::fs::read(p).ok().map(|b| content_hash_of(&b))
}

/// The SHA-256 of `bytes`: [`content_hash`] of what is already read.
pub(crate) fn content_hash_of(bytes: &[u8]) -> [u8; 32] {
    <sha2::Sha256 as sha2::Digest>::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Few files are given one by one; many, by the fewest directories that hold them.
    #[test]
    fn read_roots_are_the_files_or_their_outermost_directories() {
        let few = vec![PathBuf::from("a/x.pdf"), PathBuf::from("y.pdf")];
        assert_eq!(read_roots(&few), few);
        let many: Vec<PathBuf> = (0..MAX_FILE_RULES + 1)
            .map(|i| match i % 3 {
                0 => PathBuf::from(format!("c/{i}.pdf")),
                1 => PathBuf::from(format!("c/d/{i}.pdf")),
                _ => PathBuf::from(format!("/e/{i}.pdf")),
            })
            .chain([PathBuf::from("top.pdf")])
            .collect();
        assert_eq!(
            read_roots(&many),
            vec![PathBuf::from("/e"), PathBuf::from("."), PathBuf::from("c")]
        );
    }
}
