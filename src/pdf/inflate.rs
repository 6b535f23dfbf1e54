//! A stream's decoded bytes. A plain `/FlateDecode` stream (no parameters), which is most
//! of them, is inflated with one decompressor per thread, reset between streams, instead
//! of a new one (43 KB allocated and zeroed) for each; anything else, and any stream the
//! fast path does not finish cleanly, goes to lopdf's decoder, whose output (partial data
//! of a damaged stream included) stays the reference.

use lopdf::{Object, Stream};
use std::cell::RefCell;

thread_local! {
    static INFLATER: RefCell<flate2::Decompress> = RefCell::new(flate2::Decompress::new(true));
}

/// The stream's content with its filters undone, as `Stream::decompressed_content` gives
/// it.
pub fn decoded(s: &Stream) -> lopdf::Result<Vec<u8>> {
    match plain_flate(s) {
        Some(out) => Ok(out),
        None => s.decompressed_content(),
    }
}

/// Whether the stream's only filter is `/FlateDecode`, without parameters.
fn is_plain_flate(s: &Stream) -> bool {
    let flate = |o: &Object| matches!(o, Object::Name(n) if n == b"FlateDecode");
    let filter = match s.dict.get(b"Filter") {
        Ok(Object::Array(a)) if a.len() == 1 => flate(&a[0]),
        Ok(o) => flate(o),
        Err(_) => false,
    };
    filter && s.dict.get(b"DecodeParms").is_err() && !s.content.is_empty()
}

/// The inflated bytes of a plain flate stream that ends cleanly (its checksum checked);
/// `None` for anything else.
fn plain_flate(s: &Stream) -> Option<Vec<u8>> {
    use flate2::{FlushDecompress, Status};
    if !is_plain_flate(s) {
        return None;
    }
    INFLATER.with(|cell| {
        let mut d = cell.borrow_mut();
        d.reset(true);
        let input = &s.content;
        let mut out = Vec::with_capacity(input.len().saturating_mul(4).clamp(1024, 1 << 20));
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let (in_before, out_before) = (d.total_in(), d.total_out());
            let at = usize::try_from(in_before).ok()?;
            match d.decompress_vec(input.get(at..)?, &mut out, FlushDecompress::None) {
                Ok(Status::StreamEnd) => return Some(out),
                Ok(_) if d.total_in() == in_before && d.total_out() == out_before => {
                    // No progress with room to spare: cut short or damaged.
                    if out.len() < out.capacity() {
                        return None;
                    }
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::Dictionary;

    fn stream(content: Vec<u8>, params: bool) -> Stream {
        let mut dict = Dictionary::new();
        dict.set("Filter", Object::Name(b"FlateDecode".to_vec()));
        if params {
            let mut p = Dictionary::new();
            p.set("Predictor", 12);
            dict.set("DecodeParms", Object::Dictionary(p));
        }
        Stream::new(dict, content)
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_fast_path_gives_lopdfs_bytes_and_leaves_the_rest_to_it() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let z = deflate(&text);
        let s = stream(z.clone(), false);
        assert_eq!(plain_flate(&s).as_deref(), Some(&text[..]));
        assert_eq!(decoded(&s).unwrap(), s.decompressed_content().unwrap());
        // Twice in a row on one thread: the decompressor is reset between streams.
        assert_eq!(decoded(&s).unwrap(), text);
        // Cut short, corrupt, or with parameters: lopdf decides.
        for bad in [z[..z.len() / 2].to_vec(), {
            let mut c = z.clone();
            let n = c.len();
            c[n - 1] ^= 0xFF; // the checksum
            c
        }] {
            let s = stream(bad, false);
            assert!(plain_flate(&s).is_none());
            assert_eq!(decoded(&s).ok(), s.decompressed_content().ok());
        }
        assert!(plain_flate(&stream(z, true)).is_none());
    }
}
