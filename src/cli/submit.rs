//! `swarm submit`: the flags, the job, its output, summary and exit status (as `swarm
//! run`'s).

use super::run::{named_inputs, write_summary};
use super::{Done, Error};
use crate::cluster::submit::{run_submit, SubmitConfig};
use crate::cluster::ClusterError;
use std::path::PathBuf;
use std::time::Duration;

/// `swarm submit`'s flags.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// PDF files or directories (searched recursively for *.pdf).
    pub paths: Vec<PathBuf>,
    /// The NATS servers (with JetStream), comma-separated, e.g. `nats://127.0.0.1:4222`;
    /// the client moves to another when one fails.
    #[arg(long, value_name = "URL[,URL...]")]
    pub nats: String,
    /// Copies of each stream and bucket, where this command is the first to make them: 1
    /// on a single server, 3 on a cluster (then any one server may fail).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub replicas: u8,
    /// Where to write the JSON Lines (default: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Write a JSON summary here (as `swarm run`'s).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// Read more paths from this file, one per line (`-` for stdin).
    #[arg(long)]
    pub files_from: Option<PathBuf>,
    /// Attach to job JOB (after this command was stopped) and write the lines still
    /// missing from `--output`.
    #[arg(long, value_name = "JOB", conflicts_with_all = ["paths", "files_from", "job"])]
    pub resume: Option<String>,
    /// Name the job (letters, digits, `-` and `_`; default: made up). It is printed on
    /// stderr either way.
    #[arg(long)]
    pub job: Option<String>,
    /// Time budget of one document (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = crate::task::parse_duration)]
    pub timeout_per_doc: Duration,
}

/// Runs `swarm submit`.
pub fn run(a: SubmitArgs) -> Result<Done, Error> {
    let files = match &a.resume {
        Some(_) => Vec::new(),
        None => named_inputs("swarm submit", &a.paths, a.files_from.as_deref())?,
    };
    let cfg = SubmitConfig {
        nats: a.nats,
        replicas: usize::from(a.replicas),
        files,
        output: a.output,
        resume: a.resume,
        job: a.job,
        timeout_per_doc: a.timeout_per_doc,
    };
    let done = run_submit(&cfg, &mut |job| eprintln!("job: {job}")).map_err(|e| match e {
        ClusterError::Usage(m) => Error::usage(format!("swarm submit: {m}")),
        e => Error::fatal(format!("swarm submit: {e}")),
    })?;
    eprintln!(
        "job {}: {} documents, {} files stored",
        done.job, done.summary.documents, done.uploaded
    );
    if let Some(p) = &a.summary {
        write_summary(p, &done.summary)?;
    }
    Ok(if done.summary.failed_documents > 0 {
        Done::SomeDocumentsFailed
    } else {
        Done::Ok
    })
}
