//! `swarm serve`: the flags, the service, and its exit status (0 once drained, 1 if it
//! could not start or failed, 2 on bad usage).

use super::args::{parse_listen, SwarmArgs};
use super::{Done, Error};
use crate::service::serve::{serve, ServeConfig, ServeError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `swarm serve`'s flags.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Where the HTTP API listens: PORT (on loopback), HOST:PORT, `[IPV6]:PORT`. Another
    /// host than loopback only when named here.
    #[arg(long, default_value = "127.0.0.1:8750", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// The agents.
    #[command(flatten)]
    pub swarm: SwarmArgs,
    /// A folder whose files jobs may name (repeatable; default: the current folder). The
    /// agents may read these and nothing else.
    #[arg(long = "root", value_name = "DIR")]
    pub roots: Vec<PathBuf>,
    /// Where uploaded PDFs are kept while their job lasts (default: a private folder under
    /// the temporary directory, removed at exit).
    #[arg(long)]
    pub spool: Option<PathBuf>,
    /// A job's time budget per document unless it gives one (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = crate::task::parse_duration)]
    pub timeout_per_doc: Duration,
    /// Per-agent memory limit (e.g. 1G).
    #[arg(long, value_parser = crate::task::parse_size)]
    pub memory_limit: Option<u64>,
    /// Pages per task when a document is spread across agents.
    #[arg(long, default_value_t = 16)]
    pub chunk_pages: u32,
    /// How long a job is kept, with its results, after it is over.
    #[arg(long, default_value = "1h", value_parser = crate::task::parse_duration)]
    pub job_retention: Duration,
    /// The largest PDF upload.
    #[arg(long, default_value = "256M", value_parser = crate::task::parse_size)]
    pub max_upload: u64,
    /// Do not answer on the status socket (which `swarm status` and `swarm top` read).
    #[arg(long)]
    pub no_status_socket: bool,
}

/// Runs `swarm serve` until a signal drains it.
pub fn run(a: ServeArgs) -> Result<Done, Error> {
    let roots = if a.roots.is_empty() {
        vec![std::env::current_dir().map_err(|e| Error::fatal(format!("swarm: {e}")))?]
    } else {
        a.roots
    };
    if let Some(bad) = roots.iter().find(|r| !r.is_dir()) {
        return Err(Error::usage(format!(
            "swarm serve: --root {}: not a directory",
            bad.display()
        )));
    }
    let cfg = ServeConfig {
        run: crate::pdf::job::RunConfig {
            memory_limit: a.memory_limit,
            timeout_per_doc: a.timeout_per_doc,
            chunk_pages: a.chunk_pages,
            // A service's documents come one job at a time: none is known to be a copy.
            cache: false,
            ..a.swarm.config(Vec::new())
        },
        listen: a.listen,
        roots,
        spool: a.spool,
        retention: a.job_retention,
        max_upload: usize::try_from(a.max_upload).unwrap_or(usize::MAX),
        status_socket: !a.no_status_socket,
    };
    serve(&cfg, &mut |addr| {
        tracing::info!(%addr, "listening");
        // The one line on stdout: where it listens, for whoever started it.
        println!("swarm serve: listening on http://{addr}");
    })
    .map_err(|e| match e {
        ServeError::Http(crate::service::http::HttpError::Bind { .. }) | ServeError::Setup(_) => {
            Error::usage(format!("swarm serve: {e}"))
        }
        other => Error::from_library(other),
    })?;
    Ok(Done::Ok)
}
