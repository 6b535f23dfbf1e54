//! `swarm bench cache`: `swarm run` on a corpus where a third of the documents are
//! byte-identical copies of others, with the shared cache and without it, in alternating
//! rounds of one run; the output must be the same line for line.
//!
//! The corpus is the demo's documents, and a copy of every other one under another name
//! (so the copies are a third of all). Copies are named to sort first, so each is met
//! before its original, a window of open documents apart or more.

use crate::pdf::job::{self, RunError};
use serde::Serialize;
use std::path::PathBuf;

/// What to run.
#[derive(Debug, Clone)]
pub struct CacheBenchConfig {
    /// Documents generated (their copies come on top).
    pub documents: u32,
    /// Agents.
    pub agents: u32,
    /// Rounds of each.
    pub rounds: u32,
    /// Where the corpus is written (removed after).
    pub scratch: PathBuf,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// The JSON object `--json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct CacheBenchReport {
    /// Documents in the corpus, copies included.
    pub documents: usize,
    /// Of which byte-identical copies.
    pub duplicates: usize,
    /// Pages in one run.
    pub pages: u64,
    /// Pages a second with the cache, the median of the rounds.
    pub cache_pages_per_s: f64,
    /// Pages a second without it.
    pub no_cache_pages_per_s: f64,
    /// The first over the second.
    pub cache_speedup: f64,
    /// Ranges whose reply came from the cache, in one run.
    pub cache_hits: u64,
    /// Whether both wrote the same lines.
    pub identical_output: bool,
}

/// Runs the benchmark.
pub fn run(cfg: &CacheBenchConfig) -> Result<CacheBenchReport, RunError> {
    let dir = cfg.scratch.join("corpus");
    let docs = super::demo_corpus(&dir, cfg.documents.max(2))?;
    let mut files: Vec<PathBuf> = docs.clone();
    for (i, d) in docs.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let copy = dir.join(format!("0-copy-{i:04}.pdf"));
        std::fs::copy(d, &copy)?;
        files.push(copy);
    }
    files.sort();
    let duplicates = files.len() - docs.len();
    let run = |cache: bool| -> Result<(job::RunSummary, Vec<Vec<u8>>), RunError> {
        let rc = super::run_config(
            files.clone(),
            cfg.agents,
            cfg.require_cgroups,
            cfg.agent_bin.clone(),
            cache,
        );
        let mut out = Vec::new();
        let s = job::run(&rc, &mut out, &mut |_, _| {})?;
        let mut lines: Vec<Vec<u8>> = out.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
        lines.sort();
        Ok((s, lines))
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let (mut pages, mut hits, mut identical) = (0, 0, true);
    for _ in 0..cfg.rounds.max(1) {
        let (a, la) = run(true)?;
        let (b, lb) = run(false)?;
        identical &= la == lb;
        with.push(a.pages_per_second);
        without.push(b.pages_per_second);
        (pages, hits) = (a.pages, a.cache_hits);
    }
    let _ = std::fs::remove_dir_all(&cfg.scratch);
    with.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    let (c, n) = (super::pct(&with, 0.5), super::pct(&without, 0.5));
    Ok(CacheBenchReport {
        documents: files.len(),
        duplicates,
        pages,
        cache_pages_per_s: c,
        no_cache_pages_per_s: n,
        cache_speedup: c / n.max(1e-9),
        cache_hits: hits,
        identical_output: identical,
    })
}

/// The report as text.
pub fn render(r: &CacheBenchReport) -> String {
    format!(
        "{} documents ({} byte-identical copies), {} pages a run\n\
         with the cache: {:.0} pages/s ({} ranges from it); without: {:.0} pages/s; \
         {:.2}x; output identical: {}",
        r.documents,
        r.duplicates,
        r.pages,
        r.cache_pages_per_s,
        r.cache_hits,
        r.no_cache_pages_per_s,
        r.cache_speedup,
        r.identical_output
    )
}
