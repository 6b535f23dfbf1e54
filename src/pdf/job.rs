//! `swarm run`: many PDFs through the swarm, one JSON line per document.
//!
//! Each document starts as one [`PDF_DOC`] task (open, count pages, extract the first
//! chunk); a document longer than a chunk is spread over agents as [`PDF_PAGES`] range
//! tasks, and its result is assembled (the Aggregator's part) once every range is in.
//! A document that exceeds its time budget, or whose tasks keep killing their agents, ends
//! as an error line; nothing else is held up by it.

use super::tasks::{PageReply, PageRequest, PDF_DOC, PDF_PAGES};
use super::{ErrorKind, PdfError};
use crate::cgroup::Limits;
use crate::supervisor::{Shutdown, Supervisor};
use crate::task::{DeathCause, Failure, Outcome, TaskSpec};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Agents.
    pub agents: u32,
    /// The PDF files.
    pub files: Vec<PathBuf>,
    /// Per-agent memory limit.
    pub memory_limit: Option<u64>,
    /// Time budget of one document.
    pub timeout_per_doc: Duration,
    /// Pages per task.
    pub chunk_pages: u32,
    /// Fail without cgroups.
    pub require_cgroups: bool,
    /// The agent executable.
    pub agent_bin: Option<PathBuf>,
}

/// The `--summary` object.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RunSummary {
    /// Documents processed.
    pub documents: u64,
    /// Pages extracted.
    pub pages: u64,
    /// Documents whose status is not `ok`.
    pub failed_documents: u64,
    /// Wall time.
    pub wall_seconds: f64,
    /// Pages per second.
    pub pages_per_second: f64,
    /// Agents.
    pub agents: u32,
    /// Agents replaced during the run.
    pub agent_restarts: u64,
    /// Task attempts retried after agent deaths.
    pub tasks_retried: u64,
}

struct Doc {
    path: String,
    started: Instant,
    page_count: u32,
    /// Replies' pages as raw JSON, keyed by their first page number.
    chunks: Vec<(u32, Vec<Box<serde_json::value::RawValue>>)>,
    page_errors: u32,
    open_tasks: usize,
    error: Option<PdfError>,
}

/// Errors that stop the whole run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Supervisor trouble.
    #[error(transparent)]
    Supervisor(#[from] crate::supervisor::Error),
    /// Writing the output.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

fn failure_kind(f: &Failure) -> ErrorKind {
    match f {
        Failure::Quarantined(causes) => match causes.last() {
            Some(DeathCause::Oom) => ErrorKind::TooLarge,
            Some(DeathCause::Timeout) | Some(DeathCause::Hang) => ErrorKind::Timeout,
            _ => ErrorKind::AgentCrashed,
        },
        Failure::Task(_) => ErrorKind::Malformed,
        Failure::UnknownKind(_) => ErrorKind::Unsupported,
        _ => ErrorKind::AgentCrashed,
    }
}

fn spec(kind: u32, req: &PageRequest, timeout: Duration) -> TaskSpec {
    TaskSpec {
        kind,
        arg: 0,
        payload: serde_json::to_vec(req).unwrap_or_default(),
        timeout: Some(timeout),
        ..TaskSpec::new(kind, 0)
    }
}

/// Runs the job, writing one line per document to `out`; `progress` is called after each
/// document with (documents done, pages done).
pub fn run(
    cfg: &RunConfig,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<RunSummary, RunError> {
    let mut b = Supervisor::builder()
        .agents(cfg.agents)
        .limits(Limits {
            memory_bytes: cfg.memory_limit,
            ..Limits::default()
        })
        .require_cgroups(cfg.require_cgroups)
        // Extraction beats per page; a page that takes longer than this is stuck.
        .hang_timeout(cfg.timeout_per_doc.max(Duration::from_secs(1)));
    if let Some(p) = &cfg.agent_bin {
        b = b.agent_bin(p);
    }
    let sup = b.build()?;
    let start = Instant::now();
    let chunk = cfg.chunk_pages.max(1);
    let mut docs: HashMap<usize, Doc> = HashMap::new();
    let mut task_doc: HashMap<u64, usize> = HashMap::new();
    let mut summary = RunSummary {
        agents: cfg.agents,
        ..RunSummary::default()
    };
    let mut next = 0usize;
    let window = (cfg.agents as usize * 4).max(8);
    loop {
        // Keep a window of documents in flight.
        while next < cfg.files.len() && docs.len() < window {
            let path = cfg.files[next].display().to_string();
            let req = PageRequest {
                path: path.clone(),
                first: 1,
                last: chunk,
            };
            let id = sup.submit_detached(spec(PDF_DOC, &req, cfg.timeout_per_doc))?;
            task_doc.insert(id, next);
            docs.insert(
                next,
                Doc {
                    path,
                    started: Instant::now(),
                    page_count: 0,
                    chunks: Vec::new(),
                    page_errors: 0,
                    open_tasks: 1,
                    error: None,
                },
            );
            next += 1;
        }
        if docs.is_empty() {
            break;
        }
        if let Some((id, outcome)) = sup.recv(Some(Duration::from_millis(50))) {
            if let Some(d) = task_doc.remove(&id) {
                if let Some(doc) = docs.get_mut(&d) {
                    doc.open_tasks -= 1;
                    absorb(
                        doc,
                        outcome,
                        &sup,
                        &mut task_doc,
                        d,
                        chunk,
                        cfg.timeout_per_doc,
                    )?;
                }
            }
        }
        // Deadlines: a document past its budget ends now as a timeout.
        let now = Instant::now();
        for doc in docs.values_mut() {
            if doc.error.is_none()
                && now.duration_since(doc.started) > cfg.timeout_per_doc
                && doc.open_tasks > 0
            {
                doc.error = Some(PdfError::new(
                    ErrorKind::Timeout,
                    format!("not finished within {:?}", cfg.timeout_per_doc),
                ));
                doc.open_tasks = 0;
            }
        }
        let finished: Vec<usize> = docs
            .iter()
            .filter(|(_, d)| d.open_tasks == 0)
            .map(|(k, _)| *k)
            .collect();
        for k in finished {
            let doc = docs.remove(&k).expect("listed above");
            task_doc.retain(|_, d| *d != k);
            let (line, pages, ok) = render(doc);
            out.write_all(&line)?;
            out.write_all(b"\n")?;
            summary.documents += 1;
            summary.pages += pages;
            if !ok {
                summary.failed_documents += 1;
            }
            progress(summary.documents, summary.pages);
        }
    }
    out.flush()?;
    let counters = sup.status().counters;
    summary.agent_restarts = counters.agent_restarts;
    summary.tasks_retried = counters.tasks_retried;
    sup.shutdown(Shutdown::Cancel)?;
    summary.wall_seconds = start.elapsed().as_secs_f64();
    summary.pages_per_second = summary.pages as f64 / summary.wall_seconds.max(1e-9);
    Ok(summary)
}

fn absorb(
    doc: &mut Doc,
    outcome: Outcome,
    sup: &Supervisor,
    task_doc: &mut HashMap<u64, usize>,
    d: usize,
    chunk: u32,
    timeout: Duration,
) -> Result<(), RunError> {
    if doc.error.is_some() {
        return Ok(());
    }
    let reply = match outcome {
        Outcome::Completed { output, .. } => match serde_json::from_slice::<PageReply>(&output) {
            Ok(r) => r,
            Err(e) => {
                doc.error = Some(PdfError::new(
                    ErrorKind::AgentCrashed,
                    format!("bad reply: {e}"),
                ));
                return Ok(());
            }
        },
        Outcome::Failed(f) => {
            doc.error = Some(PdfError::new(failure_kind(&f), f.to_string()));
            return Ok(());
        }
    };
    if let Some(e) = reply.error {
        doc.error = Some(e);
        return Ok(());
    }
    let first_reply = doc.page_count == 0;
    doc.page_count = reply.page_count;
    doc.page_errors += reply.page_errors;
    doc.chunks.push((reply.first, reply.pages));
    if first_reply && reply.page_count > chunk {
        let mut first = chunk + 1;
        while first <= reply.page_count {
            let last = (first + chunk - 1).min(reply.page_count);
            let req = PageRequest {
                path: doc.path.clone(),
                first,
                last,
            };
            let id = sup.submit_detached(spec(PDF_PAGES, &req, timeout))?;
            task_doc.insert(id, d);
            doc.open_tasks += 1;
            first = last + 1;
        }
    }
    Ok(())
}

/// The output line of a finished document, its page count, and whether it is ok.
fn render(mut doc: Doc) -> (Vec<u8>, u64, bool) {
    use serde_json::value::RawValue;
    #[derive(Serialize)]
    struct Line<'a> {
        path: &'a str,
        status: &'a str,
        page_count: u32,
        pages: Vec<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a PdfError>,
    }
    // Replies are contiguous page ranges: order them by their first page.
    doc.chunks.sort_by_key(|(first, _)| *first);
    let pages: Vec<&RawValue> = doc
        .chunks
        .iter()
        .flat_map(|(_, p)| p.iter().map(|r| &**r))
        .collect();
    let status = if doc.error.is_some() && pages.is_empty() {
        "error"
    } else if doc.error.is_some() || doc.page_errors > 0 || (pages.len() as u32) < doc.page_count {
        "partial"
    } else {
        "ok"
    };
    let partial_error = (status == "partial" && doc.error.is_none()).then(|| {
        PdfError::new(
            ErrorKind::Malformed,
            format!("{} of {} pages failed", doc.page_errors, doc.page_count),
        )
    });
    let n = pages.len() as u64;
    let line = Line {
        path: &doc.path,
        status,
        page_count: doc.page_count,
        pages,
        error: doc.error.as_ref().or(partial_error.as_ref()),
    };
    let bytes = serde_json::to_vec(&line).unwrap_or_default();
    (bytes, n, status == "ok")
}

/// The PDF files under `paths` (directories searched recursively), and from `files_from`
/// (one path per line). Sorted within each directory.
pub fn collect_inputs(paths: &[PathBuf], files_from: Option<&[String]>) -> Vec<PathBuf> {
    fn walk(p: &std::path::Path, out: &mut Vec<PathBuf>, depth: usize) {
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
            walk(std::path::Path::new(l), &mut out, 0);
        }
    }
    out
}
