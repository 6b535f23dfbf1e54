//! Helpers of the tests that run jobs through `swarm worker`s and `swarm submit`: the
//! lines `swarm run` writes for the same files, outputs read as multisets of lines, and
//! waiting on processes and their logs.
#![allow(dead_code)]

use super::cli::swarm;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Waits until `out` has `n` lines.
pub fn wait_for_lines(out: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count_lines(out) < n {
        assert!(Instant::now() < deadline, "no lines came");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, then its exit status.
pub fn drain(mut w: Child) -> std::process::ExitStatus {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(w.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = w.try_wait().expect("the worker's status") {
            return s;
        }
        assert!(Instant::now() < deadline, "a worker did not drain");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines of `file`, sorted, each whole and once (a count per line).
pub fn lines(file: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let f = std::fs::File::open(file).expect("an output");
    for l in std::io::BufReader::new(f).lines() {
        *out.entry(l.expect("a line")).or_insert(0) += 1;
    }
    out
}

pub fn count_lines(file: &Path) -> usize {
    std::fs::read(file).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// What `swarm run` writes for `inputs`.
pub fn reference(inputs: &[PathBuf], out: &Path) -> BTreeMap<String, usize> {
    let st = swarm()
        .arg("run")
        .args(inputs)
        .args([
            "--agents",
            "2",
            "--no-cache",
            "--no-status-socket",
            "--output",
        ])
        .arg(out)
        .stderr(Stdio::null())
        .status()
        .expect("swarm run");
    assert!(
        st.code().is_some_and(|c| c == 0 || c == 3),
        "swarm run: {st}"
    );
    lines(out)
}

pub fn wait(mut c: Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = c.try_wait().expect("a status") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn assert_same(got: &BTreeMap<String, usize>, want: &BTreeMap<String, usize>) {
    let twice: Vec<_> = got.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "lines written twice: {}", twice.len());
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).count();
    assert_eq!(
        (missing, extra),
        (0, 0),
        "lines missing and not swarm run's"
    );
    assert_eq!(got, want);
}

/// A figure of a worker's summary (its `worker stopped` log line, JSON).
pub fn summary_field(log: &Path, key: &str) -> u64 {
    let log = std::fs::read_to_string(log).unwrap();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "worker stopped")
        .and_then(|v| v["fields"][key].as_u64())
        .unwrap_or_else(|| panic!("no {key} in the summary of {log}"))
}

/// The first PDF of folder `dir`, by name.
pub fn first_pdf(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("a folder of PDFs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .min()
        .expect("a PDF")
}
