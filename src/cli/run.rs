//! `swarm run`: the flags, the inputs they name, the run, its output and summary, and
//! its exit status (0 every document ok, 3 some failed, 1 fatal error, 2 bad usage: no
//! input, a path that does not exist, no PDF found).

use super::args::SwarmArgs;
use super::progress::Progress;
use super::{Done, Error};
use crate::pdf::job::{self, RunConfig, RunSummary};
use crate::service::run::Watch;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `swarm run`'s exit status, as its help says it.
pub const EXIT_STATUS: &str = "Exit status: 0 if every document is ok, 3 if the run finished but \
some documents failed, 1 on a fatal error, 2 on bad usage (a bad flag, no input, a path that \
does not exist, or no PDF found under the paths given).";

/// `swarm run`'s flags.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// PDF files or directories (searched recursively for *.pdf).
    pub paths: Vec<PathBuf>,
    /// The agents.
    #[command(flatten)]
    pub swarm: SwarmArgs,
    /// Where to write the JSON Lines (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write a JSON summary of the run here.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Read more paths from this file, one per line (`-` for stdin).
    #[arg(long)]
    pub files_from: Option<PathBuf>,
    /// Per-agent memory limit (e.g. 1G).
    #[arg(long, value_parser = crate::task::parse_size)]
    pub memory_limit: Option<u64>,
    /// Time budget of one document (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = crate::task::parse_duration)]
    pub timeout_per_doc: Duration,
    /// Pages per task when a document is spread across agents.
    #[arg(long, default_value_t = 16)]
    pub chunk_pages: u32,
    /// Extract byte-identical documents each time, instead of once (through the agents'
    /// shared cache; each copy gets its own line either way).
    #[arg(long)]
    pub no_cache: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics while the run lasts (PORT alone is
    /// on loopback; another host only when named).
    #[arg(long, value_name = "ADDR", value_parser = super::args::parse_listen)]
    pub metrics: Option<std::net::SocketAddr>,
    /// Do not answer on the status socket (which `swarm status` and `swarm top` read).
    #[arg(long)]
    pub no_status_socket: bool,
    /// Record each finished document here (its content hash, the options that change
    /// output, its line), so that the same command after a crash writes only what is
    /// missing. With `--output FILE`, the output is then appended to (cut back to the
    /// last line recorded), not replaced.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// The paths of `--files-from`, if given.
fn read_files_from(p: Option<&Path>) -> Result<Option<Vec<String>>, Error> {
    match p {
        None => Ok(None),
        Some(p) if p.as_os_str() == "-" => Ok(Some(
            std::io::stdin()
                .lock()
                .lines()
                .map_while(Result::ok)
                .collect(),
        )),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(s) => Ok(Some(s.lines().map(String::from).collect())),
            Err(e) => Err(Error::usage(format!(
                "swarm: --files-from {}: {e}",
                p.display()
            ))),
        },
    }
}

/// The PDF files the flags name. No input at all, a path given that does not exist, and
/// inputs with no PDF in them are bad usage: a user with a wrong path is told so, not
/// given an empty output.
pub fn inputs(a: &RunArgs) -> Result<Vec<PathBuf>, Error> {
    named_inputs("swarm run", &a.paths, a.files_from.as_deref())
}

/// [`inputs`] for any command (`cmd` names it in messages) that takes PDF paths and
/// `--files-from`.
pub fn named_inputs(
    cmd: &str,
    paths: &[PathBuf],
    files_from: Option<&Path>,
) -> Result<Vec<PathBuf>, Error> {
    let from = read_files_from(files_from)?;
    if paths.is_empty() && from.is_none() {
        return Err(Error::usage(format!(
            "{cmd}: no input: give PDF files or directories, or --files-from"
        )));
    }
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| format!("{cmd}: {}: no such file or directory", p.display()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::usage(missing.join("\n")));
    }
    let files = job::collect_inputs(paths, from.as_deref());
    if files.is_empty() {
        let mut searched: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        if let Some(f) = files_from {
            searched.push(format!("the paths listed in --files-from {}", f.display()));
        }
        return Err(Error::usage(format!(
            "{cmd}: no PDF found in {}",
            searched.join(", ")
        )));
    }
    Ok(files)
}

/// Runs `swarm run` with its flags.
pub fn run(a: RunArgs) -> Result<Done, Error> {
    let files = inputs(&a)?;
    let cfg = RunConfig {
        memory_limit: a.memory_limit,
        timeout_per_doc: a.timeout_per_doc,
        chunk_pages: a.chunk_pages,
        cache: !a.no_cache,
        ..a.swarm.config(files)
    };
    let mut journal = match &a.journal {
        Some(p) => Some(
            job::Journal::open(p, job::journal::options_of(&cfg))
                .map_err(|e| Error::fatal(format!("swarm: --journal: {e}")))?,
        ),
        None => None,
    };
    let mut out: Box<dyn Write> = match &a.output {
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        Some(p) => Box::new(std::io::BufWriter::new(open_output(p, journal.as_mut())?)),
    };
    let bar = Progress::new(cfg.files.len() as u64);
    let watch = Watch {
        metrics: a.metrics,
        status_socket: !a.no_status_socket,
    };
    let result = crate::service::run::run(
        &cfg,
        &mut out,
        &watch,
        journal.as_mut(),
        &mut |docs, pages| bar.update(docs, pages),
    );
    bar.finish();
    let summary = result.map_err(Error::from_library)?;
    if let Some(p) = &a.summary {
        write_summary(p, &summary)?;
    }
    Ok(if summary.failed_documents > 0 {
        Done::SomeDocumentsFailed
    } else {
        Done::Ok
    })
}

/// The `--output` file: made anew, or with a journal, kept up to the last line the journal
/// recorded in it (a line written after that, by a run that was killed before recording
/// it, is cut off: it is written again) and appended to.
fn open_output(p: &Path, journal: Option<&mut job::Journal>) -> Result<std::fs::File, Error> {
    let fail = |e: std::io::Error| Error::fatal(format!("swarm: --output {}: {e}", p.display()));
    let Some(j) = journal else {
        return std::fs::File::create(p).map_err(fail);
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .map_err(fail)?;
    let name = std::fs::canonicalize(p)
        .map_err(fail)?
        .display()
        .to_string();
    let keep = j.output_end(&name).min(f.metadata().map_err(fail)?.len());
    f.set_len(keep).map_err(fail)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).map_err(fail)?;
    j.output_at(&name, keep, f.try_clone().ok());
    Ok(f)
}

/// The `--summary` file: the summary as pretty JSON.
pub(crate) fn write_summary(p: &Path, summary: &RunSummary) -> Result<(), Error> {
    serde_json::to_vec_pretty(summary)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(p, b))
        .map_err(|e| Error::fatal(format!("swarm: --summary {}: {e}", p.display())))
}
