//! Rebuilding a broken cross-reference table, as viewers do: when the file's own xref or
//! trailer cannot be read, scan the bytes for `N G obj` headers, find the catalog, and
//! append a fresh classic xref table and trailer that point at what the scan found. Later
//! definitions of an object (incremental updates) win.

/// The file with a rebuilt xref table and trailer appended, or `None` when no object or no
/// catalog can be found.
pub fn rebuild_xref(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut objects: std::collections::BTreeMap<u32, (u16, usize)> =
        std::collections::BTreeMap::new();
    let mut i = 0;
    while let Some(k) = find(&bytes[i..], b"obj") {
        let at = i + k;
        i = at + 3;
        // "obj" must end a token, and be preceded by "<num> <gen> ".
        if bytes.get(at + 3).is_some_and(|b| b.is_ascii_alphanumeric()) {
            continue;
        }
        let Some((num, gen, start)) = header_before(bytes, at) else {
            continue;
        };
        if num > 10_000_000 {
            continue;
        }
        objects.insert(num, (gen, start));
    }
    if objects.is_empty() {
        return None;
    }
    let root = last_ref_after(bytes, b"/Root").or_else(|| catalog(bytes, &objects))?;
    let encrypt = last_ref_after(bytes, b"/Encrypt");
    let size = objects.keys().next_back().copied()? + 1;
    let mut out = bytes.to_vec();
    out.extend_from_slice(b"\n");
    let xref_at = out.len();
    out.extend_from_slice(format!("xref\n0 {size}\n").as_bytes());
    for n in 0..size {
        match objects.get(&n) {
            Some((gen, off)) => {
                out.extend_from_slice(format!("{off:010} {gen:05} n \n").as_bytes())
            }
            None => out.extend_from_slice(b"0000000000 65535 f \n"),
        }
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {size} /Root {} {} R", root.0, root.1).as_bytes(),
    );
    if let Some((n, g)) = encrypt {
        out.extend_from_slice(format!(" /Encrypt {n} {g} R").as_bytes());
    }
    out.extend_from_slice(format!(" >>\nstartxref\n{xref_at}\n%%EOF\n").as_bytes());
    Some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses `<num> <gen> ` immediately before `at`; returns them and where `num` starts.
fn header_before(bytes: &[u8], at: usize) -> Option<(u32, u16, usize)> {
    let mut j = at;
    let skip_ws = |j: &mut usize| {
        while *j > 0 && bytes[*j - 1].is_ascii_whitespace() {
            *j -= 1;
        }
    };
    let digits = |j: &mut usize| -> Option<u64> {
        let end = *j;
        while *j > 0 && bytes[*j - 1].is_ascii_digit() && end - *j < 10 {
            *j -= 1;
        }
        std::str::from_utf8(&bytes[*j..end]).ok()?.parse().ok()
    };
    skip_ws(&mut j);
    if j == at {
        return None;
    }
    let gen = digits(&mut j)?;
    let before_gen = j;
    skip_ws(&mut j);
    if j == before_gen {
        return None;
    }
    let num = digits(&mut j)?;
    if j > 0 && !(bytes[j - 1].is_ascii_whitespace() || b"<>[]()/%".contains(&bytes[j - 1])) {
        return None;
    }
    Some((u32::try_from(num).ok()?, u16::try_from(gen).ok()?, j))
}

/// The last `key N G R` in the file.
fn last_ref_after(bytes: &[u8], key: &[u8]) -> Option<(u32, u16)> {
    let mut best = None;
    let mut i = 0;
    while let Some(k) = find(&bytes[i..], key) {
        let at = i + k + key.len();
        i = at;
        let rest = &bytes[at..(at + 32).min(bytes.len())];
        let text = String::from_utf8_lossy(rest);
        let mut it = text.split_whitespace();
        if let (Some(n), Some(g), Some(r)) = (it.next(), it.next(), it.next()) {
            if r.starts_with('R') {
                if let (Ok(n), Ok(g)) = (n.parse(), g.parse()) {
                    best = Some((n, g));
                }
            }
        }
    }
    best
}

/// The object whose body says `/Type /Catalog`.
fn catalog(
    bytes: &[u8],
    objects: &std::collections::BTreeMap<u32, (u16, usize)>,
) -> Option<(u32, u16)> {
    for (&n, &(g, off)) in objects {
        let body = &bytes[off..(off + 2048).min(bytes.len())];
        let end = find(body, b"endobj").unwrap_or(body.len());
        let squeezed: Vec<u8> = body[..end]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if find(&squeezed, b"/Type/Catalog").is_some() {
            return Some((n, g));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_a_file_without_xref() {
        let body = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 100 100] >>\nendobj\n";
        assert!(lopdf::Document::load_mem(body).is_err());
        let fixed = rebuild_xref(body).unwrap();
        let doc = lopdf::Document::load_mem(&fixed).unwrap();
        assert_eq!(doc.get_pages().len(), 1);
    }
}
