//! `swarm extract FILE...`: extraction in this process, one document after another,
//! written as JSON Lines to stdout (the same lines `swarm run` writes).

use super::{Done, Error};
use std::io::Write;
use std::path::PathBuf;

/// Extracts `paths` in order.
pub fn run(paths: &[PathBuf]) -> Result<Done, Error> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for p in paths {
        let mut line = crate::pdf::extract_file(p).line();
        line.push(b'\n');
        out.write_all(&line).map_err(Error::from_library)?;
    }
    out.flush().map_err(Error::from_library)?;
    Ok(Done::Ok)
}
