//! `swarm submit`: a job's documents into the cluster, and their lines back out.

use super::gateway::Gateway;
use super::nats::{self, DocJob, Manifest, Nats};
use super::worker::hash_hex;
use super::ClusterError;
use crate::pdf::job::RunSummary;
use crate::pdf::wire::line::head;
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to submit.
#[derive(Debug, Clone)]
pub struct SubmitConfig {
    /// The NATS servers, comma-separated.
    pub nats: String,
    /// Copies of each stream, when this submitter creates them (3 on a cluster).
    pub replicas: usize,
    /// The documents (files, as `swarm run` collects them).
    pub files: Vec<PathBuf>,
    /// Where the lines go (default: stdout). With `resume`, lines already in it are not
    /// written again.
    pub output: Option<PathBuf>,
    /// Attach to this job instead of submitting a new one.
    pub resume: Option<String>,
    /// The job's name (default: made up); with `resume`, not used.
    pub job: Option<String>,
    /// Each document's time budget.
    pub timeout_per_doc: Duration,
}

/// What a submitter did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job's name (for `--resume`).
    pub job: String,
    /// Files stored by this submitter (identical files once, files
    /// stored before not again).
    pub uploaded: u64,
    /// The summary, as `swarm run` writes it, over every line of the job's output.
    pub summary: RunSummary,
}

/// Submits (or resumes) a job and writes its lines. `started` is called with the job's
/// name once it is known.
pub fn run_submit(
    cfg: &SubmitConfig,
    started: &mut dyn FnMut(&str),
) -> Result<Submitted, ClusterError> {
    let t0 = Instant::now();
    let gw = Gateway::start()?;
    let nats = gw.call(nats::connect(cfg.nats.clone(), cfg.replicas))??;
    let (job, manifest, uploaded, fresh) = match &cfg.resume {
        Some(job) => {
            if !nats::valid_job(job) {
                return Err(ClusterError::Usage(format!(
                    "--resume {job}: not a job name"
                )));
            }
            // Not there is bad usage; not readable now is tried again, as any call.
            let (n, name) = (nats.clone(), format!("job-{job}"));
            let bytes = gw.call(async move {
                nats::persist("reading the job's manifest", PATIENCE, || async {
                    if !n.has_blob(&name).await? {
                        return Ok(None);
                    }
                    n.get_blob(name.clone()).await.map(Some)
                })
                .await
            })??;
            let bytes =
                bytes.ok_or_else(|| ClusterError::Usage(format!("--resume {job}: no such job")))?;
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| ClusterError::Nats(format!("job {job}'s manifest: {e}")))?;
            (job.clone(), m, 0, Vec::new())
        }
        None => {
            let job = match &cfg.job {
                Some(j) if nats::valid_job(j) => j.clone(),
                Some(j) => return Err(ClusterError::Usage(format!("--job {j}: not a job name"))),
                None => new_job_name(),
            };
            let (manifest, uploaded, fresh) = store(&gw, &nats, &job, &cfg.files)?;
            (job, manifest, uploaded, fresh)
        }
    };
    started(&job);
    let mut out = Output::open(cfg.output.as_ref(), cfg.resume.is_some())?;
    // Lines the submitter writes itself: files it could not read (on a resume, those an
    // earlier run did not get to write).
    let fresh = if cfg.resume.is_some() {
        unread_lines(&manifest)
    } else {
        fresh
    };
    for (doc, line) in fresh {
        if !out.has(doc, &manifest.docs[doc as usize].0) {
            out.write(doc, &line)?;
        }
    }
    // Every document with no line yet, published (again: the stream drops a copy by
    // its id, and a second result is refused).
    let missing: Vec<u64> = (0..manifest.docs.len() as u64)
        .filter(|&d| !out.has(d, &manifest.docs[d as usize].0))
        .collect();
    publish(&gw, &nats, &job, &manifest, &missing, cfg.timeout_per_doc)?;
    collect(&gw, &nats, &job, &manifest, &mut out)?;
    let mut summary = out.summary();
    summary.wall_seconds = t0.elapsed().as_secs_f64();
    summary.pages_per_second = summary.pages as f64 / summary.wall_seconds.max(1e-9);
    Ok(Submitted {
        job,
        uploaded,
        summary,
    })
}

/// The error lines of a job's documents that were not readable when it was submitted.
fn unread_lines(manifest: &Manifest) -> Vec<(u64, Vec<u8>)> {
    let line = |path: &str| {
        let why = match std::fs::metadata(path) {
            Err(e) => e.to_string(),
            Ok(_) => "not readable when the job was submitted".to_string(),
        };
        let err = crate::pdf::PdfError::new(crate::pdf::ErrorKind::Io, why);
        crate::pdf::DocResult::failed(path.to_string(), err).line()
    };
    (0u64..)
        .zip(&manifest.docs)
        .filter(|(_, (_, hash))| hash.is_none())
        .map(|(d, (path, _))| (d, line(path)))
        .collect()
}

fn new_job_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("j{:x}-{:x}", nanos, std::process::id())
}

/// Stores the files by content hash (each once) and the job's manifest. Returns the
/// manifest, how many files were stored, and the error lines of files that could not be
/// read.
#[allow(clippy::type_complexity)]
fn store(
    gw: &Gateway,
    nats: &Nats,
    job: &str,
    files: &[PathBuf],
) -> Result<(Manifest, u64, Vec<(u64, Vec<u8>)>), ClusterError> {
    let mut docs = Vec::with_capacity(files.len());
    let mut seen = HashSet::new();
    let (mut uploaded, mut fresh) = (0, Vec::new());
    for (i, f) in files.iter().enumerate() {
        let path = f.display().to_string();
        match std::fs::read(f) {
            Ok(bytes) => {
                let hash = hash_hex(&bytes);
                if seen.insert(hash.clone()) && put_once(gw, nats, hash.clone(), bytes)? {
                    uploaded += 1;
                }
                docs.push((path, Some(hash)));
            }
            Err(e) => {
                let err = crate::pdf::PdfError::new(crate::pdf::ErrorKind::Io, e.to_string());
                let line = crate::pdf::DocResult::failed(path.clone(), err).line();
                fresh.push((i as u64, line));
                docs.push((path, None));
            }
        }
    }
    let manifest = Manifest { docs };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| ClusterError::Io(e.to_string()))?;
    put_once(gw, nats, format!("job-{job}"), bytes)?;
    Ok((manifest, uploaded, fresh))
}

/// How long a submitter keeps trying to store a file or publish its documents.
const PATIENCE: Duration = Duration::from_secs(120);

/// Blob `name` stored unless it is there (see [`Nats::put_blob_once`]), tried again while
/// the servers do not answer.
fn put_once(gw: &Gateway, nats: &Nats, name: String, bytes: Vec<u8>) -> Result<bool, ClusterError> {
    let n = nats.clone();
    // Each try may take its time over a large file: a second a megabyte on top.
    let limit = Duration::from_secs(15 + (bytes.len() >> 20) as u64);
    gw.call(async move {
        nats::persist_with("storing a file", PATIENCE, limit, || {
            n.put_blob_once(name.clone(), bytes.clone())
        })
        .await
    })?
}

/// One message per document in `docs`, each with its id: all sent, then every
/// acknowledgement awaited.
fn publish(
    gw: &Gateway,
    nats: &Nats,
    job: &str,
    manifest: &Manifest,
    docs: &[u64],
    timeout: Duration,
) -> Result<(), ClusterError> {
    let msgs: Vec<(String, Vec<u8>)> = docs
        .iter()
        .filter_map(|&d| {
            let (path, hash) = &manifest.docs[d as usize];
            let m = DocJob {
                job: job.to_string(),
                doc: d,
                path: path.clone(),
                hash: hash.clone()?,
                timeout_ms: timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            };
            Some((format!("{job}.{d}"), serde_json::to_vec(&m).ok()?))
        })
        .collect();
    let (js, subject) = (nats.js.clone(), nats::jobs_subject(job));
    // A window at a time, its acknowledgements awaited before the next (the client lets
    // only so many publishes wait for theirs); a window again after a failure: the stream
    // drops the copies by their ids.
    gw.call(async move {
        for window in msgs.chunks(PUBLISH_WINDOW) {
            nats::persist("publishing documents", PATIENCE, || async {
                let bad = |e: String| ClusterError::Nats(format!("publishing documents: {e}"));
                let mut acks = Vec::with_capacity(window.len());
                for (id, payload) in window {
                    let p = jetstream::message::PublishMessage::build()
                        .payload(payload.clone().into())
                        .message_id(id.as_str());
                    acks.push(
                        js.send_publish(subject.clone(), p)
                            .await
                            .map_err(|e| bad(e.to_string()))?,
                    );
                }
                for a in acks {
                    a.await.map_err(|e| bad(e.to_string()))?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    })?
}

/// Documents published before their acknowledgements are awaited: well under the
/// client's limit of publishes awaiting theirs (5,000), past which a send waits for ever.
const PUBLISH_WINDOW: usize = 1000;

/// Reads the job's results from the start and writes each document's first line that is
/// not in the output yet, until every document has one. The reader goes on where it was
/// after any failure (a server gone, a stream's leader changing), for as long as it takes.
fn collect(
    gw: &Gateway,
    nats: &Nats,
    job: &str,
    manifest: &Manifest,
    out: &mut Output,
) -> Result<(), ClusterError> {
    let total = manifest.docs.len() as u64;
    if out.written >= total {
        return Ok(());
    }
    let (tx, rx) = crossbeam_channel::bounded::<(u64, Vec<u8>)>(256);
    let (n, filter) = (nats.clone(), format!("swarm.results.{job}.>"));
    gw.spawn(async move {
        // The stream sequence of the last result passed on.
        let mut last = 0u64;
        let mut pause = Duration::from_millis(100);
        loop {
            match read_results(&n, &filter, &mut last, &tx).await {
                // The submitter has what it needs.
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, after = last, "reading results: going on");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
    while out.written < total {
        let (doc, line) = rx
            .recv()
            .map_err(|_| ClusterError::Gateway("the results reader stopped".into()))?;
        if doc < total && !out.has(doc, &manifest.docs[doc as usize].0) {
            out.write(doc, &line)?;
        }
    }
    Ok(())
}

/// Passes the results after stream sequence `last` to `tx` (moving `last` on), until
/// `tx` is closed (`Ok`) or reading fails.
async fn read_results(
    n: &Nats,
    filter: &str,
    last: &mut u64,
    tx: &crossbeam_channel::Sender<(u64, Vec<u8>)>,
) -> Result<(), ClusterError> {
    let bad = |e: String| ClusterError::Nats(format!("reading results: {e}"));
    let stream =
        n.js.get_stream(nats::RESULTS)
            .await
            .map_err(|e| ClusterError::Nats(format!("the results stream: {e}")))?;
    let c = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_string(),
            deliver_policy: match *last {
                0 => consumer::DeliverPolicy::All,
                s => consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: s + 1,
                },
            },
            ..Default::default()
        })
        .await
        .map_err(|e| bad(e.to_string()))?;
    let mut msgs = c.messages().await.map_err(|e| bad(e.to_string()))?;
    while let Some(m) = msgs.next().await {
        let m = m.map_err(|e| bad(e.to_string()))?;
        let seq = m.info().map_err(|e| bad(e.to_string()))?.stream_sequence;
        if let Some(doc) = nats::doc_of_subject(&m.subject) {
            let line = n.line_of(&m).await?;
            // Sent from the gateway's thread: a full channel waits for the writer,
            // which never waits on the gateway.
            if tx.send((doc, line)).is_err() {
                return Ok(());
            }
        }
        *last = seq;
    }
    Err(bad("the results ended".into()))
}

/// The output: lines written, by document, and those found in it from an earlier run.
struct Output {
    sink: Box<dyn Write>,
    written: u64,
    done: HashSet<u64>,
    /// Paths of the lines an earlier run left, each as often as it is there.
    earlier: HashMap<String, u64>,
    summary: RunSummary,
}

impl Output {
    fn open(path: Option<&PathBuf>, resume: bool) -> Result<Self, ClusterError> {
        let io = |p: &PathBuf, e: std::io::Error| ClusterError::Io(format!("{}: {e}", p.display()));
        let mut o = Output {
            sink: Box::new(std::io::BufWriter::new(std::io::stdout())),
            written: 0,
            done: HashSet::new(),
            earlier: HashMap::new(),
            summary: RunSummary::default(),
        };
        let Some(p) = path else {
            return Ok(o);
        };
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!resume)
            .open(p)
            .map_err(|e| io(p, e))?;
        if resume {
            // Whole lines only: a torn last one is cut off and written again.
            let mut keep = 0u64;
            let mut r = std::io::BufReader::new(&f);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = r.read_until(b'\n', &mut line).map_err(|e| io(p, e))?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                keep += n as u64;
                if let Some((path, pages, ok)) = head(&line) {
                    *o.earlier.entry(path).or_default() += 1;
                    o.count(pages, ok);
                }
            }
            drop(r);
            f.set_len(keep).map_err(|e| io(p, e))?;
            f.seek(std::io::SeekFrom::End(0)).map_err(|e| io(p, e))?;
        }
        o.sink = Box::new(std::io::BufWriter::new(f));
        Ok(o)
    }

    fn count(&mut self, pages: u64, ok: bool) {
        self.written += 1;
        self.summary.documents += 1;
        self.summary.pages += pages;
        self.summary.failed_documents += u64::from(!ok);
    }

    /// Whether document `doc` (at `path`) has its line: written now, or left by an
    /// earlier run (which then counts as this document's).
    fn has(&mut self, doc: u64, path: &str) -> bool {
        if self.done.contains(&doc) {
            return true;
        }
        match self.earlier.get_mut(path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                self.done.insert(doc);
                true
            }
            _ => false,
        }
    }

    fn write(&mut self, doc: u64, line: &[u8]) -> Result<(), ClusterError> {
        let io = |e: std::io::Error| ClusterError::Io(format!("writing output: {e}"));
        self.sink.write_all(line).map_err(io)?;
        if line.last() != Some(&b'\n') {
            self.sink.write_all(b"\n").map_err(io)?;
        }
        self.sink.flush().map_err(io)?;
        self.done.insert(doc);
        let (pages, ok) = head(line).map_or((0, false), |(_, p, ok)| (p, ok));
        self.count(pages, ok);
        Ok(())
    }

    fn summary(&self) -> RunSummary {
        self.summary.clone()
    }
}
